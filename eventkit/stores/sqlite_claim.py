"""Claims on a SQLite store: the next events of a group, leased to one of its consumers.

A claim probes the group (its filter, whether deliveries are due, whether events are unread),
leases what is due (expired leases, retries whose time has come) in one transaction, then the
first unread events in one INSERT ... SELECT, whose trigger moves the group's cursor: atomic
across processes without a transaction spanning several round trips.

A small claim of unread events runs on the event loop's thread (claim_on_loop: probe, lease and
read in ~0.1 ms), as does the probe of an idle poll, when Appender.on_loop says that is safe: through the writer it takes three
thread round trips, most of the publish->handler latency of an idle group (benchmarks/bench_core.py
row "publish->handler latency p50"). Every other claim takes the writer and reader (claim).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from typing import Any

from eventkit.errors import GroupNotFoundError
from eventkit.records import stored_event_of
from eventkit.stores.base import EXPIRED_LEASE_ERROR, WILDCARD, Claim, DeliveryStatus, now_ms
from eventkit.stores.sqlite_append import is_busy
from eventkit.stores.sqlite_file import SQLiteFile
from eventkit.stores.sqlite_sql import (
    COUNT_DUE,
    DUE,
    LEASE_DUE,
    LEASED_EVENTS,
    PROBE,
    SKIP_TO,
    lease_unread_sql,
)

#: a claim asking for at most this many events may run on the loop (its lease and read are a
#: few pages); larger ones, made while a backlog lasts, go through the writer's thread
LOOP_CLAIM_MAX = 16


def claim_on_loop(
    file: SQLiteFile, group: str, consumer: str, limit: int, lease_ms: int
) -> list[Claim] | None:
    """A small claim of unread events, or an idle poll, made at once on the loop's thread; None
    when it must take the thread path (claim): too large, not safe now (Appender.on_loop), or
    deliveries are due."""

    def work(db: sqlite3.Connection) -> list[Claim] | None:
        probe = db.execute(PROBE, {"group": group, "now": now_ms()}).fetchall()
        if not probe:
            raise GroupNotFoundError(group)
        [(types, due, unread, newest, seen)] = probe
        if limit == 0 or not (due or unread):
            return []  # an idle poll: a few index seeks
        if due or limit > LOOP_CLAIM_MAX:
            return None  # expired leases and retries (a transaction), or a large claim
        lease = UnreadLease(group, consumer, limit, lease_ms, types)
        leased = [p for (p,) in db.execute(lease.sql, lease.params).fetchall()]
        rows = db.execute(LEASED_EVENTS, (json.dumps(leased),)).fetchall() if leased else []
        skip = lease.skip_to(leased, newest, seen)
        if skip is not None:
            try:
                db.execute(SKIP_TO, skip)
            except sqlite3.OperationalError as e:
                if not is_busy(e):  # busy: the next claim scans these again, nothing is lost
                    raise
        return lease.claims(rows)

    return file.on_loop(work)


async def claim(
    file: SQLiteFile, group: str, consumer: str, limit: int, lease_ms: int
) -> list[Claim]:
    """Due deliveries first, then unread events, through the writer's and reader's threads."""
    # the probe runs on the reader: an idle poll is a few index seeks and never takes the lock
    probe = await file.query(PROBE, {"group": group, "now": now_ms()})
    if not probe:
        raise GroupNotFoundError(group)
    [(types, due, unread, newest, seen)] = probe
    if limit == 0 or not (due or unread):
        return []
    prefix = secrets.token_hex(8)
    claims = await _claim_due(file, group, consumer, limit, lease_ms, prefix) if due else []
    wanted = limit - len(claims)
    if unread and wanted:
        lease = UnreadLease(group, consumer, wanted, lease_ms, types, prefix)
        leased = [p for (p,) in await file.write_one(lease.sql, lease.params)]
        if leased:
            claims += lease.claims(await file.query(LEASED_EVENTS, (json.dumps(leased),)))
        skip = lease.skip_to(leased, newest, seen)
        if skip is not None:
            await file.write_one(SKIP_TO, skip)
    return claims


class UnreadLease:
    """One INSERT ... SELECT leasing a group's first `wanted` unread events, and the claims made
    of the events it leased."""

    def __init__(
        self, group: str, consumer: str, wanted: int, lease_ms: int, types: str, prefix: str = ""
    ) -> None:
        self.group, self.consumer, self.types = group, consumer, types
        self.prefix = prefix or secrets.token_hex(8)  # tokens "<random>-<position>"
        self.deadline = now_ms() + lease_ms
        filter_ = json.loads(types)
        type_count = 0 if WILDCARD in filter_ else len(filter_)
        self.sql = lease_unread_sql(type_count)
        self.params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(filter_)}
        self.params.update(group=group, types=types, n=wanted, consumer=consumer,
                           now=self.deadline - lease_ms, deadline=self.deadline,
                           prefix=self.prefix)  # fmt: skip
        self.wanted = wanted

    def claims(self, rows: list[Any]) -> list[Claim]:
        return [
            Claim(
                stored_event_of(row),
                self.group,
                self.consumer,
                1,
                self.deadline,
                f"{self.prefix}-{row[0]}",
            )  # fmt: skip
            for row in rows
        ]

    def skip_to(self, leased: list[int], newest: int | None, seen: int) -> dict[str, Any] | None:
        """SKIP_TO's parameters when this lease took every unread event of the filter and events
        of other types come after the last one: later scans start at `newest`."""
        if len(leased) < self.wanted and newest is not None and newest > max(leased, default=0):
            seen = max([seen, *leased])  # where this claim read from
            return {"group": self.group, "types": self.types, "newest": newest, "seen": seen}
        return None


async def _claim_due(
    file: SQLiteFile, group: str, consumer: str, limit: int, lease_ms: int, prefix: str
) -> list[Claim]:
    """Expired leases (their consumer died or hung) and retries whose time has come."""
    claims: list[Claim] = []
    async with file.transaction() as db:
        now = now_ms()
        deadline = now + lease_ms
        leases, retried = [], 0
        for *event, attempts, status, holder, error in await db.execute_fetchall(
            DUE, (group, now, now, limit)
        ):
            if status == DeliveryStatus.IN_FLIGHT:  # its holder died or hung
                error = EXPIRED_LEASE_ERROR.format(consumer=holder)
            token, retried = f"{prefix}-{event[0]}", retried + (attempts > 0)
            claims.append(Claim(stored_event_of(event), group, consumer, attempts + 1, deadline,
                                token, error))  # fmt: skip
            leases.append((consumer, deadline, token, error, group, event[0]))
        if leases:
            await db.executemany(LEASE_DUE, leases)
            await db.execute(COUNT_DUE, {"group": group, "leased": len(leases), "retried": retried})
    return claims
