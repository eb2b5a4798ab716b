"""One persistent subscription, supervised: claim -> decode -> handler -> ack | retry | dead-letter.

Nothing a stored record, a handler or the store does ends a consumer (SPEC §7):
- every delivery gets one Outcome from `decide`, the one place that holds the dead-letter rules;
- `Settler` (settling.py) applies it and rides out store failures (WARNING, backoff, again) while the
  lease holds; past that the lease expires and the event comes back as an attempt, so nothing is
  lost; acks are flushed in the background the same way;
- a worker task that ends anyway is logged at ERROR with its traceback, restarted and counted
  (`restarts`) by its supervisor task, which also keeps the member's heartbeat in the store.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence

from eventkit import codec
from eventkit.clock import now_ms
from eventkit.errors import SerializationError
from eventkit.events import HANDLED_EVENT
from eventkit.handlers import (
    Delivery,
    Handler,
    LeaseTimer,
    adapt_handler,
    raise_if_cancel_was_swallowed,
    take_back_cancellation,
)
from eventkit.policy import ClaimSize, Outcome, Subscription, Verdict, decide, describe
from eventkit.records import Claim
from eventkit.settling import STORE_RETRY_MAX, Settler
from eventkit.stores.base import EventStore

__all__ = ["Consumer", "Delivery", "Handler", "LeaseTimer", "Subscription", "adapt_handler",
           "describe"]  # fmt: skip

logger = logging.getLogger(__name__)


#: how often stop() looks again at a consumer it is waiting for
STOP_RECHECK_SECONDS = 0.05
#: after a batch that took over a quarter of its lease, claims stop prefetching for this long
SLOW_BATCH_SECONDS = 60.0
#: a worker that ended unexpectedly is restarted after this pause, doubling while it keeps ending
RESTART_FIRST = 0.1
RESTART_MAX = 5.0
#: a worker that ran this long before ending starts the restart pause afresh
RESTART_RESET_SECONDS = 30.0


class Consumer:
    """Runs one subscription until stop(): a worker task under a supervisor task."""

    def __init__(self, store: EventStore, subscription: Subscription, poll_interval: float = 0.1):
        self.store = store
        self.subscription = subscription
        self.poll_interval = poll_interval
        #: set by the bus when it published or replayed something this group may want
        self.wakeup = asyncio.Event()
        self.handled = 0
        self.failed = 0
        #: times the worker ended unexpectedly and was started again
        self.restarts = 0
        self._stopping = False
        self._handling = False
        self._supervisor: asyncio.Task[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._settler = Settler(store, subscription.consumer_group, lambda: self._stopping)
        self._next_due_ms: int | None = None
        self._claim_failures = 0
        #: batch_size while idle, more while a backlog lasts
        self._claim_size = ClaimSize(subscription.batch_size, subscription.lease_seconds)
        self._timer = LeaseTimer()
        self._delivery: Delivery | None = None

    @property
    def name(self) -> str:
        return f"{self.subscription.consumer_group}:{self.subscription.consumer_name}"

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._supervisor = loop.create_task(
            self._supervise(), name=f"eventkit-supervisor:{self.name}"
        )

    @property
    def running(self) -> bool:
        return self._supervisor is not None and not self._supervisor.done()

    @property
    def acks_pending(self) -> bool:
        """Handled events whose acks have not reached the store yet."""
        return self._settler.acks_pending

    async def stop(self, timeout: float) -> None:
        """Finish the handler in flight (up to timeout), then cancel it; its event is released."""
        self._stopping = True
        self.wakeup.set()
        worker = self._worker
        if worker is not None and not worker.done():
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max(0.0, timeout)
            while not worker.done():
                if self.store.blocking_claims and not self._handling:
                    # waiting for work in a blocking claim: the store releases what a cancelled
                    # claim leased, so there is nothing to finish. Cancelled again while it
                    # runs: Python 3.11's wait_for (inside redis-py) can swallow a cancellation
                    worker.cancel()
                left = deadline - loop.time()
                if left <= 0:
                    break
                await asyncio.wait({worker}, timeout=min(left, STOP_RECHECK_SECONDS))
            if not worker.done():
                worker.cancel()
                await asyncio.wait({worker})
        if self._supervisor is not None and not self._supervisor.done():
            self._supervisor.cancel()
            await asyncio.wait({self._supervisor})
        await self._settler.drain()

    # -- supervision ----------------------------------------------------------------------------

    async def _supervise(self) -> None:
        """Keep a worker running while the subscription is active, and the member's heartbeat."""
        loop = asyncio.get_running_loop()
        pause = RESTART_FIRST
        heartbeat = max(0.05, self.subscription.lease_seconds / 2)
        while not self._stopping:
            started = loop.time()
            self._worker = worker = loop.create_task(
                self._work(), name=f"eventkit-consumer:{self.name}"
            )
            try:
                while not worker.done():
                    await self._heartbeat(heartbeat)
                    raise_if_cancel_was_swallowed()
                    await asyncio.wait({worker}, timeout=heartbeat)
                raise_if_cancel_was_swallowed()
            except asyncio.CancelledError:  # stop(), or the program ending (asyncio.run)
                self._stopping = True
                worker.cancel()
                await asyncio.wait({worker})
                raise
            if self._stopping:
                return
            self.restarts += 1
            error = None if worker.cancelled() else worker.exception()
            logger.error(
                "consumer %s ended unexpectedly (%s); restarting it (restart %d)",
                self.name, "cancelled" if error is None else describe(error), self.restarts,
                exc_info=error,
            )  # fmt: skip
            if loop.time() - started > RESTART_RESET_SECONDS:
                pause = RESTART_FIRST
            await asyncio.sleep(pause)
            pause = min(2 * pause, RESTART_MAX)

    async def _heartbeat(self, every: float) -> None:
        """Tell the store this member is alive for two leases (stats count live members)."""
        sub = self.subscription
        try:
            await asyncio.wait_for(
                self.store.register_consumer(
                    sub.consumer_group, sub.consumer_name, ttl_ms=2 * sub.lease_ms
                ),
                timeout=max(1.0, every),
            )
        except (Exception, TimeoutError) as e:  # the worker reports outages; this only waits
            logger.debug("heartbeat of %s failed: %s", self.name, describe(e))

    # -- the work -----------------------------------------------------------------------------

    async def _work(self) -> None:
        sub, loop = self.subscription, asyncio.get_running_loop()
        prefetched: asyncio.Task[list[Claim] | None] | None = None
        prefetched_asked = 0
        slow_until = 0.0  # no prefetching until then: a batch took long against its lease
        try:
            while not self._stopping:
                self.wakeup.clear()
                if prefetched is not None:
                    asked, claims, prefetched = prefetched_asked, await prefetched, None
                else:
                    asked = self._claim_size.size
                    claims = await self._claim(asked)
                if claims is None:  # the store failed: try again after a pause
                    await self._idle(self._claim_pause())
                    continue
                if not claims:
                    self._claim_size.observe(asked, 0, 0.0)
                    if not self.store.blocking_claims:
                        await self._idle(self._idle_seconds())
                    continue
                self._handling = True  # from here a stop() lets the batch finish
                started = loop.time()
                try:
                    if len(claims) == asked and started > slow_until:
                        prefetched_asked = self._claim_size.size
                        prefetched = await self._prefetch(prefetched_asked)
                    await self._handle_batch(claims)
                finally:
                    self._handling = False
                took = loop.time() - started
                self._claim_size.observe(asked, len(claims), took)
                if took > sub.lease_seconds / 4:
                    slow_until = loop.time() + SLOW_BATCH_SECONDS
                if self._settler.acks_pending:
                    # handlers that never yield (no-op, CPU-only) would starve the ack task: let
                    # it take this batch's acks before the next claim
                    await asyncio.sleep(0)
        finally:
            if prefetched is not None:
                await self._give_back(prefetched)

    async def _prefetch(self, limit: int) -> asyncio.Task[list[Claim] | None] | None:
        """With a backlog, the store prepares the next batch while this one is handled (where its
        work runs outside this thread). Not for a while after a batch took long against the
        lease: the next batch would sit out its lease waiting, and come back as failed attempts."""
        if not self.store.prefetch_turns:
            return None
        task = asyncio.get_running_loop().create_task(self._claim(limit))
        for _ in range(self.store.prefetch_turns):  # let it send its request
            await asyncio.sleep(0)
        return task

    async def _give_back(self, prefetched: asyncio.Task[list[Claim] | None]) -> None:
        """Wait for a prefetched claim (a blocking one is cancelled) and release what it got."""
        if self.store.blocking_claims:
            prefetched.cancel()
        try:
            claims = await prefetched
        except asyncio.CancelledError:
            claims = None
        if claims:
            await self._release(claims)

    async def _claim(self, limit: int) -> list[Claim] | None:
        """The next batch, or None when the store failed (logged; the caller pauses)."""
        sub = self.subscription
        try:
            claims = await self.store.claim(
                sub.consumer_group,
                sub.consumer_name,
                limit=limit,
                lease_ms=sub.lease_ms,
                block_ms=int(self.poll_interval * 1000) if self.store.blocking_claims else 0,
            )
        except Exception as e:
            self._claim_failures += 1
            if self._claim_failures == 1 or self._claim_failures % 20 == 0:
                logger.warning(
                    "claim failed in %s (%d in a row): %s; trying again",
                    sub.consumer_group, self._claim_failures, describe(e),
                )  # fmt: skip
            return None
        if self._claim_failures:
            logger.warning(
                "claims work again in %s after %d failures",
                sub.consumer_group,
                self._claim_failures,
            )
            self._claim_failures = 0
        return claims

    def _claim_pause(self) -> float:
        return float(
            min(STORE_RETRY_MAX, self.poll_interval * 2 ** min(self._claim_failures - 1, 8))
        )

    def _idle_seconds(self) -> float:
        if self._next_due_ms is None:
            return self.poll_interval
        wait = (self._next_due_ms - now_ms()) / 1000
        if wait <= 0:
            self._next_due_ms = None
            return 0.0
        return min(self.poll_interval, wait)

    async def _idle(self, seconds: float) -> None:
        if seconds <= 0 or self.wakeup.is_set():
            return
        try:
            async with asyncio.timeout(seconds):  # no task per wait, as wait_for would make
                await self.wakeup.wait()
        except TimeoutError:
            pass

    async def _handle_batch(self, claims: Sequence[Claim]) -> None:
        """Deliver a batch in order (_deliver_each). Events the handlers create continue the story
        of the event being handled (HANDLED_EVENT): the loop sets it for each event and it is put
        back once for the batch, as between two handlers only the loop itself runs."""
        before_batch = HANDLED_EVENT.set(None)
        try:
            await self._deliver_each(claims)
        finally:
            HANDLED_EVENT.reset(before_batch)

    async def _deliver_each(self, claims: Sequence[Claim]) -> None:  # noqa: C901 (the per-event loop, kept in one frame)
        """Decode, call the handler, then ack or settle, event by event. Each handler is bounded
        by its lease through one LeaseTimer per batch. This loop runs once per event, so it reads
        its settings into locals and leaves the rare paths to _prepare and _settle."""
        sub, store = self.subscription, self.store
        max_attempts, renew_below = sub.max_attempts, sub.lease_ms // 2
        target, wants_delivery = sub.handler.target, sub.handler.wants_delivery
        queue_ack = self._settler.queue_ack
        index = 0
        while index < len(claims):
            self._timer = timer = LeaseTimer()
            try:
                async with timer.scope:
                    while index < len(claims):
                        if self._stopping:
                            await self._release(claims[index:])
                            return
                        claim = claims[index]
                        index += 1
                        if claim.attempt > max_attempts or (
                            claim.lease_deadline_ms - now_ms() < renew_below
                        ):
                            ready = await self._prepare(claim)
                            if ready is None:
                                continue
                            claim = ready
                        try:
                            event = codec.decode(claim.event)
                        except Exception as e:  # every unreadable record is a SerializationError
                            self.failed += 1
                            await self._settle(claim, decide(claim, sub, _permanent(e)))
                            continue
                        timer.move_to(claim.lease_deadline_ms)
                        delivery = None
                        HANDLED_EVENT.set(event)
                        try:
                            if wants_delivery:
                                delivery = Delivery(claim, store, self._lease_extended)
                                self._delivery = delivery
                                result = target(event, delivery)
                            else:
                                result = target(event)
                            if result is not None and inspect.isawaitable(result):
                                await result
                        except asyncio.CancelledError as e:
                            if self._stopping or timer.expired():
                                raise  # stop() or the lease timer: not the handler's failure
                            take_back_cancellation()  # the handler raised it or cancelled itself
                            failure: BaseException = e
                        except GeneratorExit:
                            raise  # this coroutine is being closed
                        except BaseException as e:  # noqa: B036 (SystemExit... from a handler)
                            failure = e
                        else:
                            self.handled += 1
                            # the latest lease, if the handler extended it
                            queue_ack(claim if delivery is None else delivery.claim)
                            continue
                        finally:
                            self._delivery = None
                        self.failed += 1
                        if delivery is not None:
                            claim = delivery.claim
                        await self._settle(claim, decide(claim, sub, failure))
            except TimeoutError:
                if not timer.expired():
                    raise
                # hung past its lease: the next claim counts it as an attempt
                logger.warning(
                    "handler for %s in %s ran past its lease; it will be redelivered",
                    claims[index - 1].event.event_id, sub.consumer_group,
                )  # fmt: skip
                self.failed += 1
            except asyncio.CancelledError:
                await self._release(claims[index - 1 :])
                raise

    async def _prepare(self, claim: Claim) -> Claim | None:
        """The claim ready to handle, or None: past its last attempt (dead-lettered), or its lease
        ran low while it waited behind slower events of its batch and could not be renewed."""
        sub = self.subscription
        if claim.attempt > sub.max_attempts:
            # earlier attempts died with their consumer (lease expired): give up as for an error
            self.failed += 1
            error = claim.last_error or "lease expired on every attempt"
            await self._settle(claim, decide(claim, sub, error))
            return None
        self._timer.move_to(None)
        try:
            return await self.store.extend_lease(claim, sub.lease_ms)
        except Exception as e:
            logger.warning(
                "could not renew the lease on %s in %s: %s", claim.event.event_id,
                sub.consumer_group, describe(e),
            )  # fmt: skip
            return claim if claim.lease_deadline_ms > now_ms() else None

    def _lease_extended(self, delivery: Delivery, deadline_ms: int) -> None:
        # only while its handler runs: a task that outlives the handler must not move the limit
        # of whichever event the consumer handles by then
        if delivery is self._delivery:
            self._timer.move_to(deadline_ms)

    # -- settling -----------------------------------------------------------------------------

    async def _settle(self, claim: Claim, outcome: Outcome) -> None:
        self._timer.move_to(None)  # store calls are bounded by the lease, not the handler's timer
        if await self._settler.settle(claim, outcome) and outcome.verdict is Verdict.RETRY:
            due = outcome.due_ms
            self._next_due_ms = due if self._next_due_ms is None else min(self._next_due_ms, due)

    async def _release(self, claims: Sequence[Claim]) -> None:
        await self._settler.release(claims)


def _permanent(error: Exception) -> Exception:
    """A decode failure as an error decide() sends to the DLQ at once."""
    return error if isinstance(error, codec.DECODE_ERRORS) else SerializationError(describe(error))
