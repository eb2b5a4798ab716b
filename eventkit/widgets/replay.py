"""ReplayPanel: push a range of the log through a handler, after a dry run that shows what would go."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
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
    TimePicker,
    ZoneInput,
    html_table,
    inclusive_end,
    plural,
    survey,
    time_text,
    zone_label,
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


def declared_types(handler: Any) -> list[str]:
    """The event types a handler says it is for (its `event_types` attribute), else none."""
    declared = getattr(handler, "event_types", None)
    if declared is None:
        return []
    if isinstance(declared, str):
        return [declared]
    try:
        return [str(t) for t in declared]
    except TypeError:
        return []


class ReplayPanel(AsyncPanel):
    """Push a slice of the log through one handler, after a dry run that shows what would go.

    The replay reads the log directly (`bus.replay_events`): no consumer group, no acks, no DLQ.
    A handler error is counted and listed, and the replay goes on. Safe by default: the panel
    starts with the first handler selected, only the event types that handler declares (its
    `event_types` attribute; none for a plain function) and the whole time range, and "Replay" is
    disabled while no type is selected. Refresh keeps what you chose. Times are UTC unless `tz=`
    says otherwise, and every time field is labelled with its zone.

    Parameters
    ----------
    bus : EventBus
        An initialized bus. If a later cell closes it, the status line says which cell to run again.
    handlers : mapping of str to handler
        Name -> handler: an object with ``async handle_event(event)`` (and ideally
        ``event_types``), an async function, or a plain function.
    tz : str or tzinfo, optional
        Zone the "From"/"To" pickers and the tables use; UTC unless given.

    Buttons
    -------
    Dry run
        Count what the selection would replay, by type, with the first, last and a sample of
        events; no handler is called.
    Replay
        Call the chosen handler on every selected event in publish order; the progress bar moves,
        and the summary says how many were handled, failed and skipped (undecodable).
    Refresh
        Reload the types and time range on offer from the store, keeping the selection.

    The status line is `panel.status` (text in `panel.status_text`); results are in
    `panel.last_dry_run` (DryRun) and `panel.last_result` (ReplayResult).

    Examples
    --------
    >>> panel = ReplayPanel(bus, handlers={"thumbnails": ThumbnailSubscriber()})
    >>> display(panel)                                # in a notebook; or drive it from code:
    >>> panel.start_picker.value = datetime(2026, 3, 2)   # naive: UTC (the picker's zone)
    >>> panel.dry_run_button.click(); await panel.wait()
    >>> panel.last_dry_run.total
    120
    """

    def __init__(self, bus: EventBus, handlers: Mapping[str, Any], *, tz: ZoneInput = None) -> None:
        super().__init__(bus, tz=tz)
        if not handlers:
            raise ValueError("ReplayPanel needs at least one handler: handlers={'name': handler}")
        self.handlers = dict(handlers)
        # adapt now, so a handler of the wrong shape fails here and not at the first click
        self._calls: dict[str, Handler] = {n: adapt_handler(h) for n, h in handlers.items()}
        self.last_dry_run: DryRun | None = None
        self.last_result: ReplayResult | None = None
        #: the log's time span at the last refresh: pickers still on it follow it when it grows
        self._whole: tuple[datetime | None, datetime | None] | None = None
        #: False until types were first offered (and the handler's declared ones selected)
        self._types_chosen = False

        self.types = widgets.SelectMultiple(options=[], rows=6, description="Types")
        self.start_picker = TimePicker("From", self.zone)
        self.end_picker = TimePicker("To", self.zone, note="inclusive")
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
        self.types.observe(self._on_types_change, names="value")
        self.handler_picker.observe(self._on_handler_picker_change, names="value")
        self.children = [
            widgets.HTML("<h4>Replay events through a handler</h4>"),
            self.handler_picker,
            widgets.HBox([self.types, widgets.VBox([self.start_picker, self.end_picker])]),
            widgets.HBox([self.dry_run_button, self.replay_button, self.refresh_button]),
            widgets.HBox([self.progress, self.progress_label]),
            self.status,
            self.result_html,
        ]
        self._progress_step = 1
        self._sync_replay_button()
        self._start("Refresh", self.refresh())

    def __repr__(self) -> str:
        return (
            f"ReplayPanel(handlers={list(self.handlers)!r}, types={len(self.types.options)}, "
            f"selected={len(self.types.value)})"
        )

    # -- selection ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload the types and time range on offer from the store. The first load selects the
        first handler's declared types and the whole range; later ones keep the selection."""
        await self._safely("Refresh", self._refresh())

    async def _refresh(self) -> None:
        self.say("Scanning the log…")
        found = await survey(self.bus)
        chosen = set(self.types.value)
        self.types.options = [(f"{t} ({n:,})", t) for t, n in sorted(found.counts.items())]
        if self._types_chosen:
            self.types.value = tuple(t for t in sorted(found.counts) if t in chosen)
        else:  # the first time there are types to offer: the handler's own
            self._select_declared_types()
            self._types_chosen = bool(found.counts)
        self._follow_whole_range(found.earliest, found.latest)
        self._sync_replay_button()
        if found.total == 0:
            self.say("The store holds no events: nothing to replay.", "warning")
            return
        text = (
            f"{plural(found.total, 'event')} of {plural(len(found.counts), 'type')}, "
            f"{self._when(found.earliest)} to {self._when(found.latest)}."
        )
        if not self.types.value:
            text += " Select the event types to replay (none selected yet)."
        self.say(text)

    def _follow_whole_range(self, earliest: datetime | None, latest: datetime | None) -> None:
        """Pickers at the whole span (or empty) follow it; a range the reader chose stays."""
        old = self._whole
        if old is None or self.start_picker.moment in (None, old[0]):
            self.start_picker.value = earliest
        if old is None or self.end_picker.moment in (None, old[1]):
            self.end_picker.value = latest
        self._whole = (earliest, latest)

    def _select_declared_types(self) -> None:
        """Select the types the chosen handler declares ("*": all), among those in the store."""
        declared = declared_types(self.handlers[self.handler_picker.value])
        offered = [value for _, value in self.types.options]
        self.types.value = tuple(t for t in offered if "*" in declared or t in declared)

    def _on_handler_picker_change(self, change: dict[str, Any]) -> None:
        self._select_declared_types()

    def _on_types_change(self, change: dict[str, Any]) -> None:
        self._sync_replay_button()

    def _sync_replay_button(self) -> None:
        """With no type selected there is nothing safe to replay: the button is off."""
        self.replay_button.disabled = not self.types.value
        self.replay_button.tooltip = "" if self.types.value else "Select event types first"

    def _set_buttons_disabled(self, disabled: bool) -> None:
        super()._set_buttons_disabled(disabled)
        if not disabled:
            self._sync_replay_button()

    def _when(self, moment: datetime | None) -> str:
        return "-" if moment is None else f"{time_text(moment, self.zone)} {self.zone_label}"

    def _selection(self) -> tuple[list[str], datetime | None, datetime | None]:
        start, end = self.start_picker.moment, self.end_picker.moment
        if start is not None and end is not None and end < start:
            raise ValueError(f"'To' ({self._when(end)}) is before 'From' ({self._when(start)})")
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
        self.result_html.value = _dry_run_html(found, self.zone)
        self.say(
            f"Dry run: {plural(found.total, 'event')} would be replayed through "
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
        self.say(f"Replaying {plural(selected, 'event')} through {name!r}…")

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


def _summary(result: ReplayResult) -> str:
    text = (
        f"Replay through {result.handler!r}: {result.handled:,} handled, "
        f"{result.failed:,} failed, in {result.elapsed_s:.2f} s"
    )
    if result.skipped:
        text += f"; {result.skipped:,} skipped (could not be decoded)"
    return text + "."


def _row(stored: StoredEvent | None, tz: tzinfo) -> list[object]:
    if stored is None:
        return ["", "", "", ""]
    when = time_text(ms_to_datetime(stored.timestamp_ms), tz)
    return [stored.event_id, stored.event_type, f"v{stored.version}", when]


def _dry_run_html(found: Survey, tz: tzinfo = UTC) -> str:
    if found.total == 0:
        return "<i>No events match this selection.</i>"
    stamp = f"timestamp ({zone_label(tz)})"
    counts = html_table(["event type", "events"], sorted(found.counts.items()))
    ends = html_table(
        ["", "event id", "type", "version", stamp],
        [["first", *_row(found.first, tz)], ["last", *_row(found.last, tz)]],
        css="white-space:nowrap",
    )
    sample = html_table(
        ["event id", "type", "version", stamp, "payload"],
        [[*_row(s, tz), s.data] for s in found.sample],
    )
    return (
        f"<b>Dry run: {plural(found.total, 'event')}</b>{counts}<b>First and last</b>{ends}"
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
