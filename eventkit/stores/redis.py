"""Event store on Redis Streams: one stream per namespace, consumer groups, Lua for atomic settles.

Design: the stream is the log and each group's cursor (XREADGROUP ">"); an unsettled entry stays in
the group's PEL (visible to XPENDING) while this store keeps, per group, a record per delivered
event (status, consumer, attempts, lease token) and one sorted set of deadlines: the lease deadline
while in flight, the due time while retrying. Leases differ per claim (lease_ms, extend_lease), so
expiry comes from that set rather than from one XAUTOCLAIM min-idle. Every operation that reads and
then writes is one Lua script, so it is atomic across processes and machines. Deadlines and
published/delivered/acked times use the Redis server clock (TIME), one clock for every client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from eventkit.config import check_redis_url, redact_url, scrub
from eventkit.errors import GroupNotFoundError, StoreError, StoreUnavailableError
from eventkit.stores.base import (
    Claim,
    DeadLetter,
    DeliveryRecord,
    DeliveryStatus,
    GroupStart,
    NewEvent,
    StoredEvent,
    TrimResult,
    check_limit,
    claim_cancel_safe,
    error_boundary,
    matches,
    now_ms,
)
from eventkit.stores.memory import EXPIRED_LEASE_ERROR

logger = logging.getLogger(__name__)

#: position = ms << SEQ_BITS | seq of the entry id "ms-seq": a bijection while seq < 2**20 (a
#: million entries in one millisecond), and below 2**63 until the year 2248
SEQ_BITS = 20
#: events per append script call; one call is one round trip and one atomic step
APPEND_CHUNK = 5_000
#: a blocking claim waits at most this long, well inside the socket timeout
MAX_BLOCK_MS = 5_000
#: reconnect attempts per command, backoff 50 ms doubling to 1 s: about 4 s before a call fails
#: with StoreUnavailableError (consumers go on retrying by themselves, so outages of any length pass)
RECONNECT_RETRIES = 8
#: connections for commands (callers beyond it wait their turn), and for blocked claims apart
POOL_SIZE = 32
WAITERS = 1_000


class _Keys:
    """Every key this store uses, all under the namespace."""

    def __init__(self, ns: str) -> None:
        self.events = f"{ns}:events"  # stream: the log; fields in _FIELDS order
        self.ids = f"{ns}:ids"  # hash event_id -> entry id (idempotent append)
        self.groups = f"{ns}:groups"  # set of group names
        self.meta = f"{ns}:meta"  # hash: leases (token counter), kept_unacked
        self._ns = ns

    def group(self, group: str) -> _GroupKeys:
        return _GroupKeys(f"{self._ns}:group:{group}")


class _GroupKeys:
    def __init__(self, base: str) -> None:
        self.types = f"{base}:types"  # set: the union of subscribed event types
        self.members = f"{base}:members"  # zset consumer name -> live until (ms, heartbeat)
        self.due = f"{base}:due"  # zset entry id -> lease deadline | retry due (server ms)
        self.records = f"{base}:records"  # hash entry id -> JSON delivery record
        self.dlq = f"{base}:dlq"  # hash event_id -> JSON: a copy of the event + failure
        self.counters = f"{base}:counters"  # hash: delivered, acked, retried


_FIELDS = ("event_id", "event_type", "version", "source", "timestamp_ms", "data")

# Lua helpers shared by the scripts. A stream entry's field list is [name, value, ...] in _FIELDS
# order, so f[2] is the event_id, f[4] the type, f[10] the timestamp. A record is a JSON object:
# event_id, event_type, status, consumer, attempts, first_ms, acked_ms, last_error, token, lease_ms,
# and `copy` (the fields) when the event is no longer in the stream (replayed after a trim).
_LUA_LIB = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function js(v) if v == nil or v == cjson.null then return 'null' end return cjson.encode(v) end
-- records are written in this fixed key order, so ack can check and rewrite the head as text
local function encode_record(r)
  return '{"status":' .. js(r.status) .. ',"token":' .. js(r.token) .. ',"acked_ms":'
    .. js(r.acked_ms) .. ',"consumer":' .. js(r.consumer) .. ',"attempts":' .. js(r.attempts)
    .. ',"first_ms":' .. js(r.first_ms) .. ',"lease_ms":' .. js(r.lease_ms) .. ',"event_id":'
    .. js(r.event_id) .. ',"event_type":' .. js(r.event_type) .. ',"last_error":'
    .. js(r.last_error) .. (r.copy and (',"copy":' .. cjson.encode(r.copy)) or '') .. '}'
end
local function save(key, id, r) redis.call('HSET', key, id, encode_record(r)) end
local function held(records, due, id, token, now)
  local raw = redis.call('HGET', records, id)
  if not raw then return nil end
  local r = cjson.decode(raw)
  if r.status ~= 'in_flight' or r.token ~= token then return nil end
  local deadline = tonumber(redis.call('ZSCORE', due, id))
  if deadline == nil or deadline < now then return nil end
  return r
end
-- an entry's field, by position when it has the layout append writes, else by name (an entry
-- written by another program may lack fields or order them otherwise): nil when missing
local FIELD_AT = {event_id = 2, event_type = 4, version = 6, source = 8, timestamp_ms = 10, data = 12}
local function field(f, name)
  local at = FIELD_AT[name]
  if f[at - 1] == name then return f[at] end
  for i = 1, #f - 1, 2 do if f[i] == name then return f[i + 1] end end
  return nil
end
local function chunked(list, fn)
  for i = 1, #list, 1000 do fn(unpack(list, i, math.min(i + 999, #list))) end
end
local function fields_of(stream, id, r)
  local e = redis.call('XRANGE', stream, id, id)
  if e[1] then return e[1][2] end
  return r.copy
end
local function type_set(key)
  local types = {}
  for _, t in ipairs(redis.call('SMEMBERS', key)) do types[t] = true end
  return types
end
local function last_delivered(stream)
  local ok, info = pcall(redis.call, 'XINFO', 'GROUPS', stream)
  local by_name = {}
  if not ok then return by_name end
  for _, g in ipairs(info) do
    local h = {}
    for i = 1, #g, 2 do h[g[i]] = g[i + 1] end
    by_name[h['name']] = {h['last-delivered-id'], h['lag']}
  end
  return by_name
end
local function id_gt(a, b)
  local am, as = string.match(a, '(%d+)-(%d+)')
  local bm, bs = string.match(b, '(%d+)-(%d+)')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) > tonumber(bm) end
  return tonumber(as) > tonumber(bs)
end
"""

# KEYS events ids | ARGV 6 values per event in _FIELDS order -> entry ids
_APPEND = """
local out = {}
for i = 1, #ARGV, 6 do
  local id = redis.call('HGET', KEYS[2], ARGV[i])
  if not id then
    id = redis.call('XADD', KEYS[1], '*', 'event_id', ARGV[i], 'event_type', ARGV[i + 1],
      'version', ARGV[i + 2], 'source', ARGV[i + 3], 'timestamp_ms', ARGV[i + 4], 'data', ARGV[i + 5])
    redis.call('HSET', KEYS[2], ARGV[i], id)
  end
  out[#out + 1] = id
end
return out
"""

# KEYS events groups types | ARGV group start ('0' | '$' | 'ts') ts_ms type...
_ENSURE_GROUP = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  local start = ARGV[2]
  if start == 'ts' then  -- the first entry (publish order) with timestamp_ms >= ts; else the end
    start = '$'
    local ts, prev, cursor = tonumber(ARGV[3]), '0', '-'
    while start == '$' do
      local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 500)
      if #page == 0 then break end
      for _, e in ipairs(page) do
        local t = tonumber(field(e[2], 'timestamp_ms'))
        if t and t >= ts then start = prev break end
        prev = e[1]
      end
      cursor = '(' .. page[#page][1]
    end
  end
  redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')  -- BUSYGROUP: keep it
  redis.call('SADD', KEYS[2], ARGV[1])
end
if #ARGV >= 4 then redis.call('SADD', KEYS[3], unpack(ARGV, 4)) end
"""

# KEYS events records due types counters meta groups | ARGV group consumer limit lease_ms expired_fmt
# -> {last entry id, ms until the next deadline (-1: none), token, {id, attempt, last_error, fields}...}
_CLAIM = """
local group, consumer = ARGV[1], ARGV[2]
local limit, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('SISMEMBER', KEYS[7], group) == 0 then return redis.error_reply('NOGROUP ' .. group) end
local now = now_ms()
local token = tostring(redis.call('HINCRBY', KEYS[6], 'leases', 1))
local out, retried, records, deadlines = {}, 0, {}, {}
local function lease_out(id, r, fields)
  r.consumer, r.status, r.token, r.lease_ms = consumer, 'in_flight', token, lease
  records[#records + 1], records[#records + 2] = id, encode_record(r)
  deadlines[#deadlines + 1], deadlines[#deadlines + 2] = now + lease, id
  local err = r.last_error
  if err == cjson.null then err = false end
  out[#out + 1] = {id, r.attempts, err, fields}
end
-- 1. due again: retry time reached, or lease expired (an attempt too; the PEL count follows)
local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #due, 2 do
  local id = due[i]
  local r = cjson.decode(redis.call('HGET', KEYS[2], id))
  if not (r.status == 'in_flight' and tonumber(due[i + 1]) == now) then
    if r.status == 'in_flight' then r.last_error = string.format(ARGV[5], r.consumer) end
    r.attempts = r.attempts + 1
    redis.call('XCLAIM', KEYS[1], group, consumer, 0, id, 'RETRYCOUNT', r.attempts, 'JUSTID')
    if r.attempts > 1 then retried = retried + 1 end
    lease_out(id, r, fields_of(KEYS[1], id, r))
  end
end
-- 2. unread, in publish order; other types are not this group's work: ack them unrecorded
local types = type_set(KEYS[4])
local all = types['*']
-- a new delivery's record is encode_record's text, built by concatenation: Lua is slow here
local head = '{"status":"in_flight","token":' .. cjson.encode(token) .. ',"acked_ms":null,"consumer":'
  .. cjson.encode(consumer) .. ',"attempts":1,"first_ms":' .. string.format('%.0f', now)
  .. ',"lease_ms":' .. string.format('%.0f', lease) .. ',"event_id":'
local quoted_type = {}
local expiry = now + lease
while #out < limit do
  local res = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', limit - #out,
    'STREAMS', KEYS[1], '>')
  if not res or #res[1][2] == 0 then break end
  local skipped = {}
  for _, e in ipairs(res[1][2]) do
    local f = e[2]
    local etype = field(f, 'event_type') or ''
    if all or types[etype] then
      local qt = quoted_type[etype]
      if not qt then qt = cjson.encode(etype) quoted_type[etype] = qt end
      local n = #records
      -- an entry without an event_id (written by hand) is known by its entry id
      local eid = field(f, 'event_id') or e[1]
      records[n + 1], records[n + 2] = e[1], head .. cjson.encode(eid) .. ',"event_type":' .. qt
        .. ',"last_error":null}'
      deadlines[n + 1], deadlines[n + 2] = expiry, e[1]
      out[#out + 1] = {e[1], 1, false, f}
    else
      skipped[#skipped + 1] = e[1]
    end
  end
  chunked(skipped, function(...) redis.call('XACK', KEYS[1], group, ...) end)
end
if #out > 0 then
  chunked(records, function(...) redis.call('HSET', KEYS[2], ...) end)
  chunked(deadlines, function(...) redis.call('ZADD', KEYS[3], ...) end)
  redis.call('HINCRBY', KEYS[5], 'delivered', #out)
  if retried > 0 then redis.call('HINCRBY', KEYS[5], 'retried', retried) end
  return {false, -1, token, out}
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local nxt = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {last[1] and last[1][1] or '0-0', nxt[2] and math.max(1, tonumber(nxt[2]) - now) or -1, token, out}
"""

# KEYS events records due counters | ARGV group (token "id id ...")... -> how many counted
_ACK = """
local now, done, records = now_ms(), {}, {}
local acked = string.format('{"status":"acked","token":"","acked_ms":%.0f,', now)
local function settle(ids, token)  -- one HMGET and one ZMSCORE for up to 500 claims
  local head = '{"status":"in_flight","token":"' .. token .. '","acked_ms":null,'
  local raws = redis.call('HMGET', KEYS[2], unpack(ids))
  local deadlines = redis.call('ZMSCORE', KEYS[3], unpack(ids))
  for j, id in ipairs(ids) do
    local deadline = tonumber(deadlines[j])
    if raws[j] and deadline and deadline >= now and string.sub(raws[j], 1, #head) == head then
      records[#records + 1], records[#records + 2] = id, acked .. string.sub(raws[j], #head + 1)
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
"""

# KEYS events records due dlq | ARGV op group id token arg1 arg2 -> 1 if the lease was held
# op: extend (arg1 lease_ms) | release | retry (arg1 ms until due, arg2 error)
#     | dead (arg1 error, arg2 traceback; the DLQ keeps a copy, so trimming never touches it)
_SETTLE = """
local op, group, id = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local r = held(KEYS[2], KEYS[3], id, ARGV[4], now)
if not r then return 0 end
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
  redis.call('HSET', KEYS[4], r.event_id, cjson.encode({id = id, fields = fields_of(KEYS[1], id, r),
    consumer = r.consumer, attempts = r.attempts, failed_ms = now, error = ARGV[5],
    traceback = ARGV[6]}))
  redis.call('ZREM', KEYS[3], id)
  redis.call('XACK', KEYS[1], group, id)
end
if op ~= 'extend' then r.token = '' end
save(KEYS[2], id, r)
return 1
"""

# KEYS events records due dlq | ARGV event_id... -> how many left the DLQ for redelivery
_REPLAY = """
local n, now = 0, now_ms()
for i = 1, #ARGV do
  local raw = redis.call('HGET', KEYS[4], ARGV[i])
  if raw then
    redis.call('HDEL', KEYS[4], ARGV[i])
    local d = cjson.decode(raw)
    local old = redis.call('HGET', KEYS[2], d.id)
    local r = old and cjson.decode(old) or {event_id = ARGV[i],
      consumer = d.consumer, first_ms = now, acked_ms = cjson.null, last_error = cjson.null}
    if not old then r.event_type = field(d.fields, 'event_type') or '' end
    r.status, r.attempts, r.token = 'retrying', 0, ''
    if not redis.call('XRANGE', KEYS[1], d.id, d.id)[1] then r.copy = d.fields end
    save(KEYS[2], d.id, r)
    redis.call('ZADD', KEYS[3], 0, d.id)
    n = n + 1
  end
end
return n
"""

# KEYS events types | ARGV group stop_at_first -> unread entries of the group's types
_UNREAD = """
local g = last_delivered(KEYS[1])[ARGV[1]]
if not g then return 0 end
local types = type_set(KEYS[2])
local all, first = types['*'], ARGV[2] == '1'
if all and g[2] and not first then return g[2] end  -- Redis knows the lag unless holes hide it
local n, cursor, size = 0, '(' .. g[1], first and 16 or 1000  -- "any?" mostly needs one page
while true do
  local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', size)
  size = math.min(size * 4, 1000)
  if #page == 0 then return n end
  for _, e in ipairs(page) do
    if all or types[field(e[2], 'event_type') or ''] then
      n = n + 1
      if first then return n end
    end
  end
  cursor = '(' .. page[#page][1]
end
"""

# KEYS events ids meta (due types records)... | ARGV before_ms|'' max_events|'' group... -> {removed, kept}
_TRIM = """
local before, max_events = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = redis.call('XLEN', KEYS[1])
local head = (max_events and total > max_events) and (total - max_events) or 0
local lasts, groups, protected = last_delivered(KEYS[1]), {}, {}
for gi = 3, #ARGV do
  local k = 4 + (gi - 3) * 3
  for _, id in ipairs(redis.call('ZRANGE', KEYS[k], 0, -1)) do protected[id] = true end
  local types = type_set(KEYS[k + 1])
  local last = lasts[ARGV[gi]]
  groups[#groups + 1] = {last = last and last[1], types = types, all = types['*'], records = KEYS[k + 2]}
end
local function unacked(id, etype)
  if protected[id] then return true end
  for _, g in ipairs(groups) do
    if g.last and id_gt(id, g.last) and (g.all or g.types[etype]) then return true end
  end
  return false
end
local ids, event_ids, kept, prefix, first_kept, index, cursor = {}, {}, 0, 0, nil, 0, '-'
while before or index < head do
  local page = redis.call('XRANGE', KEYS[1], cursor, '+', 'COUNT', 1000)
  if #page == 0 then break end
  for _, e in ipairs(page) do
    index = index + 1
    local f = e[2]
    local t = tonumber(field(f, 'timestamp_ms'))
    local doomed = index <= head or (before ~= nil and t ~= nil and t < before)
    if doomed and not unacked(e[1], field(f, 'event_type') or '') then
      ids[#ids + 1], event_ids[#event_ids + 1] = e[1], field(f, 'event_id') or e[1]
      if not first_kept then prefix = prefix + 1 end
    else
      if doomed then kept = kept + 1 end
      first_kept = first_kept or e[1]
    end
  end
  cursor = '(' .. page[#page][1]
end
if prefix > 0 then  -- a removable head goes with XTRIM MINID, the holes after it with XDEL
  if first_kept then redis.call('XTRIM', KEYS[1], 'MINID', first_kept)
  else redis.call('XTRIM', KEYS[1], 'MAXLEN', 0) end
end
local holes = {}
for i = prefix + 1, #ids do holes[#holes + 1] = ids[i] end
chunked(holes, function(...) redis.call('XDEL', KEYS[1], ...) end)
chunked(event_ids, function(...) redis.call('HDEL', KEYS[2], ...) end)
for _, g in ipairs(groups) do chunked(ids, function(...) redis.call('HDEL', g.records, ...) end) end
redis.call('HSET', KEYS[3], 'kept_unacked', kept)
return {#ids, kept}
"""


def _translate(store: RedisEventStore, error: Exception) -> StoreError:
    """The one error boundary of this store (see error_boundary); never shows the password."""
    if isinstance(error, ConnectionError | TimeoutError | BusyLoadingError | OSError):
        return StoreUnavailableError(store._unavailable(error))
    detail = scrub(f"{type(error).__name__}: {error}", store._url)
    return StoreError(f"Redis store {redact_url(store._url)} failed ({detail})")


@error_boundary(_translate, chain=False)  # redis-py's errors may quote the URL, password included
class RedisEventStore:
    """Redis Streams behind the store protocol; many processes on many hosts share one namespace."""

    backend = "redis"
    blocking_claims = True
    prefetch_claims = True

    def __init__(self, url: str, *, namespace: str = "eventkit") -> None:
        self._url = check_redis_url("redis_url", url)
        self.namespace = namespace
        self._keys = _Keys(namespace)
        self._client: aioredis.Redis | None = None
        self._waiter: aioredis.Redis | None = None
        #: groups this process ensured, recreated if Redis restarted without its data (NOGROUP)
        self._known: dict[str, set[str]] = {}
        self._expired_fmt = EXPIRED_LEASE_ERROR.replace("%", "%%").replace("{consumer}", "%s")

    def __repr__(self) -> str:
        return f"RedisEventStore({redact_url(self._url)!r}, namespace={self.namespace!r})"

    # -- connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        probe = self._connect(Retry(NoBackoff(), 0))
        try:
            await probe.ping()
        except (RedisError, OSError) as e:
            raise StoreUnavailableError(self._unavailable(e)) from None
        finally:
            await probe.aclose()
        retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), RECONNECT_RETRIES)
        self._client = self._connect(retry, connections=POOL_SIZE)
        self._waiter = self._connect(retry, connections=WAITERS, blocking=False)
        client = self._client

        def s(body: str) -> Any:
            return client.register_script(_LUA_LIB + body)

        self._append, self._ensure, self._claim = s(_APPEND), s(_ENSURE_GROUP), s(_CLAIM)
        self._ack, self._settle, self._replay = s(_ACK), s(_SETTLE), s(_REPLAY)
        self._unread, self._trim = s(_UNREAD), s(_TRIM)
        logger.info("redis store open on %s, namespace %r", redact_url(self._url), self.namespace)

    def _connect(
        self, retry: Retry, *, connections: int = 1, blocking: bool = True
    ) -> aioredis.Redis:
        """A client whose pool makes callers wait for one of `connections` (blocking), or else
        opens up to that many (the waiters' pool: one idle consumer holds one connection)."""
        pool_class = aioredis.BlockingConnectionPool if blocking else aioredis.ConnectionPool
        pool = pool_class.from_url(
            self._url, decode_responses=True, protocol=2, retry=retry,
            retry_on_error=[ConnectionError, TimeoutError], socket_connect_timeout=5,
            socket_timeout=MAX_BLOCK_MS / 1000 + 10, max_connections=connections,
            # text that is not UTF-8 (another program's) must not fail a whole reply: it comes
            # through as lone surrogates, and codec sends that record to the DLQ
            encoding_errors="surrogateescape",
        )  # fmt: skip
        return aioredis.Redis.from_pool(pool)

    def _unavailable(self, error: BaseException) -> str:
        detail = scrub(f"{type(error).__name__}: {error}", self._url)
        return (
            f"Redis at {redact_url(self._url)} is unavailable ({detail}); is redis-server running?"
        )

    async def close(self) -> None:
        clients, self._client, self._waiter = (self._client, self._waiter), None, None
        for client in clients:
            if client is not None:
                await client.aclose()

    @property
    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise StoreUnavailableError(f"{self!r} is not open: call open() first")
        return self._client

    # -- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        keys = [self._keys.events, self._keys.ids]
        positions: list[int] = []
        for start in range(0, len(events), APPEND_CHUNK):
            args: list[str | int] = []
            for e in events[start : start + APPEND_CHUNK]:
                args += (e.event_id, e.event_type, e.version, e.source, e.timestamp_ms, e.data)
            positions += map(_position, await self._run(self._append, keys, args))
        return positions

    async def read(
        self,
        *,
        event_types: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        source: str | None = None,
        after_position: int | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        check_limit(limit)
        found: list[StoredEvent] = []
        cursor = "-" if after_position is None else "(" + _entry_id(after_position)
        while limit is None or len(found) < limit:
            page: list[Any] = cast(
                Any, await self._redis.xrange(self._keys.events, cursor, "+", count=1000)
            )
            for entry_id, fields in page:
                stored = _stored(entry_id, fields)
                if (
                    matches(stored.event_type, event_types)
                    and (start_ms is None or stored.timestamp_ms >= start_ms)
                    and (end_ms is None or stored.timestamp_ms < end_ms)
                    and (source is None or stored.source == source)
                ):
                    found.append(stored)
                    if limit is not None and len(found) >= limit:
                        break
            if len(page) < 1000:
                break
            cursor = "(" + page[-1][0]
        return found

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        unique = list(dict.fromkeys(event_ids))
        if not unique:
            return []
        entry_ids: list[str | None] = cast(Any, await self._redis.hmget(self._keys.ids, unique))
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in filter(None, entry_ids):
                pipe.xrange(self._keys.events, entry_id, entry_id)
            found = [_stored(e[0][0], e[0][1]) for e in await pipe.execute() if e]
        return sorted(found, key=lambda e: e.position)

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        if start == "earliest" or start == "latest":
            mode, at_ms = ("0" if start == "earliest" else "$"), 0
        else:
            mode, at_ms = "ts", int(start)
        keys = [self._keys.events, self._keys.groups, self._keys.group(group).types]
        await self._run(self._ensure, keys, [group, mode, at_ms, *event_types])
        self._known.setdefault(group, set()).update(event_types)

    async def groups(self) -> list[str]:
        return sorted(cast(set[str], await self._redis.smembers(self._keys.groups)))

    async def register_consumer(self, group: str, consumer: str, *, ttl_ms: int = 60_000) -> None:
        if not await self._redis.sismember(self._keys.groups, group):
            raise GroupNotFoundError(group)
        members = self._keys.group(group).members
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(members, {consumer: now_ms() + ttl_ms})
            pipe.zremrangebyscore(members, "-inf", now_ms())  # members that stopped beating
            await pipe.execute()

    async def unregister_consumer(self, group: str, consumer: str) -> None:
        await self._redis.zrem(self._keys.group(group).members, consumer)

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        check_limit(limit)
        if limit == 0:
            return []
        last_id, next_due_ms, claims = await self._claim_settled(group, consumer, limit, lease_ms)
        if claims or block_ms <= 0:
            return claims
        # nothing now: wait for a new entry after the last one, or the next deadline, whichever first
        # (cancelling this wait is how a consumer stops at once)
        wait = min(block_ms, MAX_BLOCK_MS, next_due_ms if next_due_ms > 0 else MAX_BLOCK_MS)
        assert self._waiter is not None
        await self._waiter.xread({self._keys.events: last_id}, count=1, block=max(1, wait))
        return (await self._claim_settled(group, consumer, limit, lease_ms))[2]

    async def _claim_settled(
        self, group: str, consumer: str, limit: int, lease_ms: int
    ) -> tuple[str, int, list[Claim]]:
        """_claim_once, safe to cancel: once the script has run, what it leased is released
        rather than left to expire with the lease."""
        claiming = self._claim_once(group, consumer, limit, lease_ms)
        return await claim_cancel_safe(self, claiming, lambda result: result[2])

    async def _claim_once(
        self, group: str, consumer: str, limit: int, lease_ms: int
    ) -> tuple[str, int, list[Claim]]:
        k, g = self._keys, self._keys.group(group)
        keys = [k.events, g.records, g.due, g.types, g.counters, k.meta, k.groups]
        args = [group, consumer, limit, lease_ms, self._expired_fmt]
        deadline = now_ms() + lease_ms  # the client's view: never later than the server's
        try:
            last_id, next_due_ms, token, rows = await self._run(self._claim, keys, args)
        except ResponseError as e:
            if not str(e).startswith("NOGROUP") or group not in self._known:
                raise GroupNotFoundError(group) from e
            logger.warning(
                "group %r vanished (Redis restarted without its data); recreating", group
            )
            await self.ensure_group(group, sorted(self._known[group]), "earliest")
            return await self._claim_once(group, consumer, limit, lease_ms)
        claims = [
            Claim(_stored(entry_id, fields), group, consumer, attempt, deadline, token, error)
            for entry_id, attempt, error, fields in rows
        ]
        return last_id, next_due_ms, claims

    async def ack(self, claims: Sequence[Claim]) -> int:
        # a claim batch shares one token: send each token once with its entry ids as one
        # space-separated argument (redis-py packs every argument in Python)
        ids: dict[str, dict[str, list[str]]] = {}
        for claim in claims:
            by_token = ids.setdefault(claim.consumer_group, {})
            by_token.setdefault(claim.token, []).append(_entry_id(claim.event.position))
        counted = 0
        for group, by_token in ids.items():
            g = self._keys.group(group)
            keys = [self._keys.events, g.records, g.due, g.counters]
            args = [group]
            for token, entry_ids in by_token.items():
                args += [token, " ".join(entry_ids)]
            counted += await self._run(self._ack, keys, args)
        return counted

    async def _settle_one(self, op: str, claim: Claim, *extra: str | int) -> bool:
        g = self._keys.group(claim.consumer_group)
        keys = [self._keys.events, g.records, g.due, g.dlq]
        args = [op, claim.consumer_group, _entry_id(claim.event.position), claim.token, *extra]
        return bool(await self._run(self._settle, keys, args))

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        deadline = now_ms() + lease_ms
        if not await self._settle_one("extend", claim, lease_ms):
            return None
        return claim._replace(lease_deadline_ms=deadline)

    async def release(self, claims: Sequence[Claim]) -> int:
        """One round trip for the batch (a stopping consumer gives back a whole prefetch)."""
        if not claims:
            return 0
        if self._client is None:
            raise StoreUnavailableError(f"{self!r} is not open: call open() first")
        async with self._client.pipeline(transaction=False) as pipe:
            for claim in claims:
                g = self._keys.group(claim.consumer_group)
                keys = [self._keys.events, g.records, g.due, g.dlq]
                args = [
                    "release",
                    claim.consumer_group,
                    _entry_id(claim.event.position),
                    claim.token,
                ]
                await self._settle(keys=keys, args=args, client=pipe)
            return sum(bool(held) for held in await pipe.execute())

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        return await self._settle_one("retry", claim, due_ms - now_ms(), error)

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        return await self._settle_one("dead", claim, error, traceback)

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        names = await self.groups() if groups is None else list(groups)
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                g = self._keys.group(name)
                pipe.zcard(g.due)
                await self._unread([self._keys.events, g.types], [name, 1], client=pipe)
            return not any(await pipe.execute())

    # -- dead-letter queue --------------------------------------------------------------------

    async def get_pending_events(
        self, consumer_group: str | None = None, *, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        names = await self.groups() if consumer_group is None else [consumer_group]
        letters = [
            _dead_letter(group, json.loads(raw))
            for group in names
            for event_id, raw in cast(
                dict[str, str], await self._redis.hgetall(self._keys.group(group).dlq)
            ).items()
            if event_ids is None or event_id in event_ids
        ]
        return sorted(letters, key=lambda d: (d.failed_ms, d.stored.position))

    async def count_dead_letters(self, consumer_group: str) -> int:
        return int(await self._redis.hlen(self._keys.group(consumer_group).dlq))

    async def replay_dead_letters(
        self,
        consumer_group: str,
        *,
        event_types: Sequence[str] | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        letters = await self.get_pending_events(consumer_group, event_ids=event_ids)
        chosen = [d.event_id for d in letters if matches(d.stored.event_type, event_types)]
        if not chosen:
            return 0
        g = self._keys.group(consumer_group)
        return int(
            await self._run(self._replay, [self._keys.events, g.records, g.due, g.dlq], chosen)
        )

    async def discard_dead_letters(
        self, consumer_group: str, *, event_ids: Sequence[str] | None = None
    ) -> int:
        dlq = self._keys.group(consumer_group).dlq
        if event_ids is None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hlen(dlq)
                pipe.delete(dlq)
                count, _ = await pipe.execute()
            return int(count)
        return int(await self._redis.hdel(dlq, *event_ids)) if event_ids else 0

    # -- analysis and retention ---------------------------------------------------------------

    async def deliveries(
        self, group: str, *, after_position: int | None = None, limit: int | None = None
    ) -> list[DeliveryRecord]:
        check_limit(limit)
        raw: dict[str, str] = cast(Any, await self._redis.hgetall(self._keys.group(group).records))
        records = [_record(group, entry_id, json.loads(text)) for entry_id, text in raw.items()]
        records = [r for r in records if after_position is None or r.position > after_position]
        records.sort(key=lambda r: r.position)
        return records if limit is None else records[:limit]

    async def stats(self) -> dict[str, Any]:
        names = await self.groups()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self._keys.events)
            pipe.hget(self._keys.meta, "kept_unacked")
            for name in names:
                g = self._keys.group(name)
                await self._unread([self._keys.events, g.types], [name, 0], client=pipe)
                pipe.zcard(g.due)
                pipe.hlen(g.dlq)
                pipe.hmget(g.counters, "delivered", "acked", "retried")
                pipe.zcount(g.members, f"({now_ms()}", "+inf")
            total, kept, *rest = await pipe.execute()
        groups: dict[str, dict[str, int]] = {}
        for i, name in enumerate(names):
            lag, pending, dlq, (delivered, acked, retried), consumers = rest[i * 5 : i * 5 + 5]
            groups[name] = {
                "lag": int(lag), "pending": int(pending), "dlq": int(dlq),
                "delivered": int(delivered or 0), "acked": int(acked or 0),
                "retried": int(retried or 0), "consumers": int(consumers),
            }  # fmt: skip
        store = {
            "backend": self.backend,
            "total_events": int(total),
            "pending_events": sum(g["pending"] for g in groups.values()),
            "dlq_events": sum(g["dlq"] for g in groups.values()),
            "kept_unacked": int(kept or 0),
        }
        return {"store": store, "groups": groups}

    async def trim(
        self, *, before_ms: int | None = None, max_events: int | None = None
    ) -> TrimResult:
        check_limit(max_events)
        names = await self.groups()
        keys = [self._keys.events, self._keys.ids, self._keys.meta]
        for name in names:
            g = self._keys.group(name)
            keys += (g.due, g.types, g.records)
        args = ["" if before_ms is None else before_ms, "" if max_events is None else max_events]
        removed, kept = await self._run(self._trim, keys, [*args, *names])
        if removed or kept:
            logger.info("trimmed %d events, kept %d not yet acked", removed, kept)
        return TrimResult(int(removed), int(kept))

    async def _run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script (redis-py reloads it after a restart: NOSCRIPT)."""
        if self._client is None:
            raise StoreUnavailableError(f"{self!r} is not open: call open() first")
        return await script(keys=keys, args=args)


def _position(entry_id: str) -> int:
    ms, _, seq = entry_id.partition("-")
    return (int(ms) << SEQ_BITS) | int(seq)


def _entry_id(position: int) -> str:
    return f"{position >> SEQ_BITS}-{position & ((1 << SEQ_BITS) - 1)}"


def _stored(entry_id: str, fields: Sequence[str] | dict[str, str]) -> StoredEvent:
    """A stream entry (the flat [name, value, ...] list of a script, or XRANGE's dict) as stored.

    Never fails: an entry another program wrote may lack fields or hold text where a number
    belongs; such values are kept as they are (None when missing) and codec.decode refuses the
    event with a SerializationError, so it goes to the DLQ instead of failing every claim.
    """
    ms, _, seq = entry_id.partition("-")
    if (
        type(fields) is list
        and len(fields) == 12
        and fields[0] == "event_id"
        and fields[10] == "data"
    ):  # as append wrote it: every delivery passes here, so read by position
        try:
            return StoredEvent(
                (int(ms) << SEQ_BITS) | int(seq), fields[1], fields[3], int(fields[5]),
                fields[7], int(fields[9]), fields[11], int(ms),
            )  # fmt: skip
        except ValueError:
            pass  # a number field that is not one: kept as text below
    f = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=False))
    values: Any = (
        (int(ms) << SEQ_BITS) | int(seq), f.get("event_id") or entry_id, f.get("event_type"),
        _number(f.get("version")), f.get("source"), _number(f.get("timestamp_ms")), f.get("data"),
        int(ms),
    )  # fmt: skip
    return StoredEvent(*values)


def _number(text: str | None) -> int | str | None:
    """An integer field as int, or as it was stored when it is not one (codec says why)."""
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text


def _dead_letter(group: str, d: dict[str, Any]) -> DeadLetter:
    return DeadLetter(
        _stored(d["id"], d["fields"]), group, d["consumer"], int(d["attempts"]),
        int(d["failed_ms"]), d["error"], d["traceback"],
    )  # fmt: skip


def _record(group: str, entry_id: str, r: dict[str, Any]) -> DeliveryRecord:
    return DeliveryRecord(
        _position(entry_id), r["event_id"], r["event_type"], group, r["consumer"],
        DeliveryStatus(r["status"]), int(r["attempts"]), int(entry_id.partition("-")[0]),
        int(r["first_ms"]), None if r["acked_ms"] is None else int(r["acked_ms"]), r["last_error"],
    )  # fmt: skip
