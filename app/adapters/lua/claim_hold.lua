-- Claim a live hold for checkout: it must be this user's, not claimed yet, and
-- still own every one of its seats; its keys then live through the payment window.
-- KEYS[1] the hold's record   KEYS[2..] the hold's seat keys
-- ARGV[1] hold id   ARGV[2] user id   ARGV[3] new TTL in ms   ARGV[4] the hold's owner token (SeatOwner)
-- Returns (ClaimOutcome in seat_store.py) 1 claimed; 0 expired or lost; -1 another user's; -2 already claimed.
local user = redis.call('HGET', KEYS[1], 'user')
if not user then
  return 0
end
if user ~= ARGV[2] then
  return -1
end
if redis.call('HGET', KEYS[1], 'state') ~= 'held' then
  return -2
end
local owner = ARGV[4]
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) ~= owner then
    return 0
  end
end
for i = 2, #KEYS do
  redis.call('PEXPIRE', KEYS[i], ARGV[3])
end
redis.call('HSET', KEYS[1], 'state', 'claimed')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
