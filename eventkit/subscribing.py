"""What the bus does for its consumers and subscribers below its API: checked subscriptions,
joining and leaving groups, waking consumers and telling in-process subscribers after a publish,
and the idle wait."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from eventkit.checks import check_name, check_number, event_types_of, group_start_of
from eventkit.clock import TimeInput, datetime_to_ms, parse_time
from eventkit.consumer import Consumer, Handler, Subscription, adapt_handler, describe
from eventkit.errors import StoreError
from eventkit.events import BaseEvent
from eventkit.stores.base import EventStore, GroupStart, NewEvent, matches

#: the bus's logger: these messages were the bus's before they moved here, and filters name it
logger = logging.getLogger("eventkit.bus")


def subscription_of(
    event_types: Sequence[str] | str,
    consumer_group: str,
    consumer_name: str,
    handler: Any,
    batch_size: int,
    max_retries: int,
    lease_seconds: float,
    retry_delay: float,
    max_retry_delay: float,
) -> Subscription:
    """subscribe_persistent's arguments, checked (ConfigError naming the first bad one)."""
    types = event_types_of(event_types)
    check_number("batch_size", batch_size, integer=True, minimum=1, maximum=100_000)
    check_number("max_retries", max_retries, integer=True, maximum=1_000_000)
    # a lease of days is a hung handler holding its event: a week is plenty
    check_number("lease_seconds", lease_seconds, minimum=0.001, maximum=7 * 86_400)
    check_number("retry_delay", retry_delay, maximum=7 * 86_400)
    check_number("max_retry_delay", max_retry_delay, maximum=7 * 86_400)
    check_name("consumer_group", consumer_group)
    check_name("consumer_name", consumer_name)
    return Subscription(
        types, consumer_group, consumer_name, adapt_handler(handler), batch_size,
        max_retries, lease_seconds, retry_delay, max_retry_delay,
    )  # fmt: skip


async def append_and_wake(
    store: EventStore, consumers: Mapping[str, Consumer], encoded: Sequence[NewEvent]
) -> None:
    """Store a batch, then wake the consumers (publishing's one path to the store)."""
    try:
        await store.append(encoded)
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"publishing {len(encoded)} events failed: {describe(e)}") from e
    for consumer in consumers.values():
        consumer.wakeup.set()


async def join_group(
    store: EventStore,
    subscription: Subscription,
    start: Literal["earliest", "latest"] | datetime,
    poll_interval: float,
) -> Consumer:
    """Make sure the group exists (from `start`), register the member, start its consumer."""
    consumer_group, consumer_name = subscription.consumer_group, subscription.consumer_name
    await store.ensure_group(consumer_group, subscription.event_types, group_start_of(start))
    await store.register_consumer(consumer_group, consumer_name, ttl_ms=2 * subscription.lease_ms)
    consumer = Consumer(store, subscription, poll_interval=poll_interval)
    consumer.start()
    return consumer


async def leave_group(store: EventStore, consumer: Consumer) -> None:
    """Unregister a stopped consumer's member; a failure is logged, not raised."""
    sub = consumer.subscription
    try:
        await store.unregister_consumer(sub.consumer_group, sub.consumer_name)
    except Exception as e:
        logger.warning("could not unregister %s: %s", sub.consumer_name, describe(e))


async def notify(
    subscribers: Mapping[int, tuple[Any, tuple[str, ...], Handler]], events: Sequence[BaseEvent]
) -> None:
    """Call each in-process subscriber on the events it wants; a failing one is logged."""
    for event in events:
        for subscriber, types, call in list(subscribers.values()):
            if not matches(event.event_type, types):
                continue
            try:
                await call(event, None)
            except Exception:
                logger.exception(
                    "in-process subscriber %r failed on %s", subscriber, event.event_id
                )


def reset_target(to: Literal["earliest", "latest"] | TimeInput) -> GroupStart:
    """Where reset_group moves a group: "earliest", "latest", or a time as epoch milliseconds."""
    target: GroupStart
    if to == "earliest":
        target = "earliest"
    elif to == "latest":
        target = "latest"
    else:
        target = datetime_to_ms(parse_time(to, "to"))
    return target


def wake(consumers: Mapping[str, Consumer], consumer_group: str) -> None:
    """Wake the group's consumers: something was replayed or reset for them."""
    for consumer in consumers.values():
        if consumer.subscription.consumer_group == consumer_group:
            consumer.wakeup.set()


def acks_pending(consumers: Mapping[str, Consumer], groups: Sequence[str]) -> bool:
    """Whether a consumer of these groups still holds acks it has not written."""
    return any(
        c.acks_pending for c in consumers.values() if c.subscription.consumer_group in groups
    )


async def wait_until_idle(
    store: EventStore,
    consumer_group: str | None,
    timeout: float,
    consumers: Mapping[str, Consumer],
) -> bool:
    """wait_idle's poll: True once the store finds the group (None: the consumers' groups) idle
    and no ack of theirs is pending here, False when timeout passes first (also while the store
    cannot be asked)."""
    groups = (
        [check_name("consumer_group", consumer_group)]
        if consumer_group is not None
        else sorted({c.subscription.consumer_group for c in consumers.values()})
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        try:
            idle = await asyncio.wait_for(store.is_idle(groups), max(left, 0) + 0.5)
        except (StoreError, TimeoutError) as e:
            logger.debug("wait_idle could not ask the store: %s", describe(e))
            idle = False
        if idle and not acks_pending(consumers, groups):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(min(0.01, max(0.0, deadline - loop.time())))
