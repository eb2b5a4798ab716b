"""An idle consumer's wait for new entries and its claim in one round trip (one Redis node).

Redis runs a connection's commands in order, and holds the rest of a pipeline while one of them
blocks: sent behind XREAD BLOCK on the same connection, the claim script runs the moment an entry
arrives (or the wait ends), and its reply follows the read's. Claiming once the read's reply is
back costs a second round trip on every event's way from publish to handler in an idle group
(benchmarks/bench_peers.py row "p50", redis). A cluster client pipelines by node and cannot
block in a pipeline: the Redis store waits, then claims, there.

Cancelling the wait (how a consumer stops) must not leave the claim hanging or lost: `unblock`
ends the read at once with CLIENT UNBLOCK from the command client, the script runs and replies,
and the store releases what it leased (base.claim_cancel_safe). The connection's id comes first
in the pipeline for that.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, ResponseError

from eventkit.clock import now_ms


class ReadRefused(RedisError):
    """The server refused CLIENT ID or the read itself (an ACL, say): wait, then claim, apart."""


class BlockedRead:
    """XREAD BLOCK of `key` after `after_id` for up to `block_ms` on a connection of `waiter`'s,
    with a script behind it (then_run); `commands` is the client that can unblock it."""

    def __init__(
        self,
        waiter: aioredis.Redis,
        commands: aioredis.Redis,
        key: str,
        after_id: str,
        block_ms: int,
    ) -> None:
        self._waiter = waiter
        self._commands = commands
        self._read = ("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", key, after_id)
        #: the connection's CLIENT ID once its reply is in; None when the exchange ended first
        self._client_id: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def then_run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> tuple[Any, int]:
        """The script's reply once the read has ended, and the time (ms, this clock) at which the
        script ran at the earliest: its reply's arrival less a round trip, as the id's reply
        measured it. Raises the script's error reply as redis-py would (NoScriptError...), and
        ReadRefused for one of the others; any other failure leaves the connection closed."""
        try:
            return await self._exchange(script, keys, args)
        finally:  # unblock() waits for the id: it must hear of an exchange that never sent it
            if not self._client_id.done():
                self._client_id.set_result(None)

    async def _exchange(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> tuple[Any, int]:
        pool = self._waiter.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        replies = 0
        try:
            started = time.perf_counter()
            evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
            await conn.send_packed_command(
                conn.pack_commands([("CLIENT", "ID"), self._read, evalsha])
            )
            self._client_id.set_result(int(await conn.read_response()))
            replies = 1
            round_trip_ms = math.ceil((time.perf_counter() - started) * 1000)
            await conn.read_response()  # what the read found is the script's to claim
            replies = 2
            reply = await conn.read_response()
            return reply, now_ms() - round_trip_ms
        except ResponseError as e:  # an error reply, read: out of step unless it was the last
            if replies < 2:
                await conn.disconnect()
                raise ReadRefused(str(e)) from e
            raise
        except BaseException:  # cut off in the middle: out of step
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def unblock(self) -> None:
        """End the read now, so that the script runs and its reply (what it leased) comes back.
        Without the right to CLIENT UNBLOCK (an ACL), the read runs out its time instead."""
        client_id = await self._client_id
        if client_id is None:
            return
        try:
            await self._commands.client_unblock(client_id)
        except RedisError:
            pass
