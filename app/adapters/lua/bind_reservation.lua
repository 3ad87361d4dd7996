-- After a reservation commits: its seats pass from the hold to the reservation,
-- and the hold is gone.
-- KEYS[1] the hold's record   KEYS[2] the user's live-hold key   KEYS[3..] the seat keys
-- ARGV[1] hold id   ARGV[2] owner token of the reservation   ARGV[3] TTL in ms
-- ARGV[4] owner token of the hold (both tokens are made by SeatOwner in seat_store.py)
-- Returns the number of seats rebound.
local from = ARGV[4]
local n = 0
for i = 3, #KEYS do
  if redis.call('GET', KEYS[i]) == from then
    redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
    n = n + 1
  end
end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return n
