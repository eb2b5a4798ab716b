-- KEYS events records due types counters meta groups | ARGV group consumer limit lease_ms expired_fmt
-- -> {last entry id, ms until the next deadline (-1: none), token, {id, attempt, last_error, fields}...}
local group, consumer = ARGV[1], ARGV[2]
local limit, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('SISMEMBER', KEYS[7], group) == 0 then return redis.error_reply('NOGROUP ' .. group) end
local now = now_ms()
local token = tostring(redis.call('HINCRBY', KEYS[6], 'leases', 1))
local out, retried, records, deadlines = {}, 0, {}, {}
local function lease_out(id, r, fields)
  r.consumer, r.status, r.token, r.lease_ms = consumer, 'in_flight', token, lease
  records[#records + 1], records[#records + 2] = id, encode_record(r)
  deadlines[#deadlines + 1], deadlines[#deadlines + 2] = now + lease, id
  local err = r.last_error
  if err == cjson.null then err = false end
  out[#out + 1] = {id, r.attempts, err, fields}
end
-- 1. due again: retry time reached, or lease expired (an attempt too; the PEL count follows)
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  local id = due[i]
  local r = load_record(KEYS[2], id)
  if not (r.status == 'in_flight' and tonumber(due[i + 1]) == now) then
    if r.status == 'in_flight' then r.last_error = string.format(ARGV[5], r.consumer) end
    r.attempts = r.attempts + 1
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, id, 'RETRYCOUNT', r.attempts, 'JUSTID')
    if r.attempts > 1 then retried = retried + 1 end
    lease_out(id, r, fields_of(KEYS[1], id, r))
  end
end
-- 2. unread, in publish order; other types are not this group's work: ack them unrecorded
local types = type_set(KEYS[4])
local all = types['*']
local first_record = first_delivery(token, consumer, now, lease)
local quoted_type = {}
local expiry = now + lease
while #out < limit do
  local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #out,
    'STREAMS', KEYS[1], '>')
  if not res or #res[1][2] == 0 then break end
  local skipped = {}
  for _, e in ipairs(res[1][2]) do
    local f = e[2]
    local etype = field(f, 'event_type') or ''
    if all or types[etype] then
      local qt = quoted_type[etype]
      if not qt then qt = cjson.encode(etype) quoted_type[etype] = qt end
      local n = #records
      -- an entry without an event_id (written by hand) is known by its entry id
      records[n + 1], records[n + 2] = e[1], first_record(field(f, 'event_id') or e[1], qt)
      deadlines[n + 1], deadlines[n + 2] = expiry, e[1]
      out[#out + 1] = {e[1], 1, false, f}
    else
      skipped[#skipped + 1] = e[1]
    end
  end
  chunked(skipped, function(...) redis.call('XACK', KEYS[1], group, ...) end)
end
if #out > 0 then
  chunked(records, function(...) redis.call('HSET', KEYS[2], ...) end)
  chunked(deadlines, function(...) redis.call('ZADD', KEYS[3], ...) end)
  redis.call('HINCRBY', KEYS[5], 'delivered', #out)
  if retried > 0 then redis.call('HINCRBY', KEYS[5], 'retried', retried) end
  return {false, -1, token, out}
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local nxt = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {last[1] and last[1][1] or '0-0', nxt[2] and math.max(1, tonumber(nxt[2]) - now) or -1, token, out}
