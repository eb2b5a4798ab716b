"""Event store in process memory: the reference semantics, for tests and throwaway runs."""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eventkit.errors import GroupNotFoundError
from eventkit.stores.base import (
    WILDCARD,
    Claim,
    DeadLetter,
    DeliveryRecord,
    DeliveryStatus,
    GroupStart,
    NewEvent,
    StoredEvent,
    TrimResult,
    check_limit,
    matches,
    now_ms,
)

#: lease tokens only need to differ within this process: a counter, not a random syscall per lease
_TOKENS = itertools.count(1)
_new_tuple = tuple.__new__

EXPIRED_LEASE_ERROR = (
    "lease expired: consumer {consumer} did not settle within its lease (died or hung)"
)


@dataclass(slots=True)
class _Delivery:
    event: StoredEvent
    consumer: str
    attempts: int
    status: DeliveryStatus
    first_delivered_ms: int
    #: lease deadline while in flight, due time while retrying
    deadline_ms: int = 0
    token: str = ""
    acked_ms: int | None = None
    last_error: str | None = None


#: an acked delivery as a plain tuple of plain values: (event_id, event_type, published_ms,
#: consumer, attempts, first_delivered_ms, acked_ms, last_error). The garbage collector stops
#: tracking such tuples, where it would walk every delivery object ever acked at each full pass
#: (a fifth of a consumer's time once a few groups have consumed 100,000 events each)
_AckedRow = tuple[str, str, int, str, int, int, int, str | None]


def _due_ms(delivery: _Delivery) -> int | None:
    """When a delivery may be claimed: after its lease expires, or at its retry time."""
    if delivery.status is DeliveryStatus.IN_FLIGHT:
        return delivery.deadline_ms + 1
    if delivery.status is DeliveryStatus.RETRYING:
        return delivery.deadline_ms
    return None


@dataclass(slots=True)
class _Group:
    event_types: set[str]
    #: index into the log of the next event to look at
    cursor: int
    #: member name -> until when it counts as live (epoch ms), renewed by its heartbeat
    consumers: dict[str, int] = field(default_factory=dict)
    deliveries: dict[int, _Delivery | _AckedRow] = field(default_factory=dict)
    #: positions in flight or retrying: the group's unsettled work
    unsettled: set[int] = field(default_factory=set)
    #: heap of (due ms, first position, positions) for unsettled deliveries, so claim pops what
    #: is due instead of scanning everything in flight; a claimed batch shares one entry. Entries
    #: go stale when a delivery settles or moves (claim skips those); rebuilt when mostly stale
    due: list[tuple[int, int, tuple[int, ...]]] = field(default_factory=list)
    due_size: int = 0
    dead: dict[str, DeadLetter] = field(default_factory=dict)
    delivered: int = 0
    acked: int = 0
    retried: int = 0

    @property
    def takes_every_type(self) -> bool:
        """No types, or the wildcard: every event is the group's (as matches() reads them)."""
        return not self.event_types or WILDCARD in self.event_types

    def schedule(self, when: int, positions: tuple[int, ...]) -> None:
        """Note that these deliveries may be claimed again from `when` (ms)."""
        if not positions:
            return
        if self.due_size > 2 * len(self.unsettled) + 4096:
            self.due = []
            for p in self.unsettled:
                delivery = self.deliveries[p]
                due_ms = None if isinstance(delivery, tuple) else _due_ms(delivery)
                if due_ms is not None:
                    self.due.append((due_ms, p, (p,)))
            heapq.heapify(self.due)
            self.due_size = len(self.due)
        heapq.heappush(self.due, (when, positions[0], positions))
        self.due_size += len(positions)

    def pop_due(self, now: int, limit: int) -> list[_Delivery]:
        """Up to `limit` deliveries due by `now`: expired leases and retries, earliest first."""
        found: list[_Delivery] = []
        due = self.due
        while due and due[0][0] <= now and len(found) < limit:
            when, _, positions = heapq.heappop(due)
            self.due_size -= len(positions)
            for i, position in enumerate(positions):
                if len(found) >= limit:  # the rest waits for the next claim
                    self.schedule(when, positions[i:])
                    break
                delivery = self.deliveries.get(position)
                if (
                    delivery is not None
                    and not isinstance(delivery, tuple)  # acked
                    and _due_ms(delivery) == when
                ):
                    found.append(delivery)  # else settled, re-leased or trimmed meanwhile
        return found


class MemoryEventStore:
    """All state in dicts and lists. No operation awaits anything, so each one runs to its end
    before another starts: atomic on the event loop without a lock (not safe across threads)."""

    backend = "memory"
    blocking_claims = False
    prefetch_claims = False

    def __init__(self) -> None:
        self._log: list[StoredEvent] = []
        self._by_id: dict[str, StoredEvent] = {}
        self._groups: dict[str, _Group] = {}
        self._next_position = 1
        self._kept_unacked = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        published = now_ms()
        log, by_id = self._log, self._by_id
        position = self._next_position
        positions = []
        for new in events:
            existing = by_id.get(new.event_id)
            if existing is None:
                # StoredEvent is NewEvent between a position and a publish time
                existing = _new_tuple(StoredEvent, (position, *new, published))
                by_id[new.event_id] = existing
                log.append(existing)
                position += 1
            positions.append(existing.position)
        self._next_position = position
        return positions

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
        check_limit(limit)
        start = (
            0
            if after_position is None
            else bisect.bisect_right(self._log, after_position, key=_position)
        )
        found: list[StoredEvent] = []
        for stored in itertools.islice(self._log, start, None):
            if limit is not None and len(found) >= limit:
                break
            if not matches(stored.event_type, event_types):
                continue
            if start_ms is not None and stored.timestamp_ms < start_ms:
                continue
            if end_ms is not None and stored.timestamp_ms >= end_ms:
                continue
            if source is not None and stored.source != source:
                continue
            found.append(stored)
        return found

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        found = [self._by_id[i] for i in set(event_ids) if i in self._by_id]
        return sorted(found, key=lambda e: e.position)

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        existing = self._groups.get(group)
        if existing is not None:
            existing.event_types.update(event_types)
            return
        if start == "earliest":
            cursor = 0
        elif start == "latest":
            cursor = len(self._log)
        else:
            cursor = next(
                (i for i, e in enumerate(self._log) if e.timestamp_ms >= start), len(self._log)
            )
        self._groups[group] = _Group(set(event_types), cursor)

    async def groups(self) -> list[str]:
        return sorted(self._groups)

    async def register_consumer(self, group: str, consumer: str, *, ttl_ms: int = 60_000) -> None:
        self._group(group).consumers[consumer] = now_ms() + ttl_ms

    async def unregister_consumer(self, group: str, consumer: str) -> None:
        self._group(group).consumers.pop(consumer, None)

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        check_limit(limit)
        state = self._group(group)
        now = now_ms()
        claims: list[Claim] = []
        # one token per claim: it tells this lease of a position from any earlier or later one
        token = str(next(_TOKENS))
        # first what is due again: expired leases (their consumer died or hung) and retries
        for delivery in state.pop_due(now, limit):
            if delivery.status is DeliveryStatus.IN_FLIGHT:
                delivery.last_error = EXPIRED_LEASE_ERROR.format(consumer=delivery.consumer)
            claims.append(self._lease(group, state, delivery, consumer, now, lease_ms, token))
        # then the log after the group's cursor: first deliveries, _lease inlined (one per event)
        log, cursor, types = self._log, state.cursor, state.event_types
        everything = state.takes_every_type
        deadline, deliveries, in_flight = now + lease_ms, state.deliveries, DeliveryStatus.IN_FLIGHT
        first = []
        end, wanted = len(log), limit - len(claims)
        while wanted and cursor < end:
            stored = log[cursor]
            cursor += 1
            if everything or stored.event_type in types:
                position = stored.position
                deliveries[position] = _Delivery(
                    stored, consumer, 1, in_flight, now, deadline, token
                )
                first.append(position)
                # what Claim(...) makes, without the Python frame of a named tuple's __new__
                claims.append(
                    _new_tuple(Claim, (stored, group, consumer, 1, deadline, token, None))
                )
                wanted -= 1
        state.cursor = cursor
        state.unsettled.update(first)
        state.delivered += len(first)
        # one heap entry for the batch: its leases expire together
        if len(first) < len(claims):  # some were due again, at the head of the batch
            first[:0] = [c.event.position for c in claims[: len(claims) - len(first)]]
        state.schedule(deadline + 1, tuple(first))
        return claims

    @staticmethod
    def _lease(
        group: str,
        state: _Group,
        delivery: _Delivery,
        consumer: str,
        now: int,
        lease_ms: int,
        token: str,
    ) -> Claim:
        delivery.attempts += 1
        delivery.consumer = consumer
        delivery.status = DeliveryStatus.IN_FLIGHT
        delivery.deadline_ms = deadline = now + lease_ms
        delivery.token = token
        state.unsettled.add(delivery.event.position)
        state.delivered += 1
        if delivery.attempts > 1:
            state.retried += 1
        return Claim(
            delivery.event, group, consumer, delivery.attempts, deadline, token,
            delivery.last_error,
        )  # fmt: skip

    def _held(self, claim: Claim, now: int | None = None) -> _Delivery | None:
        """The delivery if this claim still holds its lease (same token, deadline not passed)."""
        state = self._groups.get(claim.consumer_group)
        delivery = None if state is None else state.deliveries.get(claim.event.position)
        if (
            delivery is None
            or isinstance(delivery, tuple)  # acked
            or delivery.status is not DeliveryStatus.IN_FLIGHT
            or delivery.token != claim.token
            or delivery.deadline_ms < (now_ms() if now is None else now)
        ):
            return None
        return delivery

    async def ack(self, claims: Sequence[Claim]) -> int:
        now = now_ms()
        counted = 0
        groups, in_flight = self._groups, DeliveryStatus.IN_FLIGHT
        for stored, group, _, _, _, token, _ in claims:  # _held inlined: one per event
            state = groups.get(group)
            if state is None:
                continue
            position = stored.position
            delivery = state.deliveries.get(position)
            if (
                delivery is None
                or isinstance(delivery, tuple)  # acked already
                or delivery.token != token
                or delivery.status is not in_flight
                or delivery.deadline_ms < now
            ):
                continue
            state.deliveries[position] = (
                stored.event_id, stored.event_type, stored.published_ms, delivery.consumer,
                delivery.attempts, delivery.first_delivered_ms, now, delivery.last_error,
            )  # fmt: skip
            state.unsettled.discard(position)
            state.acked += 1
            counted += 1
        return counted

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        delivery = self._held(claim)
        if delivery is None:
            return None
        delivery.deadline_ms = now_ms() + lease_ms
        self._groups[claim.consumer_group].schedule(
            delivery.deadline_ms + 1, (claim.event.position,)
        )
        return claim._replace(lease_deadline_ms=delivery.deadline_ms)

    async def release(self, claims: Sequence[Claim]) -> int:
        released = 0
        for claim in claims:
            delivery = self._held(claim)
            if delivery is None:
                continue
            delivery.status = DeliveryStatus.RETRYING
            delivery.deadline_ms = 0
            delivery.token = ""
            delivery.attempts -= 1
            self._groups[claim.consumer_group].schedule(0, (claim.event.position,))
            released += 1
        return released

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        delivery = self._held(claim)
        if delivery is None:
            return False
        delivery.status = DeliveryStatus.RETRYING
        delivery.deadline_ms = due_ms
        delivery.token = ""
        delivery.last_error = error
        self._groups[claim.consumer_group].schedule(due_ms, (claim.event.position,))
        return True

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        delivery = self._held(claim)
        if delivery is None:
            return False
        state = self._groups[claim.consumer_group]
        now = now_ms()
        delivery.status = DeliveryStatus.DEAD
        delivery.token = ""
        delivery.last_error = error
        state.unsettled.discard(claim.event.position)
        state.dead[claim.event.event_id] = DeadLetter(
            claim.event, claim.consumer_group, claim.consumer_name, delivery.attempts, now,
            error, traceback,
        )  # fmt: skip
        return True

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        names = self._groups if groups is None else groups
        for name in names:
            state = self._groups.get(name)
            if state is None:
                continue
            if state.unsettled or self._any_unread(state):
                return False
        return True

    def _any_unread(self, state: _Group) -> bool:
        # wait_idle asks this every few ms while a backlog is consumed: stop at the first one
        if state.takes_every_type:
            return state.cursor < len(self._log)
        types = state.event_types
        return any(e.event_type in types for e in itertools.islice(self._log, state.cursor, None))

    def _unread(self, state: _Group) -> int:
        if state.takes_every_type:
            return len(self._log) - state.cursor
        types = state.event_types
        return sum(
            1 for e in itertools.islice(self._log, state.cursor, None) if e.event_type in types
        )

    # -- dead-letter queue --------------------------------------------------------------------

    async def get_pending_events(
        self, consumer_group: str | None = None, *, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        names = sorted(self._groups) if consumer_group is None else [consumer_group]
        letters = [
            letter
            for name in names
            if name in self._groups
            for letter in self._groups[name].dead.values()
            if event_ids is None or letter.event_id in event_ids
        ]
        return sorted(letters, key=lambda d: (d.failed_ms, d.stored.position))

    async def count_dead_letters(self, consumer_group: str) -> int:
        state = self._groups.get(consumer_group)
        return 0 if state is None else len(state.dead)

    async def replay_dead_letters(
        self,
        consumer_group: str,
        *,
        event_types: Sequence[str] | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        state = self._groups.get(consumer_group)
        if state is None:
            return 0
        chosen = [
            letter
            for letter in state.dead.values()
            if (event_ids is None or letter.event_id in event_ids)
            and matches(letter.stored.event_type, event_types)
        ]
        for letter in chosen:
            del state.dead[letter.event_id]
            position = letter.stored.position
            delivery = state.deliveries.get(position)
            if delivery is None or isinstance(delivery, tuple):  # trimmed (the DLQ has a copy)
                delivery = _Delivery(
                    letter.stored, letter.consumer_name, 0, DeliveryStatus.RETRYING, now_ms()
                )
                state.deliveries[position] = delivery
            delivery.status = DeliveryStatus.RETRYING
            delivery.attempts = 0
            delivery.deadline_ms = 0
            delivery.token = ""
            state.unsettled.add(position)
            state.schedule(0, (position,))
        return len(chosen)

    async def discard_dead_letters(
        self, consumer_group: str, *, event_ids: Sequence[str] | None = None
    ) -> int:
        state = self._groups.get(consumer_group)
        if state is None:
            return 0
        chosen = [i for i in state.dead if event_ids is None or i in event_ids]
        for event_id in chosen:
            del state.dead[event_id]
        return len(chosen)

    # -- analysis and retention ---------------------------------------------------------------

    async def deliveries(
        self, group: str, *, after_position: int | None = None, limit: int | None = None
    ) -> list[DeliveryRecord]:
        check_limit(limit)
        state = self._groups.get(group)
        if state is None:
            return []
        positions = sorted(
            p for p in state.deliveries if after_position is None or p > after_position
        )
        if limit is not None:
            positions = positions[:limit]
        return [_record(group, p, state.deliveries[p]) for p in positions]

    async def stats(self) -> dict[str, Any]:
        now = now_ms()
        groups = {
            name: {
                "lag": self._unread(state),
                "pending": len(state.unsettled),
                "dlq": len(state.dead),
                "delivered": state.delivered,
                "acked": state.acked,
                "retried": state.retried,
                "consumers": sum(1 for until in state.consumers.values() if until > now),
            }
            for name, state in sorted(self._groups.items())
        }
        return {
            "store": {
                "backend": self.backend,
                "total_events": len(self._log),
                "pending_events": sum(g["pending"] for g in groups.values()),
                "dlq_events": sum(g["dlq"] for g in groups.values()),
                "kept_unacked": self._kept_unacked,
            },
            "groups": groups,
        }

    async def trim(
        self, *, before_ms: int | None = None, max_events: int | None = None
    ) -> TrimResult:
        check_limit(max_events)
        doomed: set[int] = set()
        if before_ms is not None:
            doomed.update(e.position for e in self._log if e.timestamp_ms < before_ms)
        if max_events is not None and len(self._log) > max_events:
            doomed.update(e.position for e in self._log[: len(self._log) - max_events])
        protected = self._protected_positions()
        removable = doomed - protected
        self._kept_unacked = len(doomed) - len(removable)
        if removable:
            self._remove(removable)
        return TrimResult(len(removable), self._kept_unacked)

    def _protected_positions(self) -> set[int]:
        """Positions some group has not acked: unread after its cursor, in flight or retrying."""
        protected: set[int] = set()
        for state in self._groups.values():
            protected.update(state.unsettled)
            protected.update(
                e.position
                for e in self._log[state.cursor :]
                if matches(e.event_type, state.event_types)
            )
        return protected

    def _remove(self, positions: set[int]) -> None:
        old_log = self._log
        self._log = [e for e in old_log if e.position not in positions]
        for event in old_log:
            if event.position in positions:
                del self._by_id[event.event_id]
        for state in self._groups.values():
            state.cursor -= sum(1 for e in old_log[: state.cursor] if e.position in positions)
            for position in positions:
                state.deliveries.pop(position, None)

    def _group(self, group: str) -> _Group:
        state = self._groups.get(group)
        if state is None:
            raise GroupNotFoundError(group)
        return state


def _position(stored: StoredEvent) -> int:
    return stored.position


def _record(group: str, position: int, delivery: _Delivery | _AckedRow) -> DeliveryRecord:
    if isinstance(delivery, tuple):
        event_id, event_type, published_ms, consumer, attempts, first_ms, acked_ms, error = delivery
        return DeliveryRecord(
            position, event_id, event_type, group, consumer, DeliveryStatus.ACKED, attempts,
            published_ms, first_ms, acked_ms, error,
        )  # fmt: skip
    return DeliveryRecord(
        delivery.event.position, delivery.event.event_id, delivery.event.event_type, group,
        delivery.consumer, delivery.status, delivery.attempts, delivery.event.published_ms,
        delivery.first_delivered_ms, delivery.acked_ms, delivery.last_error,
    )  # fmt: skip
