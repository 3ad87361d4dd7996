-- Release a hold: only its owner may, and only seats it still owns are freed.
-- KEYS[1..4] the showtime's seats (seat_state.lua)
-- KEYS[5] the hold's record   KEYS[6] the user's live-hold key
-- ARGV[1] hold id   ARGV[2] user id   ARGV[3] the hold's owner token (SeatOwner)
-- Returns 1 when released, 0 when there is no such hold of this user.
if redis.call('HGET', KEYS[5], 'user') ~= ARGV[2] then
  return 0
end
purge()
for _, i in ipairs(indices(redis.call('HGET', KEYS[5], 'idx') or '')) do
  if redis.call('HGET', OWNER, i) == ARGV[3] then
    free(i)
  end
end
redis.call('DEL', KEYS[5])
if redis.call('GET', KEYS[6]) == ARGV[1] then
  redis.call('DEL', KEYS[6])
end
return 1
