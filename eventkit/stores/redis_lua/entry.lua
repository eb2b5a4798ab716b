-- In front of every script (redis_scripts.py), and all that append.lua needs: what a stream entry
-- holds and the counts append keeps. Kept apart from lib.lua because Redis runs a script's whole
-- text on each call, and lib.lua's definitions cost the append ~2 µs of its ~15 µs.

-- == a stream entry: its fields as [name, value, ...], append writes names in this order ==
local FIELDS = {'event_id', 'event_type', 'version', 'source', 'timestamp_ms', 'data',
  'correlation_id', 'causation_id'}  -- the last two: missing when neither is set

-- == counts behind lag: the namespace's counts hash (event type -> entries in the stream, kept by
-- append and trim); lib.lua keeps each group's seen hash. meta's `counted` says both were kept
-- from the start (or rebuilt by count.lua) ==
local function add_counts(key, tally, sign)
  for t, n in pairs(tally) do redis.call('HINCRBY', key, t, sign * n) end
end
-- a namespace with no stream and no counts yet is counted from its start
local function counted_if_empty(stream, counts, meta)
  if redis.call('EXISTS', stream, counts) == 0 then redis.call('HSET', meta, 'counted', 1) end
end
