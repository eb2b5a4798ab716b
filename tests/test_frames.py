"""Frames: documented columns and dtypes, filters, paging, flattening, bad payloads, migration what-ifs."""

from __future__ import annotations

from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from eventkit import (
    BaseEvent,
    EventBus,
    EventMigration,
    frames,
    register_migration,
    versioned_event,
)
from eventkit.frames import deliveries_frame, dlq_frame, events_frame, migration_frame
from eventkit.stores.base import NewEvent
from eventkit.versioning import isolated_registry
from tests.helpers import discovered

T0 = datetime(2026, 11, 2, tzinfo=UTC)
UTC_MS = pd.DatetimeTZDtype("ms", "UTC")


def raw(event_id: str, data: str, *, event_type: str = "x.raw", version: int = 1,
        minutes: int = 0, source: str = "test") -> NewEvent:  # fmt: skip
    stamp = int((T0 + timedelta(minutes=minutes)).timestamp() * 1000)
    return NewEvent(event_id, event_type, version, source, stamp, data)


async def test_events_frame_has_envelope_dtypes_and_flattened_payload(bus: EventBus) -> None:
    event = discovered(1, metadata={"width": 1920, "exif": {"iso": 200}}, timestamp=T0)
    await bus.publish(event)
    df = await events_frame(bus)
    assert list(df.columns[:5]) == ["event_id", "event_type", "version", "source", "timestamp"]
    assert df["timestamp"].dtype == UTC_MS and df["version"].dtype == "int64"
    row = df.iloc[0]
    assert row["event_id"] == event.event_id and row["timestamp"] == pd.Timestamp(T0)
    assert row["data.metadata.width"] == 1920 and row["data.metadata.exif.iso"] == 200
    assert row["data.file_path"] == "/data/img-1.jpg" and "data.metadata" not in df.columns


async def test_events_frame_filters_by_type_source_time_and_limit(bus: EventBus) -> None:
    await bus.store.append([
        raw(f"e{i}", f'{{"n": {i}}}', event_type="a" if i % 2 else "b", minutes=i,
            source="s1" if i < 6 else "s2")
        for i in range(10)
    ])  # fmt: skip
    assert list((await events_frame(bus, event_types=["a"]))["data.n"]) == [1, 3, 5, 7, 9]
    assert list((await events_frame(bus, source="s2"))["data.n"]) == [6, 7, 8, 9]
    window = await events_frame(bus, start_time=T0 + timedelta(minutes=2),
                                end_time=T0 + timedelta(minutes=5))  # fmt: skip
    assert list(window["data.n"]) == [2, 3, 4]
    assert list((await events_frame(bus, limit=3))["event_id"]) == ["e0", "e1", "e2"]


async def test_events_frame_pages_keep_publish_order(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "PAGE", 4)
    await bus.store.append([raw(f"e{i:02d}", f'{{"n": {i}}}') for i in range(11)])
    df = await events_frame(bus)
    assert list(df["data.n"]) == list(range(11)) and df.index.is_unique
    assert list((await events_frame(bus, limit=9))["data.n"]) == list(range(9))


async def test_empty_store_gives_documented_columns_and_dtypes(bus: EventBus) -> None:
    events = await events_frame(bus)
    assert events.empty and list(events.columns) == list(frames.EVENT_COLUMNS)
    assert events["timestamp"].dtype == UTC_MS
    deliveries = await deliveries_frame(bus)
    assert deliveries.empty and list(deliveries.columns) == list(frames.DELIVERY_COLUMNS)
    assert deliveries["acked_at"].dtype == UTC_MS and deliveries["latency_ms"].dtype == "float64"
    assert list((await dlq_frame(bus)).columns) == list(frames.DLQ_COLUMNS)
    assert list((await migration_frame(bus)).columns) == list(frames.MIGRATION_COLUMNS)


async def test_corrupt_row_gets_nan_data_and_a_data_error(bus: EventBus) -> None:
    await bus.store.append([raw("good", '{"n": 1, "name": "ok"}'), raw("bad", '{"n": 2,'),
                            raw("list", "[1, 2]")])  # fmt: skip
    df = await events_frame(bus)
    assert list(df["event_id"]) == ["good", "bad", "list"]
    assert df.loc[0, "data.n"] == 1 and df.loc[0, "data.name"] == "ok"
    assert df.loc[0, "data_error"] is None
    assert pd.isna(df.loc[1, "data.n"]) and df.loc[1, "data_error"].startswith("invalid JSON")
    assert df.loc[2, "data_error"] == "not a JSON object: list"


async def test_mixed_types_across_rows_keep_each_value(bus: EventBus) -> None:
    await bus.store.append([raw("a", '{"size": 10}'), raw("b", '{"size": "12 MB"}')])
    sizes = list((await events_frame(bus))["data.size"])
    assert sizes == [10, "12 MB"] and isinstance(sizes[0], int)


async def test_a_later_page_that_breaks_the_first_pages_schema_is_parsed_anew(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "PAGE", 2)  # pages after the first reuse its schema when it fits
    payloads = ['{"n": 1}', '{"n": 2}', '{"n": "three", "extra": true}', '{"n": 4.5}', "{}"]
    await bus.store.append([raw(f"e{i}", text) for i, text in enumerate(payloads)])
    df = await events_frame(bus)
    assert list(df["data.n"].iloc[:4]) == [1, 2, "three", 4.5] and pd.isna(df["data.n"].iloc[4])
    assert list(df["data.extra"].iloc[2:3]) == [True] and pd.isna(df["data.extra"].iloc[0])


async def test_iso_text_and_lists_are_not_reinterpreted(bus: EventBus) -> None:
    await bus.store.append([raw("a", '{"when": "2026-11-02T01:00:00+01:00", "tags": ["x", "y"]}')])
    row = (await events_frame(bus)).iloc[0]
    assert row["data.when"] == "2026-11-02T01:00:00+01:00"  # pyarrow alone would make it UTC
    assert list(row["data.tags"]) == ["x", "y"]


async def test_deliveries_frame_reports_status_attempts_and_latency(bus: EventBus) -> None:
    ok, flaky, poison = discovered(1), discovered(2), discovered(3)
    seen: dict[str, int] = {}

    async def handler(event: Any) -> None:
        seen[event.event_id] = seen.get(event.event_id, 0) + 1
        if event.event_id == poison.event_id or (event.event_id == flaky.event_id
                                                 and seen[event.event_id] == 1):  # fmt: skip
            raise ValueError("bad asset")

    await bus.publish_many([ok, flaky, poison])
    await bus.subscribe_persistent(["*"], "g", "w", handler, max_retries=1, retry_delay=0.01)
    assert await bus.wait_idle("g", timeout=10)
    df = (await deliveries_frame(bus)).set_index("event_id")
    assert df.loc[ok.event_id, "status"] == "acked" and df.loc[ok.event_id, "attempts"] == 1
    assert df.loc[flaky.event_id, "attempts"] == 2 and df.loc[flaky.event_id, "status"] == "acked"
    assert df.loc[poison.event_id, "status"] == "dead"
    assert pd.isna(df.loc[poison.event_id, "acked_at"])
    assert "bad asset" in df.loc[poison.event_id, "last_error"]
    acked = df[df["status"] == "acked"]
    expected = (acked["acked_at"] - acked["published_at"]).dt.total_seconds() * 1000
    assert (acked["latency_ms"] == expected).all() and (acked["latency_ms"] >= 0).all()
    assert len(await deliveries_frame(bus, "other-group")) == 0

    dead = await dlq_frame(bus, "g")
    assert list(dead["event_id"]) == [poison.event_id]
    assert dead.loc[0, "data.asset_id"] == "asset-3" and dead.loc[0, "attempts"] == 2
    assert (
        dead.loc[0, "last_error"].startswith("ValueError")
        and "Traceback" in dead.loc[0, "traceback"]
    )


async def test_migration_frame_is_a_dry_run_of_the_chain(bus: EventBus) -> None:
    with isolated_registry():

        @versioned_event(version=1, event_type="score.given")
        class ScoreV1(BaseEvent):
            score: float

        @versioned_event(version=2, event_type="score.given")
        class ScoreV2(BaseEvent):
            percent: float
            tags: list[str] = field(default_factory=list)
            meta: dict[str, Any] = field(default_factory=dict)

        class ToPercent(EventMigration):
            event_type, from_version, to_version = "score.given", 1, 2

            def migrate(self, data: dict[str, Any]) -> dict[str, Any]:
                data["percent"] = data.pop("score") * 100
                return data

        register_migration(ToPercent())
        await bus.store.append([
            raw("old", '{"score": 0.5, "meta": {"by": "x"}}', event_type="score.given"),
            raw("new", '{"percent": 70.0}', event_type="score.given", version=2),
            raw("future", '{"percent": 1}', event_type="score.given", version=9),
            raw("misfit", '{"score": 0.1, "colour": "red"}', event_type="score.given"),
            raw("corrupt", '{"score": ', event_type="score.given"),
        ])  # fmt: skip
        plan = (await migration_frame(bus, ["score.given"])).set_index("event_id")
        await bus.subscribe_persistent("score.given", "g", "w", lambda event: None, max_retries=0)
        assert await bus.wait_idle("g", timeout=10)
        dead = {d.event_id: d.last_error for d in await bus.store.get_pending_events("g")}
    assert list(plan.loc["old", ["stored_version", "current_version", "migrates"]]) == [1, 2, True]
    assert plan.loc["old", "changed_fields"] == ["percent", "score"]
    assert plan.loc["new", "changed_fields"] == [] and plan.loc["new", "error"] is None
    assert not plan.loc["future", "migrates"]
    assert "UnsupportedVersionError" in plan.loc["future", "error"]
    # the verdict is the consumers' own decode: the migration runs, but ScoreV2 has no colour
    assert not plan.loc["misfit", "migrates"] and "colour" in plan.loc["misfit", "error"]
    assert plan.loc["corrupt", "error"].startswith("SerializationError")
    # what the frame says is what a consumer did: the same events fail, with the same text
    assert dead == plan.loc[~plan["migrates"], "error"].to_dict()
    stored = await bus.store.get_events(["old"])
    assert stored[0].version == 1 and stored[0].data == '{"score": 0.5, "meta": {"by": "x"}}'


async def test_export_frame_writes_csv_and_parquet(bus: EventBus, tmp_path: Any) -> None:
    await bus.store.append([raw("a", '{"size": 10, "tags": ["x"]}'), raw("b", '{"size": "big"}')])
    assert await frames.export_frame(bus, tmp_path / "e.parquet", "parquet") == 2
    back = pd.read_parquet(tmp_path / "e.parquet")
    assert list(back["event_id"]) == ["a", "b"] and list(back["data.size"]) == ["10", '"big"']
    assert await frames.export_frame(bus, tmp_path / "e.csv", "csv") == 2
    assert list(pd.read_csv(tmp_path / "e.csv")["data.tags"].fillna("")) == ['["x"]', ""]
    with pytest.raises(ValueError, match="format"):
        await frames.export_frame(bus, tmp_path / "e.xlsx", "xlsx")
