"""Time for the plots: bin widths chosen from the span (1 ms to 364 days), unacked lag per bin, the
window that leaves far-off stragglers out, and date/time ticks in a named zone.

Times arrive as UTC datetime64 columns; matplotlib gets them zone-free (as UTC) and the tick
labels show them in the zone asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

#: bin widths tried in order: the first giving at most MAX_BINS bins over the span is used
INTERVALS = (
    "1ms", "2ms", "5ms", "10ms", "20ms", "50ms", "100ms", "200ms", "500ms",
    "1s", "2s", "5s", "10s", "15s", "30s", "1min", "2min", "5min", "10min", "15min", "30min",
    "1h", "2h", "3h", "6h", "12h", "1D", "2D", "7D", "14D", "28D", "91D", "364D",
)  # fmt: skip
MAX_BINS = 120
#: at most this share of the points (one at least) may be left out at either end of a time axis,
#: and only across a gap over SQUASH times what remains; fewer points than MIN_TO_TRIM are all shown
STRAGGLERS = 0.01
MIN_TO_TRIM = 20
SQUASH = 3


# -- bins -----------------------------------------------------------------------------------------


def choose_interval(times: pd.Series) -> str:
    """The finest bin width (1 ms to 364 days) that keeps the span within MAX_BINS bins."""
    span = times.max() - times.min() if len(times) else pd.Timedelta(0)
    for interval in INTERVALS:
        if span / pd.Timedelta(interval) <= MAX_BINS:
            return interval
    return INTERVALS[-1]


def interval_label(interval: str) -> str:
    """A bin width as a reader says it: "5 ms", "second", "15 min", "hour", "week", "91 days"."""
    ms = pd.Timedelta(interval) // pd.Timedelta(milliseconds=1)
    for unit, size, one in (("days", 86_400_000, "day"), ("h", 3_600_000, "hour"),
                            ("min", 60_000, "minute"), ("s", 1000, "second")):  # fmt: skip
        if ms % size == 0:
            n = ms // size
            if unit == "days" and n % 7 == 0:
                return "week" if n == 7 else f"{n // 7} weeks"
            return one if n == 1 else f"{n} {unit}"
    return f"{ms} ms"


def binned_counts(
    times: pd.Series, codes: np.ndarray, names: list[str], interval: str
) -> pd.DataFrame:
    """Rows: every bin from first to last (empty bins too); columns: names; cells: counts.

    ``codes`` index ``names``, one per time. One bincount over integer bins and label codes:
    seconds for 10M rows, where crosstab takes half a minute.
    """
    step = pd.Timedelta(interval) // pd.Timedelta(milliseconds=1)
    ms = times.to_numpy("datetime64[ms]").astype(np.int64)
    first = ms.min() // step * step  # bins aligned on the epoch, as Series.dt.floor aligns them
    bins = (ms - first) // step
    size = int(bins.max()) + 1
    flat = np.bincount(bins * len(names) + codes, minlength=size * len(names))
    index = pd.date_range(pd.Timestamp(first, unit="ms", tz="UTC"), periods=size, freq=interval)
    return pd.DataFrame(flat.reshape(size, len(names)), index=index, columns=names)


def lag_series(
    published: pd.Series,
    acked: pd.Series,
    interval: str | None = None,
    window: Window | None = None,
) -> pd.Series:
    """Unacked count per bin (+1 at publish, -1 at ack), the peak of each bin so a spike shows.

    ``interval`` defaults to one chosen from the span; ``window`` limits the bins to a span (the
    count carried into it still includes what came before).
    """
    acked = acked.dropna()
    times = np.concatenate([published.to_numpy("datetime64[ms]"), acked.to_numpy("datetime64[ms]")])
    steps = np.concatenate([np.ones(len(published), np.int64), -np.ones(len(acked), np.int64)])
    order = np.argsort(times, kind="stable")
    lag = pd.Series(np.cumsum(steps[order]), index=pd.DatetimeIndex(times[order], tz="UTC"))
    if window is not None:
        before = lag[lag.index < window.start]
        lag = lag[(lag.index >= window.start) & (lag.index <= window.end)]
        if len(before):  # the count carried in, at the window's start
            lag = pd.concat([pd.Series([before.iloc[-1]], index=[window.start]), lag])
    interval = interval or choose_interval(lag.index.to_series())
    return lag.resample(interval).max().ffill().astype(np.int64)


# -- stragglers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The span a time axis shows, and what it leaves out at either end."""

    start: pd.Timestamp
    end: pd.Timestamp
    before: pd.Series  # the times left out, earlier than start
    after: pd.Series  # and later than end

    @classmethod
    def of(cls, times: pd.Series) -> Window:
        """All of ``times`` but far-off stragglers: at most 1 % of them (one at least) at either
        end, each side cut only across a gap over 3x what remains, so one event eight months
        before a busy week no longer squashes the week into a sliver."""
        at = np.sort(naive(pd.DatetimeIndex(times.dropna())))
        lo, hi = 0, len(at) - 1
        if len(at) >= MIN_TO_TRIM:
            most = max(1, int(len(at) * STRAGGLERS))
            for _ in range(2):  # a cut at one end can make the other end's gap count
                cut = 1 + int(np.argmax(np.diff(at[: most + 1])))
                if _squashes(at[cut] - at[cut - 1], at[hi] - at[cut]):
                    lo = max(lo, cut)
                cut = len(at) - 1 - most + int(np.argmax(np.diff(at[-most - 1 :])))
                if _squashes(at[cut + 1] - at[cut], at[cut] - at[lo]):
                    hi = min(hi, cut)
        start, end = (pd.Timestamp(at[i], tz="UTC") for i in (lo, hi))
        return cls(start, end, times[times < start], times[times > end])

    def holds(self, times: pd.Series) -> pd.Series:
        """Which of ``times`` are in the window."""
        return (times >= self.start) & (times <= self.end)

    def note(self, noun: str, tz: Any, plural: str | None = None) -> str | None:
        """ "Not shown: 1 event earlier (2026-03-09 00:00 UTC)", or None when nothing is left out."""
        parts = []
        for side, times, edge in (("earlier", self.before, "from"), ("later", self.after, "to")):
            if len(times):
                when = _moment(times.min() if side == "earlier" else times.max(), tz)
                words = noun if len(times) == 1 else plural or f"{noun}s"
                detail = when if len(times) == 1 else f"{edge} {when}"
                parts.append(f"{len(times):,} {words} {side} ({detail})")
        return "Not shown: " + "; ".join(parts) if parts else None


def _squashes(gap: np.timedelta64, rest: np.timedelta64) -> bool:
    """Would a gap this wide squeeze the rest (a real span, not one instant) into a sliver?"""
    return bool(rest > np.timedelta64(0) and gap > SQUASH * rest)


# -- axis and zone --------------------------------------------------------------------------------


def time_axis(ax: Axes, tz: Any) -> None:
    """Concise date/time ticks (sub-second to years) in the zone ``tz``."""
    zone = _zone(tz)
    locator = mdates.AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz=zone)  # type: ignore[no-untyped-call]
    # below a minute, "23:45:17.75" rather than a bare "17.75" next to a far-off offset
    formatter.formats[5] = "%H:%M:%S.%f"
    formatter.offset_formats[5] = "%Y-%b-%d"
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)


def zone_name(tz: Any) -> str:
    """The zone as an axis label names it: "UTC", "Europe/Berlin"."""
    zone = _zone(tz)
    return "UTC" if zone is UTC else str(getattr(zone, "key", zone))


def naive(index: pd.DatetimeIndex) -> np.ndarray:
    """UTC times without a zone: matplotlib takes them as UTC; the locator shows them in ``tz``."""
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    values: np.ndarray = index.to_numpy()
    return values


def _zone(tz: Any) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    return UTC if str(tz).upper() == "UTC" else ZoneInfo(str(tz))


def _moment(time: pd.Timestamp, tz: Any) -> str:
    local = time.tz_convert(_zone(tz))
    return f"{local:%Y-%m-%d %H:%M} {zone_name(tz)}"
