-- A session or an entry ends. ARGV[1] user  ARGV[2] 'done' (they made a reservation: only
-- an admitted session ends so) or 'left'  ARGV[3] the entry id ('' for the user's current)
-- Returns {1, status before} when it ended now, {0, status} when there was nothing to end,
-- {-1} for no such entry.
open_if_due()
local user = ARGV[1]
local current = redis.call('HGET', ENTRY, user)
if not current or (ARGV[3] ~= '' and ARGV[3] ~= current) then
  return {-1}
end
local status = status_of(user)
if ARGV[2] == 'done' and status ~= 'admitted' then
  return {0, status}
end
if status == 'pre_queue' then
  redis.call('ZREM', PRE, user)
elseif status == 'waiting' then
  redis.call('HINCRBY', ROOM, 'left_waiting', 1)
elseif status ~= 'admitted' then
  return {0, status}
end
redis.call('ZREM', ACTIVE, user)
redis.call('HSET', ENDED, user, ARGV[2])
keep(ENDED)
redis.call('HINCRBY', ROOM, ARGV[2] == 'done' and 'done' or 'left', 1)
return {1, status}
