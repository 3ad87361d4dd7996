-- Rebuild what Redis must know of a showtime from PostgreSQL's live reservation
-- seats: each seat key is set to its reservation unless the key exists, then
-- the showtime is marked as synced.
-- KEYS[1] the showtime's sync marker   KEYS[2..] seat keys of live reservation seats
-- ARGV[1] marker TTL in seconds   ARGV[2k] owner token and ARGV[2k+1] TTL in ms of KEYS[k+1]
-- Returns the number of seat keys set.
local n = 0
for i = 2, #KEYS do
  local owner, ttl = ARGV[2 * (i - 1)], ARGV[2 * (i - 1) + 1]
  if redis.call('SET', KEYS[i], owner, 'PX', ttl, 'NX') then
    n = n + 1
  end
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return n
