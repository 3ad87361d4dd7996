-- One admission step (the scheduler runs it about every second): open if due; end the
-- sessions whose time is up (expired); then admit the next numbers, in order, for the
-- time since the last step at `rate` a minute (never a burst for a missed second: at most
-- two seconds' worth, and unused credit is not saved), never past `max_active` active
-- sessions. A number whose holder left, or has another number now, is passed over.
-- Finally the public status is pushed if it changed.
-- Returns {admitted now, expired now, active, serving, last, published (1|0)}.
if not is_on() then
  return {0, 0, 0, num('serving'), num('last'), 0}
end
open_if_due()
local lapsed = redis.call('ZRANGEBYSCORE', ACTIVE, '-inf', NOW)
for _, user in ipairs(lapsed) do
  redis.call('HSETNX', ENDED, user, 'expired')
end
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', ACTIVE, '-inf', NOW)
  redis.call('HINCRBY', ROOM, 'expired', #lapsed)
  keep(ENDED)
end
local last_tick = num('tick_ms')
local elapsed = 1000
if last_tick > 0 then
  elapsed = math.max(0, math.min(NOW - last_tick, 2000))
end
local credit = num('credit') + num('rate') * elapsed / 60000
local room_left = num('max_active') - redis.call('ZCARD', ACTIVE)
local serving, last = num('serving'), num('last')
local session_ms = num('session_ms')
local admitted, passed = 0, 0
while admitted + 1 <= credit and admitted < room_left and serving < last and passed < 10000 do
  serving = serving + 1
  local user = holder_of(serving)
  if user and number_of(user) == serving and not redis.call('HGET', ENDED, user) then
    redis.call('ZADD', ACTIVE, NOW + session_ms, user)
    admitted = admitted + 1
  else
    passed = passed + 1
  end
end
redis.call('HSET', ROOM, 'serving', serving, 'credit', math.min(credit - admitted, 1), 'tick_ms', NOW)
if passed > 0 then
  redis.call('HINCRBY', ROOM, 'left_waiting', -passed)
end
if admitted > 0 then
  redis.call('HINCRBY', ROOM, 'admitted', admitted)
  redis.call('LPUSH', RECENT, NOW .. ':' .. admitted)
  redis.call('LTRIM', RECENT, 0, 299)
  keep(ACTIVE)
  keep(RECENT)
end
local published = publish() and 1 or 0
return {admitted, #lapsed, redis.call('ZCARD', ACTIVE), serving, last, published}
