"""Event store on one SQLite file, shared by processes through WAL.

Positions are the AUTOINCREMENT rowid, assigned under SQLite's single write lock: they increase in
commit order for every process (never wall-clock text). One writer connection per store behind an
asyncio.Lock runs one statement or transaction at a time; every write is atomic across processes
(a single statement, or BEGIN IMMEDIATE). A reader connection serves queries and the idle probe.
Each aiosqlite call is a thread round trip (0.2-0.6 ms on a busy VM), so hot paths are single
statements, and appends have their own connection and path (sqlite_append.py), which small
claims and idle polls share when that is safe (sqlite_claim.py): a claim of new events is one
INSERT ... SELECT whose trigger moves the group's cursor, an ack of a batch is one UPDATE. A DLQ
replay of an event trimmed from the log meanwhile keeps the DLQ's copy in REVIVED, for that group
only: the log is never rewritten.
Groups, stats and trims keep the counts that make stats O(types + groups) (sqlite_counts.py).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from eventkit.errors import GroupNotFoundError, StoreError, StoreUnavailableError
from eventkit.records import stored_event_of
from eventkit.stores import sqlite_claim, sqlite_counts
from eventkit.stores.base import (
    Claim,
    DeadLetter,
    DeliveryRecord,
    DeliveryStatus,
    GroupReset,
    GroupStart,
    NewEvent,
    Stats,
    StoredEvent,
    TrimResult,
    check_limit,
    claim_cancel_safe,
    error_boundary,
    now_ms,
)
from eventkit.stores.lookup import PayloadValue
from eventkit.stores.sqlite_file import SQLiteFile
from eventkit.stores.sqlite_sql import (
    CONSUMERS,
    CORRELATED,
    DEAD_LETTER_COLUMNS,
    DEAD_LETTERS,
    DEAD_LETTERS_BEFORE_CORRELATION,
    DEAD_LETTERS_BEFORE_REPLAYS,
    DELETE_GROUP,
    DELIVERIES,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    EVENT_COLUMNS_BEFORE_CORRELATION,
    EVENTS,
    GROUPS,
    HELD,
    HELD_ANY,
    IN_JSON,
    NOTES,
    PENDING,
    REDELIVER,
    REVIVE,
    UNREAD,
    dlq_where,
    held_params,
    limited,
    payload_expression,
    payload_test,
    time_window,
    types_json,
    where,
)

logger = logging.getLogger(__name__)


def _translate(store: SQLiteEventStore, error: Exception) -> StoreError:
    """The one error boundary of this store (see error_boundary)."""
    if isinstance(error, sqlite3.Error):
        return store._file.error(error)
    if isinstance(error, ValueError) and ("closed" in str(error) or "no active" in str(error)):
        return StoreError(f"{store!r} is closed: open the bus (or store) again before using it")
    if isinstance(error, OSError):
        return StoreUnavailableError(f"SQLite store {store.path} cannot be used ({error})")
    return StoreError(f"SQLite store {store.path} failed: {type(error).__name__}: {error}")


@error_boundary(_translate)
class SQLiteEventStore:
    """The store protocol on a SQLite file: durable, shared by every process that opens the path."""

    backend = "sqlite"
    blocking_claims = False
    prefetch_turns = 1  # the call is queued to aiosqlite's thread at once

    def __init__(
        self, path: str | Path, *, busy_timeout_ms: int = 5000, read_only: bool = False
    ) -> None:
        self._file = SQLiteFile(Path(path), busy_timeout_ms=busy_timeout_ms, read_only=read_only)

    @property
    def path(self) -> Path:
        return self._file.path

    @property
    def busy_timeout_ms(self) -> int:
        return self._file.busy_timeout_ms

    @property
    def read_only(self) -> bool:
        """Only read (stats, export, DLQ listing): open() then creates, migrates or changes no
        file, and refuses a path that is not an eventkit store already."""
        return self._file.read_only

    def __repr__(self) -> str:
        return repr(self._file)

    async def open(self) -> None:
        await self._file.open()

    async def close(self) -> None:
        await self._file.close()

    # -- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        """One transaction; see Appender.append (on the loop when safe, else group commit)."""
        published = now_ms()
        if any(e.correlation_id is not None or e.causation_id is not None for e in events):
            return await self._file.append([
                (e.event_id, e.event_type, e.version, e.source, e.timestamp_ms, e.data, published,
                 e.correlation_id, e.causation_id)
                for e in events
            ])  # fmt: skip
        # the first events of their stories (most publishes): rows without the two NULLs
        return await self._file.append([
            (e.event_id, e.event_type, e.version, e.source, e.timestamp_ms, e.data, published)
            for e in events
        ])  # fmt: skip

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
        condition, params = where(
            (f"event_type {IN_JSON}", types_json(event_types)), ("timestamp_ms >= ?", start_ms),
            ("timestamp_ms < ?", end_ms), ("source = ?", source), ("position > ?", after_position),
        )  # fmt: skip
        if after_position is None and (start_ms is not None or end_ms is not None):
            bounds, window = time_window(start_ms, end_ms)
            condition, params = f"{condition} AND {bounds}", [*params, *window]
        sql, params = limited(
            f"SELECT {self._event_columns} FROM {EVENTS} WHERE {condition}", params, limit
        )
        return list(map(StoredEvent._make, await self._file.query(sql, params)))

    @property
    def _event_columns(self) -> str:
        # correlation exists from schema step 5 on (a read-only store may be older)
        return EVENT_COLUMNS if self._file.schema >= 5 else EVENT_COLUMNS_BEFORE_CORRELATION

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        sql = (
            f"SELECT {self._event_columns} FROM {EVENTS} WHERE event_id {IN_JSON} ORDER BY position"
        )
        return [
            stored_event_of(row)
            for row in await self._file.query(sql, (json.dumps(list(event_ids)),))
        ]

    async def correlated(self, correlation_id: str) -> list[StoredEvent]:
        """By index: events_by_correlation, and the event_id key for the story's first event
        (which stores no correlation_id)."""
        if self._file.schema >= 5:
            sql = CORRELATED.format(columns=EVENT_COLUMNS)
        else:  # every event is its own story
            sql = f"SELECT {EVENT_COLUMNS_BEFORE_CORRELATION} FROM {EVENTS} WHERE event_id = :id"
        return list(map(StoredEvent._make, await self._file.query(sql, {"id": correlation_id})))

    async def find(
        self, field_path: str, value: PayloadValue, *, limit: int | None = None
    ) -> list[StoredEvent]:
        """JSON1 on the payload: a scan of the log, or an index seek once index_payload_field
        made one for this field (the expression is the same text)."""
        test, params = payload_test(field_path, value)
        sql, params = limited(
            f"SELECT {self._event_columns} FROM {EVENTS} WHERE {test}", params, limit
        )
        return list(map(StoredEvent._make, await self._file.query(sql, params)))

    async def index_payload_field(self, field_path: str) -> str:
        """An expression index on one payload field, so find() on it seeks instead of scanning;
        idempotent. Returns the index's name. Each index costs every publish a little."""
        expression = payload_expression(field_path)  # ConfigError for a path that is not one
        name = f"events_by_data_{field_path.replace('.', '__')}"
        sql = f"CREATE INDEX IF NOT EXISTS {name} ON {EVENTS} ({expression})"
        await self._file.write_one(sql)
        return name

    async def get_note(self, name: str) -> str | None:
        if self._file.schema < 7:  # a read-only store older than notes has none
            return None
        found = await self._file.query(f"SELECT text FROM {NOTES} WHERE name = ?", (name,))
        return str(found[0][0]) if found else None

    async def put_note(self, name: str, text: str) -> None:
        await self._file.write_one(f"INSERT OR REPLACE INTO {NOTES} VALUES (?, ?)", (name, text))

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        await sqlite_counts.ensure_group(self._file, group, event_types, start)

    async def groups(self) -> list[str]:
        return [
            name for (name,) in await self._file.query(f"SELECT name FROM {GROUPS} ORDER BY name")
        ]

    async def reset_group(
        self, group: str, to: GroupStart, *, force: bool = False, dry_run: bool = False
    ) -> GroupReset:
        return await sqlite_counts.reset_group(self._file, group, to, force=force, dry_run=dry_run)

    async def delete_group(self, group: str) -> bool:
        async with self._file.transaction() as db:
            for sql in DELETE_GROUP:
                found = list(await db.execute_fetchall(sql, {"group": group}))
        return bool(found)

    async def register_consumer(self, group: str, consumer: str, *, ttl_ms: int = 60_000) -> None:
        # one statement (a heartbeat every half lease): no row when the group does not exist
        sql = f"""INSERT INTO {CONSUMERS} (group_name, consumer, expires_ms) SELECT ?, ?, ?
                  WHERE EXISTS (SELECT 1 FROM {GROUPS} WHERE name = ?)
                  ON CONFLICT DO UPDATE SET expires_ms = excluded.expires_ms RETURNING 1"""
        if not await self._file.write_one(
            sql, (group, consumer, now_ms() + ttl_ms, group), small=True
        ):
            raise GroupNotFoundError(group)

    async def unregister_consumer(self, group: str, consumer: str) -> None:
        sql = f"DELETE FROM {CONSUMERS} WHERE group_name = ? AND consumer = ?"
        await self._file.write_one(sql, (group, consumer), small=True)

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        """Small claims of new events on the loop when safe, else through the threads; those are
        safe to cancel: what the statements in flight leased is released, not left to expire."""
        check_limit(limit)
        claims = sqlite_claim.claim_on_loop(self._file, group, consumer, limit, lease_ms)
        if claims is not None:
            return claims
        claiming = sqlite_claim.claim(self._file, group, consumer, limit, lease_ms)
        return await claim_cancel_safe(self, claiming, lambda claims: claims)

    async def ack(self, claims: Sequence[Claim]) -> int:
        sql = f"""UPDATE {DELIVERIES} SET status = 'acked', acked_ms = :now, deadline_ms = NULL,
                  token = NULL {HELD_ANY} RETURNING 1"""
        return await self._settle_all(sql, claims)

    async def release(self, claims: Sequence[Claim]) -> int:
        sql = f"""UPDATE {DELIVERIES} SET status = 'retrying', deadline_ms = 0, token = NULL,
                  attempts = attempts - 1 {HELD_ANY} RETURNING 1"""
        return await self._settle_all(sql, claims)

    async def _settle_all(self, sql: str, claims: Sequence[Claim]) -> int:
        """The whole batch in one statement: one round trip, atomic, with no transaction to open."""
        if not claims:
            return 0
        held = json.dumps([[c.consumer_group, c.event.position, c.token] for c in claims])
        small = len(claims) <= sqlite_claim.LOOP_CLAIM_MAX  # as small as a claim made on the loop
        return len(await self._file.write_one(sql, {"claims": held, "now": now_ms()}, small=small))

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        now = now_ms()
        sql = f"UPDATE {DELIVERIES} SET deadline_ms = ? WHERE {HELD} RETURNING deadline_ms"
        rows = await self._file.write_one(
            sql, (now + lease_ms, *held_params(claim, now)), small=True
        )
        return claim.with_deadline(rows[0][0]) if rows else None

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        sql = f"""UPDATE {DELIVERIES} SET status = 'retrying', deadline_ms = ?, token = NULL,
                  last_error = ? WHERE {HELD} RETURNING 1"""
        params = (due_ms, error, *held_params(claim, now_ms()))
        return bool(await self._file.write_one(sql, params, small=True))

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        now, e = now_ms(), claim.event
        async with self._file.transaction() as db:
            held = list(await db.execute_fetchall(
                f"""UPDATE {DELIVERIES} SET status = 'dead', deadline_ms = NULL, token = NULL,
                    last_error = ? WHERE {HELD} RETURNING attempts, replays""", (error, *held_params(claim, now))))  # fmt: skip
            if held:
                await db.execute(
                    f"INSERT OR REPLACE INTO {DEAD_LETTERS} ({DEAD_LETTER_COLUMNS}) VALUES ({', '.join('?' * 17)})",
                    (e.position, e.event_id, e.event_type, e.version, e.source, e.timestamp_ms,
                     e.data, e.published_ms, e.correlation_id, e.causation_id, claim.consumer_group,
                     claim.consumer_name, held[0][0], now, error, traceback, held[0][1]),
                )  # fmt: skip
        return bool(held)

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        names = "1" if groups is None else f"g.name {IN_JSON}"
        sql = f"SELECT NOT EXISTS (SELECT 1 FROM {GROUPS} g WHERE {names} AND ({PENDING} OR {UNREAD}))"
        [(idle,)] = await self._file.query(
            sql, () if groups is None else (json.dumps(list(groups)),)
        )
        return bool(idle)

    # -- dead-letter queue --------------------------------------------------------------------

    async def get_pending_events(
        self, consumer_group: str | None = None, *, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        condition, params = dlq_where(consumer_group, event_ids)
        # replays exist from schema step 4 on (a read-only store may be older)
        columns = DEAD_LETTER_COLUMNS if self._file.schema >= 5 else DEAD_LETTERS_BEFORE_CORRELATION
        if self._file.schema < 4:
            columns = DEAD_LETTERS_BEFORE_REPLAYS
        sql = f"""SELECT {columns} FROM {DEAD_LETTERS} WHERE {condition}
                  ORDER BY failed_ms, position, group_name"""
        return [
            DeadLetter(StoredEvent(*r[:10]), *r[10:]) for r in await self._file.query(sql, params)
        ]

    async def count_dead_letters(self, consumer_group: str) -> int:
        sql = f"SELECT COUNT(*) FROM {DEAD_LETTERS} WHERE group_name = ?"
        return int((await self._file.query(sql, (consumer_group,)))[0][0])

    async def replay_dead_letters(
        self,
        consumer_group: str,
        *,
        event_types: Sequence[str] | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        condition, params = dlq_where(consumer_group, event_ids, event_types)
        now = now_ms()
        async with self._file.transaction() as db:
            letters = list(await db.execute_fetchall(
                f"DELETE FROM {DEAD_LETTERS} WHERE {condition} RETURNING {EVENT_COLUMNS}, consumer, replays", params))  # fmt: skip
            # due at once with attempts reset, for this group only (row: EVENT_COLUMNS, then
            # consumer at 10 and replays at 11)
            await db.executemany(
                REDELIVER,
                [(consumer_group, *row[:3], row[7], row[10], now, row[11] + 1) for row in letters],
            )
            # trimmed from the log meanwhile: the DLQ copy becomes this group's copy
            await db.executemany(REVIVE, [(*row[:10], consumer_group, row[0]) for row in letters])
        return len(letters)

    async def discard_dead_letters(
        self, consumer_group: str, *, event_ids: Sequence[str] | None = None
    ) -> int:
        condition, params = dlq_where(consumer_group, event_ids)
        return len(
            await self._file.write_one(
                f"DELETE FROM {DEAD_LETTERS} WHERE {condition} RETURNING 1", params
            )
        )

    # -- analysis and retention ---------------------------------------------------------------

    async def deliveries(
        self, group: str, *, after_position: int | None = None, limit: int | None = None
    ) -> list[DeliveryRecord]:
        sql = f"SELECT {DELIVERY_COLUMNS} FROM {DELIVERIES} WHERE group_name = ? AND position > ?"
        sql, params = limited(sql, [group, after_position or 0], limit)
        status = {s.value: s for s in DeliveryStatus}  # a dict lookup per row, not the enum's
        return [
            DeliveryRecord(p, i, t, g, c, status[s], n, pub, first, acked, error)
            for p, i, t, g, c, s, n, pub, first, acked, error in await self._file.query(sql, params)
        ]

    async def stats(self) -> Stats:
        """O(types + groups): from the counts of schema step 6 (sqlite_counts.py)."""
        return await sqlite_counts.stats(self._file, self.backend)

    async def trim(
        self, *, before_ms: int | None = None, max_events: int | None = None
    ) -> TrimResult:
        return await sqlite_counts.trim(self._file, before_ms=before_ms, max_events=max_events)
