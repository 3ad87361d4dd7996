-- Compare-and-set or compare-and-delete seat keys of one owner.
-- KEYS[1..] seat keys
-- ARGV[1] expected owner token   ARGV[2] new owner token, or '' to delete
-- ARGV[3] TTL in ms for the new owner (ignored when deleting)
-- Keys that belong to someone else are left alone. Returns the number changed.
local n = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    if ARGV[2] == '' then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], ARGV[2], 'PX', ARGV[3])
    end
    n = n + 1
  end
end
return n
