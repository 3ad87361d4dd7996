-- Compare-and-set or compare-and-delete seats of one owner.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
-- ARGV[1] expected owner token   ARGV[2] new owner token, or '' to free the seats
-- ARGV[3] TTL in ms for the new owner (ignored when freeing)   ARGV[4] seat indices, "i,j,..."
-- ARGV[5] their seat ids, "a,b,..."   ARGV[6] the new owner's state byte ('h', 'r', 'c', 'b')
-- Seats that belong to someone else are left alone. Returns the number changed.
purge()
local n = 0
local until_ms = NOW + tonumber(ARGV[3])
local ids = indices(ARGV[5])
for k, i in ipairs(indices(ARGV[4])) do
  if redis.call('HGET', OWNER, i) == ARGV[1] then
    if ARGV[2] == '' then
      free(i, ids[k])
    else
      take(i, ids[k], ARGV[2], until_ms, ARGV[6])
    end
    n = n + 1
  end
end
if n > 0 and ARGV[2] ~= '' then keep_alive(until_ms) end
emit()
return n
