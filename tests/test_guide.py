"""The migration guide's examples (reference/persistence-migration-guide.md), run unchanged but for
their imports (alicemultiverse.events.* -> eventkit), on every backend chosen through the env."""

from __future__ import annotations

from typing import Any

import pytest

from tests.blocks import run_block

QUICK_START = """
from eventkit import EnhancedEventBus
from eventkit import create_event
from eventkit.events import AssetDiscoveredEvent

# Create enhanced bus (uses SQLite by default)
bus = EnhancedEventBus()
await bus.initialize()

# Publish events as before
event = create_event(
    AssetDiscoveredEvent,
    source="scanner",
    asset_id="abc123",
    file_path="/path/to/image.jpg",
    media_type="image",
    file_size=1024000,
    metadata={"width": 1920, "height": 1080}
)
await bus.publish(event)
"""

PERSISTENT_SUBSCRIPTIONS = """
# Old way
subscriber = MyEventHandler(["asset.discovered"])
bus.subscribe(subscriber)

# New way - with delivery guarantees
subscription_id = await bus.subscribe_persistent(
    event_types=["asset.discovered"],
    consumer_group="asset-processors",
    consumer_name="worker-1",
    handler=subscriber,
    batch_size=10,
    max_retries=3
)
"""

EVENT_VERSIONING = """
from eventkit.versioning import versioned_event

@versioned_event(version=2, event_type="asset.discovered", description="Added tags field")
class AssetDiscoveredEventV2(BaseEvent):
    tags: List[str] = field(default_factory=list)
    # ... other fields
"""

PHASE_2 = """
# Asset processor that must not miss events
await bus.subscribe_persistent(
    event_types=["asset.discovered", "asset.processed"],
    consumer_group="critical-processors",
    consumer_name=f"worker-{worker_id}",
    handler=asset_processor
)
"""

DLQ_MONITORING = """
# Check for failed events
dlq_count = await bus.get_pending_events("critical-processors")
if dlq_count > 0:
    # Investigate and replay if needed
    replayed = await bus.replay_dlq("critical-processors")
"""

PHASE_3_VERSION = """
# When adding fields or changing structure
@versioned_event(version=2, event_type="quality.assessed", 
                 description="Added provider tracking")
class QualityAssessedEventV2(BaseEvent):
    provider: str  # New field
    confidence: float  # New field
    # ... existing fields
    asset_id: str
    score: float
    issues: List[str] = field(default_factory=list)
"""

PHASE_3_MIGRATION = """
from eventkit.versioning import EventMigration

class QualityAssessedV1ToV2(EventMigration):
    @property
    def from_version(self) -> int:
        return 1
    
    @property
    def to_version(self) -> int:
        return 2
    
    def migrate(self, event_data: Dict[str, Any]) -> Dict[str, Any]:
        migrated = event_data.copy()
        migrated["provider"] = "brisque"  # Default for v1
        migrated["confidence"] = 0.8
        return migrated
"""

REPLAY = """
# Replay events for debugging or recovery
replayed = await bus.replay_events(
    event_types=["asset.processed"],
    handler=debug_handler,
    start_time=datetime.now() - timedelta(days=1),
    limit=100
)
"""

CONSUMER_GROUPS = """
# Multiple workers processing same queue
for i in range(3):
    await bus.subscribe_persistent(
        event_types=["workflow.started"],
        consumer_group="workflow-executors",
        consumer_name=f"executor-{i}",
        handler=workflow_executor
    )
"""

MONITORING = """
# Get statistics
stats = await bus.get_stats()
print(f"Total events: {stats['store']['total_events']}")
print(f"Pending: {stats['store']['pending_events']}")
print(f"DLQ: {stats['store']['dlq_events']}")

# Trim old events
trimmed = await bus.trim_old_events(max_age_days=30)
"""

TROUBLESHOOTING = """
if not bus._initialized:
    await bus.initialize()

# List failed events
pending = await bus.store.get_pending_events("my-group")
for event in pending:
    print(f"Failed: {event.event.event_id} - {event.last_error}")
"""


class MyEventHandler:
    """The guide's subscribers: event_types plus an async handle_event."""

    def __init__(self, event_types: list[str], fail: bool = False) -> None:
        self.event_types = event_types
        self.seen: list[Any] = []
        self.fail = fail

    async def handle_event(self, event: Any) -> None:
        if self.fail:
            raise RuntimeError("downstream service unavailable")
        self.seen.append(event)


def _namespace() -> dict[str, Any]:
    from dataclasses import field
    from datetime import datetime, timedelta
    from typing import Any  # noqa: UP035 - the guide's own spelling

    from eventkit import BaseEvent

    return {
        "MyEventHandler": MyEventHandler, "BaseEvent": BaseEvent, "field": field, "List": list,
        "Dict": dict, "Any": Any, "datetime": datetime, "timedelta": timedelta,
    }  # fmt: skip


@pytest.fixture
def guide_env(backend: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("EVENT_STORE_BACKEND", backend.name)
    monkeypatch.setenv("EVENT_STORE_PATH", str(backend.path))
    monkeypatch.setenv("EVENT_STORE_NAMESPACE", backend.namespace)
    if backend.redis_url:
        monkeypatch.setenv("REDIS_URL", backend.redis_url)
    return backend


async def test_quick_start_subscriptions_groups_dlq_replay_and_monitoring(
    guide_env: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ns = _namespace()
    await run_block(QUICK_START, ns)
    bus = ns["bus"]
    try:
        assert bus.initialized and bus.store.backend == guide_env.name
        await run_block(PERSISTENT_SUBSCRIPTIONS, ns)
        assert await bus.wait_idle("asset-processors", timeout=10)
        assert [e.asset_id for e in ns["subscriber"].seen] == ["abc123"]  # the backlog
        assert ns["subscription_id"]

        ns["worker_id"] = 7
        ns["asset_processor"] = MyEventHandler(["asset.discovered"], fail=True)
        await run_block(PHASE_2, ns)
        # the guide's default max_retries=3 with 0.5 s backoff: ~3.5 s to reach the DLQ
        await _wait_for_dlq(bus, "critical-processors", 1)
        ns["asset_processor"].fail = False
        await run_block(DLQ_MONITORING, ns)
        assert ns["dlq_count"] == 1 and ns["replayed"] == 1
        assert await bus.wait_idle("critical-processors", timeout=10)
        assert len(ns["asset_processor"].seen) == 1

        ns["workflow_executor"] = MyEventHandler(["workflow.started"])
        await run_block(CONSUMER_GROUPS, ns)
        stats = await bus.get_stats()
        assert stats["groups"]["workflow-executors"]["consumers"] == 3

        from eventkit.events import AssetProcessedEvent

        await bus.publish(AssetProcessedEvent(source="processor", asset_id="abc123"))
        debug = MyEventHandler(["asset.processed"])
        ns["debug_handler"] = debug
        await run_block(REPLAY, ns)
        assert ns["replayed"] == 1 and debug.seen[0].asset_id == "abc123"

        await run_block(MONITORING, ns)
        printed = capsys.readouterr().out
        assert "Total events: 2" in printed and "DLQ: 0" in printed
        assert ns["trimmed"] == 0

        await run_block(TROUBLESHOOTING, ns)
        assert ns["pending"] == []
    finally:
        await bus.close()


async def _wait_for_dlq(bus: Any, group: str, size: int) -> None:
    from tests.helpers import wait_until

    async def reached() -> bool:
        return bool(await bus.get_pending_events(group) == size)

    await wait_until(reached, timeout=15)


async def test_versioning_and_migration_examples(guide_env: Any) -> None:
    from eventkit import register_migration
    from eventkit.stores.base import NewEvent

    ns = _namespace()
    await run_block(QUICK_START, ns)
    bus = ns["bus"]
    try:
        await run_block(EVENT_VERSIONING, ns)
        v2 = ns["AssetDiscoveredEventV2"]
        assert v2(tags=["x"]).version == 2 and v2.event_type == "asset.discovered"

        await bus.store.append([NewEvent("old-1", "quality.assessed", 1, "legacy", 1_700_000_000_000,
                                         '{"asset_id": "a1", "score": 0.7, "issues": []}')])  # fmt: skip
        await run_block(PHASE_3_VERSION, ns)
        await run_block(PHASE_3_MIGRATION, ns)
        register_migration(ns["QualityAssessedV1ToV2"](), event_type="quality.assessed")
        handler = MyEventHandler(["quality.assessed"])
        await bus.subscribe_persistent(["quality.assessed"], "quality", "w", handler)
        assert await bus.wait_idle("quality", timeout=10)
        [event] = handler.seen
        assert type(event) is ns["QualityAssessedEventV2"]
        assert (event.provider, event.confidence, event.score) == ("brisque", 0.8, 0.7)
    finally:
        await bus.close()


def test_high_memory_config_example() -> None:
    from eventkit import EventStoreConfig

    config = EventStoreConfig(
        max_events=50000,
        trim_interval_hours=6
    )  # fmt: skip
    assert (config.backend, config.max_events, config.trim_interval_hours) == ("sqlite", 50000, 6)
