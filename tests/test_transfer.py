"""JSON Lines import/export: a round trip keeps ids, times and versions; re-import adds nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from eventkit import EventBus, EventStoreConfig
from eventkit.errors import SerializationError
from eventkit.stores.base import NewEvent
from eventkit.transfer import export_jsonl, import_jsonl
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
    assert "skipped 1 invalid lines" in caplog.text and "line 2" in caplog.text
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
