"""The panels driven from code: set filters, click, await wait(), then check results and escaping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import ipywidgets as widgets
import pytest

from eventkit import BaseEvent, EventBus, EventStoreConfig, create_event
from eventkit.events import AssetDiscoveredEvent, QualityAssessedEvent, WorkflowStartedEvent
from eventkit.stores.base import NewEvent
from eventkit.widgets import DLQPanel, EventBrowser, ReplayPanel
from tests.conftest import BusFactory
from tests.helpers import wait_until

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SCRIPT = "<script>alert('x')</script>"


def asset(i: int, *, source: str = "scanner", minutes: int = 0, **fields: Any) -> BaseEvent:
    values: dict[str, Any] = {
        "asset_id": f"asset-{i}",
        "file_path": f"/photos/{i}.jpg",
        "media_type": "image",
        "timestamp": T0 + timedelta(minutes=minutes),
    }
    values.update(fields)
    return create_event(AssetDiscoveredEvent, source=source, **values)


def quality(i: int, *, minutes: int = 0) -> BaseEvent:
    return create_event(
        QualityAssessedEvent, source="grader", asset_id=f"asset-{i}", score=0.5,
        timestamp=T0 + timedelta(minutes=minutes),
    )  # fmt: skip


def workflow(i: int, *, minutes: int = 0) -> BaseEvent:
    return create_event(
        WorkflowStartedEvent, source="orchestrator", workflow_id=f"wf-{i}", workflow_type="ingest",
        timestamp=T0 + timedelta(minutes=minutes),
    )  # fmt: skip


async def mixed_log(bus: EventBus) -> None:
    """6 asset.discovered (2 sources), 3 quality.assessed, 1 workflow.started, one minute apart."""
    events = [asset(i, source="scanner" if i % 2 else "importer", minutes=i) for i in range(6)]
    events += [quality(i, minutes=10 + i) for i in range(3)]
    events.append(workflow(0, minutes=20))
    await bus.publish_many(events)


def html_values(widget: widgets.Widget) -> Iterator[str]:
    """The value of every HTML widget inside a panel: what the browser parses as markup."""
    if isinstance(widget, widgets.HTML | widgets.HTMLMath):
        yield widget.value
    for child in getattr(widget, "children", ()):
        yield from html_values(child)


def assert_escaped(panel: widgets.Widget, needle: str = "alert(") -> None:
    """The payload's markup reaches the page only as text: no live <script> in any HTML value."""
    values = list(html_values(panel))
    assert not any("<script" in v.lower() for v in values), "unescaped <script> in an HTML value"
    assert any(needle in v and "&lt;script&gt;" in v for v in values), "escaped payload not shown"


# -- EventBrowser -----------------------------------------------------------------------------


async def test_browser_filters_by_type_source_time_and_text(bus: EventBus) -> None:
    await mixed_log(bus)
    browser = EventBrowser(bus)
    await browser.wait()
    assert [value for _, value in browser.types.options] == [
        "asset.discovered", "quality.assessed", "workflow.started",
    ]  # fmt: skip
    assert browser.frame is not None and len(browser.frame) == 10
    assert "asset.discovered" in browser.counts_html.value

    browser.types.value = ("asset.discovered",)
    browser.sources.value = ("scanner",)
    browser.apply_button.click()
    await browser.wait()
    assert list(browser.frame["data.asset_id"]) == ["asset-1", "asset-3", "asset-5"]

    browser.sources.value = ()
    browser.start_picker.value = T0 + timedelta(minutes=2)
    browser.end_picker.value = T0 + timedelta(minutes=4)  # inclusive
    browser.apply_button.click()
    await browser.wait()
    assert list(browser.frame["data.asset_id"]) == ["asset-2", "asset-3", "asset-4"]

    browser.types.value = ()
    browser.start_picker.value = browser.end_picker.value = None
    browser.search.value = "ASSET-4"
    browser.apply_button.click()
    await browser.wait()
    assert sorted(browser.frame["event_type"]) == ["asset.discovered"]
    assert browser.messages[-1] == ("info", "1 event matches.")


async def test_browser_pages_the_table_instead_of_rendering_every_row(bus: EventBus) -> None:
    await bus.publish_many([asset(i, minutes=i) for i in range(2_000)])
    browser = EventBrowser(bus, page_size=20)
    await browser.wait()
    assert browser.frame is not None and len(browser.frame) == 2_000
    assert browser.table_html.value.count("<tr>") == 21  # header + one page
    assert browser.prev_button.disabled and not browser.next_button.disabled
    browser.next_button.click()
    assert "rows 21–40 of 2,000" in browser.page_label.value
    browser.show_page(10_000)
    assert browser.page == 99 and browser.next_button.disabled
    assert "asset-1999" in browser.table_html.value


async def test_browser_caps_what_one_apply_loads_and_says_so(bus: EventBus) -> None:
    await bus.publish_many([asset(i, minutes=i) for i in range(30)])
    browser = EventBrowser(bus, max_rows=12)
    await browser.wait()
    assert browser.frame is not None and len(browser.frame) == 12
    assert list(browser.frame["data.asset_id"]) == [f"asset-{i}" for i in range(12)]  # the oldest
    assert "loading stopped at max_rows=12" in browser.messages[-1][1]
    assert "(30)" in browser.types.options[0][0]  # the counts still cover the whole log


async def test_browser_escapes_every_cell(bus: EventBus) -> None:
    await bus.publish(asset(1, source="<b>evil</b>", file_path=SCRIPT, metadata={"x": SCRIPT}))
    browser = EventBrowser(bus)
    await browser.wait()
    assert_escaped(browser)
    assert "&lt;b&gt;evil&lt;/b&gt;" in browser.table_html.value


async def test_browser_on_an_empty_store_says_so(bus: EventBus) -> None:
    browser = EventBrowser(bus)
    await browser.wait()
    assert browser.frame is None and browser.types.options == ()
    assert "no events" in browser.messages[-1][1]
    browser.apply_button.click()
    await browser.wait()
    assert browser.frame is not None and browser.frame.empty
    assert browser.errors == []


# -- ReplayPanel ------------------------------------------------------------------------------


class Recorder:
    """A subscriber in the guide's shape: declares its types, records what it handled."""

    def __init__(self, *event_types: str) -> None:
        self.event_types = list(event_types)
        self.seen: list[BaseEvent] = []

    async def handle_event(self, event: BaseEvent) -> None:
        self.seen.append(event)


ALL_TYPES = ("asset.discovered", "quality.assessed", "workflow.started")


async def test_replay_panel_starts_with_the_handlers_types_and_dry_run_calls_no_handler(
    bus: EventBus,
) -> None:
    await mixed_log(bus)
    record = Recorder("*")
    panel = ReplayPanel(bus, handlers={"record": record, "other": lambda e: None})
    await panel.wait()
    assert panel.types.value == ALL_TYPES  # it declares "*"
    assert panel.start_picker.moment == T0
    assert panel.end_picker.moment == T0 + timedelta(minutes=20)
    assert panel.handler_picker.value == "record"
    calls = record.seen

    panel.dry_run_button.click()
    await panel.wait()
    dry = panel.last_dry_run
    assert dry is not None and dry.total == 10 and calls == []
    assert dry.counts == {"asset.discovered": 6, "quality.assessed": 3, "workflow.started": 1}
    assert dry.first is not None and dry.first.event_type == "asset.discovered"
    assert dry.last is not None and dry.last.event_type == "workflow.started"
    assert len(dry.sample) == 5
    assert "Dry run: 10 events" in panel.result_html.value


async def test_replay_counts_handler_errors_and_keeps_going(bus: EventBus) -> None:
    await mixed_log(bus)
    handled: list[str] = []

    async def picky(event: BaseEvent) -> None:
        if event.event_type == "quality.assessed":
            raise ValueError(f"cannot grade {SCRIPT}")
        handled.append(event.event_id)

    panel = ReplayPanel(bus, handlers={"picky": picky})
    await panel.wait()
    panel.types.value = ALL_TYPES  # a plain function declares none
    panel.replay_button.click()
    await panel.wait()
    result = panel.last_result
    assert result is not None
    assert (result.selected, result.handled, result.failed, result.skipped) == (10, 7, 3, 0)
    assert len(handled) == 7 and result.error_counts == {"ValueError": 3}
    assert panel.progress.value == 10 and panel.progress.max == 10
    assert "7 handled, 3 failed" in panel.messages[-1][1]
    assert_escaped(panel)


async def test_replay_of_a_time_range_and_some_types(bus: EventBus) -> None:
    await mixed_log(bus)
    seen: list[str] = []
    panel = ReplayPanel(bus, handlers={"ids": lambda e: seen.append(e.asset_id)})
    await panel.wait()
    panel.types.value = ("asset.discovered", "quality.assessed")
    panel.start_picker.value = T0 + timedelta(minutes=4)  # aware: converted to the picker's UTC
    panel.end_picker.value = datetime(2026, 3, 2, 8, 10)  # naive: the picker's zone (UTC)
    panel.replay_button.click()
    await panel.wait()
    assert seen == ["asset-4", "asset-5", "asset-0"]
    assert panel.last_result is not None and panel.last_result.handled == 3


async def test_replay_skips_a_corrupt_row_and_says_so(bus: EventBus) -> None:
    await mixed_log(bus)
    await bus.store.append(
        [NewEvent("c0ffee", "asset.discovered", 1, "broken", int(T0.timestamp() * 1000), "{nope")]
    )
    panel = ReplayPanel(bus, handlers={"noop": lambda e: None})
    await panel.wait()
    panel.types.value = ALL_TYPES
    panel.replay_button.click()
    await panel.wait()
    assert panel.last_result is not None
    assert (panel.last_result.handled, panel.last_result.skipped) == (10, 1)
    assert "1 skipped" in panel.messages[-1][1]


async def test_replay_panel_on_an_empty_store_and_without_handlers(bus: EventBus) -> None:
    with pytest.raises(ValueError, match="at least one handler"):
        ReplayPanel(bus, handlers={})
    panel = ReplayPanel(bus, handlers={"noop": lambda e: None})
    await panel.wait()
    assert "no events" in panel.messages[-1][1]
    assert panel.replay_button.disabled
    panel.replay_button.click()  # from code a disabled button still calls back: nothing happens
    await panel.wait()
    assert "Select at least one event type" in panel.messages[-1][1]
    assert panel.last_result is None


# -- DLQPanel ---------------------------------------------------------------------------------


class Flaky:
    """Fails some assets (two error types) until fixed: all at once, or only the ValueErrors."""

    def __init__(self) -> None:
        self.fixed = False
        self.sizes_fixed = False
        self.handled: list[str] = []

    async def handle_event(self, event: BaseEvent) -> None:
        number = int(event.asset_id.rsplit("-", 1)[1])  # type: ignore[attr-defined]
        if not self.fixed and number % 3 == 0:
            raise RuntimeError(f"thumbnailer crashed on {SCRIPT}")
        if not (self.fixed or self.sizes_fixed) and number % 5 == 0:
            raise ValueError("bad size")
        self.handled.append(event.event_id)


async def dead_lettered(make_bus: BusFactory, n: int = 12) -> tuple[EventBus, Flaky]:
    bus = await make_bus()
    await bus.publish_many([asset(i, minutes=i, file_path=SCRIPT) for i in range(n)])
    flaky = Flaky()
    await bus.subscribe_persistent(
        ["asset.discovered"], "thumbs", "w1", flaky, max_retries=0, retry_delay=0
    )
    assert await bus.wait_idle("thumbs", timeout=10)
    return bus, flaky


async def test_dlq_panel_groups_by_error_and_replay_all_empties_it(make_bus: BusFactory) -> None:
    bus, flaky = await dead_lettered(make_bus)  # 0,3,6,9 RuntimeError; 5,10 ValueError
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    assert len(panel.dead_letters) == 6
    assert [label for label, _ in panel.error_filter.options] == [
        "all errors (6)", "RuntimeError (4)", "ValueError (2)",
    ]  # fmt: skip
    panel.error_filter.value = "ValueError"
    assert len(panel.entries.options) == 2

    flaky.fixed = True
    panel.replay_all_button.click()
    await panel.wait()  # returns once the group handled them again
    assert panel.last_action is not None
    assert (panel.last_action.count, panel.last_action.handled, panel.last_action.back) == (6, 6, 0)
    assert panel.dead_letters == [] and await bus.get_pending_events("thumbs") == 0
    assert len(flaky.handled) == 12
    assert panel.status_text == (
        "6 replayed: 6 handled, 0 back in the DLQ; 0 left in the DLQ of 'thumbs'."
    )
    await panel.refresh()
    assert "empty" in panel.messages[-1][1]


async def test_dlq_panel_replays_and_discards_the_selection(make_bus: BusFactory) -> None:
    bus, flaky = await dead_lettered(make_bus)
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    first, second, *_ = [value for _, value in panel.entries.options]

    panel.replay_selected_button.click()  # nothing selected: says so, does nothing
    await panel.wait()
    assert "Select entries" in panel.messages[-1][1] and len(panel.dead_letters) == 6

    flaky.fixed = True
    panel.entries.value = (first,)
    assert first in panel.detail_html.value and "Traceback" in panel.detail_html.value
    panel.replay_selected_button.click()
    await panel.wait()
    assert panel.last_action is not None
    assert (panel.last_action.count, panel.last_action.remaining) == (1, 5)
    assert first not in [value for _, value in panel.entries.options]

    panel.entries.value = (second,)
    panel.discard_selected_button.click()  # one entry: no confirmation asked
    await panel.wait()
    assert panel.last_action.count == 1 and len(panel.dead_letters) == 4

    panel.discard_all_button.click()
    await panel.wait()
    assert panel.discard_all_button.description == "Confirm discard all (4)"
    panel.discard_all_button.click()
    await panel.wait()
    assert panel.last_action.count == 4 and await bus.get_pending_events("thumbs") == 0
    assert await bus.wait_idle("thumbs", timeout=10)
    assert len(flaky.handled) == 6 + 1  # the good ones, then the one replayed


async def test_dlq_panel_escapes_payload_error_and_traceback(make_bus: BusFactory) -> None:
    bus, _ = await dead_lettered(make_bus, n=4)
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    panel.entries.value = tuple(value for _, value in panel.entries.options)
    assert_escaped(panel)
    assert "thumbnailer crashed on &lt;script&gt;" in panel.summary_html.value


async def test_dlq_panel_shows_a_corrupt_row(make_bus: BusFactory) -> None:
    bus = await make_bus()
    await bus.store.append([NewEvent("bad1", "asset.discovered", 1, "x", 0, "<script>[1,")])
    await bus.subscribe_persistent(["*"], "g", "w", lambda e: None, retry_delay=0)
    await wait_until(lambda: bus.get_pending_events("g"))
    panel = DLQPanel(bus, "g")
    await panel.wait()
    panel.entries.value = ("bad1",)
    assert "SerializationError" in panel.summary_html.value
    assert "&lt;script&gt;[1," in panel.detail_html.value and panel.errors == []


async def test_dlq_panel_on_an_empty_dlq(bus: EventBus) -> None:
    panel = DLQPanel(bus, "nobody")
    await panel.wait()
    assert panel.dead_letters == [] and "empty" in panel.messages[-1][1]
    panel.replay_all_button.click()
    await panel.wait()
    assert panel.last_action is not None and panel.last_action.count == 0


# -- the task machinery -----------------------------------------------------------------------


async def test_a_failing_click_is_reported_in_the_panel_not_lost(bus: EventBus) -> None:
    await mixed_log(bus)
    panel = ReplayPanel(bus, handlers={"all": Recorder("*")})
    await panel.wait()
    panel.end_picker.value = T0 - timedelta(days=1)  # before "From"
    panel.dry_run_button.click()
    await panel.wait()  # does not raise: the error is in the panel
    assert panel.errors[-1] == (
        "Dry run failed: ValueError: 'To' (2026-03-01 08:00:00.000 UTC) is before "
        "'From' (2026-03-02 08:00:00.000 UTC)"
    )
    assert "is before" in panel.status.value
    assert not panel.dry_run_button.disabled and not panel.replay_button.disabled


async def test_clicks_run_one_after_another(bus: EventBus) -> None:
    await mixed_log(bus)
    recorder = Recorder("*")
    panel = ReplayPanel(bus, handlers={"slow": recorder})
    panel.dry_run_button.click()
    panel.replay_button.click()
    await panel.wait()
    assert panel.last_dry_run is not None and panel.last_dry_run.total == 10
    assert len(recorder.seen) == 10


def test_without_a_running_loop_clicks_run_at_once() -> None:
    bus = EventBus(EventStoreConfig(backend="memory", trim_interval_hours=None))
    asyncio.run(bus.initialize())
    asyncio.run(mixed_log(bus))
    recorder = Recorder("*")
    panel = ReplayPanel(bus, handlers={"seen": recorder})  # refresh ran in the constructor
    assert len(panel.types.options) == 3
    panel.replay_button.click()
    assert panel.last_result is not None and len(recorder.seen) == 10
    asyncio.run(bus.close())
