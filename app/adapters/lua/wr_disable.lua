-- Turn the waiting room off: holds need no admission; every entry and session ends with it.
-- The counters stay, so that a room turned on again never gives a number twice.
-- Returns 1 if it was on.
local was_on = is_on()
redis.call('DEL', PRE, IDS, ENTRY, NUM, WHO, ENDED, ACTIVE, RECENT)
redis.call('HSET', ROOM, 'on', 0, 'opened', 0, 'serving', num('last'), 'pre_count', 0, 'left_waiting', 0,
           'credit', 0)
publish()
return was_on and 1 or 0
