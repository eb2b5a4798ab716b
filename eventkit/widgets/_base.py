"""What the three panels share: click-started tasks that are never lost, escaped HTML, a store survey."""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections import Counter
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.consumer import describe
from eventkit.errors import BusClosedError, ConfigError, StoreError
from eventkit.events import ms_to_datetime
from eventkit.pages import iter_pages, one_by_one
from eventkit.stores.base import StoredEvent

logger = logging.getLogger(__name__)

#: longest text shown in one table cell; the rest is cut with an ellipsis
MAX_CELL_CHARS = 120
#: how many status messages a panel keeps in `panel.messages`
MAX_MESSAGES = 200
ONE_MS = timedelta(milliseconds=1)


#: what a panel's status line says when its bus was closed (SPEC §6: in the reader's terms)
CLOSED_MESSAGE = (
    "The bus was closed (a later cell ran `await bus.close()`): run the notebook's setup cell "
    "again, then this one."
)
#: ... and when it was never opened
NOT_OPEN_MESSAGE = (
    "The bus is not open yet: run the notebook's setup cell (the one that runs "
    "`await bus.initialize()`) first, then this one."
)

#: a zone to show times in: None (UTC), a zone name ("Europe/Paris") or a tzinfo
ZoneInput = str | tzinfo | None


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


def plural(count: int, one: str, many: str | None = None) -> str:
    """ "1 event", "2 events", "1 entry" with many="entries"; thousands separated."""
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


class Cell(NamedTuple):
    """A table cell whose full text shows as a tooltip (ids cut short, long values)."""

    text: str
    title: str


def _td(value: object) -> str:
    if isinstance(value, Cell):
        return f"<td title='{escape(value.title)}'>{escape(cell_text(value.text))}</td>"
    return f"<td>{escape(cell_text(value))}</td>"


def html_table(columns: Sequence[str], rows: Iterable[Sequence[object]], css: str = "") -> str:
    """A plain HTML table with every header and cell escaped (event payloads are untrusted)."""
    head = "".join(f"<th style='text-align:left'>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    return (
        f"<table class='eventkit-table' style='font-size:12px;{css}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def scroll_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A table that never wraps a cell (timestamps stay on one line) and scrolls sideways inside
    its own box, so a wide page never widens the panel."""
    table = html_table(columns, rows, css="white-space:nowrap;border-collapse:collapse")
    return f"<div class='eventkit-scroll' style='overflow-x:auto;max-width:100%'>{table}</div>"


def pre(text: str, title: str) -> str:
    """A titled, escaped, scrollable block for payloads and tracebacks."""
    return (
        f"<div><b>{escape(title)}</b><pre style='max-height:220px;overflow:auto;"
        f"white-space:pre-wrap'>{escape(text)}</pre></div>"
    )


def utc(moment: datetime | None) -> datetime | None:
    """A datetime in UTC (naive taken as UTC), as the bus filters."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def zone(tz: ZoneInput) -> tzinfo:
    """The zone a panel shows times in: UTC unless told; a bad name is a ConfigError."""
    if tz is None:
        return UTC
    if isinstance(tz, tzinfo):
        return tz
    if isinstance(tz, str) and tz.strip().upper() in ("UTC", "Z"):
        return UTC
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ConfigError(
            "tz", tz, "give None (UTC), an IANA zone name such as 'Europe/Paris', or a tzinfo"
        ) from None


def zone_label(tz: tzinfo) -> str:
    """How a zone is named next to the times it labels: "UTC", "Europe/Paris"."""
    if tz is UTC:
        return "UTC"
    key = getattr(tz, "key", None)
    return str(key) if key else (tz.tzname(None) or str(tz))


def time_text(moment: datetime | None, tz: tzinfo = UTC) -> str:
    """A moment as wall-clock text in the zone, to the millisecond: "2026-03-02 08:00:00.000"."""
    if moment is None:
        return ""
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


class TimePicker(widgets.NaiveDatetimePicker):  # type: ignore[misc]  # no type hints
    """A date-time picker in one named zone (UTC unless told), labelled with it.

    The browser's own zone never enters: the front end shows the naive value as it is, so "08:00"
    is 08:00 UTC in any browser. A naive value set from code is taken as the picker's zone, an aware
    one (or a pandas.Timestamp) is converted to it. `moment` is the value as a UTC datetime.
    """

    def __init__(self, label: str, tz: tzinfo = UTC, note: str = "", **kwargs: Any) -> None:
        self.zone = tz
        kwargs.setdefault("style", {"description_width": "initial"})
        detail = zone_label(tz) + (f", {note}" if note else "")
        super().__init__(description=f"{label} ({detail})", **kwargs)

    def _validate_tz(self, value: datetime) -> datetime:
        if value.tzinfo is not None:
            value = value.astimezone(self.zone)
        # a plain naive datetime (not a pandas.Timestamp), to the millisecond as events are stored
        return datetime(
            value.year, value.month, value.day, value.hour, value.minute, value.second,
            value.microsecond // 1000 * 1000,
        )  # fmt: skip

    @property
    def moment(self) -> datetime | None:
        """The picked time in UTC (None when empty)."""
        value: datetime | None = self.value
        return None if value is None else value.replace(tzinfo=self.zone).astimezone(UTC)


def bus_closed(bus: EventBus) -> bool:
    """True when the bus cannot serve a panel: closed (or never opened)."""
    return bus.closed or not bus.initialized


def closed_message(bus: EventBus) -> str:
    """Which cell to run again, in the reader's terms."""
    return CLOSED_MESSAGE if bus.closed else NOT_OPEN_MESSAGE


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
    `messages`, never only in a log. `await panel.wait()` finishes what clicks started. A closed
    bus or a failing store is said in the status line, never raised.
    """

    def __init__(self, bus: EventBus, *, tz: ZoneInput = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bus = bus
        #: the zone times are shown in (UTC unless `tz=` said otherwise), and its label
        self.zone = zone(tz)
        self.zone_label = zone_label(self.zone)
        #: the status line: one escaped sentence saying what the panel did or why it could not
        self.status = widgets.HTML(layout=widgets.Layout(min_height="1.5em"))
        self.status.add_class("eventkit-status")
        #: every status line this panel showed, oldest first: (level, text)
        self.messages: list[tuple[str, str]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_task: asyncio.Task[None] | None = None
        self._buttons: list[widgets.Button] = []

    @property
    def errors(self) -> list[str]:
        """The error messages shown so far (tests and notebooks assert on them)."""
        return [text for level, text in self.messages if level == "error"]

    @property
    def status_text(self) -> str:
        """The status line as plain text (what the reader sees)."""
        return self.messages[-1][1] if self.messages else ""

    def say(self, text: str, level: str = "info") -> None:
        """Show one status line (escaped) and keep it in `messages`."""
        self.messages.append((level, text))
        del self.messages[:-MAX_MESSAGES]
        color = {"error": "#b00020", "warning": "#8a5a00"}.get(level, "#333")
        self.status.value = f"<span style='color:{color}'>{escape(text)}</span>"

    async def _safely(self, label: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run one step of a panel; a closed bus or a store error becomes the status line."""
        if bus_closed(self.bus):
            coro.close()
            self.say(closed_message(self.bus), "error")
            return
        try:
            await coro
        except BusClosedError:
            self.say(closed_message(self.bus), "error")
        except StoreError as e:
            logger.debug("%s failed", label, exc_info=True)
            if bus_closed(self.bus):  # closed while the step ran
                self.say(closed_message(self.bus), "error")
            else:
                self.say(f"{label} failed: the store said {describe(e)}", "error")

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
            await self._safely(label, coro)
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
        kwargs.setdefault("layout", widgets.Layout(width="auto"))
        button = widgets.Button(description=label, **kwargs)
        button.on_click(callback)
        self._buttons.append(button)
        return button
