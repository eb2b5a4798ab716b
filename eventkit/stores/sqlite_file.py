"""One SQLite file opened as a store: its connections, schema steps and error messages.

One asyncio.Lock orders this process's writes; each is atomic across processes (a single
statement, or BEGIN IMMEDIATE). The writer (aiosqlite) runs large claims and acks and the rarer
writes (small ones go on the loop with the publishing connection when safe: write_one); a reader
serves queries, which WAL never makes wait for a writer. Every database call of the store
goes through query, write_one, transaction or append, which turn sqlite3 errors into eventkit's.

Publishing and the background checkpoints of the WAL are in sqlite_append.py (Appender).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from eventkit.errors import StoreError, StoreUnavailableError
from eventkit.stores.sqlite_append import WRITER_PRAGMAS, Appender, Row, text_or_bytes
from eventkit.stores.sqlite_sql import (
    DEAD_LETTERS,
    DELIVERIES,
    EVENTS,
    GROUPS,
    MIGRATIONS,
    SCHEMA_VERSION,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


class SQLiteFile:
    """The connections to one store file, opened read-write (WAL, schema up to date) or read-only
    (the file and its folder left exactly as they were)."""

    def __init__(self, path: Path, *, busy_timeout_ms: int, read_only: bool) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self.read_only = read_only
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._appender = Appender(
            path, busy_timeout_ms=busy_timeout_ms, lock=self._lock, error=self.error
        )
        #: the file's schema step once open (read-only stores may be older than SCHEMA_VERSION)
        self.schema = SCHEMA_VERSION

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
            for pragmas in (WRITER_PRAGMAS, ["query_only = ON"]):
                opened.append(db := await _connect(self.path))
                for pragma in [f"busy_timeout = {int(self.busy_timeout_ms)}", *pragmas]:
                    await db.execute(f"PRAGMA {pragma}")
                if len(opened) == 1:
                    await self._migrate(db)
            await self._appender.open()
        except BaseException as e:
            for db in opened:
                await db.close()
            if isinstance(e, sqlite3.Error):
                raise self.error(e) from e
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
            raise self.error(e) from e
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
        self.schema = version
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
        await self._appender.settle()  # queued appends are written first
        if reader is not None:
            await reader.close()
        async with self._lock:  # let a write in progress finish
            await self._appender.close()
            if writer is not None:
                await writer.close()

    # -- plumbing: every database call goes through one of these, which translate errors --------

    def error(self, e: sqlite3.Error) -> StoreError:
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

    def connection(self, reader: bool = False) -> aiosqlite.Connection:
        db = self._reader if reader else self._writer
        if db is None:
            raise StoreError(
                f"{self!r} is not open: await bus.initialize() (or store.open()) first"
            )
        return db

    async def query(self, sql: str, params: Any = ()) -> list[Any]:
        """A read on the reader connection: WAL readers never wait for the writer."""
        try:
            return list(await self.connection(reader=True).execute_fetchall(sql, params))
        except sqlite3.Error as e:
            raise self.error(e) from e

    def on_loop(self, work: Callable[[sqlite3.Connection], list[T] | None]) -> list[T] | None:
        """`work` on the loop's thread when that is safe, else None (see Appender.on_loop)."""
        found = self._appender.on_loop(work)
        if found:
            self._appender.committed(1 + len(found) // 8)
        return found

    async def write_one(self, sql: str, params: Any = (), *, small: bool = False) -> list[Any]:
        """One statement, atomic and durable by itself (autocommit), under the writer lock.

        A `small` one (a few rows: a heartbeat, the settle of a short batch) runs on the loop when
        Appender.on_loop says that is safe. Besides the thread round trip, that keeps the
        publishing connection's page cache: SQLite drops a connection's whole cache once another
        connection wrote, so an ack through the writer made the next publish read its pages
        again (benchmark row "publish->handler latency p50": 0.39 -> 0.21 ms here)."""
        db = self.connection()
        if small:
            found = self._appender.on_loop(lambda db: db.execute(sql, params).fetchall())
            if found is not None:
                self._appender.committed(1 + len(found) // 8)
                return found
        async with self._lock:
            try:
                found = list(await db.execute_fetchall(sql, params))
            except sqlite3.Error as e:
                raise self.error(e) from e
            self._appender.committed(1 + len(found) // 8)  # a claim or ack returns a row per event
            return found

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time per store, never shared between coroutines; BEGIN
        IMMEDIATE takes the file's write lock first, so what it reads no other process changes."""
        db = self.connection()
        async with self._lock:
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException as e:
                await db.rollback()  # queued after any call still running: the FIFO keeps order
                if isinstance(e, sqlite3.Error):
                    raise self.error(e) from e
                raise
            finally:
                self._appender.committed(1)

    async def append(self, rows: list[Row]) -> list[int]:
        """Store rows in one transaction, durably; their positions (see Appender.append)."""
        if not rows:
            return []
        if not self._appender.is_open:
            self.connection()  # not open: says so
            raise self.error(sqlite3.OperationalError("attempt to write a readonly database"))
        return await self._appender.append(rows)


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
    db.text_factory = text_or_bytes
    return db
