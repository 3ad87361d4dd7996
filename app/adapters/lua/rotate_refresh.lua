-- Rotate a refresh-token family: the presented token must be the family's
-- current one; if so the new one replaces it. A token that was current once
-- and is presented again means theft: the whole family is revoked.
-- KEYS[1]: the family key (value: jti of the current refresh token)
-- KEYS[2]: the family's revocation marker (checked by every access token)
-- KEYS[3]: the revocations by expiry (zset), which app processes load and mirror
-- KEYS[4]: the user's session cut-off marker (value: us; tokens issued before are void)
-- ARGV[1]: jti presented   ARGV[2]: jti of the new refresh token
-- ARGV[3]: family lifetime in seconds   ARGV[4]: revocation marker lifetime
-- ARGV[5]: the revocations' channel (app/adapters/pushed.py: "<marker key>\n<expiry ms>")
-- ARGV[6]: when the presented token was issued (us): checked against the cut-off here,
--          in the same step as the rotation, so no refresh racing a cut-off survives it
-- Returns 1 rotated, 0 unknown or expired family (or cut off), -1 reuse detected (family revoked).
local cut = redis.call('GET', KEYS[4])
if cut and tonumber(ARGV[6]) < tonumber(cut) then
  return 0
end
local current = redis.call('GET', KEYS[1])
if not current then
  return 0
end
if current ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[2], '1', 'EX', ARGV[4])
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local until_ms = now_ms + tonumber(ARGV[4]) * 1000
  redis.call('ZADD', KEYS[3], until_ms, KEYS[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
  redis.call('PUBLISH', ARGV[5], KEYS[2] .. '\n' .. until_ms)
  return -1
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
