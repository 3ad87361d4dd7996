-- Turn the waiting room on, or change its settings while it is on (the next tick follows).
-- ARGV[1] showtime id  ARGV[2] opens_at (epoch ms)  ARGV[3] opens_at (ISO 8601)
-- ARGV[4] admit_per_minute  ARGV[5] max_active  ARGV[6] session ms  ARGV[7] horizon (epoch ms)
-- ARGV[8] '1' to publish the status now (an admin's change), '0' (the scheduler's refresh)
-- A room turned on anew starts closed, after every number given before. Returns {was on}.
local was_on = is_on()
if not was_on then
  local last = num('last')
  redis.call('HSET', ROOM, 'opened', 0, 'base', last, 'pre_count', 0, 'serving', last, 'credit', 0,
             'tick_ms', 0, 'left_waiting', 0)
end
redis.call('HSET', ROOM, 'on', 1, 'showtime_id', ARGV[1], 'opens_at', ARGV[2], 'opens_at_iso', ARGV[3],
           'rate', ARGV[4], 'max_active', ARGV[5], 'session_ms', ARGV[6], 'expire_at', ARGV[7])
keep(ROOM)
open_if_due()
if ARGV[8] == '1' then
  publish()
end
return {was_on and 1 or 0}
