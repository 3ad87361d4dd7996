-- Count one failure in a fixed window and report the state of the window.
-- KEYS[1]: the counter key
-- ARGV[1]: window length in seconds
-- Returns {count, ttl_seconds}.
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
