-- KEYS events records due types counters meta groups leases lease_due seen
-- ARGV group consumer limit lease_ms expired_fmt
-- -> {last entry id (false once something was claimed), ms until the next deadline (-1: none),
--     token, {id, attempt, last_error, fields}... (due again), {id, fields, id, fields...} (first
--     deliveries, attempt 1, under one lease)}
local group, consumer = ARGV[1], ARGV[2]
local limit, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('SISMEMBER', KEYS[7], group) == 0 then return redis.error_reply('NOGROUP ' .. group) end
local now = now_ms()
local token = tostring(redis.call('HINCRBY', KEYS[6], 'leases', 1))
local k = {stream = KEYS[1], records = KEYS[2], due = KEYS[3], counters = KEYS[5],
  leases = KEYS[8], lease_due = KEYS[9]}
-- 0. leases expired before now: their ids without a record get the record of a first delivery
-- in flight (and the lease's deadline), so step 1 takes them like any expired delivery
local function expire_leases()
  local expired = redis.call('ZRANGEBYSCORE', k.lease_due, '-inf', '(' .. now, 'WITHSCORES')
  each_leased(k.leases, k.records, expired, function(id, deadline, old)
    save_record(k.records, id, leased_record(k.leases, old, entry_fields(k.stream, id)))
    redis.call('ZADD', k.due, deadline, id)
  end)
  for i = 1, #expired, 2 do
    local left = tonumber(redis.call('HGET', k.leases, 'left:' .. expired[i])) or 0
    drop_lease(k.leases, k.lease_due, expired[i])
    redis.call('HINCRBY', k.counters, 'leased', -left)
  end
end
expire_leases()
local due_out, retried, records, deadlines = {}, 0, {}, {}
-- 1. due again: retry time reached, or lease expired (an attempt too; the PEL count follows)
local due = redis.call('ZRANGEBYSCORE', k.due, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  local id = due[i]
  local r = load_record(k.records, id, k.stream)
  if not (r.status == 'in_flight' and tonumber(due[i + 1]) == now) then
    if r.status == 'in_flight' then r.last_error = string.format(ARGV[5], r.consumer) end
    r.attempts = r.attempts + 1
    redis.call('XCLAIM', k.stream, group, consumer, 0, id, 'RETRYCOUNT', r.attempts, 'JUSTID')
    if r.attempts > 1 then retried = retried + 1 end
    r.consumer, r.status, r.token, r.lease_ms = consumer, 'in_flight', token, lease
    records[#records + 1], records[#records + 2] = id, encode_record(r)
    deadlines[#deadlines + 1], deadlines[#deadlines + 2] = now + lease, id
    local err = r.last_error
    if err == cjson.null then err = false end
    due_out[#due_out + 1] = {id, r.attempts, err, fields_of(k.stream, id, r)}
  end
end
-- 2. unread, in publish order, under one lease with no record per event; other types are not
-- this group's work: acked unrecorded. Every entry read counts in seen (lag).
local types = type_set(KEYS[4])
local all = types['*']
local fresh, ids, read_types = {}, {}, {}
while #due_out + #ids < limit do
  local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #due_out - #ids,
    'STREAMS', k.stream, '>')
  if not res or #res[1][2] == 0 then break end
  local skipped = {}
  for _, e in ipairs(res[1][2]) do
    local f = e[2]
    local etype = field(f, 'event_type') or ''
    read_types[etype] = (read_types[etype] or 0) + 1
    if all or types[etype] then
      ids[#ids + 1] = e[1]
      fresh[#fresh + 1], fresh[#fresh + 2] = e[1], f
    else
      skipped[#skipped + 1] = e[1]
    end
  end
  chunked(skipped, function(...) redis.call('XACK', k.stream, group, ...) end)
end
add_counts(KEYS[10], read_types, 1)
if #ids > 0 then
  redis.call('HSET', k.leases, token, now .. ' ' .. lease .. ' ' .. consumer,
    'ids:' .. token, table.concat(ids, ' '), 'left:' .. token, #ids)
  redis.call('ZADD', k.lease_due, now + lease, token)
  redis.call('HINCRBY', k.counters, 'leased', #ids)
end
if #records > 0 then
  chunked(records, function(...) redis.call('HSET', k.records, ...) end)
  chunked(deadlines, function(...) redis.call('ZADD', k.due, ...) end)
end
local claimed = #due_out + #ids
if claimed > 0 then
  redis.call('HINCRBY', k.counters, 'delivered', claimed)
  if retried > 0 then redis.call('HINCRBY', k.counters, 'retried', retried) end
  return {false, -1, token, due_out, fresh}
end
local last = redis.call('XREVRANGE', k.stream, '+', '-', 'COUNT', 1)
local nxt = redis.call('ZRANGE', k.due, 0, 0, 'WITHSCORES')
local nxt_lease = redis.call('ZRANGE', k.lease_due, 0, 0, 'WITHSCORES')
local next_ms = -1
for _, pair in ipairs({nxt, nxt_lease}) do
  if pair[2] then
    local wait = math.max(1, tonumber(pair[2]) - now + (pair == nxt_lease and 1 or 0))
    if next_ms < 0 or wait < next_ms then next_ms = wait end
  end
end
return {last[1] and last[1][1] or '0-0', next_ms, token, due_out, fresh}
