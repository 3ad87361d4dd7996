-- Read a showtime's seats (expired ones freed first): the state string, and with
-- ARGV[1] = '1' the owners as a flat list of index, token.
-- KEYS[1..4] the showtime's seats (seat_state.lua)
purge()
local state = redis.call('GET', STATE) or ''
if ARGV[1] == '1' then
  return {state, redis.call('HGETALL', OWNER)}
end
return {state}
