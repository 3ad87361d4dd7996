-- Best available: choose seats for a party of n and hold them, in one atomic step, so
-- no other request can take a chosen seat in between. The rules are those of
-- app/services/seat_choice.py (its model is the specification, and the tests hold this
-- script to it): (1) n side by side in one row stranding no seat, nearest the focal
-- point; (2) the same stranding one; (3) split over consecutive rows, each part at
-- least two side by side (each part the best window of its size in its row), fewest
-- stranded, nearest. An accessible party (k wheelchair spaces) takes rules 1 and 2 only,
-- with windows holding exactly k spaces and companions only beside a space. Distances
-- are exact integers: the focal point comes in sixths.
-- Cost: one pass over the room to find the runs of free seats; in each run the distance
-- is convex in the window's start, so only a dozen starts per run can be the best one
-- (the ends, the stranding ones and those around the focal point): the script stays
-- linear in the number of seats with a small constant, whatever the party.
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
-- KEYS[6] the user's live-hold key of this showtime   KEYS[7] the hold's record
-- ARGV[1] hold id   ARGV[2] TTL in ms   ARGV[3] user id   ARGV[4] expiry as ISO 8601
-- ARGV[5] '1' to decide without the sync marker   ARGV[6] the hold's owner token
-- ARGV[7] n   ARGV[8] focal x in sixths   ARGV[9] focal y in sixths   ARGV[10] most rows a split uses
-- ARGV[11] the segments of the room   ARGV[12] one byte per seat: 's' the party may sit there,
-- 'w' a wheelchair space, 'c' a companion seat (both for accessible parties), anything else not
-- ARGV[13] k, the wheelchair spaces an accessible party needs (0: not accessible)
-- ARGV[14] the seat ids in index order, ARGV[15] digits each   ARGV[16] the layout version
-- KEYS[8] the showtime's waiting room  KEYS[9] its active sessions  ARGV[17] the gate
-- (refused_before_taking in seat_state.lua)
-- ARGV[18] the price tiers, ARGV[19] the seats' category codes, ARGV[20] the room's seat count,
-- ARGV[21] the currency (hold_prices in seat_state.lua): the prices are kept in the hold's record
-- Returns (HoldOutcome in seat_store.py) {1, occupied, capacity, "price,...", seat id, ...} when
-- held (the occupancy the prices followed: seats taken before this hold, of the sellable ones); {0} when no placement
-- exists (nothing taken); {-1, hold id} when the user already holds seats here; {-2} when
-- Redis does not know this showtime's booked seats: rebuild, then retry; {-4} when the
-- waiting room is on and the user has no live admission.
local refused = refused_before_taking(ARGV[5], KEYS[6], ARGV[17], KEYS[8], KEYS[9], ARGV[3])
if refused then
  return refused
end
purge()
local state = redis.call('GET', STATE) or ''
local n, fx6, fy6, max_parts = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local classes, k = ARGV[12], tonumber(ARGV[13])
local SEAT, SPACE, COMPANION = string.byte('s'), string.byte('w'), string.byte('c')  -- classes' bytes

-- runs of free seats at consecutive positions of one row: {first index, length, x, y}
-- (found by string.find over each segment's bytes: the pass over the room runs in C)
local runs = {}
for _, seg in ipairs(segments(ARGV[11])) do
  local first, count, x0, y = seg[1], seg[2], seg[3], seg[4]
  local bytes = string.sub(state, first, first + count - 1)
  if #bytes < count then bytes = bytes .. string.rep('.', count - #bytes) end
  local from, to = string.find(bytes, FREE_RUN)
  while from do
    runs[#runs + 1] = {first + from - 1, to - from + 1, x0 + from - 1, y}
    from, to = string.find(bytes, FREE_RUN, to + 1)
  end
end

local function spread(sum6x, sum6y, size)
  local dx, dy = sum6x - size * fx6, sum6y - size * fy6
  return dx * dx + dy * dy
end

local function better(a, b)
  if b == nil then return true end
  for j = 1, 4 do
    if a[j] ~= b[j] then return a[j] < b[j] end
  end
  return false
end

-- a window of `size` seats from index s in run r: {stranded, spread, y, x}
local function window_key(r, s, size)
  local a, len, xa, y = r[1], r[2], r[3], r[4]
  local left, right = s - a, a + len - s - size
  local x = xa + s - a
  local stranded = (left == 1 and 1 or 0) + (right == 1 and 1 or 0)
  return {stranded, spread(6 * (size * x + size * (size - 1) / 2), 6 * size * y, size), y, x}
end

-- the starts in [lo, hi] that can be best for a window of `size` in run r: the distance is
-- convex in the start, and only two starts strand a seat, so the best is at an end, at a
-- stranding start, or next to one of those or to the focal point
local function starts(r, lo, hi, size)
  local a, len, xa = r[1], r[2], r[3]
  if hi - lo <= 13 then  -- a short stretch: every start
    local out = {}
    for s = lo, hi do out[#out + 1] = s end
    return out
  end
  local ideal = a + math.floor((fx6 - 3 * (size - 1)) / 6) - xa
  local out = {}
  for _, s in ipairs({lo, lo + 1, lo + 2, hi - 2, hi - 1, hi, a + 1, a + len - size - 1,
                      ideal - 2, ideal - 1, ideal, ideal + 1, ideal + 2, ideal + 3}) do
    if s >= lo and s <= hi then out[#out + 1] = s end
  end
  return out
end

-- stretches of seats the party may sit on within run r: {first, last}
local function stretches(r)
  local out, bytes = {}, string.sub(classes, r[1], r[1] + r[2] - 1)
  local from, to = string.find(bytes, 's+')
  while from do
    out[#out + 1] = {r[1] + from - 1, r[1] + to - 1}
    from, to = string.find(bytes, 's+', to + 1)
  end
  return out
end

local function accessible_ok(s, size)
  local spaces = 0
  for i = s, s + size - 1 do
    local c = string.byte(classes, i)
    if c == SPACE then
      spaces = spaces + 1
    elseif c == COMPANION then
      local beside = (i > s and string.byte(classes, i - 1) == SPACE)
          or (i < s + size - 1 and string.byte(classes, i + 1) == SPACE)
      if not beside then return false end
    elseif c ~= SEAT then
      return false
    end
  end
  return spaces == k
end

-- rules 1 and 2: one row
local best, best_start = nil, nil
local function consider(r, s)
  local key = window_key(r, s, n)
  if key[1] <= 1 and better(key, best) then best, best_start = key, s end
end
for _, r in ipairs(runs) do
  if r[2] >= n then
    if k > 0 then
      local a, len = r[1], r[2]
      for i = a, a + len - 1 do
        if string.byte(classes, i) == SPACE then
          for s = math.max(a, i - n + 1), math.min(i, a + len - n) do
            if accessible_ok(s, n) then consider(r, s) end
          end
        end
      end
    else
      for _, st in ipairs(stretches(r)) do
        for _, s in ipairs(starts(r, st[1], st[2] - n + 1, n)) do consider(r, s) end
      end
    end
  end
end

local chosen = {}
if best then
  for i = best_start, best_start + n - 1 do chosen[#chosen + 1] = i end
elseif k > 0 then
  return {0}
else
  -- rule 3: the best window of each size 2..n-1 in each row, then parts in consecutive rows
  local windows = {}  -- windows[y][size] = {{stranded, spread, x, 0}, start, x}
  for _, r in ipairs(runs) do
    local y = r[4]
    for _, st in ipairs(stretches(r)) do
      for size = 2, math.min(n - 1, st[2] - st[1] + 1) do
        for _, s in ipairs(starts(r, st[1], st[2] - size + 1, size)) do
          local w = window_key(r, s, size)
          local key = {w[1], w[2], w[4], 0}
          windows[y] = windows[y] or {}
          local slot = windows[y][size]
          if slot == nil or better(key, slot[1]) then windows[y][size] = {key, s, w[4]} end
        end
      end
    end
  end
  local rows = {}
  for y, _ in pairs(windows) do rows[#rows + 1] = y end
  table.sort(rows)
  local best3, best3_parts = nil, nil
  local function try(first_row, parts)
    local stranded, sx, sy, firsts = 0, 0, 0, {}
    for p, size in ipairs(parts) do
      local y = first_row + p - 1
      local slot = windows[y] and windows[y][size]
      if slot == nil then return end
      stranded = stranded + slot[1][1]
      sx = sx + size * slot[3] + size * (size - 1) / 2
      sy = sy + size * y
      firsts[p] = {slot[2], size, slot[3]}
    end
    local key = {stranded, spread(6 * sx, 6 * sy, n), first_row, firsts[1][3]}
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
    for i = part[1], part[1] + part[2] - 1 do chosen[#chosen + 1] = i end
  end
end

local occupied, capacity, prices = hold_prices(state, tonumber(ARGV[20]), ARGV[18], ARGV[19], chosen)
local ids, width = ARGV[14], tonumber(ARGV[15])
local until_ms = NOW + tonumber(ARGV[2])
local seat_ids, out = {}, {1, occupied, capacity, prices}
for _, i in ipairs(chosen) do
  local id = tonumber(string.sub(ids, (i - 1) * width + 1, i * width))
  take(i, id, ARGV[6], until_ms, 'h')
  seat_ids[#seat_ids + 1] = id
  out[#out + 1] = id
end
keep_alive(until_ms)
emit()
redis.call('HSET', KEYS[7], 'user', ARGV[3], 'seats', cjson.encode(seat_ids), 'idx', table.concat(chosen, ','),
           'ver', ARGV[16], 'expires_at', ARGV[4], 'state', 'held', 'prices', prices, 'cur', ARGV[21],
           'occ', occupied, 'cap', capacity)
redis.call('PEXPIRE', KEYS[7], ARGV[2])
redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[2])
return out
