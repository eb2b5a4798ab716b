"""Event store on one SQLite file, shared by processes through WAL.

Positions are the events table's AUTOINCREMENT rowid: assigned under SQLite's single write lock, so
they increase in commit order in every process (never wall-clock text). Each store has one writer
connection behind an asyncio.Lock (one transaction at a time) and a reader connection for queries;
claims run under BEGIN IMMEDIATE, which makes them atomic across processes. All times are epoch ms.
A DLQ replay of an event trimmed from the log meanwhile keeps a copy in REVIVED for that group only,
so the log is not rewritten and no other group sees it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiosqlite

from eventkit.errors import StoreError, StoreUnavailableError
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
    now_ms,
)

logger = logging.getLogger(__name__)

EVENTS = "events"
GROUPS = "consumer_groups"
GROUP_TYPES = "group_types"
CONSUMERS = "consumers"
DELIVERIES = "deliveries"
DEAD_LETTERS = "dead_letters"
#: copies of trimmed events a DLQ replay made deliverable again, per group
REVIVED = "revived_events"
META = "meta"

EXPIRED_LEASE_ERROR = "lease expired: consumer {} did not settle within its lease (died or hung)"
EVENT_COLUMNS = "position, event_id, event_type, version, source, timestamp_ms, data, published_ms"

#: numbered schema steps, applied in order under PRAGMA user_version (never edit a released step)
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        f"""CREATE TABLE {EVENTS} (position INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, version INTEGER NOT NULL,
            source TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, data TEXT NOT NULL,
            published_ms INTEGER NOT NULL)""",
        f"CREATE INDEX events_by_type ON {EVENTS} (event_type, position)",
        f"CREATE INDEX events_by_time ON {EVENTS} (timestamp_ms)",
        # cursor: the last position this group has scanned; the counters feed stats()
        f"""CREATE TABLE {GROUPS} (name TEXT PRIMARY KEY, cursor INTEGER NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0,
            retried INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID""",
        f"""CREATE TABLE {GROUP_TYPES} (group_name TEXT NOT NULL, event_type TEXT NOT NULL,
            PRIMARY KEY (group_name, event_type)) WITHOUT ROWID""",
        f"""CREATE TABLE {CONSUMERS} (group_name TEXT NOT NULL, consumer TEXT NOT NULL,
            PRIMARY KEY (group_name, consumer)) WITHOUT ROWID""",
        # deadline_ms: lease deadline (in_flight) or due time (retrying); NULL once acked or dead,
        # so the partial index holds exactly the unsettled work and claims stay O(batch)
        f"""CREATE TABLE {DELIVERIES} (group_name TEXT NOT NULL, position INTEGER NOT NULL,
            event_id TEXT NOT NULL, event_type TEXT NOT NULL, published_ms INTEGER NOT NULL,
            consumer TEXT NOT NULL, attempts INTEGER NOT NULL, status TEXT NOT NULL,
            first_delivered_ms INTEGER NOT NULL, acked_ms INTEGER, last_error TEXT,
            deadline_ms INTEGER, token TEXT, PRIMARY KEY (group_name, position)) WITHOUT ROWID""",
        f"""CREATE INDEX deliveries_unsettled ON {DELIVERIES} (group_name, deadline_ms)
            WHERE deadline_ms IS NOT NULL""",
        # a full copy of the event, so trimming the log never touches the DLQ
        f"""CREATE TABLE {DEAD_LETTERS} (group_name TEXT NOT NULL, event_id TEXT NOT NULL,
            position INTEGER NOT NULL, event_type TEXT NOT NULL, version INTEGER NOT NULL,
            source TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, data TEXT NOT NULL,
            published_ms INTEGER NOT NULL, consumer TEXT NOT NULL, attempts INTEGER NOT NULL,
            failed_ms INTEGER NOT NULL, last_error TEXT NOT NULL, traceback TEXT NOT NULL,
            PRIMARY KEY (group_name, event_id))""",
        f"CREATE INDEX dead_letters_by_failure ON {DEAD_LETTERS} (failed_ms, position)",
        f"""CREATE TABLE {REVIVED} (group_name TEXT NOT NULL, position INTEGER NOT NULL,
            event_id TEXT NOT NULL, event_type TEXT NOT NULL, version INTEGER NOT NULL,
            source TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, data TEXT NOT NULL,
            published_ms INTEGER NOT NULL, PRIMARY KEY (group_name, position)) WITHOUT ROWID""",
        f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    ]),
]  # fmt: skip
SCHEMA_VERSION = MIGRATIONS[-1][0]

# -- SQL shared by several operations (g is a row of GROUPS) ----------------------------------
#: is some event after g's cursor in g's filter? One index seek per type, never a scan
UNREAD = f"""(EXISTS (SELECT 1 FROM {GROUP_TYPES} t WHERE t.group_name = g.name AND t.event_type = '*')
     AND EXISTS (SELECT 1 FROM {EVENTS} WHERE position > g.cursor))
  OR EXISTS (SELECT 1 FROM {GROUP_TYPES} t WHERE t.group_name = g.name AND EXISTS (
     SELECT 1 FROM {EVENTS} e WHERE e.event_type = t.event_type AND e.position > g.cursor))"""
LAG = f"""CASE WHEN EXISTS (SELECT 1 FROM {GROUP_TYPES} WHERE group_name = g.name AND event_type = '*')
  THEN (SELECT COUNT(*) FROM {EVENTS} WHERE position > g.cursor)
  ELSE (SELECT COUNT(*) FROM {GROUP_TYPES} t JOIN {EVENTS} e ON e.event_type = t.event_type
        AND e.position > g.cursor WHERE t.group_name = g.name) END"""
PENDING = f"SELECT COUNT(*) FROM {DELIVERIES} d WHERE d.group_name = g.name AND d.deadline_ms IS NOT NULL"
#: the claim still holds its lease: (group, position, token, now)
HELD = "group_name = ? AND position = ? AND token = ? AND status = 'in_flight' AND deadline_ms >= ?"
IN_JSON = "IN (SELECT value FROM json_each(?))"

PROBE = f"""SELECT g.cursor, EXISTS (SELECT 1 FROM {DELIVERIES} d WHERE d.group_name = g.name
    AND d.deadline_ms <= :now) OR {UNREAD} FROM {GROUPS} g WHERE g.name = :group"""
CLAIM_DUE = f"""SELECT d.position, d.event_id, d.event_type, COALESCE(e.version, r.version),
    COALESCE(e.source, r.source), COALESCE(e.timestamp_ms, r.timestamp_ms), COALESCE(e.data, r.data),
    d.published_ms, d.attempts, d.status, d.consumer, d.last_error FROM {DELIVERIES} d
  LEFT JOIN {EVENTS} e ON e.position = d.position
  LEFT JOIN {REVIVED} r ON r.group_name = d.group_name AND r.position = d.position
  WHERE d.group_name = ? AND d.deadline_ms <= ? AND (d.deadline_ms < ? OR d.status = 'retrying')
  ORDER BY d.position LIMIT ?"""
LEASE_DUE = f"""UPDATE {DELIVERIES} SET attempts = attempts + 1, consumer = ?, status = 'in_flight',
    deadline_ms = ?, token = ?, last_error = ? WHERE group_name = ? AND position = ?"""
NEW_BY_TYPE = f"SELECT {EVENT_COLUMNS} FROM {EVENTS} WHERE event_type = ? AND position > ? ORDER BY position LIMIT ?"
INSERT_DELIVERY = f"""INSERT INTO {DELIVERIES} (group_name, position, event_id, event_type,
    published_ms, consumer, attempts, status, first_delivered_ms, deadline_ms, token)
    VALUES (?, ?, ?, ?, ?, ?, 1, 'in_flight', ?, ?, ?)"""
INSERT_EVENT = f"""INSERT INTO {EVENTS} (event_id, event_type, version, source, timestamp_ms, data,
    published_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"""
#: an old-enough event some group has not acked: unsettled anywhere, or unread by a matching group
PROTECTED = f"""(e.position IN (SELECT position FROM {DELIVERIES} WHERE deadline_ms IS NOT NULL)
  OR EXISTS (SELECT 1 FROM {GROUPS} g JOIN {GROUP_TYPES} t ON t.group_name = g.name
             WHERE e.position > g.cursor AND t.event_type IN ('*', e.event_type)))"""
DEAD_LETTER_COLUMNS = f"{EVENT_COLUMNS}, group_name, consumer, attempts, failed_ms, last_error, traceback"


class SQLiteEventStore:
    """The store protocol on a SQLite file: durable, shared by every process that opens the path."""

    backend = "sqlite"
    blocking_claims = False

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"

    async def open(self) -> None:
        if self._writer is not None:
            return
        writer = reader = None
        try:
            writer = await aiosqlite.connect(self.path, isolation_level=None)
            await writer.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            [(mode,)] = await writer.execute_fetchall("PRAGMA journal_mode = WAL")
            if str(mode).lower() != "wal":
                raise StoreUnavailableError(
                    f"SQLite store {self.path} cannot use WAL (journal_mode={mode}): "
                    "put it on a local file system"
                )
            await writer.execute("PRAGMA synchronous = NORMAL")
            await self._migrate(writer)
            await writer.execute("CREATE TEMP TABLE IF NOT EXISTS trim_doomed (position INTEGER PRIMARY KEY)")
            reader = await aiosqlite.connect(self.path, isolation_level=None)
            await reader.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await reader.execute("PRAGMA query_only = ON")
        except BaseException as e:
            for connection in (reader, writer):
                if connection is not None:
                    await connection.close()
            if isinstance(e, sqlite3.Error):
                raise self._error(e) from e
            raise
        self._writer, self._reader = writer, reader

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        """Apply missing schema steps in one write transaction, so racing processes apply each once."""
        await db.execute("BEGIN IMMEDIATE")
        try:
            [(version,)] = await db.execute_fetchall("PRAGMA user_version")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"SQLite store {self.path} has schema version {version}, newer than this "
                    f"eventkit's {SCHEMA_VERSION}: upgrade eventkit to use it"
                )
            for number, statements in MIGRATIONS:
                if number > version:
                    for statement in statements:
                        await db.execute(statement)
                    logger.info("applied schema step %d to %s", number, self.path)
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await db.execute("COMMIT")
        except BaseException:
            await db.rollback()
            raise

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        if reader is not None:
            await reader.close()
        if writer is not None:
            async with self._lock:  # let a write in progress finish
                await writer.close()

    # -- plumbing: every database call goes through one of these, which translate errors --------

    def _error(self, e: sqlite3.Error) -> StoreError:
        text = str(e)
        if "readonly" in text or "unable to open" in text or "disk I/O" in text:
            return StoreUnavailableError(
                f"SQLite store {self.path} is not writable ({text}): make the file, its directory "
                "and the -wal/-shm files beside it writable, or point EVENT_STORE_PATH elsewhere"
            )
        if "locked" in text or "busy" in text:
            return StoreUnavailableError(
                f"SQLite store {self.path} stayed locked by another writer for more than "
                f"busy_timeout_ms={self.busy_timeout_ms} ({text}): raise it or stop the stuck writer"
            )
        if "not a database" in text:
            return StoreUnavailableError(
                f"{self.path} is not a SQLite database ({text}): point EVENT_STORE_PATH at an "
                "eventkit store or a new file"
            )
        return StoreError(f"SQLite store {self.path} failed: {text}")

    def _connection(self, reader: bool = False) -> aiosqlite.Connection:
        db = self._reader if reader else self._writer
        if db is None:
            raise StoreError(f"{self!r} is not open: await store.open() first")
        return db

    async def _query(self, sql: str, params: Any = ()) -> list[Any]:
        """A read on the reader connection: WAL readers never wait for the writer."""
        try:
            return list(await self._connection(reader=True).execute_fetchall(sql, params))
        except sqlite3.Error as e:
            raise self._error(e) from e

    async def _write_one(self, sql: str, params: Any = ()) -> list[Any]:
        """One statement, atomic and durable on its own (autocommit), under the writer lock."""
        db = self._connection()
        async with self._lock:
            try:
                return list(await db.execute_fetchall(sql, params))
            except sqlite3.Error as e:
                raise self._error(e) from e

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time per store (never shared between coroutines); BEGIN
        IMMEDIATE takes the file's write lock first, so what it reads no other process changes."""
        db = self._connection()
        async with self._lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException as e:
                await db.rollback()  # queued after any call still running: the FIFO keeps order
                if isinstance(e, sqlite3.Error):
                    raise self._error(e) from e
                raise

    # -- the log ------------------------------------------------------------------------------

    async def append(self, events: Sequence[NewEvent]) -> list[int]:
        if not events:
            return []
        published = now_ms()
        rows = [
            (e.event_id, e.event_type, e.version, e.source, e.timestamp_ms, e.data, published)
            for e in events
        ]
        if len(rows) == 1:  # one statement, no explicit transaction: the common single publish
            found = await self._write_one(INSERT_EVENT + " RETURNING position", rows[0])
            if found:
                return [found[0][0]]
            return [(await self._positions_of(events))[events[0].event_id]]
        sequence = f"SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{EVENTS}'), 0)"
        async with self._transaction() as db:
            [(before,)] = await db.execute_fetchall(sequence)
            inserted = (await db.executemany(INSERT_EVENT, rows)).rowcount
            [(after,)] = await db.execute_fetchall(sequence)
        if inserted == len(rows) and after - before == inserted:
            # n new positions, all > before and <= after, increasing in insert order
            return list(range(before + 1, after + 1))
        positions = await self._positions_of(events)
        return [positions[e.event_id] for e in events]

    async def _positions_of(self, events: Sequence[NewEvent]) -> dict[str, int]:
        ids = json.dumps([e.event_id for e in events])
        rows = await self._query(f"SELECT event_id, position FROM {EVENTS} WHERE event_id {IN_JSON}", (ids,))
        return dict(rows)

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
        where: list[str] = ["1"]
        params: list[Any] = []
        for clause, value in (
            (f"event_type {IN_JSON}", None if _all_types(event_types) else json.dumps(list(event_types or ()))),
            ("timestamp_ms >= ?", start_ms),
            ("timestamp_ms < ?", end_ms),
            ("source = ?", source),
            ("position > ?", after_position),
        ):  # fmt: skip
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT {EVENT_COLUMNS} FROM {EVENTS} WHERE {' AND '.join(where)} ORDER BY position"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [StoredEvent(*row) for row in await self._query(sql, params)]

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM {EVENTS} WHERE event_id {IN_JSON} ORDER BY position"
        return [StoredEvent(*row) for row in await self._query(sql, (json.dumps(list(event_ids)),))]

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        async with self._transaction() as db:
            if not await db.execute_fetchall(f"SELECT 1 FROM {GROUPS} WHERE name = ?", (group,)):
                if start == "earliest":
                    cursor = 0
                elif start == "latest":
                    [(cursor,)] = await db.execute_fetchall(f"SELECT COALESCE(MAX(position), 0) FROM {EVENTS}")
                else:  # just before the first event, in publish order, stamped at or after start
                    [(cursor,)] = await db.execute_fetchall(
                        f"""SELECT COALESCE((SELECT MIN(position) FROM {EVENTS} WHERE timestamp_ms >= ?) - 1,
                            (SELECT MAX(position) FROM {EVENTS}), 0)""", (int(start),))  # fmt: skip
                await db.execute(f"INSERT INTO {GROUPS} (name, cursor) VALUES (?, ?)", (group, cursor))
                event_types = list(event_types) or [WILDCARD]  # an empty filter matches all
            await db.executemany(
                f"INSERT OR IGNORE INTO {GROUP_TYPES} VALUES (?, ?)", [(group, t) for t in event_types]
            )

    async def groups(self) -> list[str]:
        return [name for (name,) in await self._query(f"SELECT name FROM {GROUPS} ORDER BY name")]

    async def register_consumer(self, group: str, consumer: str) -> None:
        await self._consumer_change(f"INSERT OR IGNORE INTO {CONSUMERS} VALUES (?, ?)", group, consumer)

    async def unregister_consumer(self, group: str, consumer: str) -> None:
        await self._consumer_change(f"DELETE FROM {CONSUMERS} WHERE group_name = ? AND consumer = ?", group, consumer)

    async def _consumer_change(self, sql: str, group: str, consumer: str) -> None:
        async with self._transaction() as db:
            if not await db.execute_fetchall(f"SELECT 1 FROM {GROUPS} WHERE name = ?", (group,)):
                raise _no_group(group)
            await db.execute(sql, (group, consumer))

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        _check_limit(limit)
        # probe on the reader first: an idle poll is one indexed lookup and never takes the lock
        probe = await self._query(PROBE, {"group": group, "now": now_ms()})
        if not probe:
            raise _no_group(group)
        if limit == 0 or not probe[0][1]:
            return []
        async with self._transaction() as db:
            now = now_ms()
            deadline = now + lease_ms
            claims: list[Claim] = []
            leases = []
            retried = 0
            for *event, attempts, status, previous, last_error in await db.execute_fetchall(
                CLAIM_DUE, (group, now, now, limit)
            ):
                if status == DeliveryStatus.IN_FLIGHT:  # its holder died or hung
                    last_error = EXPIRED_LEASE_ERROR.format(previous)
                token = secrets.token_hex(8)
                retried += attempts >= 1
                claims.append(Claim(StoredEvent(*event), group, consumer, attempts + 1, deadline, token, last_error))
                leases.append((consumer, deadline, token, last_error, group, event[0]))
            await db.executemany(LEASE_DUE, leases)
            if len(claims) < limit:
                wanted = limit - len(claims)
                found = await self._unread(db, group, wanted)
                rows = []
                for event in found:
                    token = secrets.token_hex(8)
                    claims.append(Claim(StoredEvent(*event), group, consumer, 1, deadline, token))
                    rows.append((group, event[0], event[1], event[2], event[7], consumer, now, deadline, token))
                await db.executemany(INSERT_DELIVERY, rows)
                # a full batch moves the cursor to its last event; a short one scanned to the end
                new_cursor = found[-1][0] if len(found) == wanted else None
                await db.execute(
                    f"""UPDATE {GROUPS} SET cursor = COALESCE(?, MAX(cursor, COALESCE(
                        (SELECT MAX(position) FROM {EVENTS}), 0))) WHERE name = ?""",
                    (new_cursor, group),
                )
            await db.execute(
                f"UPDATE {GROUPS} SET delivered = delivered + ?, retried = retried + ? WHERE name = ?",
                (len(claims), retried, group),
            )
        return claims

    async def _unread(self, db: aiosqlite.Connection, group: str, limit: int) -> list[Any]:
        """Unread events of the group's filter in publish order: per type, an index range scan."""
        [(cursor, types)] = await db.execute_fetchall(
            f"""SELECT cursor, (SELECT json_group_array(event_type) FROM {GROUP_TYPES}
                WHERE group_name = name) FROM {GROUPS} WHERE name = ?""", (group,))  # fmt: skip
        event_types: list[str] = json.loads(types)
        if not event_types:
            return []
        if WILDCARD in event_types:
            sql = f"SELECT {EVENT_COLUMNS} FROM {EVENTS} WHERE position > ? ORDER BY position LIMIT ?"
            return list(await db.execute_fetchall(sql, (cursor, limit)))
        if len(event_types) == 1:
            return list(await db.execute_fetchall(NEW_BY_TYPE, (event_types[0], cursor, limit)))
        union = " UNION ALL ".join(f"SELECT * FROM ({NEW_BY_TYPE})" for _ in event_types)
        params = [p for t in event_types for p in (t, cursor, limit)]
        return list(await db.execute_fetchall(f"{union} ORDER BY position LIMIT ?", (*params, limit)))

    async def ack(self, claims: Sequence[Claim]) -> int:
        if not claims:
            return 0
        now = now_ms()
        by_group: dict[str, list[tuple[Any, ...]]] = {}
        for c in claims:
            by_group.setdefault(c.consumer_group, []).append((now, c.consumer_group, c.event.position, c.token, now))
        counted = 0
        async with self._transaction() as db:
            for group, rows in by_group.items():
                sql = f"UPDATE {DELIVERIES} SET status = 'acked', acked_ms = ?, deadline_ms = NULL, token = NULL WHERE {HELD}"
                acked = (await db.executemany(sql, rows)).rowcount
                if acked:
                    await db.execute(f"UPDATE {GROUPS} SET acked = acked + ? WHERE name = ?", (acked, group))
                counted += acked
        return counted

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        now = now_ms()
        sql = f"UPDATE {DELIVERIES} SET deadline_ms = ? WHERE {HELD} RETURNING deadline_ms"
        rows = await self._write_one(sql, (now + lease_ms, *_held(claim, now)))
        return replace(claim, lease_deadline_ms=rows[0][0]) if rows else None

    async def release(self, claims: Sequence[Claim]) -> int:
        if not claims:
            return 0
        now = now_ms()
        sql = f"""UPDATE {DELIVERIES} SET status = 'retrying', deadline_ms = 0, token = NULL,
                  attempts = attempts - 1 WHERE {HELD}"""
        async with self._transaction() as db:
            return int((await db.executemany(sql, [_held(c, now) for c in claims])).rowcount)

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        sql = f"""UPDATE {DELIVERIES} SET status = 'retrying', deadline_ms = ?, token = NULL,
                  last_error = ? WHERE {HELD} RETURNING 1"""
        return bool(await self._write_one(sql, (due_ms, error, *_held(claim, now_ms()))))

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        now = now_ms()
        async with self._transaction() as db:
            attempts = list(await db.execute_fetchall(
                f"""UPDATE {DELIVERIES} SET status = 'dead', deadline_ms = NULL, token = NULL,
                    last_error = ? WHERE {HELD} RETURNING attempts""", (error, *_held(claim, now))))  # fmt: skip
            if not attempts:
                return False
            e = claim.event
            await db.execute(
                f"INSERT OR REPLACE INTO {DEAD_LETTERS} ({DEAD_LETTER_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                (e.position, e.event_id, e.event_type, e.version, e.source, e.timestamp_ms, e.data,
                 e.published_ms, claim.consumer_group, claim.consumer_name, attempts[0][0], now,
                 error, traceback),
            )  # fmt: skip
        return True

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        names = "1" if groups is None else f"g.name {IN_JSON}"
        sql = f"""SELECT NOT EXISTS (SELECT 1 FROM {GROUPS} g WHERE {names} AND (({PENDING}) > 0
                  OR {UNREAD}))"""
        [(idle,)] = await self._query(sql, () if groups is None else (json.dumps(list(groups)),))
        return bool(idle)

    # -- dead-letter queue --------------------------------------------------------------------

    async def get_pending_events(
        self, consumer_group: str | None = None, *, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        where, params = _dlq_filter(consumer_group, event_ids, None)
        rows = await self._query(
            f"SELECT {DEAD_LETTER_COLUMNS} FROM {DEAD_LETTERS} WHERE {where} "
            "ORDER BY failed_ms, position, group_name", params)  # fmt: skip
        return [DeadLetter(StoredEvent(*row[:8]), *row[8:]) for row in rows]

    async def count_dead_letters(self, consumer_group: str) -> int:
        sql = f"SELECT COUNT(*) FROM {DEAD_LETTERS} WHERE group_name = ?"
        return int((await self._query(sql, (consumer_group,)))[0][0])

    async def replay_dead_letters(
        self,
        consumer_group: str,
        *,
        event_types: Sequence[str] | None = None,
        event_ids: Sequence[str] | None = None,
    ) -> int:
        where, params = _dlq_filter(consumer_group, event_ids, event_types)
        now = now_ms()
        async with self._transaction() as db:
            letters = list(await db.execute_fetchall(
                f"DELETE FROM {DEAD_LETTERS} WHERE {where} RETURNING {EVENT_COLUMNS}, consumer", params))  # fmt: skip
            # due at once with attempts reset, for this group only
            await db.executemany(
                f"""INSERT INTO {DELIVERIES} (group_name, position, event_id, event_type,
                    published_ms, consumer, attempts, status, first_delivered_ms, deadline_ms)
                    VALUES (?, ?, ?, ?, ?, ?, 0, 'retrying', ?, 0) ON CONFLICT DO UPDATE
                    SET attempts = 0, status = 'retrying', deadline_ms = 0, token = NULL""",
                [(consumer_group, p, i, t, pub, c, now) for p, i, t, _, _, _, _, pub, c in letters],
            )  # fmt: skip
            # trimmed from the log meanwhile: the DLQ copy becomes this group's copy
            await db.executemany(
                f"""INSERT OR REPLACE INTO {REVIVED} SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?
                    WHERE NOT EXISTS (SELECT 1 FROM {EVENTS} WHERE position = ?)""",
                [(consumer_group, *letter[:8], letter[0]) for letter in letters],
            )
        return len(letters)

    async def discard_dead_letters(
        self, consumer_group: str, *, event_ids: Sequence[str] | None = None
    ) -> int:
        where, params = _dlq_filter(consumer_group, event_ids, None)
        async with self._transaction() as db:
            return int((await db.execute(f"DELETE FROM {DEAD_LETTERS} WHERE {where}", params)).rowcount)

    # -- analysis and retention ---------------------------------------------------------------

    async def deliveries(
        self, group: str, *, after_position: int | None = None, limit: int | None = None
    ) -> list[DeliveryRecord]:
        _check_limit(limit)
        sql = f"""SELECT position, event_id, event_type, group_name, consumer, status, attempts,
                  published_ms, first_delivered_ms, acked_ms, last_error FROM {DELIVERIES}
                  WHERE group_name = ? AND position > ? ORDER BY position"""
        params: list[Any] = [group, -1 if after_position is None else after_position]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        rows = await self._query(sql, params)
        return [DeliveryRecord(*r[:5], DeliveryStatus(r[5]), *r[6:]) for r in rows]

    async def stats(self) -> dict[str, Any]:
        rows = await self._query(
            f"""SELECT g.name, {LAG}, ({PENDING}),
                (SELECT COUNT(*) FROM {DEAD_LETTERS} x WHERE x.group_name = g.name),
                g.delivered, g.acked, g.retried,
                (SELECT COUNT(*) FROM {CONSUMERS} c WHERE c.group_name = g.name)
                FROM {GROUPS} g ORDER BY g.name""")  # fmt: skip
        keys = ("lag", "pending", "dlq", "delivered", "acked", "retried", "consumers")
        groups = {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}
        [(total, kept)] = await self._query(
            f"""SELECT (SELECT COUNT(*) FROM {EVENTS}),
                COALESCE((SELECT value FROM {META} WHERE key = 'kept_unacked'), 0)""")  # fmt: skip
        return {
            "store": {
                "backend": self.backend,
                "total_events": total,
                "pending_events": sum(g["pending"] for g in groups.values()),
                "dlq_events": sum(g["dlq"] for g in groups.values()),
                "kept_unacked": kept,
            },
            "groups": groups,
        }

    async def trim(
        self, *, before_ms: int | None = None, max_events: int | None = None
    ) -> TrimResult:
        _check_limit(max_events)
        async with self._transaction() as db:
            doomed: list[str] = []
            params: list[Any] = []
            if before_ms is not None:
                doomed.append("timestamp_ms < ?")
                params.append(before_ms)
            if max_events is not None:
                newest = await db.execute_fetchall(
                    f"SELECT position FROM {EVENTS} ORDER BY position DESC LIMIT 1 OFFSET ?", (max_events,))  # fmt: skip
                for (position,) in newest:  # the newest one beyond max_events
                    doomed.append("position <= ?")
                    params.append(position)
            removed = kept = 0
            if doomed:
                old = " OR ".join(doomed)
                [(count,)] = await db.execute_fetchall(f"SELECT COUNT(*) FROM {EVENTS} WHERE {old}", params)
                await db.execute("DELETE FROM temp.trim_doomed")
                removed = (await db.execute(
                    f"INSERT INTO temp.trim_doomed SELECT position FROM {EVENTS} e WHERE ({old}) AND NOT {PROTECTED}",
                    params)).rowcount  # fmt: skip
                kept = count - removed
                for (group,) in await db.execute_fetchall(f"SELECT name FROM {GROUPS}"):
                    await db.execute(
                        f"DELETE FROM {DELIVERIES} WHERE group_name = ? AND position IN (SELECT position FROM temp.trim_doomed)",
                        (group,))  # fmt: skip
                await db.execute(f"DELETE FROM {EVENTS} WHERE position IN (SELECT position FROM temp.trim_doomed)")
                # a revived copy is needed only while its delivery is unsettled
                await db.execute(
                    f"""DELETE FROM {REVIVED} WHERE NOT EXISTS (SELECT 1 FROM {DELIVERIES} d WHERE
                        d.group_name = {REVIVED}.group_name AND d.position = {REVIVED}.position
                        AND d.deadline_ms IS NOT NULL)""")  # fmt: skip
            await db.execute(f"INSERT OR REPLACE INTO {META} VALUES ('kept_unacked', ?)", (kept,))
        if removed:
            logger.info("trimmed %d events from %s (%d kept: not yet acked)", removed, self.path, kept)
        return TrimResult(removed, kept)


def _held(claim: Claim, now: int) -> tuple[str, int, str, int]:
    return (claim.consumer_group, claim.event.position, claim.token, now)


def _all_types(event_types: Sequence[str] | None) -> bool:
    return not event_types or WILDCARD in event_types


def _dlq_filter(
    group: str | None, event_ids: Iterable[str] | None, event_types: Sequence[str] | None
) -> tuple[str, list[Any]]:
    where: list[str] = ["1"]
    params: list[Any] = []
    if group is not None:
        where.append("group_name = ?")
        params.append(group)
    if event_ids is not None:
        where.append(f"event_id {IN_JSON}")
        params.append(json.dumps(list(event_ids)))
    if not _all_types(event_types):
        where.append(f"event_type {IN_JSON}")
        params.append(json.dumps(list(event_types or ())))
    return " AND ".join(where), params


def _no_group(group: str) -> KeyError:
    return KeyError(f"consumer group {group!r} does not exist: subscribe to create it")


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
