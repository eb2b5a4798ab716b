-- KEYS old keys..., then their new names in the same order (redis_keys.LegacyLayout.pairs: the
-- stream, ids, groups, meta, then each group's keys) | ARGV mark group...
-- -> keys moved; -1: the group set changed since it was read (read it again and retry);
--    -2: the tagged layout is in use already (the old keys are left as they are)
local n = #KEYS / 2
local function is(key, kind) return redis.call('TYPE', key)['ok'] == kind end
if not (is(KEYS[1], 'stream') or is(KEYS[3], 'set')) then return 0 end
if redis.call('SCARD', KEYS[3]) ~= #ARGV - 1 then return -1 end
for i = 2, #ARGV do
  if redis.call('SISMEMBER', KEYS[3], ARGV[i]) == 0 then return -1 end
end
if redis.call('EXISTS', KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4]) > 0 then return -2 end
local moved = 0
for i = 1, n do  -- RENAME keeps the value whole: the stream with its groups and pending entries
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('RENAME', KEYS[i], KEYS[n + i])
    moved = moved + 1
  end
end
for i = 1, 3 do redis.call('SET', KEYS[i], ARGV[1]) end
return moved
