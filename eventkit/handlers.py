"""Handlers as users write them (an object with handle_event, an async or a plain function, with
or without a Delivery), and the Delivery a handler may take to see and extend its lease."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from datetime import datetime
from typing import Any

from eventkit.checks import check_number
from eventkit.clock import ms_to_datetime, now_ms
from eventkit.errors import LeaseLostError
from eventkit.events import HANDLED_EVENT, BaseEvent
from eventkit.records import Claim
from eventkit.stores.base import EventStore


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
        check_number("seconds", seconds, minimum=0, allow_minimum=False)
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
        """Call the handler; events it creates continue `event`'s story (HANDLED_EVENT)."""
        handling = HANDLED_EVENT.set(event)
        try:
            result = self.call(event, delivery)
            if result is not None and inspect.isawaitable(result):
                await result
        finally:
            HANDLED_EVENT.reset(handling)


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


class LeaseTimer:
    """One asyncio.timeout for a whole batch, moved to each handler's lease deadline (a batch shares
    one, so it rarely moves) and lifted around store calls. A timeout object per event would cost
    about as much as the rest of a delivery on the memory backend."""

    def __init__(self) -> None:
        self.scope = asyncio.timeout(None)
        self._deadline_ms: int | None = None

    def move_to(self, deadline_ms: int | None) -> None:
        """Expire at this lease deadline (None: no limit, e.g. while the store is called)."""
        if deadline_ms == self._deadline_ms:
            return
        self._deadline_ms = deadline_ms
        when = None
        if deadline_ms is not None:
            when = asyncio.get_running_loop().time() + (deadline_ms - now_ms()) / 1000
        self.scope.reschedule(when)

    def expired(self) -> bool:
        return self.scope.expired()


def raise_if_cancel_was_swallowed() -> None:
    """Python 3.11's wait_for can return a result when its task was cancelled at the moment the
    awaited call finished, losing the CancelledError (seen at asyncio.run's shutdown with Redis
    Cluster: the supervisor then restarted its worker and the program never exited). The task
    still counts the request, so it is honoured here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def take_back_cancellation() -> None:
    """Undo cancel() requests on this task that were not the consumer's (a handler cancelling
    its own task): they failed one attempt, they must not end the consumer."""
    task = asyncio.current_task()
    while task is not None and task.cancelling():
        task.uncancel()
