"""Panels a person can read: times in UTC and labelled (or a chosen zone), a browser table of chosen
columns and short ids, Enter applies, plurals, DLQ entries told apart, everything escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from eventkit import EventBus
from eventkit.errors import ConfigError
from eventkit.widgets import DLQPanel, EventBrowser, ReplayPanel
from eventkit.widgets.browser import ENVELOPE, PAYLOAD
from tests.conftest import BusFactory
from tests.test_widgets import (
    SCRIPT,
    T0,
    Recorder,
    asset,
    dead_lettered,
    mixed_log,
    quality,
    workflow,
)

# -- times ----------------------------------------------------------------------------------


async def test_pickers_are_utc_and_labelled(bus: EventBus) -> None:
    await mixed_log(bus)
    browser = EventBrowser(bus)
    panel = ReplayPanel(bus, handlers={"all": Recorder("*")})
    await browser.wait()
    await panel.wait()
    assert browser.start_picker.description == "From (UTC)"
    assert browser.end_picker.description == "To (UTC, inclusive)"
    assert panel.start_picker.description == "From (UTC)"
    # the front end shows the naive value as it is: 08:00 reads 08:00 in any browser
    assert panel.start_picker.value == datetime(2026, 3, 2, 8, 0)
    assert "timestamp (UTC)" in browser.table_html.value

    browser.types.value = ("asset.discovered",)
    browser.start_picker.value = datetime(2026, 3, 2, 8, 2)  # naive: UTC, no TraitError
    browser.end_picker.value = T0.astimezone(UTC) + timedelta(minutes=3)  # aware: converted
    browser.apply_button.click()
    await browser.wait()
    assert browser.frame is not None
    assert list(browser.frame["data.asset_id"]) == ["asset-2", "asset-3"]
    assert browser.errors == []


async def test_tz_shows_another_zone_labelled(bus: EventBus) -> None:
    await mixed_log(bus)
    browser = EventBrowser(bus, tz="America/New_York")
    await browser.wait()
    assert browser.start_picker.description == "From (America/New_York)"
    assert "timestamp (America/New_York)" in browser.table_html.value
    assert "2026-03-02 03:00:00.000" in browser.table_html.value  # 08:00 UTC is 03:00 EST
    assert "2026-03-02 08:00:00.000" not in browser.table_html.value

    browser.start_picker.value = datetime(2026, 3, 2, 3, 4)  # wall clock in New York
    assert browser.start_picker.moment == T0 + timedelta(minutes=4)
    browser.apply_button.click()
    await browser.wait()
    assert browser.frame is not None and len(browser.frame) == 6  # asset-4, asset-5, 3 + 1

    with pytest.raises(ConfigError, match="tz"):
        EventBrowser(bus, tz="Mars/Olympus_Mons")


async def test_dlq_times_are_labelled(make_bus: BusFactory) -> None:
    bus, _ = await dead_lettered(make_bus, n=4)
    panel = DLQPanel(bus, "thumbs", tz="Asia/Tokyo")
    await panel.wait()
    assert all(label.count(" Asia/Tokyo ·") == 1 for label, _ in panel.entries.options)
    panel.entries.value = (panel.entries.options[0][1],)
    assert "failed at (Asia/Tokyo)" in panel.detail_html.value


# -- the browser table ----------------------------------------------------------------------


async def test_table_shows_the_chosen_types_fields_only(bus: EventBus) -> None:
    await mixed_log(bus)
    browser = EventBrowser(bus)
    await browser.wait()
    # every type, mixed payloads: one summary column instead of a wide empty grid
    assert browser.columns == [*ENVELOPE, PAYLOAD]
    assert "asset_id=asset-0" in browser.table_html.value

    browser.types.value = ("quality.assessed",)
    browser.apply_button.click()
    await browser.wait()
    assert browser.columns == [*ENVELOPE, "data.asset_id", "data.score"]  # issues: all empty
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", browser.table_html.value)
    assert headers == [
        "event_id", "event_type", "version", "source", "timestamp (UTC)", "data.asset_id",
        "data.score",
    ]  # fmt: skip

    browser.types.value = ("asset.discovered",)
    browser.apply_button.click()
    await browser.wait()
    assert browser.columns == [
        *ENVELOPE, "data.asset_id", "data.file_path", "data.media_type", "data.file_size",
    ]  # fmt: skip


async def test_table_has_short_ids_no_wrapping_and_its_own_scroll(bus: EventBus) -> None:
    await mixed_log(bus)
    browser = EventBrowser(bus)
    await browser.wait()
    assert browser.frame is not None
    full = str(browser.frame["event_id"][0])
    table = browser.table_html.value
    assert len(full) == 32
    assert f">{full[:8]}</td>" in table and f">{full}<" not in table  # the full id: a tooltip
    assert "white-space:nowrap" in table
    assert table.startswith("<div class='eventkit-scroll' style='overflow-x:auto;max-width:100%'>")
    assert browser.table_html.layout.overflow == "auto"

    browser.row_picker.value = 0  # the detail view shows the whole id
    assert f"<td>{full}</td>" in browser.detail_html.value
    assert "&quot;asset_id&quot;: &quot;asset-0&quot;" in browser.detail_html.value


async def test_enter_in_search_applies(bus: EventBus) -> None:
    await mixed_log(bus)
    browser = EventBrowser(bus)
    await browser.wait()
    assert browser.search.continuous_update is False  # the value comes on Enter
    browser.search.value = "asset-4"  # what Enter sends; no click on Apply
    await browser.wait()
    assert browser.frame is not None and list(browser.frame["data.asset_id"]) == ["asset-4"]
    assert browser.status_text == "1 event matches."


async def test_counts_read_as_english(bus: EventBus) -> None:
    await bus.publish_many([asset(1), asset(2), quality(1)])
    browser = EventBrowser(bus)
    await browser.wait()
    assert browser.status_text == "3 events match."
    browser.types.value = ("asset.discovered",)
    browser.apply_button.click()
    await browser.wait()
    assert browser.status_text == "2 events match."
    browser.search.value = "nothing like it"
    await browser.wait()
    assert browser.status_text == "0 events match."

    panel = ReplayPanel(bus, handlers={"all": Recorder("quality.assessed")})
    await panel.wait()
    assert panel.status_text.startswith("3 events of 2 types, ")
    panel.dry_run_button.click()
    await panel.wait()
    assert panel.status_text.startswith("Dry run: 1 event would be replayed")


async def test_dlq_counts_read_as_english(make_bus: BusFactory) -> None:
    bus, _ = await dead_lettered(make_bus, n=1)  # asset-0 only
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    assert panel.status_text == "1 entry in the DLQ of 'thumbs', 1 error type."
    assert " · 1 attempt · " in panel.entries.options[0][0]


# -- DLQ entries told apart, and escaping ---------------------------------------------------


async def test_dlq_entries_are_labelled_with_a_payload_key(make_bus: BusFactory) -> None:
    bus, _ = await dead_lettered(make_bus)
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    labels = [label for label, _ in panel.entries.options]
    assert [label.split(" · ")[0] for label in labels] == [
        f"asset_id=asset-{i}" for i in (0, 3, 5, 6, 9, 10)
    ]
    assert len(set(labels)) == len(labels)
    ids = [value for _, value in panel.entries.options]
    assert all(label.endswith(event_id[:8]) for label, event_id in zip(labels, ids, strict=True))


async def test_browser_escapes_a_script_payload_in_table_summary_and_detail(
    bus: EventBus,
) -> None:
    await bus.publish_many([asset(1, file_path=SCRIPT, source=SCRIPT), quality(2)])
    await bus.publish_many([quality(i, minutes=i) for i in range(3, 9)] + [workflow(1)])
    browser = EventBrowser(bus)
    await browser.wait()
    assert browser.columns[-1] == PAYLOAD  # the summary column, escaped too
    browser.row_picker.value = 0
    for value in (browser.table_html.value, browser.detail_html.value, browser.status.value):
        assert "<script" not in value
    assert "&lt;script&gt;alert(" in browser.table_html.value
    assert "&lt;script&gt;alert(" in browser.detail_html.value
    browser.types.value = ("asset.discovered",)
    browser.apply_button.click()
    await browser.wait()
    assert "<script" not in browser.table_html.value
    assert "&lt;script&gt;alert(" in browser.table_html.value


async def test_values_that_do_not_fit_are_said_once_in_the_status_not_warned_per_apply(
    bus: EventBus,
) -> None:
    await mixed_log(bus)
    await bus.publish(asset(9, file_size="unknown"))  # an int field holding text
    browser = EventBrowser(bus)
    await browser.wait()
    for _ in range(2):  # pytest turns a leaked warning into an error
        browser.apply_button.click()
        await browser.wait()
    assert browser.frame is not None and browser.frame["data.file_size"].isna().sum() >= 1
    assert "show as <NA>: data.file_size (1)." in browser.status_text
    assert "&lt;NA&gt;" in browser.status.value  # escaped in the HTML line
