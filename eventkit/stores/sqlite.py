"""Event store on one SQLite file, shared by processes through WAL.

Positions are the AUTOINCREMENT rowid, assigned under SQLite's single write lock: they increase in
commit order for every process (never wall-clock text). One writer connection per store behind an
asyncio.Lock runs one statement or transaction at a time; every write is atomic across processes
(a single statement, or BEGIN IMMEDIATE). A reader connection serves queries and the idle probe.
Each aiosqlite call is a thread round trip (0.2-0.6 ms on a busy VM), so hot paths are single
statements: a claim of new events is one INSERT ... SELECT whose trigger moves the group's cursor,
an ack of a batch is one UPDATE. A DLQ replay of an event trimmed from the
log meanwhile keeps the DLQ's copy in REVIVED, for that group only: the log is never rewritten.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from eventkit.errors import GroupNotFoundError, StoreError, StoreUnavailableError
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
    claim_cancel_safe,
    error_boundary,
    now_ms,
)
from eventkit.stores.sqlite_sql import (
    CONSUMERS,
    COUNT_DUE,
    DEAD_LETTER_COLUMNS,
    DEAD_LETTERS,
    DELIVERIES,
    DUE,
    EVENT_COLUMNS,
    EVENTS,
    EXPIRED_LEASE_ERROR,
    GROUP_TYPES,
    GROUPS,
    HELD,
    HELD_ANY,
    IN_JSON,
    INSERT_EVENT,
    LAG,
    LEASE_DUE,
    LEASED_EVENTS,
    META,
    MIGRATIONS,
    PENDING,
    PROBE,
    PROTECTED,
    REVIVED,
    SCHEMA_VERSION,
    SEQUENCE,
    SKIP_TO,
    UNREAD,
    lease_unread_sql,
)

logger = logging.getLogger(__name__)


def _translate(store: SQLiteEventStore, error: Exception) -> StoreError:
    """The one error boundary of this store (see error_boundary)."""
    if isinstance(error, sqlite3.Error):
        return store._error(error)
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
    prefetch_claims = True

    def __init__(
        self, path: str | Path, *, busy_timeout_ms: int = 5000, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        #: only read (stats, export, DLQ listing): open() then creates, migrates or changes no
        #: file, and refuses a path that is not an eventkit store already
        self.read_only = read_only
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        #: the file's schema step once open (read-only stores may be older than SCHEMA_VERSION)
        self._schema = SCHEMA_VERSION

    def __repr__(self) -> str:
        return f"SQLiteEventStore({str(self.path)!r})"

    async def open(self) -> None:
        if self._writer is not None:
            return
        if self.read_only:  # one connection serves both roles; any write fails as read-only
            self._writer = self._reader = await self._open_read_only()
            return
        if not self.path.parent.is_dir():  # say so before aiosqlite starts a thread for nothing
            raise StoreUnavailableError(f"SQLite store {self.path} is not writable: its directory "
                                        f"{self.path.parent} does not exist or is not a directory")  # fmt: skip
        await asyncio.to_thread(self._refuse_foreign_database)
        opened: list[aiosqlite.Connection] = []
        try:  # the writer sets WAL and the schema up before the reader looks
            for pragmas in (["journal_mode = WAL", "synchronous = NORMAL"], ["query_only = ON"]):
                opened.append(db := await _connect(self.path))
                for pragma in [f"busy_timeout = {int(self.busy_timeout_ms)}", *pragmas]:
                    await db.execute(f"PRAGMA {pragma}")
                if len(opened) == 1:
                    await self._migrate(db)
        except BaseException as e:
            for db in opened:
                await db.close()
            if isinstance(e, sqlite3.Error):
                raise self._error(e) from e
            raise
        self._writer, self._reader = opened

    def _refuse_foreign_database(self) -> None:
        """Refuse, untouched, a file that holds another application's tables: opening it as a
        store would switch it to WAL and add eventkit's tables beside them."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        try:  # immutable: reads without creating -wal/-shm files or taking locks
            probe = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
            try:
                [(version,)] = probe.execute("PRAGMA user_version").fetchall()
                tables = [name for (name,) in probe.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]  # fmt: skip
            finally:
                probe.close()
        except sqlite3.Error as e:
            raise self._error(e) from e
        if version == 0 and tables:
            raise StoreError(
                f"{self.path} is not an eventkit store (it holds tables {', '.join(tables[:5])}); "
                "it was left unchanged: point EVENT_STORE_PATH (or --path) at a new file"
            )

    async def _open_read_only(self) -> aiosqlite.Connection:
        """A read-only connection that leaves the file and its folder exactly as they were: no WAL
        switch, no schema step, no temp table, and no -wal/-shm files left beside the file.

        A plain `mode=ro` connection to a WAL database creates -wal and -shm and cannot remove
        them. So: with a -wal present (another process has the store open, or one died), read it
        with `readonly_shm=1`, which never writes the -shm; with none (the store was closed
        cleanly) the file alone is the whole database and `immutable=1` reads it without locks
        or side files (a writer that opens the store in the meantime is not seen).
        """
        path = self.path.resolve()
        try:
            with path.open("rb") as f:
                header = f.read(100)
        except FileNotFoundError:
            raise StoreError(f"SQLite store {self.path} does not exist: check the path (--path or "
                             "EVENT_STORE_PATH); reading a store never creates one") from None  # fmt: skip
        except OSError as e:  # a folder, permission denied
            raise StoreError(f"SQLite store {self.path} cannot be read ({e.strerror or e}): point "
                             "--path or EVENT_STORE_PATH at a readable store file") from None  # fmt: skip
        not_ours = (f"{self.path} is not an eventkit store ({{}}); it was left unchanged: point "
                    "--path or EVENT_STORE_PATH at a file eventkit wrote")  # fmt: skip
        if not header.startswith(b"SQLite format 3\x00"):
            raise StoreError(not_ours.format("not a SQLite database"))
        mode = "mode=ro"
        if header[18:20] == b"\x02\x02":  # WAL
            wal = Path(f"{path}-wal").exists()
            mode += "&readonly_shm=1" if wal else "&immutable=1"
        db = await _connect(f"{path.as_uri()}?{mode}", uri=True)
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            [(version,)] = await db.execute_fetchall("PRAGMA user_version")
            tables = {name for (name,) in await db.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}  # fmt: skip
        except BaseException as e:
            await db.close()
            if isinstance(e, sqlite3.Error):
                raise StoreError(f"SQLite store {self.path} cannot be read ({e}): check that it "
                                 "is an eventkit store and that its -wal and -shm files (if "
                                 "any) are both there and readable") from None  # fmt: skip
            raise
        missing = {EVENTS, GROUPS, DELIVERIES, DEAD_LETTERS} - tables
        if version > SCHEMA_VERSION or not version or missing:
            await db.close()
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite store {self.path} has schema version {version}, newer "
                                 f"than this eventkit's {SCHEMA_VERSION}: upgrade eventkit")  # fmt: skip
            found = "no tables" if not tables else f"tables {', '.join(sorted(tables)[:5])}"
            raise StoreError(
                not_ours.format(f"a SQLite database with {found}, user_version {version}")
            )
        self._schema = version
        return db

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        """Apply missing schema steps in one write transaction, so racing processes apply each once."""
        [(mode,)] = await db.execute_fetchall("PRAGMA journal_mode")
        if mode != "wal":
            raise StoreUnavailableError(f"SQLite store {self.path} cannot use WAL (journal_mode="
                                        f"{mode}): put it on a local file system")  # fmt: skip
        await db.execute("BEGIN IMMEDIATE")
        try:
            [(version,)] = await db.execute_fetchall("PRAGMA user_version")
            if version > SCHEMA_VERSION:
                raise StoreError(f"SQLite store {self.path} has schema version {version}, newer "
                                 f"than this eventkit's {SCHEMA_VERSION}: upgrade eventkit")  # fmt: skip
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
        await db.execute(
            "CREATE TEMP TABLE IF NOT EXISTS trim_doomed (position INTEGER PRIMARY KEY)"
        )

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
        text, path = str(e), self.path
        if self.read_only and "readonly" in text:
            return StoreError(f"SQLite store {path} was opened read-only ({text}): open it "
                              "without read_only to change it")  # fmt: skip
        if "readonly" in text or "unable to open" in text or "disk I/O" in text:
            return StoreUnavailableError(
                f"SQLite store {path} is not writable ({text}): make the file, its directory and "
                "the -wal/-shm files beside it writable, or point EVENT_STORE_PATH elsewhere")  # fmt: skip
        if "locked" in text or "busy" in text:
            return StoreUnavailableError(
                f"SQLite store {path} stayed locked by another writer for over busy_timeout_ms="
                f"{self.busy_timeout_ms} ({text}): raise it or stop the stuck writer")  # fmt: skip
        if "not a database" in text:
            return StoreUnavailableError(f"{path} is not a SQLite database ({text}): point "
                                         "EVENT_STORE_PATH at an eventkit store or a new file")  # fmt: skip
        return StoreError(f"SQLite store {path} failed: {text}")

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
        """One statement, atomic and durable by itself (autocommit), under the writer lock."""
        db = self._connection()
        async with self._lock:
            try:
                return list(await db.execute_fetchall(sql, params))
            except sqlite3.Error as e:
                raise self._error(e) from e

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time per store, never shared between coroutines; BEGIN
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
        published = now_ms()
        rows = [
            (e.event_id, e.event_type, e.version, e.source, e.timestamp_ms, e.data, published)
            for e in events
        ]
        if len(rows) <= 1:  # one statement, atomic by itself: the common single publish
            found = [await self._write_one(INSERT_EVENT + " RETURNING position", r) for r in rows]
            return [f[0][0] for f in found] if all(found) else await self._positions_of(events)
        async with self._transaction() as db:
            [(before,)] = await db.execute_fetchall(SEQUENCE)
            inserted = (await db.executemany(INSERT_EVENT, rows)).rowcount
            [(after,)] = await db.execute_fetchall(SEQUENCE)
        if inserted == len(rows) == after - before:
            return list(range(before + 1, after + 1))  # n distinct positions in (before, after]
        return await self._positions_of(events)

    async def _positions_of(self, events: Sequence[NewEvent]) -> list[int]:
        sql = f"SELECT event_id, position FROM {EVENTS} WHERE event_id {IN_JSON}"
        positions = dict(await self._query(sql, (json.dumps([e.event_id for e in events]),)))
        return [positions[e.event_id] for e in events]

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
        where, params = _where(
            (f"event_type {IN_JSON}", _types_json(event_types)), ("timestamp_ms >= ?", start_ms),
            ("timestamp_ms < ?", end_ms), ("source = ?", source), ("position > ?", after_position),
        )  # fmt: skip
        sql, params = _limited(f"SELECT {EVENT_COLUMNS} FROM {EVENTS} WHERE {where}", params, limit)
        return list(map(StoredEvent._make, await self._query(sql, params)))

    async def get_events(self, event_ids: Sequence[str]) -> list[StoredEvent]:
        sql = f"SELECT {EVENT_COLUMNS} FROM {EVENTS} WHERE event_id {IN_JSON} ORDER BY position"
        return [StoredEvent(*row) for row in await self._query(sql, (json.dumps(list(event_ids)),))]

    # -- consumer groups ----------------------------------------------------------------------

    async def ensure_group(
        self, group: str, event_types: Sequence[str], start: GroupStart = "earliest"
    ) -> None:
        types = list(event_types)
        async with self._transaction() as db:
            if not await db.execute_fetchall(f"SELECT 1 FROM {GROUPS} WHERE name = ?", (group,)):
                cursor = 0
                if start != "earliest":  # just before the first event (publish order) stamped at
                    # or after start; "latest" (NULL) finds none: after the last event
                    [(cursor,)] = await db.execute_fetchall(
                        f"""SELECT COALESCE((SELECT MIN(position) FROM {EVENTS} WHERE timestamp_ms
                            >= ?) - 1, (SELECT MAX(position) FROM {EVENTS}), 0)""",
                        (None if start == "latest" else int(start),))  # fmt: skip
                await db.execute(
                    f"INSERT INTO {GROUPS} (name, cursor) VALUES (?, ?)", (group, cursor)
                )
                types = types or [WILDCARD]  # an empty filter matches every type
            sql = f"INSERT OR IGNORE INTO {GROUP_TYPES} VALUES (?, ?)"
            await db.executemany(sql, [(group, t) for t in types])

    async def groups(self) -> list[str]:
        return [name for (name,) in await self._query(f"SELECT name FROM {GROUPS} ORDER BY name")]

    async def register_consumer(self, group: str, consumer: str, *, ttl_ms: int = 60_000) -> None:
        # one statement (a heartbeat every half lease): no row when the group does not exist
        sql = f"""INSERT INTO {CONSUMERS} (group_name, consumer, expires_ms) SELECT ?, ?, ?
                  WHERE EXISTS (SELECT 1 FROM {GROUPS} WHERE name = ?)
                  ON CONFLICT DO UPDATE SET expires_ms = excluded.expires_ms RETURNING 1"""
        if not await self._write_one(sql, (group, consumer, now_ms() + ttl_ms, group)):
            raise GroupNotFoundError(group)

    async def unregister_consumer(self, group: str, consumer: str) -> None:
        sql = f"DELETE FROM {CONSUMERS} WHERE group_name = ? AND consumer = ?"
        await self._write_one(sql, (group, consumer))

    async def claim(
        self, group: str, consumer: str, *, limit: int, lease_ms: int, block_ms: int = 0
    ) -> list[Claim]:
        """Safe to cancel: what the statements in flight leased is released, not left to expire."""
        check_limit(limit)
        claiming = self._claim(group, consumer, limit, lease_ms)
        return await claim_cancel_safe(self, claiming, lambda claims: claims)

    async def _claim(self, group: str, consumer: str, limit: int, lease_ms: int) -> list[Claim]:
        # the probe runs on the reader: an idle poll is a few index seeks and never takes the lock
        probe = await self._query(PROBE, {"group": group, "now": now_ms()})
        if not probe:
            raise GroupNotFoundError(group)
        [(types, due, unread, newest)] = probe
        if limit == 0 or not (due or unread):
            return []
        prefix = secrets.token_hex(8)  # tokens "<random>-<position>": one random draw per batch
        claims = await self._claim_due(group, consumer, limit, lease_ms, prefix) if due else []
        wanted = limit - len(claims)
        if unread and wanted:
            filter_ = json.loads(types)
            params = {f"t{i}": t for i, t in enumerate(filter_)}
            now = now_ms()
            params.update(group=group, types=types, n=wanted, consumer=consumer, now=now,
                          deadline=now + lease_ms, prefix=prefix)  # fmt: skip
            type_count = 0 if WILDCARD in filter_ else len(filter_)
            leased = [p for (p,) in await self._write_one(lease_unread_sql(type_count), params)]
            if leased:
                rows = await self._query(LEASED_EVENTS, (json.dumps(leased),))
                claims += [
                    Claim(
                        StoredEvent(*row), group, consumer, 1, now + lease_ms, f"{prefix}-{row[0]}"
                    )
                    for row in rows
                ]
            if len(leased) < wanted and newest is not None and newest > max(leased, default=0):
                # caught up, with events of other types after the last one leased: skip them
                await self._write_one(SKIP_TO, {"group": group, "types": types, "newest": newest})
        return claims

    async def _claim_due(
        self, group: str, consumer: str, limit: int, lease_ms: int, prefix: str
    ) -> list[Claim]:
        """Expired leases (their consumer died or hung) and retries whose time has come."""
        claims: list[Claim] = []
        async with self._transaction() as db:
            now = now_ms()
            deadline = now + lease_ms
            leases, retried = [], 0
            for *event, attempts, status, holder, error in await db.execute_fetchall(
                DUE, (group, now, now, limit)
            ):
                if status == DeliveryStatus.IN_FLIGHT:  # its holder died or hung
                    error = EXPIRED_LEASE_ERROR.format(holder)
                token, retried = f"{prefix}-{event[0]}", retried + (attempts > 0)
                claims.append(Claim(StoredEvent(*event), group, consumer, attempts + 1, deadline,
                                    token, error))  # fmt: skip
                leases.append((consumer, deadline, token, error, group, event[0]))
            if leases:
                await db.executemany(LEASE_DUE, leases)
                await db.execute(
                    COUNT_DUE, {"group": group, "leased": len(leases), "retried": retried}
                )
        return claims

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
        return len(await self._write_one(sql, {"claims": held, "now": now_ms()}))

    async def extend_lease(self, claim: Claim, lease_ms: int) -> Claim | None:
        now = now_ms()
        sql = f"UPDATE {DELIVERIES} SET deadline_ms = ? WHERE {HELD} RETURNING deadline_ms"
        rows = await self._write_one(sql, (now + lease_ms, *_held(claim, now)))
        return claim._replace(lease_deadline_ms=rows[0][0]) if rows else None

    async def retry_later(self, claim: Claim, *, due_ms: int, error: str) -> bool:
        sql = f"""UPDATE {DELIVERIES} SET status = 'retrying', deadline_ms = ?, token = NULL,
                  last_error = ? WHERE {HELD} RETURNING 1"""
        return bool(await self._write_one(sql, (due_ms, error, *_held(claim, now_ms()))))

    async def dead_letter(self, claim: Claim, *, error: str, traceback: str = "") -> bool:
        now, e = now_ms(), claim.event
        async with self._transaction() as db:
            held = list(await db.execute_fetchall(
                f"""UPDATE {DELIVERIES} SET status = 'dead', deadline_ms = NULL, token = NULL,
                    last_error = ? WHERE {HELD} RETURNING attempts""", (error, *_held(claim, now))))  # fmt: skip
            if held:
                await db.execute(
                    f"INSERT OR REPLACE INTO {DEAD_LETTERS} ({DEAD_LETTER_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                    (e.position, e.event_id, e.event_type, e.version, e.source, e.timestamp_ms,
                     e.data, e.published_ms, claim.consumer_group, claim.consumer_name, held[0][0],
                     now, error, traceback),
                )  # fmt: skip
        return bool(held)

    async def is_idle(self, groups: Sequence[str] | None = None) -> bool:
        names = "1" if groups is None else f"g.name {IN_JSON}"
        sql = f"SELECT NOT EXISTS (SELECT 1 FROM {GROUPS} g WHERE {names} AND ({PENDING} OR {UNREAD}))"
        [(idle,)] = await self._query(sql, () if groups is None else (json.dumps(list(groups)),))
        return bool(idle)

    # -- dead-letter queue --------------------------------------------------------------------

    async def get_pending_events(
        self, consumer_group: str | None = None, *, event_ids: Sequence[str] | None = None
    ) -> list[DeadLetter]:
        where, params = _dlq_where(consumer_group, event_ids)
        sql = f"""SELECT {DEAD_LETTER_COLUMNS} FROM {DEAD_LETTERS} WHERE {where}
                  ORDER BY failed_ms, position, group_name"""
        return [DeadLetter(StoredEvent(*r[:8]), *r[8:]) for r in await self._query(sql, params)]

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
        where, params = _dlq_where(consumer_group, event_ids, event_types)
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
                [(consumer_group, *row[:3], row[7], row[8], now) for row in letters],
            )  # fmt: skip
            # trimmed from the log meanwhile: the DLQ copy becomes this group's copy
            await db.executemany(
                f"""INSERT OR REPLACE INTO {REVIVED} SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?
                    WHERE NOT EXISTS (SELECT 1 FROM {EVENTS} WHERE position = ?)""",
                [(*row[:8], consumer_group, row[0]) for row in letters],
            )  # fmt: skip
        return len(letters)

    async def discard_dead_letters(
        self, consumer_group: str, *, event_ids: Sequence[str] | None = None
    ) -> int:
        where, params = _dlq_where(consumer_group, event_ids)
        return len(
            await self._write_one(f"DELETE FROM {DEAD_LETTERS} WHERE {where} RETURNING 1", params)
        )

    # -- analysis and retention ---------------------------------------------------------------

    async def deliveries(
        self, group: str, *, after_position: int | None = None, limit: int | None = None
    ) -> list[DeliveryRecord]:
        columns = """position, event_id, event_type, group_name, consumer, status, attempts,
                     published_ms, first_delivered_ms, acked_ms, last_error"""
        sql, params = _limited(f"SELECT {columns} FROM {DELIVERIES} WHERE group_name = ? AND "
                               "position > ?", [group, after_position or 0], limit)  # fmt: skip
        status = {s.value: s for s in DeliveryStatus}  # a dict lookup per row, not the enum's
        return [
            DeliveryRecord(p, i, t, g, c, status[s], n, pub, first, acked, error)
            for p, i, t, g, c, s, n, pub, first, acked, error in await self._query(sql, params)
        ]

    async def stats(self) -> dict[str, Any]:
        rows = await self._query(
            f"""SELECT g.name, {LAG}, {PENDING},
                (SELECT COUNT(*) FROM {DEAD_LETTERS} WHERE group_name = g.name),
                g.delivered, g.acked, g.retried,
                (SELECT COUNT(*) FROM {CONSUMERS} WHERE group_name = g.name
                 AND {"expires_ms > :now" if self._schema >= 3 else "1"})
                FROM {GROUPS} g ORDER BY g.name""", {"now": now_ms()})  # fmt: skip
        keys = ("lag", "pending", "dlq", "delivered", "acked", "retried", "consumers")
        groups = {row[0]: dict(zip(keys, row[1:], strict=True)) for row in rows}
        [(total, kept)] = await self._query(
            f"""SELECT (SELECT COUNT(*) FROM {EVENTS}),
                COALESCE((SELECT value FROM {META} WHERE key = 'kept_unacked'), 0)""")  # fmt: skip
        pending, dlq = (sum(g[key] for g in groups.values()) for key in ("pending", "dlq"))
        store = {"backend": self.backend, "total_events": total, "pending_events": pending,
                 "dlq_events": dlq, "kept_unacked": kept}  # fmt: skip
        return {"store": store, "groups": groups}

    async def trim(
        self, *, before_ms: int | None = None, max_events: int | None = None
    ) -> TrimResult:
        check_limit(max_events)
        removed = kept = 0
        async with self._transaction() as db:
            newest = []  # the newest event beyond the max_events kept
            if max_events is not None:
                sql = f"SELECT position FROM {EVENTS} ORDER BY position DESC LIMIT 1 OFFSET ?"
                newest = [p for (p,) in await db.execute_fetchall(sql, (max_events,))]
            old, params = _where(("timestamp_ms < ?", before_ms),
                                 ("position <= ?", newest[0] if newest else None), join=" OR ")  # fmt: skip
            if params:
                [(count,)] = await db.execute_fetchall(
                    f"SELECT COUNT(*) FROM {EVENTS} WHERE {old}", params
                )
                await db.execute("DELETE FROM trim_doomed")
                removed = (await db.execute(
                    f"INSERT INTO trim_doomed SELECT position FROM {EVENTS} e WHERE ({old}) AND NOT {PROTECTED}",
                    params)).rowcount  # fmt: skip
                kept = count - removed
                doomed = "position IN (SELECT position FROM trim_doomed)"
                for (group,) in await db.execute_fetchall(f"SELECT name FROM {GROUPS}"):
                    await db.execute(
                        f"DELETE FROM {DELIVERIES} WHERE group_name = ? AND {doomed}", (group,)
                    )
                await db.execute(f"DELETE FROM {EVENTS} WHERE {doomed}")
                await db.execute(  # a revived copy is needed only while its delivery is unsettled
                    f"""DELETE FROM {REVIVED} WHERE NOT EXISTS (SELECT 1 FROM {DELIVERIES} d WHERE
                        d.group_name = {REVIVED}.group_name AND d.position = {REVIVED}.position
                        AND d.deadline_ms IS NOT NULL)""")  # fmt: skip
            await db.execute(f"INSERT OR REPLACE INTO {META} VALUES ('kept_unacked', ?)", (kept,))
        if removed:
            logger.info(
                "trimmed %d events from %s (%d kept: not yet acked)", removed, self.path, kept
            )
        return TrimResult(removed, kept)


def _held(claim: Claim, now: int) -> tuple[str, int, str, int]:
    return (claim.consumer_group, claim.event.position, claim.token, now)


def _where(*terms: tuple[str, Any], join: str = " AND ") -> tuple[str, list[Any]]:
    """The condition of the terms whose value is not None, and their parameters."""
    used = [(clause, value) for clause, value in terms if value is not None]
    return join.join(clause for clause, _ in used) or "1", [value for _, value in used]


def _limited(sql: str, params: list[Any], limit: int | None) -> tuple[str, list[Any]]:
    """In position order, with LIMIT only for a checked limit: never a negative one (no limit)."""
    check_limit(limit)
    if limit is None:
        return f"{sql} ORDER BY position", params
    return f"{sql} ORDER BY position LIMIT ?", [*params, limit]


def _types_json(event_types: Sequence[str] | None) -> str | None:
    """A type filter as JSON, or None when it matches every type (as base.matches reads it)."""
    return None if not event_types or WILDCARD in event_types else json.dumps(list(event_types))


def _dlq_where(
    group: str | None, event_ids: Sequence[str] | None, event_types: Sequence[str] | None = None
) -> tuple[str, list[Any]]:
    ids = None if event_ids is None else json.dumps(list(event_ids))
    return _where(("group_name = ?", group), (f"event_id {IN_JSON}", ids),
                  (f"event_type {IN_JSON}", _types_json(event_types)))  # fmt: skip


async def _connect(database: str | Path, *, uri: bool = False) -> aiosqlite.Connection:
    """An aiosqlite connection in autocommit mode whose worker thread is a daemon, and whose text
    reads never fail.

    aiosqlite's thread is not a daemon: a program that ends without close() (an exception before
    it) would wait for it forever. As a daemon it ends with the program, and the leases it held
    expire as after a crash (SPEC §7 "Exit"); tests/test_exit.py fails if aiosqlite changes this.
    Text that is not UTF-8 (written by another program) comes back as bytes instead of failing
    the whole query, so only that record goes to the DLQ (codec refuses it).
    """
    connection = aiosqlite.connect(database, uri=uri, isolation_level=None)
    thread = getattr(connection, "_thread", None)  # aiosqlite <= 0.22: private, but stable
    if thread is not None:
        thread.daemon = True
    db = await connection
    db.text_factory = _text_or_bytes
    return db


def _text_or_bytes(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw
