-- Take seats of one showtime out of sale (an admin's block), all of them or none.
-- KEYS[1] the showtime's sync marker   KEYS[2..] the seat keys
-- ARGV[1] the blocked owner token (SeatOwner in seat_store.py)   ARGV[2] TTL in ms
-- Returns (HoldOutcome in seat_store.py) {1} when blocked; {0, i, ...} with the 1-based
-- positions (from KEYS[2]) of seats someone has (nothing was blocked); {-2} when Redis does
-- not know this showtime's booked seats: rebuild, then retry.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-2}
end
local taken = {}
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    taken[#taken + 1] = i - 1
  end
end
if #taken > 0 then
  table.insert(taken, 1, 0)
  return taken
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[2])
end
return {1}
