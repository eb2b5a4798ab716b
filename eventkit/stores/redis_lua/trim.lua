-- KEYS events ids meta counts (due types records leases lease_due seen)...
-- ARGV before_ms|'' max_events|'' group... -> {removed, kept}
local before, max_events = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = redis.call('XLEN', KEYS[1])
local head = (max_events and total > max_events) and (total - max_events) or 0
local lasts, groups, protected = last_delivered(KEYS[1]), {}, {}
for gi = 3, #ARGV do
  local k = 5 + (gi - 3) * 6
  for _, id in ipairs(redis.call('ZRANGE', KEYS[k], 0, -1)) do protected[id] = true end
  each_leased(KEYS[k + 3], KEYS[k + 2], redis.call('ZRANGE', KEYS[k + 4], 0, -1, 'WITHSCORES'),
    function(id) protected[id] = true end)
  local types = type_set(KEYS[k + 1])
  local last = lasts[ARGV[gi]]
  groups[#groups + 1] = {last = last and last[1], types = types, all = types['*'],
    records = KEYS[k + 2], seen = KEYS[k + 5], passed = {}}
end
local function unacked(id, etype)
  if protected[id] then return true end
  for _, g in ipairs(groups) do
    if g.last and id_gt(id, g.last) and (g.all or g.types[etype]) then return true end
  end
  return false
end
-- a removed entry leaves the counts, and the seen counts of the groups whose cursor passed it
local removed_types = {}
local function count_removed(id, etype)
  removed_types[etype] = (removed_types[etype] or 0) + 1
  for _, g in ipairs(groups) do
    if g.last and not id_gt(id, g.last) then g.passed[etype] = (g.passed[etype] or 0) + 1 end
  end
end
local ids, event_ids, kept, prefix, first_kept, index, cursor = {}, {}, 0, 0, nil, 0, '-'
while before or index < head do
  local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 1000)
  if #page == 0 then break end
  for _, e in ipairs(page) do
    index = index + 1
    local f = e[2]
    local t = tonumber(field(f, 'timestamp_ms'))
    local etype = field(f, 'event_type') or ''
    local doomed = index <= head or (before ~= nil and t ~= nil and t < before)
    if doomed and not unacked(e[1], etype) then
      ids[#ids + 1], event_ids[#event_ids + 1] = e[1], field(f, 'event_id') or e[1]
      count_removed(e[1], etype)
      if not first_kept then prefix = prefix + 1 end
    else
      if doomed then kept = kept + 1 end
      first_kept = first_kept or e[1]
    end
  end
  cursor = '(' .. page[#page][1]
end
if prefix > 0 then  -- a removable head goes with XTRIM MINID, the holes after it with XDEL
  if first_kept then redis.call('XTRIM', KEYS[1], 'MINID', first_kept)
  else redis.call('XTRIM', KEYS[1], 'MAXLEN', 0) end
end
local holes = {}
for i = prefix + 1, #ids do holes[#holes + 1] = ids[i] end
chunked(holes, function(...) redis.call('XDEL', KEYS[1], ...) end)
chunked(event_ids, function(...) redis.call('HDEL', KEYS[2], ...) end)
add_counts(KEYS[4], removed_types, -1)
for _, g in ipairs(groups) do
  chunked(ids, function(...) redis.call('HDEL', g.records, ...) end)
  add_counts(g.seen, g.passed, -1)
end
redis.call('HSET', KEYS[3], 'kept_unacked', kept)
return {#ids, kept}
