"""One persistent subscription: claim -> call handler -> ack | retry with backoff | dead-letter."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import random
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import CoroutineType
from typing import Any

from eventkit import codec
from eventkit.errors import LeaseLostError
from eventkit.events import BaseEvent, ms_to_datetime
from eventkit.stores.base import Claim, EventStore, now_ms

logger = logging.getLogger(__name__)


#: loop turns a prefetched claim needs to reach the socket (redis-py awaits a few times first)
PREFETCH_YIELDS = 4
#: how often stop() looks again at a consumer it is waiting for
STOP_RECHECK_SECONDS = 0.05


class Delivery:
    """What a handler may know about its delivery, and how it keeps a long job's lease alive."""

    def __init__(
        self,
        claim: Claim,
        store: EventStore,
        on_extend: Callable[[Delivery, int], None] | None = None,
    ) -> None:
        self._claim = claim
        self._store = store
        self._on_extend = on_extend  # moves the handler's time limit to the new lease deadline

    @property
    def attempt(self) -> int:
        return self._claim.attempt

    @property
    def consumer_group(self) -> str:
        return self._claim.consumer_group

    @property
    def consumer_name(self) -> str:
        return self._claim.consumer_name

    @property
    def lease_deadline(self) -> datetime:
        return ms_to_datetime(self._claim.lease_deadline_ms)

    @property
    def claim(self) -> Claim:
        return self._claim

    async def extend_lease(self, seconds: float) -> datetime:
        """Keep the event for `seconds` more from now; LeaseLostError if it was already lost."""
        if seconds <= 0:
            raise ValueError(f"extend_lease needs a positive number of seconds, got {seconds!r}")
        extended = await self._store.extend_lease(self._claim, int(seconds * 1000))
        if extended is None:
            raise LeaseLostError(
                f"lease on {self._claim.event.event_id} in {self.consumer_group!r} was lost "
                "(expired or taken over); extend it earlier, or raise lease_seconds"
            )
        self._claim = extended
        if self._on_extend is not None:
            self._on_extend(self, extended.lease_deadline_ms)
        return self.lease_deadline

    def __repr__(self) -> str:
        return (
            f"Delivery(attempt={self.attempt}, consumer_group={self.consumer_group!r}, "
            f"consumer_name={self.consumer_name!r}, lease_deadline={self.lease_deadline!r})"
        )


class Handler:
    """A user's handler, called the way it was written: an object with handle_event, an async
    or a plain function, taking the event and optionally a Delivery."""

    __slots__ = ("target", "wants_delivery")

    def __init__(self, target: Callable[..., Any], wants_delivery: bool) -> None:
        self.target = target
        self.wants_delivery = wants_delivery

    def call(self, event: BaseEvent, delivery: Delivery | None) -> Any:
        """The handler's result: an awaitable for async handlers (the caller awaits it)."""
        return self.target(event, delivery) if self.wants_delivery else self.target(event)

    async def __call__(self, event: BaseEvent, delivery: Delivery | None = None) -> None:
        result = self.call(event, delivery)
        if result is not None and inspect.isawaitable(result):
            await result


def adapt_handler(handler: Any) -> Handler:
    target = getattr(handler, "handle_event", handler)
    if not callable(target):
        raise TypeError(
            f"handler {handler!r} is not callable and has no handle_event(event) method"
        )
    return Handler(target, _positional_arity(target) >= 2)


def _positional_arity(target: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return 1
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in kinds)


@dataclass(frozen=True)
class Subscription:
    """The settings of one persistent subscription (SPEC §3 subscribe_persistent)."""

    event_types: tuple[str, ...]
    consumer_group: str
    consumer_name: str
    handler: Handler
    batch_size: int = 10
    max_retries: int = 3
    lease_seconds: float = 30.0
    retry_delay: float = 0.5
    max_retry_delay: float = 60.0

    @functools.cached_property
    def max_attempts(self) -> int:
        return 1 + self.max_retries

    @functools.cached_property
    def lease_ms(self) -> int:  # read for every delivery
        return max(1, int(self.lease_seconds * 1000))


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before the retry that follows failed attempt `attempt`: base*2^(attempt-1), capped,
    with jitter in [50 %, 100 %] so retries of many events spread out."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    jitter = rng.random() if rng is not None else random.random()
    return float(delay * (0.5 + 0.5 * jitter))


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


@dataclass
class Consumer:
    """Runs one subscription as a task; stop() lets the handler in flight finish, then releases."""

    store: EventStore
    subscription: Subscription
    poll_interval: float = 0.1
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False
    _handling: bool = False
    _acks: list[Claim] = field(default_factory=list)
    _ack_task: asyncio.Task[None] | None = None
    _next_due_ms: int | None = None
    _timeout: asyncio.Timeout | None = None
    _armed_ms: int | None = None
    _delivery: Delivery | None = None
    handled: int = 0
    failed: int = 0

    def start(self) -> None:
        name = f"eventkit-consumer:{self.subscription.consumer_group}:{self.subscription.consumer_name}"
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, timeout: float) -> None:
        """Finish the handler in flight (up to timeout), then cancel it; its event is released."""
        self._stopping = True
        self.wakeup.set()
        task = self._task
        if task is not None and not task.done():
            deadline = asyncio.get_running_loop().time() + max(0.0, timeout)
            while not task.done():
                if self.store.blocking_claims and not self._handling:
                    # waiting for work in a blocking claim: the store releases what a cancelled
                    # claim leased, so there is nothing to finish. Cancelled again while it
                    # runs: Python 3.11's wait_for (inside redis-py) can swallow a cancellation
                    task.cancel()
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                await asyncio.wait({task}, timeout=min(left, STOP_RECHECK_SECONDS))
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if self._ack_task is not None:
            await asyncio.wait({self._ack_task})
        await self._flush_acks()

    async def _run(self) -> None:
        sub = self.subscription
        prefetched: asyncio.Task[list[Claim] | None] | None = None
        try:
            while not self._stopping:
                self.wakeup.clear()
                if prefetched is not None:
                    claims, prefetched = await prefetched, None
                else:
                    claims = await self._claim()
                if claims is None:  # the store is down: keep the consumer alive, try again
                    await self._idle(self.poll_interval)
                    continue
                if not claims:
                    if not self.store.blocking_claims:
                        await self._idle(self._idle_seconds())
                    continue
                self._handling = True  # from here a stop() lets the batch finish
                try:
                    if self.store.prefetch_claims and len(claims) == sub.batch_size:
                        # a backlog: the server prepares the next batch while this one is handled
                        prefetched = asyncio.get_running_loop().create_task(self._claim())
                        for _ in range(PREFETCH_YIELDS):  # let it send its request
                            await asyncio.sleep(0)
                    await self._handle_batch(claims)
                finally:
                    self._handling = False
                if self._acks:
                    # handlers that never yield (no-op, CPU-only) would starve the ack task: let
                    # it take this batch's acks before the next claim
                    await asyncio.sleep(0)
        finally:
            if prefetched is not None:  # wait for it (a blocking one is cancelled), give it back
                if self.store.blocking_claims:
                    prefetched.cancel()
                try:
                    claims = await prefetched
                except asyncio.CancelledError:
                    claims = None
                if claims:
                    await self._release(claims)

    async def _claim(self) -> list[Claim] | None:
        sub = self.subscription
        try:
            return await self.store.claim(
                sub.consumer_group,
                sub.consumer_name,
                limit=sub.batch_size,
                lease_ms=sub.lease_ms,
                block_ms=int(self.poll_interval * 1000) if self.store.blocking_claims else 0,
            )
        except Exception as e:
            logger.warning("claim failed in %s: %s; retrying", sub.consumer_group, describe(e))
            return None

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
            await asyncio.wait_for(self.wakeup.wait(), seconds)
        except TimeoutError:
            pass

    async def _handle_batch(self, claims: Sequence[Claim]) -> None:  # noqa: C901 (one hot loop)
        """Each handler is bounded by its claim's lease through one timeout per batch, re-armed
        only when the deadline changes (a batch shares one) and disarmed around store calls.
        The common path (decode, call, queue the ack) is inline: it runs for every event."""
        sub = self.subscription
        max_attempts, renew_below = sub.max_attempts, sub.lease_ms // 2
        target, wants_delivery, decode = (
            sub.handler.target,
            sub.handler.wants_delivery,
            codec.decode,
        )
        clock = time.time_ns  # now_ms() inline: the lease check runs for every event
        index = 0
        while index < len(claims):
            self._armed_ms = None
            self._timeout = timeout = asyncio.timeout(None)
            try:
                async with timeout:
                    while index < len(claims):
                        if self._stopping:
                            await self._release(claims[index:])
                            return
                        claim = claims[index]
                        index += 1
                        if claim.attempt > max_attempts or (
                            claim.lease_deadline_ms - clock() // 1_000_000 < renew_below
                        ):
                            ready = await self._prepare(claim)
                            if ready is None:
                                continue
                            claim = ready
                        try:
                            event = decode(claim.event)
                        except codec.DECODE_ERRORS as e:  # no retry can fix this: DLQ at once
                            self._arm(None)
                            await self.store.dead_letter(
                                claim, error=describe(e), traceback=traceback.format_exc()
                            )
                            self.failed += 1
                            continue
                        if claim.lease_deadline_ms != self._armed_ms:
                            self._arm(claim.lease_deadline_ms)
                        delivery = None
                        try:
                            # Handler.__call__ inlined: a frame less per event
                            if wants_delivery:
                                delivery = Delivery(claim, self.store, self._lease_extended)
                                self._delivery = delivery
                                result = target(event, delivery)
                            else:
                                result = target(event)
                            if result is not None and (
                                type(result) is CoroutineType or inspect.isawaitable(result)
                            ):
                                await result
                        except asyncio.CancelledError:
                            raise
                        except Exception as e:
                            self._arm(None)
                            await self._fail(claim, e)
                        else:
                            self.handled += 1
                            # the latest lease, if the handler extended it; _queue_ack inlined
                            self._acks.append(claim if delivery is None else delivery.claim)
                            if self._ack_task is None or self._ack_task.done():
                                self._start_ack_task()
                        finally:
                            self._delivery = None
            except TimeoutError:
                if not timeout.expired():
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
        self._arm(None)
        sub = self.subscription
        if claim.attempt > sub.max_attempts:
            # earlier attempts died with their consumer (lease expired): give up as for an error
            await self.store.dead_letter(
                claim, error=claim.last_error or "lease expired on every attempt"
            )
            self.failed += 1
            return None
        return await self.store.extend_lease(claim, sub.lease_ms)

    def _arm(self, deadline_ms: int | None) -> None:
        """Point the batch's timeout at a lease deadline (None: no limit, for store calls)."""
        if deadline_ms == self._armed_ms or self._timeout is None:
            return
        self._armed_ms = deadline_ms
        when = None
        if deadline_ms is not None:
            when = asyncio.get_running_loop().time() + (deadline_ms - now_ms()) / 1000
        self._timeout.reschedule(when)

    def _lease_extended(self, delivery: Delivery, deadline_ms: int) -> None:
        # only while its handler runs: a task that outlives the handler must not move the limit
        # of whichever event the consumer handles by then
        if delivery is self._delivery:
            self._arm(deadline_ms)

    async def _release(self, claims: Sequence[Claim]) -> None:
        try:
            await asyncio.shield(self.store.release(claims))
        except Exception as e:  # the leases will expire and the events come back anyway
            logger.warning("could not release %d claims: %s", len(claims), describe(e))

    async def _fail(self, claim: Claim, error: BaseException) -> None:
        sub = self.subscription
        self.failed += 1
        text = describe(error)
        trace = "".join(traceback.format_exception(error))
        if claim.attempt >= sub.max_attempts:
            await self.store.dead_letter(claim, error=text, traceback=trace)
            return
        delay = backoff_seconds(claim.attempt, sub.retry_delay, sub.max_retry_delay)
        due = now_ms() + int(delay * 1000)
        if await self.store.retry_later(claim, due_ms=due, error=text):
            self._next_due_ms = due if self._next_due_ms is None else min(self._next_due_ms, due)

    def _start_ack_task(self) -> None:
        # acks are flushed as soon as they come, together when they come faster than one write
        self._ack_task = asyncio.get_running_loop().create_task(self._flush_acks())

    async def _flush_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks, []
            try:
                await self.store.ack(batch)
            except Exception as e:  # unacked events come back when their leases expire
                logger.warning("ack of %d events failed: %s", len(batch), describe(e))
