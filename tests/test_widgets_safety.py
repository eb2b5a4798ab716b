"""Panels that are safe and honest: closed bus, store errors, replay outcomes, confirmation,
safe replay defaults (SPEC §6)."""

from __future__ import annotations

import html
from datetime import timedelta
from pathlib import Path

import pytest

from eventkit import EventBus, EventStoreConfig
from eventkit.widgets import DLQPanel, EventBrowser, ReplayPanel
from eventkit.widgets._base import CLOSED_MESSAGE, AsyncPanel
from tests.conftest import BusFactory
from tests.test_widgets import (
    ALL_TYPES,
    SCRIPT,
    T0,
    Recorder,
    asset,
    dead_lettered,
    mixed_log,
)

# -- a closed bus ---------------------------------------------------------------------------


async def test_every_panel_on_a_closed_bus_says_which_cell_to_run(make_bus: BusFactory) -> None:
    bus, _ = await dead_lettered(make_bus, n=4)
    await mixed_log(bus)
    panels: list[AsyncPanel] = [
        EventBrowser(bus),
        ReplayPanel(bus, handlers={"all": Recorder("*")}),
        DLQPanel(bus, "thumbs"),
    ]
    for panel in panels:
        await panel.wait()
        assert panel.errors == []
    await bus.close()  # what a notebook's last cell did
    assert CLOSED_MESSAGE.startswith("The bus was closed (a later cell ran `await bus.close()`)")
    for panel in panels:
        for button in panel._buttons:
            button.click()
            await panel.wait()  # raises nothing
            assert panel.status_text == CLOSED_MESSAGE, button.description
            assert "not open" not in panel.status.value and "store.open()" not in panel.status.value
        await panel.refresh()  # called from code: says so too, raises nothing
        assert panel.status_text == CLOSED_MESSAGE
        assert not panel.refresh_button.disabled  # type: ignore[attr-defined]


async def test_a_panel_made_on_a_closed_bus_says_so(bus: EventBus) -> None:
    await bus.close()
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    assert panel.errors == [CLOSED_MESSAGE] and panel.dead_letters == []


async def test_a_panel_on_a_bus_never_opened_says_to_run_the_setup_cell() -> None:
    bus = EventBus(EventStoreConfig(backend="memory", trim_interval_hours=None))
    panel = ReplayPanel(bus, handlers={"all": Recorder("*")})
    await panel.wait()
    assert panel.status_text.startswith("The bus is not open yet: run the notebook's setup cell")


async def test_a_store_error_is_shown_escaped_in_the_status_line(tmp_path: Path) -> None:
    folder = tmp_path / "<b>dir"
    folder.mkdir()
    config = EventStoreConfig(backend="sqlite", path=folder / "events.db", trim_interval_hours=None)
    async with EventBus(config) as bus:
        await mixed_log(bus)
        browser = EventBrowser(bus)
        await browser.wait()
        await bus.store.close()  # the store went away under an open bus
        browser.refresh_button.click()
        await browser.wait()
        text = browser.status_text
        assert text.startswith("Refresh failed: the store said StoreError: ") and "<b>dir" in text
        assert html.escape(text, quote=True) in browser.status.value
        assert "&lt;b&gt;dir" in browser.status.value and "<b>dir" not in browser.status.value


# -- DLQ replay waits for the outcome -------------------------------------------------------


async def test_replay_all_reports_handled_and_back_in_the_dlq(make_bus: BusFactory) -> None:
    bus, flaky = await dead_lettered(make_bus)  # 0,3,6,9 RuntimeError; 5,10 ValueError
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    assert not any("replayed" in label for label, _ in panel.entries.options)

    flaky.sizes_fixed = True  # the ValueErrors now pass, the RuntimeErrors still fail
    panel.replay_all_button.click()
    await panel.wait()
    action = panel.last_action
    assert action is not None
    assert (action.count, action.handled, action.back, action.waiting) == (6, 2, 4, 0)
    assert panel.status_text == (
        "6 replayed: 2 handled, 4 back in the DLQ; 4 left in the DLQ of 'thumbs'."
    )
    assert len(panel.dead_letters) == 4 and len(flaky.handled) == 6 + 2
    assert [d.replays for d in panel.dead_letters] == [1, 1, 1, 1]
    assert all("replayed 1×" in label for label, _ in panel.entries.options)

    first = panel.dead_letters[0].event_id
    panel.entries.value = (first,)
    panel.replay_selected_button.click()
    await panel.wait()
    assert panel.status_text == (
        "1 replayed: 0 handled, 1 back in the DLQ; 4 left in the DLQ of 'thumbs'."
    )
    label = dict((v, k) for k, v in panel.entries.options)[first]
    assert "replayed 2×" in label
    panel.entries.value = (first,)
    assert "replayed before" in panel.detail_html.value and "2×" in panel.detail_html.value


async def test_replay_with_no_consumer_running_says_nothing_handled_it(
    make_bus: BusFactory,
) -> None:
    bus, flaky = await dead_lettered(make_bus, n=6)  # 0, 3 RuntimeError; 5 ValueError
    await bus.close()
    bus = await make_bus()  # the same store, no consumer this time
    panel = DLQPanel(bus, "thumbs", replay_timeout=0.3)
    await panel.wait()
    panel.replay_all_button.click()
    await panel.wait()
    action = panel.last_action
    assert action is not None and (action.count, action.handled, action.back) == (3, 0, 0)
    assert action.waiting == 3
    assert panel.status_text == (
        "3 replayed: 0 handled, 0 back in the DLQ, 3 not handled within 0.3 s (is a consumer "
        "of 'thumbs' running?); 0 left in the DLQ of 'thumbs'."
    )
    assert panel.messages[-1][0] == "warning"


# -- discard asks first ---------------------------------------------------------------------


async def test_discard_all_removes_nothing_until_confirmed(make_bus: BusFactory) -> None:
    bus, _ = await dead_lettered(make_bus)
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    panel.discard_all_button.click()
    await panel.wait()
    assert panel.discard_all_button.description == "Confirm discard all (6)"
    assert await bus.dlq_size("thumbs") == 6 and len(panel.dead_letters) == 6
    assert "Confirm discard all (6)" in panel.status_text

    panel.discard_all_button.click()  # the confirmation
    await panel.wait()
    assert await bus.dlq_size("thumbs") == 0
    assert panel.discard_all_button.description == "Discard all"
    assert panel.status_text == "Discarded 6 entries; 0 left in the DLQ of 'thumbs'."


async def test_refresh_or_another_action_cancels_a_confirmation(make_bus: BusFactory) -> None:
    bus, _ = await dead_lettered(make_bus)
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()

    panel.discard_all_button.click()
    await panel.wait()
    await panel.refresh()
    assert panel.discard_all_button.description == "Discard all"
    panel.discard_all_button.click()  # asks again, does not discard
    await panel.wait()
    assert await bus.dlq_size("thumbs") == 6
    assert panel.discard_all_button.description == "Confirm discard all (6)"

    panel.refresh_button.click()
    await panel.wait()
    assert panel.discard_all_button.description == "Discard all"

    panel.discard_all_button.click()
    await panel.wait()
    panel.replay_selected_button.click()  # another action (nothing selected: does nothing else)
    await panel.wait()
    assert panel.discard_all_button.description == "Discard all"
    panel.discard_all_button.click()
    await panel.wait()
    assert await bus.dlq_size("thumbs") == 6 and panel.pending_confirmation is not None


async def test_discard_selected_of_several_asks_first(make_bus: BusFactory) -> None:
    bus, _ = await dead_lettered(make_bus)
    panel = DLQPanel(bus, "thumbs")
    await panel.wait()
    ids = [value for _, value in panel.entries.options]
    panel.entries.value = tuple(ids[:3])
    panel.discard_selected_button.click()
    await panel.wait()
    assert panel.discard_selected_button.description == "Confirm discard selected (3)"
    assert await bus.dlq_size("thumbs") == 6

    panel.entries.value = tuple(ids[:2])  # the selection changed: asks again
    assert panel.discard_selected_button.description == "Discard selected"
    panel.discard_selected_button.click()
    await panel.wait()
    assert panel.discard_selected_button.description == "Confirm discard selected (2)"
    panel.discard_selected_button.click()
    await panel.wait()
    assert await bus.dlq_size("thumbs") == 4
    assert {d.event_id for d in panel.dead_letters} == set(ids[2:])
    assert panel.status_text == "Discarded 2 entries of 2 selected; 4 left in the DLQ of 'thumbs'."


# -- ReplayPanel defaults -------------------------------------------------------------------


async def test_replay_panel_starts_with_the_first_handlers_declared_types(bus: EventBus) -> None:
    await mixed_log(bus)
    grader = Recorder("quality.assessed")
    panel = ReplayPanel(bus, handlers={"grader": grader, "everything": Recorder("*")})
    await panel.wait()
    assert panel.types.value == ("quality.assessed",)
    assert (panel.start_picker.moment, panel.end_picker.moment) == (T0, T0 + timedelta(minutes=20))
    assert not panel.replay_button.disabled
    panel.replay_button.click()
    await panel.wait()
    assert [e.event_type for e in grader.seen] == ["quality.assessed"] * 3

    panel.handler_picker.value = "everything"
    assert panel.types.value == ALL_TYPES


async def test_replay_is_disabled_with_no_type_selected(bus: EventBus) -> None:
    await mixed_log(bus)
    seen: list[object] = []
    panel = ReplayPanel(bus, handlers={"plain": seen.append})  # a function declares no types
    await panel.wait()
    assert panel.types.value == () and panel.replay_button.disabled
    assert "none selected yet" in panel.status_text
    panel.dry_run_button.click()  # a finished task does not turn Replay back on
    await panel.wait()
    assert panel.replay_button.disabled
    panel.types.value = ("workflow.started",)
    assert not panel.replay_button.disabled
    panel.types.value = ()
    assert panel.replay_button.disabled
    assert seen == []


async def test_refresh_keeps_the_chosen_types_and_range(bus: EventBus) -> None:
    await mixed_log(bus)
    panel = ReplayPanel(bus, handlers={"all": Recorder("*")})
    await panel.wait()
    panel.types.value = ("asset.discovered",)
    panel.start_picker.value = T0 + timedelta(minutes=2)
    await bus.publish(asset(99, minutes=30))
    panel.refresh_button.click()
    await panel.wait()
    assert panel.types.value == ("asset.discovered",)
    assert panel.start_picker.moment == T0 + timedelta(minutes=2)  # the reader's choice stays
    assert panel.end_picker.moment == T0 + timedelta(minutes=30)  # the whole span grew


@pytest.mark.parametrize("payload", [SCRIPT])
async def test_dry_run_escapes_the_sample(bus: EventBus, payload: str) -> None:
    await bus.publish(asset(1, file_path=payload))
    panel = ReplayPanel(bus, handlers={"all": Recorder("*")})
    await panel.wait()
    panel.dry_run_button.click()
    await panel.wait()
    assert "&lt;script&gt;" in panel.result_html.value and "<script" not in panel.result_html.value
    assert "timestamp (UTC)" in panel.result_html.value
