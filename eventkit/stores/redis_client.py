"""Connections of the Redis store to its server: pools, reconnecting, and errors without the password.

One node or a Redis Cluster, whichever the URL reaches: a node that reports `cluster_enabled:1`
gets redis-py's cluster client, which sends each command (and each script, by its keys' hash
tag) to the master of the slot, follows MOVED and ASK while slots move, and refreshes its map of
the cluster after a node fails.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    NoScriptError,
    RedisClusterUnreachableError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from eventkit.config import redact_url, scrub
from eventkit.errors import StoreError, StoreUnavailableError

#: a blocking claim waits at most this long, well inside the socket timeout
MAX_BLOCK_MS = 5_000
#: reconnect attempts per command, backoff 50 ms doubling to 1 s: about 4 s before a call fails
#: with StoreUnavailableError (consumers go on retrying by themselves, so outages of any length pass)
RECONNECT_RETRIES = 8
#: connections for commands (callers beyond it wait their turn), and for blocked claims apart
POOL_SIZE = 32
WAITERS = 1_000

#: a client of one node or of a cluster: the store calls the same commands on both
Client: TypeAlias = aioredis.Redis | RedisCluster


async def connect(url: str) -> tuple[Client, Client]:
    """The client for commands and the one for blocked claims (waiters), once the server answers;
    else StoreUnavailableError at once rather than after the reconnect attempts."""
    probe = _client(url, Retry(NoBackoff(), 0))
    try:
        clustered = await is_cluster(probe)
    except (RedisError, OSError) as e:
        raise StoreUnavailableError(unavailable(url, e)) from None
    finally:
        await probe.aclose()
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), RECONNECT_RETRIES)
    if clustered:
        # a cluster node's pool cannot make callers wait: it raises once full, so it is large
        return _cluster(url, retry, WAITERS), _cluster(url, retry, WAITERS)
    return (
        _client(url, retry, connections=POOL_SIZE),
        _client(url, retry, connections=WAITERS, blocking=False),
    )


async def is_cluster(client: aioredis.Redis) -> bool:
    """Whether the node is part of a Redis Cluster (INFO cluster: cluster_enabled:1)."""
    try:
        info = await client.info("cluster")
    except ResponseError:  # INFO refused (an ACL): no cluster client would work there either
        await client.ping()
        return False
    return bool(int(info.get("cluster_enabled", 0)))


async def pipelined(
    client: Client,
    fill: Callable[[Any], Awaitable[None]],
    load_scripts: Callable[[Client], Awaitable[None]],
) -> list[Any]:
    """One pipeline (no transaction) of what `fill` queues. A cluster pipeline runs scripts by
    EVALSHA alone: on NOSCRIPT (a node restarted, or a slot moved to it) the scripts are loaded
    and the pipeline sent again. Safe for pipelines of scripts and reads: the pipeline went to
    one node (one namespace, one slot), so none of its scripts ran."""
    for attempt in range(2):
        async with client.pipeline(transaction=False) as pipe:
            await fill(pipe)
            try:
                return await pipe.execute()
            except NoScriptError:
                if attempt:
                    raise
        await load_scripts(client)
    raise AssertionError("unreachable")


def _cluster(url: str, retry: Retry, connections: int) -> RedisCluster:
    """A cluster client with the URL's options (password, rediss:// and its ssl_ parameters),
    found from the node the URL names; it reaches every other master the cluster lists."""
    return RedisCluster.from_url(
        url, decode_responses=True, protocol=2, retry=retry,
        retry_on_error=[ConnectionError, TimeoutError, ClusterDownError],
        socket_connect_timeout=5, socket_timeout=MAX_BLOCK_MS / 1000 + 10,
        max_connections=connections, encoding_errors="surrogateescape",
    )  # fmt: skip


def _client(
    url: str, retry: Retry, *, connections: int = 1, blocking: bool = True
) -> aioredis.Redis:
    """A client whose pool makes callers wait for one of `connections` (blocking), or else
    opens up to that many (the waiters' pool: one idle consumer holds one connection)."""
    pool_class = _WaitingPool if blocking else aioredis.ConnectionPool
    pool = pool_class.from_url(
        url, decode_responses=True, protocol=2, retry=retry,
        retry_on_error=[ConnectionError, TimeoutError], socket_connect_timeout=5,
        socket_timeout=MAX_BLOCK_MS / 1000 + 10, max_connections=connections,
        # text that is not UTF-8 (another program's) must not fail a whole reply: it comes
        # through as lone surrogates, and codec sends that record to the DLQ
        encoding_errors="surrogateescape",
    )  # fmt: skip
    pool.connection_class = _with_timed_writes(pool.connection_class)
    return aioredis.Redis.from_pool(pool)


class _WaitingPool(aioredis.ConnectionPool):
    """A pool whose callers beyond max_connections wait their turn, as in BlockingConnectionPool,
    whose condition, timeout and second lock per command cost a publish one by one several per
    cent (with _TimedWrites ~10 %: benchmarks/bench_peers.py row "publish 1-by-1" on redis, and
    RESULTS.md, stop 22): here a semaphore, which costs nothing while a connection is free. The
    pool itself may open twice as many, so a connection whose release redis-py finishes in the
    background (cancelled meanwhile) never makes it refuse."""

    def __init__(self, *args: Any, max_connections: int, **kwargs: Any) -> None:
        kwargs["max_connections"] = 2 * max_connections
        super().__init__(*args, **kwargs)
        self._turns = asyncio.Semaphore(max_connections)
        self._holding: set[Any] = set()  # connections given out with a turn

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        await self._turns.acquire()
        try:
            connection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            self._turns.release()
            raise
        self._holding.add(connection)
        return connection

    async def release(self, connection: Any) -> None:
        try:
            await super().release(connection)
        finally:
            if connection in self._holding:  # not when redis-py gives back one it failed to set up
                self._holding.discard(connection)
                self._turns.release()


class _TimedWrites:
    """A connection whose writes are limited by socket_timeout through asyncio.timeout.

    redis-py limits each write with asyncio.wait_for, which on Python 3.11 makes a task per
    command: two more turns of the loop (see _WaitingPool for what both save). Replies keep
    redis-py's own limit (no task there)."""

    socket_timeout: float | None

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        limit, self.socket_timeout = self.socket_timeout, None  # redis-py: no wait_for then
        try:
            async with asyncio.timeout(limit):
                await super().send_packed_command(command, check_health)  # type: ignore[misc]
        except builtins.TimeoutError:  # asyncio's, once redis-py dropped the connection
            raise TimeoutError("Timeout writing to socket") from None  # redis-py's, as it would
        finally:
            self.socket_timeout = limit


def _with_timed_writes(connection_class: type) -> type:
    """connection_class (plain, TLS for rediss://, or a Unix socket) with _TimedWrites."""
    return type(connection_class.__name__, (_TimedWrites, connection_class), {})


def unavailable(url: str, error: BaseException) -> str:
    detail = scrub(f"{type(error).__name__}: {error}", url)
    return f"Redis at {redact_url(url)} is unavailable ({detail}); is redis-server running?"


#: errors that pass once the server (or the cluster's node for a slot) is back: a node down or
#: restarting, a slot being moved (TRYAGAIN), no node reachable for a slot, redirects run out
_UNAVAILABLE = (
    ConnectionError, TimeoutError, BusyLoadingError, OSError, ClusterDownError, TryAgainError,
    ClusterError, RedisClusterUnreachableError, SlotNotCoveredError,
)  # fmt: skip


def translate(url: str, error: Exception) -> StoreError:
    """A redis-py error as the store's own; never shows the password (the URL may hold one)."""
    if isinstance(error, _UNAVAILABLE):
        return StoreUnavailableError(unavailable(url, error))
    detail = scrub(f"{type(error).__name__}: {error}", url)
    return StoreError(f"Redis store {redact_url(url)} failed ({detail})")
