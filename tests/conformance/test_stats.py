"""Stats: one shape on every backend, figures that live in the store."""

from __future__ import annotations

from eventkit import EventBus
from eventkit.stores.base import GroupStats, StoreStats
from tests.helpers import Recorder, discovered, wait_until


async def test_stats_shape_and_figures(make_bus) -> None:  # type: ignore[no-untyped-def]
    bus = await make_bus()
    ok, flaky = Recorder(), Recorder(fail_times=1)
    await bus.subscribe_persistent(["asset.discovered"], "ok", "w1", ok)
    await bus.subscribe_persistent(["asset.discovered"], "ok", "w2", Recorder())
    await bus.subscribe_persistent(
        ["asset.discovered"], "flaky", "w1", flaky, max_retries=0, retry_delay=0.01
    )
    await bus.publish_many([discovered(i) for i in range(10)])
    assert await bus.wait_idle(timeout=10)
    stats = await bus.get_stats()
    assert set(stats["store"]) >= set(StoreStats.__annotations__)
    assert set(stats["groups"]) == {"ok", "flaky"}
    for figures in stats["groups"].values():
        assert set(figures) >= set(GroupStats.__annotations__)
        assert all(isinstance(v, int) for v in figures.values())
    assert stats["store"]["backend"] == bus.store.backend
    assert stats["store"]["total_events"] == 10
    assert stats["store"]["pending_events"] == 0
    assert stats["store"]["dlq_events"] == 10
    assert stats["groups"]["ok"] == {
        "lag": 0, "in_flight": 0, "pending": 0, "dlq": 0, "delivered": 10, "acked": 10, "retried": 0,
        "consumers": 2,
    }  # fmt: skip
    assert stats["groups"]["flaky"]["dlq"] == 10
    assert stats["groups"]["flaky"]["acked"] == 0

    # another bus on the same store sees the same figures
    other = await make_bus()
    other_stats = await other.get_stats()
    assert other_stats["store"] == stats["store"]
    assert other_stats["groups"] == stats["groups"]


async def test_lag_and_pending_count_unread_and_in_flight(bus: EventBus) -> None:
    await bus.store.ensure_group("idle", ["asset.discovered"])
    await bus.publish_many([discovered(i) for i in range(7)])
    claims = await bus.store.claim("idle", "w", limit=3, lease_ms=60_000)
    stats = await bus.get_stats()
    assert stats["groups"]["idle"]["lag"] == 4
    assert stats["groups"]["idle"]["in_flight"] == stats["groups"]["idle"]["pending"] == 3
    assert stats["store"]["in_flight_events"] == stats["store"]["pending_events"] == 3
    assert await bus.dlq_size("idle") == await bus.get_pending_events("idle") == 0
    await bus.store.ack(claims)
    stats = await bus.get_stats()
    assert (stats["groups"]["idle"]["pending"], stats["groups"]["idle"]["acked"]) == (0, 3)


async def test_deliveries_record_each_event_per_group(bus: EventBus) -> None:
    rec = Recorder(fail_times=1)
    await bus.subscribe_persistent(["*"], "g", "w", rec, retry_delay=0.01)
    events = [discovered(i) for i in range(3)]
    await bus.publish_many(events)
    assert await bus.wait_idle(timeout=10)
    await wait_until(lambda: len(rec.ids) == 3)
    records = await bus.store.deliveries("g")
    assert [r.event_id for r in records] == [e.event_id for e in events]
    for record in records:
        assert record.status == "acked" and record.attempts == 2
        assert record.consumer_group == "g" and record.consumer_name == "w"
        assert record.event_type == "asset.discovered"
        assert record.acked_ms is not None
        assert record.published_ms <= record.first_delivered_ms <= record.acked_ms
        assert "flaky failure" in (record.last_error or "")
    page = await bus.store.deliveries("g", after_position=records[0].position, limit=1)
    assert [r.event_id for r in page] == [events[1].event_id]
