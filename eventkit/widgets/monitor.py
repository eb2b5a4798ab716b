"""Monitor: every consumer group's lag, work in flight, DLQ, throughput and consumers, live."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.checks import check_number
from eventkit.errors import BusClosedError
from eventkit.live import GroupRow, Sample, Sampler, backoff, rate_text
from eventkit.policy import describe
from eventkit.widgets._base import (
    AsyncPanel,
    ZoneInput,
    bus_closed,
    closed_message,
    escape,
    plural,
    time_text,
)

SPARK_WIDTH = 120
SPARK_HEIGHT = 22
#: what the status line says while the panel is paused by hand
PAUSED_MESSAGE = "Paused: click Resume (or run monitor.start()) to watch again."
#: ... and when its last view in the notebook went away
HIDDEN_MESSAGE = "Paused while the panel is not shown; it resumes when shown again."


class Trend(NamedTuple):
    """What a group's sparklines are drawn from, oldest first."""

    lag: list[int]
    throughput: list[float]


def sparkline(values: Sequence[float], label: str, color: str = "#1f77b4") -> str:
    """A small inline SVG line of the values scaled from 0 to their maximum (or the label alone
    for no values). Built from numbers only; the label is escaped."""
    shown = [float(v) for v in values if math.isfinite(v)]
    if not shown:
        return ""
    top = max(max(shown), 1e-12)
    step = (SPARK_WIDTH - 2) / max(len(shown) - 1, 1)
    points = " ".join(
        f"{1 + i * step:.1f},{SPARK_HEIGHT - 2 - v / top * (SPARK_HEIGHT - 4):.1f}"
        for i, v in enumerate(shown if len(shown) > 1 else shown * 2)
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{SPARK_WIDTH}' height='{SPARK_HEIGHT}' "
        f"viewBox='0 0 {SPARK_WIDTH} {SPARK_HEIGHT}' style='vertical-align:middle'>"
        f"<title>{escape(label)}</title><polyline fill='none' stroke='{color}' "
        f"stroke-width='1.5' points='{points}'/></svg>"
    )


class Monitor(AsyncPanel):
    """Every consumer group of the store, live: what is left to read, what is being handled,
    what failed, how fast it goes, and who is working on it.

    Each row shows a group's lag (events not yet delivered to it), events in flight (leased or
    awaiting a retry), DLQ entries, throughput (events acked per second since the previous
    sample), live consumers, and sparklines of lag and throughput over the last
    `window_minutes`. The figures are read from the store every `every` seconds by a task on the
    running loop, so work done by other processes on the same store shows too.

    The monitor pauses when you click "Pause" (or call `monitor.stop()`), when the panel is
    closed (`monitor.close()`), and while the notebook no longer shows it; "Resume" (or
    `monitor.start()`) watches again. When the bus is closed it stops for good and its status
    line says which cell to run again. A store that fails is said in the status line and asked
    again after a growing pause (up to 30 s), until it answers. Group names are escaped.

    Parameters
    ----------
    bus : EventBus
        An initialized bus on the store to watch; it needs no subscription of its own.
    every : float, default 1.0
        Seconds between two samples (0.05 to 3600).
    window_minutes : float, default 5
        How much history the sparklines (and `samples`) keep.
    tz : str or tzinfo, default "UTC"
        Zone the sample time is shown in, always labelled.
    start : bool, default True
        Start watching at once (needs a running loop, as in a notebook cell).

    Attributes
    ----------
    samples : deque of (datetime, dict)
        Every sample in the window, oldest first: its UTC time and `bus.get_stats()` then.
    rows : list of GroupRow
        The groups in the newest sample (lag, in_flight, dlq, acked_per_second, consumers, ...).
    pause_button : ipywidgets.Button
        "Pause" while watching, "Resume" while paused.

    Examples
    --------
    >>> monitor = Monitor(bus, every=1.0)
    >>> monitor                                   # a cell's last line shows the panel
    >>> await monitor.refresh()                   # one sample now, paused or not
    >>> [(r.group, r.lag, r.acked_per_second) for r in monitor.rows]
    [('indexer', 120, 35.0)]
    >>> monitor.pause_button.click(); await monitor.wait()
    >>> monitor.running
    False
    """

    def __init__(
        self,
        bus: EventBus,
        every: float = 1.0,
        window_minutes: float = 5,
        tz: ZoneInput = "UTC",
        *,
        start: bool = True,
    ) -> None:
        check_number("every", every, minimum=0.05, maximum=3600)
        check_number("window_minutes", window_minutes, minimum=0, allow_minimum=False,
                     maximum=24 * 60)  # fmt: skip
        super().__init__(bus, tz=tz)
        self.every = float(every)
        self.window_minutes = window_minutes
        self.sampler = Sampler(window_seconds=window_minutes * 60)
        self.title = widgets.HTML("<h4>Consumer groups, live</h4>")
        self.header = widgets.HTML()
        self.table = widgets.HTML()
        self.pause_button = widgets.Button(description="Pause", layout=widgets.Layout(width="auto"))
        self.pause_button.on_click(self._on_pause_button_click)
        self.children = [self.title, self.header, self.table, self.pause_button, self.status]
        self._watcher: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._sampling = asyncio.Lock()
        self._hidden = False
        #: True once the bus was found closed: the monitor stopped for good
        self.bus_gone = False
        self._view_count = 0  # ask the front end to count this panel's views (0: none yet)
        self.observe(self._on_view_count_change, names="_view_count")
        self.render()
        if start:
            self.start()

    def __repr__(self) -> str:
        state = "running" if self.running else "paused"
        return f"Monitor(every={self.every}, {state}, samples={len(self.samples)})"

    @property
    def samples(self) -> deque[Sample]:
        return self.sampler.samples

    @property
    def rows(self) -> list[GroupRow]:
        return self.sampler.rows()

    @property
    def running(self) -> bool:
        """True while the sampling task runs."""
        return self._watcher is not None and not self._watcher.done()

    def trend(self, group: str) -> Trend:
        """The numbers behind a group's sparklines."""
        return Trend(self.sampler.series(group, "lag"), self.sampler.rates(group))

    # -- starting and stopping ----------------------------------------------------------------

    def start(self) -> None:
        """Sample every `every` seconds in a task on the running loop (no-op if running)."""
        if self.running:
            return
        if bus_closed(self.bus):
            self._stop_for_bus()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.say("Not watching: no event loop runs here; call monitor.start() in a notebook "
                     "cell or in async code.", "warning")  # fmt: skip
            return
        self._hidden = False
        self._watcher = loop.create_task(self._watch(), name="eventkit-monitor")
        self._watcher.add_done_callback(self._on_watcher_done)
        self.pause_button.description = "Pause"
        self.say(f"Watching, every {self.every:g} s.")

    def stop(self, message: str | None = PAUSED_MESSAGE) -> None:
        """Stop sampling (the task ends at once; `await monitor.wait()` until it has)."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None and not watcher.done():
            watcher.cancel()
            self._stopping.add(watcher)
            watcher.add_done_callback(self._stopping.discard)
        self.pause_button.description = "Resume"
        if message:
            self.say(message)

    def close(self) -> None:
        """Stop sampling and close the panel's widgets."""
        if hasattr(self, "_stopping"):  # not if __init__ failed: Widget.__del__ closes too
            self.stop(message=None)
            for child in (self.title, self.header, self.table, self.pause_button, self.status):
                child.close()
        super().close()

    async def wait(self) -> None:
        """Finish what clicks started, and a stop that is under way."""
        await super().wait()
        while pending := {t for t in self._stopping if not t.done()}:
            await asyncio.wait(pending)

    def _stop_for_bus(self) -> None:
        self.bus_gone = True
        self.stop(message=None)
        self.pause_button.disabled = True
        self.say(closed_message(self.bus), "error")

    def _on_pause_button_click(self, _: widgets.Button) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def _on_view_count_change(self, change: dict[str, Any]) -> None:
        """The front end counts this panel's views: none left pauses, one again resumes."""
        old, new = change["old"] or 0, change["new"] or 0
        if old > 0 and new == 0 and self.running:
            self.stop(HIDDEN_MESSAGE)
            self._hidden = True
        elif new > 0 and self._hidden and not self.bus_gone:
            self.start()

    def _on_watcher_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.pause_button.description = "Resume"
            self.say(f"Watching stopped: {describe(task.exception())}", "error")  # type: ignore[arg-type]

    # -- sampling -----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Take one sample now (paused or not) and redraw."""
        await self._safely("Refresh", self._sample())

    async def _sample(self) -> None:
        async with self._sampling:  # refresh() and the task never interleave their samples
            await self.sampler.take(self.bus)
        self.render()

    async def _watch(self) -> None:
        """Sample until stopped; a closed bus ends it, a failing store is asked again later."""
        failures = 0
        while True:
            if bus_closed(self.bus):
                self._stop_for_bus()
                return
            try:
                await self._sample()
            except Exception as e:
                if bus_closed(self.bus) or isinstance(e, BusClosedError):
                    self._stop_for_bus()
                    return
                failures += 1
                delay = backoff(failures, self.every)
                self.say(f"Reading the store failed ({describe(e)}); trying again in "
                         f"{delay:g} s.", "error")  # fmt: skip
                await asyncio.sleep(delay)
                continue
            if failures:
                failures = 0
                self.say(f"The store answers again; watching, every {self.every:g} s.")
            await asyncio.sleep(self.every)

    # -- drawing ------------------------------------------------------------------------------

    def render(self) -> None:
        """Draw the newest sample: a header line and one row per group."""
        latest = self.sampler.latest
        if latest is None:
            self.header.value = "<i>No sample yet.</i>"
            self.table.value = ""
            return
        store = latest.stats.get("store", {})
        rows = self.rows
        self.header.value = (
            f"Sampled {escape(time_text(latest.at, self.zone))} {escape(self.zone_label)} · "
            f"{escape(plural(int(store.get('total_events', 0)), 'event'))} in the store · "
            f"{escape(plural(len(rows), 'group'))}"
        )
        if not rows:
            self.table.value = "<i>No consumer groups yet.</i>"
            return
        window = f"last {self.window_minutes:g} min"
        head = ["Group", "Lag", f"Lag, {window}", "In flight", "DLQ", "Acked/s",
                f"Acked/s, {window}", "Consumers"]  # fmt: skip
        cells = "".join(f"<th style='text-align:left;padding:0 8px'>{escape(h)}</th>" for h in head)
        body = "".join(self._row_html(row) for row in rows)
        self.table.value = (
            f"<table class='eventkit-table eventkit-monitor' style='font-size:12px;"
            f"white-space:nowrap'><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"
        )

    def _row_html(self, row: GroupRow) -> str:
        trend = self.trend(row.group)
        name = row.group
        numbers = [f"{row.lag:,}", None, f"{row.in_flight:,}", f"{row.dlq:,}",
                   rate_text(row.acked_per_second), None, f"{row.consumers:,}"]  # fmt: skip
        sparks = [
            sparkline(trend.lag, f"lag of {name}, max {max(trend.lag, default=0):,}"),
            sparkline(trend.throughput, f"acked/s of {name}", color="#2ca02c"),
        ]
        tds = [f"<td style='padding:0 8px'>{escape(name)}</td>"]
        for value in numbers:
            if value is None:
                tds.append(f"<td style='padding:0 8px'>{sparks.pop(0)}</td>")
            else:
                tds.append(f"<td style='text-align:right;padding:0 8px'>{escape(value)}</td>")
        return "<tr>" + "".join(tds) + "</tr>"
