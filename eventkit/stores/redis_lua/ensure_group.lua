-- KEYS events groups types counts seen meta | ARGV group start ('0' | '$' | 'ts') ts_ms type...
-- A new group's seen counts are what lies up to its start (lag = counts - seen)
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  counted_if_empty(KEYS[1], KEYS[4], KEYS[6])
  local start, passed = ARGV[2], {}
  if start == 'ts' then  -- the first entry (publish order) with timestamp_ms >= ts; else the end
    start = '$'
    local ts, prev, cursor = tonumber(ARGV[3]), '0', '-'
    while start == '$' do
      local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 500)
      if #page == 0 then break end
      for _, e in ipairs(page) do
        local t = tonumber(field(e[2], 'timestamp_ms'))
        if t and t >= ts then start = prev break end
        tally_types(passed, e[2])
        prev = e[1]
      end
      cursor = '(' .. page[#page][1]
    end
  end
  if redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')['ok'] then
    redis.call('DEL', KEYS[5])
    if start == '$' then set_seen(KEYS[5], KEYS[4], {}) else add_counts(KEYS[5], passed, 1) end
  end  -- BUSYGROUP: the group is there already, with its counts
  redis.call('SADD', KEYS[2], ARGV[1])
end
if #ARGV >= 4 then redis.call('SADD', KEYS[3], unpack(ARGV, 4)) end
