"""Soak: run eventkit for N minutes through outages, poison records and failing handlers; lose nothing.

    .venv/bin/python benchmarks/soak.py --backend sqlite|redis --minutes N
        [--rate EVENTS_PER_S] [--outage-every SECONDS] [--seed S] [--help for the rest]

Not a test: a bounded, self-cleaning program whose exit status says whether eventkit's promise held.

- One EventBus on a store of its own: a SQLite file in a temp dir (busy_timeout 500 ms), or a
  `redis-server` it starts on a free 127.0.0.1 port with AOF (`appendfsync always`, so what a publish
  acknowledged survives a SIGKILL).
- A publisher publishes sample events (eventkit.events) at --rate. A publish that raises is retried
  with the same event (same event_id; the store dedups by id) and counted as published once it returned.
- A poison injector writes records straight into the store, as the store would but broken (payload that
  is not JSON, version "abc", timestamp 10**16 or text, a stream entry missing a field on Redis), about
  every --poison-every seconds.
- Two consumer groups via subscribe_persistent: "indexer" (every type, always succeeds) and
  "thumbnails" (asset types; fails ~5 % of attempts at random, and always for ~1 % of events).
- Every --outage-every seconds the store goes away: redis-server is SIGKILLed and restarted on the same
  port 2-5 s later; on SQLite an outside process holds BEGIN IMMEDIATE for 3 s (> busy_timeout).
- A monitor calls get_stats, get_pending_events and wait_idle(timeout=0.5) every 2 s, outages included.

At the end it stops publishing, ends the outages, waits (bounded) for bus.wait_idle(), then prints per
group: expected, acked (the handlers' records, the store's delivery records and get_stats), in DLQ, lost
(neither handled-and-acked nor in the group's DLQ: must be 0), duplicates (handled more than once: allowed
by at-least-once), consumer restarts (stats["bus"]["consumer_restarts"]) and untyped errors seen (an
exception that is not an EventKitError escaping a call the soak made, or an exception/ERROR reported by
the event loop: must be 0). Exit status: 0 pass, 1 lost or untyped errors, 2 usage, 3 could not run.

Bounded and clean on every exit path: the run, the end of publishing (60 s) and the drain
(--drain-seconds) are each bounded, a watchdog thread ends the process if they overrun anyway,
and the temp dir, redis-server and any outside SQLite writer go in a finally/atexit (redis-server
also dies with the soak through PDEATHSIG). Ctrl-C / SIGTERM once: stop early, drain and report;
twice: abort. Everything talks to 127.0.0.1 only.

Harsher opt-ins: --nasty (handlers also raise CancelledError or an exception whose str() raises,
and now and then hang past their lease) and --poison-kinds ...,not-utf8 (text that is not UTF-8).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import collections
import contextlib
import logging
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import eventkit  # noqa: E402
from eventkit import EventBus, EventStoreConfig, create_event  # noqa: E402
from eventkit.codec import encode  # noqa: E402
from eventkit.errors import EventKitError  # noqa: E402
from eventkit.events import (  # noqa: E402
    AssetDiscoveredEvent,
    AssetProcessedEvent,
    BaseEvent,
    QualityAssessedEvent,
    WorkflowCompletedEvent,
    WorkflowFailedEvent,
    WorkflowStartedEvent,
)
from eventkit.stores.base import now_ms  # noqa: E402

T = TypeVar("T")

NAMESPACE = "soak"
INDEXER, THUMBNAILS = "indexer", "thumbnails"
THUMBNAIL_TYPES = (AssetDiscoveredEvent.event_type, AssetProcessedEvent.event_type)
#: group -> its event types ("*": all)
GROUPS: dict[str, tuple[str, ...]] = {INDEXER: ("*",), THUMBNAILS: THUMBNAIL_TYPES}
#: every poison kind per backend; defaults are all but the opt-in ones
POISON_KINDS = {
    "sqlite": ("json", "version", "timestamp", "timestamp-text", "not-utf8"),
    "redis": ("json", "version", "timestamp", "timestamp-text", "missing", "not-utf8"),
}
#: opt-in: undecodable text breaks the driver's read of a whole batch, not only one record
OPT_IN_POISON = ("not-utf8",)
LEASE_SECONDS = 5.0
RETRY_DELAY = 0.2
MAX_RETRY_DELAY = 2.0
MAX_RETRIES = 3
BUSY_TIMEOUT_MS = 500
#: a single public call that takes longer than this is "hung" (reported, then retried)
CALL_TIMEOUT = 60.0
PROBE_EVERY = 2.0
PROGRESS_EVERY = 10.0
#: after the run, how long publisher and poison injector may take to land their last record
FINISH_SECONDS = 60.0
CLOSE_SECONDS = 5.0

log = logging.getLogger("soak")


# -- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    backend: str
    minutes: float
    rate: float
    outage_every: float
    outage_seconds: float | None
    seed: int
    poison_every: float
    poison_kinds: tuple[str, ...]
    consumers: int
    fail_rate: float
    doomed_rate: float
    nasty: bool
    drain_seconds: float
    quiet: bool
    log_file: Path | None

    @property
    def run_seconds(self) -> float:
        return self.minutes * 60


def parse_args(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(
        description="Soak eventkit through store outages, poison records and failing handlers.",
        epilog="Exit status: 0 pass, 1 lost > 0 or untyped errors > 0, 2 usage, 3 could not run.",
    )
    p.add_argument("--backend", choices=("sqlite", "redis"), required=True)
    p.add_argument(
        "--minutes", type=float, required=True, help="how long to publish (fractions ok)"
    )
    p.add_argument("--rate", type=float, default=50.0, help="events published per second (50)")
    p.add_argument("--outage-every", type=float, default=60.0, metavar="SECONDS",
                   help="a store outage every SECONDS (60); 0: none")  # fmt: skip
    p.add_argument("--outage-seconds", type=float, default=None, metavar="SECONDS",
                   help="outage length (Redis: random 2-5 s; SQLite: lock held 3 s)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--poison-every", type=float, default=10.0, metavar="SECONDS",
                   help="mean seconds between poison records (10); 0: none")  # fmt: skip
    p.add_argument("--poison-kinds", default=None, metavar="K,K",
                   help="sqlite: " + ",".join(POISON_KINDS["sqlite"]) + "; redis: "
                   + ",".join(POISON_KINDS["redis"]) + f" (default: all but {','.join(OPT_IN_POISON)})")  # fmt: skip
    p.add_argument("--consumers", type=int, default=2, help="members per group (2)")
    p.add_argument("--fail-rate", type=float, default=0.05,
                   help="share of thumbnails attempts that fail at random (0.05)")  # fmt: skip
    p.add_argument("--doomed-rate", type=float, default=0.01,
                   help="share of asset events whose thumbnail always fails (0.01)")  # fmt: skip
    p.add_argument("--nasty", action="store_true",
                   help="handler failures also raise CancelledError / an exception whose str() "
                   "raises, and a few attempts hang past their lease")  # fmt: skip
    p.add_argument("--drain-seconds", type=float, default=90.0,
                   help="at most this long to wait for wait_idle() at the end (90)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--log-file", type=Path, default=None,
                   help="also write every WARNING+ log record here")  # fmt: skip
    a = p.parse_args(argv)
    kinds = _poison_kinds(p, a.backend, a.poison_kinds)
    for name, value, low in (("--minutes", a.minutes, 0.0), ("--rate", a.rate, 0.0)):
        if not value > low or value != value or value == float("inf"):
            p.error(f"{name} must be a finite number > {low:g}")
    for name, value in (("--outage-every", a.outage_every), ("--poison-every", a.poison_every),
                        ("--drain-seconds", a.drain_seconds)):  # fmt: skip
        if not 0 <= value < float("inf"):
            p.error(f"{name} must be a finite number >= 0")
    if a.outage_seconds is not None and not 0 < a.outage_seconds <= 60:
        p.error("--outage-seconds must be in (0, 60]")
    if not 1 <= a.consumers <= 16:
        p.error("--consumers must be in 1..16")
    if not (0 <= a.fail_rate < 1 and 0 <= a.doomed_rate < 1):
        p.error("--fail-rate and --doomed-rate must be in [0, 1)")
    return Settings(
        a.backend, a.minutes, a.rate, a.outage_every, a.outage_seconds, a.seed, a.poison_every,
        kinds, a.consumers, a.fail_rate, a.doomed_rate, a.nasty, a.drain_seconds, a.quiet,
        a.log_file,
    )  # fmt: skip


def _poison_kinds(p: argparse.ArgumentParser, backend: str, given: str | None) -> tuple[str, ...]:
    known = POISON_KINDS[backend]
    if given is None:
        return tuple(k for k in known if k not in OPT_IN_POISON)
    kinds = tuple(k.strip() for k in given.split(",") if k.strip())
    unknown = [k for k in kinds if k not in known]
    if unknown or not kinds:
        p.error(f"--poison-kinds for {backend}: use some of {', '.join(known)}")
    return kinds


# -- cleanup on every exit path ---------------------------------------------------------------

_cleanups: list[Callable[[], None]] = []
_cleanup_lock = threading.Lock()


def on_exit(fn: Callable[[], None]) -> None:
    _cleanups.append(fn)


def run_cleanups() -> None:
    """Idempotent; safe from the watchdog thread, atexit and the main finally."""
    with _cleanup_lock:
        while _cleanups:
            fn = _cleanups.pop()
            try:
                fn()
            except Exception as e:  # keep cleaning up
                print(f"soak: cleanup step failed: {type(e).__name__}: {e}", file=sys.stderr)


atexit.register(run_cleanups)


def start_watchdog(seconds: float, code: int = 3) -> threading.Timer:
    """Whatever happens (a hung call, a non-daemon thread at exit), the process ends in time."""

    def fire() -> None:
        print(f"soak: watchdog: still running after {seconds:.0f} s; cleaning up and exiting",
              file=sys.stderr, flush=True)  # fmt: skip
        run_cleanups()
        sys.stdout.flush()
        os._exit(code)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def kill_process(process: subprocess.Popen[bytes] | None, *, graceful: bool = True) -> None:
    if process is None or process.poll() is not None:
        return
    if graceful:
        process.terminate()
        try:
            process.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    process.wait()


# -- the outside world: redis-server, an outside SQLite writer ----------------------------------


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (as tests/redis_server.py does)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A redis-server on 127.0.0.1 with AOF fsynced on every write; SIGKILLed and restarted on the
    same port and dir. Started from the main thread (never blocks the loop for long) and, where
    setpriv exists, with PDEATHSIG so it dies with this process even on a SIGKILL of the soak."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
        self.dir = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self.args = [*prefix, binary, "--bind", "127.0.0.1", "--port", str(self.port),
                     "--dir", str(directory), "--save", "", "--appendonly", "yes",
                     "--appendfsync", "always", "--daemonize", "no", "--protected-mode", "yes"]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.dir / "redis.log", "ab") as out:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)

    async def ready(self, timeout: float = 30.0) -> None:
        """Wait until it answers PING (it has loaded its AOF by then)."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                tail = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited with {self.process.returncode}:\n{tail}")
            if await _redis_ping(self.port):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer in {timeout} s"
                )
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final AOF rewrite; what was fsynced is what survives."""
        kill_process(self.process, graceful=False)

    def stop(self) -> None:
        kill_process(self.process)


async def _redis_ping(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 0.5)).startswith(b"+PONG")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


#: the outside writer: takes SQLite's write lock, says so, holds it, lets go
LOCKER = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
db.close()
"""


class SQLiteLocker:
    """Another process holding BEGIN IMMEDIATE on the store's file past the store's busy_timeout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: asyncio.subprocess.Process | None = None
        on_exit(self._kill)

    async def hold(self, seconds: float) -> float:
        """Seconds the lock was actually held (from the moment it was taken)."""
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOCKER, str(self.path), str(seconds),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = await self.process.stdout.readline()
        locked = time.monotonic()
        _, err = await self.process.communicate()
        if line.strip() != b"locked" or self.process.returncode != 0:
            raise RuntimeError(f"outside writer failed ({self.process.returncode}): {err.decode()}")
        return time.monotonic() - locked

    def _kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


# -- bookkeeping ------------------------------------------------------------------------------


class CallFailed(Exception):
    """A guarded call raised (or hung); already counted."""


@dataclass
class Errors:
    """What escaped the calls the soak made, and what the loop and the logs reported."""

    #: (where, exception type) -> count, first message: not an EventKitError (must stay empty)
    untyped: dict[tuple[str, str], list[Any]] = field(default_factory=dict)
    #: (where, exception type) -> count: EventKitErrors (expected during outages)
    typed: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    #: where -> count of calls that did not return within CALL_TIMEOUT
    hung: collections.Counter[str] = field(default_factory=collections.Counter)
    #: wait_idle(timeout=t) calls that took longer than t + 1 s
    wait_idle_overruns: list[float] = field(default_factory=list)
    #: eventkit log records at ERROR or above: (logger, exception type, message)
    error_records: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: collections.Counter[str] = field(default_factory=collections.Counter)

    def untyped_count(self) -> int:
        return sum(count for count, _ in self.untyped.values())

    def add_untyped(self, where: str, error: BaseException | str, message: str = "") -> None:
        kind = error if isinstance(error, str) else type(error).__name__
        text = message or (_safe_str(error) if not isinstance(error, str) else "")
        entry = self.untyped.setdefault((where, kind), [0, text[:300]])
        entry[0] += 1


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return "<str() raised>"


async def guarded(
    errors: Errors, where: str, call: Awaitable[T], timeout: float = CALL_TIMEOUT
) -> T:
    """Await a public eventkit call; count what escapes it by kind, then raise CallFailed."""
    try:
        async with asyncio.timeout(timeout) as scope:
            return await call
    except TimeoutError as e:
        if scope.expired():
            errors.hung[where] += 1
        else:
            errors.add_untyped(where, e)
        raise CallFailed(where) from e
    except EventKitError as e:
        errors.typed[(where, type(e).__name__)] += 1
        raise CallFailed(where) from e
    except Exception as e:
        errors.add_untyped(where, e)
        raise CallFailed(where) from e


class Watch(logging.Handler):
    """Counts WARNING records by logger, keeps ERROR records; the event loop's errors are untyped."""

    def __init__(self, errors: Errors) -> None:
        super().__init__(logging.WARNING)
        self.errors = errors

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("soak"):
            return
        kind = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else "-"
        if record.levelno < logging.ERROR:
            self.errors.warnings[record.name] += 1
        elif record.name.startswith("asyncio"):
            self.errors.add_untyped("event loop log", kind, _message(record))
        else:
            self.errors.error_records.append((record.name, kind, _message(record)[:300]))


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:
        return str(record.msg)


def loop_exception_handler(
    errors: Errors,
) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        message = str(context.get("message", ""))
        if isinstance(error, EventKitError):
            errors.error_records.append(("event loop", type(error).__name__, message[:300]))
            return
        if error is not None:  # "Task exception was never retrieved", a callback that raised
            task = context.get("task") or context.get("future")
            name = task.get_name() if isinstance(task, asyncio.Task) else ""
            errors.add_untyped(f"event loop: {message[:60]}", error,
                               f"{name}: {_safe_str(error)}" if name else _safe_str(error))  # fmt: skip
            return
        # an error report with no exception, e.g. redis-py's "Unclosed Pipeline client": a
        # pipeline dropped mid-execute (cancelled, or it raised), its connection leaked
        detail = message
        stack = getattr(context.get("client"), "command_stack", None)
        if stack:
            detail += f" (queued: {_commands(stack)})"
        errors.add_untyped(f"event loop: {message[:60]}", "no exception", detail)

    return handle


def _commands(stack: Any) -> str:
    """The command names a redis-py pipeline had queued (EVALSHA shows its script's keys)."""
    names = []
    try:
        for command in list(stack)[:6]:
            args = command[0] if isinstance(command, tuple) else command.args
            head = [a.decode() if isinstance(a, bytes) else str(a) for a in args[:4]]
            names.append(" ".join(h[:40] for h in head))
    except Exception:
        return "?"
    return "; ".join(names)


@dataclass
class Recorder:
    """One group's handler: what it completed (handler returned), per event id."""

    group: str
    completed: collections.Counter[str] = field(default_factory=collections.Counter)
    attempts: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: int = 0
    poison_handled: set[str] = field(default_factory=set)


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ of this exception raises")


@dataclass
class Soak:
    settings: Settings
    bus: EventBus
    errors: Errors
    redis: RedisProcess | None = None
    sqlite_path: Path | None = None
    stop_run: asyncio.Event = field(default_factory=asyncio.Event)
    stop_work: asyncio.Event = field(default_factory=asyncio.Event)
    #: confirmed: publish returned; attempted: tried at least once (maybe stored, maybe not)
    published: list[str] = field(default_factory=list)
    attempted: set[str] = field(default_factory=set)
    types: dict[str, str] = field(default_factory=dict)
    publish_failures: int = 0
    longest_publish: float = 0.0
    poison: dict[str, str] = field(default_factory=dict)  # event_id -> kind
    poison_attempted: set[str] = field(default_factory=set)
    doomed: set[str] = field(default_factory=set)
    recorders: dict[str, Recorder] = field(default_factory=dict)
    outages: list[tuple[float, float]] = field(default_factory=list)  # (at, seconds down)
    #: name -> (first seen not running at, why)
    dead_consumers: dict[str, tuple[float, str]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    work_deadline: float = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def sleep(self, seconds: float, until: asyncio.Event) -> bool:
        """Sleep, or less if `until` is set; True if it was set."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), max(0.0, seconds))
        return until.is_set()


# -- events and poison ------------------------------------------------------------------------


def make_event(rng: random.Random, i: int) -> BaseEvent:
    r = rng.random()
    asset = f"asset-{i}"
    if r < 0.5:
        return create_event(AssetDiscoveredEvent, source="soak", asset_id=asset,
                            file_path=f"/data/img-{i}.jpg", media_type="image",
                            file_size=1000 + i, metadata={"width": 1920, "n": i})  # fmt: skip
    if r < 0.7:
        return create_event(AssetProcessedEvent, source="soak", asset_id=asset,
                            output_path=f"/out/img-{i}.webp", processing_time_ms=rng.uniform(1, 99),
                            operations=["resize", "strip"])  # fmt: skip
    if r < 0.8:
        return create_event(QualityAssessedEvent, source="soak", asset_id=asset,
                            score=round(rng.random(), 3), issues=["blur"] if r < 0.72 else [])  # fmt: skip
    if r < 0.9:
        return create_event(WorkflowStartedEvent, source="soak", workflow_id=f"wf-{i}",
                            workflow_type="ingest", input_data={"i": i})  # fmt: skip
    if r < 0.95:
        return create_event(WorkflowCompletedEvent, source="soak", workflow_id=f"wf-{i}",
                            duration_ms=rng.uniform(10, 999), output={"ok": True})  # fmt: skip
    return create_event(WorkflowFailedEvent, source="soak", workflow_id=f"wf-{i}",
                        error_message="simulated", error_type="SoakError")  # fmt: skip


def poison_fields(rng: random.Random, i: int, kind: str) -> tuple[str, str, list[tuple[str, Any]]]:
    """(event_id, event_type, [(field, value)...] in the store's field order), broken as `kind` says."""
    e = encode(make_event(rng, i))
    values: dict[str, Any] = {"event_id": e.event_id, "event_type": e.event_type,
                              "version": e.version, "source": e.source,
                              "timestamp_ms": e.timestamp_ms, "data": e.data}  # fmt: skip
    if kind == "json":
        values["data"] = e.data[: max(1, len(e.data) // 2)]  # cut short: not JSON
    elif kind == "version":
        values["version"] = "abc"
    elif kind == "timestamp":
        values["timestamp_ms"] = 10**16  # year ~318857: past datetime's range
    elif kind == "timestamp-text":
        values["timestamp_ms"] = "not-a-time"
    elif kind == "missing":
        del values[rng.choice(("source", "version", "timestamp_ms", "data"))]
    elif kind == "not-utf8":
        values["data"] = b'{"asset_id": "\xff\xfe"}'
    return e.event_id, e.event_type, list(values.items())


def sqlite_insert(path: Path, fields: list[tuple[str, Any]]) -> None:
    """One row in the events table, as SQLiteEventStore.append writes it, through a connection of
    its own (waits out an outside writer's lock)."""
    values = dict(fields)
    data_sql = "CAST(? AS TEXT)" if isinstance(values["data"], bytes) else "?"
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute(
            "INSERT INTO events (event_id, event_type, version, source, timestamp_ms, data, "
            f"published_ms) VALUES (?, ?, ?, ?, ?, {data_sql}, ?)",
            (values["event_id"], values["event_type"], values["version"], values["source"],
             values["timestamp_ms"], values["data"], now_ms()),
        )  # fmt: skip
    except sqlite3.IntegrityError:
        pass  # an earlier try landed: event_id is unique
    finally:
        db.close()


#: XADD as RedisEventStore's append script does (event_id -> entry id in the ids hash, once)
REDIS_INSERT = """
local id = redis.call('HGET', KEYS[2], ARGV[1])
if id then return id end
id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('HSET', KEYS[2], ARGV[1], id)
return id
"""


def redis_keys() -> tuple[str, str]:
    try:
        from eventkit.stores.redis import _Keys

        keys = _Keys(NAMESPACE)
        return keys.events, keys.ids
    except (ImportError, AttributeError):
        return f"{NAMESPACE}:events", f"{NAMESPACE}:ids"


async def redis_insert(port: int, event_id: str, fields: list[tuple[str, Any]]) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1)
    try:
        flat = [part for pair in fields for part in pair]
        await client.eval(REDIS_INSERT, 2, *redis_keys(), event_id, *flat)
    finally:
        await client.aclose()


# -- the actors -------------------------------------------------------------------------------


async def publisher(soak: Soak) -> None:
    rate, loop = soak.settings.rate, asyncio.get_running_loop()
    rng = random.Random(soak.settings.seed)
    next_at, i = loop.time(), 0
    while not soak.stop_work.is_set():
        event = make_event(rng, i)
        i += 1
        if event.event_type in THUMBNAIL_TYPES and rng.random() < soak.settings.doomed_rate:
            soak.doomed.add(event.event_id)
        soak.attempted.add(event.event_id)
        soak.types[event.event_id] = event.event_type
        if not await publish_until_done(soak, event):
            return
        soak.published.append(event.event_id)
        next_at += 1 / rate
        now = loop.time()
        if next_at < now - 1:  # fell behind (an outage): go on at the rate, no burst
            next_at = now
        await soak.sleep(next_at - now, soak.stop_work)


async def publish_until_done(soak: Soak, event: BaseEvent) -> bool:
    """Publish the same event until it returns (True), or give up after the work deadline."""
    began, delay = time.monotonic(), 0.05
    while True:
        try:
            await guarded(soak.errors, "publish", soak.bus.publish(event))
        except CallFailed:
            soak.publish_failures += 1
            if soak.work_deadline and time.monotonic() > soak.work_deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
            continue
        soak.longest_publish = max(soak.longest_publish, time.monotonic() - began)
        return True


async def poisoner(soak: Soak) -> None:
    s = soak.settings
    if not s.poison_every:
        return
    rng = random.Random(s.seed + 1)
    kinds: list[str] = []
    i = 0
    # spaced 0.5-1.5x the mean apart: a run of k means covers every kind even when short
    while not await soak.sleep(rng.uniform(0.5, 1.5) * s.poison_every, soak.stop_work):
        if not kinds:  # every kind once per round, in a random order
            kinds = list(s.poison_kinds)
            rng.shuffle(kinds)
        kind = kinds.pop()
        event_id, event_type, fields = poison_fields(rng, 10_000_000 + i, kind)
        i += 1
        soak.poison_attempted.add(event_id)
        soak.types[event_id] = event_type
        if await inject(soak, event_id, fields):
            soak.poison[event_id] = kind


async def inject(soak: Soak, event_id: str, fields: list[tuple[str, Any]]) -> bool:
    delay = 0.1
    while True:
        try:
            if soak.redis is not None:
                await asyncio.wait_for(redis_insert(soak.redis.port, event_id, fields), 10)
            else:
                assert soak.sqlite_path is not None
                await asyncio.wait_for(
                    asyncio.to_thread(sqlite_insert, soak.sqlite_path, fields), 60
                )
            return True
        except Exception as e:  # the store is down: not eventkit's doing, try again
            log.debug("poison write failed: %s", e)
            if soak.work_deadline and time.monotonic() > soak.work_deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)


async def outages(soak: Soak) -> None:
    s = soak.settings
    if not s.outage_every:
        return
    rng = random.Random(s.seed + 2)
    next_at = s.outage_every
    # none in the run's last second: it would only delay the drain
    while next_at < s.run_seconds - 1 and not await soak.sleep(
        next_at - soak.elapsed(), soak.stop_run
    ):
        at = soak.elapsed()
        if soak.redis is not None:
            down = s.outage_seconds or rng.uniform(2, 5)
            soak.redis.kill()
            await asyncio.sleep(down)
            soak.redis.start()
            await soak.redis.ready()
            held = soak.elapsed() - at
        else:
            assert soak.sqlite_path is not None
            held = await SQLiteLocker(soak.sqlite_path).hold(s.outage_seconds or 3.0)
        soak.outages.append((at, held))
        say(soak, f"outage #{len(soak.outages)} at {at:.0f} s: store unavailable {held:.1f} s")
        next_at += s.outage_every


async def monitor(soak: Soak) -> None:
    """Public read calls during outages too: they must raise typed errors, and wait_idle stays bounded."""
    last_progress = 0.0
    while not await soak.sleep(PROBE_EVERY, soak.stop_work):
        note_dead_consumers(soak)
        with contextlib.suppress(CallFailed):
            await guarded(soak.errors, "get_stats", soak.bus.get_stats())
        for group in GROUPS:
            with contextlib.suppress(CallFailed):
                await guarded(soak.errors, "get_pending_events", soak.bus.get_pending_events(group))
        began = time.monotonic()
        with contextlib.suppress(CallFailed):
            await guarded(soak.errors, "wait_idle", soak.bus.wait_idle(timeout=0.5))
        took = time.monotonic() - began
        if took > 1.5:
            soak.errors.wait_idle_overruns.append(took)
        if soak.elapsed() - last_progress >= PROGRESS_EVERY:
            last_progress = soak.elapsed()
            acked = " ".join(f"{g}={len(r.completed)}" for g, r in soak.recorders.items())
            say(soak, f"t={soak.elapsed():4.0f} s published={len(soak.published)} "
                f"poison={len(soak.poison)} handled {acked} outages={len(soak.outages)} "
                f"untyped={soak.errors.untyped_count()} dead-consumers={len(soak.dead_consumers)}")  # fmt: skip


def note_dead_consumers(soak: Soak) -> None:
    """A peek at the bus's consumer tasks (private, best effort): which ended by themselves. Reading
    a dead task's exception keeps asyncio from reporting it as never retrieved, so it is counted
    here instead: untyped unless it is an EventKitError."""
    for name, consumer in list(getattr(soak.bus, "_consumers", {}).items()):
        running = getattr(consumer, "running", None)
        if running is not False or name in soak.dead_consumers:
            continue
        task = getattr(consumer, "_task", None)
        error = None
        if isinstance(task, asyncio.Task) and task.done() and not task.cancelled():
            error = task.exception()
        why = f"{type(error).__name__}: {_safe_str(error)}" if error is not None else "no exception"
        soak.dead_consumers[name] = (soak.elapsed(), why)
        if error is not None and not isinstance(error, EventKitError):
            soak.errors.add_untyped("consumer task (ended)", error)
        say(soak, f"consumer task {name} is not running at t={soak.elapsed():.0f} s: {why}")


def say(soak: Soak, text: str) -> None:
    if not soak.settings.quiet:
        print(f"[soak] {text}", file=sys.stderr, flush=True)


def make_handler(soak: Soak, group: str) -> Callable[[BaseEvent], Awaitable[None]]:
    rec = soak.recorders[group] = Recorder(group)
    rng = random.Random(soak.settings.seed * 1000 + len(soak.recorders))
    s = soak.settings

    async def handle(event: BaseEvent) -> None:
        event_id = event.event_id
        rec.attempts[event_id] += 1
        if event_id in soak.poison or event_id in soak.poison_attempted:
            rec.poison_handled.add(event_id)
        await asyncio.sleep(rng.uniform(0, 0.004))  # some work, and a yield
        if group == THUMBNAILS:
            if event_id in soak.doomed:
                rec.failures += 1
                raise RuntimeError(f"thumbnail of {event_id} failed: corrupt image (always)")
            if rng.random() < s.fail_rate:
                rec.failures += 1
                await misbehave(rng, s.nasty, event_id)
        rec.completed[event_id] += 1

    return handle


async def misbehave(rng: random.Random, nasty: bool, event_id: str) -> None:
    r = rng.random() if nasty else 0.0
    if r > 0.9:
        await asyncio.sleep(LEASE_SECONDS + 1)  # hangs past its lease, then fails anyway
    if r > 0.7:
        raise asyncio.CancelledError("handler cancelled itself")
    if r > 0.5:
        raise BadStr()
    raise RuntimeError(f"thumbnail of {event_id} failed at random")


# -- the run ----------------------------------------------------------------------------------


async def soak_run(settings: Settings, workdir: Path) -> int:
    errors = Errors()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler(errors))
    watch = Watch(errors)
    logging.getLogger().addHandler(watch)
    redis = sqlite_path = None
    if settings.backend == "redis":
        redis = RedisProcess(workdir)
        on_exit(redis.stop)
        redis.start()
        await redis.ready()
        config = EventStoreConfig(backend="redis", redis_url=redis.url, namespace=NAMESPACE,
                                  max_events=None, trim_interval_hours=None)  # fmt: skip
    else:
        sqlite_path = workdir / "soak.db"
        config = EventStoreConfig(backend="sqlite", path=sqlite_path, namespace=NAMESPACE,
                                  max_events=None, trim_interval_hours=None,
                                  busy_timeout_ms=BUSY_TIMEOUT_MS)  # fmt: skip
    bus = EventBus(config)
    soak = Soak(settings, bus, errors, redis, sqlite_path)
    install_signals(soak)
    try:
        await guarded(errors, "initialize", bus.initialize())
        for group, types in GROUPS.items():
            handler = make_handler(soak, group)
            for n in range(settings.consumers):
                await guarded(errors, "subscribe_persistent", bus.subscribe_persistent(
                    list(types), group, f"{group}-{n}", handler, batch_size=10,
                    max_retries=MAX_RETRIES, lease_seconds=LEASE_SECONDS, retry_delay=RETRY_DELAY,
                    max_retry_delay=MAX_RETRY_DELAY))  # fmt: skip
        drain = await run_and_drain(soak)
        final = await collect_all(soak)
    finally:
        with contextlib.suppress(CallFailed):
            await guarded(errors, "close", bus.close(timeout=CLOSE_SECONDS), CLOSE_SECONDS + 20)
        loop.remove_signal_handler(signal.SIGINT)
        loop.remove_signal_handler(signal.SIGTERM)
    # tasks dropped unretrieved show up at collection; the loop's handler counts them
    import gc

    gc.collect()
    await asyncio.sleep(0)
    logging.getLogger().removeHandler(watch)
    return report(soak, drain, final)


def install_signals(soak: Soak) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    seen = {"count": 0}

    def on_signal(signum: int) -> None:
        seen["count"] += 1
        if seen["count"] == 1:
            print(f"\n[soak] {signal.Signals(signum).name}: stopping early, draining and reporting "
                  "(again to abort)", file=sys.stderr, flush=True)  # fmt: skip
            soak.stop_run.set()
        elif main is not None:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)


@dataclass
class Drain:
    idle: bool
    seconds: float
    run_seconds: float


async def run_and_drain(soak: Soak) -> Drain:
    s = soak.settings
    actors = [asyncio.create_task(publisher(soak), name="soak-publisher"),
              asyncio.create_task(poisoner(soak), name="soak-poisoner")]  # fmt: skip
    probe = asyncio.create_task(monitor(soak), name="soak-monitor")
    outage = asyncio.create_task(outages(soak), name="soak-outages")

    # an outage that cannot end (redis-server will not restart) ends the run at once
    def outage_done(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            soak.stop_run.set()

    outage.add_done_callback(outage_done)
    await soak.sleep(s.run_seconds, soak.stop_run)
    run_seconds = soak.elapsed()
    soak.stop_run.set()  # no new outage; the one under way ends
    soak.work_deadline = time.monotonic() + FINISH_SECONDS
    soak.stop_work.set()  # no new event or poison; the ones under way land
    say(soak, f"run over at {run_seconds:.0f} s: ending outages, finishing publishes, draining")
    await asyncio.wait({outage}, timeout=60)
    await asyncio.wait(actors, timeout=FINISH_SECONDS + 5)
    await asyncio.wait({probe}, timeout=CALL_TIMEOUT + 5)
    tasks = [outage, *actors, probe]
    for task in tasks:
        if not task.done():
            say(soak, f"{task.get_name()} did not finish in time: cancelled")
            task.cancel()
    for task, result in zip(
        tasks, await asyncio.gather(*tasks, return_exceptions=True), strict=True
    ):
        if isinstance(result, Exception):  # the soak's own machinery broke: no valid result
            raise RuntimeError(
                f"{task.get_name()} failed: {type(result).__name__}: {result}"
            ) from result
    began = time.monotonic()
    idle = False
    while not idle and time.monotonic() - began < s.drain_seconds:
        left = s.drain_seconds - (time.monotonic() - began)
        try:
            idle = await guarded(
                soak.errors,
                "wait_idle",
                soak.bus.wait_idle(timeout=min(10.0, left)),
                min(10.0, left) + 5,
            )
        except CallFailed:
            await asyncio.sleep(0.5)
    note_dead_consumers(soak)
    return Drain(idle, time.monotonic() - began, run_seconds)


# -- the report -------------------------------------------------------------------------------


@dataclass
class GroupResult:
    expected: set[str]
    acked_store: set[str] | None  # delivery records with status acked (None: unreadable)
    dlq: set[str] | None  # event ids in the group's DLQ (None: unreadable)
    dlq_errors: dict[str, str]  # event id -> last error
    statuses: dict[str, str]  # event id -> delivery status, as the store records it
    stats: dict[str, Any]
    dlq_count: int | None
    lost: list[str]


async def collect(soak: Soak, group: str, stats: dict[str, Any]) -> GroupResult:
    types = GROUPS[group]
    ids = [*soak.published, *soak.poison]
    expected = {i for i in ids if "*" in types or soak.types[i] in types}
    statuses: dict[str, str] = {}
    acked: set[str] | None = None
    with contextlib.suppress(CallFailed):
        records = await guarded(soak.errors, "store.deliveries", soak.bus.store.deliveries(group))
        statuses = {r.event_id: str(getattr(r.status, "value", r.status)) for r in records}
        acked = {i for i, status in statuses.items() if status == "acked"}
    dlq: set[str] | None = None
    dlq_errors: dict[str, str] = {}
    with contextlib.suppress(CallFailed):
        letters = await guarded(soak.errors, "store.get_pending_events",
                                soak.bus.store.get_pending_events(group))  # fmt: skip
        dlq_errors = {d.event_id: d.last_error for d in letters}
        dlq = set(dlq_errors)
    dlq_count = None
    with contextlib.suppress(CallFailed):
        dlq_count = await guarded(
            soak.errors, "get_pending_events", soak.bus.get_pending_events(group)
        )
    completed = soak.recorders[group].completed
    in_dlq = dlq if dlq is not None else {i for i, st in statuses.items() if st == "dead"}
    handled_and_acked = {i for i in completed if acked is None or i in acked}
    lost = sorted(expected - handled_and_acked - in_dlq, key=lambda i: soak.types.get(i, ""))
    group_stats = stats.get("groups", {}).get(group, {})
    return GroupResult(expected, acked, dlq, dlq_errors, statuses, group_stats, dlq_count, lost)


@dataclass
class Final:
    stats: dict[str, Any]
    groups: dict[str, GroupResult]


async def collect_all(soak: Soak) -> Final:
    stats: dict[str, Any] = {}
    with contextlib.suppress(CallFailed):
        stats = await guarded(soak.errors, "get_stats", soak.bus.get_stats())
    return Final(stats, {group: await collect(soak, group, stats) for group in GROUPS})


def report(soak: Soak, drain: Drain, final: Final) -> int:
    s, errors = soak.settings, soak.errors
    out: list[str] = []
    restarts: Any = final.stats.get("bus", {}).get("consumer_restarts") if final.stats else "?"
    if restarts is None:
        restarts = "0  (stats['bus'] has no consumer_restarts: this eventkit does not count them)"
    untyped = errors.untyped_count()
    lost = sum(len(g.lost) for g in final.groups.values())
    outage = f"outage every {s.outage_every:g} s" if s.outage_every else "no outages"
    poison = f"poison every ~{s.poison_every:g} s" if s.poison_every else "no poison"
    out.append(f"eventkit soak · {s.backend} · {s.minutes:g} min · {s.rate:g} events/s · {outage} · "
               f"{poison} · {s.consumers} consumers per group · seed {s.seed}"
               + (" · nasty handlers" if s.nasty else ""))  # fmt: skip
    out.append(f"eventkit from {Path(eventkit.__file__).parent}")
    out.append(f"run {drain.run_seconds:.0f} s, then drain {drain.seconds:.1f} s "
               f"(wait_idle {'True' if drain.idle else 'still False'})")  # fmt: skip
    out += summary_lines(soak)
    out.append("")
    out += group_table(soak, final)
    out.append("")
    out.append(f"{'consumer restarts':<22}{restarts!s:>6}")
    out.append(f"{'untyped errors seen':<22}{untyped:>6}")
    out.append(f"{'lost':<22}{lost:>6}")
    out += details(soak, final)
    ok = lost == 0 and untyped == 0
    out.append("")
    out.append("RESULT: PASS" if ok else f"RESULT: FAIL (lost {lost}, untyped errors {untyped})")
    print("\n".join(out), flush=True)
    return 0 if ok else 1


def summary_lines(soak: Soak) -> list[str]:
    s = soak.settings
    if s.backend == "redis":
        how = "redis-server SIGKILLed, restarted on AOF; down"
    else:
        how = f"outside writer held BEGIN IMMEDIATE (store busy_timeout {BUSY_TIMEOUT_MS} ms)"
    held = ", ".join(f"{d:.1f}" for _, d in soak.outages[:12]) + (
        " ..." if len(soak.outages) > 12 else ""
    )
    unconfirmed = len(soak.attempted - set(soak.published))
    kinds = collections.Counter(soak.poison.values())
    return [
        f"{'outages':<22}{len(soak.outages):>6}  ({how}: {held or '-'} s)",
        f"{'published':<22}{len(soak.published):>6}  (publish calls that raised, retried with the "
        f"same event: {soak.publish_failures}; longest publish {soak.longest_publish:.1f} s; "
        f"never confirmed: {unconfirmed})",
        f"{'poison injected':<22}{len(soak.poison):>6}  ("
        + (", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) or "-")
        + (f"; {len(soak.poison_attempted) - len(soak.poison)} not written" if len(soak.poison_attempted) > len(soak.poison) else "")
        + ")",
    ]  # fmt: skip


def group_table(soak: Soak, final: Final) -> list[str]:
    head = ("group", "expected", "acked", "acked(store)", "acked(stats)", "in DLQ", "lost",
            "dup", "delivered", "retried")  # fmt: skip
    rows = [head]
    for group, g in final.groups.items():
        completed = soak.recorders[group].completed
        acked = {
            i
            for i in completed
            if i in g.expected and (g.acked_store is None or i in g.acked_store)
        }
        dup = sum(1 for i, n in completed.items() if n > 1)
        dlq = "?" if g.dlq is None else str(len(g.dlq))
        rows.append((group, str(len(g.expected)), str(len(acked)),
                     "?" if g.acked_store is None else str(len(g.acked_store)),
                     str(g.stats.get("acked", "?")), dlq, str(len(g.lost)), str(dup),
                     str(g.stats.get("delivered", "?")), str(g.stats.get("retried", "?"))))  # fmt: skip
    widths = [max(len(r[c]) for r in rows) for c in range(len(head))]
    return ["  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]  # fmt: skip


def details(soak: Soak, final: Final) -> list[str]:
    out: list[str] = ["", "details:"]
    out += dlq_lines(soak, final)
    out += poison_lines(soak, final)
    out += error_lines(soak.errors)
    for name, (at, why) in sorted(soak.dead_consumers.items(), key=lambda x: x[1]):
        out.append(f"  ! consumer task {name} ended by t={at:.0f} s ({why[:120]}; private peek)")
    known = set(soak.attempted) | set(soak.poison_attempted)
    for group, rec in soak.recorders.items():
        strangers = set(rec.completed) - known
        if strangers:
            out.append(f"  ! {group}: handled {len(strangers)} ids never published nor injected")
        if rec.poison_handled:
            out.append(f"  ! {group}: handler received {len(rec.poison_handled)} poison records "
                       "(they decoded?)")  # fmt: skip
    for group, g in final.groups.items():
        out += lost_lines(soak, group, g)
    return out


def dlq_lines(soak: Soak, final: Final) -> list[str]:
    out = []
    for group, g in final.groups.items():
        if g.dlq is None:
            out.append(f"  ! {group}: the DLQ could not be listed (see untyped/typed errors); "
                       "'in DLQ' counted from delivery records with status dead")  # fmt: skip
            continue
        reasons = collections.Counter(err.split(":", 1)[0][:40] for err in g.dlq_errors.values())
        text = ", ".join(f"{r} {n}" for r, n in reasons.most_common(6)) or "empty"
        count = (
            ""
            if g.dlq_count is None or g.dlq_count == len(g.dlq)
            else f" (bus.get_pending_events says {g.dlq_count})"
        )
        out.append(f"  DLQ {group}: {text}{count}")
        if group == THUMBNAILS:
            doomed = {i for i in soak.doomed if i in g.expected}
            missing = doomed - g.dlq
            mark = "!" if missing else " "
            out.append(f"  {mark} doomed thumbnails (handler always fails) in DLQ: "
                       f"{len(doomed) - len(missing)}/{len(doomed)}")  # fmt: skip
    return out


def poison_lines(soak: Soak, final: Final) -> list[str]:
    """Each poison kind: in the DLQ of every group it belongs to, with a SerializationError reason."""
    out = []
    by_kind: dict[str, list[int]] = {}
    for event_id, kind in soak.poison.items():
        tally = by_kind.setdefault(kind, [0, 0, 0])
        for g in final.groups.values():
            if event_id not in g.expected:
                continue
            tally[0] += 1
            if g.dlq is not None and event_id in g.dlq:
                tally[1] += 1
                tally[2] += "SerializationError" in g.dlq_errors[event_id]
    for kind, (want, got, typed) in sorted(by_kind.items()):
        mark = "!" if got < want or typed < got else " "
        out.append(f"  {mark} poison {kind}: in the DLQ of its groups {got}/{want}, "
                   f"with a SerializationError reason {typed}/{got}")  # fmt: skip
    return out


def error_lines(errors: Errors) -> list[str]:
    out = []
    for (where, kind), (count, message) in sorted(errors.untyped.items()):
        out.append(f"  ! untyped {kind} x{count} from {where}: {message[:160]}")
    if errors.typed:
        typed = ", ".join(f"{w} {k} x{n}" for (w, k), n in sorted(errors.typed.items()))
        out.append(f"    typed errors from calls (expected during outages): {typed}")
    for where, n in sorted(errors.hung.items()):
        out.append(f"  ! {where}: {n} calls did not return within {CALL_TIMEOUT:.0f} s")
    if errors.wait_idle_overruns:
        worst = max(errors.wait_idle_overruns)
        out.append(f"  ! wait_idle(timeout=0.5) took > 1.5 s {len(errors.wait_idle_overruns)} "
                   f"times (worst {worst:.1f} s)")  # fmt: skip
    if errors.warnings:
        out.append(
            "    WARNING log records: "
            + ", ".join(f"{n} {c}" for n, c in errors.warnings.most_common())
        )
    records = collections.Counter((name, kind) for name, kind, _ in errors.error_records)
    first = {(name, kind): msg for name, kind, msg in reversed(errors.error_records)}
    for (name, kind), n in records.most_common(8):
        out.append(f"  ! ERROR log records from {name} ({kind}) x{n}: {first[(name, kind)][:160]}")
    return out


def lost_lines(soak: Soak, group: str, g: GroupResult) -> list[str]:
    if not g.lost:
        return []
    by_status = collections.Counter(g.statuses.get(i, "never delivered") for i in g.lost)
    out = [f"  ! {group} lost {len(g.lost)}: "
           + ", ".join(f"{st} {n}" for st, n in by_status.most_common())]  # fmt: skip
    completed = soak.recorders[group].completed
    for event_id in g.lost[:8]:
        what = f"poison {soak.poison[event_id]}" if event_id in soak.poison else "published"
        status = g.statuses.get(event_id, "never delivered")
        out.append(f"      {event_id} {soak.types.get(event_id)} ({what}): store status {status}, "
                   f"handler completed {completed.get(event_id, 0)}x")  # fmt: skip
    return out


# -- entry point ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    logging.getLogger().handlers[0].setLevel(logging.ERROR if settings.quiet else logging.WARNING)
    if not settings.quiet:  # outages make eventkit warn a lot: show them once per kind only
        logging.getLogger().handlers[0].addFilter(_OncePerMessage())
    if settings.log_file is not None:
        handler = logging.FileHandler(settings.log_file, mode="w")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger().addHandler(handler)
    budget = (
        settings.run_seconds + FINISH_SECONDS + 60 + settings.drain_seconds + CLOSE_SECONDS + 120
    )
    watchdog = start_watchdog(budget)
    workdir = Path(tempfile.mkdtemp(prefix="eventkit-soak-"))
    on_exit(lambda: shutil.rmtree(workdir, ignore_errors=True))
    try:
        return asyncio.run(soak_run(settings, workdir))
    except asyncio.CancelledError:
        print("soak: aborted", file=sys.stderr)
        return 3
    except Exception as e:
        traceback.print_exc()
        print(f"soak: could not run: {type(e).__name__}: {e}", file=sys.stderr)
        return 3
    finally:
        run_cleanups()
        watchdog.cancel()
        start_watchdog(15, code=4)  # exit must not hang on a non-daemon thread


class _OncePerMessage(logging.Filter):
    """Console only: the first record of each (logger, message template); the count is reported."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:60])
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


if __name__ == "__main__":
    sys.exit(main())
