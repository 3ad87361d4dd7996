-- Claim a live hold for checkout: it must be this user's, not claimed yet, and
-- still own every one of its seats; its seats then live through the payment window.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)   KEYS[6] the hold's record
-- ARGV[1] hold id   ARGV[2] user id   ARGV[3] new TTL in ms   ARGV[4] the hold's owner token (SeatOwner)
-- Returns (ClaimOutcome in seat_store.py) 1 claimed; 0 expired or lost; -1 another user's; -2 already claimed.
local user = redis.call('HGET', KEYS[6], 'user')
if not user then
  return 0
end
if user ~= ARGV[2] then
  return -1
end
if redis.call('HGET', KEYS[6], 'state') ~= 'held' then
  return -2
end
purge()
local seats = indices(redis.call('HGET', KEYS[6], 'idx') or '')
local ids = cjson.decode(redis.call('HGET', KEYS[6], 'seats') or '[]')
for _, i in ipairs(seats) do
  if redis.call('HGET', OWNER, i) ~= ARGV[4] then
    return 0
  end
end
local until_ms = NOW + tonumber(ARGV[3])
for k, i in ipairs(seats) do
  extend(i, ids[k], until_ms)
end
keep_alive(until_ms)
redis.call('HSET', KEYS[6], 'state', 'claimed')
redis.call('PEXPIRE', KEYS[6], ARGV[3])
return 1
