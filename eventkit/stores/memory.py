"""Event store in process memory: the reference semantics, for tests and throwaway runs.

The log and the protocol's operations live here; each group's deliveries, leases and dead
letters live in memory_group.ConsumerGroup.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from operator import attrgetter

from eventkit.errors import GroupBusyError, GroupNotFoundError
from eventkit.records import stored_event_of
from eventkit.stores.base import (
    EXPIRED_LEASE_ERROR,
    Claim,
    DeadLetter,
    DeliveryRecord,
    DeliveryStatus,
    GroupReset,
    GroupStart,
    GroupStats,
    NewEvent,
    Stats,
    StoredEvent,
    TrimResult,
    check_limit,
    matches,
    now_ms,
    stats_with_store_block,
)
from eventkit.stores.lookup import (
    PayloadValue,
    check_value,
    field_parts,
    in_story,
    payload_matches,
)
from eventkit.stores.memory_group import ConsumerGroup

#: lease tokens only need to differ within this process: a counter, not a random syscall per lease
_TOKENS = itertools.count(1)


class MemoryEventStore:
    """All state in dicts and lists. No operation awaits anything, so each one runs to its end
    before another starts: atomic on the event loop without a lock (not safe across threads)."""

    backend = "memory"
    blocking_claims = False
    prefetch_turns = 0

    def __init__(self) -> None:
        self._log: list[StoredEvent] = []
        self._by_id: dict[str, StoredEvent] = {}
        self._groups: dict[str, ConsumerGroup] = {}
        self._next_position = 1
        self._kept_unacked = 0
        self._notes: dict[str, str] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        published = now_ms()
        log, by_id, position = self._log, self._by_id, self._next_position  # locals: per event
        positions = []
        for new in events:
            event_id, event_type, version, source, timestamp_ms, data, correlation, cause = new
            stored = by_id.get(event_id)
            if stored is None:  # a repeated id keeps its first position
                stored = stored_event_of((position, event_id, event_type, version, source,
                                          timestamp_ms, data, published, correlation, cause))  # fmt: skip
                by_id[event_id] = stored
                log.append(stored)
                position += 1
            positions.append(stored.position)
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
        start = 0 if after_position is None else self._index_after(after_position)
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

    def _index_after(self, position: int) -> int:
        """Index in the log of the first event after `position` (the log is in position order)."""
        return bisect.bisect_right(self._log, position, key=lambda stored: stored.position)

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        found = [self._by_id[i] for i in set(event_ids) if i in self._by_id]
        return sorted(found, key=lambda stored: stored.position)

    async def correlated(self, correlation_id: str) -> list[StoredEvent]:
        """A scan of the log."""
        return [stored for stored in self._log if in_story(stored, correlation_id)]

    async def find(
        self, field_path: str, value: PayloadValue, *, limit: int | None = None
    ) -> list[StoredEvent]:
        """A scan of the log, parsing each payload."""
        parts, value = field_parts(field_path), check_value(value)
        check_limit(limit)
        found = (stored for stored in self._log if payload_matches(stored.data, parts, value))
        return list(itertools.islice(found, limit))

    async def index_payload_field(self, field_path: str) -> str | None:
        field_parts(field_path)  # a bad path fails here as on every backend
        return None

    async def get_note(self, name: str) -> str | None:
        return self._notes.get(name)

    async def put_note(self, name: str, text: str) -> None:
        self._notes[name] = text

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        existing = self._groups.get(group)
        if existing is not None:
            existing.event_types.update(event_types)
            return
        self._groups[group] = ConsumerGroup(group, set(event_types), self._start_index(start))

    def _start_index(self, start: GroupStart) -> int:
        """Index in the log of the first event a group starting at `start` reads."""
        if start == "earliest":
            return 0
        if start == "latest":
            return len(self._log)
        return next((i for i, e in enumerate(self._log) if e.timestamp_ms >= start), len(self._log))

    async def groups(self) -> list[str]:
        return sorted(self._groups)

    async def reset_group(
        self, group: str, to: GroupStart, *, force: bool = False, dry_run: bool = False
    ) -> GroupReset:
        state = self._group(group)
        in_flight, retrying, leased = state.unsettled_counts(now_ms())
        if leased and not force:
            raise GroupBusyError(group, leased)
        cursor = self._start_index(to)
        position = self._log[cursor - 1].position if cursor else 0
        result = GroupReset(group, position, self._unread(state, cursor), in_flight, retrying)
        if not dry_run:
            state.reset(cursor, position)
        return result

    async def delete_group(self, group: str) -> bool:
        return self._groups.pop(group, None) is not None

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
        # one token per claim: it tells this lease of a position from any earlier or later one
        token = str(next(_TOKENS))
        claims: list[Claim] = []
        # first what is due again: expired leases (their consumer died or hung) and retries
        for delivery in state.pop_due(now, limit):
            if delivery.status is DeliveryStatus.IN_FLIGHT:
                delivery.last_error = EXPIRED_LEASE_ERROR.format(consumer=delivery.consumer)
            claims.append(state.lease(delivery, consumer, now, lease_ms, token))
        state.schedule(now + lease_ms + 1, tuple(claim.event.position for claim in claims))
        # then unread events after the group's cursor, in publish order
        claims += state.lease_unread(self._log, limit - len(claims), consumer, now, lease_ms, token)
        return claims

    async def ack(self, claims: Sequence[Claim]) -> int:
        return self._settle_each(claims, ConsumerGroup.ack)

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        state = self._groups.get(claim.consumer_group)
        return None if state is None else state.extend(claim, now_ms(), lease_ms)

    async def release(self, claims: Sequence[Claim]) -> int:
        return self._settle_each(claims, ConsumerGroup.release)

    def _settle_each(
        self, claims: Sequence[Claim], settle: Callable[[ConsumerGroup, list[Claim], int], int]
    ) -> int:
        """Settle the claims in their groups (a batch is usually one group's); how many still
        held their lease."""
        now = now_ms()
        settled = 0
        for group, of_group in itertools.groupby(claims, key=attrgetter("consumer_group")):
            state = self._groups.get(group)
            if state is not None:
                settled += settle(state, list(of_group), now)
        return settled

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        state = self._groups.get(claim.consumer_group)
        return state is not None and state.retry_later(claim, now_ms(), due_ms, error)

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        state = self._groups.get(claim.consumer_group)
        return state is not None and state.dead_letter(claim, now_ms(), error, traceback)

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        names = self._groups if groups is None else groups
        for name in names:
            state = self._groups.get(name)
            if state is None:
                continue
            if state.unsettled or self._any_unread(state):
                return False
        return True

    def _any_unread(self, state: ConsumerGroup) -> bool:
        # wait_idle asks this every few ms while a backlog is consumed: stop at the first one
        if state.takes_every_type:
            return state.cursor < len(self._log)
        types = state.event_types
        return any(e.event_type in types for e in itertools.islice(self._log, state.cursor, None))

    def _unread(self, state: ConsumerGroup, cursor: int | None = None) -> int:
        """Events of the group's types from log index `cursor` on (None: the group's cursor)."""
        start = state.cursor if cursor is None else cursor
        if state.takes_every_type:
            return len(self._log) - start
        types = state.event_types
        return sum(1 for e in itertools.islice(self._log, start, None) if e.event_type in types)

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
        now = now_ms()
        for letter in chosen:
            state.replay(letter, now)
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
            p
            for p in state.deliveries.keys() | state.acked_rows.keys()
            if after_position is None or p > after_position
        )
        if limit is not None:
            positions = positions[:limit]
        return [state.record(p) for p in positions]

    async def stats(self) -> Stats:
        now = now_ms()
        groups: dict[str, GroupStats] = {
            name: {
                "lag": self._unread(state),
                "in_flight": len(state.unsettled),
                "dlq": len(state.dead),
                "delivered": state.delivered,
                "acked": state.acked,
                "retried": state.retried,
                "consumers": sum(1 for until in state.consumers.values() if until > now),
            }
            for name, state in sorted(self._groups.items())
        }
        return stats_with_store_block(self.backend, len(self._log), self._kept_unacked, groups)

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
                state.forget(position)

    def _group(self, group: str) -> ConsumerGroup:
        state = self._groups.get(group)
        if state is None:
            raise GroupNotFoundError(group)
        return state
