"""What the three panels share: click-started tasks that are never lost, escaped HTML, a store survey."""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.consumer import describe
from eventkit.events import ms_to_datetime
from eventkit.pages import iter_pages, one_by_one
from eventkit.stores.base import StoredEvent

logger = logging.getLogger(__name__)

#: longest text shown in one table cell; the rest is cut with an ellipsis
MAX_CELL_CHARS = 120
#: how many status messages a panel keeps in `panel.messages`
MAX_MESSAGES = 200
ONE_MS = timedelta(milliseconds=1)


def escape(value: object) -> str:
    """Every piece of event data or error text goes through here before it becomes HTML."""
    return html.escape("" if value is None else str(value), quote=True)


def cell_text(value: object, limit: int = MAX_CELL_CHARS) -> str:
    """A value as short plain text (not yet escaped): NaN/None blank, datetimes ISO, long text cut."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, datetime):
        text = value.isoformat(timespec="milliseconds")
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
        if text in ("NaT", "nan", "<NA>"):
            return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def html_table(columns: Sequence[str], rows: Iterable[Sequence[object]], css: str = "") -> str:
    """A plain HTML table with every header and cell escaped (event payloads are untrusted)."""
    head = "".join(f"<th style='text-align:left'>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(cell_text(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    return (
        f"<table class='eventkit-table' style='font-size:12px;{css}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def pre(text: str, title: str) -> str:
    """A titled, escaped, scrollable block for payloads and tracebacks."""
    return (
        f"<div><b>{escape(title)}</b><pre style='max-height:220px;overflow:auto;"
        f"white-space:pre-wrap'>{escape(text)}</pre></div>"
    )


def utc(moment: datetime | None) -> datetime | None:
    """Pickers hand back the browser's local zone; the bus filters in UTC (naive taken as UTC)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def inclusive_end(moment: datetime | None) -> datetime | None:
    """The panels' "To" is inclusive; the bus's end_time is exclusive, so add one millisecond."""
    return None if moment is None else moment + ONE_MS


@dataclass
class Survey:
    """What a scan of the log found, without decoding a single payload."""

    total: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    sources: Counter[str] = field(default_factory=Counter)
    first: StoredEvent | None = None
    last: StoredEvent | None = None
    min_ms: int | None = None
    max_ms: int | None = None
    sample: list[StoredEvent] = field(default_factory=list)

    @property
    def earliest(self) -> datetime | None:
        return None if self.min_ms is None else ms_to_datetime(self.min_ms)

    @property
    def latest(self) -> datetime | None:
        return None if self.max_ms is None else ms_to_datetime(self.max_ms)


async def survey(
    bus: EventBus,
    event_types: Sequence[str] | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    *,
    sample_size: int = 0,
) -> Survey:
    """Count events by type and source, page by page, so a million events never sit in a list."""
    found = Survey()
    async for stored in one_by_one(iter_pages(bus.store, event_types, start_time, end_time)):
        found.total += 1
        found.counts[stored.event_type] += 1
        found.sources[stored.source] += 1
        if found.first is None:
            found.first = stored
        found.last = stored
        ts = stored.timestamp_ms
        found.min_ms = ts if found.min_ms is None else min(found.min_ms, ts)
        found.max_ms = ts if found.max_ms is None else max(found.max_ms, ts)
        if len(found.sample) < sample_size:
            found.sample.append(stored)
    return found


class AsyncPanel(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no type hints
    """A VBox whose buttons start coroutines on the running loop, one after another.

    Button callbacks are synchronous, so each click becomes a task kept in a set (a task with no
    strong reference may be garbage-collected mid-run). Any error lands in the status line and in
    `messages`, never only in a log. `await panel.wait()` finishes what clicks started.
    """

    def __init__(self, bus: EventBus, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bus = bus
        self.status = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        #: every status line this panel showed, oldest first: (level, text)
        self.messages: list[tuple[str, str]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_task: asyncio.Task[None] | None = None
        self._buttons: list[widgets.Button] = []

    @property
    def errors(self) -> list[str]:
        """The error messages shown so far (tests and notebooks assert on them)."""
        return [text for level, text in self.messages if level == "error"]

    def say(self, text: str, level: str = "info") -> None:
        """Show one status line (escaped) and keep it in `messages`."""
        self.messages.append((level, text))
        del self.messages[:-MAX_MESSAGES]
        color = {"error": "#b00020", "warning": "#8a5a00"}.get(level, "#333")
        self.status.value = f"<span style='color:{color}'>{escape(text)}</span>"

    def _start(self, label: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run coro after whatever this panel is already doing; with no loop, run it now."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._guarded(label, coro, None))
            return
        task = loop.create_task(self._guarded(label, coro, self._last_task), name=label)
        self._last_task = task
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)

    async def _guarded(
        self, label: str, coro: Coroutine[Any, Any, None], previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None and not previous.done():
            await asyncio.wait({previous})
        self._set_buttons_disabled(True)
        try:
            await coro
        except Exception as e:
            logger.debug("%s failed", label, exc_info=True)
            self.say(f"{label} failed: {describe(e)}", "error")
        finally:
            self._set_buttons_disabled(False)

    def _set_buttons_disabled(self, disabled: bool) -> None:
        """Buttons are off while a task runs, so a second click cannot interleave with the first."""
        for button in self._buttons:
            button.disabled = disabled

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            self.say(f"{task.get_name()} was cancelled", "warning")
        elif task.exception() is not None:  # BaseException past _guarded, e.g. KeyboardInterrupt
            self.say(f"{task.get_name()} failed: {describe(task.exception())}", "error")  # type: ignore[arg-type]

    async def wait(self) -> None:
        """Finish every task that clicks (or the constructor's first refresh) started."""
        while pending := {t for t in self._tasks if not t.done()}:
            await asyncio.wait(pending)

    def _button(self, label: str, callback: Any, **kwargs: Any) -> widgets.Button:
        button = widgets.Button(description=label, **kwargs)
        button.on_click(callback)
        self._buttons.append(button)
        return button
