-- KEYS events records due counters leases lease_due | ARGV group (token "id id ...")...
-- -> how many counted. An id without a record is a first delivery under its claim's lease: acked
-- with the compact record, one text for the whole lease. An id with a record (due again, extended,
-- or written by an earlier eventkit) is checked on the record's text and its own deadline.
local now, done, own, records = now_ms(), {}, {}, {}
local function settle(ids, token, compact)  -- one HMGET (and a ZMSCORE if needed) for <= 500
  local raws = redis.call('HMGET', KEYS[2], unpack(ids))
  local checked = {}
  for j, id in ipairs(ids) do
    local raw = raws[j]
    if not raw then
      if compact then
        records[#records + 1], records[#records + 2] = id, compact
        done[#done + 1] = id
      end
    elseif not is_compact(raw) then
      checked[#checked + 1] = j
    end
  end
  if #checked == 0 then return end
  local ack, with_deadline = acker(token, now), {}
  for m, j in ipairs(checked) do with_deadline[m] = ids[j] end
  local deadlines = redis.call('ZMSCORE', KEYS[3], unpack(with_deadline))
  for m, j in ipairs(checked) do
    local deadline = tonumber(deadlines[m])
    local acked = deadline and deadline >= now and ack(raws[j])
    if acked then
      records[#records + 1], records[#records + 2] = ids[j], acked
      done[#done + 1], own[#own + 1] = ids[j], ids[j]
    end
  end
end
local k = {leases = KEYS[5], lease_due = KEYS[6], counters = KEYS[4]}
for i = 2, #ARGV - 1, 2 do
  local token, compact = ARGV[i], nil
  local deadline = tonumber(redis.call('ZSCORE', KEYS[6], token))
  if deadline and deadline >= now then  -- the claim's lease holds
    local first, lease_ms, consumer = decode_lease(redis.call('HGET', KEYS[5], token))
    compact = acked_text(first, now, lease_ms, consumer)
  end
  local before, ids = #done - #own, {}
  for id in string.gmatch(ARGV[i + 1], '%S+') do
    ids[#ids + 1] = id
    if #ids == 500 then settle(ids, token, compact) ids = {} end
  end
  if #ids > 0 then settle(ids, token, compact) end
  local n = #done - #own - before
  if n > 0 then lease_done(k, token, n) end
end
if #done > 0 then
  chunked(records, function(...) redis.call('HSET', KEYS[2], ...) end)
  chunked(own, function(...) redis.call('ZREM', KEYS[3], ...) end)
  chunked(done, function(...) redis.call('XACK', KEYS[1], ARGV[1], ...) end)
  redis.call('HINCRBY', KEYS[4], 'acked', #done)
end
return #done
