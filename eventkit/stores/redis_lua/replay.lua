-- KEYS events records due dlq | ARGV event_id... -> how many left the DLQ for redelivery
local n, now = 0, now_ms()
for i = 1, #ARGV do
  local raw = redis.call('HGET', KEYS[4], ARGV[i])
  if raw then
    redis.call('HDEL', KEYS[4], ARGV[i])
    local d = cjson.decode(raw)
    local raw_r = redis.call('HGET', KEYS[2], d.id)
    local r = raw_r and decode_record(raw_r, d.fields) or {event_id = ARGV[i], consumer = d.consumer,
      first_ms = now, acked_ms = cjson.null, last_error = cjson.null,
      event_type = field(d.fields, 'event_type') or ''}
    r.status, r.attempts, r.token = 'retrying', 0, ''
    r.replays = (d.replays or 0) + 1
    if not redis.call('XRANGE', KEYS[1], d.id, d.id)[1] then r.copy = d.fields end
    save_record(KEYS[2], d.id, r)
    redis.call('ZADD', KEYS[3], 0, d.id)
    n = n + 1
  end
end
return n
