"""Event store in process memory: the reference semantics, for tests and throwaway runs."""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

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
    matches,
    now_ms,
)

#: lease tokens only need to differ within this process: a counter, not a random syscall per lease
_TOKENS = itertools.count(1)

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


@dataclass(slots=True)
class _Group:
    event_types: set[str]
    #: index into the log of the next event to look at
    cursor: int
    consumers: set[str] = field(default_factory=set)
    deliveries: dict[int, _Delivery] = field(default_factory=dict)
    #: positions in flight or retrying: the group's unsettled work
    unsettled: set[int] = field(default_factory=set)
    dead: dict[str, DeadLetter] = field(default_factory=dict)
    delivered: int = 0
    acked: int = 0
    retried: int = 0


class MemoryEventStore:
    """All state in dicts behind one asyncio.Lock, so every operation is atomic."""

    backend = "memory"
    blocking_claims = False
    prefetch_claims = False

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._log: list[StoredEvent] = []
        self._positions: list[int] = []
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
        async with self._lock:
            published = now_ms()
            positions = []
            for new in events:
                existing = self._by_id.get(new.event_id)
                if existing is not None:
                    positions.append(existing.position)
                    continue
                stored = StoredEvent(
                    self._next_position, new.event_id, new.event_type, new.version, new.source,
                    new.timestamp_ms, new.data, published,
                )  # fmt: skip
                self._next_position += 1
                self._log.append(stored)
                self._positions.append(stored.position)
                self._by_id[stored.event_id] = stored
                positions.append(stored.position)
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
        _check_limit(limit)
        start = (
            0 if after_position is None else bisect.bisect_right(self._positions, after_position)
        )
        found: list[StoredEvent] = []
        for stored in self._log[start:]:
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
        async with self._lock:
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

    async def register_consumer(self, group: str, consumer: str) -> None:
        async with self._lock:
            self._group(group).consumers.add(consumer)

    async def unregister_consumer(self, group: str, consumer: str) -> None:
        async with self._lock:
            self._group(group).consumers.discard(consumer)

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        _check_limit(limit)
        async with self._lock:
            state = self._group(group)
            now = now_ms()
            claims: list[Claim] = []
            for position in sorted(state.unsettled):
                if len(claims) >= limit:
                    break
                delivery = state.deliveries[position]
                if delivery.deadline_ms > now or (
                    delivery.status is DeliveryStatus.IN_FLIGHT and delivery.deadline_ms == now
                ):
                    continue
                if delivery.status is DeliveryStatus.IN_FLIGHT:
                    delivery.last_error = EXPIRED_LEASE_ERROR.format(consumer=delivery.consumer)
                claims.append(self._lease(group, state, delivery, consumer, now, lease_ms))
            while len(claims) < limit and state.cursor < len(self._log):
                stored = self._log[state.cursor]
                state.cursor += 1
                if not matches(stored.event_type, state.event_types):
                    continue
                delivery = _Delivery(stored, consumer, 0, DeliveryStatus.IN_FLIGHT, now)
                state.deliveries[stored.position] = delivery
                claims.append(self._lease(group, state, delivery, consumer, now, lease_ms))
            return claims

    @staticmethod
    def _lease(
        group: str, state: _Group, delivery: _Delivery, consumer: str, now: int, lease_ms: int
    ) -> Claim:
        delivery.attempts += 1
        delivery.consumer = consumer
        delivery.status = DeliveryStatus.IN_FLIGHT
        delivery.deadline_ms = now + lease_ms
        delivery.token = str(next(_TOKENS))
        state.unsettled.add(delivery.event.position)
        state.delivered += 1
        if delivery.attempts > 1:
            state.retried += 1
        return Claim(
            delivery.event, group, consumer, delivery.attempts,
            delivery.deadline_ms, delivery.token, delivery.last_error,
        )  # fmt: skip

    def _held(self, claim: Claim) -> _Delivery | None:
        """The delivery if this claim still holds its lease (same token, deadline not passed)."""
        state = self._groups.get(claim.consumer_group)
        delivery = None if state is None else state.deliveries.get(claim.event.position)
        if (
            delivery is None
            or delivery.status is not DeliveryStatus.IN_FLIGHT
            or delivery.token != claim.token
            or delivery.deadline_ms < now_ms()
        ):
            return None
        return delivery

    async def ack(self, claims: Sequence[Claim]) -> int:
        async with self._lock:
            now = now_ms()
            counted = 0
            for claim in claims:
                delivery = self._held(claim)
                if delivery is None:
                    continue
                state = self._groups[claim.consumer_group]
                delivery.status = DeliveryStatus.ACKED
                delivery.acked_ms = now
                delivery.token = ""
                state.unsettled.discard(claim.event.position)
                state.acked += 1
                counted += 1
            return counted

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        async with self._lock:
            delivery = self._held(claim)
            if delivery is None:
                return None
            delivery.deadline_ms = now_ms() + lease_ms
            return replace(claim, lease_deadline_ms=delivery.deadline_ms)

    async def release(self, claims: Sequence[Claim]) -> int:
        async with self._lock:
            released = 0
            for claim in claims:
                delivery = self._held(claim)
                if delivery is None:
                    continue
                delivery.status = DeliveryStatus.RETRYING
                delivery.deadline_ms = 0
                delivery.token = ""
                delivery.attempts -= 1
                released += 1
            return released

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        async with self._lock:
            delivery = self._held(claim)
            if delivery is None:
                return False
            delivery.status = DeliveryStatus.RETRYING
            delivery.deadline_ms = due_ms
            delivery.token = ""
            delivery.last_error = error
            return True

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        async with self._lock:
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
        async with self._lock:
            names = self._groups if groups is None else groups
            for name in names:
                state = self._groups.get(name)
                if state is None:
                    continue
                if state.unsettled or self._unread(state):
                    return False
            return True

    def _unread(self, state: _Group) -> int:
        if WILDCARD in state.event_types:
            return len(self._log) - state.cursor
        return sum(1 for e in self._log[state.cursor :] if e.event_type in state.event_types)

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
        async with self._lock:
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
                if delivery is None:  # trimmed from the log meanwhile: the DLQ copy is the source
                    delivery = _Delivery(
                        letter.stored, letter.consumer_name, 0, DeliveryStatus.RETRYING, now_ms()
                    )
                    state.deliveries[position] = delivery
                delivery.status = DeliveryStatus.RETRYING
                delivery.attempts = 0
                delivery.deadline_ms = 0
                delivery.token = ""
                state.unsettled.add(position)
            return len(chosen)

    async def discard_dead_letters(
        self, consumer_group: str, *, event_ids: Sequence[str] | None = None
    ) -> int:
        async with self._lock:
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
        _check_limit(limit)
        state = self._groups.get(group)
        if state is None:
            return []
        positions = sorted(
            p for p in state.deliveries if after_position is None or p > after_position
        )
        if limit is not None:
            positions = positions[:limit]
        return [_record(group, state.deliveries[p]) for p in positions]

    async def stats(self) -> dict[str, Any]:
        async with self._lock:
            groups = {
                name: {
                    "lag": self._unread(state),
                    "pending": len(state.unsettled),
                    "dlq": len(state.dead),
                    "delivered": state.delivered,
                    "acked": state.acked,
                    "retried": state.retried,
                    "consumers": len(state.consumers),
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
        _check_limit(max_events)
        async with self._lock:
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
        self._positions = [e.position for e in self._log]
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
            raise KeyError(f"consumer group {group!r} does not exist: subscribe to create it")
        return state


def _record(group: str, delivery: _Delivery) -> DeliveryRecord:
    return DeliveryRecord(
        delivery.event.position, delivery.event.event_id, delivery.event.event_type, group,
        delivery.consumer, delivery.status, delivery.attempts, delivery.event.published_ms,
        delivery.first_delivered_ms, delivery.acked_ms, delivery.last_error,
    )  # fmt: skip


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
