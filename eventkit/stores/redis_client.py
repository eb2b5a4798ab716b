"""Connections of the Redis store to its server: pools, reconnecting, and errors without the password."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import BusyLoadingError, ConnectionError, RedisError, TimeoutError

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


async def connect(url: str) -> tuple[aioredis.Redis, aioredis.Redis]:
    """The client for commands and the one for blocked claims (waiters), once the server answers;
    else StoreUnavailableError at once rather than after the reconnect attempts."""
    probe = _client(url, Retry(NoBackoff(), 0))
    try:
        await probe.ping()
    except (RedisError, OSError) as e:
        raise StoreUnavailableError(unavailable(url, e)) from None
    finally:
        await probe.aclose()
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), RECONNECT_RETRIES)
    return (
        _client(url, retry, connections=POOL_SIZE),
        _client(url, retry, connections=WAITERS, blocking=False),
    )


def _client(
    url: str, retry: Retry, *, connections: int = 1, blocking: bool = True
) -> aioredis.Redis:
    """A client whose pool makes callers wait for one of `connections` (blocking), or else
    opens up to that many (the waiters' pool: one idle consumer holds one connection)."""
    pool_class = aioredis.BlockingConnectionPool if blocking else aioredis.ConnectionPool
    pool = pool_class.from_url(
        url, decode_responses=True, protocol=2, retry=retry,
        retry_on_error=[ConnectionError, TimeoutError], socket_connect_timeout=5,
        socket_timeout=MAX_BLOCK_MS / 1000 + 10, max_connections=connections,
        # text that is not UTF-8 (another program's) must not fail a whole reply: it comes
        # through as lone surrogates, and codec sends that record to the DLQ
        encoding_errors="surrogateescape",
    )  # fmt: skip
    return aioredis.Redis.from_pool(pool)


def unavailable(url: str, error: BaseException) -> str:
    detail = scrub(f"{type(error).__name__}: {error}", url)
    return f"Redis at {redact_url(url)} is unavailable ({detail}); is redis-server running?"


def translate(url: str, error: Exception) -> StoreError:
    """A redis-py error as the store's own; never shows the password (the URL may hold one)."""
    if isinstance(error, ConnectionError | TimeoutError | BusyLoadingError | OSError):
        return StoreUnavailableError(unavailable(url, error))
    detail = scrub(f"{type(error).__name__}: {error}", url)
    return StoreError(f"Redis store {redact_url(url)} failed ({detail})")
