"""ReplayPanel: push a range of the log through a handler, after a dry run that shows what would go."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.consumer import Handler, adapt_handler, describe
from eventkit.error_kinds import error_kind
from eventkit.events import BaseEvent, ms_to_datetime
from eventkit.stores.base import StoredEvent
from eventkit.widgets._base import (
    AsyncPanel,
    Survey,
    html_table,
    inclusive_end,
    survey,
    utc,
)

#: events shown as a sample by a dry run
SAMPLE_SIZE = 5
#: handler errors kept (and listed) per replay; the count is always complete
MAX_ERRORS_KEPT = 100
#: errors listed in the summary
MAX_ERRORS_SHOWN = 10
#: the progress bar moves at most this many times per replay (each move is a message to the front end)
PROGRESS_STEPS = 200


@dataclass(frozen=True)
class DryRun:
    """What a replay of the current selection would touch; no handler was called."""

    total: int
    counts: dict[str, int]
    first: StoredEvent | None
    last: StoredEvent | None
    sample: list[StoredEvent]
    start_time: datetime | None
    end_time: datetime | None


@dataclass
class ReplayResult:
    """How a replay went: per-event handler errors are counted and kept, never fatal."""

    handler: str
    selected: int
    handled: int = 0
    failed: int = 0
    #: (event_id, event_type, "ErrorType: message") of the first MAX_ERRORS_KEPT failures
    errors: list[tuple[str, str, str]] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def skipped(self) -> int:
        """Selected events the bus could not decode (corrupt or unsupported), so never handled."""
        return max(self.selected - self.handled - self.failed, 0)

    @property
    def error_counts(self) -> Counter[str]:
        """Kept errors by kind (`eventkit.error_kinds`): {"ValueError": 3}."""
        return Counter(error_kind(error) for _, _, error in self.errors)


class ReplayPanel(AsyncPanel):
    """Pick types, a time range and a handler; dry run to see what would go, then replay it."""

    def __init__(self, bus: EventBus, handlers: Mapping[str, Any]) -> None:
        super().__init__(bus)
        if not handlers:
            raise ValueError("ReplayPanel needs at least one handler: handlers={'name': handler}")
        self.handlers = dict(handlers)
        # adapt now, so a handler of the wrong shape fails here and not at the first click
        self._calls: dict[str, Handler] = {n: adapt_handler(h) for n, h in handlers.items()}
        self.last_dry_run: DryRun | None = None
        self.last_result: ReplayResult | None = None

        self.types = widgets.SelectMultiple(options=[], rows=6, description="Types")
        self.start_picker = widgets.DatetimePicker(description="From")
        self.end_picker = widgets.DatetimePicker(description="To (incl.)")
        self.handler_picker = widgets.Dropdown(
            options=list(self.handlers), value=next(iter(self.handlers)), description="Handler"
        )
        self.dry_run_button = self._button("Dry run", self._on_dry_run_button_click)
        self.replay_button = self._button(
            "Replay", self._on_replay_button_click, button_style="primary"
        )
        self.refresh_button = self._button("Refresh", self._on_refresh_button_click)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="Progress")
        self.progress_label = widgets.Label()
        self.result_html = widgets.HTML()
        self.children = [
            widgets.HTML("<h4>Replay events through a handler</h4>"),
            widgets.HBox([self.types, widgets.VBox([self.start_picker, self.end_picker])]),
            self.handler_picker,
            widgets.HBox([self.dry_run_button, self.replay_button, self.refresh_button]),
            widgets.HBox([self.progress, self.progress_label]),
            self.status,
            self.result_html,
        ]
        self._progress_step = 1
        self._start("refresh", self.refresh())

    def __repr__(self) -> str:
        return (
            f"ReplayPanel(handlers={list(self.handlers)!r}, types={len(self.types.options)}, "
            f"selected={len(self.types.value)})"
        )

    # -- selection ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload types and time range from the store; select them all (the whole log)."""
        self.say("Scanning the log…")
        found = await survey(self.bus)
        self.types.options = [(f"{t} ({n:,})", t) for t, n in sorted(found.counts.items())]
        self.types.value = tuple(sorted(found.counts))
        self.start_picker.value = found.earliest
        self.end_picker.value = found.latest
        if found.total == 0:
            self.say("The store holds no events: nothing to replay.", "warning")
        else:
            self.say(
                f"{found.total:,} events of {len(found.counts)} types, "
                f"{_when(found.earliest)} to {_when(found.latest)}."
            )

    def _selection(self) -> tuple[list[str], datetime | None, datetime | None]:
        start, end = utc(self.start_picker.value), utc(self.end_picker.value)
        if start is not None and end is not None and end < start:
            raise ValueError(f"'To' ({_when(end)}) is before 'From' ({_when(start)})")
        return list(self.types.value), start, inclusive_end(end)

    # -- dry run ------------------------------------------------------------------------------

    def _on_dry_run_button_click(self, button: widgets.Button) -> None:
        self._start("Dry run", self.dry_run())

    async def dry_run(self) -> None:
        """Count what the selection would replay, and show first, last and a sample; no handler runs."""
        types, start, end = self._selection()
        if not types:
            self.say("Select at least one event type.", "warning")
            return
        self.say("Dry run: counting the selection…")
        found = await survey(self.bus, types, start, end, sample_size=SAMPLE_SIZE)
        self.last_dry_run = DryRun(
            found.total, dict(found.counts), found.first, found.last, found.sample, start, end
        )
        self.result_html.value = _dry_run_html(found)
        self.say(
            f"Dry run: {found.total:,} events would be replayed through "
            f"{self.handler_picker.value!r}; no handler was called."
        )

    # -- replay -------------------------------------------------------------------------------

    def _on_replay_button_click(self, button: widgets.Button) -> None:
        self._start("Replay", self.replay())

    def _on_refresh_button_click(self, button: widgets.Button) -> None:
        self._start("Refresh", self.refresh())

    async def replay(self) -> None:
        """Call the chosen handler on every selected event; a failing event is counted, not fatal."""
        types, start, end = self._selection()
        if not types:
            self.say("Select at least one event type.", "warning")
            return
        name = self.handler_picker.value
        call = self._calls[name]
        selected = (await survey(self.bus, types, start, end)).total
        result = ReplayResult(handler=name, selected=selected)
        self.last_result = result
        self.progress.max = max(selected, 1)
        self.progress.value = 0
        self._progress_step = max(1, selected // PROGRESS_STEPS)
        self.say(f"Replaying {selected:,} events through {name!r}…")

        async def guarded(event: BaseEvent) -> None:
            try:
                await call(event, None)
            except Exception as e:
                result.failed += 1
                if len(result.errors) < MAX_ERRORS_KEPT:
                    result.errors.append((event.event_id, event.event_type, describe(e)))
            else:
                result.handled += 1

        began = time.perf_counter()
        try:
            await self.bus.replay_events(types, guarded, start, end, progress=self._on_progress)
        finally:
            result.elapsed_s = time.perf_counter() - began
            self.progress.value = result.handled + result.failed
            self.progress_label.value = f"{self.progress.value:,} / {selected:,}"
            self.result_html.value = _result_html(result)
        level = "warning" if result.failed or result.skipped else "info"
        self.say(_summary(result), level)

    def _on_progress(self, done: int) -> None:
        if done % self._progress_step == 0:
            self.progress.value = min(done, self.progress.max)
            self.progress_label.value = f"{done:,} / {self.progress.max:,}"


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.isoformat(timespec="milliseconds")


def _summary(result: ReplayResult) -> str:
    text = (
        f"Replay through {result.handler!r}: {result.handled:,} handled, "
        f"{result.failed:,} failed, in {result.elapsed_s:.2f} s"
    )
    if result.skipped:
        text += f"; {result.skipped:,} skipped (could not be decoded)"
    return text + "."


def _row(stored: StoredEvent | None) -> list[object]:
    if stored is None:
        return ["", "", "", ""]
    when = ms_to_datetime(stored.timestamp_ms)
    return [stored.event_id, stored.event_type, f"v{stored.version}", when]


def _dry_run_html(found: Survey) -> str:
    if found.total == 0:
        return "<i>No events match this selection.</i>"
    counts = html_table(["event type", "events"], sorted(found.counts.items()))
    ends = html_table(
        ["", "event id", "type", "version", "timestamp"],
        [["first", *_row(found.first)], ["last", *_row(found.last)]],
    )
    sample = html_table(
        ["event id", "type", "version", "timestamp", "payload"],
        [[*_row(s), s.data] for s in found.sample],
    )
    return (
        f"<b>Dry run: {found.total:,} events</b>{counts}<b>First and last</b>{ends}"
        f"<b>Sample</b>{sample}"
    )


def _result_html(result: ReplayResult) -> str:
    counts = html_table(
        ["selected", "handled", "failed", "skipped", "seconds"],
        [[result.selected, result.handled, result.failed, result.skipped,
          f"{result.elapsed_s:.2f}"]],
    )  # fmt: skip
    if not result.errors:
        return counts
    errors = html_table(
        ["event id", "type", "error"], [list(e) for e in result.errors[:MAX_ERRORS_SHOWN]]
    )
    more = result.failed - min(len(result.errors), MAX_ERRORS_SHOWN)
    tail = f"<i>…and {more:,} more failures.</i>" if more > 0 else ""
    return f"{counts}<b>Failures ({result.failed:,})</b>{errors}{tail}"


__all__ = ["DryRun", "ReplayPanel", "ReplayResult"]
