-- Release a hold: only its owner may, and only seats it still owns are freed.
-- KEYS[1] the hold's record   KEYS[2] the user's live-hold key   KEYS[3..] the hold's seat keys
-- ARGV[1] hold id   ARGV[2] user id   ARGV[3] the hold's owner token (SeatOwner)
-- Returns 1 when released, 0 when there is no such hold of this user.
if redis.call('HGET', KEYS[1], 'user') ~= ARGV[2] then
  return 0
end
local owner = ARGV[3]
for i = 3, #KEYS do
  if redis.call('GET', KEYS[i]) == owner then
    redis.call('DEL', KEYS[i])
  end
end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
