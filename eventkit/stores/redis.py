"""Event store on Redis Streams: one stream per namespace, consumer groups, Lua for atomic settles.

Design: the stream is the log and each group's cursor (XREADGROUP ">"); an unsettled entry stays in
the group's PEL (visible to XPENDING) while this store keeps, per group, one lease per claim of
first deliveries (token, consumer, deadline, its ids), a record per delivery once it is settled or
delivered again (status, consumer, attempts, lease token), and one sorted set of deadlines for the
deliveries with a record: the lease deadline while in flight, the due time while retrying. Leases
differ per claim (lease_ms, extend_lease), so expiry comes from those sets rather than from one
XAUTOCLAIM min-idle. Every operation that reads and then writes is one Lua script (redis_lua/,
loaded by redis_scripts.py; redis_records.py reads what they write), so it is atomic across
processes and machines. Deadlines and published/delivered/acked times use the Redis server clock
(TIME), one clock for every client. Lag comes from counts the scripts keep (per event type in the
stream, per group and type passed by its cursor), not from a scan. Reads live in redis_reads.py,
the scripts' arguments and claim's reply in redis_delivery.py.

On a Redis Cluster (detected on open, redis_client.py) nothing changes here: every key of a
namespace carries the namespace as its hash tag (redis_keys.py), so each script, each pipeline
and each blocking read goes to the one master that holds the namespace.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from eventkit.config import check_redis_url, redact_url
from eventkit.errors import GroupBusyError, GroupNotFoundError, StoreError, StoreUnavailableError
from eventkit.stores import redis_reads
from eventkit.stores.base import (
    EXPIRED_LEASE_ERROR,
    Claim,
    DeadLetter,
    DeliveryRecord,
    GroupReset,
    GroupStart,
    NewEvent,
    Stats,
    StoredEvent,
    TrimResult,
    check_limit,
    claim_cancel_safe,
    error_boundary,
    matches,
    now_ms,
)
from eventkit.stores.lookup import (
    PayloadValue,
    check_value,
    field_parts,
    in_story,
    payload_matches,
)
from eventkit.stores.redis_client import MAX_BLOCK_MS, Client, connect, pipelined, translate
from eventkit.stores.redis_delivery import (
    ack_calls,
    claim_keys,
    claims_of,
    discard,
    ensure_call,
    reset_call,
    settle_call,
    trim_call,
)
from eventkit.stores.redis_keys import (
    Keys,
    count_legacy,
    move_legacy_layout,
    refuse_legacy_layout,
)
from eventkit.stores.redis_records import entry_values, to_position
from eventkit.stores.redis_scripts import Scripts
from eventkit.stores.redis_scripts import run as run_script
from eventkit.stores.redis_wait import BlockedRead, ReadRefused

logger = logging.getLogger(__name__)

#: what may end a claim behind a blocked read, and the plain claim recovers from (it loads the
#: script again, or reconnects)
_PLAIN_CLAIM_COPES = (NoScriptError, RedisConnectionError, RedisTimeoutError)

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
        #: the server refused the pipelined wait (redis_wait.ReadRefused): wait, then claim
        self._reads_refused = False
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
            if not self.read_only:
                await self._upgrade()
            elif not clustered:  # a cluster never held the old layout: its scripts fail there
                await refuse_legacy_layout(self._redis, self.namespace)
        except BaseException:
            await self.close()
            raise
        logger.info(
            "redis store open on %s%s, namespace %r",
            redact_url(self._url), " (cluster)" if clustered else "", self.namespace,
        )  # fmt: skip

    async def _upgrade(self) -> None:
        """A namespace written by an earlier eventkit moves to the tagged keys (redis_keys.py; on
        one node only: a cluster never held the old layout), and is counted once for lag."""
        if isinstance(self._client, aioredis.Redis):
            await move_legacy_layout(self._redis, self._scripts.move_layout, self.namespace)
        await count_legacy(self._redis, self._scripts.count, self._keys)

    async def close(self) -> None:
        clients, self._client, self._waiter = (self._client, self._waiter), None, None
        for client in clients:
            if client is not None:
                await client.aclose()

    @property
    def _redis(self) -> Client:
        if self._client is None:
            raise StoreUnavailableError(f"{self!r} is not open: await bus.initialize() first")
        return self._client

    # -- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        keys = [self._keys.events, self._keys.ids, self._keys.counts, self._keys.meta]
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
        wanted = redis_reads.event_filter(event_types, start_ms, end_ms, source)
        return await self._scan(wanted, after_position, limit)

    async def _scan(
        self,
        wanted: Callable[[StoredEvent], bool],
        after_position: int | None = None,
        limit: int | None = None,
    ) -> list[StoredEvent]:
        return await redis_reads.scan(self._redis, self._keys, wanted, after_position, limit)

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

    async def get_note(self, name: str) -> str | None:
        return cast(str | None, await self._redis.hget(self._keys.notes, name))

    async def put_note(self, name: str, text: str) -> None:
        await self._redis.hset(self._keys.notes, name, text)

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        return await redis_reads.get_events(self._redis, self._keys, event_ids)

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        await self._run(
            self._scripts.ensure_group, *ensure_call(self._keys, group, event_types, start)
        )
        self._known.setdefault(group, set()).update(event_types)

    async def groups(self) -> list[str]:
        return sorted(cast(set[str], await self._redis.smembers(self._keys.groups)))

    async def reset_group(
        self, group: str, to: GroupStart, *, force: bool = False, dry_run: bool = False
    ) -> GroupReset:
        """One script (redis_lua/reset_group.lua): XGROUP SETID, with the PEL, the deadlines and
        the records after the new position cleared."""
        try:
            result = await self._run(
                self._scripts.reset_group, *reset_call(self._keys, group, to, force, dry_run)
            )
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
        wait = max(1, min(block_ms, MAX_BLOCK_MS, next_due_ms if next_due_ms > 0 else MAX_BLOCK_MS))
        waiter = self._waiter
        if isinstance(waiter, aioredis.Redis) and not self._reads_refused:
            # one node: the claim goes behind the wait, in its round trip (redis_wait.py)
            commands = cast(aioredis.Redis, self._redis)
            read = BlockedRead(waiter, commands, self._keys.events, last_id, wait)
            try:
                return (await self._claim_settled(group, consumer, limit, lease_ms, read))[2]
            except ReadRefused as e:  # nothing was claimed: wait, then claim, as on a cluster
                logger.info("blocked claims on %s wait, then claim (%s)", self, e)
                self._reads_refused = True
        assert waiter is not None
        await waiter.xread({self._keys.events: last_id}, count=1, block=wait)
        return (await self._claim_settled(group, consumer, limit, lease_ms))[2]

    async def _claim_settled(
        self, group: str, consumer: str, limit: int, lease_ms: int, read: BlockedRead | None = None
    ) -> tuple[str, int, list[Claim]]:
        """_claim_once, safe to cancel: once the script has run, what it leased is released
        rather than left to expire with the lease."""
        claiming = self._claim_once(group, consumer, limit, lease_ms, read)
        stop = None if read is None else read.unblock
        return await claim_cancel_safe(self, claiming, lambda result: result[2], stop)

    async def _claim_once(
        self, group: str, consumer: str, limit: int, lease_ms: int, read: BlockedRead | None = None
    ) -> tuple[str, int, list[Claim]]:
        """The claim script; behind `read`, once that has ended (see redis_wait.py)."""
        keys = claim_keys(self._keys, group)
        args = [group, consumer, limit, lease_ms, self._expired_fmt]
        deadline = now_ms() + lease_ms  # the client's view: never later than the server's
        try:
            if read is None:
                reply = await self._run(self._scripts.claim, keys, args)
            else:
                try:
                    reply, ran_ms = await read.then_run(self._scripts.claim, keys, args)
                    deadline = ran_ms + lease_ms
                except _PLAIN_CLAIM_COPES:
                    return await self._claim_once(group, consumer, limit, lease_ms)
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
        return claims_of(reply, group, consumer, deadline)

    async def ack(self, claims: Sequence[Claim]) -> int:
        counted = 0
        for keys, args in ack_calls(self._keys, claims):
            counted += await self._run(self._scripts.ack, keys, args)
        return counted

    async def _settle_one(self, op: str, claim: Claim, *extra: str | int) -> bool:
        return bool(
            await self._run(self._scripts.settle, *settle_call(self._keys, op, claim, *extra))
        )

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        deadline = now_ms() + lease_ms
        if not await self._settle_one("extend", claim, lease_ms):
            return None
        return claim.with_deadline(deadline)

    async def release(self, claims: Sequence[Claim]) -> int:
        """One round trip for the batch (a stopping consumer gives back a whole prefetch)."""
        if not claims:
            return 0

        async def fill(pipe: Any) -> None:
            for claim in claims:
                keys, args = settle_call(self._keys, "release", claim)
                await self._scripts.settle(keys=keys, args=args, client=pipe)

        return sum(bool(held) for held in await self._pipelined(fill))

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        return await self._settle_one("retry", claim, due_ms - now_ms(), error)

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        return await self._settle_one("dead", claim, error, traceback)

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        names = await self.groups() if groups is None else list(groups)

        return await redis_reads.is_idle(self._keys, self._scripts, names, self._pipelined)

    # -- dead-letter queue --------------------------------------------------------------------

    async def get_pending_events(
        self, consumer_group: str | None = None, *, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        names = await self.groups() if consumer_group is None else [consumer_group]
        return await redis_reads.dead_letters(self._redis, self._keys, names, event_ids)

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
        return await discard(self._redis, self._keys.group(consumer_group).dlq, event_ids)

    # -- analysis and retention ---------------------------------------------------------------

    async def deliveries(
        self, group: str, *, after_position: int | None = None, limit: int | None = None
    ) -> list[DeliveryRecord]:
        return await redis_reads.deliveries(self._redis, self._keys, group, after_position, limit)

    async def stats(self) -> Stats:
        return await redis_reads.stats(
            self._keys, self._scripts, await self.groups(), self._pipelined, self.backend
        )

    async def trim(
        self, *, before_ms: int | None = None, max_events: int | None = None
    ) -> TrimResult:
        check_limit(max_events)
        keys, args = trim_call(self._keys, await self.groups(), before_ms, max_events)
        removed, kept = await self._run(self._scripts.trim, keys, args)
        if removed or kept:
            logger.info("trimmed %d events, kept %d not yet acked", removed, kept)
        return TrimResult(int(removed), int(kept))

    async def _pipelined(self, fill: Callable[[Any], Awaitable[None]]) -> list[Any]:
        """One round trip for what `fill` queues; scripts loaded again on NOSCRIPT (pipelined)."""
        return await pipelined(self._redis, fill, self._scripts.load)

    async def _run(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script (loaded again after a restart: NOSCRIPT)."""
        return await run_script(self._redis, script, keys, args)
