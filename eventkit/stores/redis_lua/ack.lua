-- KEYS events records due counters | ARGV group (token "id id ...")... -> how many counted
local now, done, records = now_ms(), {}, {}
local function settle(ids, token)  -- one HMGET and one ZMSCORE for up to 500 claims
  local ack = acker(token, now)
  local raws = redis.call('HMGET', KEYS[2], unpack(ids))
  local deadlines = redis.call('ZMSCORE', KEYS[3], unpack(ids))
  for j, id in ipairs(ids) do
    local deadline = tonumber(deadlines[j])
    local acked = deadline and deadline >= now and ack(raws[j])
    if acked then
      records[#records + 1], records[#records + 2] = id, acked
      done[#done + 1] = id
    end
  end
end
for i = 2, #ARGV - 1, 2 do
  local ids = {}
  for id in string.gmatch(ARGV[i + 1], '%S+') do
    ids[#ids + 1] = id
    if #ids == 500 then settle(ids, ARGV[i]) ids = {} end
  end
  if #ids > 0 then settle(ids, ARGV[i]) end
end
if #done > 0 then
  chunked(records, function(...) redis.call('HSET', KEYS[2], ...) end)
  chunked(done, function(...) redis.call('ZREM', KEYS[3], ...) end)
  chunked(done, function(...) redis.call('XACK', KEYS[1], ARGV[1], ...) end)
  redis.call('HINCRBY', KEYS[4], 'acked', #done)
end
return #done
