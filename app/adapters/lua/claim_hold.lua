-- Claim a live hold for checkout: it must be this user's, not claimed yet, and
-- still own every one of its seats; its seats then live through the payment window.
-- KEYS[1..4] the showtime's seats (seat_state.lua)   KEYS[5] the hold's record
-- ARGV[1] hold id   ARGV[2] user id   ARGV[3] new TTL in ms   ARGV[4] the hold's owner token (SeatOwner)
-- Returns (ClaimOutcome in seat_store.py) 1 claimed; 0 expired or lost; -1 another user's; -2 already claimed.
local user = redis.call('HGET', KEYS[5], 'user')
if not user then
  return 0
end
if user ~= ARGV[2] then
  return -1
end
if redis.call('HGET', KEYS[5], 'state') ~= 'held' then
  return -2
end
purge()
local seats = indices(redis.call('HGET', KEYS[5], 'idx') or '')
for _, i in ipairs(seats) do
  if redis.call('HGET', OWNER, i) ~= ARGV[4] then
    return 0
  end
end
local until_ms = NOW + tonumber(ARGV[3])
for _, i in ipairs(seats) do
  redis.call('ZADD', EXPIRY, until_ms, i)
end
keep_alive(until_ms)
redis.call('HSET', KEYS[5], 'state', 'claimed')
redis.call('PEXPIRE', KEYS[5], ARGV[3])
return 1
