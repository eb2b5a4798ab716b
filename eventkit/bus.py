"""EventBus: publish durably, subscribe in process or in consumer groups, replay, DLQ, stats, trim."""

from __future__ import annotations

import asyncio
import functools
import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal

from eventkit import codec, subscribing
from eventkit.checks import check_name, check_number, event_types_of
from eventkit.clock import TimeInput, parse_time
from eventkit.config import EventStoreConfig
from eventkit.consumer import Consumer, Handler, adapt_handler, describe
from eventkit.errors import BusClosedError
from eventkit.events import BaseEvent
from eventkit.progress import reporting
from eventkit.replay import replay_log
from eventkit.stores import open_store
from eventkit.stores.base import (
    WILDCARD,
    DeadLetter,
    EventStore,
    GroupReset,
    now_ms,
)

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000


class EventBus:
    """The one object applications hold: its store is built from config at initialize()."""

    def __init__(self, config: EventStoreConfig | None = None, *, store: EventStore | None = None):
        self._config = config
        self._store = store
        self._initialized = False
        self._closed = False
        self._subscribers: dict[int, tuple[Any, tuple[str, ...], Handler]] = {}
        self._consumers: dict[str, Consumer] = {}
        self._trim_task: asyncio.Task[None] | None = None
        #: restarts of consumers since stopped (stats keep counting them)
        self._retired_restarts = 0

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return self._initialized

    @property
    def closed(self) -> bool:
        """True once close() ran: the bus cannot be used again (make a new one)."""
        return self._closed

    @property
    def store(self) -> EventStore:
        if self._store is None:
            raise BusClosedError("the bus has no store yet: await bus.initialize() first")
        return self._store

    @property
    def config(self) -> EventStoreConfig | None:
        return self._config

    async def initialize(self, config: EventStoreConfig | None = None) -> None:
        """Open the store (from config, else EventStoreConfig.from_env()); idempotent."""
        if self._initialized:
            return
        if self._closed:
            raise BusClosedError("this bus was closed; create a new EventBus")
        if config is not None:
            self._config = config
        if self._config is None:
            self._config = EventStoreConfig.from_env()
        if self._store is None:
            self._store = open_store(self._config)
        await self._store.open()
        self._initialized = True
        read_only = getattr(self._store, "read_only", False)  # a store opened only to look
        if (
            self._config.trim_interval_hours
            and self._config.max_events is not None
            and not read_only
        ):
            self._trim_task = asyncio.get_running_loop().create_task(
                self._trim_periodically(self._config.trim_interval_hours * 3600),
                name="eventkit-trim",
            )
        logger.info("event bus ready on %s", self._store.backend)

    async def __aenter__(self) -> EventBus:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self, timeout: float = 5.0) -> None:
        """Stop consumers (handlers in flight get `timeout` seconds, then are cancelled and their
        events released), stop the trim task, close the store. Idempotent."""
        if self._closed:
            return
        check_number("timeout", timeout, maximum=10**7)
        self._closed = True
        consumers = list(self._consumers.values())
        self._consumers.clear()
        await asyncio.gather(*(self._stop_consumer(c, timeout) for c in consumers))
        if self._trim_task is not None:
            self._trim_task.cancel()
            await asyncio.wait({self._trim_task})
        if self._store is not None and self._initialized:
            try:
                await self._store.close()
            except Exception as e:  # closing gives connections back; a dead store has none
                logger.warning("closing the store failed: %s", describe(e))
        self._initialized = False

    def __del__(self) -> None:
        if getattr(self, "_initialized", False) and not getattr(self, "_closed", True):
            warnings.warn(
                "EventBus was not closed; use 'async with EventBus()' or 'await bus.close()'",
                ResourceWarning,
                stacklevel=1,
            )

    def _require_open(self) -> EventStore:
        if not self._initialized or self._store is None:
            raise BusClosedError(
                "the bus is not initialized" if not self._closed else "the bus is closed"
            )
        return self._store

    # -- publishing ---------------------------------------------------------------------------

    async def publish(self, event: BaseEvent) -> str:
        """Store the event durably, then tell in-process subscribers and wake consumers.

        Raises (and tells no one) if the store fails: a publish either happened or it did not.
        """
        store = self._require_open()
        encoded = codec.encode(event)
        await subscribing.append_and_wake(store, self._consumers, (encoded,))
        if self._subscribers:
            await subscribing.notify(self._subscribers, (event,))
        return encoded.event_id

    async def publish_many(self, events: Iterable[BaseEvent]) -> list[str]:
        """Store a batch in one transaction; ids in input order."""
        store = self._require_open()
        batch = list(events)
        encoded = [codec.encode(e) for e in batch]
        if not encoded:
            return []
        await subscribing.append_and_wake(store, self._consumers, encoded)
        if self._subscribers:
            await subscribing.notify(self._subscribers, batch)
        return [e.event_id for e in encoded]

    # -- in-process subscribers ----------------------------------------------------------------

    def subscribe(self, subscriber: Any, event_types: Sequence[str] | None = None) -> None:
        """Call subscriber for matching events published by this process (not persistent).

        Subscribing the same object again replaces it, so it never runs twice per event.
        """
        types = event_types or getattr(subscriber, "event_types", None) or [WILDCARD]
        call = adapt_handler(subscriber)  # fails now, not at the first publish
        self._subscribers[id(subscriber)] = (subscriber, event_types_of(types), call)

    def unsubscribe(self, subscriber: Any) -> None:
        self._subscribers.pop(id(subscriber), None)

    # -- persistent subscriptions -------------------------------------------------------------

    async def subscribe_persistent(
        self,
        event_types: Sequence[str] | str,
        consumer_group: str,
        consumer_name: str,
        handler: Any,
        batch_size: int = 10,
        max_retries: int = 3,
        *,
        start: Literal["earliest", "latest"] | datetime = "earliest",
        lease_seconds: float = 30.0,
        retry_delay: float = 0.5,
        max_retry_delay: float = 60.0,
    ) -> str:
        """Join consumer_group as consumer_name; the group (and its start) exists on return.

        Args:
            start: where a new group begins: "earliest", "latest" or a datetime (event time).
            lease_seconds: how long a delivery may run before another member may take it.
        """
        store = self._require_open()
        subscription = subscribing.subscription_of(
            event_types, consumer_group, consumer_name, handler, batch_size, max_retries,
            lease_seconds, retry_delay, max_retry_delay,
        )  # fmt: skip
        sub_id = f"{consumer_group}:{consumer_name}"
        previous = self._consumers.pop(sub_id, None)
        if previous is not None:  # re-subscribing a name replaces it: never two tasks for one name
            await previous.stop(timeout=5.0)
        assert self._config is not None
        poll_interval = self._config.poll_interval_seconds
        self._consumers[sub_id] = await subscribing.join_group(
            store, subscription, start, poll_interval
        )
        return sub_id

    async def unsubscribe_persistent(self, subscription_id: str, timeout: float = 5.0) -> None:
        """Stop one consumer like close() does: its handler in flight finishes, then release."""
        consumer = self._consumers.pop(subscription_id, None)
        if consumer is None:
            raise KeyError(f"no persistent subscription {subscription_id!r} in this bus")
        await self._stop_consumer(consumer, timeout)

    async def _stop_consumer(self, consumer: Consumer, timeout: float) -> None:
        await consumer.stop(timeout)
        self._retired_restarts += consumer.restarts
        await subscribing.leave_group(self.store, consumer)

    async def wait_idle(self, consumer_group: str | None = None, timeout: float = 30.0) -> bool:
        """Wait until nothing in the group(s) is unread, in flight or awaiting retry (the DLQ does
        not count). None means the groups this bus consumes. False on timeout, also when the
        store cannot be asked meanwhile: returns within timeout + 1 s whatever the store does."""
        store = self._require_open()
        check_number("timeout", timeout, maximum=10**7)
        return await subscribing.wait_until_idle(store, consumer_group, timeout, self._consumers)

    # -- dead-letter queue --------------------------------------------------------------------

    async def dlq_size(self, consumer_group: str) -> int:
        """How many events sit in the group's dead-letter queue (not what is in flight: that is
        get_stats()["groups"][group]["in_flight"])."""
        return await self._require_open().count_dead_letters(consumer_group)

    async def dead_letters(
        self, consumer_group: str | None = None, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        """The DLQ entries of a group (or of every group), oldest failure first: each with its
        `.event` (typed), `.last_error`, `.traceback`, `.attempts`, `.replays` and `.failed_at`."""
        return await self._require_open().get_pending_events(
            consumer_group, event_ids=None if event_ids is None else list(event_ids)
        )

    async def get_pending_events(self, consumer_group: str) -> int:
        """The size of the group's DLQ, under the guide's name: the same as dlq_size(). (The
        store's get_pending_events lists the entries, as dead_letters() does.)"""
        return await self.dlq_size(consumer_group)

    async def replay_dlq(
        self,
        consumer_group: str,
        event_types: Sequence[str] | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        """Redeliver DLQ entries to that group only, attempts reset; returns how many."""
        replayed = await self._require_open().replay_dead_letters(
            consumer_group,
            event_types=None if event_types is None else event_types_of(event_types),
            event_ids=None if event_ids is None else list(event_ids),
        )
        subscribing.wake(self._consumers, consumer_group)
        return replayed

    async def discard_dlq(self, consumer_group: str, event_ids: Sequence[str] | None = None) -> int:
        """Delete DLQ entries of the group (all, or those ids); returns how many."""
        return await self._require_open().discard_dead_letters(
            consumer_group, event_ids=None if event_ids is None else list(event_ids)
        )

    # -- group positions ----------------------------------------------------------------------

    async def list_groups(self) -> list[str]:
        """Names of the store's consumer groups (made by any process sharing it), sorted."""
        return await self._require_open().groups()

    async def reset_group(
        self,
        consumer_group: str,
        to: Literal["earliest", "latest"] | TimeInput = "earliest",
        force: bool = False,
        *,
        dry_run: bool = False,
    ) -> GroupReset:
        """Move the group's position so it handles the events from `to` on again, in publish
        order, each as a first delivery (Kafka's offset reset by time). The DLQ and the
        counters stay; what was in flight or retrying is dropped and counted in the result.

        Args:
            to: "earliest" (every retained event), "latest" (only events published later), or a
                time (datetime, date or ISO string; naive = UTC): from the first event, in
                publish order, stamped at or after it.
            force: reset even while members hold leases (else GroupBusyError): the leases are
                released, and their handlers' late acks do not count.
            dry_run: only say what a reset would do (how many events it would deliver).
        """
        store = self._require_open()
        check_name("consumer_group", consumer_group)
        target = subscribing.reset_target(to)
        result = await store.reset_group(consumer_group, target, force=force, dry_run=dry_run)
        if not dry_run:
            subscribing.wake(self._consumers, consumer_group)
        return result

    async def delete_group(self, consumer_group: str) -> bool:
        """Remove the group with its types, members, deliveries, DLQ and counters, so its name
        can start afresh; False if there was none. This bus's subscriptions to it stop first
        (as unsubscribe_persistent); members elsewhere fail to claim (GroupNotFoundError)."""
        store = self._require_open()
        check_name("consumer_group", consumer_group)
        for sub_id, consumer in list(self._consumers.items()):
            if consumer.subscription.consumer_group == consumer_group:
                del self._consumers[sub_id]
                await self._stop_consumer(consumer, timeout=5.0)
        return await store.delete_group(consumer_group)

    # -- replay -------------------------------------------------------------------------------

    async def replay_events(
        self,
        event_types: Sequence[str] | str,
        handler: Any,
        start_time: TimeInput | None = None,
        end_time: TimeInput | None = None,
        limit: int | None = None,
        *,
        progress: Callable[[int], None] | bool = True,
    ) -> int:
        """Call handler on stored events of these types with start_time <= timestamp < end_time,
        in publish order and migrated, outside any group (no acks, no DLQ). Returns how many were
        handled; a handler error stops the replay and propagates.

        Times: datetimes (naive = UTC), pandas.Timestamp, dates or ISO strings. progress: True
        shows a bar once the replay has run a second, False none, a callable gets the count."""
        store = self._require_open()
        if limit is not None:
            check_number("limit", limit, integer=True)
        start = None if start_time is None else parse_time(start_time, "start_time")
        end = None if end_time is None else parse_time(end_time, "end_time")
        replay = functools.partial(
            replay_log, store, event_types_of(event_types), adapt_handler(handler), start, end,
            limit,
        )  # fmt: skip
        if callable(progress):
            return await replay(progress)
        with reporting(progress, "replaying") as report:
            return await replay(None if report is None else lambda n: report(n, None))

    # -- stats and retention ------------------------------------------------------------------

    async def get_stats(self) -> dict[str, Any]:
        """Store-wide and per-group figures (shared by every process on the store) plus this bus."""
        stats: dict[str, Any] = dict(await self._require_open().stats())
        stats["bus"] = {
            "subscribers": len(self._subscribers),
            "persistent_subscriptions": sorted(self._consumers),
            # consumer tasks of this bus that ended unexpectedly and were started again
            "consumer_restarts": sum(c.restarts for c in self._consumers.values())
            + self._retired_restarts,
        }
        return stats

    async def trim_old_events(self, max_age_days: float = 30) -> int:
        """Remove events older than max_age_days (by their timestamp) that every group has acked."""
        check_number("max_age_days", max_age_days, maximum=10**7)
        result = await self._require_open().trim(before_ms=now_ms() - int(max_age_days * DAY_MS))
        return result.removed

    async def _trim_periodically(self, interval_seconds: float) -> None:
        assert self._config is not None
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                result = await self.store.trim(max_events=self._config.max_events)
                logger.info(
                    "trimmed %d events (%d kept unacked)", result.removed, result.kept_unacked
                )
            except Exception as e:
                logger.warning("background trim failed: %s", describe(e))


EnhancedEventBus = EventBus
