-- KEYS events types | ARGV group stop_at_first -> unread entries of the group's types
local g = last_delivered(KEYS[1])[ARGV[1]]
if not g then return 0 end
local types = type_set(KEYS[2])
local all, first = types['*'], ARGV[2] == '1'
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
