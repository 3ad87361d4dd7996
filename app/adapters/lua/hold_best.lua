-- Best available: choose seats for a party of n and hold them, in one atomic step, so
-- no other request can take a chosen seat in between. The rules are those of
-- app/services/seat_choice.py (its model is the specification, and the tests hold this
-- script to it): (1) n side by side in one row stranding no seat, nearest the focal
-- point; (2) the same stranding one; (3) split over consecutive rows, each part at
-- least two side by side (each part the best window of its size in its row), fewest
-- stranded, nearest. Distances are exact integers: the focal point comes in sixths.
-- KEYS[1]   the user's live-hold key of this showtime  ({st:S}:user:<user id>)
-- KEYS[2]   the hold's record                           ({st:S}:hold:<hold id>)
-- KEYS[3]   the showtime's sync marker                  ({st:S}:synced)
-- KEYS[4..] the seat key of every seat of the screen, in row then position order
-- ARGV[1] hold id   ARGV[2] TTL in ms   ARGV[3] user id   ARGV[4] expiry as ISO 8601
-- ARGV[5] '1' to decide without the sync marker   ARGV[6] the hold's owner token (SeatOwner)
-- ARGV[7] n   ARGV[8] focal x in sixths   ARGV[9] focal y in sixths   ARGV[10] most rows a split uses
-- ARGV[11] the seats, in KEYS order: "id,x,y,e;" each, e = 1 where the party may sit (its category)
-- Returns (HoldOutcome in seat_store.py) {1, seat id, ...} when held; {0} when no placement
-- exists (nothing taken); {-1, hold id} when the user already holds seats here; {-2} when
-- Redis does not know this showtime's booked seats: rebuild, then retry.
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[3]) == 0 then
  return {-2}
end
local live = redis.call('GET', KEYS[1])
if live then
  return {-1, live}
end
local n = tonumber(ARGV[7])
local fx6, fy6, max_parts = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])

local ids, xs, ys, ok = {}, {}, {}, {}
for id, x, y, e in string.gmatch(ARGV[11], '(%d+),(%d+),(%d+),(%d);') do
  ids[#ids + 1], xs[#xs + 1], ys[#ys + 1], ok[#ok + 1] = id, tonumber(x), tonumber(y), e == '1'
end
local count = #ids
local free = {}
for i = 1, count do
  free[i] = redis.call('EXISTS', KEYS[3 + i]) == 0
end

-- runs of free seats at consecutive positions of one row: {first index, length}
local runs = {}
local i = 1
while i <= count do
  if free[i] then
    local j = i
    while j < count and free[j + 1] and ys[j + 1] == ys[i] and xs[j + 1] == xs[j] + 1 do
      j = j + 1
    end
    runs[#runs + 1] = {i, j - i + 1}
    i = j + 1
  else
    i = i + 1
  end
end

local function all_ok(first, size)
  for k = first, first + size - 1 do
    if not ok[k] then
      return false
    end
  end
  return true
end

local function spread(sum6x, sum6y, size)
  local dx, dy = sum6x - size * fx6, sum6y - size * fy6
  return dx * dx + dy * dy
end

-- key order: stranded, spread, row, first x
local function better(a, b)
  if b == nil then return true end
  for k = 1, 4 do
    if a[k] ~= b[k] then return a[k] < b[k] end
  end
  return false
end

-- rules 1 and 2: one row
local best, best_first = nil, nil
local windows = {}  -- rule 3: best window per row and size: windows[y][size] = {key, first index}
for _, run in ipairs(runs) do
  local first, len = run[1], run[2]
  for size = 1, math.min(n, len) do
    for o = 0, len - size do
      local a = first + o
      if all_ok(a, size) then
        local stranded = (o == 1 and 1 or 0) + ((len - o - size) == 1 and 1 or 0)
        local x0, y = xs[a], ys[a]
        local s = spread(6 * (size * x0 + size * (size - 1) / 2), 6 * size * y, size)
        if size == n and stranded <= 1 then
          local key = {stranded, s, y, x0}
          if better(key, best) then best, best_first = key, a end
        end
        if size >= 2 and size < n then
          windows[y] = windows[y] or {}
          local slot = windows[y][size]
          local key = {stranded, s, x0, 0}
          if slot == nil or better(key, slot[1]) then windows[y][size] = {key, a} end
        end
      end
    end
  end
end

local chosen = {}
if best then
  for k = best_first, best_first + n - 1 do chosen[#chosen + 1] = k end
else
  -- rule 3: parts of at least two in consecutive rows
  local rows = {}
  for y, _ in pairs(windows) do rows[#rows + 1] = y end
  table.sort(rows)
  local best3, best3_parts = nil, nil
  local function try(first_row, parts)
    local stranded, sx, sy, firsts = 0, 0, 0, {}
    for p, size in ipairs(parts) do
      local slot = windows[first_row + p - 1] and windows[first_row + p - 1][size]
      if slot == nil then return end
      local a = slot[2]
      stranded = stranded + slot[1][1]
      sx = sx + size * xs[a] + size * (size - 1) / 2
      sy = sy + size * ys[a]
      firsts[p] = {a, size}
    end
    local key = {stranded, spread(6 * sx, 6 * sy, n), first_row, xs[firsts[1][1]]}
    if better(key, best3) then best3, best3_parts = key, firsts end
  end
  local function compose(first_row, rest, parts)
    if rest == 0 then
      if #parts >= 2 then try(first_row, parts) end
      return
    end
    if #parts == max_parts then return end
    for size = 2, rest do
      if rest - size ~= 1 then
        parts[#parts + 1] = size
        compose(first_row, rest - size, parts)
        parts[#parts] = nil
      end
    end
  end
  for _, y in ipairs(rows) do compose(y, n, {}) end
  if best3 == nil then
    return {0}
  end
  for _, part in ipairs(best3_parts) do
    for k = part[1], part[1] + part[2] - 1 do chosen[#chosen + 1] = k end
  end
end

local owner = ARGV[6]
local seat_ids = {}
for _, k in ipairs(chosen) do
  redis.call('SET', KEYS[3 + k], owner, 'PX', ARGV[2])
  seat_ids[#seat_ids + 1] = tonumber(ids[k])
end
redis.call('HSET', KEYS[2], 'user', ARGV[3], 'seats', cjson.encode(seat_ids), 'expires_at', ARGV[4], 'state', 'held')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local out = {1}
for _, id in ipairs(seat_ids) do out[#out + 1] = id end
return out
