-- Release a hold: only its owner may, and only seats it still owns are freed.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
-- KEYS[6] the hold's record   KEYS[7] the user's live-hold key
-- ARGV[1] hold id   ARGV[2] user id   ARGV[3] the hold's owner token (SeatOwner)
-- Returns 1 when released, 0 when there is no such hold of this user.
if redis.call('HGET', KEYS[6], 'user') ~= ARGV[2] then
  return 0
end
purge()
local ids = cjson.decode(redis.call('HGET', KEYS[6], 'seats') or '[]')
for k, i in ipairs(indices(redis.call('HGET', KEYS[6], 'idx') or '')) do
  if redis.call('HGET', OWNER, i) == ARGV[3] then
    free(i, ids[k])
  end
end
emit()
redis.call('DEL', KEYS[6])
if redis.call('GET', KEYS[7]) == ARGV[1] then
  redis.call('DEL', KEYS[7])
end
return 1
