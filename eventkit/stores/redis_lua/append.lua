-- KEYS events ids counts meta | ARGV sizes, then per event its first sizes[k] values in FIELDS
-- order -> entry ids. sizes: one digit per event, 6 (no correlation nor causation: a story's
-- first event, most) or 8; a value not sent is not written, so the entry ends at data.
-- An event_id already stored is not stored again: its entry id is returned (producers retry).
local out, entry, added = {}, {}, {}
counted_if_empty(KEYS[1], KEYS[3], KEYS[4])
local sizes, i = ARGV[1], 2
for k = 1, #sizes do
  local size = sizes:byte(k) - 48
  local id = redis.call('HGET', KEYS[2], ARGV[i])
  if not id then
    for j = 1, size do entry[2 * j - 1], entry[2 * j] = FIELDS[j], ARGV[i + j - 1] end
    id = redis.call('XADD', KEYS[1], '*', unpack(entry, 1, 2 * size))
    redis.call('HSET', KEYS[2], ARGV[i], id)
    added[ARGV[i + 1]] = (added[ARGV[i + 1]] or 0) + 1
  end
  out[#out + 1] = id
  i = i + size
end
add_counts(KEYS[3], added, 1)
return out
