-- The operators' view: {pre_queue, waiting, admitted (sessions ever), active, serving, last,
-- admissions in the last minute, expired, done, left, joined, status JSON}. Read only.
local recent = 0
for _, item in ipairs(redis.call('LRANGE', RECENT, 0, -1)) do
  local at, count = string.match(item, '(%d+):(%d+)')
  if tonumber(at) > NOW - 60000 then
    recent = recent + tonumber(count)
  end
end
local active = redis.call('ZCOUNT', ACTIVE, '(' .. NOW, '+inf')
local pre = 0
if num('opened') ~= 1 then
  pre = redis.call('ZCARD', PRE)
end
return {pre, math.max(0, num('last') - num('serving') - num('left_waiting')), num('admitted'), active,
        num('serving'), num('last'), recent, num('expired'), num('done'), num('left'), num('joined'),
        public_status()}
