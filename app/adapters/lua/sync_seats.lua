-- Rebuild what Redis must know of a showtime from PostgreSQL (live reservation seats
-- and blocked seats): each seat is given its owner unless someone has it, then the
-- showtime is marked as synced.
-- KEYS[1..4] the showtime's seats (seat_state.lua)
-- ARGV[1] marker TTL in seconds   ARGV[2] "index,owner token,TTL in ms;" per seat
-- Returns the number of seats set.
purge()
local state = redis.call('GET', STATE) or ''
local n, latest = 0, 0
for i, owner, ttl in string.gmatch(ARGV[2], '(%d+),([^,;]+),(%d+);') do
  i = tonumber(i)
  if is_free(state, i) then
    local until_ms = NOW + tonumber(ttl)
    take(i, owner, until_ms)
    if until_ms > latest then latest = until_ms end
    n = n + 1
  end
end
if n > 0 then keep_alive(latest) end
redis.call('SET', SYNCED, '1', 'EX', ARGV[1])
return n
