-- KEYS events ids counts meta | ARGV #FIELDS values per event in FIELDS order -> entry ids
-- An event_id already stored is not stored again: its entry id is returned (producers retry).
local out, entry, added = {}, {}, {}
counted_if_empty(KEYS[1], KEYS[3], KEYS[4])
for i = 1, #ARGV, #FIELDS do
  local id = redis.call('HGET', KEYS[2], ARGV[i])
  if not id then
    for j, name in ipairs(FIELDS) do entry[2 * j - 1], entry[2 * j] = name, ARGV[i + j - 1] end
    id = redis.call('XADD', KEYS[1], '*', unpack(entry))
    redis.call('HSET', KEYS[2], ARGV[i], id)
    added[ARGV[i + 1]] = (added[ARGV[i + 1]] or 0) + 1
  end
  out[#out + 1] = id
end
add_counts(KEYS[3], added, 1)
return out
