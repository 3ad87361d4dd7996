-- Prepended to every waiting-room script by WaitingRoomStore (waiting_room_store.py): one
-- showtime's queue, under its hash tag. Numbers are never given twice: `last` only grows.
-- KEYS[1]  room:    hash: the settings (on, opens_at, opens_at_iso, rate, max_active,
--                   session_ms, expire_at, showtime_id) and the state (opened, base,
--                   pre_count, serving, last, credit, tick_ms, left_waiting, counters,
--                   published: the public status last pushed)
-- KEYS[2]  pre:     sorted set, user -> a random score given at joining: those who joined
--                   before the opening; at the opening they get base+1.. in score order
--                   (their number is base + rank + 1; the set no longer changes once open)
-- KEYS[3]  ids:     hash, entry id -> user          KEYS[4] entry: hash, user -> entry id
-- KEYS[5]  num:     hash, user -> number (given after the opening)
-- KEYS[6]  who:     hash, number -> user (given after the opening)
-- KEYS[7]  ended:   hash, user -> done | left | expired (their current entry's end)
-- KEYS[8]  active:  sorted set, user -> epoch ms their admission ends (admitted, not ended)
-- KEYS[9]  events:  stream of the public status (`queue`: JSON), one entry per change
-- KEYS[10] recent:  list of "ms:admitted" per admitting tick (admissions in the last minute)
local ROOM, PRE, IDS, ENTRY, NUM, WHO, ENDED, ACTIVE, EVENTS, RECENT =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local EVENTS_MAXLEN = 1000

local function num(field)
  return tonumber(redis.call('HGET', ROOM, field) or '0') or 0
end

local function is_on()
  return redis.call('HGET', ROOM, 'on') == '1'
end

-- every key of the room ends at the room's horizon (the showtime's start and a day)
local function keep(key)
  local at = num('expire_at')
  if at > 0 then
    redis.call('PEXPIREAT', key, at)
  end
end

-- the opening, once, when its time has come: the pre-queue gets the numbers after `last`
local function open_if_due()
  if not is_on() or num('opened') == 1 or NOW < num('opens_at') then
    return
  end
  local base = num('last')
  local count = redis.call('ZCARD', PRE)
  redis.call('HSET', ROOM, 'opened', 1, 'opened_at', NOW, 'base', base, 'pre_count', count, 'last', base + count)
end

-- the user's current number (nil in the pre-queue before the opening, or without an entry)
local function number_of(user)
  local given = redis.call('HGET', NUM, user)
  if given then
    return tonumber(given)
  end
  if num('opened') == 1 then
    local rank = redis.call('ZRANK', PRE, user)
    if rank then
      return num('base') + rank + 1
    end
  end
  return nil
end

-- who was given `number` (a user whose current number is another no longer holds it)
local function holder_of(number)
  local base = num('base')
  if num('opened') == 1 and number > base and number <= base + num('pre_count') then
    return redis.call('ZRANGE', PRE, number - base - 1, number - base - 1)[1]
  end
  return redis.call('HGET', WHO, number)
end

-- {status, number, admitted_until}: pre_queue, waiting, admitted, done, left, expired
local function status_of(user)
  local number = number_of(user)
  local ended = redis.call('HGET', ENDED, user)
  if ended then
    return ended, number, nil
  end
  if number == nil then
    return 'pre_queue', nil, nil
  end
  if number > num('serving') then
    return 'waiting', number, nil
  end
  local admitted_until = tonumber(redis.call('ZSCORE', ACTIVE, user) or '0')
  if admitted_until > NOW then
    return 'admitted', number, admitted_until
  end
  return 'expired', number, nil
end

local function public_status()
  return cjson.encode({
    showtime_id = num('showtime_id'), on = is_on(), open = num('opened') == 1,
    serving_number = num('serving'), last_number = num('last'), admit_per_minute = num('rate'),
    max_active = num('max_active'), opens_at = redis.call('HGET', ROOM, 'opens_at_iso') or cjson.null})
end

-- push the public status on the stream when it differs from the last one pushed
local function publish()
  local status = public_status()
  if redis.call('HGET', ROOM, 'published') == status then
    return false
  end
  redis.call('HSET', ROOM, 'published', status)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'queue', status)
  keep(EVENTS)
  return true
end

-- an entry as its owner sees it: {user, status, number|'', admitted_until|'', serving, rate,
-- opens_at (ISO 8601)}
local function describe(user)
  local status, number, admitted_until = status_of(user)
  return {user, status, number or '', admitted_until or '', num('serving'), num('rate'),
          redis.call('HGET', ROOM, 'opens_at_iso') or ''}
end
