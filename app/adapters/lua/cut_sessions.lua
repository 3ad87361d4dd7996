-- End every session of a user at once: tokens issued before now (Redis's clock, in
-- microseconds) are void. Stored and announced in one step, like every revocation.
-- KEYS[1]: the user's cut-off marker (value: the cut-off, us since the epoch)
-- KEYS[2]: the revocations by expiry (zset), which app processes load and mirror
-- ARGV[1]: the marker's lifetime in seconds (the longest-lived token's)
-- ARGV[2]: the revocations' channel (app/adapters/pushed.py: "<marker key>\n<cut-off us>")
-- Returns the cut-off (us), as a string (a Lua number would lose digits on the way).
local now = redis.call('TIME')
local cutoff = string.format('%.0f', tonumber(now[1]) * 1000000 + tonumber(now[2]))
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('SET', KEYS[1], cutoff, 'EX', ARGV[1])
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[1]) * 1000, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
redis.call('PUBLISH', ARGV[2], KEYS[1] .. '\n' .. cutoff)
return cutoff
