"""Event store on Redis Streams: one stream per namespace, consumer groups, Lua for atomic settles.

Design: the stream is the log and each group's cursor (XREADGROUP ">"); an unsettled entry stays in
the group's PEL (visible to XPENDING) while this store keeps, per group, a record per delivered
event (status, consumer, attempts, lease token) and one sorted set of deadlines: the lease deadline
while in flight, the due time while retrying. Leases differ per claim (lease_ms, extend_lease), so
expiry comes from that set rather than from one XAUTOCLAIM min-idle. Every operation that reads and
then writes is one Lua script (redis_lua/, loaded by redis_scripts.py; redis_records.py reads what
they write), so it is atomic across processes and machines. Deadlines and published/delivered/acked
times use the Redis server clock (TIME), one clock for every client.

On a Redis Cluster (detected on open, redis_client.py) nothing changes here: every key of a
namespace carries the namespace as its hash tag (redis_keys.py), so each script, each pipeline
and each blocking read goes to the one master that holds the namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from eventkit.config import check_redis_url, redact_url
from eventkit.errors import GroupBusyError, GroupNotFoundError, StoreError, StoreUnavailableError
from eventkit.stores.base import (
    EXPIRED_LEASE_ERROR,
    Claim,
    DeadLetter,
    DeliveryRecord,
    GroupReset,
    GroupStart,
    GroupStats,
    NewEvent,
    Stats,
    StoredEvent,
    TrimResult,
    check_limit,
    claim_cancel_safe,
    error_boundary,
    matches,
    now_ms,
    stats_with_store_block,
)
from eventkit.stores.lookup import (
    PayloadValue,
    check_value,
    field_parts,
    in_story,
    payload_matches,
)
from eventkit.stores.redis_client import MAX_BLOCK_MS, Client, connect, pipelined, translate
from eventkit.stores.redis_keys import Keys, LegacyLayout, move_legacy_layout
from eventkit.stores.redis_records import (
    dead_letter,
    delivery_record,
    entry_values,
    stored,
    to_entry_id,
    to_position,
)
from eventkit.stores.redis_scripts import Scripts

logger = logging.getLogger(__name__)

#: events per append script call; one call is one round trip and one atomic step
APPEND_CHUNK = 5_000
_Keys = Keys  # the name tests/conformance/test_faults.py and benchmarks/soak.py import


def _translate(store: RedisEventStore, error: Exception) -> StoreError:
    """The one error boundary of this store (see error_boundary)."""
    return translate(store._url, error)


@error_boundary(_translate, chain=False)  # redis-py's errors may quote the URL, password included
class RedisEventStore:
    """Redis Streams behind the store protocol; many processes on many hosts share one namespace."""

    backend = "redis"
    blocking_claims = True
    prefetch_turns = 4  # redis-py: pool checkout, then the script call is written

    def __init__(self, url: str, *, namespace: str = "eventkit", read_only: bool = False) -> None:
        self._url = check_redis_url("redis_url", url)
        self.namespace = namespace
        #: only read (the CLI's stats, export, dlq, top, tail): open() never moves an old layout
        self.read_only = read_only
        self._keys = Keys(namespace)
        self._client: Client | None = None
        self._waiter: Client | None = None
        self._scripts: Scripts  # registered by open()
        #: groups this process ensured, recreated if Redis restarted without its data (NOGROUP)
        self._known: dict[str, set[str]] = {}
        self._expired_fmt = EXPIRED_LEASE_ERROR.replace("%", "%%").replace("{consumer}", "%s")

    def __repr__(self) -> str:
        return f"RedisEventStore({redact_url(self._url)!r}, namespace={self.namespace!r})"

    # -- connection ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        self._client, self._waiter = await connect(self._url)
        self._scripts = Scripts.register(self._client)
        clustered = not isinstance(self._client, aioredis.Redis)
        try:
            if clustered:  # a cluster never held the old layout: its scripts fail there
                pass
            elif self.read_only:
                await self._refuse_legacy_layout()
            else:
                await self._move_legacy_layout()
        except BaseException:
            await self.close()
            raise
        logger.info(
            "redis store open on %s%s, namespace %r",
            redact_url(self._url), " (cluster)" if clustered else "", self.namespace,
        )  # fmt: skip

    async def _refuse_legacy_layout(self) -> None:
        """Reading must not change anything: an old layout is refused, saying how to move it."""
        old = LegacyLayout(self.namespace).old  # after a move these hold a note (a string)
        kinds = (await self._redis.type(old.events), await self._redis.type(old.groups))
        if kinds[0] == "stream" or kinds[1] == "set":
            raise StoreError(
                f"namespace {self.namespace!r} is in the key layout of an earlier eventkit; it "
                "was left unchanged: open it once with this version's EventBus (not a read-only "
                "command) to move it to the new layout, without loss"
            )

    async def _move_legacy_layout(self) -> None:
        """A namespace written before the hash tag moves to the tagged keys (redis_keys.py)."""
        await move_legacy_layout(self._redis, self._scripts.move_layout, self.namespace)

    async def close(self) -> None:
        clients, self._client, self._waiter = (self._client, self._waiter), None, None
        for client in clients:
            if client is not None:
                await client.aclose()

    @property
    def _redis(self) -> Client:
        if self._client is None:
            raise StoreUnavailableError(f"{self!r} is not open: await bus.initialize() (or store.open()) first")
        return self._client

    # -- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        keys = [self._keys.events, self._keys.ids]
        positions: list[int] = []
        for start in range(0, len(events), APPEND_CHUNK):
            args = entry_values(events[start : start + APPEND_CHUNK])
            positions += map(to_position, await self._run(self._scripts.append, keys, args))
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
        return await self._scan(
            lambda event: (
                matches(event.event_type, event_types)
                and (start_ms is None or event.timestamp_ms >= start_ms)
                and (end_ms is None or event.timestamp_ms < end_ms)
                and (source is None or event.source == source)
            ),
            after_position,
            limit,
        )

    async def _scan(
        self,
        wanted: Callable[[StoredEvent], bool],
        after_position: int | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """The stream's entries in order, a page of XRANGE at a time, kept where `wanted`."""
        check_limit(limit)
        found: list[StoredEvent] = []
        cursor = "-" if after_position is None else "(" + to_entry_id(after_position)
        while limit is None or len(found) < limit:
            page: list[Any] = cast(
                Any, await self._redis.xrange(self._keys.events, cursor, "+", count=1000)
            )
            for entry_id, fields in page:
                event = stored(entry_id, fields)
                if wanted(event):
                    found.append(event)
                    if limit is not None and len(found) >= limit:
                        break
            if len(page) < 1000:
                break
            cursor = "(" + page[-1][0]
        return found

    async def correlated(self, correlation_id: str) -> list[StoredEvent]:
        """A scan of the stream (XRANGE pages): Redis has no secondary index to ask."""
        return await self._scan(lambda event: in_story(event, correlation_id))

    async def find(
        self, field_path: str, value: PayloadValue, *, limit: int | None = None
    ) -> list[StoredEvent]:
        """A scan of the stream (XRANGE pages), parsing each payload: Redis has no JSON index."""
        parts, value = field_parts(field_path), check_value(value)
        return await self._scan(
            lambda event: payload_matches(event.data, parts, value), None, limit
        )

    async def index_payload_field(self, field_path: str) -> str | None:
        field_parts(field_path)  # a bad path fails here as on every backend
        return None

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        unique = list(dict.fromkeys(event_ids))
        if not unique:
            return []
        entry_ids: list[str | None] = cast(Any, await self._redis.hmget(self._keys.ids, unique))
        async with self._redis.pipeline(transaction=False) as pipe:
            for entry_id in filter(None, entry_ids):
                pipe.xrange(self._keys.events, entry_id, entry_id)
            found = [stored(e[0][0], e[0][1]) for e in await pipe.execute() if e]
        return sorted(found, key=lambda e: e.position)

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        keys = [self._keys.events, self._keys.groups, self._keys.group(group).types]
        args = [group, *_start_args(start), *event_types]
        await self._run(self._scripts.ensure_group, keys, args)
        self._known.setdefault(group, set()).update(event_types)

    async def groups(self) -> list[str]:
        return sorted(cast(set[str], await self._redis.smembers(self._keys.groups)))

    async def reset_group(
        self, group: str, to: GroupStart, *, force: bool = False, dry_run: bool = False
    ) -> GroupReset:
        """One script (redis_lua/reset_group.lua): XGROUP SETID, with the PEL, the deadlines and
        the records after the new position cleared."""
        g = self._keys.group(group)
        keys = [self._keys.events, self._keys.groups, g.records, g.due, g.types]
        args = [group, *_start_args(to), int(force), int(dry_run)]
        try:
            result = await self._run(self._scripts.reset_group, keys, args)
        except ResponseError as e:
            if str(e).startswith("NOGROUP"):
                raise GroupNotFoundError(group) from e
            raise
        if result[0] == "busy":
            raise GroupBusyError(group, int(result[1]))
        at, unread, in_flight, retrying = result
        return GroupReset(group, to_position(at), int(unread), int(in_flight), int(retrying))

    async def delete_group(self, group: str) -> bool:
        """XGROUP DESTROY and the group's keys, in one script (redis_lua/delete_group.lua)."""
        keys = [self._keys.events, self._keys.groups, self._keys.meta]
        existed = await self._run(
            self._scripts.delete_group, [*keys, *self._keys.group(group).all()], [group]
        )
        self._known.pop(group, None)
        return bool(existed)

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
            last_id, next_due_ms, token, rows = await self._run(self._scripts.claim, keys, args)
        except ResponseError as e:
            if not str(e).startswith("NOGROUP") or group not in self._known:
                raise GroupNotFoundError(group) from e
            if await self._redis.hexists(self._keys.meta, f"deleted:{group}"):
                del self._known[group]  # deleted on purpose (delete_group): not made again
                raise GroupNotFoundError(group) from e
            logger.warning(
                "group %r vanished (Redis restarted without its data); recreating", group
            )
            await self.ensure_group(group, sorted(self._known[group]), "earliest")
            return await self._claim_once(group, consumer, limit, lease_ms)
        claims = [
            Claim(stored(entry_id, fields), group, consumer, attempt, deadline, token, error)
            for entry_id, attempt, error, fields in rows
        ]
        return last_id, next_due_ms, claims

    async def ack(self, claims: Sequence[Claim]) -> int:
        # a claim batch shares one token: send each token once with its entry ids as one
        # space-separated argument (redis-py packs every argument in Python)
        ids: dict[str, dict[str, list[str]]] = {}
        for claim in claims:
            by_token = ids.setdefault(claim.consumer_group, {})
            by_token.setdefault(claim.token, []).append(to_entry_id(claim.event.position))
        counted = 0
        for group, by_token in ids.items():
            g = self._keys.group(group)
            keys = [self._keys.events, g.records, g.due, g.counters]
            args = [group]
            for token, entry_ids in by_token.items():
                args += [token, " ".join(entry_ids)]
            counted += await self._run(self._scripts.ack, keys, args)
        return counted

    def _settling(self, op: str, claim: Claim, *extra: str | int) -> tuple[list[str], list[Any]]:
        """The settle script's keys and arguments for one claim (see redis_lua/settle.lua)."""
        group = claim.consumer_group
        g = self._keys.group(group)
        args = [op, group, to_entry_id(claim.event.position), claim.token, *extra]
        return [self._keys.events, g.records, g.due, g.dlq], args

    async def _settle_one(self, op: str, claim: Claim, *extra: str | int) -> bool:
        return bool(await self._run(self._scripts.settle, *self._settling(op, claim, *extra)))

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        deadline = now_ms() + lease_ms
        if not await self._settle_one("extend", claim, lease_ms):
            return None
        return claim._replace(lease_deadline_ms=deadline)

    async def release(self, claims: Sequence[Claim]) -> int:
        """One round trip for the batch (a stopping consumer gives back a whole prefetch)."""
        if not claims:
            return 0

        async def fill(pipe: Any) -> None:
            for claim in claims:
                keys, args = self._settling("release", claim)
                await self._scripts.settle(keys=keys, args=args, client=pipe)

        return sum(bool(held) for held in await self._pipelined(fill))

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        return await self._settle_one("retry", claim, due_ms - now_ms(), error)

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        return await self._settle_one("dead", claim, error, traceback)

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        names = await self.groups() if groups is None else list(groups)

        async def fill(pipe: Any) -> None:
            for name in names:
                g = self._keys.group(name)
                pipe.zcard(g.due)
                await self._scripts.unread([self._keys.events, g.types], [name, 1], client=pipe)

        return not any(await self._pipelined(fill))

    # -- dead-letter queue --------------------------------------------------------------------

    async def get_pending_events(
        self, consumer_group: str | None = None, *, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        names = await self.groups() if consumer_group is None else [consumer_group]
        letters = [
            dead_letter(group, raw)
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
        keys = [self._keys.events, g.records, g.due, g.dlq]
        return int(await self._run(self._scripts.replay, keys, chosen))

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
        records = [delivery_record(group, entry_id, text) for entry_id, text in raw.items()]
        records = [r for r in records if after_position is None or r.position > after_position]
        records.sort(key=lambda r: r.position)
        return records if limit is None else records[:limit]

    async def stats(self) -> Stats:
        names = await self.groups()

        async def fill(pipe: Any) -> None:
            pipe.xlen(self._keys.events)
            pipe.hget(self._keys.meta, "kept_unacked")
            for name in names:
                g = self._keys.group(name)
                await self._scripts.unread([self._keys.events, g.types], [name, 0], client=pipe)
                pipe.zcard(g.due)
                pipe.hlen(g.dlq)
                pipe.hmget(g.counters, "delivered", "acked", "retried")
                pipe.zcount(g.members, f"({now_ms()}", "+inf")

        total, kept, *rest = await self._pipelined(fill)
        groups: dict[str, GroupStats] = {}
        for i, name in enumerate(names):
            lag, pending, dlq, (delivered, acked, retried), consumers = rest[i * 5 : i * 5 + 5]
            groups[name] = {
                "lag": int(lag), "in_flight": int(pending), "dlq": int(dlq),
                "delivered": int(delivered or 0), "acked": int(acked or 0),
                "retried": int(retried or 0), "consumers": int(consumers),
            }  # fmt: skip
        return stats_with_store_block(self.backend, int(total), int(kept or 0), groups)

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
        removed, kept = await self._run(self._scripts.trim, keys, [*args, *names])
        if removed or kept:
            logger.info("trimmed %d events, kept %d not yet acked", removed, kept)
        return TrimResult(int(removed), int(kept))

    async def _pipelined(self, fill: Callable[[Any], Awaitable[None]]) -> list[Any]:
        """One round trip for what `fill` queues; scripts loaded again on NOSCRIPT (pipelined)."""
        return await pipelined(self._redis, fill, self._scripts.load)

    async def _run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script (redis-py reloads it after a restart: NOSCRIPT)."""
        if self._client is None:
            raise StoreUnavailableError(f"{self!r} is not open: await bus.initialize() (or store.open()) first")
        return await script(keys=keys, args=args)


def _start_args(start: GroupStart) -> tuple[str, int]:
    """A group start as the scripts take it: mode ("0" earliest, "$" latest, "ts") and ms."""
    if start == "earliest" or start == "latest":
        return ("0" if start == "earliest" else "$"), 0
    return "ts", int(start)
