-- Prepended to every seat script by SeatStore (seat_store.py): one showtime's seats as
-- three keys read in one call each, whatever the size of the room.
-- KEYS[1] state:  one byte per seat, seat i (its index in row then position order) at
--                 offset i-1: 'h' a hold's, 'r' a reservation's, 'b' blocked; anything
--                 else (or past the end) is free
-- KEYS[2] owner:  hash, seat index -> owner token (SeatOwner in seat_store.py)
-- KEYS[3] expiry: sorted set, seat index by the epoch ms its owner's time is up
-- KEYS[4] the showtime's sync marker
-- Expiry is lazy: a seat whose time is up is free to every script from that moment
-- (``purge`` runs first), with no scheduler; each key lives as long as its longest-lived
-- seat (``keep_alive``), so the keys themselves end on their own too.
local STATE, OWNER, EXPIRY, SYNCED = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local KEEP_MARGIN_MS = 60000
local TAKEN = {[104] = true, [114] = true, [98] = true}  -- 'h', 'r', 'b'
local FREE_RUN = '[^hrb]+'
local KIND = {h = 'h', r = 'r', b = 'b'}  -- owner token prefix -> state byte

local function purge()
  local expired = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW)
  if #expired == 0 then
    return
  end
  if redis.call('EXISTS', STATE) == 1 then
    for _, i in ipairs(expired) do
      redis.call('SETRANGE', STATE, tonumber(i) - 1, '.')
    end
  end
  for first = 1, #expired, 1000 do
    redis.call('HDEL', OWNER, unpack(expired, first, math.min(first + 999, #expired)))
  end
  redis.call('ZREMRANGEBYSCORE', EXPIRY, '-inf', NOW)
end

local function is_free(state, i)
  return not TAKEN[string.byte(state, i) or 0]
end

local function take(i, owner, until_ms)
  redis.call('SETRANGE', STATE, i - 1, KIND[string.sub(owner, 1, 1)])
  redis.call('HSET', OWNER, i, owner)
  redis.call('ZADD', EXPIRY, until_ms, i)
end

local function free(i)
  redis.call('SETRANGE', STATE, i - 1, '.')
  redis.call('HDEL', OWNER, i)
  redis.call('ZREM', EXPIRY, i)
end

local function keep_alive(until_ms)
  local ttl = until_ms - NOW + KEEP_MARGIN_MS
  for _, key in ipairs({STATE, OWNER, EXPIRY}) do
    local current = redis.call('PTTL', key)
    if current == -1 or (current >= 0 and current < ttl) then
      redis.call('PEXPIRE', key, ttl)
    end
  end
end

local function indices(csv)
  local out = {}
  for i in string.gmatch(csv, '%d+') do
    out[#out + 1] = tonumber(i)
  end
  return out
end

-- the seats' positions: "first index,count,x of the first,y;" per stretch of consecutive
-- positions of one row, in row then position order
local function segments(packed)
  local out = {}
  for first, count, x0, y in string.gmatch(packed, '(%d+),(%d+),(%d+),(%d+);') do
    out[#out + 1] = {tonumber(first), tonumber(count), tonumber(x0), tonumber(y)}
  end
  return out
end

