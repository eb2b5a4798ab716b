-- KEYS events groups records due types leases lease_due counters seen counts
-- ARGV group to ('0' | '$' | 'ts') ts_ms force dry
-- -> {'busy', leased} | {entry id the group now reads after ('0-0': all), unread, in_flight, retrying}
local group, to, force, dry = ARGV[1], ARGV[2], ARGV[4] == '1', ARGV[5] == '1'
if redis.call('SISMEMBER', KEYS[2], group) == 0 then return redis.error_reply('NOGROUP ' .. group) end
local now = now_ms()
-- 1. what the group holds: deliveries in flight (leased now, or with an expired lease), retrying
local unsettled = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
local ids, in_flight, retrying, leased = {}, 0, 0, 0
for i = 1, #unsettled, 2 do
  local r = load_record(KEYS[3], unsettled[i], KEYS[1])
  ids[#ids + 1] = unsettled[i]
  if r and r.status == 'in_flight' then
    in_flight = in_flight + 1
    if tonumber(unsettled[i + 1]) >= now then leased = leased + 1 end
  else
    retrying = retrying + 1
  end
end
-- first deliveries in flight under their claims' leases (the ids without a record)
local lease_pairs = redis.call('ZRANGE', KEYS[7], 0, -1, 'WITHSCORES')
each_leased(KEYS[6], KEYS[3], lease_pairs, function(id, deadline)
  ids[#ids + 1], in_flight = id, in_flight + 1
  if deadline >= now then leased = leased + 1 end
end)
if leased > 0 and not force then return {'busy', leased} end
-- 2. the new position: the last entry before the first one stamped at or after ts ('ts'), none
-- ('0'), or the last entry ('$', and 'ts' when no entry is that late)
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local at = last[1] and last[1][1] or '0-0'
if to == '0' then
  at = '0-0'
elseif to == 'ts' then
  local ts, prev, cursor, found = tonumber(ARGV[3]), '0-0', '-', false
  while not found do
    local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 500)
    if #page == 0 then break end
    for _, e in ipairs(page) do
      local t = tonumber(field(e[2], 'timestamp_ms'))
      if t and t >= ts then found = true break end
      prev = e[1]
    end
    cursor = '(' .. page[#page][1]
  end
  if found then at = prev end
end
-- 3. the group's events after it, counted; their delivery records go (delivered afresh)
local types = type_set(KEYS[5])
local all, unread, cursor, after = types['*'], 0, '(' .. at, {}
while true do
  local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 1000)
  if #page == 0 then break end
  local later = {}
  for _, e in ipairs(page) do
    if all or types[field(e[2], 'event_type') or ''] then unread = unread + 1 end
    tally_types(after, e[2])
    later[#later + 1] = e[1]
  end
  if not dry then redis.call('HDEL', KEYS[3], unpack(later)) end
  cursor = '(' .. page[#page][1]
end
if dry then return {at, unread, in_flight, retrying} end
-- 4. every unsettled delivery ends (its lease token is gone, so a late ack finds nothing), the
-- PEL with it, and the group reads on after `at`
chunked(ids, function(...) redis.call('XACK', KEYS[1], group, ...) end)
chunked(ids, function(...) redis.call('HDEL', KEYS[3], ...) end)
redis.call('DEL', KEYS[4], KEYS[6], KEYS[7])
redis.call('HSET', KEYS[8], 'leased', 0)
set_seen(KEYS[9], KEYS[10], after)
redis.call('XGROUP', 'SETID', KEYS[1], group, at)
return {at, unread, in_flight, retrying}
