-- KEYS events groups types | ARGV group start ('0' | '$' | 'ts') ts_ms type...
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  local start = ARGV[2]
  if start == 'ts' then  -- the first entry (publish order) with timestamp_ms >= ts; else the end
    start = '$'
    local ts, prev, cursor = tonumber(ARGV[3]), '0', '-'
    while start == '$' do
      local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 500)
      if #page == 0 then break end
      for _, e in ipairs(page) do
        local t = tonumber(field(e[2], 'timestamp_ms'))
        if t and t >= ts then start = prev break end
        prev = e[1]
      end
      cursor = '(' .. page[#page][1]
    end
  end
  redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')  -- BUSYGROUP: keep it
  redis.call('SADD', KEYS[2], ARGV[1])
end
if #ARGV >= 4 then redis.call('SADD', KEYS[3], unpack(ARGV, 4)) end
