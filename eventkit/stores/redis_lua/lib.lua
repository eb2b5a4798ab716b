-- Shared by every script (redis_scripts.py puts it in front of each one), and the one place that
-- says what the scripts write: a stream entry's fields, a delivery record's text, a dead letter.
-- Python reads all three in redis_records.py; tests/test_redis_store.py round-trips each writer.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function js(v) if v == nil or v == cjson.null then return 'null' end return cjson.encode(v) end
local function chunked(list, fn)
  for i = 1, #list, 1000 do fn(unpack(list, i, math.min(i + 999, #list))) end
end

-- == a stream entry: its field list is [name, value, ...], append writes names in this order ==
local FIELDS = {'event_id', 'event_type', 'version', 'source', 'timestamp_ms', 'data',
  'correlation_id', 'causation_id'}  -- the last two: "" when none; missing in older entries
local FIELD_AT = {}  -- where append puts each value: event_id 2, event_type 4, ..., data 12
for i, name in ipairs(FIELDS) do FIELD_AT[name] = 2 * i end
-- an entry's field, by position when it has append's layout, else by name (an entry written by
-- another program may lack fields or order them otherwise): nil when missing
local function field(f, name)
  local at = FIELD_AT[name]
  if f[at - 1] == name then return f[at] end
  for i = 1, #f - 1, 2 do if f[i] == name then return f[i + 1] end end
  return nil
end
-- the fields of entry `id`: from the stream, or the record's copy once trimmed (see replay)
local function fields_of(stream, id, r)
  local e = redis.call('XRANGE', stream, id, id)
  if e[1] then return e[1][2] end
  return r.copy
end

-- == a delivery record: JSON text in the group's records hash (redis_records.RawRecord) ==
-- keys in one order: status, token, acked_ms, consumer, attempts, first_ms, lease_ms, event_id,
-- event_type, last_error, then copy (the entry's fields) only once a trim removed the entry, and
-- replays (times replayed from the DLQ) only once it was replayed.
-- The lease head comes first, so ack checks a lease and settles it on the text without decoding
-- (acker). The layout is written only in the three parts below, which take values already
-- JSON-encoded; every writer goes through them: encode_record, claim's fast path for first
-- deliveries (first_delivery) and acker. record_end takes the text before it, so a record is
-- one concatenation.
local function record_head(status, token, acked_ms)
  return '{"status":' .. status .. ',"token":' .. token .. ',"acked_ms":' .. acked_ms .. ','
end
local function record_lease(consumer, attempts, first_ms, lease_ms)
  return '"consumer":' .. consumer .. ',"attempts":' .. attempts .. ',"first_ms":' .. first_ms
    .. ',"lease_ms":' .. lease_ms .. ','
end
local function record_end(before, event_id, event_type, last_error, tail)
  return before .. '"event_id":' .. event_id .. ',"event_type":' .. event_type
    .. ',"last_error":' .. last_error .. tail .. '}'
end
local function encode_record(r)
  local before = record_head(js(r.status), js(r.token), js(r.acked_ms))
    .. record_lease(js(r.consumer), js(r.attempts), js(r.first_ms), js(r.lease_ms))
  local tail = r.copy and (',"copy":' .. cjson.encode(r.copy)) or ''
  if r.replays and r.replays > 0 then tail = tail .. ',"replays":' .. js(r.replays) end
  return record_end(before, js(r.event_id), js(r.event_type), js(r.last_error), tail)
end
local function load_record(key, id)
  local raw = redis.call('HGET', key, id)
  return raw and cjson.decode(raw)
end
local function save_record(key, id, r) redis.call('HSET', key, id, encode_record(r)) end
-- claim's fast path: the first deliveries of one claim differ only in their event, so the text
-- before it is made once; quoted_type is the JSON-encoded event type
local function first_delivery(token, consumer, now, lease)
  local before = record_head('"in_flight"', js(token), 'null')
    .. record_lease(js(consumer), '1', js(now), js(lease))
  return function(event_id, quoted_type)
    return record_end(before, cjson.encode(event_id), quoted_type, 'null', '')
  end
end
-- ack's check and rewrite: a record's text, acked at `now` if it is in flight under `token`
-- (its deadline is checked apart), else nil
local function acker(token, now)
  local held = record_head('"in_flight"', js(token), 'null')
  local acked = record_head('"acked"', '""', js(now))
  return function(raw)
    if raw and string.sub(raw, 1, #held) == held then return acked .. string.sub(raw, #held + 1) end
    return nil
  end
end
-- the record of `id` if `token` holds its lease at `now`, decoded; else nil
local function held(records, due, id, token, now)
  local r = load_record(records, id)
  if not r or r.status ~= 'in_flight' or r.token ~= token then return nil end
  local deadline = tonumber(redis.call('ZSCORE', due, id))
  if deadline == nil or deadline < now then return nil end
  return r
end

-- == a dead letter: JSON object in the group's dlq hash under its event_id, read by name ==
local function encode_dead_letter(id, fields, r, now, error, traceback)
  return cjson.encode({id = id, fields = fields, consumer = r.consumer, attempts = r.attempts,
    failed_ms = now, error = error, traceback = traceback, replays = r.replays or 0})
end

-- == groups and entry ids ==
local function type_set(key)
  local types = {}
  for _, t in ipairs(redis.call('SMEMBERS', key)) do types[t] = true end
  return types
end
local function last_delivered(stream)
  local ok, info = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  local by_name = {}
  if not ok then return by_name end
  for _, g in ipairs(info) do
    local h = {}
    for i = 1, #g, 2 do h[g[i]] = g[i + 1] end
    by_name[h['name']] = {h['last-delivered-id'], h['lag']}
  end
  return by_name
end
local function id_gt(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) > tonumber(bm) end
  return tonumber(as) > tonumber(bs)
end
