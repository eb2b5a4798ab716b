"""Applying outcomes to the store so that a store failure loses nothing: retries, dead letters,
releases and acks are tried again with backoff (logged at WARNING) while the lease holds; past it
the store ignores them anyway, and the lease expiring brings the event back as an attempt."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from eventkit.clock import now_ms
from eventkit.policy import Outcome, Verdict, describe
from eventkit.records import Claim
from eventkit.stores.base import EventStore

logger = logging.getLogger("eventkit.consumer")

#: a failing store call is tried again after this pause, doubling up to the cap
STORE_RETRY_FIRST = 0.05
STORE_RETRY_MAX = 2.0


class Settler:
    """The store side of one consumer's outcomes; acks are flushed in the background."""

    def __init__(self, store: EventStore, group: str, stopping: Callable[[], bool]) -> None:
        self.store = store
        self.group = group
        self._stopping = stopping  # once stopping, a failing store call is not tried again
        self._acks: list[Claim] = []
        self._ack_task: asyncio.Task[None] | None = None

    @property
    def acks_pending(self) -> bool:
        """Handled events whose acks have not reached the store yet."""
        return bool(self._acks)

    async def settle(self, claim: Claim, outcome: Outcome) -> bool:
        """Apply a retry or dead-letter outcome; True if the store took it (the lease held)."""
        pause = STORE_RETRY_FIRST
        while True:
            try:
                if outcome.verdict is Verdict.DEAD:
                    return await self.store.dead_letter(
                        claim, error=outcome.error, traceback=outcome.traceback
                    )
                return await self.store.retry_later(
                    claim, due_ms=outcome.due_ms, error=outcome.error
                )
            except Exception as e:
                give_up = self._stopping() or now_ms() + pause * 1000 >= claim.lease_deadline_ms
                logger.warning(
                    "%s of %s in %s failed: %s; %s", outcome.verdict.value, claim.event.event_id,
                    self.group, describe(e),
                    "its lease will expire and it comes back as an attempt" if give_up
                    else f"trying again in {pause:.2f} s",
                )  # fmt: skip
                if give_up:
                    return False
            await asyncio.sleep(pause)
            pause = min(2 * pause, STORE_RETRY_MAX)

    async def release(self, claims: Sequence[Claim]) -> None:
        """Give claims back uncounted (the consumer stops); shielded, so a cancellation of the
        caller still lets the release reach the store."""
        try:
            await asyncio.shield(self.store.release(claims))
        except Exception as e:  # the leases will expire and the events come back anyway
            logger.warning("could not release %d claims: %s", len(claims), describe(e))

    def queue_ack(self, claim: Claim) -> None:
        self._acks.append(claim)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(self._flush_acks())

    async def drain(self) -> None:
        """Wait for the acks in flight, then flush what is left (the consumer has stopped)."""
        if self._ack_task is not None:
            await asyncio.wait({self._ack_task})
        await self._flush_acks()

    async def _flush_acks(self) -> None:
        """Ack as soon as handlers finish, together when they finish faster than one write. A
        failing store is tried again while the leases hold (after that acks no longer count)."""
        pause = STORE_RETRY_FIRST
        while self._acks:
            batch, self._acks = self._acks, []
            try:
                await self.store.ack(batch)
                pause = STORE_RETRY_FIRST
                continue
            except Exception as e:
                horizon = now_ms() + int(pause * 1000)
                alive = (
                    [] if self._stopping() else [c for c in batch if c.lease_deadline_ms > horizon]
                )
                logger.warning(
                    "ack of %d events in %s failed: %s; %s", len(batch), self.group, describe(e),
                    f"trying again in {pause:.2f} s" if alive
                    else "they come back when their leases expire",
                )  # fmt: skip
                self._acks[:0] = alive
                if not alive:
                    continue
            await asyncio.sleep(pause)
            pause = min(2 * pause, STORE_RETRY_MAX)
