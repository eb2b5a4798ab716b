-- KEYS events meta counts groups (each group's seen, in ARGV's order)... | ARGV group...
-- -> entries counted (0: none, or counted already); -1: the group set changed since it was
-- read (read it again)
-- Once per namespace written by an earlier eventkit (no `counted` in meta): the counts behind
-- lag, from one pass over the stream; from then on append, claim, trim and the group scripts
-- keep them. An empty namespace is counted at once.
if redis.call('HGET', KEYS[2], 'counted') then return 0 end
if redis.call('SCARD', KEYS[4]) ~= #ARGV then return -1 end
for i = 1, #ARGV do
  if redis.call('SISMEMBER', KEYS[4], ARGV[i]) == 0 then return -1 end
end
local lasts, counts, seen = last_delivered(KEYS[1]), {}, {}
for i = 1, #ARGV do seen[i] = {last = lasts[ARGV[i]] and lasts[ARGV[i]][1], tally = {}} end
local cursor, n = '-', 0
while true do
  local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 1000)
  if #page == 0 then break end
  for _, e in ipairs(page) do
    tally_types(counts, e[2])
    n = n + 1
    for _, g in ipairs(seen) do
      if g.last and not id_gt(e[1], g.last) then tally_types(g.tally, e[2]) end
    end
  end
  cursor = '(' .. page[#page][1]
end
redis.call('DEL', KEYS[3])
add_counts(KEYS[3], counts, 1)
for i, g in ipairs(seen) do
  redis.call('DEL', KEYS[4 + i])
  add_counts(KEYS[4 + i], g.tally, 1)
end
redis.call('HSET', KEYS[2], 'counted', 1)
return n
