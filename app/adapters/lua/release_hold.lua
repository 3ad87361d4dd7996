-- Release a hold: only its owner may, and only seats it still owns are freed.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
-- KEYS[6] the hold's record   KEYS[7] the user's live-hold key
-- ARGV[1] hold id   ARGV[2] user id   ARGV[3] the hold's owner token (SeatOwner)
-- ARGV[4] (optional) the seat keys' layout version: a hold of another one is left alone (-2)
-- ARGV[5] (optional) '1': a hold being turned into a reservation is left alone (-1)
-- Returns 1 when released, 0 when there is no such hold of this user, -1 or -2 as above.
if redis.call('HGET', KEYS[6], 'user') ~= ARGV[2] then
  return 0
end
if ARGV[4] and ARGV[4] ~= '' and redis.call('HGET', KEYS[6], 'ver') ~= ARGV[4] then
  return -2
end
if ARGV[5] == '1' and redis.call('HGET', KEYS[6], 'state') ~= 'held' then
  return -1
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
