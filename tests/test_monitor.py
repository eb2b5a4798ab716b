"""The live Monitor on a real SQLite store that a second bus (another process's work, as far as
the monitor knows) publishes to and consumes from: lag up then down, throughput, sparklines,
Pause/Resume clicked from code, a closed bus, a failing store, escaped group names."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ipywidgets as widgets
import pytest

from eventkit import EventBus, EventStoreConfig
from eventkit.errors import ConfigError
from eventkit.live import Sampler
from eventkit.widgets import Monitor
from eventkit.widgets._base import CLOSED_MESSAGE
from eventkit.widgets.monitor import HIDDEN_MESSAGE, PAUSED_MESSAGE
from tests.helpers import discovered, wait_until

SCRIPT = "<script>alert('x')</script>"
EVERY = 0.05


def _config(path: Path) -> EventStoreConfig:
    return EventStoreConfig(
        backend="sqlite", path=path, poll_interval_seconds=0.05, trim_interval_hours=None
    )


@pytest.fixture
async def buses(tmp_path: Path) -> AsyncIterator[tuple[EventBus, EventBus]]:
    """The notebook's bus (watched by the monitor) and a worker's bus, on one SQLite file."""
    notebook, worker = (
        EventBus(_config(tmp_path / "events.db")),
        EventBus(_config(tmp_path / "events.db")),
    )
    await notebook.initialize()
    await worker.initialize()
    yield notebook, worker
    await worker.close(timeout=1.0)
    await notebook.close(timeout=1.0)


@pytest.fixture
def monitors() -> Iterator[list[Monitor]]:
    made: list[Monitor] = []
    yield made
    for monitor in made:
        monitor.close()


def html_values(widget: widgets.Widget) -> Iterator[str]:
    if isinstance(widget, widgets.HTML):
        yield widget.value
    for child in getattr(widget, "children", ()):
        yield from html_values(child)


def row(monitor: Monitor, group: str) -> object | None:
    return next((r for r in monitor.rows if r.group == group), None)


async def handled(_: object) -> None:
    return None


async def test_monitor_sees_another_bus_lag_go_up_then_down_with_throughput(
    buses: tuple[EventBus, EventBus], monitors: list[Monitor]
) -> None:
    notebook, worker = buses
    sub = await worker.subscribe_persistent(["*"], "indexer", "w1", handled)
    await worker.unsubscribe_persistent(sub)  # the group stays, with no one reading it
    monitor = Monitor(notebook, every=EVERY)
    monitors.append(monitor)
    assert monitor.running and monitor.pause_button.description == "Pause"

    await worker.publish_many([discovered(i) for i in range(30)])
    await wait_until(lambda: getattr(row(monitor, "indexer"), "lag", None) == 30)
    lag_seen = len(monitor.trend("indexer").lag)

    await worker.subscribe_persistent(["*"], "indexer", "w1", handled)
    assert await worker.wait_idle("indexer", timeout=20)
    await wait_until(lambda: getattr(row(monitor, "indexer"), "acked", None) == 30)
    await wait_until(lambda: len(monitor.trend("indexer").lag) > lag_seen + 2)

    lags = [s.stats["groups"]["indexer"]["lag"] for s in monitor.samples]
    assert 30 in lags and lags[-1] == 0
    assert lags.index(30) < len(lags) - 1 - lags[::-1].index(0)  # up first, then down
    trend = monitor.trend("indexer")
    assert trend.lag == lags
    assert max(trend.throughput) > 0 and len(trend.throughput) == len(lags) - 1
    assert all(isinstance(t, datetime) and t.tzinfo is UTC for t, _ in monitor.samples)
    await wait_until(lambda: getattr(row(monitor, "indexer"), "consumers", None) == 1)
    table = monitor.table.value
    assert "indexer" in table and table.count("<svg") == 2 and "<polyline" in table
    assert "UTC" in monitor.header.value and "30 events in the store" in monitor.header.value


async def test_pause_stops_sampling_refresh_samples_once_and_resume_goes_on(
    buses: tuple[EventBus, EventBus], monitors: list[Monitor]
) -> None:
    notebook, worker = buses
    await worker.subscribe_persistent(["*"], "indexer", "w1", handled)
    monitor = Monitor(notebook, every=EVERY)
    monitors.append(monitor)
    await wait_until(lambda: len(monitor.samples) >= 2)

    monitor.pause_button.click()
    await monitor.wait()
    assert not monitor.running
    assert monitor.pause_button.description == "Resume"
    assert monitor.status_text == PAUSED_MESSAGE
    paused_at = len(monitor.samples)
    await asyncio.sleep(10 * EVERY)
    assert len(monitor.samples) == paused_at

    await monitor.refresh()  # one sample now, though paused
    assert len(monitor.samples) == paused_at + 1 and not monitor.running

    monitor.pause_button.click()
    assert monitor.running and monitor.pause_button.description == "Pause"
    await wait_until(lambda: len(monitor.samples) >= paused_at + 3)


async def test_closing_the_bus_stops_the_monitor_with_a_status_line_and_no_exception(
    buses: tuple[EventBus, EventBus], monitors: list[Monitor]
) -> None:
    notebook, _ = buses
    monitor = Monitor(notebook, every=EVERY)
    monitors.append(monitor)
    await wait_until(lambda: len(monitor.samples) >= 1)
    await notebook.close()
    await wait_until(lambda: not monitor.running)
    await monitor.wait()
    assert monitor.bus_gone and monitor.status_text == CLOSED_MESSAGE
    assert "run the notebook's setup cell again" in monitor.status_text
    assert monitor.errors == [CLOSED_MESSAGE]  # nothing else went wrong on the way
    assert monitor.pause_button.disabled
    await monitor.refresh()  # raises nothing either
    monitor.start()
    assert not monitor.running and monitor.status_text == CLOSED_MESSAGE


async def test_a_failing_store_shows_in_the_status_line_and_the_monitor_keeps_trying(
    buses: tuple[EventBus, EventBus], monitors: list[Monitor]
) -> None:
    notebook, _ = buses
    monitor = Monitor(notebook, every=EVERY)
    monitors.append(monitor)
    await wait_until(lambda: len(monitor.samples) >= 1)
    await notebook.store.close()  # the store goes away under an open bus
    await wait_until(lambda: "Reading the store failed" in monitor.status_text)
    assert "trying again in" in monitor.status_text and monitor.running
    before = len(monitor.samples)
    await notebook.store.open()
    await wait_until(lambda: monitor.status_text.startswith("The store answers again"))
    await wait_until(lambda: len(monitor.samples) > before)
    assert monitor.running


async def test_group_names_are_escaped_everywhere(
    buses: tuple[EventBus, EventBus], monitors: list[Monitor]
) -> None:
    notebook, worker = buses
    await worker.subscribe_persistent(["*"], SCRIPT, "w1", handled)
    await worker.publish(discovered(1))
    assert await worker.wait_idle(SCRIPT, timeout=20)
    monitor = Monitor(notebook, every=EVERY, start=False)
    monitors.append(monitor)
    await monitor.refresh()
    await monitor.refresh()
    assert [r.group for r in monitor.rows] == [SCRIPT]
    markup = "".join(html_values(monitor))
    assert "<script>" not in markup
    assert markup.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 3  # cell, 2 titles


async def test_a_monitor_no_longer_shown_pauses_and_resumes_when_shown_again(
    buses: tuple[EventBus, EventBus], monitors: list[Monitor]
) -> None:
    notebook, _ = buses
    monitor = Monitor(notebook, every=EVERY)
    monitors.append(monitor)
    monitor._view_count = 1  # what the front end reports as views come and go
    monitor._view_count = 0
    await monitor.wait()
    assert not monitor.running and monitor.status_text == HIDDEN_MESSAGE
    monitor._view_count = 1
    assert monitor.running


async def test_close_stops_sampling(buses: tuple[EventBus, EventBus]) -> None:
    notebook, _ = buses
    monitor = Monitor(notebook, every=EVERY)
    await wait_until(lambda: len(monitor.samples) >= 1)
    monitor.close()
    await monitor.wait()
    assert not monitor.running
    count = len(monitor.samples)
    await asyncio.sleep(10 * EVERY)
    assert len(monitor.samples) == count


def test_bad_settings_are_refused() -> None:
    bus = EventBus()
    with pytest.raises(ConfigError, match="every"):
        Monitor(bus, every=0, start=False)
    with pytest.raises(ConfigError, match="window_minutes"):
        Monitor(bus, window_minutes=float("nan"), start=False)


def test_throughput_is_the_acked_counter_growth_and_a_reset_counter_gives_none() -> None:
    sampler = Sampler(window_seconds=60)
    t0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def stats(acked: int) -> dict[str, object]:
        return {"store": {}, "groups": {"g": {"lag": 5, "acked": acked}}}

    sampler.add(stats(10), t0)
    sampler.add(stats(30), t0 + timedelta(seconds=2))
    assert sampler.rows()[0].acked_per_second == 10.0
    sampler.add(stats(3), t0 + timedelta(seconds=3))  # the group was made again
    assert sampler.rows()[0].acked_per_second is None
    assert sampler.rates("g") == [10.0, 0.0]
    sampler.add(stats(3), t0 + timedelta(seconds=70))  # older samples leave the window
    assert [s.at for s in sampler.samples] == [t0 + timedelta(seconds=70)]
