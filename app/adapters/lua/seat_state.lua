-- Prepended to every seat script by SeatStore (seat_store.py): one showtime's seats as
-- three keys read in one call each, whatever the size of the room, and its change stream.
-- KEYS[1] state:  one byte per seat, seat i (its index in row then position order) at
--                 offset i-1: 'h' a hold's, 'r' a reservation's awaiting payment, 'c' a
--                 confirmed reservation's, 'b' blocked; anything else (or past the end) is free
-- KEYS[2] owner:  hash, seat index -> owner token (SeatOwner in seat_store.py)
-- KEYS[3] expiry: sorted set, "index:seat id" by the epoch ms its owner's time is up
-- KEYS[4] the showtime's sync marker
-- KEYS[5] events: the showtime's change stream (a Redis Stream): every change of a seat's
--                 status is appended by the script that makes it, as one entry per call
--                 (`seats`: JSON [{"id", "status"}]); its ids are the seat map's versions
-- Expiry is lazy: a seat whose time is up is free to every script from that moment
-- (``purge`` runs first, and records the expiries on the stream), with no scheduler;
-- each key lives as long as its longest-lived seat (``keep_alive``), so the keys
-- themselves end on their own too.
local STATE, OWNER, EXPIRY, SYNCED, EVENTS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local KEEP_MARGIN_MS = 60000
local STREAM_MAXLEN = 10000  -- entries kept (about): older versions get `reset` (API.md)
local STATUS = {[104] = 'held', [114] = 'held', [99] = 'booked', [98] = 'blocked'}  -- h r c b
local FREE_RUN = '[^hrcb]+'
local CHANGES = {}

-- the changes made so far go on the stream as one entry; the stream lives as long as the seats
local function emit()
  if #CHANGES == 0 then
    return
  end
  redis.call('XADD', EVENTS, 'MAXLEN', '~', STREAM_MAXLEN, '*', 'seats', cjson.encode(CHANGES))
  CHANGES = {}
  local ttl = math.max(redis.call('PTTL', STATE), 3600000)
  local current = redis.call('PTTL', EVENTS)
  if current == -1 or (current >= 0 and current < ttl) then
    redis.call('PEXPIRE', EVENTS, ttl)
  end
end

local function changed(id, status)
  CHANGES[#CHANGES + 1] = {id = tonumber(id), status = status}
end

local function purge()
  local expired = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW)
  if #expired == 0 then
    return
  end
  local exists = redis.call('EXISTS', STATE) == 1
  for _, entry in ipairs(expired) do
    local i, id = string.match(entry, '(%d+):(%d+)')
    if exists then
      redis.call('SETRANGE', STATE, tonumber(i) - 1, '.')
    end
    redis.call('HDEL', OWNER, i)
    changed(id, 'available')
  end
  redis.call('ZREMRANGEBYSCORE', EXPIRY, '-inf', NOW)
  emit()
end

local function is_free(state, i)
  return not STATUS[string.byte(state, i) or 0]
end

-- what refuses a take before anything is read: {-2} when Redis does not know the
-- showtime's booked seats (unless unsynced_ok is '1': the caller checks PostgreSQL itself),
-- {-1, hold id} when the user (user_key, if given) already holds seats here; else nil
-- The checks of a hold before it looks at seats: the waiting room's gate (``gate``: '-' not
-- asked, for the system's own holds such as waitlist offers; '1' the caller showed a valid
-- admission token; '0' not), then {-2} while Redis may have lost booked seats (unless
-- ``unsynced_ok``), then {-1, hold id} for a user who holds seats here already. While the
-- room (``room_key``) is on, only a user with a live session in ``active_key`` (admitted,
-- not done, left nor expired) passes the gate: {-4} otherwise, checked in the same step
-- as the take, so a session that ends takes its token's power with it at once.
local function refused_before_taking(unsynced_ok, user_key, gate, room_key, active_key, user)
  if gate and gate ~= '-' and redis.call('HGET', room_key, 'on') == '1' then
    local until_ms = gate == '1' and tonumber(redis.call('ZSCORE', active_key, user) or '0') or 0
    if until_ms <= NOW then
      return {-4}
    end
  end
  if unsynced_ok ~= '1' and redis.call('EXISTS', SYNCED) == 0 then
    return {-2}
  end
  local live = user_key and redis.call('GET', user_key)
  if live then
    return {-1, live}
  end
  return nil
end

-- {0, k, ...} with the 1-based positions in `wanted` (seat indices) of the seats that are
-- not free, or nil when every one is
local function taken_among(state, wanted)
  local taken = {}
  for k, i in ipairs(wanted) do
    if not is_free(state, i) then
      taken[#taken + 1] = k
    end
  end
  if #taken == 0 then
    return nil
  end
  table.insert(taken, 1, 0)
  return taken
end

-- kind: the state byte ('h', 'r', 'c' or 'b')
local function take(i, id, owner, until_ms, kind)
  redis.call('SETRANGE', STATE, i - 1, kind)
  redis.call('HSET', OWNER, i, owner)
  redis.call('ZADD', EXPIRY, until_ms, i .. ':' .. id)
  changed(id, STATUS[string.byte(kind)])
end

local function free(i, id)
  redis.call('SETRANGE', STATE, i - 1, '.')
  redis.call('HDEL', OWNER, i)
  redis.call('ZREM', EXPIRY, i .. ':' .. id)
  changed(id, 'available')
end

local function extend(i, id, until_ms)
  redis.call('ZADD', EXPIRY, until_ms, i .. ':' .. id)
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


-- The prices of a new hold, fixed in the same step as its seats (app/services/pricing.py
-- builds the tiers): the occupancy it sees is the seats held or booked (h, r, c) among the
-- sellable ones (every seat but the blocked), read from `state` before the hold takes any.
-- tiers: "pct=p1,p2,...;" ascending by pct, each the category prices (in the room's category
-- order) that apply from pct percent occupancy on; '' for no prices. codes: one byte per
-- seat, its category's position ('A' is the first). Returns occupied, capacity and the
-- chosen seats' prices as "p,p,..." ('' without tiers).
local function hold_prices(state, seat_count, tiers, codes, chosen)
  local seen = string.sub(state, 1, seat_count)
  local occupied = select(2, string.gsub(seen, '[hrc]', ''))
  local capacity = seat_count - select(2, string.gsub(seen, 'b', ''))
  if tiers == '' then
    return occupied, capacity, ''
  end
  local applies = ''
  for pct, list in string.gmatch(tiers, '(%d+)=([^;]*);') do
    if occupied * 100 >= tonumber(pct) * capacity then applies = list end
  end
  local by_kind = {}
  for p in string.gmatch(applies, '[^,]+') do by_kind[#by_kind + 1] = p end
  local prices = {}
  for k, i in ipairs(chosen) do prices[k] = by_kind[string.byte(codes, i) - 64] or '0' end
  return occupied, capacity, table.concat(prices, ',')
end
