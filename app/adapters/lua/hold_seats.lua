-- Take every requested seat of one showtime for one hold, or none of them; with the
-- orphan rule on, refuse a hold that would leave a free seat alone in its run (the rule
-- of app/services/seat_choice.py, checked here in the same step as the take, so that
-- parallel holds cannot together strand a seat that each alone would have been refused).
-- KEYS[1..5] the showtime's seats and change stream (seat_state.lua)
-- KEYS[6] the user's live-hold key of this showtime   KEYS[7] the hold's record
-- ARGV[1] hold id   ARGV[2] TTL in ms   ARGV[3] user id   ARGV[4] seat ids as JSON
-- ARGV[5] expiry as ISO 8601   ARGV[6] '1' to decide without the sync marker (the caller
-- checks PostgreSQL itself)   ARGV[7] the hold's owner token   ARGV[8] the requested seats'
-- indices, "i,j,..."   ARGV[9] '' (no orphan rule), or the segments of the rows they are in
-- ARGV[10] the layout version (kept in the hold's record)
-- KEYS[8] the showtime's waiting room  KEYS[9] its active sessions  ARGV[11] the gate
-- (refused_before_taking in seat_state.lua)
-- ARGV[12] the price tiers, ARGV[13] the seats' category codes, ARGV[14] the room's seat count,
-- ARGV[15] the currency (hold_prices in seat_state.lua): the prices are kept in the hold's record
-- Returns (HoldOutcome in seat_store.py) {1, occupied, capacity, "price,..."} when held (the
-- occupancy the prices followed: seats taken before this hold, of the sellable ones); {0, k, ...} with the 1-based
-- positions in ARGV[8] of the seats already taken (nothing was taken); {-1, hold id}
-- when the user already has a live hold here; {-2} when Redis does not know this
-- showtime's booked seats: rebuild, then retry; {-3, i, ...} with the indices of the
-- seats it would strand; {-4} when the waiting room is on and the user has no live admission.
local refused = refused_before_taking(ARGV[6], KEYS[6], ARGV[11], KEYS[8], KEYS[9], ARGV[3])
if refused then
  return refused
end
purge()
local state = redis.call('GET', STATE) or ''
local wanted = indices(ARGV[8])
local taken = taken_among(state, wanted)
if taken then
  return taken
end
if ARGV[9] ~= '' then
  local requested = {}
  for _, i in ipairs(wanted) do requested[i] = true end
  -- the seats of the rows concerned, in row then position order; free before, free after
  local seats = {}
  for _, seg in ipairs(segments(ARGV[9])) do
    for k = 0, seg[2] - 1 do
      local i = seg[1] + k
      local before = is_free(state, i)
      seats[#seats + 1] = {i = i, x = seg[3] + k, y = seg[4], before = before, after = before and not requested[i]}
    end
  end
  local function alone(n, when)
    local s = seats[n]
    if not s[when] then return false end
    local left, right = seats[n - 1], seats[n + 1]
    local with_left = left and left[when] and left.y == s.y and left.x == s.x - 1
    local with_right = right and right[when] and right.y == s.y and right.x == s.x + 1
    return not with_left and not with_right
  end
  local stranded = {}
  for n = 1, #seats do
    if alone(n, 'after') and not alone(n, 'before') then
      stranded[#stranded + 1] = seats[n].i
    end
  end
  if #stranded > 0 then
    -- exempt: a run the hold takes from has exactly one seat more than it takes from it
    local exempt = false
    local n = 1
    while n <= #seats and not exempt do
      if seats[n].before then
        local m, len, took = n, 1, requested[seats[n].i] and 1 or 0
        while seats[m + 1] and seats[m + 1].before and seats[m + 1].y == seats[n].y
            and seats[m + 1].x == seats[m].x + 1 do
          m = m + 1
          len = len + 1
          if requested[seats[m].i] then took = took + 1 end
        end
        if took > 0 and len == took + 1 then exempt = true end
        n = m + 1
      else
        n = n + 1
      end
    end
    if not exempt then
      table.insert(stranded, 1, -3)
      return stranded
    end
  end
end
local occupied, capacity, prices = hold_prices(state, tonumber(ARGV[14]), ARGV[12], ARGV[13], wanted)
local until_ms = NOW + tonumber(ARGV[2])
local ids = cjson.decode(ARGV[4])
for k, i in ipairs(wanted) do
  take(i, ids[k], ARGV[7], until_ms, 'h')
end
keep_alive(until_ms)
emit()
redis.call('HSET', KEYS[7], 'user', ARGV[3], 'seats', ARGV[4], 'idx', ARGV[8], 'ver', ARGV[10],
           'expires_at', ARGV[5], 'state', 'held', 'prices', prices, 'cur', ARGV[15], 'occ', occupied,
           'cap', capacity)
redis.call('PEXPIRE', KEYS[7], ARGV[2])
redis.call('SET', KEYS[6], ARGV[1], 'PX', ARGV[2])
return {1, occupied, capacity, prices}
