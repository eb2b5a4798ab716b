-- KEYS events types meta counts seen | ARGV group stop_at_first -> unread entries of the group's types
-- Once the counts are kept (meta `counted`) and add up to the stream's length, lag is their
-- difference over the group's types: O(types), whatever the stream holds. Else (a namespace of an
-- earlier eventkit opened read-only, or entries another program added or deleted by hand) the
-- entries after the group's cursor are counted.
local function counts_hold()
  if not redis.call('HGET', KEYS[3], 'counted') then return false end
  local total = 0
  for _, n in ipairs(redis.call('HVALS', KEYS[4])) do total = total + tonumber(n) end
  return total == redis.call('XLEN', KEYS[1])
end
local g = last_delivered(KEYS[1])[ARGV[1]]
if not g then return 0 end
local types = type_set(KEYS[2])
local all, first = types['*'], ARGV[2] == '1'
if counts_hold() then
  local names = {}
  if all then names = redis.call('HKEYS', KEYS[4]) else for t in pairs(types) do names[#names + 1] = t end end
  if #names == 0 then return 0 end
  local counts = redis.call('HMGET', KEYS[4], unpack(names))
  local seen = redis.call('HMGET', KEYS[5], unpack(names))
  local n = 0
  for i = 1, #names do n = n + (tonumber(counts[i]) or 0) - (tonumber(seen[i]) or 0) end
  return math.max(0, n)
end
if all and g[2] and not first then return g[2] end  -- Redis knows the lag unless holes hide it
local n, cursor, size = 0, '(' .. g[1], first and 16 or 1000  -- "any?" mostly needs one page
while true do
  local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', size)
  size = math.min(size * 4, 1000)
  if #page == 0 then return n end
  for _, e in ipairs(page) do
    if all or types[field(e[2], 'event_type') or ''] then
      n = n + 1
      if first then return n end
    end
  end
  cursor = '(' .. page[#page][1]
end
