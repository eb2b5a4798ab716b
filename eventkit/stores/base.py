"""The store protocol: small atomic operations every backend implements, and the records they move.

Stores move JSON text and metadata only; they never decode or migrate events (codec.py does) and hold
no delivery policy (consumer.py does: attempts, backoff, what goes to the DLQ). All times are integer
epoch milliseconds in one clock domain (``now_ms``), never local time or text.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from typing import (
    Any,
    Literal,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from eventkit.checks import check_number
from eventkit.clock import now_ms
from eventkit.errors import EventKitError, StoreError
from eventkit.records import (
    Claim,
    DeadLetter,
    DeliveryRecord,
    DeliveryStatus,
    GroupReset,
    GroupStats,
    NewEvent,
    Stats,
    StoredEvent,
    StoreStats,
    TrimResult,
)
from eventkit.stores.lookup import PayloadValue

__all__ = [  # the records are re-exported: stores and tests name them from here
    "Claim", "DeadLetter", "DeliveryRecord", "DeliveryStatus", "EventStore", "GroupReset", "GroupStart",
    "EXPIRED_LEASE_ERROR", "GroupStats", "NewEvent", "Stats", "StoreStats", "StoredEvent", "TrimResult", "WILDCARD",
    "check_limit", "claim_cancel_safe", "stats_with_store_block", "error_boundary", "matches", "now_ms",
]  # fmt: skip

#: a group's start: all retained events, only those published after it, or from a timestamp (ms)
GroupStart = Literal["earliest", "latest"] | int

WILDCARD = "*"

#: last_error of a delivery claimed again after its lease expired, on every backend (the Redis
#: claim script gets it with %s for the consumer)
EXPIRED_LEASE_ERROR = (
    "lease expired: consumer {consumer} did not settle within its lease (died or hung)"
)

R = TypeVar("R")


@runtime_checkable
class EventStore(Protocol):
    """What the bus needs from a backend. Every method is atomic on its own; the conformance suite
    in tests/conformance holds the observable semantics every backend must share."""

    #: "memory" | "sqlite" | "redis"
    backend: str
    #: True when claim(block_ms=...) can wait server-side for new events (Redis XREADGROUP BLOCK)
    blocking_claims: bool
    #: 0 when the store works in the event loop's thread (memory): claiming ahead would only
    #: delay handlers. Else its work runs elsewhere (a server, SQLite's C code in aiosqlite's
    #: thread) and the consumer claims the next batch while handlers run; the number is how many
    #: loop turns a claim takes to send its request, given before the first handler starts
    prefetch_turns: int

    async def open(self) -> None:
        """Connect and create the schema if needed; idempotent. StoreUnavailableError if unreachable."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    # -- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        """Store a batch in one transaction, durable on return; positions in input order.

        An event whose event_id is already stored is not stored again: its existing position is
        returned (producers retry). Positions are store-assigned, strictly increasing in commit order.
        """

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
        """Events in publish order, filtered by type ("*" or None: all), timestamp in
        [start_ms, end_ms), source, and position > after_position (for paging)."""

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        """The stored events with these ids, in publish order (missing ids are left out)."""

    async def correlated(self, correlation_id: str) -> list[StoredEvent]:
        """The events of one story in publish order: those whose correlation_id is this one, and
        the event with this id if its correlation_id is None (a first event, or one stored
        before correlation existed: records.correlation_of)."""

    async def find(
        self, field_path: str, value: PayloadValue, *, limit: int | None = None
    ) -> list[StoredEvent]:
        """Events in publish order whose payload field (dotted path, e.g. "metadata.width")
        equals `value` as JSON sees it (lookup.payload_matches); ConfigError for a bad path."""

    async def index_payload_field(self, field_path: str) -> str | None:
        """Make find() on this field use an index, where the backend has them (SQLite: an
        expression index, returned by name); None where find() always scans (memory, Redis)."""

    async def get_note(self, name: str) -> str | None:
        """The text last kept under `name` by put_note, or None."""

    async def put_note(self, name: str, text: str) -> None:
        """Keep a small text (JSON) beside the log, for every process that opens the store: what
        a reader learned from the whole log (frames_kinds: the kinds of payload values), so the
        next process reads only what came after."""

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        """Create the group at `start` if it is new, and add `event_types` to its filter.

        A group's filter is the union of the types it was ever subscribed with ("*" matches all).
        `start` is ignored for an existing group. A timestamp start begins at the first event
        (in publish order) whose timestamp_ms >= start.
        """

    async def groups(self) -> list[str]:
        """Names of all groups, sorted."""

    async def reset_group(
        self, group: str, to: GroupStart, *, force: bool = False, dry_run: bool = False
    ) -> GroupReset:
        """Move the group's position, atomically: it reads next the events after the last one
        (publish order) before `to` ("earliest": all retained; "latest": none of the log; a
        timestamp: from the first event stamped at or after it, as a new group's start), each
        delivered as a first delivery (attempts 1). Refused with GroupBusyError while a member
        holds an unexpired lease, unless `force`, which releases the leases (their late acks do
        not count). Every in-flight and retrying delivery is dropped; delivery records after the
        position go (those up to it stay); its types, members, DLQ and counters are kept.
        dry_run: what would happen, changing nothing (GroupBusyError as for a real reset).
        GroupNotFoundError for a group the store does not hold."""

    async def delete_group(self, group: str) -> bool:
        """Remove the group with its types, members, deliveries, DLQ and counters; its name can
        be used again for a new group. False if there was no such group. Its members' claims,
        acks and heartbeats fail from then on with GroupNotFoundError."""

    async def register_consumer(self, group: str, consumer: str, *, ttl_ms: int = 60_000) -> None:
        """Record a member of the group as live for ttl_ms from now (stats count live members);
        called again as a heartbeat. GroupNotFoundError for a group the store does not hold."""

    async def unregister_consumer(self, group: str, consumer: str) -> None:
        """Forget a member; its unsettled claims stay leased until they expire or are released."""

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        """Lease up to `limit` events of the group's filter to `consumer`, atomically across processes.

        First events due again (retry time reached, or lease expired: each counts as a new attempt,
        an expired lease sets last_error to say so), then unread ones in publish order. No event is
        leased to two consumers at once, and a dead or acked event is never leased again. With
        block_ms > 0 a store with blocking_claims may wait that long for new events; others return.
        """

    async def ack(self, claims: Sequence[Claim]) -> int:
        """Mark acked those claims still holding their lease (token matches, deadline not passed);
        the rest are ignored. Returns how many counted."""

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        """Push the deadline to now + lease_ms if the claim still holds the lease; None if lost."""

    async def release(self, claims: Sequence[Claim]) -> int:
        """Give claims back (bus closing): deliverable again at once, and this attempt not counted."""

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        """Schedule a retry at due_ms with the error, if the claim still holds its lease."""

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        """Move the event to the group's DLQ, atomically with ending its lease, if still held."""

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        """True when nothing in these groups (None: all) is unread, in flight or awaiting retry."""

    # -- dead-letter queue --------------------------------------------------------------------

    async def get_pending_events(
        self, consumer_group: str | None = None, *, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        """DLQ entries of a group (None: all groups), oldest failure first."""

    async def count_dead_letters(self, consumer_group: str) -> int:
        """Size of a group's DLQ."""

    async def replay_dead_letters(
        self,
        consumer_group: str,
        *,
        event_types: Sequence[str] | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        """Take matching entries out of the DLQ and make them deliverable to that group only, with
        attempts reset; works even if the event was trimmed from the log. Returns how many."""

    async def discard_dead_letters(
        self, consumer_group: str, *, event_ids: Sequence[str] | None = None
    ) -> int:
        """Delete matching DLQ entries (None: all of the group's). Returns how many."""

    # -- analysis and retention ---------------------------------------------------------------

    async def deliveries(
        self, group: str, *, after_position: int | None = None, limit: int | None = None
    ) -> list[DeliveryRecord]:
        """Delivery records of one group in position order, paged by after_position."""

    async def stats(self) -> Stats:
        """{"store": StoreStats, "groups": {name: GroupStats}}, read from the store itself so every
        process sharing it sees the same figures."""

    async def trim(
        self, *, before_ms: int | None = None, max_events: int | None = None
    ) -> TrimResult:
        """Remove events with timestamp_ms < before_ms, and the oldest beyond the newest max_events,
        except those some group has not acked (unread, in flight, retrying); never touches the DLQ.
        Delivery records of removed events go with them."""


def matches(event_type: str, event_types: Collection[str] | None) -> bool:
    return not event_types or WILDCARD in event_types or event_type in event_types


async def claim_cancel_safe(
    store: EventStore,
    claiming: Coroutine[Any, Any, R],
    leased: Callable[[R], Sequence[Claim]],
    stop: Callable[[], Awaitable[None]] | None = None,
) -> R:
    """Run a claim so that cancelling its caller loses nothing: once statements or scripts that
    lease have been sent they run to their end (`stop` hurries them: a blocked read ended), what
    they leased is released, then the cancellation goes on. A consumer is stopped by cancelling
    its claim, maybe more than once."""
    task = asyncio.ensure_future(claiming)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if stop is not None:
            await _through_cancellations(asyncio.ensure_future(stop()))
        result = await _through_cancellations(task)
        claims = [] if result is None else leased(result)
        if claims:
            await _through_cancellations(asyncio.ensure_future(store.release(claims)))
        raise


async def _through_cancellations(task: asyncio.Future[R]) -> R | None:
    """The task's result once it is done, whatever cancels the caller meanwhile; None if it failed
    (a failed claim leased nothing; a failed release leaves leases to expire)."""
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            continue
        except Exception:
            break
    return None if task.cancelled() or task.exception() is not None else task.result()


def check_limit(limit: int | None, label: str = "limit") -> None:
    """A limit of rows: None (no limit) or a whole number >= 0, never a negative that SQL would
    read as no limit."""
    if limit is not None:
        check_number(label, limit, integer=True)


StoreT = TypeVar("StoreT", bound=type)


def error_boundary(
    translate: Callable[[Any, Exception], StoreError], *, chain: bool = True
) -> Callable[[StoreT], StoreT]:
    """Class decorator: the backend's protocol methods let no driver exception out. eventkit's
    own errors and argument TypeErrors pass; anything else becomes what `translate(store, error)`
    makes of it (StoreUnavailableError when the store cannot be reached, else StoreError),
    chained to the original unless `chain` is False (a driver's text may quote a secret).
    One boundary per backend, so callers catch eventkit errors only."""

    def decorate(cls: StoreT) -> StoreT:
        for name, member in list(vars(cls).items()):
            if name in _PROTOCOL_METHODS and inspect.iscoroutinefunction(member):
                setattr(cls, name, _guarded(member, translate, chain))
        return cls

    return decorate


def _guarded(
    method: Callable[..., Awaitable[R]],
    translate: Callable[[Any, Exception], StoreError],
    chain: bool,
) -> Callable[..., Coroutine[Any, Any, R]]:
    @functools.wraps(method)
    async def guarded(self: Any, *args: Any, **kwargs: Any) -> R:
        try:
            return await method(self, *args, **kwargs)
        except (EventKitError, TypeError):
            raise
        except Exception as e:
            raise translate(self, e) from (e if chain else None)

    return guarded


_PROTOCOL_METHODS = frozenset(
    name
    for name, member in vars(EventStore).items()
    if not name.startswith("_") and inspect.iscoroutinefunction(member)
)


def stats_with_store_block(
    backend: str, total_events: int, kept_unacked: int, groups: dict[str, GroupStats]
) -> Stats:
    """Stats with the store block every backend shares: its in-flight and DLQ counts are the
    groups' sums, so the two can never disagree. Adds the old `pending` names as aliases."""
    for figures in groups.values():
        figures["pending"] = figures["in_flight"]  # the old name, for one release
    in_flight = sum(g["in_flight"] for g in groups.values())
    store: StoreStats = {
        "backend": backend,
        "total_events": total_events,
        "in_flight_events": in_flight,
        "pending_events": in_flight,
        "dlq_events": sum(g["dlq"] for g in groups.values()),
        "kept_unacked": kept_unacked,
    }
    return {"store": store, "groups": groups}
