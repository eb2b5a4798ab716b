"""The records stores move: events as appended and as stored, leases, dead letters, deliveries.

Plain data, shared by the stores (which hold them) and the core above (which decodes them). A leaf
module but for DeadLetter.event, which decodes on demand (see there).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple, NotRequired, TypedDict

from eventkit.clock import ms_to_datetime

if TYPE_CHECKING:
    from eventkit.events import BaseEvent


class DeliveryStatus(StrEnum):
    """Where one event stands in one consumer group."""

    #: handled successfully
    ACKED = "acked"
    #: leased to a consumer whose lease has not been settled
    IN_FLIGHT = "in_flight"
    #: failed, waiting for its retry time
    RETRYING = "retrying"
    #: moved to the group's dead-letter queue
    DEAD = "dead"


class NewEvent(NamedTuple):
    """An encoded event ready to append: envelope fields plus the payload as JSON text."""

    event_id: str
    event_type: str
    version: int
    source: str
    timestamp_ms: int
    #: JSON object text of the payload fields only (no envelope fields)
    data: str
    #: the story the event belongs to (its first event's id); None for that first event itself
    #: (and in records of older eventkit): read as the event's own id (correlation_of)
    correlation_id: str | None = None
    #: the id of the event whose handler published this one; None for a first event
    causation_id: str | None = None

    def stored(self, position: int, published_ms: int) -> StoredEvent:
        """The event as a store keeps it, at `position`, accepted at `published_ms`."""
        event_id, event_type, version, source, timestamp_ms, data, correlation, cause = self
        return stored_event_of((position, event_id, event_type, version, source, timestamp_ms,
                                data, published_ms, correlation, cause))  # fmt: skip


class StoredEvent(NamedTuple):
    """An event as stored: its store-assigned position gives publish order. A named tuple, as
    frames build columns from a million of them (twice as fast to make as a frozen dataclass)."""

    position: int
    event_id: str
    event_type: str
    version: int
    source: str
    timestamp_ms: int
    data: str
    #: when the store accepted it (for publish-to-ack latency)
    published_ms: int
    #: None in events stored before correlation existed: read as the event's own id
    #: (correlation_of); the fields come last so records of older code keep their positions
    correlation_id: str | None = None
    causation_id: str | None = None


#: NewEvent and StoredEvent from a tuple (or row) of all their fields in declaration order, made in
#: C: a named tuple's constructor runs a Python-level __new__, and one of each is made per event
#: published or read (bench_core's memory publish rows pay ~5 % for that frame). The length is
#: not checked: callers pass rows of exactly these fields (tests/test_codec.py holds them to it).
new_event_of = functools.partial(tuple.__new__, NewEvent)
stored_event_of = functools.partial(tuple.__new__, StoredEvent)


def correlation_of(stored: StoredEvent) -> str:
    """The event's correlation id; an event stored before correlation existed starts its own."""
    return stored.correlation_id or stored.event_id


@dataclass(slots=True)
class Claim:
    """One event leased to one consumer of a group; only the current holder's settle counts.

    Treat it as immutable (with_deadline makes a renewed copy). Not frozen, nor a named tuple:
    one is made and its fields read several times per delivery, and a plain slots class is the
    fastest at both in CPython 3.11 (a frozen dataclass is three times slower to make, a named
    tuple's fields are not specialised attribute reads): bench_core's consume+ack rows.
    """

    event: StoredEvent
    consumer_group: str
    consumer_name: str
    #: 1 for the first delivery; a retry or a reclaim after an expired lease adds 1
    attempt: int
    lease_deadline_ms: int
    #: opaque; identifies this lease so a stale holder cannot settle a newer one
    token: str
    #: the error of the previous attempt, e.g. "lease expired ..." after a consumer died
    last_error: str | None = None

    def with_deadline(self, lease_deadline_ms: int) -> Claim:
        """The same lease, renewed until lease_deadline_ms."""
        return Claim(
            self.event, self.consumer_group, self.consumer_name, self.attempt, lease_deadline_ms,
            self.token, self.last_error,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event a group gave up on, with why, when and by whom; kept until replayed or discarded."""

    stored: StoredEvent
    consumer_group: str
    consumer_name: str
    attempts: int
    failed_ms: int
    last_error: str
    traceback: str = ""
    #: how many times this event was replayed from the group's DLQ before it came back
    replays: int = 0

    @property
    def event(self) -> BaseEvent:
        """The event, typed and migrated where possible, else a generic Event."""
        # the one upward hop of the records (SPEC §3 wants .event on what stores return); lazy,
        # so stores never load codec, and test_layering allows exactly this import
        from eventkit.codec import decode_lenient

        return decode_lenient(self.stored)

    @property
    def event_id(self) -> str:
        return self.stored.event_id

    @property
    def failed_at(self) -> datetime:
        return ms_to_datetime(self.failed_ms)


class DeliveryRecord(NamedTuple):
    """How one event went in one group: the raw material of latency and retry analysis."""

    position: int
    event_id: str
    event_type: str
    consumer_group: str
    consumer_name: str
    status: DeliveryStatus
    attempts: int
    published_ms: int
    first_delivered_ms: int
    acked_ms: int | None
    last_error: str | None


class GroupReset(NamedTuple):
    """What EventStore.reset_group did (or, as a dry run, would do) to a group's position."""

    group: str
    #: the group now reads the events after this position: the last event (in publish order)
    #: before its new start, 0 when it starts at the first retained event
    position: int
    #: events of the group's types after `position`: delivered (again) from there, each as a
    #: first delivery
    unread: int
    #: deliveries that were leased (released: their holders' late acks and settles do not count)
    in_flight: int
    #: deliveries that awaited a retry (dropped: one after `position` is delivered again anyway)
    retrying: int


@dataclass(frozen=True, slots=True)
class TrimResult:
    #: events removed from the log
    removed: int
    #: events old enough to go but kept because some group has not acked them
    kept_unacked: int


class GroupStats(TypedDict):
    """One group's figures, the same on every backend (SPEC §3 "Stats")."""

    #: events of the group's types not yet delivered to it
    lag: int
    #: delivered and not settled: leased to a member now, or awaiting a retry
    in_flight: int
    #: in_flight under its old name, kept for one release (it was never the DLQ's size); added
    #: by stats_with_store_block, so stores leave it out
    pending: NotRequired[int]
    #: entries in the group's dead-letter queue
    dlq: int
    delivered: int
    acked: int
    retried: int
    consumers: int


class StoreStats(TypedDict):
    backend: str
    total_events: int
    #: the groups' in_flight, summed
    in_flight_events: int
    #: in_flight_events under its old name, kept for one release
    pending_events: int
    dlq_events: int
    #: events the last trim kept because a group had not acked them
    kept_unacked: int


class Stats(TypedDict):
    """What EventStore.stats() returns: the store's block and each group's figures by name."""

    store: StoreStats
    groups: dict[str, GroupStats]
