-- Take seats of one showtime out of sale (an admin's block), all of them or none.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
-- ARGV[1] the blocked owner token (SeatOwner in seat_store.py)   ARGV[2] TTL in ms
-- ARGV[3] seat indices, "i,j,..."   ARGV[4] their seat ids, "a,b,..."
-- Returns (HoldOutcome in seat_store.py) {1} when blocked; {0, k, ...} with the 1-based
-- positions in ARGV[3] of seats someone has (nothing was blocked); {-2} when Redis does
-- not know this showtime's booked seats: rebuild, then retry.
local refused = refused_before_taking('0')
if refused then
  return refused
end
purge()
local wanted = indices(ARGV[3])
local taken = taken_among(redis.call('GET', STATE) or '', wanted)
if taken then
  return taken
end
local until_ms = NOW + tonumber(ARGV[2])
local ids = indices(ARGV[4])
for k, i in ipairs(wanted) do
  take(i, ids[k], ARGV[1], until_ms, 'b')
end
keep_alive(until_ms)
emit()
return {1}
