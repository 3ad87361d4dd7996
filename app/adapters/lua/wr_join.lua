-- A user joins the queue: their live entry again ({0, id, describe...}), or a new one ({1,
-- id, describe...}), or {-1} when the room is off. Before the opening a new entry goes to the pre-queue with the
-- random score ARGV[3]; after it, it takes the next number. One whose entry ended (done,
-- left, expired) joins anew at the back: their old number is never given again.
-- ARGV[1] user  ARGV[2] a new entry id  ARGV[3] a random score in [0, 1)
open_if_due()
if not is_on() then
  return {-1}
end
local user = ARGV[1]
local current = redis.call('HGET', ENTRY, user)
if current then
  local status = status_of(user)
  if status == 'pre_queue' or status == 'waiting' or status == 'admitted' then
    local found = describe(user)
    table.insert(found, 1, current)
    table.insert(found, 1, 0)
    return found
  end
  redis.call('HDEL', IDS, current)
  redis.call('HDEL', ENDED, user)
  if redis.call('ZREM', ACTIVE, user) == 1 then
    redis.call('HINCRBY', ROOM, 'expired', 1)  -- lapsed, not yet ended by a step: it would end the new entry
  end
end
if num('opened') == 1 then
  local number = redis.call('HINCRBY', ROOM, 'last', 1)
  redis.call('HSET', NUM, user, number)
  redis.call('HSET', WHO, number, user)
  keep(NUM)
  keep(WHO)
else
  redis.call('ZADD', PRE, ARGV[3], user)
  keep(PRE)
end
redis.call('HSET', ENTRY, user, ARGV[2])
redis.call('HSET', IDS, ARGV[2], user)
redis.call('HINCRBY', ROOM, 'joined', 1)
keep(ENTRY)
keep(IDS)
local made = describe(user)
table.insert(made, 1, ARGV[2])
table.insert(made, 1, 1)
return made
