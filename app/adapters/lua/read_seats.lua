-- Read a showtime's seats (expired ones freed first, on the stream too): {synced, state,
-- version, owners}: synced 0 when Redis does not know the showtime's booked seats (rebuild,
-- then read again); the state string; the version (the change stream's last id, "0-0" when
-- empty), read in the same atomic step as the state; with ARGV[1] = '1' the owners as a
-- flat list of index, token.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
purge()
local synced = redis.call('EXISTS', SYNCED)
local state = redis.call('GET', STATE) or ''
local last = redis.call('XREVRANGE', EVENTS, '+', '-', 'COUNT', 1)
local version = last[1] and last[1][1] or '0-0'
if ARGV[1] == '1' then
  return {synced, state, version, redis.call('HGETALL', OWNER)}
end
return {synced, state, version}
