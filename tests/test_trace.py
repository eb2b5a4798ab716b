"""The story of one thing: trace_frame, plot_trace, find_events, and the envelope's two ids in
frames, JSON Lines and the sample data."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from eventkit import BaseEvent, EventBus, EventStoreConfig, create_event
from eventkit.errors import ConfigError
from eventkit.events import (
    AssetDiscoveredEvent,
    AssetProcessedEvent,
    QualityAssessedEvent,
    WorkflowStartedEvent,
    caused_by,
)
from eventkit.frames import events_frame, find_events, trace_frame
from eventkit.plots import plot_trace
from eventkit.stores.base import NewEvent
from eventkit.transfer import export_jsonl, import_jsonl

matplotlib.use("Agg")

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample_events.jsonl"


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    config = EventStoreConfig(backend="memory", trim_interval_hours=None,
                              poll_interval_seconds=0.02)  # fmt: skip
    async with EventBus(config) as opened:
        yield opened


def _discovered(asset_id: str) -> AssetDiscoveredEvent:
    return create_event(AssetDiscoveredEvent, source="scanner", asset_id=asset_id,
                        file_path=f"/in/{asset_id}.jpg", media_type="image")  # fmt: skip


def _processed(asset_id: str) -> AssetProcessedEvent:
    return create_event(AssetProcessedEvent, source="pipeline", asset_id=asset_id)


def _story() -> tuple[BaseEvent, BaseEvent, BaseEvent, BaseEvent]:
    """root -> a, root -> b, a -> a1."""
    root = create_event(WorkflowStartedEvent, workflow_id="wf-1", workflow_type="import")
    with caused_by(root):
        a, b = _discovered("a"), _discovered("b")
    with caused_by(a):
        a1 = _processed("a")
    return root, a, b, a1


async def test_trace_frame_puts_parents_before_children_then_publish_order(bus: EventBus) -> None:
    root, a, b, a1 = _story()
    unrelated = _discovered("z")
    await bus.publish_many([root, a1, unrelated, b, a])  # a child published before its parent
    frame = await trace_frame(bus, root.event_id)
    assert list(frame["event_id"]) == [root.event_id, b.event_id, a.event_id, a1.event_id]
    assert list(frame["step"]) == [0, 1, 2, 3] and list(frame["depth"]) == [0, 1, 1, 2]
    assert list(frame["causation_id"].fillna("-")) == ["-", root.event_id, root.event_id,
                                                       a.event_id]  # fmt: skip
    assert frame["consumer_group"].isna().all()  # no group received them: one row each
    by_member = await trace_frame(bus, event_id=a1.event_id)  # any event finds its story
    assert list(by_member["event_id"]) == list(frame["event_id"])
    assert list((await trace_frame(bus, unrelated.event_id))["event_id"]) == [unrelated.event_id]


async def test_trace_frame_refuses_what_it_cannot_look_up(bus: EventBus) -> None:
    with pytest.raises(ConfigError, match="event_id"):
        await trace_frame(bus, event_id="never-published")
    with pytest.raises(ConfigError, match="correlation_id"):
        await trace_frame(bus)
    empty = await trace_frame(bus, "no-such-story")
    assert empty.empty and "consumer_group" in empty.columns


async def _run_groups(bus: EventBus) -> tuple[BaseEvent, ...]:
    """indexer: fails once on each asset.processed; notifier: never handles workflow.started."""
    root, a, b, a1 = _story()
    tried: set[str] = set()

    async def indexer(event: BaseEvent) -> None:
        if event.event_type == "asset.processed" and event.event_id not in tried:
            tried.add(event.event_id)
            raise ConnectionError("index down")

    async def notifier(event: BaseEvent) -> None:
        raise KeyError("no template")

    await bus.subscribe_persistent(["asset.discovered", "asset.processed"], "indexer", "i",
                                   indexer, retry_delay=0.05)  # fmt: skip
    await bus.subscribe_persistent(["workflow.started"], "notifier", "n", notifier,
                                   max_retries=2, retry_delay=0.02)  # fmt: skip
    late = create_event(QualityAssessedEvent, asset_id="a", score=0.5, correlation_id=root.event_id,
                        causation_id=a1.event_id)  # fmt: skip
    for event in (root, a, b, a1, late):
        await bus.publish(event)
    assert await bus.wait_idle(timeout=10)
    return root, a, b, a1, late


async def test_trace_frame_gives_each_groups_attempts_latency_and_dead_letters(
    bus: EventBus,
) -> None:
    root, a, b, a1, late = await _run_groups(bus)
    frame = await trace_frame(bus, root.event_id)
    rows = {(r.event_id, r.consumer_group if isinstance(r.consumer_group, str) else None): r
            for r in frame.itertuples()}  # fmt: skip
    assert set(rows) == {(root.event_id, "notifier"), (a.event_id, "indexer"),
                         (b.event_id, "indexer"), (a1.event_id, "indexer"),
                         (late.event_id, None)}  # fmt: skip
    dead = rows[(root.event_id, "notifier")]
    assert (dead.status, dead.attempts) == ("dead", 3)
    assert "KeyError" in dead.last_error and not pd.isna(dead.failed_at)
    assert pd.isna(dead.acked_at)
    retried = rows[(a1.event_id, "indexer")]
    assert (retried.status, retried.attempts) == ("acked", 2)
    assert retried.latency_ms >= 25  # the retry waited retry_delay (50 ms, jitter to half)
    assert retried.acked_at >= retried.first_delivered_at >= retried.published_at
    once = rows[(a.event_id, "indexer")]
    assert (once.status, once.attempts) == ("acked", 1)
    assert pd.isna(once.last_error) and pd.isna(once.failed_at)
    assert list(frame.drop_duplicates("step")["event_id"]) == [
        root.event_id, a.event_id, b.event_id, a1.event_id, late.event_id]  # fmt: skip


async def test_plot_trace_marks_every_attempt_ack_and_dead_letter(bus: EventBus) -> None:
    root, *_ = await _run_groups(bus)
    frame = await trace_frame(bus, root.event_id)
    ax = plot_trace(frame)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    events = frame.drop_duplicates("step")
    assert labels == [f"{t} · {i[:8]}" for t, i in zip(events["event_type"], events["event_id"],
                                                       strict=True)]  # fmt: skip
    assert ax.yaxis_inverted()  # the first event on top

    def points(marker: str, filled: bool | None = None) -> int:
        total = 0
        for line in ax.get_lines():
            if line.get_marker() != marker:
                continue
            if filled is not None and (line.get_markerfacecolor() == "white") == filled:
                continue
            total += int(np.count_nonzero(~pd.isna(pd.Series(line.get_xdata(), dtype=object))))
        return total

    delivered = frame["consumer_group"].notna()
    assert points("X") == 1  # the notifier's dead letter
    assert points("s") == int(frame["acked_at"].notna().sum()) == 3
    assert points("|") == int((frame.loc[delivered, "attempts"] - 1).sum()) == 2 + 1
    assert points("o", filled=False) == int(delivered.sum()) == 4  # first deliveries
    assert points("o", filled=True) == len(events)  # a publish mark per event
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"indexer", "notifier", "dead-lettered", "acked"} <= set(legend)
    assert ax.get_xlabel() == "time (UTC)"


def test_plot_trace_says_what_it_needs_and_draws_an_empty_story() -> None:
    with pytest.raises(ValueError, match="trace_frame"):
        plot_trace(pd.DataFrame({"event_id": ["x"]}))


async def test_plot_trace_of_an_empty_story_says_so(bus: EventBus) -> None:
    ax = plot_trace(await trace_frame(bus, "nothing"))
    assert "no events" in ax.get_title()


async def test_find_events_looks_up_a_payload_field_and_filters_the_envelope(
    bus: EventBus,
) -> None:
    events = [_discovered("x"), _discovered("y"), _processed("x"),
              create_event(AssetDiscoveredEvent, source="mobile", asset_id="x", file_path="/m",
                           media_type="image")]  # fmt: skip
    await bus.publish_many(events)
    frame = await find_events(bus, **{"data.asset_id": "x"})
    assert list(frame["event_id"]) == [events[0].event_id, events[2].event_id, events[3].event_id]
    assert {"correlation_id", "causation_id", "data.asset_id", "data.file_path"} <= set(
        frame.columns
    )
    narrowed = await find_events(bus, event_type="asset.discovered", source="mobile",
                                 **{"data.asset_id": "x"})  # fmt: skip
    assert list(narrowed["event_id"]) == [events[3].event_id]
    both = await find_events(bus, **{"data.asset_id": "x", "data.media_type": "image"})
    assert list(both["event_id"]) == [events[0].event_id, events[3].event_id]
    assert len(await find_events(bus, 1, **{"data.asset_id": "x"})) == 1
    assert (await find_events(bus, **{"data.asset_id": "nobody"})).empty
    for bad in ({"asset_id": "x"}, {}, {"data.asset_id": "x", "colour": "red"}):
        with pytest.raises(ConfigError):
            await find_events(bus, **bad)


async def test_events_frame_shows_both_ids_and_old_events_as_their_own_story(
    bus: EventBus,
) -> None:
    root, a, b, a1 = _story()
    await bus.publish_many([root, a])
    await bus.store.append([NewEvent("old", "asset.processed", 1, "s", 1, '{"asset_id": "o"}')])
    frame = await events_frame(bus, progress=False)
    assert list(frame["correlation_id"]) == [root.event_id, root.event_id, "old"]
    assert list(frame["causation_id"].fillna("-")) == ["-", root.event_id, "-"]


async def test_jsonl_keeps_both_ids_and_files_without_them_import(
    bus: EventBus, tmp_path: Path
) -> None:
    root, a, b, a1 = _story()
    await bus.publish_many([root, a, a1])
    assert await export_jsonl(bus, tmp_path / "story.jsonl") == 3
    lines = [json.loads(line) for line in (tmp_path / "story.jsonl").read_text().splitlines()]
    assert [(r["correlation_id"], r["causation_id"]) for r in lines] == [
        (root.event_id, None), (root.event_id, root.event_id), (root.event_id, a.event_id)]  # fmt: skip
    config = EventStoreConfig(backend="memory", trim_interval_hours=None)
    async with EventBus(config) as other:
        assert await import_jsonl(other, tmp_path / "story.jsonl") == 3
        assert list((await trace_frame(other, root.event_id))["event_id"]) == [
            root.event_id, a.event_id, a1.event_id]  # fmt: skip
        old = {k: v for k, v in lines[1].items() if k not in ("correlation_id", "causation_id")}
        (tmp_path / "old.jsonl").write_text(json.dumps({**old, "event_id": "old-1"}) + "\n")
        assert await import_jsonl(other, tmp_path / "old.jsonl") == 1
        [stored] = await other.store.get_events(["old-1"])
        assert (stored.correlation_id, stored.causation_id) == (None, None)
        assert list((await trace_frame(other, "old-1"))["causation_id"].isna()) == [True]
        (tmp_path / "bad.jsonl").write_text(json.dumps({**old, "correlation_id": 7}) + "\n")
        with pytest.raises(Exception, match="correlation_id"):
            await import_jsonl(other, tmp_path / "bad.jsonl")


def test_the_sample_data_holds_workflow_stories_with_causes_before_effects() -> None:
    records = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    seen: dict[str, dict[str, object]] = {}
    chains = {"workflow.started": None, "asset.discovered": {"workflow.started"},
              "asset.processed": {"asset.discovered"}, "quality.assessed": {"asset.processed"},
              "workflow.completed": {"workflow.started", "asset.discovered", "asset.processed",
                                     "quality.assessed"}}  # fmt: skip
    chains["workflow.failed"] = chains["workflow.completed"]
    stories = 0
    for record in records:
        cause = record["causation_id"]
        if cause is None:  # a first event: a workflow, or a poison event on its own
            assert record["correlation_id"] == record["event_id"]
            stories += record["event_type"] == "workflow.started"
        else:
            parent = seen[cause]  # published before its effect
            assert record["correlation_id"] == parent["correlation_id"]
            assert parent["event_type"] in chains[record["event_type"]], record["event_type"]
            assert seen[record["correlation_id"]]["event_type"] == "workflow.started"
        seen[record["event_id"]] = record
    assert stories == sum(r["event_type"] == "workflow.started" for r in records) > 300


async def test_a_story_from_the_sample_data_traces_end_to_end(bus: EventBus) -> None:
    assert await import_jsonl(bus, SAMPLE) > 3000
    [failed] = [r for r in map(json.loads, SAMPLE.read_text().splitlines())
                if r["event_type"] == "workflow.failed"][:1]  # fmt: skip
    frame = await trace_frame(bus, event_id=failed["event_id"])
    types = list(frame["event_type"])
    assert types[0] == "workflow.started" and types[-1] == "workflow.failed"
    assert (frame["correlation_id"] == failed["correlation_id"]).all()
