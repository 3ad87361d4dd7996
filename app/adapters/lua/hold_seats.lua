-- Take every requested seat of one showtime for one hold, or none of them.
-- KEYS[1]   the user's live-hold key of this showtime  ({st:S}:user:<user id>)
-- KEYS[2]   the hold's record                           ({st:S}:hold:<hold id>)
-- KEYS[3]   the showtime's sync marker                  ({st:S}:synced)
-- KEYS[4..] one key per requested seat                  ({st:S}:seat:<seat id>)
-- ARGV[1] hold id   ARGV[2] TTL in ms   ARGV[3] user id
-- ARGV[4] seat ids as JSON   ARGV[5] expiry as ISO 8601
-- ARGV[6] '1' to decide without the sync marker (the caller checks PostgreSQL itself)
-- ARGV[7] the hold's owner token for the seat keys (SeatOwner in seat_store.py)
-- Returns (HoldOutcome in seat_store.py) {1} when held; {0, i, ...} with the 1-based positions of the seats
-- already taken (nothing was taken); {-1, hold id} when the user already has a
-- live hold on this showtime (nothing was taken); {-2} when Redis does not know
-- this showtime's booked seats (after a restart or flush): rebuild, then retry.
if ARGV[6] ~= '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  return {-2}
end
local live = redis.call('GET', KEYS[1])
if live then
  return {-1, live}
end
local taken = {}
for i = 4, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    taken[#taken + 1] = i - 3
  end
end
if #taken > 0 then
  table.insert(taken, 1, 0)
  return taken
end
local owner = ARGV[7]
for i = 4, #KEYS do
  redis.call('SET', KEYS[i], owner, 'PX', ARGV[2])
end
redis.call('HSET', KEYS[2], 'user', ARGV[3], 'seats', ARGV[4], 'expires_at', ARGV[5], 'state', 'held')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1}
