"""JSON Lines import/export: a round trip keeps ids, times and versions; re-import adds nothing."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from eventkit import EventBus, EventStoreConfig, progress
from eventkit.checks import MAX_INT64, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS
from eventkit.errors import SerializationError, StoreUnavailableError
from eventkit.stores import MemoryEventStore
from eventkit.stores.base import NewEvent
from eventkit.transfer import check_jsonl, export_jsonl, import_jsonl
from tests.helpers import discovered

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample_events.jsonl"


def sqlite_bus(path: Path) -> EventBus:
    return EventBus(EventStoreConfig(backend="sqlite", path=path, trim_interval_hours=None))


def stored_rows(events: list) -> list[tuple]:  # type: ignore[type-arg]
    return [(e.event_id, e.event_type, e.version, e.source, e.timestamp_ms, json.loads(e.data))
            for e in events]  # fmt: skip


async def test_sqlite_to_jsonl_to_new_sqlite_keeps_ids_times_and_versions(tmp_path: Path) -> None:
    async with sqlite_bus(tmp_path / "a.db") as source:
        await source.publish_many([discovered(i) for i in range(5)])
        await source.store.append([NewEvent("v9", "asset.discovered", 9, "future", 42, '{"x": 1}')])
        original = await source.store.read()
        assert await export_jsonl(source, tmp_path / "snap.jsonl") == 6
    async with sqlite_bus(tmp_path / "b.db") as target:
        seen: list[tuple[int, int | None]] = []
        assert await import_jsonl(target, tmp_path / "snap.jsonl", batch_size=2,
                                  progress=lambda d, t: seen.append((d, t))) == 6  # fmt: skip
        assert stored_rows(await target.store.read()) == stored_rows(original)
        assert seen[-1] == (6, 6) and len(seen) == 4  # after each batch of 2, then at the end
        assert await import_jsonl(target, tmp_path / "snap.jsonl") == 0
        assert len(await target.store.read()) == 6


async def test_export_filters_and_reimport_is_byte_identical(bus: EventBus, tmp_path: Path) -> None:
    lines_in_sample = len(SAMPLE.read_text().splitlines())
    assert await import_jsonl(bus, SAMPLE) == lines_in_sample
    assert await export_jsonl(bus, tmp_path / "all.jsonl") == lines_in_sample
    assert (tmp_path / "all.jsonl").read_bytes() == SAMPLE.read_bytes()
    count = await export_jsonl(bus, tmp_path / "q.jsonl", event_types=["quality.assessed"])
    lines = (tmp_path / "q.jsonl").read_text().splitlines()
    assert count == len(lines) > 0
    assert {json.loads(line)["event_type"] for line in lines} == {"quality.assessed"}


async def test_a_bad_line_names_its_number_and_nothing_after_it_is_half_done(
    bus: EventBus, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"event_id": "a", "event_type": "t", "version": 1, "source": "s",
                       "timestamp": 1, "data": {}})  # fmt: skip
    path.write_text(f"{good}\n\n{{not json\n")
    with pytest.raises(SerializationError, match="line 3"):
        await import_jsonl(bus, path)
    path.write_text(good.replace('"version": 1', '"version": "2"') + "\n")
    with pytest.raises(SerializationError, match=r"line 1: version must be an int"):
        await import_jsonl(bus, path)


async def test_skip_invalid_counts_and_reports_bad_lines(
    bus: EventBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = [{"event_id": f"e{i}", "event_type": "t", "version": 1, "source": "s",
                "timestamp": i, "data": {"i": i}} for i in range(3)]  # fmt: skip
    lines = [json.dumps(r) for r in records]
    lines.insert(1, '{"event_id": "x", "event_type": "t", "timestamp": 1, "data": []}')
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING, logger="eventkit.transfer"):
        assert await import_jsonl(bus, tmp_path / "mixed.jsonl", skip_invalid=True) == 3
    assert "skipped 1 invalid line of" in caplog.text and "(line 2); line 2: data" in caplog.text
    assert [e.event_id for e in await bus.store.read()] == ["e0", "e1", "e2"]


async def test_export_of_a_corrupt_payload_fails_and_leaves_no_file(
    bus: EventBus, tmp_path: Path
) -> None:
    await bus.store.append([NewEvent("broken", "t", 1, "s", 1, "{oops")])
    out = tmp_path / "export"
    out.mkdir()
    with pytest.raises(SerializationError, match="broken"):
        await export_jsonl(bus, out / "events.jsonl")
    assert list(out.iterdir()) == []


def record(i: int, **overrides: Any) -> dict[str, Any]:
    return {"event_id": f"e{i}", "event_type": "t", "version": 1, "source": "s",
            "timestamp": 1_790_000_000_000 + i, "data": {"i": i}, **overrides}  # fmt: skip


def write_lines(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def memory_bus() -> EventBus:
    return EventBus(EventStoreConfig(backend="memory", trim_interval_hours=None))


async def test_a_bad_line_after_thousands_of_good_ones_imports_nothing(
    bus: EventBus, tmp_path: Path
) -> None:
    lines: list[Any] = [record(i) for i in range(3000)]
    lines[2499] = record(2499, timestamp=10**16)  # the kind of value that killed a consumer
    path = write_lines(tmp_path / "big.jsonl", lines)
    with pytest.raises(
        SerializationError,
        match=r"big.jsonl, line 2500: timestamp 10000000000000000 is outside years 1-9999.*nothing was imported",
    ):
        await import_jsonl(bus, path, batch_size=1000)
    assert await bus.store.read() == []  # not the 2,000 lines of the two batches before it
    assert await import_jsonl(bus, path, batch_size=1000, skip_invalid=True) == 2999
    assert len(await bus.store.read()) == 2999


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        ("[1, 2]", "expected a JSON object, got list"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (record(1, version=MAX_INT64 + 1), "version must be an int in 1..9223372036854775807"),
        (record(1, version=True), "version must be an int"),
        (record(1, version=1.0), "version must be an int"),
        (record(1, timestamp=MAX_TIMESTAMP_MS + 1), "outside years 1-9999"),
        (record(1, timestamp=MIN_TIMESTAMP_MS - 1), "outside years 1-9999"),
        (record(1, timestamp=2**63), "outside years 1-9999"),
        (record(1, timestamp="9999-12-31T23:59:59-01:00"), "outside years 1-9999"),
        (record(1, timestamp="not-a-date"), "not ISO 8601"),
        (record(1, timestamp=1.5), "timestamp must be epoch milliseconds"),
        ({k: v for k, v in record(1).items() if k != "timestamp"}, "timestamp must be"),
        (record(1, event_id=None), "event_id None cannot be used"),
        (record(1, event_id=" "), "event_id ' ' cannot be used"),
        (record(1, event_type="a\x00b"), "NUL"),
        (record(1, event_type="\udfff"), "surrogate"),
        (record(1, source="a\x00b"), "source holds the NUL character"),
        (record(1, source="\ud800"), "source holds a lone surrogate"),
        (record(1, data={"\ud800": 1}), "data cannot be stored"),
        (record(1, data="{}"), "data must be a JSON object"),
    ],
)
async def test_every_kind_of_bad_line_is_named_with_its_reason(
    tmp_path: Path, line: Any, says: str
) -> None:
    path = tmp_path / "in.jsonl"
    raw = (
        line
        if isinstance(line, bytes)
        else (line if isinstance(line, str) else json.dumps(line)).encode()
    )
    path.write_bytes(
        json.dumps(record(0)).encode()
        + b"\n"
        + raw
        + b"\n"
        + json.dumps(record(2)).encode()
        + b"\n"
    )
    async with memory_bus() as bus:
        with pytest.raises(SerializationError) as raised:
            await import_jsonl(bus, path)
        assert await bus.store.read() == []
    message = str(raised.value)
    assert message.startswith(f"{path}, line 2: ") and says in message, message
    assert len(message) < 400  # a huge bad value is not pasted whole


async def test_the_limits_themselves_import_and_read_back(bus: EventBus, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "edges.jsonl", [
        record(0, version=MAX_INT64, timestamp=MAX_TIMESTAMP_MS),
        record(1, timestamp=MIN_TIMESTAMP_MS),
        record(2, timestamp="9999-12-31T23:59:59.999+00:00"),
        record(3, timestamp="0001-01-01T00:00:00"),  # naive: UTC
        record(4, timestamp="2025-06-01T12:00:00+02:00"),
        record(5, data={"x": float("nan"), "deep": [[[[{"y": 2**70}]]]]}),  # as export writes them
    ])  # fmt: skip
    assert await import_jsonl(bus, path) == 6
    stored = {e.event_id: e for e in await bus.store.read()}
    assert stored["e0"].version == MAX_INT64
    assert stored["e0"].timestamp_ms == stored["e2"].timestamp_ms == MAX_TIMESTAMP_MS
    assert stored["e1"].timestamp_ms == stored["e3"].timestamp_ms == MIN_TIMESTAMP_MS
    assert stored["e4"].timestamp_ms == 1_748_772_000_000
    data = json.loads(stored["e5"].data)
    assert math.isnan(data["x"]) and data["deep"] == [[[[{"y": 2**70}]]]]


async def test_skip_invalid_names_the_first_lines_and_the_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines: list[Any] = [record(i) for i in range(20)]
    for number in (3, 5, 8, 9, 13, 17, 19):
        lines[number - 1] = "oops"
    path = write_lines(tmp_path / "mixed.jsonl", lines)
    async with memory_bus() as bus:
        with pytest.raises(
            SerializationError,
            match=r"line 3: not valid JSON .*\(7 invalid lines in all: lines 3, 5, 8, 9, 13, \.\.\.\); nothing was imported",
        ):
            await import_jsonl(bus, path)
        with caplog.at_level(logging.WARNING, logger="eventkit.transfer"):
            assert await import_jsonl(bus, path, skip_invalid=True) == 13
    [message] = [r.getMessage() for r in caplog.records]
    assert message.startswith(f"skipped 7 invalid lines of {path} (lines 3, 5, 8, 9, 13, ...)")


def test_check_jsonl_streams_the_file_and_reports_progress(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "many.jsonl", [record(i) for i in range(25_000)] + ["", "x"])
    seen: list[tuple[int, int | None]] = []
    check = check_jsonl(path, progress=lambda done, total: seen.append((done, total)))
    assert (check.lines, check.invalid, check.first_invalid) == (
        25_002,
        1,
        ((25_002, "not valid JSON (Expecting value, column 1)"),),
    )
    assert seen == [(10_000, None), (20_000, None), (25_002, None)]


async def test_a_checked_file_is_not_checked_again(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "in.jsonl", [record(0), "bad"])
    check = check_jsonl(path)
    write_lines(path, [record(0), record(1)])  # changed after the check: the check still counts
    async with memory_bus() as bus:
        with pytest.raises(SerializationError, match="line 2: not valid JSON"):
            await import_jsonl(bus, path, checked=check)
        assert await bus.store.read() == []


async def test_an_unreadable_input_file_is_an_os_error_naming_it(tmp_path: Path) -> None:
    async with memory_bus() as bus:
        with pytest.raises(FileNotFoundError) as missing:
            await import_jsonl(bus, tmp_path / "nowhere.jsonl")
        assert missing.value.filename == str(tmp_path / "nowhere.jsonl")
        with pytest.raises(IsADirectoryError) as folder:
            await import_jsonl(bus, tmp_path)
        assert folder.value.filename == str(tmp_path)


class SecondAppendFails(MemoryEventStore):
    """A store whose second append fails, as a disk that fills up mid-import."""

    appends = 0

    async def append(self, events: Any) -> list[int]:
        self.appends += 1
        if self.appends == 2:
            raise StoreUnavailableError("the disk is full")
        return await super().append(events)


async def test_a_store_failure_mid_import_says_what_was_imported_and_a_rerun_adds_the_rest(
    tmp_path: Path,
) -> None:
    path = write_lines(tmp_path / "in.jsonl", [record(i) for i in range(5)])
    store = SecondAppendFails()
    async with EventBus(
        EventStoreConfig(backend="memory", trim_interval_hours=None), store=store
    ) as bus:
        with pytest.raises(StoreUnavailableError, match="the disk is full") as raised:
            await import_jsonl(bus, path, batch_size=2)
        assert raised.value.__notes__ == [
            f"2 events of {path} were imported before this; importing the file again adds "
            "only the rest (ids already stored are skipped)"
        ]
        assert await import_jsonl(bus, path, batch_size=2) == 3
        assert [e.event_id for e in await bus.store.read()] == [f"e{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("target", "error", "says"),
    [
        ("missing/out.jsonl", FileNotFoundError, "the folder"),
        ("folder", IsADirectoryError, "is a folder"),
    ],
)
async def test_export_to_a_path_it_cannot_write_names_that_path(
    tmp_path: Path, target: str, error: type[OSError], says: str
) -> None:
    (tmp_path / "folder").mkdir()
    async with memory_bus() as bus:
        await bus.publish(discovered(1))
        with pytest.raises(error, match=says) as raised:
            await export_jsonl(bus, tmp_path / target)
    assert raised.value.filename == str(tmp_path / target)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["folder"]  # no partial file left


async def test_long_import_export_and_replay_show_a_bar_and_progress_false_silences_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """tqdm bars on stderr (a widget in Jupyter) once work has run BAR_DELAY_SECONDS: set to 0
    here so this small file counts as long."""
    monkeypatch.setattr(progress, "BAR_DELAY_SECONDS", 0.0)
    path = write_lines(tmp_path / "in.jsonl", [record(i) for i in range(2_500)])
    async with memory_bus() as bus:
        assert await import_jsonl(bus, path, batch_size=500, progress=False) == 2_500
        assert await export_jsonl(bus, tmp_path / "quiet.jsonl", progress=False) == 2_500
        assert await bus.replay_events("*", lambda e: None, progress=False) == 2_500
        assert capsys.readouterr().err == ""
    async with memory_bus() as bus:
        assert await import_jsonl(bus, path, batch_size=500) == 2_500
        bars = capsys.readouterr().err
        assert "importing in.jsonl" in bars and "2.50k/2.50k" in bars
        assert await export_jsonl(bus, tmp_path / "out.jsonl") == 2_500
        assert "exporting to out.jsonl" in capsys.readouterr().err
        assert await bus.replay_events("*", lambda e: None) == 2_500
        assert "replaying" in capsys.readouterr().err
        counts: list[int] = []
        assert await bus.replay_events("*", lambda e: None, progress=counts.append) == 2_500
        assert counts == list(range(1, 2_501)) and capsys.readouterr().err == ""
