-- After a reservation commits: its seats pass from the hold to the reservation,
-- and the hold is gone.
-- KEYS[1..4] the showtime's seats (seat_state.lua)
-- KEYS[5] the hold's record   KEYS[6] the user's live-hold key
-- ARGV[1] hold id   ARGV[2] owner token of the reservation   ARGV[3] TTL in ms
-- ARGV[4] owner token of the hold (both tokens are made by SeatOwner in seat_store.py)
-- ARGV[5] the hold's seat indices, "i,j,..." (its record may have expired meanwhile)
-- Returns the number of seats rebound.
purge()
local n = 0
local until_ms = NOW + tonumber(ARGV[3])
for _, i in ipairs(indices(ARGV[5])) do
  if redis.call('HGET', OWNER, i) == ARGV[4] then
    take(i, ARGV[2], until_ms)
    n = n + 1
  end
end
if n > 0 then keep_alive(until_ms) end
redis.call('DEL', KEYS[5])
if redis.call('GET', KEYS[6]) == ARGV[1] then
  redis.call('DEL', KEYS[6])
end
return n
