-- KEYS events ids | ARGV #FIELDS values per event in FIELDS order -> entry ids
-- An event_id already stored is not stored again: its entry id is returned (producers retry).
local out, entry = {}, {}
for i = 1, #ARGV, #FIELDS do
  local id = redis.call('HGET', KEYS[2], ARGV[i])
  if not id then
    for j, name in ipairs(FIELDS) do entry[2 * j - 1], entry[2 * j] = name, ARGV[i + j - 1] end
    id = redis.call('XADD', KEYS[1], '*', unpack(entry))
    redis.call('HSET', KEYS[2], ARGV[i], id)
  end
  out[#out + 1] = id
end
return out
