"""EventBrowser: filter the log by type, source, time and text, and page through it as a table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.widgets._base import AsyncPanel, html_table, inclusive_end, survey, utc

if TYPE_CHECKING:
    import pandas as pd

#: rows per page of the table; only one page is ever turned into HTML
PAGE_SIZE = 25
#: events one Apply loads at most by default: a frame of this size builds in well under a second
MAX_ROWS = 100_000
#: envelope columns shown first; payload columns (data.*) follow when the page has values
ENVELOPE = ["event_id", "event_type", "version", "source", "timestamp"]


class EventBrowser(AsyncPanel):
    """Filters over the log; "Apply" loads the matching events into `browser.frame` and shows a page.

    Empty type or source selections mean all. "To" is inclusive. The search looks for the text
    (case-insensitive) in every payload column. `max_rows` caps what one Apply loads (None: all).
    """

    def __init__(
        self, bus: EventBus, *, page_size: int = PAGE_SIZE, max_rows: int | None = MAX_ROWS
    ) -> None:
        super().__init__(bus)
        self.page_size = page_size
        self.max_rows = max_rows
        #: the filtered events of the last Apply (a pandas DataFrame), None before the first
        self.frame: pd.DataFrame | None = None
        self.page = 0

        self.types = widgets.SelectMultiple(options=[], rows=6, description="Types")
        self.sources = widgets.SelectMultiple(options=[], rows=6, description="Sources")
        self.start_picker = widgets.DatetimePicker(description="From")
        self.end_picker = widgets.DatetimePicker(description="To (incl.)")
        self.search = widgets.Text(description="Search", placeholder="text in the payload")
        self.apply_button = self._button(
            "Apply", self._on_apply_button_click, button_style="primary"
        )
        self.refresh_button = self._button("Refresh", self._on_refresh_button_click)
        self.prev_button = self._button("◀ Prev", self._on_prev_button_click)
        self.next_button = self._button("Next ▶", self._on_next_button_click)
        self.page_label = widgets.Label()
        self.counts_html = widgets.HTML()
        self.table_html = widgets.HTML()
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
        ]
        self._start("refresh", self.refresh())

    def __repr__(self) -> str:
        rows = None if self.frame is None else len(self.frame)
        return f"EventBrowser(types={len(self.types.options)}, rows={rows}, page={self.page + 1})"

    # -- loading ------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload the types and sources on offer from the store, then apply the filters."""
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
        await self.apply()

    def _on_refresh_button_click(self, button: widgets.Button) -> None:
        self._start("Refresh", self.refresh())

    def _on_apply_button_click(self, button: widgets.Button) -> None:
        self._start("Apply", self.apply())

    async def apply(self) -> None:
        """Load the events matching the filters into `frame` and show its first page."""
        from eventkit.frames import events_frame

        types = list(self.types.value) or None
        sources = list(self.sources.value)
        start, end = utc(self.start_picker.value), utc(self.end_picker.value)
        if start is not None and end is not None and end < start:
            self.say("'To' is before 'From': nothing can match.", "warning")
            return
        self.say("Loading the matching events…")
        frame = await events_frame(
            self.bus,
            event_types=types,
            start_time=start,
            end_time=inclusive_end(end),
            source=sources[0] if len(sources) == 1 else None,
            limit=self.max_rows,
        )
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
        self.say(
            f"{len(self.frame):,} events match"
            + (f" (loading stopped at max_rows={self.max_rows:,})" if capped else "")
            + "."
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
            return
        first = self.page * self.page_size
        rows = frame.iloc[first : first + self.page_size]
        payload = [c for c in frame.columns if str(c).startswith("data.") and rows[c].notna().any()]
        columns = [c for c in ENVELOPE if c in frame.columns] + payload
        self.table_html.value = html_table(
            [str(c) for c in columns], rows[columns].itertuples(index=False, name=None)
        )
        self.page_label.value = (
            f"rows {first + 1:,}–{first + len(rows):,} of {len(frame):,} · "
            f"page {self.page + 1:,}/{self.pages:,}"
        )

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


def _text_mask(frame: pd.DataFrame, text: str) -> Any:
    """Rows where any payload column contains the text, case-insensitively, vectorised per column."""
    import pandas as pd

    mask = pd.Series(False, index=frame.index)
    for column in frame.columns:
        if str(column).startswith("data."):
            values = frame[column].astype("string")
            mask |= values.str.contains(text, case=False, regex=False).fillna(False).astype(bool)
    return mask
