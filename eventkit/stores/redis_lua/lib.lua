-- Shared by every script but append (redis_scripts.py puts entry.lua, then this, in front of each
-- one), and the one place that says what the scripts write: a delivery record's text, a lease, a
-- dead letter, and the seen counts behind lag.
-- Python reads all three in redis_records.py; tests/test_redis_store.py round-trips each writer.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function js(v) if v == nil or v == cjson.null then return 'null' end return cjson.encode(v) end
local function chunked(list, fn)
  for i = 1, #list, 1000 do fn(unpack(list, i, math.min(i + 999, #list))) end
end

-- == a stream entry: its field list is [name, value, ...], in entry.lua's FIELDS order ==
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
-- JSON-encoded; every writer goes through them: encode_record and acker. record_end takes the
-- text before it, so a record is one concatenation. A first delivery has no record while in
-- flight (its claim's lease stands for it) and a compact one once acked (acked_text).
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
-- the compact record of a first delivery acked under its claim's lease (ack.lua writes it):
-- "ack <first_ms> <acked_ms> <lease_ms> <consumer>"; the entry holds the event's id and type
local function acked_text(first_ms, acked_ms, lease_ms, consumer)
  return 'ack ' .. first_ms .. ' ' .. acked_ms .. ' ' .. lease_ms .. ' ' .. consumer
end
local function is_compact(raw) return string.byte(raw, 1) ~= 123 end  -- not '{': not JSON
-- a record's text as a table, the compact one read with the entry's fields (`fields`)
local function decode_record(raw, fields)
  if not is_compact(raw) then return cjson.decode(raw) end
  local first, acked, lease_ms, consumer = string.match(raw, '^ack (%d+) (%d+) (%d+) (.*)$')
  return {status = 'acked', token = '', acked_ms = tonumber(acked), consumer = consumer,
    attempts = 1, first_ms = tonumber(first), lease_ms = tonumber(lease_ms),
    event_id = field(fields, 'event_id') or '', event_type = field(fields, 'event_type') or '',
    last_error = cjson.null}
end
local function entry_fields(stream, id)
  local e = redis.call('XRANGE', stream, id, id)
  return e[1] and e[1][2] or {}
end
-- the record of `id` (nil: none), a compact one completed from the stream's entry
local function load_record(key, id, stream)
  local raw = redis.call('HGET', key, id)
  if not raw then return nil end
  return decode_record(raw, is_compact(raw) and entry_fields(stream, id) or nil)
end
local function save_record(key, id, r) redis.call('HSET', key, id, encode_record(r)) end
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
-- == a lease: one per claim of first deliveries, in the group's leases hash ==
-- token -> "first_ms lease_ms consumer", 'ids:' .. token -> "id id ...", 'left:' .. token -> how
-- many of those ids have no record yet; lease_due holds token -> deadline. An id of a lease
-- without a record is in flight under it: a first delivery costs no record and no deadline of
-- its own. Any settle gives the id a record (ack the compact one, the others JSON) and takes it
-- out of the lease (lease_done); once a lease expires, claim gives its ids records (expire_leases).
local function decode_lease(text)
  local first, lease_ms, consumer = string.match(text, '^(%d+) (%d+) (.*)$')
  return tonumber(first), tonumber(lease_ms), consumer
end
local function split_ids(text)
  local ids = {}
  for id in string.gmatch(text or '', '%S+') do ids[#ids + 1] = id end
  return ids
end
local function drop_lease(leases, lease_due, token)
  redis.call('HDEL', leases, token, 'ids:' .. token, 'left:' .. token)
  redis.call('ZREM', lease_due, token)
end
-- `n` ids of lease `token` got records of their own (KEYS as in `k`, see held)
local function lease_done(k, token, n)
  if redis.call('HINCRBY', k.leases, 'left:' .. token, -n) <= 0 then
    drop_lease(k.leases, k.lease_due, token)
  end
  redis.call('HINCRBY', k.counters, 'leased', -n)
end
-- fn(id, deadline, token) for each id in flight under one of `tokens` ({token, deadline, ...}
-- as ZRANGE WITHSCORES gives them from lease_due): the lease's ids without a record
local function each_leased(leases, records, tokens, fn)
  for i = 1, #tokens, 2 do
    local ids = split_ids(redis.call('HGET', leases, 'ids:' .. tokens[i]))
    for j = 1, #ids, 1000 do
      local part = {unpack(ids, j, math.min(j + 999, #ids))}
      local raws = redis.call('HMGET', records, unpack(part))
      for m, id in ipairs(part) do
        if not raws[m] then fn(id, tonumber(tokens[i + 1]), tokens[i]) end
      end
    end
  end
end
-- the record an id in flight under lease `token` would have (a first delivery), from the lease
local function leased_record(leases, token, fields)
  local first, lease_ms, consumer = decode_lease(redis.call('HGET', leases, token))
  return {status = 'in_flight', token = token, acked_ms = cjson.null, consumer = consumer,
    attempts = 1, first_ms = first, lease_ms = lease_ms,
    event_id = field(fields, 'event_id') or '', event_type = field(fields, 'event_type') or '',
    last_error = cjson.null}
end
-- the record of `id` if `token` holds its lease at `now`, decoded (from_lease set when the
-- claim's lease holds it); else nil. `k`: the group's keys {stream, records, due, leases,
-- lease_due, counters}. A Claim names the id and token its claim returned, so an id without a
-- record under a live lease is in that lease.
local function held(k, id, token, now)
  local raw = redis.call('HGET', k.records, id)
  if raw then
    if is_compact(raw) then return nil end  -- acked
    local r = cjson.decode(raw)
    if r.status ~= 'in_flight' or r.token ~= token then return nil end
    local deadline = tonumber(redis.call('ZSCORE', k.due, id))
    if deadline == nil or deadline < now then return nil end
    return r
  end
  local deadline = tonumber(redis.call('ZSCORE', k.lease_due, token))
  if deadline == nil or deadline < now then return nil end
  local r = leased_record(k.leases, token, entry_fields(k.stream, id))
  r.from_lease = true
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

-- == counts behind lag (see entry.lua): each group's seen hash (event type -> entries its cursor
-- passed, kept by claim, trim, ensure_group and reset_group); lag = sum over the group's types of
-- counts minus seen ==
local function tally_types(tally, f)
  local t = field(f, 'event_type') or ''
  tally[t] = (tally[t] or 0) + 1
end
-- seen := counts - `after` (what lies after the cursor, by type): for a cursor just moved
local function set_seen(seen, counts, after)
  redis.call('DEL', seen)
  local all = redis.call('HGETALL', counts)
  for i = 1, #all, 2 do
    local n = tonumber(all[i + 1]) - (after[all[i]] or 0)
    if n ~= 0 then redis.call('HSET', seen, all[i], n) end
  end
end
