"""`eventkit top` and `eventkit tail` run as commands on a real SQLite store: the figures and
events they print, following what another process publishes, Ctrl-C ending them with exit 0, and
leaving stores alone (a missing one is refused, not created; a closed one stays byte-identical)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from eventkit import EventBus, EventStoreConfig
from eventkit.events import BaseEvent
from eventkit.live import last_events, last_position
from eventkit.stores.base import EventStore
from tests.helpers import discovered, new_events, started

ROOT = Path(__file__).resolve().parents[1]
STORE_VARIABLES = ("EVENT_STORE_BACKEND", "EVENT_STORE_PATH", "EVENT_STORE_NAMESPACE", "REDIS_URL")
#: generous: a line that should come comes within a second or two, even on a busy machine
WAIT_SECONDS = 60.0


def _env(home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}
    return {**base, "HOME": str(home), "PYTHONPATH": str(ROOT)}


def _eventkit(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventkit", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env=_env(cwd),
    )  # fmt: skip


def _default_sigint() -> None:
    """In the child: Ctrl-C acts even when the test runs as a shell's background job (which
    starts with SIGINT ignored, and Python keeps it so)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def _start(*args: str, cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "eventkit", *args, cwd=cwd, env=_env(cwd),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=_default_sigint,
    )  # fmt: skip


async def _line(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT_SECONDS)
    assert line, "the command ended early"
    return line.decode()


async def _interrupt(process: asyncio.subprocess.Process) -> tuple[int, str]:
    """Ctrl-C; the exit code and stderr."""
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), WAIT_SECONDS)
    assert process.returncode is not None
    return process.returncode, err.decode()


def _config(path: Path) -> EventStoreConfig:
    return EventStoreConfig(
        backend="sqlite", path=path, poll_interval_seconds=0.05, trim_interval_hours=None
    )


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


async def _handled(_: object) -> None:
    return None


async def _failing(_: object) -> None:
    raise RuntimeError("thumbnail service down")


async def _make_store(path: Path) -> list[BaseEvent]:
    """Group indexer (all types) acked the first 6 events and has 3 unread; group thumbs
    (workflow.started) dead-lettered its one event. Returns the events in publish order."""
    first: list[BaseEvent] = [*(discovered(i) for i in range(5)), started(1)]
    later: list[BaseEvent] = [discovered(10 + i) for i in range(3)]
    async with EventBus(_config(path)) as bus:
        await bus.subscribe_persistent(["*"], "indexer", "w1", _handled)
        await bus.subscribe_persistent(
            ["workflow.started"], "thumbs", "w1", _failing, max_retries=0
        )
        await bus.publish_many(first)
        assert await bus.wait_idle(timeout=30)
        await bus.unsubscribe_persistent("indexer:w1")
        await bus.publish_many(later)
    return first + later


def _rows(output: str) -> dict[str, list[str]]:
    """top's table: each group's cells, by group name."""
    lines = output.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("GROUP"))
    assert lines[head].split("  ")[0].strip() == "GROUP"
    rows = {}
    for line in lines[head + 1 :]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> tuple[Path, list[BaseEvent]]:
    path = tmp_path / "store" / "events.db"
    path.parent.mkdir()
    return path, await _make_store(path)


async def test_top_once_prints_each_groups_figures_and_changes_nothing(
    tmp_path: Path, sqlite_store: tuple[Path, list[BaseEvent]]
) -> None:
    path, _ = sqlite_store
    before = _snapshot(path.parent)
    done = _eventkit("top", "--once", "--path", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    title = done.stdout.splitlines()[0]
    assert f"SQLite store {path}" in title and "9 events" in title and "2 groups" in title
    assert "UTC" in title
    assert done.stdout.splitlines()[1].split() == [
        "GROUP", "LAG", "IN", "FLIGHT", "DLQ", "ACKED/S", "CONSUMERS", "ACKED", "RETRIED",
    ]  # fmt: skip
    # lag, in flight, DLQ, acked/s (one sample: none yet), consumers, acked, retried
    assert _rows(done.stdout) == {
        "indexer": ["3", "0", "0", "-", "0", "6", "0"],
        "thumbs": ["0", "0", "1", "-", "0", "0", "0"],
    }
    assert _snapshot(path.parent) == before


async def test_tail_prints_the_last_events_in_order_and_filters_by_type(
    tmp_path: Path, sqlite_store: tuple[Path, list[BaseEvent]]
) -> None:
    path, events = sqlite_store
    before = _snapshot(path.parent)
    done = _eventkit("tail", "-n", "3", "--path", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[2] for line in lines] == [e.event_id[:8] for e in events[-3:]]
    for line, event in zip(lines, events[-3:], strict=True):
        when, event_type, _, source, payload = line.split(maxsplit=4)
        assert when == event.timestamp.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        assert (event_type, source) == ("asset.discovered", "scanner")
        assert payload.startswith('{"asset_id":"asset-1') and payload.endswith("…")

    default = _eventkit("tail", "--path", str(path), cwd=tmp_path)
    assert [line.split()[2] for line in default.stdout.splitlines()] == [
        e.event_id[:8]
        for e in events[-10:]  # all 9: fewer than the default 10
    ]
    typed = _eventkit("tail", "--type", "workflow.started", "-n", "5", "--path", str(path),
                      cwd=tmp_path)  # fmt: skip
    assert [line.split()[1:3] for line in typed.stdout.splitlines()] == [
        ["workflow.started", events[5].event_id[:8]]
    ]
    none = _eventkit("tail", "-n", "0", "--path", str(path), cwd=tmp_path)
    assert none.returncode == 0 and none.stdout == ""
    assert _snapshot(path.parent) == before


async def test_tail_follow_prints_what_another_process_publishes_and_ctrl_c_exits_0(
    tmp_path: Path, sqlite_store: tuple[Path, list[BaseEvent]]
) -> None:
    path, events = sqlite_store  # closed cleanly: tail opens it without any -wal beside it
    tail = await _start("tail", "-f", "-n", "1", "--path", str(path), cwd=tmp_path)
    try:
        assert events[-1].event_id[:8] in await _line(tail)
        async with EventBus(_config(path)) as publisher:  # a writer opens the store later
            fresh = [discovered(100), started(100)]
            await publisher.publish(fresh[0])
            assert fresh[0].event_id[:8] in await _line(tail)
            await publisher.publish(fresh[1])
            line = await _line(tail)
            assert fresh[1].event_id[:8] in line and "workflow.started" in line
        late = [discovered(200 + i) for i in range(5)]
        for event in late:  # short-lived writers, one after another, each after the last closed
            async with EventBus(_config(path)) as publisher:
                await publisher.publish(event)
        assert [(await _line(tail)).split()[2] for _ in late] == [e.event_id[:8] for e in late]
    finally:
        code, err = await _interrupt(tail)
    assert code == 0 and "Traceback" not in err, err


async def test_top_refreshes_with_another_process_work_until_ctrl_c(
    tmp_path: Path, sqlite_store: tuple[Path, list[BaseEvent]]
) -> None:
    path, _ = sqlite_store
    async with EventBus(_config(path)) as publisher:
        top = await _start("top", "--every", "0.2", "--path", str(path), cwd=tmp_path)
        try:
            lag = ""
            while lag != "3":
                if (line := await _line(top)).startswith("indexer"):
                    lag = line.split()[1]
            await publisher.publish_many([discovered(300 + i) for i in range(4)])
            while lag != "7":
                if (line := await _line(top)).startswith("indexer"):
                    lag = line.split()[1]
        finally:
            code, err = await _interrupt(top)
    assert code == 0 and err == "", err


@pytest.mark.parametrize("command", [["top", "--once"], ["tail"], ["tail", "-f"]])
def test_a_missing_store_is_refused_and_not_created(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "missing" / "dir" / "x.db"
    done = _eventkit(*command, "--path", str(missing), cwd=tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    [line] = done.stderr.splitlines()
    assert line.startswith("eventkit: ") and str(missing) in line and "does not exist" in line
    default = _eventkit(*command, cwd=tmp_path)  # ~/.eventkit/events.db, with HOME=tmp_path
    assert default.returncode == 1 and "does not exist" in default.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["top", "--once"], ["tail", "-f"]])
def test_another_applications_database_is_refused_and_left_alone(
    tmp_path: Path, command: list[str]
) -> None:
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()
    before = _snapshot(tmp_path)
    done = _eventkit(*command, "--path", str(path), cwd=tmp_path)
    assert done.returncode == 1 and "is not an eventkit store" in done.stderr, done.stderr
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "args", [["top", "--every", "0"], ["top", "--every", "nan"], ["tail", "-n", "-1"]]
)
def test_bad_numbers_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    done = _eventkit(*args, cwd=tmp_path)
    assert done.returncode == 2 and "usage:" in done.stderr and "Traceback" not in done.stderr


async def test_the_end_of_the_log_is_found_on_every_backend(store: EventStore) -> None:
    """tail's reading back from the end: positions are dense on SQLite and memory, far apart
    (stream ids) on Redis; every third event is a workflow.started."""
    assert await last_position(store) is None and await last_events(store, 5) == []
    for start in range(0, 60, 20):  # several appends, a moment apart
        await store.append(new_events(20, event_type_every=3)[start % 7 :])
        await asyncio.sleep(0.003)
    everything = await store.read()
    workflows = await store.read(event_types=["workflow.started"])
    assert await last_position(store) == everything[-1].position
    for count in (0, 1, 7, len(everything), len(everything) + 5):
        assert await last_events(store, count) == everything[max(len(everything) - count, 0) :]
    for count in (1, 4, len(workflows) + 1):
        found = await last_events(store, count, ["workflow.started"])
        assert found == workflows[max(len(workflows) - count, 0) :]
