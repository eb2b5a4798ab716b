"""Correlation and causation in the envelope, and looking events up by story or payload field."""

from __future__ import annotations

import asyncio
import json

import pytest

from eventkit import BaseEvent, EventBus, create_event
from eventkit.codec import decode, encode
from eventkit.errors import ConfigError
from eventkit.events import AssetProcessedEvent, QualityAssessedEvent, caused_by
from eventkit.records import correlation_of
from eventkit.stores.base import EventStore, NewEvent
from tests.helpers import discovered, wait_until


def _processed(asset_id: str, **envelope: str) -> AssetProcessedEvent:
    return create_event(AssetProcessedEvent, source="pipeline", asset_id=asset_id, **envelope)


async def test_a_first_event_starts_its_own_story(bus: EventBus) -> None:
    event = discovered(1)
    assert (event.correlation_id, event.causation_id) == (event.event_id, None)
    await bus.publish(event)
    [stored] = await bus.store.read()
    # its own id is not stored twice: None, read back as the event's id
    assert (stored.correlation_id, stored.causation_id) == (None, None)
    assert correlation_of(stored) == event.event_id
    assert decode(stored) == event
    assert [s.event_id for s in await bus.store.correlated(event.event_id)] == [event.event_id]


async def test_correlation_and_causation_given_by_hand_are_stored_and_read_back(
    bus: EventBus,
) -> None:
    event = _processed("a1", correlation_id="story-7", causation_id="cause-3")
    await bus.publish(event)
    [stored] = await bus.store.read()
    assert (stored.correlation_id, stored.causation_id) == ("story-7", "cause-3")
    again = decode(stored)
    assert (again.correlation_id, again.causation_id) == ("story-7", "cause-3")
    assert again == event


async def test_events_published_inside_handlers_continue_the_story(bus: EventBus) -> None:
    """discovered -> processed (by a handler) -> assessed (by a handler of processed)."""
    seen: list[BaseEvent] = []

    async def handler(event: BaseEvent) -> None:
        seen.append(event)
        if event.event_type == "asset.discovered":
            await bus.publish(_processed(event.asset_id))  # type: ignore[attr-defined]
        elif event.event_type == "asset.processed":
            assessed = create_event(QualityAssessedEvent, asset_id="a1", score=0.9)
            await bus.publish(assessed)

    await bus.subscribe_persistent(["*"], "story", "w1", handler)
    root = discovered(1)
    await bus.publish(root)
    await wait_until(lambda: len(seen) == 3)
    assert await bus.wait_idle(timeout=10)
    _, processed, assessed = seen
    assert (processed.correlation_id, processed.causation_id) == (root.event_id, root.event_id)
    assert (assessed.correlation_id, assessed.causation_id) == (
        root.event_id,
        processed.event_id,
    )
    # the consumer's context is restored after each handler: a later publish starts a new story
    later = discovered(2)
    assert (later.correlation_id, later.causation_id) == (later.event_id, None)


async def test_tasks_a_handler_starts_keep_its_event_while_the_batch_goes_on(
    bus: EventBus,
) -> None:
    """A handler's background task publishes after the consumer moved on to later events of the
    same batch: it still continues the story of the event whose handler started it."""
    roots = [discovered(i) for i in range(4)]
    await bus.publish_many(roots)  # one batch: the handlers run one after the other
    started: list[asyncio.Task[None]] = []

    async def publish_later(asset_id: str) -> None:
        await asyncio.sleep(0.05)  # the consumer handles the next events meanwhile
        await bus.publish(_processed(asset_id))

    async def handler(event: BaseEvent) -> None:
        if event.event_type == "asset.discovered":
            started.append(asyncio.create_task(publish_later(event.asset_id)))  # type: ignore[attr-defined]

    await bus.subscribe_persistent(["asset.discovered"], "spawner", "w1", handler, batch_size=10)
    await wait_until(lambda: len(started) == 4)
    await asyncio.gather(*started)
    stored = await bus.store.read(event_types=["asset.processed"])
    by_asset = {decode(s).asset_id: s for s in stored}  # type: ignore[attr-defined]
    for root in roots:
        made = by_asset[root.asset_id]
        assert (correlation_of(made), made.causation_id) == (root.event_id, root.event_id)


async def test_a_replay_handler_continues_the_story_of_the_replayed_event(bus: EventBus) -> None:
    root = discovered(3)
    await bus.publish(root)
    made: list[BaseEvent] = []

    def handler(event: BaseEvent) -> None:
        made.append(_processed("a3"))

    assert await bus.replay_events(["asset.discovered"], handler) == 1
    [child] = made
    assert (child.correlation_id, child.causation_id) == (root.event_id, root.event_id)


async def test_by_hand_values_win_over_the_handled_event_and_caused_by_sets_them(
    bus: EventBus,
) -> None:
    parent = _processed("p", correlation_id="story-p")
    with caused_by(parent):
        inherited = _processed("x")
        own_cause = _processed("y", causation_id="elsewhere")
        placed = _processed("z", correlation_id="other-story")
    assert (inherited.correlation_id, inherited.causation_id) == ("story-p", parent.event_id)
    assert (own_cause.correlation_id, own_cause.causation_id) == ("story-p", "elsewhere")
    assert (placed.correlation_id, placed.causation_id) == ("other-story", None)
    outside = _processed("w")
    assert (outside.correlation_id, outside.causation_id) == (outside.event_id, None)
    await bus.publish_many([inherited, own_cause, placed])
    stored = await bus.store.read()
    assert [decode(s) for s in stored] == [inherited, own_cause, placed]


async def test_events_stored_without_correlation_read_as_their_own_story(
    store: EventStore,
) -> None:
    """Records of older eventkit (or an old export) have no correlation: each is its own story."""
    old = NewEvent("old-1", "asset.processed", 1, "legacy", 1_700_000_000_000, '{"asset_id": "o"}')
    await store.append([old])
    [stored] = await store.read()
    assert (stored.correlation_id, stored.causation_id) == (None, None)  # kept as given
    event = decode(stored)
    assert (event.event_id, event.correlation_id, event.causation_id) == ("old-1", "old-1", None)
    assert [s.event_id for s in await store.correlated("old-1")] == ["old-1"]


async def test_correlated_returns_one_story_in_publish_order(store: EventStore) -> None:
    root = discovered(1)
    with caused_by(root):
        child = _processed("a1")
    other = discovered(2)
    with caused_by(child):
        grandchild = create_event(QualityAssessedEvent, asset_id="a1", score=0.5)
    await store.append([encode(e) for e in (root, other, child, grandchild)])
    story = await store.correlated(root.event_id)
    assert [s.event_id for s in story] == [root.event_id, child.event_id, grandchild.event_id]
    assert [s.causation_id for s in story] == [None, root.event_id, child.event_id]
    assert [s.event_id for s in await store.correlated(other.event_id)] == [other.event_id]
    assert await store.correlated("no-such-story") == []


async def test_a_dead_letter_and_its_redelivery_keep_the_envelope(bus: EventBus) -> None:
    event = _processed("dl", correlation_id="story-dl", causation_id="cause-dl")
    attempts: list[BaseEvent] = []

    async def failing(received: BaseEvent) -> None:
        attempts.append(received)
        raise RuntimeError("boom")

    await bus.subscribe_persistent(["asset.processed"], "g", "w", failing, max_retries=0,
                                   retry_delay=0.01)  # fmt: skip
    await bus.publish(event)
    await wait_until(lambda: len(attempts) == 1)
    assert await bus.wait_idle("g", timeout=10)
    [letter] = await bus.store.get_pending_events("g")
    assert (letter.stored.correlation_id, letter.stored.causation_id) == ("story-dl", "cause-dl")
    assert letter.event == event
    assert await bus.replay_dlq("g") == 1
    await wait_until(lambda: len(attempts) == 2)
    assert attempts[1] == event


PAYLOADS = [
    {"asset_id": "abc", "n": 1, "flag": True, "meta": {"w": 5}, "none": None},
    {"asset_id": "abd", "n": "1", "flag": 1, "meta": {"w": "5"}},
    {"asset_id": "abc", "n": 1.0, "flag": False, "meta": 5},
    {"asset_id": {"abc": 1}, "none": "null"},
]


async def _with_payloads(store: EventStore) -> list[str]:
    ids = [f"p{i}" for i in range(len(PAYLOADS))]
    await store.append([
        NewEvent(event_id, "t.payload", 1, "s", 1_700_000_000_000 + i, json.dumps(payload))
        for i, (event_id, payload) in enumerate(zip(ids, PAYLOADS, strict=True))
    ])  # fmt: skip
    return ids


@pytest.mark.parametrize("indexed", [False, True], ids=["scan", "indexed"])
async def test_find_matches_a_payload_field_as_json_sees_it(
    store: EventStore, indexed: bool
) -> None:
    await _with_payloads(store)
    if indexed:
        for path in ("asset_id", "n", "flag", "meta.w", "none"):
            await store.index_payload_field(path)

    async def found(path: str, value: object, limit: int | None = None) -> list[str]:
        return [s.event_id for s in await store.find(path, value, limit=limit)]  # type: ignore[arg-type]

    assert await found("asset_id", "abc") == ["p0", "p2"]  # a string, not an object's text
    assert await found("asset_id", "abc", limit=1) == ["p0"]
    assert await found("n", 1) == ["p0", "p2"]  # 1 == 1.0; the text "1" is not a number
    assert await found("n", "1") == ["p1"]
    assert await found("flag", True) == ["p0"]  # a bool is not the number 1
    assert await found("flag", 1) == ["p1"]
    assert await found("flag", False) == ["p2"]
    assert await found("meta.w", 5) == ["p0"]  # nested; "meta" of p2 is a number, no field
    assert await found("none", None) == ["p0"]  # a JSON null, not a missing field
    assert await found("asset_id", "nothing") == []


async def test_find_refuses_a_field_path_it_cannot_read(store: EventStore) -> None:
    for bad in ("", "a..b", "a b", "x'); DROP TABLE events; --", "data.$x"):
        with pytest.raises(ConfigError):
            await store.find(bad, "v")
        with pytest.raises(ConfigError):
            await store.index_payload_field(bad)
    with pytest.raises(ConfigError):
        await store.find("asset_id", ["a list"])  # type: ignore[arg-type]


async def test_an_indexed_field_finds_events_appended_after_the_index(store: EventStore) -> None:
    await store.index_payload_field("asset_id")
    await asyncio.gather(*(store.append([encode(discovered(i))]) for i in range(5)))
    assert [s.event_id for s in await store.find("asset_id", "asset-3")] == [
        e.event_id for e in await store.read() if json.loads(e.data)["asset_id"] == "asset-3"
    ]
