"""One consumer group of the memory store: who holds which event, what is due again, its DLQ."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field

from eventkit.stores.base import (
    WILDCARD,
    Claim,
    DeadLetter,
    DeliveryRecord,
    DeliveryStatus,
    StoredEvent,
)


@dataclass(slots=True)
class Delivery:
    """One event in one group, from its first lease on."""

    event: StoredEvent
    consumer: str
    status: DeliveryStatus
    first_delivered_ms: int
    attempts: int = 0
    #: lease deadline while in flight, due time while retrying
    deadline_ms: int = 0
    #: the current lease's token; "" when no lease is held
    token: str = ""
    acked_ms: int | None = None
    last_error: str | None = None
    #: times replayed from the DLQ (a dead letter made from it carries the count)
    replays: int = 0

    @property
    def due_ms(self) -> int | None:
        """When it may be claimed: after its lease expires, at its retry time, or never."""
        if self.status is DeliveryStatus.IN_FLIGHT:
            return self.deadline_ms + 1
        if self.status is DeliveryStatus.RETRYING:
            return self.deadline_ms
        return None

    def record(self, group: str) -> DeliveryRecord:
        return DeliveryRecord(
            position=self.event.position,
            event_id=self.event.event_id,
            event_type=self.event.event_type,
            consumer_group=group,
            consumer_name=self.consumer,
            status=self.status,
            attempts=self.attempts,
            published_ms=self.event.published_ms,
            first_delivered_ms=self.first_delivered_ms,
            acked_ms=self.acked_ms,
            last_error=self.last_error,
        )


#: an acked delivery, kept as a plain tuple of plain values: (event_id, event_type, published_ms,
#: consumer, attempts, first_delivered_ms, acked_ms, last_error). The garbage collector stops
#: tracking such tuples, where it would walk every Delivery object ever acked at each full
#: collection (a tenth of consume+ack in bench_core, growing with history). Made by
#: ConsumerGroup.ack and read by acked_record only.
AckedRow = tuple[str, str, int, str, int, int, int, "str | None"]


def acked_record(group: str, position: int, row: AckedRow) -> DeliveryRecord:
    event_id, event_type, published_ms, consumer, attempts, first_ms, acked_ms, error = row
    return DeliveryRecord(
        position, event_id, event_type, group, consumer, DeliveryStatus.ACKED, attempts,
        published_ms, first_ms, acked_ms, error,
    )  # fmt: skip


@dataclass(slots=True)
class ConsumerGroup:
    """A group's filter, read cursor, members, deliveries and dead letters."""

    name: str
    event_types: set[str]
    #: index into the store's log of the next event to look at
    cursor: int
    #: member name -> until when it counts as live (epoch ms), renewed by its heartbeat
    consumers: dict[str, int] = field(default_factory=dict)
    #: position -> its delivery while in flight, retrying or dead
    deliveries: dict[int, Delivery] = field(default_factory=dict)
    #: position -> an acked delivery, as a plain row (see AckedRow)
    acked_rows: dict[int, AckedRow] = field(default_factory=dict)
    #: positions in flight or retrying: the group's unsettled work
    unsettled: set[int] = field(default_factory=set)
    #: heap of (due ms, first position, positions) for unsettled deliveries, so claim pops what
    #: is due instead of scanning everything in flight; a claimed batch shares one entry. Entries
    #: go stale when a delivery settles or moves (pop_due skips those); rebuilt when mostly stale
    due: list[tuple[int, int, tuple[int, ...]]] = field(default_factory=list)
    due_size: int = 0
    #: event_id -> its dead letter
    dead: dict[str, DeadLetter] = field(default_factory=dict)
    delivered: int = 0
    acked: int = 0
    retried: int = 0

    @property
    def takes_every_type(self) -> bool:
        """No types, or the wildcard: every event is the group's (as matches() reads them)."""
        return not self.event_types or WILDCARD in self.event_types

    # -- leases -------------------------------------------------------------------------------

    def lease(
        self, delivery: Delivery, consumer: str, now: int, lease_ms: int, token: str
    ) -> Claim:
        """Lease the delivery to `consumer` until now + lease_ms: one more attempt."""
        delivery.attempts += 1
        delivery.consumer = consumer
        delivery.status = DeliveryStatus.IN_FLIGHT
        delivery.deadline_ms = now + lease_ms
        delivery.token = token
        self.unsettled.add(delivery.event.position)
        self.delivered += 1
        if delivery.attempts > 1:
            self.retried += 1
        return Claim(
            delivery.event, self.name, consumer, delivery.attempts, delivery.deadline_ms, token,
            delivery.last_error,
        )  # fmt: skip

    def lease_unread(
        self,
        log: list[StoredEvent],
        wanted: int,
        consumer: str,
        now: int,
        lease_ms: int,
        token: str,
    ) -> list[Claim]:
        """Lease up to `wanted` events of the group's filter after its cursor, which moves past
        them (and past other types on the way): first attempts sharing one deadline. The bulk of
        all claims, in one loop: each delivery is made in its final state, not made and then
        leased (bench_core's memory consume+ack rows pay for it)."""
        every_type, types = self.takes_every_type, self.event_types
        deadline, in_flight, group = now + lease_ms, DeliveryStatus.IN_FLIGHT, self.name
        deliveries, cursor, end = self.deliveries, self.cursor, len(log)  # locals: per event
        claims: list[Claim] = []
        positions: list[int] = []
        while wanted and cursor < end:
            stored = log[cursor]
            cursor += 1
            if every_type or stored.event_type in types:
                position = stored.position
                # positional: twice as fast as keywords
                deliveries[position] = Delivery(
                    stored, consumer, in_flight, now, 1, deadline, token
                )
                claims.append(Claim(stored, group, consumer, 1, deadline, token, None))
                positions.append(position)
                wanted -= 1
        self.cursor = cursor
        self.unsettled.update(positions)
        self.delivered += len(claims)
        # one due entry for the batch: its leases expire together
        self.schedule(deadline + 1, tuple(positions))
        return claims

    def record(self, position: int) -> DeliveryRecord:
        """The delivery of this position as the store reports it, whatever its status."""
        delivery = self.deliveries.get(position)  # delivered again since an ack (a group reset)
        if delivery is not None:
            return delivery.record(self.name)
        return acked_record(self.name, position, self.acked_rows[position])

    def unsettled_counts(self, now: int) -> tuple[int, int, int]:
        """(in flight, retrying, leased: in flight under a lease not yet expired)."""
        in_flight = retrying = leased = 0
        for position in self.unsettled:
            delivery = self.deliveries[position]
            if delivery.status is DeliveryStatus.IN_FLIGHT:
                in_flight += 1
                leased += delivery.deadline_ms >= now
            else:
                retrying += 1
        return in_flight, retrying, leased

    def reset(self, cursor: int, position: int) -> None:
        """Read on from log index `cursor` (the events after `position`): every unsettled
        delivery goes, so its lease no longer holds, and so do the records after the position."""
        for unsettled in self.unsettled:
            del self.deliveries[unsettled]
        self.unsettled.clear()
        self.due, self.due_size = [], 0
        for records in (self.deliveries, self.acked_rows):
            for later in [p for p in records if p > position]:
                del records[later]
        self.cursor = cursor

    def forget(self, position: int) -> None:
        """The event was trimmed from the log: its delivery goes too."""
        self.deliveries.pop(position, None)
        self.acked_rows.pop(position, None)

    def held(self, claim: Claim, now: int) -> Delivery | None:
        """The delivery if this claim still holds its lease (same token, deadline not passed)."""
        delivery = self.deliveries.get(claim.event.position)
        if (
            delivery is None
            or delivery.status is not DeliveryStatus.IN_FLIGHT
            or delivery.token != claim.token
            or delivery.deadline_ms < now
        ):
            return None
        return delivery

    # -- settling: each only while the claim holds its lease ----------------------------------

    def ack(self, claims: Iterable[Claim], now: int) -> int:
        """Ack each claim that still holds its lease; how many did.

        The lease check is held()'s, written out: this runs once per acked event, and the call
        cost bench_core's memory consume+ack rows ~3 %. The conformance suite's late and stale
        acks (test_delivery.py) hold both to the one rule."""
        acked, in_flight = 0, DeliveryStatus.IN_FLIGHT
        deliveries, rows, unsettled = self.deliveries, self.acked_rows, self.unsettled
        for claim in claims:
            delivery = deliveries.get(claim.event.position)
            if (
                delivery is not None
                and delivery.status is in_flight
                and delivery.token == claim.token
                and delivery.deadline_ms >= now
            ):
                event = delivery.event
                position = event.position
                del deliveries[position]
                rows[position] = (
                    event.event_id, event.event_type, event.published_ms, delivery.consumer,
                    delivery.attempts, delivery.first_delivered_ms, now, delivery.last_error,
                )  # fmt: skip
                unsettled.discard(position)
                acked += 1
        self.acked += acked
        return acked

    def extend(self, claim: Claim, now: int, lease_ms: int) -> Claim | None:
        delivery = self.held(claim, now)
        if delivery is None:
            return None
        delivery.deadline_ms = now + lease_ms
        self.schedule(delivery.deadline_ms + 1, (delivery.event.position,))
        return claim.with_deadline(delivery.deadline_ms)

    def release(self, claims: Iterable[Claim], now: int) -> int:
        """Deliverable again at once, and these attempts not counted; how many held their lease."""
        released = 0
        for claim in claims:
            delivery = self.held(claim, now)
            if delivery is not None:
                delivery.attempts -= 1
                self._retry_at(delivery, 0)
                released += 1
        return released

    def retry_later(self, claim: Claim, now: int, due_ms: int, error: str) -> bool:
        delivery = self.held(claim, now)
        if delivery is None:
            return False
        delivery.last_error = error
        self._retry_at(delivery, due_ms)
        return True

    def dead_letter(self, claim: Claim, now: int, error: str, traceback: str) -> bool:
        delivery = self.held(claim, now)
        if delivery is None:
            return False
        delivery.status = DeliveryStatus.DEAD
        delivery.token = ""
        delivery.last_error = error
        self.unsettled.discard(delivery.event.position)
        self.dead[delivery.event.event_id] = DeadLetter(
            stored=delivery.event,
            consumer_group=self.name,
            consumer_name=delivery.consumer,
            attempts=delivery.attempts,
            failed_ms=now,
            last_error=error,
            traceback=traceback,
            replays=delivery.replays,
        )
        return True

    def _retry_at(self, delivery: Delivery, due_ms: int) -> None:
        delivery.status = DeliveryStatus.RETRYING
        delivery.deadline_ms = due_ms
        delivery.token = ""
        self.schedule(due_ms, (delivery.event.position,))

    def replay(self, letter: DeadLetter, now: int) -> None:
        """Out of the DLQ, deliverable again with attempts reset (even if trimmed meanwhile)."""
        del self.dead[letter.event_id]
        position = letter.stored.position
        delivery = self.deliveries.get(position)
        if delivery is None:  # trimmed from the log: the letter has a copy of the event
            delivery = Delivery(letter.stored, letter.consumer_name, DeliveryStatus.RETRYING, now)
            self.deliveries[position] = delivery
        delivery.attempts = 0
        delivery.replays = letter.replays + 1
        self.unsettled.add(position)
        self._retry_at(delivery, 0)

    # -- what is due again --------------------------------------------------------------------

    def schedule(self, when: int, positions: tuple[int, ...]) -> None:
        """Note that these deliveries may be claimed again from `when` (ms)."""
        if not positions:
            return
        if self.due_size > 2 * len(self.unsettled) + 4096:
            self.due = []
            for position in self.unsettled:
                due_ms = self.deliveries[position].due_ms
                if due_ms is not None:
                    self.due.append((due_ms, position, (position,)))
            heapq.heapify(self.due)
            self.due_size = len(self.due)
        heapq.heappush(self.due, (when, positions[0], positions))
        self.due_size += len(positions)

    def pop_due(self, now: int, limit: int) -> list[Delivery]:
        """Up to `limit` deliveries due by `now`: expired leases and retries, earliest first."""
        found: list[Delivery] = []
        while self.due and self.due[0][0] <= now and len(found) < limit:
            when, _, positions = heapq.heappop(self.due)
            self.due_size -= len(positions)
            for i, position in enumerate(positions):
                if len(found) >= limit:  # the rest waits for the next claim
                    self.schedule(when, positions[i:])
                    break
                delivery = self.deliveries.get(position)
                if delivery is not None and delivery.due_ms == when:
                    found.append(delivery)  # else settled, re-leased or trimmed meanwhile
        return found
