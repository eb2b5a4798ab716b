"""Watching a store live: stats sampled over time, with rates and trends (the Monitor panel and
`eventkit top`), and the newest events one line each (`eventkit tail`). Core: stdlib only."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from eventkit.clock import ms_to_datetime
from eventkit.errors import BusClosedError, StoreError
from eventkit.policy import describe
from eventkit.records import StoredEvent
from eventkit.stores.base import EventStore

if TYPE_CHECKING:
    from eventkit.bus import EventBus

#: samples kept whatever the window (a window of an hour at 0.1 s would be 36,000)
MAX_SAMPLES = 10_000
#: longest wait between two tries while the store fails
MAX_BACKOFF_SECONDS = 30.0
#: rows per read while following the log
PAGE = 500
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


class Sample(NamedTuple):
    """The store's stats (as `bus.get_stats()` returns them) at one moment (UTC)."""

    at: datetime
    stats: Mapping[str, Any]


class GroupRow(NamedTuple):
    """One group in the newest sample; acked_per_second is None until there are two samples."""

    group: str
    lag: int
    in_flight: int
    dlq: int
    acked_per_second: float | None
    consumers: int
    acked: int
    retried: int


def _figure(group: Mapping[str, Any], key: str) -> int:
    value = group.get(key, 0)
    return value if isinstance(value, int) else 0


class Sampler:
    """The samples of the last `window_seconds` (oldest first), and what they say.

    Throughput is the `acked` counter's growth between two samples over the time between them;
    a counter that went down (the group was deleted and made again) gives no rate for that step.
    """

    def __init__(self, window_seconds: float = 300.0) -> None:
        self.window = timedelta(seconds=window_seconds)
        self.samples: deque[Sample] = deque(maxlen=MAX_SAMPLES)

    def add(self, stats: Mapping[str, Any], at: datetime | None = None) -> Sample:
        sample = Sample(at or datetime.now(UTC), stats)
        self.samples.append(sample)
        while self.samples[0].at < sample.at - self.window:
            self.samples.popleft()
        return sample

    async def take(self, bus: EventBus) -> Sample:
        """One sample of the store's figures now (shared by every process on the store)."""
        return self.add(await bus.get_stats())

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    @staticmethod
    def _group(sample: Sample, group: str) -> Mapping[str, Any] | None:
        found = sample.stats.get("groups", {}).get(group)
        return found if isinstance(found, Mapping) else None

    def rate(self, group: str, before: Sample, after: Sample) -> float | None:
        """Events acked per second by the group between two samples."""
        old, new = self._group(before, group), self._group(after, group)
        seconds = (after.at - before.at).total_seconds()
        if old is None or new is None or seconds <= 0:
            return None
        done = _figure(new, "acked") - _figure(old, "acked")
        return done / seconds if done >= 0 else None

    def rows(self) -> list[GroupRow]:
        """Every group of the newest sample, by name."""
        latest = self.latest
        if latest is None:
            return []
        previous = self.samples[-2] if len(self.samples) > 1 else None
        rows = []
        for name, figures in sorted(latest.stats.get("groups", {}).items()):
            rate = None if previous is None else self.rate(name, previous, latest)
            rows.append(GroupRow(
                name, _figure(figures, "lag"), _figure(figures, "in_flight"),
                _figure(figures, "dlq"), rate, _figure(figures, "consumers"),
                _figure(figures, "acked"), _figure(figures, "retried"),
            ))  # fmt: skip
        return rows

    def series(self, group: str, key: str) -> list[int]:
        """A figure of the group in every sample that has the group, oldest first."""
        return [_figure(g, key) for s in self.samples if (g := self._group(s, group)) is not None]

    def rates(self, group: str) -> list[float]:
        """Acked per second between each two consecutive samples that have the group (0 where
        there is no rate)."""
        samples = list(self.samples)
        return [
            self.rate(group, before, after) or 0.0
            for before, after in zip(samples, samples[1:], strict=False)
            if self._group(after, group) is not None
        ]


# -- text for terminals ----------------------------------------------------------------------


def printable(text: str) -> str:
    """Text safe to print on a terminal: control characters (escape sequences) shown, not run."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def spark_text(values: Sequence[float], width: int = 20) -> str:
    """The last `width` values as block characters scaled from 0 to their maximum."""
    shown = [v for v in values[-width:] if math.isfinite(v)]
    top = max(shown, default=0)
    if top <= 0:
        return SPARK_BLOCKS[0] * len(shown)
    last = len(SPARK_BLOCKS) - 1
    return "".join(SPARK_BLOCKS[min(last, max(0, round(v / top * last)))] for v in shown)


def rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.1f}"


def time_text(moment: datetime, tz: tzinfo = UTC) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def top_lines(sampler: Sampler, where: str, *, trend: bool = False, tz: tzinfo = UTC) -> list[str]:
    """The newest sample as a title line and a table, one row per group."""
    latest = sampler.latest
    if latest is None:
        return [f"eventkit top · {where} · no sample yet"]
    store = latest.stats.get("store", {})
    rows = sampler.rows()
    title = (
        f"eventkit top · {printable(where)} · {time_text(latest.at, tz)} {_zone_name(tz)} · "
        f"{_figure(store, 'total_events'):,} events · {len(rows)} groups"
    )
    if not rows:
        return [title, "no consumer groups yet"]
    head = ["GROUP", "LAG", "IN FLIGHT", "DLQ", "ACKED/S", "CONSUMERS", "ACKED", "RETRIED"]
    table = [
        [printable(r.group), f"{r.lag:,}", f"{r.in_flight:,}", f"{r.dlq:,}",
         rate_text(r.acked_per_second), f"{r.consumers:,}", f"{r.acked:,}", f"{r.retried:,}"]
        for r in rows
    ]  # fmt: skip
    if trend:
        head.append(f"LAG, LAST {_window_text(sampler.window)}")
        for cells, row in zip(table, rows, strict=True):
            cells.append(spark_text(sampler.series(row.group, "lag")))
    widths = [max(len(cells[i]) for cells in [head, *table]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        numbers = zip(cells[1:8], widths[1:8], strict=True)
        padded = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in numbers]
        return "  ".join(padded + cells[8:]).rstrip()

    return [title, line(head), *(line(cells) for cells in table)]


def _zone_name(tz: tzinfo) -> str:
    return "UTC" if tz is UTC else str(getattr(tz, "key", None) or tz.tzname(None) or tz)


def _window_text(window: timedelta) -> str:
    minutes = window.total_seconds() / 60
    return f"{minutes:g} MIN" if minutes >= 1 else f"{window.total_seconds():g} S"


def tail_line(stored: StoredEvent, payload_chars: int = 80, tz: tzinfo = UTC) -> str:
    """One event on one line: time, type, short id, source, payload (cut to payload_chars)."""
    try:
        moment = ms_to_datetime(stored.timestamp_ms).astimezone(tz)
        when = moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + ("Z" if tz is UTC else "")
    except (ValueError, OverflowError):
        when = f"{stored.timestamp_ms} ms"
    payload = " ".join(printable(stored.data).split())
    if len(payload) > payload_chars:
        payload = payload[: max(payload_chars - 1, 0)] + "…"
    parts = [when, printable(stored.event_type), stored.event_id[:8], printable(stored.source)]
    return "  ".join([*parts, payload])


# -- reading the log's end -------------------------------------------------------------------


async def last_position(store: EventStore) -> int | None:
    """The position of the newest event (None for an empty log), by galloping: positions grow
    but need not be dense (trims; Redis stream ids)."""
    first = await store.read(limit=1)
    if not first:
        return None
    known, step = first[0].position, 1
    while found := await store.read(after_position=known + step, limit=1):
        known, step = found[0].position, step * 2
    bound = known + step  # no event after bound; one at `known`: the newest is between
    while known < bound:
        middle = (known + bound) // 2
        found = await store.read(after_position=middle, limit=1)
        if found:
            known = found[0].position
        else:
            bound = middle
    return known


async def last_events(
    store: EventStore, count: int, event_types: Sequence[str] | None = None
) -> list[StoredEvent]:
    """The newest `count` events (of these types), oldest first, reading back from the end in
    growing spans of positions rather than the whole log."""
    newest = await last_position(store) if count else None
    if newest is None:
        return []
    span = count
    while True:
        start: int | None = newest - span if newest - span > 0 else None  # None: from the first
        after = start
        kept: deque[StoredEvent] = deque(maxlen=count)
        seen = 0
        while page := await store.read(event_types=event_types, after_position=after, limit=PAGE):
            kept.extend(page)
            seen += len(page)
            after = page[-1].position
        if seen >= count or start is None:
            return list(kept)
        span *= 8


def backoff(failures: int, every: float) -> float:
    """Seconds to wait after `failures` failed tries in a row: doubling, capped."""
    return float(min(every * 2 ** min(failures, 30), max(every, MAX_BACKOFF_SECONDS)))


# -- the live commands -----------------------------------------------------------------------


class LiveBus:
    """A read-only bus for a long-running command, opened again after a store error or when
    `marker()` changes. The CLI passes the identity of a SQLite store's -wal file: a store read
    while it had none does not see a writer that opens it later, and one read through a -wal
    that was removed (its writer closed) does not see the next writer's."""

    def __init__(self, make: Callable[[], EventBus], marker: Callable[[], object] = lambda: None):
        self._make = make
        self._marker = marker
        self._bus: EventBus | None = None
        self._opened_with: object = None

    async def get(self) -> EventBus:
        if self._bus is not None and self._marker() != self._opened_with:
            await self.drop()
        if self._bus is None:
            marker = self._marker()
            bus = self._make()
            try:
                await bus.initialize()
            except BaseException:
                await bus.close()
                raise
            self._bus, self._opened_with = bus, marker
        return self._bus

    async def drop(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            await bus.close()


def file_identity(path: Path) -> Callable[[], object]:
    """A LiveBus marker: which file is at `path` now (None: none), so a file deleted and made
    again between two looks counts as a change."""

    def identity() -> tuple[int, int] | None:
        try:
            found = path.stat()
        except OSError:
            return None
        return found.st_dev, found.st_ino

    return identity


FAILURES = (StoreError, BusClosedError, OSError)


async def run_top(
    live: LiveBus, out: TextIO, where: str, *, every: float, once: bool, tty: bool
) -> None:
    """Print the groups' figures every `every` seconds until cancelled (once: one sample)."""
    sampler = Sampler()
    await live.get()  # a store that cannot be opened at all is an error, not a retry
    failures = 0
    while True:
        error = ""
        try:
            await sampler.take(await live.get())
            failures = 0
        except FAILURES as e:
            if once:
                raise
            failures += 1
            await live.drop()
            error = f"reading the store failed ({describe(e)}); trying again in "
            error += f"{backoff(failures, every):g} s"
        lines = top_lines(sampler, where, trend=tty and not once)
        if error:
            lines.append(error)
        if tty and not once:
            out.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n")
        else:
            out.write("\n".join(lines) + "\n" + ("" if once else "\n"))
        out.flush()
        if once:
            return
        await asyncio.sleep(backoff(failures, every) if failures else every)


async def run_tail(
    live: LiveBus,
    out: TextIO,
    err: TextIO,
    *,
    count: int,
    event_types: Sequence[str] | None,
    follow: bool,
    poll: float = 0.25,
    payload_chars: int = 80,
) -> None:
    """Print the newest `count` events, then (follow) each new one as it is stored."""
    store = (await live.get()).store
    shown = await last_events(store, count, event_types)
    for stored in shown:
        out.write(tail_line(stored, payload_chars) + "\n")
    out.flush()
    if not follow:
        return
    after = shown[-1].position if shown else await last_position(store)
    failures = 0
    while True:
        await asyncio.sleep(backoff(failures, poll) if failures else poll)
        try:
            store = (await live.get()).store
            while page := await store.read(
                event_types=event_types, after_position=after, limit=PAGE
            ):
                out.write("".join(tail_line(s, payload_chars) + "\n" for s in page))
                out.flush()
                after = page[-1].position
            failures = 0
        except FAILURES as e:
            failures += 1
            await live.drop()
            err.write(f"eventkit: reading the store failed ({describe(e)}); trying again in "
                      f"{backoff(failures, poll):g} s\n")  # fmt: skip
            err.flush()
