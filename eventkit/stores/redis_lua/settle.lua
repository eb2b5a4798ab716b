-- KEYS events records due dlq counters leases lease_due | ARGV op group id token arg1 arg2
-- -> 1 if the lease was held
-- op: extend (arg1 lease_ms) | release | retry (arg1 ms until due, arg2 error)
--     | dead (arg1 error, arg2 traceback; the DLQ keeps a copy, so trimming never touches it)
-- A first delivery held under its claim's lease leaves the lease here: from now on its own
-- record and deadline say where it stands.
local op, group, id = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local k = {stream = KEYS[1], records = KEYS[2], due = KEYS[3], counters = KEYS[5],
  leases = KEYS[6], lease_due = KEYS[7]}
local r = held(k, id, ARGV[4], now)
if not r then return 0 end
if r.from_lease then lease_done(k, ARGV[4], 1) end
if op == 'extend' then
  r.lease_ms = tonumber(ARGV[5])
  redis.call('ZADD', KEYS[3], now + r.lease_ms, id)
  redis.call('XCLAIM', KEYS[1], group, r.consumer, 0, id, 'JUSTID')  -- resets the PEL idle time
elseif op == 'release' then
  r.status, r.attempts = 'retrying', r.attempts - 1
  redis.call('ZADD', KEYS[3], 0, id)
elseif op == 'retry' then
  r.status, r.last_error = 'retrying', ARGV[6]
  redis.call('ZADD', KEYS[3], now + math.max(0, tonumber(ARGV[5])), id)
else
  r.status, r.last_error = 'dead', ARGV[5]
  redis.call('HSET', KEYS[4], r.event_id,
    encode_dead_letter(id, fields_of(KEYS[1], id, r), r, now, ARGV[5], ARGV[6]))
  redis.call('ZREM', KEYS[3], id)
  redis.call('XACK', KEYS[1], group, id)
end
if op ~= 'extend' then r.token = '' end
save_record(KEYS[2], id, r)
return 1
