-- KEYS events groups meta (the group's keys: redis_keys.GroupKeys.all)... | ARGV group
-- -> 1 if there was such a group
local group = ARGV[1]
local existed = redis.call('SREM', KEYS[2], group)
redis.pcall('XGROUP', 'DESTROY', KEYS[1], group)  -- with its PEL; none if the stream is gone
redis.call('DEL', unpack(KEYS, 4))
-- a member still running finds the group gone on purpose, not lost with a restart: its claims
-- fail instead of creating the group again (RedisEventStore._claim_once)
if existed == 1 then redis.call('HSET', KEYS[3], 'deleted:' .. group, 1) end
return existed
