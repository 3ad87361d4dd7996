-- Compare-and-set or compare-and-delete seats of one owner.
-- KEYS[1..4] the showtime's seats (seat_state.lua)
-- ARGV[1] expected owner token   ARGV[2] new owner token, or '' to free the seats
-- ARGV[3] TTL in ms for the new owner (ignored when freeing)   ARGV[4] seat indices, "i,j,..."
-- Seats that belong to someone else are left alone. Returns the number changed.
purge()
local n = 0
local until_ms = NOW + tonumber(ARGV[3])
for _, i in ipairs(indices(ARGV[4])) do
  if redis.call('HGET', OWNER, i) == ARGV[1] then
    if ARGV[2] == '' then
      free(i)
    else
      take(i, ARGV[2], until_ms)
    end
    n = n + 1
  end
end
if n > 0 and ARGV[2] ~= '' then keep_alive(until_ms) end
return n
