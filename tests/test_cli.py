"""The `eventkit` command: the demo job, import/export round trip, stats and DLQ operations, and
SPEC §7's CLI contract: exit 0 on success, 1 with one line (no traceback) for bad input, a store
or an OS error, 2 for usage errors; read-only commands that never create or change a file."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventkit import EventBus, EventStoreConfig
from eventkit.stores.redis_keys import Keys
from tests.helpers import discovered, wait_until

ROOT = Path(__file__).resolve().parents[1]
STORE_VARIABLES = ("EVENT_STORE_BACKEND", "EVENT_STORE_PATH", "EVENT_STORE_NAMESPACE", "REDIS_URL")


def _drop_root_override() -> None:
    """In the child: without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, root meets file modes
    as any user does, so "permission denied" is real (PR_CAPBSET_DROP; exec applies it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _eventkit(
    *args: str, cwd: Path, env: dict[str, str] | None = None, as_user: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the command; the store comes from its options (never the environment's or ~)."""
    base = {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "eventkit", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={**base, "HOME": str(cwd), "PYTHONPATH": str(ROOT), **(env or {})},
        preexec_fn=_drop_root_override if as_user and os.geteuid() == 0 else None,
    )  # fmt: skip


def _failed(done: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit code 1, and stderr is one line: 'eventkit: ...' naming each of `names`."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    [line] = lines
    assert line.startswith("eventkit: "), line
    for name in names:
        assert name in line, (name, line)
    return line


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder below `folder`, with a hash of each file's bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "/"
        for p in sorted(folder.rglob("*"))
    }


def _rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"event_id": f"id-{i}", "event_type": "workflow.started", "version": 1, "source": "cli",
         "timestamp": 1_790_000_000_000 + i, "data": {"workflow_id": f"wf-{i}", "workflow_type": "x"}}
        for i in range(start, start + n)
    ]  # fmt: skip


def _write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _sqlite(path: Path) -> list[str]:
    return ["--backend", "sqlite", "--path", str(path)]


async def _make_store(config: EventStoreConfig, events: int = 5) -> None:
    """A store with `events` events, groups 'catalog' (all acked) and 'thumbs' (one event in its
    DLQ), closed cleanly."""

    def fail_first(event: Any) -> None:
        if event.asset_id == "asset-0":
            raise ValueError("too large to thumbnail")

    async with EventBus(config) as bus:
        await bus.publish_many([discovered(i) for i in range(events)])
        await bus.subscribe_persistent(["*"], "catalog", "c-1", lambda event: None)
        await bus.subscribe_persistent(
            ["asset.discovered"], "thumbs", "t-1", fail_first, max_retries=0
        )
        await wait_until(lambda: bus.wait_idle(timeout=0.1))
        assert await bus.get_pending_events("thumbs") == 1


def _config(path: Path) -> EventStoreConfig:
    return EventStoreConfig(backend="sqlite", path=path, trim_interval_hours=None)


# -- success: exit 0 -------------------------------------------------------------------------


def test_demo_runs_on_its_own_sqlite_file_and_reports(tmp_path: Path) -> None:
    done = _eventkit("demo", "--events", "600", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (tmp_path / "eventkit-demo.db").exists()
    assert not (tmp_path / ".eventkit").exists()  # never the user's default store
    assert "published 600/600 events" in done.stderr  # progress is visible
    assert "consuming |" in done.stderr
    assert "catalog" in out and "thumbnails" in out
    assert "dead-letter queue of 'thumbnails':" in out
    assert "too large to thumbnail" in out  # poison events reached the DLQ with their error
    report = tmp_path / "eventkit-report"
    for name in ("events.csv", "deliveries.csv", "dlq.csv", "throughput.png", "latency.png"):
        assert (report / name).stat().st_size > 0, name
    assert "report written to" in out
    [hint] = [line for line in out.splitlines() if "replay them with:" in line]
    command = hint.split("replay them with:")[1].split("(or")[0].split()
    assert command[:2] == ["eventkit", "dlq"] and "eventkit-demo.db" in command  # the demo's store
    replayed = _eventkit(*command[1:], cwd=tmp_path)
    assert replayed.returncode == 0 and "replayed" in replayed.stdout, replayed.stderr
    assert not (tmp_path / ".eventkit").exists()
    again = _eventkit("demo", "--events", "100", "--no-report", cwd=tmp_path)
    assert again.returncode == 0 and "removed the previous demo store" in again.stdout


def test_import_export_stats_and_dlq_commands(tmp_path: Path) -> None:
    rows = _rows(25)
    source = _write_jsonl(tmp_path / "in.jsonl", rows)
    store = _sqlite(tmp_path / "cli.db")
    imported = _eventkit("import", str(source), *store, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "imported 25 events" in imported.stderr
    exported = _eventkit("export", "--format", "jsonl", "-o", "out.jsonl", *store, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    back = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    # ids, timestamps and versions kept; a file without correlation ids reads as first events
    assert back == [{**r, "correlation_id": r["event_id"], "causation_id": None} for r in rows]
    stats = _eventkit("stats", *store, cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["store"]["total_events"] == 25


async def test_dlq_lists_replays_and_discards_a_known_group(tmp_path: Path) -> None:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    await _make_store(_config(path))
    listed = _eventkit("dlq", "thumbs", *_sqlite(path), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "1 dead letters in 'thumbs'" in listed.stdout
    assert "too large to thumbnail" in listed.stdout
    replayed = _eventkit("dlq", "thumbs", "--replay", *_sqlite(path), cwd=tmp_path)
    assert replayed.returncode == 0 and "replayed 1 events to 'thumbs'" in replayed.stdout
    discarded = _eventkit("dlq", "thumbs", "--discard", *_sqlite(path), cwd=tmp_path)
    assert discarded.returncode == 0 and "discarded 0 events" in discarded.stdout


# -- usage errors: exit 2 --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["frobnicate"],
        ["stats", "--backend", "mysql"],
        ["dlq"],
        ["dlq", "g", "--replay", "--discard"],
        ["export"],
        ["export", "-o", "x.jsonl", "--format", "xml"],
        ["demo", "--events", "0"],
        ["demo", "--events", "many"],
    ],
)
def test_usage_errors_exit_2_with_usage_and_no_traceback(tmp_path: Path, args: list[str]) -> None:
    done = _eventkit(*args, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "usage: eventkit" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


# -- bad input and OS errors: exit 1, one line -----------------------------------------------


def test_bad_backend_in_the_environment_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    done = _eventkit("stats", cwd=tmp_path, env={"EVENT_STORE_BACKEND": "mysql"})
    _failed(done, "EVENT_STORE_BACKEND='mysql'")


def test_import_of_a_missing_file_names_it_and_creates_no_store(tmp_path: Path) -> None:
    store = tmp_path / "new.db"
    done = _eventkit("import", "nowhere.jsonl", *_sqlite(store), cwd=tmp_path)
    _failed(done, "nowhere.jsonl", "No such file or directory")
    assert list(tmp_path.iterdir()) == []  # no store, no folder


def test_import_of_a_folder_names_it(tmp_path: Path) -> None:
    (tmp_path / "folder.jsonl").mkdir()
    done = _eventkit("import", "folder.jsonl", *_sqlite(tmp_path / "new.db"), cwd=tmp_path)
    _failed(done, "folder.jsonl", "Is a directory")
    assert not (tmp_path / "new.db").exists()


def test_import_of_an_unreadable_file_says_permission_denied(tmp_path: Path) -> None:
    source = _write_jsonl(tmp_path / "secret.jsonl", _rows(3))
    source.chmod(0)
    done = _eventkit("import", "secret.jsonl", *_sqlite(tmp_path / "new.db"), cwd=tmp_path,
                     as_user=True)  # fmt: skip
    _failed(done, "secret.jsonl", "Permission denied")
    assert not (tmp_path / "new.db").exists()


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"version": 2**63}, "version must be an int in 1..9223372036854775807"),
        ({"version": 0}, "version must be an int"),
        ({"version": "2"}, "version must be an int"),
        ({"timestamp": 10**16}, "outside years 1-9999"),
        ({"timestamp": 2**64}, "outside years 1-9999"),
        ({"timestamp": -(10**15)}, "outside years 1-9999"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "outside years 1-9999"),
        ({"timestamp": "yesterday"}, "not ISO 8601"),
        ({"timestamp": True}, "timestamp must be epoch milliseconds"),
        ({"event_id": ""}, "event_id"),
        ({"event_type": "a\u0000b"}, "NUL"),
        ({"event_id": "x\ud800"}, "surrogate"),
        ({"data": {"text": "\udc80"}}, "surrogate"),
        ({"source": 7}, "source must be a string"),
        ({"data": [1, 2]}, "data must be a JSON object"),
    ],
)
def test_import_refuses_values_out_of_range_naming_the_line_and_imports_nothing(
    tmp_path: Path, bad: dict[str, Any], says: str
) -> None:
    rows: list[Any] = _rows(5)
    rows[3] = {**rows[3], **bad}
    source = _write_jsonl(tmp_path / "in.jsonl", rows)
    store = tmp_path / "store.db"
    done = _eventkit("import", str(source), *_sqlite(store), cwd=tmp_path)
    line = _failed(done, "in.jsonl", "line 4", says, "nothing was imported", "--skip-invalid")
    assert "line 1" not in line and "line 5" not in line
    assert not store.exists()  # checked before the store was opened (or created)


async def test_import_is_all_or_nothing_and_skip_invalid_names_the_skipped_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    await _make_store(_config(path))
    before = _snapshot(path.parent)
    rows: list[Any] = _rows(3000)
    bad_lines = [2001, 2002, 2500, 2600, 2700, 2800, 2999]
    for number in bad_lines:
        rows[number - 1] = '{"event_id": "broken", "event_type": '  # not JSON
    source = _write_jsonl(tmp_path / "in.jsonl", rows)
    done = _eventkit("import", str(source), *_sqlite(path), cwd=tmp_path)
    _failed(done, "line 2001: not valid JSON", "7 invalid lines in all",
            "lines 2001, 2002, 2500, 2600, 2700, ...", "nothing was imported")  # fmt: skip
    assert _snapshot(path.parent) == before  # not one of the 2000 good lines before it

    skipped = _eventkit("import", str(source), "--skip-invalid", *_sqlite(path), cwd=tmp_path)
    assert skipped.returncode == 0, skipped.stderr
    assert "Traceback" not in skipped.stderr
    [warning] = [line for line in skipped.stderr.splitlines() if "skipped" in line]
    assert warning.startswith("eventkit: skipped 7 invalid lines of")
    assert "lines 2001, 2002, 2500, 2600, 2700, ..." in warning
    assert "imported 2993 events" in skipped.stderr
    stats = _eventkit("stats", *_sqlite(path), cwd=tmp_path)
    assert json.loads(stats.stdout)["store"]["total_events"] == 5 + 2993


def test_import_refuses_another_applications_database_and_leaves_it_alone(
    tmp_path: Path,
) -> None:
    app = _other_app_db(tmp_path / "app" / "app.db")
    before = _snapshot(app.parent)
    source = _write_jsonl(tmp_path / "in.jsonl", _rows(3))
    done = _eventkit("import", str(source), *_sqlite(app), cwd=tmp_path)
    _failed(done, str(app), "is not an eventkit store")
    assert _snapshot(app.parent) == before


@pytest.mark.parametrize("target", ["missing/out.jsonl", "folder", "locked/out.jsonl"])
@pytest.mark.parametrize("format", ["jsonl", "csv"])
async def test_export_to_a_path_it_cannot_write_names_it(
    tmp_path: Path, target: str, format: str
) -> None:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    await _make_store(_config(path))
    (tmp_path / "folder").mkdir()
    (tmp_path / "locked").mkdir(mode=0o555)
    before = _snapshot(tmp_path)
    done = _eventkit("export", "--format", format, "-o", target, *_sqlite(path), cwd=tmp_path,
                     as_user=True)  # fmt: skip
    says = {"missing/out.jsonl": "folder missing does not exist", "folder": "is a folder",
            "locked/out.jsonl": "is not writable"}[target]  # fmt: skip
    _failed(done, target, says)
    assert _snapshot(tmp_path) == before


async def test_export_onto_the_store_itself_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    await _make_store(_config(path))
    before = _snapshot(tmp_path)
    done = _eventkit("export", "-o", "events.db", *_sqlite(path), cwd=tmp_path)
    _failed(done, "events.db is the store itself")
    assert _snapshot(tmp_path) == before


# -- read-only commands never create or change a file ----------------------------------------


READ_ONLY_COMMANDS = [
    ["stats"],
    ["export", "--format", "jsonl", "-o", "{out}/events.jsonl"],
    ["dlq", "thumbs"],
    ["top", "--once"],
    ["tail", "-n", "3"],
]


def _read_only(command: list[str], out: Path) -> list[str]:
    return [arg.format(out=out) for arg in command]


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=lambda c: c[0])
def test_read_only_commands_on_a_missing_path_create_no_folder(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "out").mkdir()
    missing = tmp_path / "missing" / "dir" / "x.db"
    done = _eventkit(*_read_only(command, tmp_path / "out"), *_sqlite(missing), cwd=tmp_path)
    _failed(done, str(missing), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert list((tmp_path / "out").iterdir()) == []
    # the default store (~/.eventkit/events.db) is not created either
    default = _eventkit(*_read_only(command, tmp_path / "out"), cwd=tmp_path)
    _failed(default, str(tmp_path / ".eventkit" / "events.db"), "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _other_app_db(path: Path, wal: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    if wal:
        db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO users (name) VALUES ('ada'), ('grace')")
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("kind", ["rollback-journal", "wal", "not-sqlite", "empty"])
@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=lambda c: c[0])
def test_read_only_commands_refuse_a_file_that_is_not_an_eventkit_store(
    tmp_path: Path, command: list[str], kind: str
) -> None:
    path = tmp_path / "app" / "app.db"
    if kind in ("rollback-journal", "wal"):
        _other_app_db(path, wal=kind == "wal")
    else:
        path.parent.mkdir()
        path.write_bytes(b"" if kind == "empty" else b"name,score\nada,1\n")
    (tmp_path / "out").mkdir()
    before = _snapshot(tmp_path)
    done = _eventkit(*_read_only(command, tmp_path / "out"), *_sqlite(path), cwd=tmp_path)
    _failed(done, str(path), "is not an eventkit store")
    assert _snapshot(tmp_path) == before  # byte-identical, no -wal/-shm/-journal beside it
    if kind in ("rollback-journal", "wal"):
        assert sqlite3.connect(path).execute("SELECT count(*) FROM sqlite_master").fetchone() == (
            1,
        )


async def test_read_only_commands_leave_a_cleanly_closed_store_byte_identical(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    await _make_store(_config(path), events=7)
    out = tmp_path / "out"
    out.mkdir()
    before = _snapshot(path.parent)
    assert sorted(before) == ["events.db"]  # closed cleanly: no -wal or -shm
    stats = _eventkit("stats", *_sqlite(path), cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    figures = json.loads(stats.stdout)
    assert figures["store"]["total_events"] == 7 and figures["store"]["dlq_events"] == 1
    assert sorted(figures["groups"]) == ["catalog", "thumbs"]
    exported = _eventkit("export", "-o", str(out / "e.jsonl"), *_sqlite(path), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert len((out / "e.jsonl").read_text().splitlines()) == 7
    listed = _eventkit("dlq", "thumbs", *_sqlite(path), cwd=tmp_path)
    assert listed.returncode == 0 and "1 dead letters in 'thumbs'" in listed.stdout
    assert _snapshot(path.parent) == before


HOLDER = """
import asyncio, sys
from eventkit import EventBus, EventStoreConfig
from tests.helpers import discovered

async def main():
    config = EventStoreConfig(backend="sqlite", path=sys.argv[1], trim_interval_hours=None)
    async with EventBus(config) as bus:
        await bus.publish_many([discovered(100 + i) for i in range(int(sys.argv[2]))])
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

asyncio.run(main())
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Any]:
    """Start a process that adds events to a store and keeps it open (its -wal not yet
    checkpointed into the file); yields a function that starts it on a path."""
    started: list[subprocess.Popen[str]] = []

    def start(path: Path, events: int) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), str(events)], cwd=ROOT, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


async def test_read_only_commands_read_a_store_another_process_holds_open(
    tmp_path: Path, holder: Any
) -> None:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    await _make_store(_config(path), events=5)
    process = holder(path, 20)
    out = tmp_path / "out"
    out.mkdir()
    before = _snapshot(path.parent)
    assert sorted(before) == ["events.db", "events.db-shm", "events.db-wal"]

    def check() -> None:
        stats = _eventkit("stats", *_sqlite(path), cwd=tmp_path)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["store"]["total_events"] == 25  # the -wal's events too
        exported = _eventkit("export", "-o", str(out / "e.jsonl"), *_sqlite(path), cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        assert len((out / "e.jsonl").read_text().splitlines()) == 25
        listed = _eventkit("dlq", "thumbs", *_sqlite(path), cwd=tmp_path)
        assert listed.returncode == 0 and "1 dead letters in 'thumbs'" in listed.stdout
        assert _snapshot(path.parent) == before  # the file, its -wal and even its -shm

    check()
    process.send_signal(signal.SIGKILL)  # the -wal stays behind, with no process on it
    process.wait(timeout=30)
    check()


async def test_read_only_commands_refuse_a_store_from_a_newer_eventkit(tmp_path: Path) -> None:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    await _make_store(_config(path), events=2)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.close()
    before = _snapshot(path.parent)
    done = _eventkit("stats", *_sqlite(path), cwd=tmp_path)
    _failed(done, str(path), "schema version 999", "upgrade eventkit")
    assert _snapshot(path.parent) == before


async def test_read_only_commands_on_an_unreadable_store_say_permission_denied(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    await _make_store(_config(path), events=2)
    path.chmod(0)
    before = _snapshot(path.parent)
    done = _eventkit("stats", *_sqlite(path), cwd=tmp_path, as_user=True)
    _failed(done, str(path), "Permission denied")
    path.chmod(0o644)
    assert _snapshot(path.parent) == before


# -- dlq GROUP for an unknown group ----------------------------------------------------------


@pytest.mark.parametrize("action", [[], ["--replay"], ["--discard"]])
async def test_dlq_of_an_unknown_group_exits_1_naming_the_known_groups(
    tmp_path: Path, action: list[str]
) -> None:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    await _make_store(_config(path))
    before = _snapshot(path.parent)
    done = _eventkit("dlq", "nobody", *action, *_sqlite(path), cwd=tmp_path)
    _failed(done, "'nobody'", str(path), "known groups: catalog, thumbs")
    assert _snapshot(path.parent) == before


# -- Redis: the same contract on a real server -----------------------------------------------


def _redis_state(url: str, namespace: str) -> dict[str, tuple[str, bytes]]:
    """Every key of the namespace with its type and DUMP (its whole value, byte for byte)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        return {
            key.decode(): (client.type(key).decode(), client.dump(key))
            for key in sorted(client.scan_iter(match=Keys(namespace).pattern, count=1000))
        }
    finally:
        client.close()


async def test_redis_read_only_commands_write_nothing_and_dlq_names_known_groups(
    tmp_path: Path, redis_url: str
) -> None:
    namespace = f"cli-{os.getpid()}-{tmp_path.name[-12:]}"
    config = EventStoreConfig(backend="redis", redis_url=redis_url, namespace=namespace,
                              trim_interval_hours=None)  # fmt: skip
    store = ["--backend", "redis", "--redis-url", redis_url, "--namespace", namespace]
    try:
        await _make_store(config, events=6)
        before = _redis_state(redis_url, namespace)
        assert before  # the store is there
        stats = _eventkit("stats", *store, cwd=tmp_path)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["store"]["total_events"] == 6
        exported = _eventkit("export", "-o", "e.jsonl", *store, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
        assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 6
        listed = _eventkit("dlq", "thumbs", *store, cwd=tmp_path)
        assert listed.returncode == 0 and "1 dead letters in 'thumbs'" in listed.stdout
        unknown = _eventkit("dlq", "nobody", "--replay", *store, cwd=tmp_path)
        _failed(unknown, "'nobody'", "known groups: catalog, thumbs", namespace)
        assert _redis_state(redis_url, namespace) == before
    finally:
        from tests.conftest import _drop_namespace

        _drop_namespace(redis_url, namespace)


def test_an_unreachable_redis_is_one_line(tmp_path: Path) -> None:
    done = _eventkit("stats", "--backend", "redis", "--redis-url", "redis://127.0.0.1:9/0",
                     cwd=tmp_path)  # fmt: skip
    _failed(done, "127.0.0.1:9")


# -- the demo --------------------------------------------------------------------------------


def test_demo_refuses_a_path_that_is_not_a_demo_store(tmp_path: Path) -> None:
    mine = tmp_path / "mine.db"
    mine.write_bytes(b"precious")
    done = _eventkit("demo", "--path", str(mine), cwd=tmp_path)
    _failed(done, str(mine), "not a demo store")
    assert mine.read_bytes() == b"precious"
