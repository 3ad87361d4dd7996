-- An entry as its owner sees it (``describe``), or {} for an unknown (or replaced) entry id.
-- ARGV[1] entry id
open_if_due()
local user = redis.call('HGET', IDS, ARGV[1])
if not user or redis.call('HGET', ENTRY, user) ~= ARGV[1] then
  return {}
end
return describe(user)
