"""EventBrowser: filter the log by type, source, time and text, and page through it as a table."""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.widgets._base import (
    Cell,
    TimePicker,
    ZoneInput,
    cell_text,
    html_table,
    inclusive_end,
    plural,
    pre,
    scroll_table,
    survey,
    time_text,
)
from eventkit.widgets._trace_view import TraceTarget, TracingPanel

if TYPE_CHECKING:
    import pandas as pd

#: rows per page of the table; only one page is ever turned into HTML
PAGE_SIZE = 25
#: events one Apply loads at most by default: a frame of this size builds in well under a second
MAX_ROWS = 100_000
#: envelope columns shown first; payload columns (data.*) follow when the page has values
ENVELOPE = ["event_id", "event_type", "version", "source", "timestamp"]
#: characters of an event id shown in the table (the detail view shows all of it)
SHORT_ID = 8
#: with no type chosen, a page whose payload fills more columns than this shows one summary column
MAX_PAYLOAD_COLUMNS = 6
#: the summary column's name in `browser.columns`
PAYLOAD = "payload"
#: cell texts that show nothing: a column of only these is left out of the table
EMPTY = ("", "[]", "{}")


class EventBrowser(TracingPanel):
    """Filter the event log and page through it as a table; "Apply" loads what matches.

    Empty type or source selections mean all. "From"/"To" are in UTC unless `tz=` says otherwise
    (labelled either way), and "To" is inclusive. The search finds the text (case-insensitive) in
    any payload field; pressing Enter in it applies the filters. The table shows the envelope
    (event ids cut to 8 characters), then the payload fields that hold values on the page; with
    no type chosen and a mixed page, one "payload" column sums them up. Pick an event under
    "Event" to see it whole: full id, envelope and payload, and "Show trace" for its story.
    All of it is escaped.

    Parameters
    ----------
    bus : EventBus
        An initialized bus. If a later cell closes it, the status line says which cell to run again.
    page_size : int, default 25
        Rows per table page (only one page becomes HTML, however big the result).
    max_rows : int or None, default 100_000
        Events one Apply loads at most (the oldest first); None loads all.
    tz : str or tzinfo, optional
        Zone for the pickers and the table's times; UTC unless given.

    Buttons
    -------
    Apply
        Load the events matching the filters into `browser.frame` (a pandas DataFrame, times in
        UTC) and show counts by type and the first page. Enter in "Search" does the same.
    Refresh
        Reload the types and sources on offer from the store, then apply.
    ◀ Prev / Next ▶
        Turn the table's pages.
    Show trace
        The story of the event picked under "Event" (every event of its correlation, each
        group's outcome): timeline and table below it, frame in `browser.trace`. Off until an
        event is picked; `await browser.show_trace()` does the same and returns the frame.

    The status line is `browser.status` (text in `browser.status_text`), e.g. "2 events match.";
    the shown columns are `browser.columns`.

    Examples
    --------
    >>> browser = EventBrowser(bus)
    >>> display(browser)                              # in a notebook; or drive it from code:
    >>> browser.types.value = ("asset.discovered",)
    >>> browser.apply_button.click(); await browser.wait()
    >>> browser.frame["data.asset_id"].head()
    """

    trace_hint = "Pick an event under “Event” first"

    def __init__(
        self,
        bus: EventBus,
        *,
        page_size: int = PAGE_SIZE,
        max_rows: int | None = MAX_ROWS,
        tz: ZoneInput = None,
    ) -> None:
        super().__init__(bus, tz=tz)
        self.page_size = page_size
        self.max_rows = max_rows
        #: the filtered events of the last Apply (a pandas DataFrame), None before the first
        self.frame: pd.DataFrame | None = None
        self.page = 0
        #: the frame columns the table shows for this page (PAYLOAD: the summary column)
        self.columns: list[str] = []
        #: the row of `frame` shown in full (show_event), which "Show trace" acts on
        self.shown: int | None = None

        self.types = widgets.SelectMultiple(options=[], rows=6, description="Types")
        self.sources = widgets.SelectMultiple(options=[], rows=6, description="Sources")
        self.start_picker = TimePicker("From", self.zone)
        self.end_picker = TimePicker("To", self.zone, note="inclusive")
        # the value reaches the kernel on Enter (or leaving the box), and a new value applies
        self.search = widgets.Text(
            description="Search",
            placeholder="text in the payload, then Enter",
            continuous_update=False,
        )
        self.search.observe(self._on_search_change, names="value")
        self.apply_button = self._button(
            "Apply", self._on_apply_button_click, button_style="primary"
        )
        self.refresh_button = self._button("Refresh", self._on_refresh_button_click)
        self.prev_button = self._button("◀ Prev", self._on_prev_button_click)
        self.next_button = self._button("Next ▶", self._on_next_button_click)
        self.page_label = widgets.Label()
        self.counts_html = widgets.HTML()
        # the table scrolls sideways inside this box; the panel keeps its width
        self.table_html = widgets.HTML(layout=widgets.Layout(width="100%", overflow="auto"))
        self.row_picker = widgets.Dropdown(
            options=[], value=None, description="Event", layout=widgets.Layout(width="95%")
        )
        self.row_picker.observe(self._on_row_picker_change, names="value")
        self.detail_html = widgets.HTML()
        self.children = [
            widgets.HTML("<h4>Event browser</h4>"),
            widgets.HBox([self.types, self.sources]),
            widgets.HBox([self.start_picker, self.end_picker]),
            self.search,
            widgets.HBox([self.apply_button, self.refresh_button]),
            self.status,
            self.counts_html,
            widgets.HBox([self.prev_button, self.next_button, self.page_label]),
            self.table_html,
            self.row_picker,
            self.trace_button,
            self.detail_html,
            self.trace_output,
        ]
        self._start("Refresh", self.refresh())

    def __repr__(self) -> str:
        rows = None if self.frame is None else len(self.frame)
        return f"EventBrowser(types={len(self.types.options)}, rows={rows}, page={self.page + 1})"

    # -- loading ------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload the types and sources on offer from the store, then apply the filters."""
        await self._safely("Refresh", self._refresh())

    async def _refresh(self) -> None:
        self.say("Scanning the log…")
        found = await survey(self.bus)
        chosen_types, chosen_sources = set(self.types.value), set(self.sources.value)
        self.types.options = [(f"{t} ({n:,})", t) for t, n in sorted(found.counts.items())]
        self.types.value = tuple(t for t in sorted(found.counts) if t in chosen_types)
        self.sources.options = [
            (f"{s or '(none)'} ({n:,})", s) for s, n in sorted(found.sources.items())
        ]
        self.sources.value = tuple(s for s in sorted(found.sources) if s in chosen_sources)
        if found.total == 0:
            self.frame = None
            self.counts_html.value = self.table_html.value = ""
            self._show_page()
            self.say("The store holds no events yet: publish or import some, then Refresh.")
            return
        await self._apply()

    def _on_refresh_button_click(self, button: widgets.Button) -> None:
        self._start("Refresh", self.refresh())

    def _on_apply_button_click(self, button: widgets.Button) -> None:
        self._start("Apply", self.apply())

    def _on_search_change(self, change: dict[str, Any]) -> None:
        self._start("Apply", self.apply())

    async def apply(self) -> None:
        """Load the events matching the filters into `frame` and show its first page."""
        await self._safely("Apply", self._apply())

    async def _apply(self) -> None:
        from eventkit.frames import CoercedValuesWarning, events_frame

        types = list(self.types.value) or None
        sources = list(self.sources.value)
        start, end = self.start_picker.moment, self.end_picker.moment
        if start is not None and end is not None and end < start:
            self.say("'To' is before 'From': nothing can match.", "warning")
            return
        self.say("Loading the matching events…")
        with warnings.catch_warnings():  # said once in the status line below, not per Apply
            warnings.simplefilter("ignore", CoercedValuesWarning)
            frame = await events_frame(
                self.bus,
                event_types=types,
                start_time=start,
                end_time=inclusive_end(end),
                source=sources[0] if len(sources) == 1 else None,
                limit=self.max_rows,
            )
        coerced = frame.attrs.get("coerced") or {}
        if len(sources) > 1:
            frame = frame[frame["source"].isin(sources)]
        text = self.search.value.strip()
        if text:
            frame = frame[_text_mask(frame, text)]
        self.frame = frame.reset_index(drop=True)
        self.page = 0
        self._show_counts()
        self._show_page()
        capped = self.max_rows is not None and len(frame) >= self.max_rows
        count = len(self.frame)
        self.say(
            f"{plural(count, 'event')} {'matches' if count == 1 else 'match'}"
            + (f" (loading stopped at max_rows={self.max_rows:,})" if capped else "")
            + "."
            + (
                " Values that do not fit their field's type show as <NA>: "
                + ", ".join(f"{column} ({n:,})" for column, n in sorted(coerced.items()))
                + "."
                if coerced
                else ""
            )
        )

    # -- showing ------------------------------------------------------------------------------

    def _show_counts(self) -> None:
        assert self.frame is not None
        if self.frame.empty:
            self.counts_html.value = "<i>No events match these filters.</i>"
            return
        counts = self.frame["event_type"].value_counts().sort_index()
        self.counts_html.value = html_table(
            ["event type", "events"], [[t, f"{n:,}"] for t, n in counts.items()]
        )

    @property
    def pages(self) -> int:
        rows = 0 if self.frame is None else len(self.frame)
        return max(1, -(-rows // self.page_size))

    def _show_page(self) -> None:
        """Only this page's rows become HTML, so a huge frame costs the browser nothing."""
        frame = self.frame
        self.prev_button.disabled = self.page <= 0
        self.next_button.disabled = self.page >= self.pages - 1
        if frame is None or frame.empty:
            self.page_label.value = "no rows"
            self.table_html.value = ""
            self.columns = []
            self._fill_row_picker(None)
            return
        first = self.page * self.page_size
        rows = frame.iloc[first : first + self.page_size]
        payload = [c for c in frame.columns if str(c).startswith("data.") and _filled(rows[c])]
        envelope = [c for c in ENVELOPE if c in frame.columns]
        summary = not self.types.value and len(payload) > MAX_PAYLOAD_COLUMNS
        self.columns = envelope + ([PAYLOAD] if summary else payload)
        headers = [
            f"timestamp ({self.zone_label})" if c == "timestamp" else c for c in self.columns
        ]
        self.table_html.value = scroll_table(
            headers, (self._cells(row, envelope, payload, summary) for _, row in rows.iterrows())
        )
        self.page_label.value = (
            f"rows {first + 1:,}–{first + len(rows):,} of {len(frame):,} · "
            f"page {self.page + 1:,}/{self.pages:,}"
        )
        self._fill_row_picker(rows)

    def _cells(
        self, row: pd.Series, envelope: list[str], payload: list[str], summary: bool
    ) -> list[object]:
        cells: list[object] = []
        for column in envelope:
            value = row[column]
            if column == "event_id":
                cells.append(Cell(str(value)[:SHORT_ID], str(value)))
            elif column == "timestamp":
                cells.append(time_text(value, self.zone))
            else:
                cells.append(value)
        if summary:
            fields = _payload(row, payload)
            text = ", ".join(
                f"{k}={cell_text(v)}" for k, v in fields.items() if cell_text(v) not in EMPTY
            )
            cells.append(Cell(cell_text(text), text))
        else:
            cells.extend(row[c] for c in payload)
        return cells

    # -- one event in full --------------------------------------------------------------------

    def _fill_row_picker(self, rows: pd.DataFrame | None) -> None:
        options: list[tuple[str, int | None]] = [("(pick an event on this page)", None)]
        if rows is not None:
            for index, row in rows.iterrows():
                when = time_text(row["timestamp"], self.zone)
                label = f"{str(row['event_id'])[:SHORT_ID]} · {row['event_type']} · {when}"
                options.append((label, int(index)))
        self.row_picker.options = options
        self.row_picker.value = None
        self.show_event(None)

    def _on_row_picker_change(self, change: dict[str, Any]) -> None:
        self.show_event(change["new"])

    def show_event(self, index: int | None) -> None:
        """Show one row of `frame` in full (None: hide): the whole event id, envelope, payload."""
        if index is None or self.frame is None or not 0 <= index < len(self.frame):
            self.shown = None
            self.detail_html.value = ""
            self._on_selection_change()
            return
        self.shown = index
        self._on_selection_change()
        row = self.frame.iloc[index]
        facts = [
            ("event id", row["event_id"]),
            ("type", f"{row['event_type']} v{row['version']}"),
            ("source", row["source"]),
            (f"timestamp ({self.zone_label})", time_text(row["timestamp"], self.zone)),
        ]
        payload = _payload(row, [c for c in self.frame.columns if str(c).startswith("data.")])
        text = json.dumps(payload, indent=2, ensure_ascii=False, default=str)
        self.detail_html.value = html_table(["field", "value"], facts) + pre(text, "Payload")

    def _trace_target(self) -> TraceTarget | None:
        if self.shown is None or self.frame is None:
            return None
        row = self.frame.iloc[self.shown]
        story = row.get("correlation_id")
        return TraceTarget(str(row["event_id"]), story if isinstance(story, str) else None)

    def _on_prev_button_click(self, button: widgets.Button) -> None:
        self.show_page(self.page - 1)

    def _on_next_button_click(self, button: widgets.Button) -> None:
        self.show_page(self.page + 1)

    def show_page(self, page: int) -> None:
        """Turn to a page (clamped to the ones there are)."""
        self.page = min(max(page, 0), self.pages - 1)
        self._show_page()

    def _set_buttons_disabled(self, disabled: bool) -> None:
        super()._set_buttons_disabled(disabled)
        if not disabled:
            self.prev_button.disabled = self.page <= 0
            self.next_button.disabled = self.page >= self.pages - 1


def _filled(values: pd.Series) -> bool:
    """Whether a column holds anything on this page (not NA, not an empty text, list or dict)."""
    present = values[values.notna()]
    return any(cell_text(value) not in EMPTY for value in present)


def _payload(row: pd.Series, columns: list[str]) -> dict[str, Any]:
    """The row's payload fields that hold a value, without the "data." prefix."""
    out: dict[str, Any] = {}
    for column in columns:
        value = row[column]
        if cell_text(value) != "":
            out[str(column)[len("data.") :]] = value.item() if hasattr(value, "item") else value
    return out


def _text_mask(frame: pd.DataFrame, text: str) -> Any:
    """Rows where any payload column contains the text, case-insensitively, vectorised per column."""
    import pandas as pd

    mask = pd.Series(False, index=frame.index)
    for column in frame.columns:
        if str(column).startswith("data."):
            values = frame[column].astype("string")
            mask |= values.str.contains(text, case=False, regex=False).fillna(False).astype(bool)
    return mask
