""" "Show trace", written once for EventBrowser and DLQPanel: the story of the selected event as
plot_trace's timeline and a compact, escaped table of the chain, in an Output area of the panel."""

from __future__ import annotations

import base64
import io
from datetime import tzinfo
from typing import TYPE_CHECKING, Any, NamedTuple

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.errors import ConfigError
from eventkit.policy import describe
from eventkit.widgets._base import (
    AsyncPanel,
    Cell,
    ZoneInput,
    plural,
    scroll_table,
    time_text,
    zone_label,
)

if TYPE_CHECKING:
    import pandas as pd

#: events listed in the trace table; a longer story is cut, and the table says so
MAX_TRACE_ROWS = 200
#: events drawn in the timeline at most; a longer story is listed only
MAX_PLOTTED = 300
#: characters of an error shown in an outcome cell (the whole error is its tooltip)
MAX_ERROR_CHARS = 60
#: marks the selected event's row in the trace table
SELECTED = "▸"
SHORT_ID = 8


class TraceTarget(NamedTuple):
    """The event whose story "Show trace" loads: by its correlation id when known, else its id."""

    event_id: str
    correlation_id: str | None = None


class TracingPanel(AsyncPanel):
    """An AsyncPanel with a "Show trace" button acting on the one event the panel has selected.

    A subclass says what is selected (`_trace_target`) and calls `_on_selection_change()` when
    that changes; the button is off while nothing is selected. `await panel.show_trace()` does
    what a click does and returns the trace frame (None when nothing was shown).
    """

    #: the button's tooltip while nothing is selected
    trace_hint = "Select an event first"

    def __init__(self, bus: EventBus, *, tz: ZoneInput = None, **kwargs: Any) -> None:
        super().__init__(bus, tz=tz, **kwargs)
        #: the trace_frame last shown (one row per event and group, times in UTC); None when none
        self.trace: pd.DataFrame | None = None
        #: the escaped HTML of the trace table last shown ("" when none)
        self.trace_html = ""
        self.trace_button = self._button("Show trace", self._on_trace_button_click)
        self.trace_button.disabled = True
        self.trace_button.tooltip = self.trace_hint
        #: where the trace is shown: the timeline (PNG), then the table
        self.trace_output = widgets.Output()
        self._traced: str | None = None  # the event id the shown trace belongs to

    def _trace_target(self) -> TraceTarget | None:
        """The selected event, or None; each panel says what its selection is."""
        raise NotImplementedError

    def _on_selection_change(self) -> None:
        """The button follows the selection; a trace of another event is taken away."""
        target = self._trace_target()
        self.trace_button.disabled = target is None
        self.trace_button.tooltip = "" if target else self.trace_hint
        if self._traced is not None and (target is None or target.event_id != self._traced):
            self._clear_trace()

    def _set_buttons_disabled(self, disabled: bool) -> None:
        super()._set_buttons_disabled(disabled)
        if not disabled:  # a finished task does not turn "Show trace" on without a selection
            self._on_selection_change()

    def _clear_trace(self) -> None:
        self.trace, self.trace_html, self._traced = None, "", None
        self.trace_output.outputs = ()

    def _on_trace_button_click(self, button: widgets.Button) -> None:
        self._start("Show trace", self._show_trace())

    async def show_trace(self) -> pd.DataFrame | None:
        """Load the story of the selected event (every event of its correlation, with each
        group's deliveries) and show its timeline and table; returns the trace frame, None when
        nothing is selected or it could not be loaded (the status line says why)."""
        self._clear_trace()
        await self._safely("Show trace", self._show_trace())
        return self.trace

    async def _show_trace(self) -> None:
        from eventkit.frames_trace import trace_frame

        self._clear_trace()
        target = self._trace_target()
        if target is None:
            self.say(f"{self.trace_hint}, then click “Show trace”.", "warning")
            return
        short = target.event_id[:SHORT_ID]
        self.say(f"Loading the trace of event {short}…")
        try:
            if target.correlation_id:
                frame = await trace_frame(self.bus, target.correlation_id)
            else:
                frame = await trace_frame(self.bus, event_id=target.event_id)
        except ConfigError:  # the event is not in the log any more
            frame = None
        if frame is None or frame.empty:
            self.say(f"Event {short} is no longer in the store (trimmed, or its store was "
                     "replaced): there is no trace to show.", "warning")  # fmt: skip
            return
        self.trace, self._traced = frame, target.event_id
        events = int(frame["step"].nunique())
        groups = int(frame["consumer_group"].nunique())
        self.trace_html = trace_table(frame, self.zone, target.event_id)
        outputs = [_html_output(self.trace_html, f"Trace of event {target.event_id}")]
        note = ""
        if events <= MAX_PLOTTED:
            try:
                outputs.insert(0, _png_output(frame, self.zone, events))
            except Exception as e:  # the table still tells the story
                note = f" The timeline could not be drawn ({describe(e)})."
        else:
            note = f" The timeline is drawn for stories of up to {MAX_PLOTTED:,} events only."
        self.trace_output.outputs = tuple(outputs)
        self.say(
            f"Trace of event {short}: {plural(events, 'event')} in its story, "
            f"delivered to {plural(groups, 'consumer group') if groups else 'no consumer group'}."
            + note,
            "warning" if note else "info",
        )


def trace_table(frame: pd.DataFrame, tz: tzinfo, selected: str | None = None) -> str:
    """The chain as an escaped HTML table: one row per event in causal order (indented by
    depth, the selected one marked ▸), its own time, and one column per group with what that
    group did with it."""
    events = frame.drop_duplicates("step").sort_values("step")
    groups = sorted(str(g) for g in frame["consumer_group"].dropna().unique())
    outcomes = {
        (row.event_id, row.consumer_group): outcome(row)
        for row in frame.itertuples()
        if isinstance(row.consumer_group, str)
    }
    columns = ["", "#", "event type", "event id", f"event time ({zone_label(tz)})", *groups]
    rows = [
        [
            SELECTED if event.event_id == selected else "",
            int(event.step) + 1,
            "\u00a0\u00a0" * max(int(event.depth) - 1, 0)
            + ("↳ " if event.depth else "")
            + str(event.event_type),
            Cell(str(event.event_id)[:SHORT_ID], str(event.event_id)),
            time_text(event.timestamp, tz),
            *(outcomes.get((event.event_id, g), "") for g in groups),
        ]
        for event in events.head(MAX_TRACE_ROWS).itertuples()
    ]
    more = len(events) - len(rows)
    tail = (
        f"<i>…and {more:,} more (the panel's `trace` frame has them all).</i>" if more > 0 else ""
    )
    return scroll_table(columns, rows) + tail


def outcome(row: Any) -> Cell:
    """What one group did with one event, in words; the whole last error is the tooltip."""
    attempts = 0 if _missing(row.attempts) else int(row.attempts)
    tries = plural(attempts, "attempt")
    error = row.last_error if isinstance(row.last_error, str) else ""
    if row.status == "acked":
        text = "acked" if attempts <= 1 else f"acked after {tries}"
    elif row.status == "dead":
        where = "in the DLQ" if not _missing(row.failed_at) else "dead-lettered"
        text = f"{where} after {tries}"
    elif row.status == "retrying":
        text = f"retrying after {tries}"
    else:
        text = f"in flight (attempt {max(attempts, 1)})"
    if error and row.status != "acked":
        short = error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"
        text += f": {short}"
    return Cell(text, error or text)


def _missing(value: Any) -> bool:
    import pandas as pd

    return bool(pd.isna(value))  # None, NaN, NaT or <NA>


def _html_output(html: str, text: str) -> dict[str, Any]:
    return {"output_type": "display_data", "metadata": {},
            "data": {"text/html": html, "text/plain": text}}  # fmt: skip


def _png_output(frame: pd.DataFrame, tz: tzinfo, events: int) -> dict[str, Any]:
    """The timeline drawn on a figure of its own (never pyplot's, which the inline backend would
    show again at the end of some later cell), as a PNG display output."""
    from matplotlib.figure import Figure

    from eventkit.plot_display import FIGSIZE
    from eventkit.plot_trace import plot_trace

    height = 1.6 + 0.38 * min(max(events, 1), 24)
    figure = Figure(figsize=(FIGSIZE[0] * 1.25, height), layout="constrained")
    ax = plot_trace(frame, figure.add_subplot(), tz=tz)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    png = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": png, "text/plain": ax.get_title()}}  # fmt: skip
