"""`eventkit groups [list|reset|delete]`: list the groups, move a group's position, delete one;
destructive steps ask on a terminal and need --yes elsewhere (exit 2), an unknown group exits 1
naming the known ones."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from eventkit import EventBus, EventStoreConfig
from eventkit.events import BaseEvent
from tests.helpers import Recorder, started

ROOT = Path(__file__).resolve().parents[1]
STORE_VARIABLES = ("EVENT_STORE_BACKEND", "EVENT_STORE_PATH", "EVENT_STORE_NAMESPACE", "REDIS_URL")
BASE = datetime(2026, 11, 3, tzinfo=UTC)


def _eventkit(
    path: Path, *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Run `eventkit <args>` on the SQLite store at `path`, stdin not a terminal unless given."""
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "eventkit", *args, "--backend", "sqlite", "--path", str(path)],
        cwd=path.parent, capture_output=True, text=True, timeout=120, stdin=stdin,
        env={**env, "HOME": str(path.parent), "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def _config(path: Path) -> EventStoreConfig:
    return EventStoreConfig(backend="sqlite", path=path, trim_interval_hours=None)


async def _make_store(path: Path) -> None:
    """Group indexer has handled 5 workflow events an hour apart (one of them dead-lettered),
    group thumbs has not started (lag 5)."""

    async def fail_third(event: BaseEvent) -> None:
        if event.event_id == events[2].event_id:
            raise RuntimeError("cannot index")

    events = [started(i, BASE + timedelta(hours=i)) for i in range(5)]
    async with EventBus(_config(path)) as bus:
        await bus.subscribe_persistent(["*"], "indexer", "w", fail_third, max_retries=0)
        await bus.publish_many(events)
        assert await bus.wait_idle("indexer", timeout=10)
        await bus.unsubscribe_persistent("indexer:w")
        await bus.subscribe_persistent(["*"], "thumbs", "w", Recorder(), start="latest")
        await bus.unsubscribe_persistent("thumbs:w")
        await bus.reset_group("thumbs", "earliest")


async def _figures(path: Path, group: str) -> dict[str, int]:
    async with EventBus(_config(path)) as bus:
        figures: dict[str, int] = (await bus.get_stats())["groups"][group]
        return figures


def _store(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


async def test_groups_lists_each_group_with_its_figures(tmp_path: Path) -> None:
    path = _store(tmp_path)
    await _make_store(path)
    listed = _eventkit(path, "groups")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "group          lag  in flight        dlq  consumers",
        "indexer          0          0          1          0",
        "thumbs           5          0          0          0",
    ]
    assert _eventkit(path, "groups", "list").stdout == listed.stdout


async def test_groups_list_of_a_store_without_groups(tmp_path: Path) -> None:
    path = _store(tmp_path)
    async with EventBus(_config(path)):
        pass
    listed = _eventkit(path, "groups", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == f"no consumer groups in SQLite store {path}\n"


async def test_reset_with_yes_moves_the_position_and_says_what_happened(tmp_path: Path) -> None:
    path = _store(tmp_path)
    await _make_store(path)
    done = _eventkit(path, "groups", "reset", "indexer", "--to", "2026-11-03T02:00", "--yes")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "reset group 'indexer' to 2026-11-03 02:00 UTC: 3 events to deliver again; released 0 "
        "in flight, dropped 0 retrying; DLQ and counters kept\n"
    )
    figures = await _figures(path, "indexer")
    assert (figures["lag"], figures["dlq"], figures["delivered"]) == (3, 1, 5)

    latest = _eventkit(path, "groups", "reset", "indexer", "--to", "latest", "-y")
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout.startswith("reset group 'indexer' to latest: 0 events to deliver again")
    assert (await _figures(path, "indexer"))["lag"] == 0


async def test_reset_without_yes_off_a_terminal_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    path = _store(tmp_path)
    await _make_store(path)
    refused = _eventkit(path, "groups", "reset", "indexer", "--to", "earliest")
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    assert refused.stderr == (
        "eventkit: to reset group 'indexer' to earliest, pass --yes: it cannot be undone, and "
        "stdin is not a terminal to ask\n"
    )
    assert refused.stdout == ""
    assert (await _figures(path, "indexer"))["lag"] == 0


async def test_reset_asks_on_a_terminal_and_goes_on_only_on_yes(tmp_path: Path) -> None:
    path = _store(tmp_path)
    await _make_store(path)
    for answer, code in (("n", 1), ("y", 0)):
        controller, terminal = pty.openpty()
        try:
            os.write(controller, f"{answer}\n".encode())
            done = _eventkit(
                path, "groups", "reset", "indexer", "--to", "2026-11-03 01:00", stdin=terminal
            )
        finally:
            os.close(terminal)
            os.close(controller)
        assert done.returncode == code, (done.stdout, done.stderr)
        assert done.stderr.startswith(
            "Reset group 'indexer' to 2026-11-03 01:00 UTC? 4 events will be delivered again [y/N] "
        )
        lag = (await _figures(path, "indexer"))["lag"]
        if answer == "n":
            assert done.stderr.endswith("eventkit: cancelled: nothing was changed\n")
            assert lag == 0
        else:
            assert done.stdout.startswith("reset group 'indexer' to 2026-11-03 01:00 UTC: 4 events")
            assert lag == 4


async def test_reset_while_a_consumer_holds_a_lease_needs_force(tmp_path: Path) -> None:
    path = _store(tmp_path)
    await _make_store(path)
    async with EventBus(_config(path)) as bus:
        [held] = await bus.store.claim("thumbs", "busy", limit=1, lease_ms=600_000)
    refused = _eventkit(path, "groups", "reset", "thumbs", "--to", "earliest", "--yes")
    assert refused.returncode == 1
    assert refused.stderr == (
        "eventkit: group 'thumbs' has 1 deliveries leased to running consumers: stop them, or "
        "pass --force (their acks will not count)\n"
    )
    forced = _eventkit(path, "groups", "reset", "thumbs", "--to", "earliest", "--force", "--yes")
    assert forced.returncode == 0, forced.stderr
    assert "5 events to deliver again; released 1 in flight, dropped 0 retrying" in forced.stdout
    async with EventBus(_config(path)) as bus:
        assert await bus.store.ack([held]) == 0


async def test_delete_with_yes_and_refused_without(tmp_path: Path) -> None:
    path = _store(tmp_path)
    await _make_store(path)
    refused = _eventkit(path, "groups", "delete", "indexer")
    assert refused.returncode == 2
    assert "pass --yes" in refused.stderr and "delete group 'indexer'" in refused.stderr
    deleted = _eventkit(path, "groups", "delete", "indexer", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == (
        "deleted group 'indexer' with its deliveries, counters and 1 DLQ entries\n"
    )
    async with EventBus(_config(path)) as bus:
        assert await bus.list_groups() == ["thumbs"]
        assert await bus.dlq_size("indexer") == 0


async def test_an_unknown_group_exits_1_naming_the_known_groups(tmp_path: Path) -> None:
    path = _store(tmp_path)
    await _make_store(path)
    for action in (["reset", "nobody", "--to", "earliest"], ["delete", "nobody"]):
        done = _eventkit(path, "groups", *action, "--yes")
        assert done.returncode == 1
        assert done.stderr == (
            f"eventkit: no consumer group 'nobody' in SQLite store {path}; known groups: "
            "indexer, thumbs\n"
        )


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    path = _store(tmp_path)
    await _make_store(path)
    for args, says in (
        (["reset"], "groups reset needs a GROUP"),
        (["reset", "indexer"], "groups reset needs --to"),
        (["reset", "indexer", "--to", "last tuesday"], "--to"),
        (["delete", "indexer", "--to", "earliest"], "groups delete takes no --to"),
        (["list", "indexer"], "groups list takes no GROUP"),
        (["rewind", "indexer"], "invalid choice: 'rewind'"),
    ):
        done = _eventkit(path, "groups", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert says in done.stderr, (args, done.stderr)
    assert (await _figures(path, "indexer"))["lag"] == 0
