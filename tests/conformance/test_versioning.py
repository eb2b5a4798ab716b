"""Schema versions on consume and replay: chained migrations, newer versions, corrupt payloads."""

from __future__ import annotations

from dataclasses import field
from typing import Any, Protocol, runtime_checkable

from eventkit import BaseEvent, EventBus, EventMigration, register_migration, versioned_event
from eventkit.stores.base import NewEvent
from tests.helpers import Recorder, discovered, wait_until


@runtime_checkable
class QualityV3Fields(Protocol):
    """The payload fields of quality.assessed at version 3 (the class _define_quality_v2_v3 returns)."""

    asset_id: str
    score_pct: float
    issues: list[str]
    provider: str
    confidence: float


def _define_quality_v2_v3() -> type[BaseEvent]:
    @versioned_event(version=2, event_type="quality.assessed", description="provider tracking")
    class QualityV2(BaseEvent):
        asset_id: str
        score: float
        issues: list[str] = field(default_factory=list)
        provider: str = "unknown"
        confidence: float = 1.0

    @versioned_event(version=3, event_type="quality.assessed", description="score out of 100")
    class QualityV3(BaseEvent):
        asset_id: str
        score_pct: float
        issues: list[str] = field(default_factory=list)
        provider: str = "unknown"
        confidence: float = 1.0

    class V1ToV2(EventMigration):
        from_version = 1
        to_version = 2

        def migrate(self, event_data: dict[str, Any]) -> dict[str, Any]:
            return {**event_data, "provider": "brisque", "confidence": 0.8}

    class V2ToV3(EventMigration):
        event_type = "quality.assessed"

        # read-only properties; the setters only exist because EventMigration declares
        # from_version/to_version as writeable attributes, which a property must not narrow
        @property
        def from_version(self) -> int:
            return 2

        @from_version.setter
        def from_version(self, value: int) -> None:
            raise AttributeError("from_version is read-only")

        @property
        def to_version(self) -> int:
            return 3

        @to_version.setter
        def to_version(self, value: int) -> None:
            raise AttributeError("to_version is read-only")

        def migrate(self, event_data: dict[str, Any]) -> dict[str, Any]:
            event_data["score_pct"] = event_data.pop("score") * 100
            return event_data

    register_migration(V1ToV2(), event_type="quality.assessed")
    register_migration(V2ToV3)
    return QualityV3


def _stored_v1(event_id: str, score: float) -> NewEvent:
    return NewEvent(event_id, "quality.assessed", 1, "old-service", 1_700_000_000_000,
                    f'{{"asset_id": "a-{event_id}", "score": {score}, "issues": []}}')  # fmt: skip


async def test_v1_events_are_migrated_through_v2_to_v3_on_consume(bus: EventBus) -> None:
    await bus.store.append([_stored_v1("e1", 0.5), _stored_v1("e2", 0.25)])
    latest = _define_quality_v2_v3()
    rec = Recorder()
    await bus.subscribe_persistent(["quality.assessed"], "q", "w", rec)
    assert await bus.wait_idle(timeout=10)
    assert [type(e) for e in rec.events] == [latest, latest]
    first = rec.events[0]
    assert isinstance(first, QualityV3Fields)
    assert (first.score_pct, first.provider, first.confidence, first.version) == (
        50.0,
        "brisque",
        0.8,
        3,
    )
    assert first.event_id == "e1" and first.source == "old-service"


async def test_replay_migrates_too(bus: EventBus) -> None:
    await bus.store.append([_stored_v1("r1", 0.9)])
    _define_quality_v2_v3()
    seen: list[BaseEvent] = []
    assert await bus.replay_events(["quality.assessed"], seen.append) == 1
    assert seen[0].score_pct == 90.0  # type: ignore[attr-defined]


async def test_newer_stored_version_goes_to_dlq_at_once(bus: EventBus) -> None:
    await bus.store.append([
        NewEvent("future", "asset.discovered", 7, "new-service", 1_700_000_000_000,
                 '{"asset_id": "x", "file_path": "/x", "media_type": "image"}'),
    ])  # fmt: skip
    rec = Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "g", "w", rec, max_retries=5)
    await wait_until(lambda: bus.get_pending_events("g"), timeout=10)
    [letter] = await bus.store.get_pending_events("g")
    assert letter.attempts == 1  # no retries: a retry cannot fix it
    assert "UnsupportedVersionError" in letter.last_error
    assert "version 7" in letter.last_error and "version 1" in letter.last_error
    assert type(letter.event).__name__ == "Event"  # cannot be typed: generic, with its data
    assert letter.event.data["asset_id"] == "x"  # type: ignore[attr-defined]
    assert rec.events == []


async def test_gap_in_the_chain_goes_to_dlq_with_the_reason(bus: EventBus) -> None:
    @versioned_event(version=3, event_type="quality.assessed")
    class QualityV3Only(BaseEvent):
        asset_id: str
        score: float

    await bus.store.append([_stored_v1("gap", 0.1)])
    await bus.subscribe_persistent(["quality.assessed"], "g", "w", Recorder())
    await wait_until(lambda: bus.get_pending_events("g"), timeout=10)
    [letter] = await bus.store.get_pending_events("g")
    assert "no migration registered from version 1" in letter.last_error


async def test_corrupt_payload_goes_to_dlq_and_the_group_goes_on(bus: EventBus) -> None:
    good = discovered(1)
    await bus.store.append([
        NewEvent("corrupt", "asset.discovered", 1, "s", 1_700_000_000_000, "{not json"),
    ])  # fmt: skip
    await bus.publish(good)
    rec = Recorder()
    await bus.subscribe_persistent(["asset.discovered"], "g", "w", rec)
    assert await bus.wait_idle(timeout=10)
    assert rec.ids == [good.event_id]
    [letter] = await bus.store.get_pending_events("g")
    assert letter.event_id == "corrupt" and "SerializationError" in letter.last_error
    assert letter.event.data == {"_raw": "{not json"}  # type: ignore[attr-defined]


async def test_unknown_event_type_is_delivered_as_generic_event(bus: EventBus) -> None:
    await bus.store.append([
        NewEvent("u1", "billing.charged", 4, "billing", 1_700_000_000_000, '{"amount": 12}'),
    ])  # fmt: skip
    rec = Recorder()
    await bus.subscribe_persistent(["billing.charged"], "g", "w", rec)
    assert await bus.wait_idle(timeout=10)
    [event] = rec.events
    assert (event.event_type, event.version, event.data) == ("billing.charged", 4, {"amount": 12})  # type: ignore[attr-defined]
