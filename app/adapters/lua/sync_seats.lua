-- Rebuild what Redis must know of a showtime from PostgreSQL (live reservation seats
-- and blocked seats): each seat is given its owner unless someone has it, then the
-- showtime is marked as synced.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
-- ARGV[1] marker TTL in seconds
-- ARGV[2] "index,seat id,owner token,TTL in ms,state byte;" per seat
-- Returns the number of seats set.
purge()
local state = redis.call('GET', STATE) or ''
local n, latest = 0, 0
for i, id, owner, ttl, kind in string.gmatch(ARGV[2], '(%d+),(%d+),([^,;]+),(%d+),(%a);') do
  i = tonumber(i)
  if is_free(state, i) then
    local until_ms = NOW + tonumber(ttl)
    take(i, id, owner, until_ms, kind)
    if until_ms > latest then latest = until_ms end
    n = n + 1
  end
end
if n > 0 then keep_alive(latest) end
emit()
redis.call('SET', SYNCED, '1', 'EX', ARGV[1])
return n
