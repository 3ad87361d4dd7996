-- After a reservation commits: its seats pass from the hold to the reservation (still
-- "held" on the seat map while payment is awaited), and the hold is gone.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
-- KEYS[6] the hold's record   KEYS[7] the user's live-hold key
-- ARGV[1] hold id   ARGV[2] owner token of the reservation   ARGV[3] TTL in ms
-- ARGV[4] owner token of the hold (both tokens are made by SeatOwner in seat_store.py)
-- ARGV[5] the hold's seat indices, "i,j,..."   ARGV[6] their seat ids, "a,b,..." (its record
-- may have expired meanwhile)
-- Returns the number of seats rebound.
purge()
local n = 0
local until_ms = NOW + tonumber(ARGV[3])
local ids = indices(ARGV[6])
for k, i in ipairs(indices(ARGV[5])) do
  if redis.call('HGET', OWNER, i) == ARGV[4] then
    take(i, ids[k], ARGV[2], until_ms, 'r')
    n = n + 1
  end
end
if n > 0 then keep_alive(until_ms) end
emit()
redis.call('DEL', KEYS[6])
if redis.call('GET', KEYS[7]) == ARGV[1] then
  redis.call('DEL', KEYS[7])
end
return n
