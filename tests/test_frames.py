"""Frames: documented columns and dtypes, filters, paging, flattening, bad payloads, migration what-ifs."""

from __future__ import annotations

import json
import pydoc
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

import pandas as pd
import pyarrow as pa
import pytest

from eventkit import (
    BaseEvent,
    EventBus,
    EventMigration,
    create_event,
    frames,
    frames_kinds,
    progress,
    register_migration,
    versioned_event,
)
from eventkit.errors import ConfigError
from eventkit.events import QualityAssessedEvent
from eventkit.frames import (
    CoercedValuesWarning,
    deliveries_frame,
    dlq_frame,
    events_frame,
    export_frame,
    migration_frame,
)
from eventkit.stores.base import NewEvent
from eventkit.versioning import isolated_registry
from tests.helpers import discovered

T0 = datetime(2026, 11, 2, tzinfo=UTC)
UTC_MS = pd.DatetimeTZDtype("ms", "UTC")
DAY = 24 * 60  # minutes


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
    assert df["data.file_size"].dtype == "Int64" and df["data.file_path"].dtype == "string"
    assert df["data.metadata.width"].dtype == "Int64"
    assert df.attrs["tz"] == "UTC" and df.attrs["coerced"] == {}
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
    assert events["timestamp"].dtype == UTC_MS and events.attrs["tz"] == "UTC"
    deliveries = await deliveries_frame(bus)
    assert deliveries.empty and list(deliveries.columns) == list(frames.DELIVERY_COLUMNS)
    assert deliveries["acked_at"].dtype == UTC_MS and deliveries["latency_ms"].dtype == "float64"
    dead = await dlq_frame(bus)
    assert list(dead.columns) == list(frames.DLQ_COLUMNS) and dead["replays"].dtype == "Int64"
    assert list((await migration_frame(bus)).columns) == list(frames.MIGRATION_COLUMNS)


async def test_corrupt_row_gets_na_data_and_a_data_error(bus: EventBus) -> None:
    await bus.store.append([raw("good", '{"n": 1, "name": "ok"}'), raw("bad", '{"n": 2,'),
                            raw("list", "[1, 2]")])  # fmt: skip
    df = await events_frame(bus)
    assert list(df["event_id"]) == ["good", "bad", "list"]
    assert df.loc[0, "data.n"] == 1 and df.loc[0, "data.name"] == "ok"
    assert df["data.n"].dtype == "Int64" and df["data_error"].dtype == "string"
    assert pd.isna(df.loc[0, "data_error"])
    assert pd.isna(df.loc[1, "data.n"]) and df.loc[1, "data_error"].startswith("invalid JSON")
    assert df.loc[2, "data_error"] == "not a JSON object: list"


async def test_mixed_kinds_become_text_without_losing_a_value(bus: EventBus) -> None:
    await bus.store.append([raw("a", '{"size": 10}'), raw("b", '{"size": "12 MB"}')])
    sizes = (await events_frame(bus))["data.size"]
    assert sizes.dtype == "string" and list(sizes) == ["10", "12 MB"]


async def test_a_later_page_that_breaks_the_first_pages_schema_is_parsed_anew(
    bus: EventBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "PAGE", 2)  # pages after the first reuse its schema when it fits
    payloads = ['{"n": 1}', '{"n": 2}', '{"n": "three", "extra": true}', '{"n": 4.5}', "{}"]
    await bus.store.append([raw(f"e{i}", text) for i, text in enumerate(payloads)])
    df = await events_frame(bus)
    assert df["data.n"].dtype == "string"  # ints, text and a fraction: each as its JSON text
    assert list(df["data.n"].iloc[:4]) == ["1", "2", "three", "4.5"] and pd.isna(
        df["data.n"].iloc[4]
    )
    assert df["data.extra"].dtype == "boolean" and df["data.extra"].iloc[2]
    assert pd.isna(df["data.extra"].iloc[0])


async def test_iso_text_and_lists_are_not_reinterpreted(bus: EventBus) -> None:
    await bus.store.append([raw("a", '{"when": "2026-11-02T01:00:00+01:00", "tags": ["x", "y"]}')])
    df = await events_frame(bus)
    row = df.iloc[0]
    assert row["data.when"] == "2026-11-02T01:00:00+01:00"  # pyarrow alone would make it UTC
    assert list(row["data.tags"]) == ["x", "y"] and df["data.tags"].dtype == object


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
    assert dead["data.file_size"].dtype == "Int64" and dead.loc[0, "replays"] == 0
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
    await bus.store.append([raw("a", '{"size": 10, "tags": ["x"]}'), raw("b", '{"size": "big"}'),
                            raw("c", '{"size": 1}', minutes=DAY)])  # fmt: skip
    assert await export_frame(bus, tmp_path / "e.parquet", "parquet", end_time="2026-11-03") == 2
    back = pd.read_parquet(tmp_path / "e.parquet")
    assert list(back["event_id"]) == ["a", "b"] and list(back["data.size"]) == ["10", "big"]
    assert await export_frame(bus, tmp_path / "e.csv", "csv", progress=False) == 3
    assert list(pd.read_csv(tmp_path / "e.csv")["data.tags"].fillna("")) == ['["x"]', "", ""]
    with pytest.raises(ValueError, match="format"):
        await export_frame(bus, tmp_path / "e.xlsx", "xlsx")


# -- times: what a filter accepts, which zone a frame shows ---------------------------------------


async def test_time_filters_take_text_timestamps_dates_and_naive_datetimes(bus: EventBus) -> None:
    await bus.store.append([raw(f"e{i}", f'{{"n": {i}}}', minutes=i * 360) for i in range(12)])
    day_two = await events_frame(bus, start_time=T0 + timedelta(days=1),
                                 end_time=T0 + timedelta(days=2))  # fmt: skip
    assert list(day_two["event_id"]) == ["e4", "e5", "e6", "e7"]
    same_day: list[tuple[Any, Any]] = [
        ("2026-11-03", "2026-11-04"),
        ("2026-11-03T01:00:00+01:00", "2026-11-04T00:00:00Z"),
        (pd.Timestamp("2026-11-03", tz="UTC"), pd.Timestamp("2026-11-04")),
        (date(2026, 11, 3), date(2026, 11, 4)),
        (datetime(2026, 11, 3), datetime(2026, 11, 4)),  # naive: UTC
    ]
    for start, end in same_day:
        got = await events_frame(bus, start_time=start, end_time=end)
        assert list(got["event_id"]) == list(day_two["event_id"]), (start, end)
    with pytest.raises(ConfigError, match="start_time"):
        await events_frame(bus, start_time="next tuesday")
    with pytest.raises(ConfigError, match="end_time"):
        await events_frame(bus, end_time=3)  # type: ignore[arg-type]


async def test_tz_shows_another_zone_and_says_so(bus: EventBus) -> None:
    await bus.publish(discovered(1, timestamp=T0))
    local = await events_frame(bus, tz="America/New_York")
    assert str(local["timestamp"].dtype) == "datetime64[ms, America/New_York]"
    assert local.attrs["tz"] == "America/New_York"
    assert local.loc[0, "timestamp"] == pd.Timestamp(T0)  # the same instant, shown in New York
    assert local.loc[0, "timestamp"].hour == 19
    assert (await events_frame(bus)).attrs["tz"] == "UTC"
    deliveries = await deliveries_frame(bus, tz="Asia/Tokyo")
    assert str(deliveries["published_at"].dtype) == "datetime64[ms, Asia/Tokyo]"
    with pytest.raises(ConfigError, match="tz"):
        await events_frame(bus, tz="Mars/Olympus_Mons")


# -- dtypes: from the schemas and the whole store, never from the filter --------------------------


async def test_dtypes_are_the_same_whatever_the_filter(bus: EventBus) -> None:
    events: list[BaseEvent] = []
    for i in range(6):
        size = 350_000_000 if i == 4 else 2_000 + i  # one large file, on day two
        events.append(discovered(i, file_size=size, timestamp=T0 + timedelta(hours=8 * i)))
        events.append(create_event(QualityAssessedEvent, source="quality", asset_id=f"asset-{i}",
                                   score=0.5, issues=["blur"] if i % 2 else []))  # fmt: skip
    await bus.publish_many(events)
    whole = await events_frame(bus)
    filtered = {
        "one type": await events_frame(bus, ["asset.discovered"]),
        "other type": await events_frame(bus, "quality.assessed"),
        "day two": await events_frame(bus, start_time="2026-11-03", end_time="2026-11-04"),
        "first rows": await events_frame(bus, limit=1),
        "one source": await events_frame(bus, source="quality"),
    }
    for name, frame in filtered.items():
        for column in frame.columns:
            assert frame[column].dtype == whole[column].dtype, (name, column)
    assert whole["data.file_size"].dtype == "Int64" and whole["data.score"].dtype == "Float64"
    assert whole["data.issues"].dtype == pd.ArrowDtype(pa.list_(pa.string()))
    assert list(filtered["other type"]["data.issues"].iloc[:2].map(list)) == [[], ["blur"]]
    # the analyst's first filter: NA (a type without the field) is not a match, and no TypeError
    big = whole[whole["data.file_size"] > 300_000_000]
    assert (
        list(big["data.asset_id"]) == ["asset-4"] and big["data.file_size"].iloc[0] == 350_000_000
    )
    assert whole["data.file_size"].dropna().iloc[0] == 2_000  # a whole number, not 2000.0


async def test_generic_fields_are_typed_from_every_stored_value(bus: EventBus) -> None:
    await bus.store.append([
        raw("a", '{"size": 10, "whole": 2160.0, "ok": true, "m": {"w": 1}}'),
        raw("b", '{"size": 12, "whole": 3, "ok": false}', minutes=1),
        raw("c", '{"size": "12 MB", "whole": 4}', minutes=DAY),
    ])  # fmt: skip
    day_one = await events_frame(bus, end_time="2026-11-03")  # the filter first: reads the store
    whole = await events_frame(bus)
    for frame in (day_one, whole):
        assert frame["data.size"].dtype == "string" and frame["data.whole"].dtype == "Int64"
        assert frame["data.ok"].dtype == "boolean" and frame["data.m.w"].dtype == "Int64"
    assert list(day_one["data.size"]) == ["10", "12"] and list(whole["data.whole"]) == [2160, 3, 4]
    await bus.store.append([raw("d", '{"whole": 4.5}', minutes=2 * DAY)])
    assert (await events_frame(bus, end_time="2026-11-03"))["data.whole"].dtype == "Float64"
    assert day_one.attrs["coerced"] == {} and whole.attrs["coerced"] == {}


async def test_declared_field_types_give_the_dtypes(bus: EventBus) -> None:
    @versioned_event(version=1, event_type="test.typed")
    class Typed(BaseEvent):
        count: int = 0
        ratio: float = 0.0
        name: str = ""
        flag: bool = False
        due: datetime | None = None
        tags: list[str] = field(default_factory=list)
        extra: dict[str, Any] = field(default_factory=dict)

    await bus.publish(create_event(Typed, count=3, ratio=1, name="a", flag=True,
                                   due=T0 + timedelta(hours=1), tags=["x"]))  # fmt: skip
    await bus.publish(discovered(1))  # a type with none of these fields
    await bus.store.append([raw("whole", '{"count": 7.0, "due": "2026-11-02T12:00:00+01:00"}',
                                event_type="test.typed")])  # fmt: skip
    df = (await events_frame(bus)).set_index("event_id")
    expected = {"count": "Int64", "ratio": "Float64", "name": "string", "flag": "boolean",
                "due": UTC_MS, "tags": pd.ArrowDtype(pa.list_(pa.string()))}  # fmt: skip
    assert {name: df[f"data.{name}"].dtype for name in expected} == expected
    assert df.loc["whole", "data.count"] == 7  # 7.0 is a whole number: it fits an int
    assert df.loc["whole", "data.due"] == pd.Timestamp("2026-11-02T11:00:00Z")
    assert pd.isna(df["data.flag"]).sum() == 2 and df.attrs["coerced"] == {}


async def test_values_that_do_not_fit_become_na_counted_and_warned(bus: EventBus) -> None:
    bad = ('{"asset_id": "asset-9", "file_path": "/x", "media_type": "image", "file_size": "12 MB", '
           '"metadata": {}}')  # fmt: skip
    half = bad.replace('"12 MB"', "2.5")
    await bus.publish_many([discovered(1), discovered(2)])
    await bus.store.append([raw("text", bad, event_type="asset.discovered"),
                            raw("half", half, event_type="asset.discovered"),
                            raw("id", '{"asset_id": 7}', event_type="asset.discovered")])  # fmt: skip
    with pytest.warns(CoercedValuesWarning) as caught:
        df = await events_frame(bus)
    texts = sorted(str(w.message) for w in caught)
    assert len(texts) == 2
    assert "2 values of data.file_size" in texts[1] and "Int64" in texts[1]
    assert "int in AssetDiscoveredEvent.file_size" in texts[1]
    assert "1 value of data.asset_id" in texts[0] and "string" in texts[0]
    assert df.attrs["coerced"] == {"data.file_size": 2, "data.asset_id": 1}
    assert df["data.file_size"].dtype == "Int64"
    assert list(df["data.file_size"].iloc[:2]) == [1001, 1002]
    assert df["data.file_size"].iloc[2:].isna().all() and pd.isna(df["data.asset_id"].iloc[4])
    with pytest.warns(CoercedValuesWarning, match="data.file_size"):
        one = await events_frame(bus, start_time=T0 - timedelta(days=1), limit=3)
    assert one["data.file_size"].dtype == "Int64" and one.attrs["coerced"] == {"data.file_size": 1}


# -- the DLQ frame, help and progress -------------------------------------------------------------


async def test_dlq_frame_counts_replays(bus: EventBus) -> None:
    poison = discovered(1, file_size=400_000_000)

    async def refuse(event: Any) -> None:
        raise ValueError("too large")

    await bus.publish(poison)
    await bus.subscribe_persistent(["asset.discovered"], "g", "w", refuse, max_retries=0)
    assert await bus.wait_idle("g", timeout=10)
    first = await dlq_frame(bus, "g")
    assert list(first["replays"]) == [0] and first["replays"].dtype == "Int64"
    assert await bus.replay_dlq("g") == 1
    assert await bus.wait_idle("g", timeout=10)
    again = await dlq_frame(bus, "g", progress=False)
    assert list(again["event_id"]) == [poison.event_id] and list(again["replays"]) == [1]
    assert again["data.file_size"].iloc[0] == 400_000_000


@pytest.mark.parametrize(
    ("function", "words"),
    [
        (events_frame, ["event_type", "timestamp", "data.file_size", "Int64", "ISO 8601", "UTC"]),
        (deliveries_frame, ["consumer_group", "latency_ms", "acked_at", "datetime64[ms, UTC]"]),
        (dlq_frame, ["replays", "failed_at", "last_error", "Int64"]),
        (migration_frame, ["stored_version", "changed_fields", "migrates"]),
        (export_frame, ["csv", "parquet", "ISO 8601"]),
    ],
)
def test_help_explains_parameters_columns_and_times(
    function: Callable[..., Any], words: list[str]
) -> None:
    text = pydoc.render_doc(function, renderer=pydoc.plaintext)
    for word in ["Parameters", "Returns", "Examples", "progress", *words]:
        assert word in text, (function.__name__, word)


async def test_progress_bar_shows_on_long_reads_and_progress_false_silences_it(
    bus: EventBus, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    await bus.store.append([raw(f"e{i}", f'{{"n": {i}}}') for i in range(5)])
    monkeypatch.setattr(progress, "BAR_DELAY_SECONDS", 0)  # every read counts as long
    await events_frame(bus, progress=False)
    assert "events_frame" not in capsys.readouterr().err
    await events_frame(bus)
    assert re.search(r"events_frame: 100%.* 5(\.00)?/5(\.00)?", capsys.readouterr().err)


async def test_a_class_of_another_type_sharing_a_field_name_does_not_type_the_column(
    bus: EventBus,
) -> None:
    """Only the frame's own event types declare dtypes: t.counter's `n: int` says nothing of the
    `n` that generic x.raw events carry."""
    with isolated_registry():

        @dataclass(kw_only=True)
        class Counter(BaseEvent):
            event_type: ClassVar[str] = "t.counter"
            n: int

        await bus.store.append([raw("a", '{"n": "three"}'), raw("b", '{"n": 4}')])
        df = await events_frame(bus)
        assert df["data.n"].dtype == "string" and df.attrs["coerced"] == {}
        await bus.publish(create_event(Counter, n=5))
        counters = await events_frame(bus, ["t.counter"])
        assert counters["data.n"].dtype == "Int64" and list(counters["data.n"]) == [5]


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
async def test_a_new_process_types_columns_from_the_stores_note_and_reads_only_what_came_after(
    make_bus: Callable[..., Any],
) -> None:
    first = await make_bus()
    await first.store.append([raw("a", '{"size": 10}'), raw("b", '{"size": 12}', minutes=1)])
    assert (await events_frame(first, end_time="2026-11-03"))["data.size"].dtype == "Int64"
    note = json.loads(await first.store.get_note(frames_kinds.NOTE) or "null")
    assert note == {"format": 1, "position": (await first.store.read())[-1].position,
                    "kinds": {"data.size": ["int"]}}  # fmt: skip
    # what an earlier process saw in events trimmed since (here written into the note by hand):
    # a new process trusts the note for everything up to its position and reads nothing there
    note["kinds"]["data.size"].append("string")
    await first.store.put_note(frames_kinds.NOTE, json.dumps(note))
    await first.store.append([raw("c", '{"size": 14, "ratio": 0.5}', minutes=2)])
    later = await make_bus()  # another process: its own store object
    frame = await events_frame(later, end_time="2026-11-03")
    assert frame["data.size"].dtype == "string"  # from the note: the log alone says Int64
    assert frame["data.ratio"].dtype == "Float64"  # from the event stored after the note
    noted = json.loads(await later.store.get_note(frames_kinds.NOTE) or "null")
    assert noted["position"] == (await later.store.read())[-1].position
    assert noted["kinds"] == {"data.ratio": ["float"], "data.size": ["int", "string"]}
