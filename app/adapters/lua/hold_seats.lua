-- Take every requested seat of one showtime for one hold, or none of them; with the
-- orphan rule on, refuse a hold that would leave a free seat alone in its run (the rule
-- of app/services/seat_choice.py, checked here in the same step as the take, so that
-- parallel holds cannot together strand a seat that each alone would have been refused).
-- KEYS[1]   the user's live-hold key of this showtime  ({st:S}:user:<user id>)
-- KEYS[2]   the hold's record                           ({st:S}:hold:<hold id>)
-- KEYS[3]   the showtime's sync marker                  ({st:S}:synced)
-- KEYS[4..3+r] one key per requested seat (r = #requested, ARGV[9]), then, with the
--           orphan rule, every other seat of the rows they are in ({st:S}:seat:<seat id>)
-- ARGV[1] hold id   ARGV[2] TTL in ms   ARGV[3] user id
-- ARGV[4] seat ids as JSON   ARGV[5] expiry as ISO 8601
-- ARGV[6] '1' to decide without the sync marker (the caller checks PostgreSQL itself)
-- ARGV[7] the hold's owner token for the seat keys (SeatOwner in seat_store.py)
-- ARGV[8] '' (no orphan rule), or "x,y;" for every key from KEYS[4] on, in order
-- ARGV[9] r, the number of requested seats
-- Returns (HoldOutcome in seat_store.py) {1} when held; {0, i, ...} with the 1-based positions of the seats
-- already taken (nothing was taken); {-1, hold id} when the user already has a
-- live hold on this showtime (nothing was taken); {-2} when Redis does not know
-- this showtime's booked seats (after a restart or flush): rebuild, then retry;
-- {-3, i, ...} with the 1-based positions (from KEYS[4]) of the seats it would strand.
if ARGV[6] ~= '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  return {-2}
end
local live = redis.call('GET', KEYS[1])
if live then
  return {-1, live}
end
local r = tonumber(ARGV[9]) or (#KEYS - 3)
local taken = {}
for i = 4, 3 + r do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    taken[#taken + 1] = i - 3
  end
end
if #taken > 0 then
  table.insert(taken, 1, 0)
  return taken
end
if ARGV[8] ~= '' then
  -- the seats of the rows concerned, in row then position order; free before, free after
  local seats = {}
  local k = 0
  for x, y in string.gmatch(ARGV[8], '(%d+),(%d+);') do
    k = k + 1
    local requested = k <= r
    local free = requested or redis.call('EXISTS', KEYS[3 + k]) == 0
    seats[k] = {x = tonumber(x), y = tonumber(y), pos = k, before = free, after = free and not requested}
  end
  table.sort(seats, function(a, b) return a.y < b.y or (a.y == b.y and a.x < b.x) end)
  local function alone(i, state)
    local s = seats[i]
    if not s[state] then return false end
    local left, right = seats[i - 1], seats[i + 1]
    local with_left = left and left[state] and left.y == s.y and left.x == s.x - 1
    local with_right = right and right[state] and right.y == s.y and right.x == s.x + 1
    return not with_left and not with_right
  end
  local stranded = {}
  for i = 1, #seats do
    if alone(i, 'after') and not alone(i, 'before') then
      stranded[#stranded + 1] = seats[i].pos
    end
  end
  if #stranded > 0 then
    -- exempt: a run the hold takes from has exactly one seat more than it takes from it
    local exempt = false
    local i = 1
    while i <= #seats and not exempt do
      if seats[i].before then
        local j, len, took = i, 1, (seats[i].pos <= r) and 1 or 0
        while seats[j + 1] and seats[j + 1].before and seats[j + 1].y == seats[i].y
            and seats[j + 1].x == seats[j].x + 1 do
          j = j + 1
          len = len + 1
          if seats[j].pos <= r then took = took + 1 end
        end
        if took > 0 and len == took + 1 then exempt = true end
        i = j + 1
      else
        i = i + 1
      end
    end
    if not exempt then
      table.sort(stranded)
      table.insert(stranded, 1, -3)
      return stranded
    end
  end
end
local owner = ARGV[7]
for i = 4, 3 + r do
  redis.call('SET', KEYS[i], owner, 'PX', ARGV[2])
end
redis.call('HSET', KEYS[2], 'user', ARGV[3], 'seats', ARGV[4], 'expires_at', ARGV[5], 'state', 'held')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1}
