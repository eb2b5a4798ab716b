"""Matplotlib views of the frames (DLQ, latency, throughput, lag), readable at 10 or 10M rows and
at any span from milliseconds to years.

Every plot aggregates with pandas or numpy first (counts per time bin, one histogram per group), so
the number of artists depends on bins and groups, never on rows. Times are drawn in UTC unless
``tz=`` names another zone, and the axis label says which. What a view leaves out (far-off
stragglers in time, the slowest deliveries) is said in a grey note under the title.

Showing: with the inline backend (Jupyter, nbconvert, nbval) a figure made here stays with pyplot,
which shows it once at the end of the cell, and an Axes drawn here that is a cell's result shows as
its figure (once) rather than as ``<Axes: …>``. With any other backend (Agg in scripts and tests)
the figure is closed at once: save or display ``ax.figure`` yourself.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import matplotlib
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from eventkit.error_kinds import error_kinds

#: bin widths tried in order: the first giving at most MAX_BINS bins over the span is used
INTERVALS = (
    "1ms", "2ms", "5ms", "10ms", "20ms", "50ms", "100ms", "200ms", "500ms",
    "1s", "2s", "5s", "10s", "15s", "30s", "1min", "2min", "5min", "10min", "15min", "30min",
    "1h", "2h", "3h", "6h", "12h", "1D", "2D", "7D", "14D", "28D", "91D", "364D",
)  # fmt: skip
MAX_BINS = 120
#: more error kinds or groups than this are drawn together as "other"
MAX_SERIES = 8
FIGSIZE = (9.0, 4.0)
LATENCY_BINS = 60
QUANTILES = (0.50, 0.95, 0.99)
#: latencies shown spanning more than this ratio (max / min) are drawn on a log axis
LOG_RATIO = 100.0
#: a slowest latency beyond TAIL_RATIO x p99 is a tail that would flatten the rest: the view
#: stops at CLIP_RATIO x p99 and a note counts what it leaves out
TAIL_RATIO = 2.0
CLIP_RATIO = 1.5
#: at most this share of the points (one at least) may be left out at either end of a time axis,
#: and only across a gap over SQUASH times what remains; fewer points than MIN_TO_TRIM are all shown
STRAGGLERS = 0.01
MIN_TO_TRIM = 20
SQUASH = 3
#: DLQ entries spread wider than this get a second panel: entries over time
LONG_DLQ_SPAN = pd.Timedelta("1h")
NOTE_GID = "eventkit-note"
MARK_GID = "eventkit-percentile"

#: Axes drawn here: the notebook display hook shows these, and only these, as their figure
_DRAWN: weakref.WeakSet[Axes] = weakref.WeakSet()


def plot_throughput(
    events: pd.DataFrame, ax: Axes | None = None, interval: str | None = None, *, tz: Any = "UTC"
) -> Axes:
    """Events per time bin, stacked by event type.

    Parameters
    ----------
    events : pandas.DataFrame
        From `eventkit.frames.events_frame`; needs ``timestamp`` (datetime64, UTC) and
        ``event_type``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.
    interval : str, optional
        Bin width as a pandas offset (``"5min"``, ``"1D"``); when None, chosen from the span
        (1 ms to 364 days, at most MAX_BINS bins).
    tz : str or tzinfo, default "UTC"
        Zone of the tick labels, named in the axis label.

    Returns
    -------
    matplotlib.axes.Axes
        Its figure is ``ax.figure``. A few events far from all the others (at most 1 %) are left
        out of the view, so they do not squash it, and a note says when and how many.

    Examples
    --------
    >>> events = await events_frame(bus)
    >>> plot_throughput(events)  # doctest: +SKIP
    """
    _require(events, "plot_throughput", "events_frame", ["timestamp", "event_type"])
    ax = _axes(ax)
    _labels(ax, "Throughput by event type", f"event time ({_zone_name(tz)})", "events")
    if events.empty:
        return _no_data(ax)
    window = Window.of(events["timestamp"])
    shown = events[window.holds(events["timestamp"])]
    interval = interval or choose_interval(shown["timestamp"])
    counts = _binned_counts(shown["timestamp"], shown["event_type"], interval)
    _stacked_bars(ax, counts, interval)
    _time_axis(ax, tz)
    ax.set_ylabel(f"events per {interval_label(interval)}")
    _count_axis(ax.yaxis)
    _legend_outside(ax, "event type", reverse=True)
    _notes(ax, [window.note("event", tz)])
    return _done(ax)


def plot_latency(deliveries: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Publish → ack latency of acked deliveries per group, with p50/p95/p99 of all marked.

    A few very slow deliveries (slowest > 2 x p99) would squeeze the rest into a sliver: the view
    then stops at 1.5 x p99 and a note counts what it leaves out ("3 slower deliveries not shown
    (max 2.3 s)"). Latencies shown spanning more than 100x go on a log axis.

    Parameters
    ----------
    deliveries : pandas.DataFrame
        From `eventkit.frames.deliveries_frame`; needs ``latency_ms`` (NaN until acked) and
        ``consumer_group``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> plot_latency(await deliveries_frame(bus))  # doctest: +SKIP
    """
    _require(deliveries, "plot_latency", "deliveries_frame", ["latency_ms", "consumer_group"])
    ax = _axes(ax)
    _labels(ax, "Publish → ack latency", "latency (ms)", "deliveries per bin")
    acked = deliveries[deliveries["latency_ms"].notna()]
    if acked.empty:
        return _no_data(ax)
    latency = acked["latency_ms"].to_numpy(dtype=np.float64).clip(min=0)
    marks = np.quantile(latency, QUANTILES)
    upper = _latency_view_end(latency, float(marks[-1]))
    in_view = latency <= upper
    edges, log = _latency_edges(latency[in_view])
    codes, groups = _codes(acked["consumer_group"])
    peak = 0
    for code, group in enumerate(groups):
        counts, _ = np.histogram(latency[in_view & (codes == code)].clip(edges[0]), edges)
        ax.stairs(counts, edges, label=f"{group} ({int((codes == code).sum()):,})")
        peak = max(peak, int(counts.max()))
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))  # 1000, not 10³
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, max(peak, 1) * 1.4)  # headroom: the percentile labels sit above the bars
    _count_axis(ax.yaxis)
    _percentile_marks(ax, marks)
    _legend_outside(ax, "consumer group (acked)")
    hidden = int((~in_view).sum())
    slower = f"{hidden:,} slower deliver{'y' if hidden == 1 else 'ies'} not shown"
    _notes(ax, [f"{slower} (max {duration_text(latency.max())})" if hidden else None])
    return _done(ax)


def plot_lag(deliveries: pd.DataFrame, ax: Axes | None = None, *, tz: Any = "UTC") -> Axes:
    """Per group over time: events published but not yet acked (the peak of each time bin).

    Rebuilt from ``published_at`` and ``acked_at``, so it reads the same for a run of a few
    seconds (millisecond bins) as for a month. Dead-lettered deliveries are left out (when they
    left is not in this frame), and a note says how many.

    Parameters
    ----------
    deliveries : pandas.DataFrame
        From `eventkit.frames.deliveries_frame`; needs ``published_at``, ``acked_at`` (datetime64,
        UTC, NaT until acked), ``consumer_group`` and ``status``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.
    tz : str or tzinfo, default "UTC"
        Zone of the tick labels, named in the axis label.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> plot_lag(await deliveries_frame(bus), tz="Europe/Berlin")  # doctest: +SKIP
    """
    _require(deliveries, "plot_lag", "deliveries_frame",
             ["published_at", "acked_at", "consumer_group", "status"])  # fmt: skip
    ax = _axes(ax)
    _labels(ax, "Unacked events per consumer group", f"time ({_zone_name(tz)})",
            "published, not yet acked")  # fmt: skip
    live = deliveries[deliveries["status"] != "dead"]
    if live.empty:
        return _no_data(ax)
    window = Window.of(pd.concat([live["published_at"], live["acked_at"].dropna()]))
    interval = choose_interval(pd.Series([window.start, window.end]))
    codes, groups = _codes(live["consumer_group"])
    for code, group in enumerate(groups):
        rows = live[codes == code]
        lag = lag_series(rows["published_at"], rows["acked_at"], interval, window)
        # after its last bin a group holds what is still unacked at the window's end (often 0)
        left = int(
            (rows["published_at"] <= window.end).sum() - (rows["acked_at"] <= window.end).sum()
        )
        edges = pd.date_range(lag.index[0], periods=len(lag) + 1, freq=interval)
        x = np.append(_naive(edges), _naive(pd.DatetimeIndex([window.end])))
        ax.step(x, np.append(lag.to_numpy(), [left, left]), where="post", label=group)
    _time_axis(ax, tz)
    ax.set_ylabel(f"published, not yet acked\n(peak per {interval_label(interval)})")
    ax.set_ylim(bottom=0)
    _count_axis(ax.yaxis)
    _legend_outside(ax, "consumer group")
    dead = len(deliveries) - len(live)
    _notes(ax, [window.note("publish or ack time", tz),
                f"{dead:,} dead-lettered deliver{'y' if dead == 1 else 'ies'} not counted"
                if dead else None])  # fmt: skip
    return _done(ax)


def plot_dlq(
    frame: pd.DataFrame, ax: Axes | None = None, *, by: str = "error", tz: Any = "UTC"
) -> Axes:
    """Dead-letter entries as horizontal bars, by error kind (`eventkit.error_kinds`) or group.

    On a new figure, entries spread over more than an hour get a second panel beside the bars:
    entries per time bin (`plot_dlq_over_time`), in the same colours.

    Parameters
    ----------
    frame : pandas.DataFrame
        From `eventkit.frames.dlq_frame`; needs ``failed_at`` (datetime64, UTC), ``last_error``
        and ``consumer_group``.
    ax : matplotlib.axes.Axes, optional
        Where to draw the bars; a new figure when None (only then the second panel).
    by : {"error", "group"}
        One bar per error kind (the text before the first colon of ``last_error``) or per
        consumer group.
    tz : str or tzinfo, default "UTC"
        Zone of the time panel's tick labels.

    Returns
    -------
    matplotlib.axes.Axes
        The bars' Axes; ``ax.figure.axes`` holds the time panel too when there is one.

    Examples
    --------
    >>> plot_dlq(await dlq_frame(bus), by="group")  # doctest: +SKIP
    """
    labels, kind = _dlq_labels(frame, "plot_dlq", by)
    long = not frame.empty and frame["failed_at"].max() - frame["failed_at"].min() > LONG_DLQ_SPAN
    over_time = None
    if ax is None and long:
        figure, (ax, over_time) = plt.subplots(
            1, 2, figsize=(FIGSIZE[0] * 1.25, FIGSIZE[1]), width_ratios=(2, 3), layout="constrained"
        )
        _hand_over(figure)
    # a new figure for the bars alone is as tall as its bars need: one bar is not a wall of blue
    ax = _axes(ax, height=min(max(2.2, 1.3 + 0.45 * labels.nunique()), FIGSIZE[1] * 1.5))
    _labels(ax, f"Dead-letter entries by {kind}", "entries", kind)
    if frame.empty:
        return _no_data(ax)
    codes, names = _codes(labels)
    totals = np.bincount(codes, minlength=len(names))
    order = np.argsort(-totals, kind="stable")  # the commonest on top
    bars = ax.barh([names[i] for i in order], totals[order], color=[f"C{i % 10}" for i in order])
    ax.bar_label(bars, labels=[f"{t:,}" for t in totals[order]], padding=3)
    ax.invert_yaxis()
    ax.margins(x=0.12)
    _count_axis(ax.xaxis)
    ax.set_title(f"Dead-letter entries by {kind} ({len(frame):,})")
    if over_time is not None:
        plot_dlq_over_time(frame, over_time, by=by, tz=tz)
    return _done(ax)


def plot_dlq_over_time(
    frame: pd.DataFrame, ax: Axes | None = None, *, by: str = "error", tz: Any = "UTC"
) -> Axes:
    """Dead-letter entries per time bin, stacked by error kind or group (bins from the span).

    Parameters
    ----------
    frame : pandas.DataFrame
        From `eventkit.frames.dlq_frame`; needs ``failed_at``, ``last_error``, ``consumer_group``.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when None.
    by : {"error", "group"}
        What the stacks are.
    tz : str or tzinfo, default "UTC"
        Zone of the tick labels, named in the axis label.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> plot_dlq_over_time(await dlq_frame(bus), tz="America/New_York")  # doctest: +SKIP
    """
    labels, kind = _dlq_labels(frame, "plot_dlq_over_time", by)
    ax = _axes(ax)
    _labels(ax, "Dead-letter entries over time", f"failed at ({_zone_name(tz)})", "entries")
    if frame.empty:
        return _no_data(ax)
    window = Window.of(frame["failed_at"])
    inside = window.holds(frame["failed_at"])
    interval = choose_interval(frame["failed_at"][inside])
    counts = _binned_counts(frame["failed_at"][inside], labels[inside], interval)
    counts = counts[counts.sum().sort_values(ascending=False, kind="stable").index]
    _stacked_bars(ax, counts, interval, colors=_stable_colors(labels, counts.columns))
    _time_axis(ax, tz)
    ax.set_ylabel(f"entries per {interval_label(interval)}")
    _count_axis(ax.yaxis)
    _legend_outside(ax, kind)
    _notes(ax, [window.note("entry", tz, plural="entries")])
    return _done(ax)


# -- aggregation ----------------------------------------------------------------------------------


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


def duration_text(ms: float) -> str:
    """Milliseconds as a reader says them: "0.4 ms", "97 ms", "2.3 s", "4.1 min"."""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


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
        at = np.sort(_naive(pd.DatetimeIndex(times.dropna())))
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


def _binned_counts(times: pd.Series, labels: pd.Series, interval: str) -> pd.DataFrame:
    """Rows: every bin from first to last (empty bins too); columns: labels; cells: counts.
    One bincount over integer bins and label codes: seconds for 10M rows, where crosstab takes
    half a minute."""
    step = pd.Timedelta(interval) // pd.Timedelta(milliseconds=1)
    ms = times.to_numpy("datetime64[ms]").astype(np.int64)
    first = ms.min() // step * step  # bins aligned on the epoch, as Series.dt.floor aligns them
    bins = (ms - first) // step
    codes, names = _codes(labels)
    size = int(bins.max()) + 1
    flat = np.bincount(bins * len(names) + codes, minlength=size * len(names))
    index = pd.date_range(pd.Timestamp(first, unit="ms", tz="UTC"), periods=size, freq=interval)
    return pd.DataFrame(flat.reshape(size, len(names)), index=index, columns=names)


def _codes(labels: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes of the labels, sorted by name; beyond the MAX_SERIES commonest, "other"."""
    codes, uniques = pd.factorize(labels.fillna("?").astype(str), sort=True)
    names = [str(u) for u in uniques]
    if len(names) <= MAX_SERIES:
        return codes, names
    totals = np.bincount(codes, minlength=len(names))
    keep = np.sort(np.argsort(-totals, kind="stable")[:MAX_SERIES])
    remap = np.full(len(names), len(keep))
    remap[keep] = np.arange(len(keep))
    return remap[codes], [names[i] for i in keep] + ["other"]


def _dlq_labels(frame: pd.DataFrame, plot: str, by: str) -> tuple[pd.Series, str]:
    if by not in ("error", "group"):
        raise ValueError(f"by must be 'error' or 'group', got {by!r}")
    _require(frame, plot, "dlq_frame", ["failed_at", "last_error", "consumer_group"])
    if by == "error":
        return error_kinds(frame["last_error"]), "error type"
    return frame["consumer_group"].astype(object), "consumer group"


def _stable_colors(labels: pd.Series, names: Iterable[str]) -> list[str]:
    """The colour plot_dlq's bars give each label (by code order), for the time panel to match."""
    _, all_names = _codes(labels)
    return [f"C{all_names.index(name) % 10}" for name in names]


def _latency_view_end(latency: np.ndarray, p99: float) -> float:
    """Where the latency axis stops: the slowest, unless it is a tail beyond TAIL_RATIO x p99."""
    slowest = float(latency.max())
    if p99 > 0 and slowest > TAIL_RATIO * p99:
        return CLIP_RATIO * p99
    return slowest


def _latency_edges(latency: np.ndarray) -> tuple[np.ndarray, bool]:
    low, high = float(latency.min()), float(latency.max())
    positive_low = max(low, 0.1)  # ms stamps make 0 possible: log bins start at 0.1 ms
    if high / positive_low > LOG_RATIO:
        return np.geomspace(positive_low, high, LATENCY_BINS + 1), True
    if high == low:
        return np.linspace(low - 0.5, high + 0.5, 2), False
    return np.linspace(low, high, LATENCY_BINS + 1), False


# -- drawing --------------------------------------------------------------------------------------


def _axes(ax: Axes | None, height: float = FIGSIZE[1]) -> Axes:
    if ax is not None:
        return ax
    figure, ax = plt.subplots(figsize=(FIGSIZE[0], height), layout="constrained")
    _hand_over(figure)
    return ax


def _hand_over(figure: Figure) -> None:
    """Leave a new figure with pyplot where the inline backend shows it at the end of the cell;
    close it anywhere else, so scripts and tests do not pile figures up in pyplot."""
    if not _inline_backend():
        plt.close(figure)


def _inline_backend() -> bool:
    return "inline" in str(matplotlib.get_backend())


def _done(ax: Axes) -> Axes:
    """Remember the Axes for the display hook, and install the hook once in a notebook."""
    _DRAWN.add(ax)
    if _inline_backend():
        _install_display_hook()
    return ax


def _install_display_hook() -> None:
    """Show an Axes drawn here, left as a cell's result, as its figure instead of ``<Axes: …>``;
    and let ``display(ax.figure)`` take the figure from pyplot, so the flush does not repeat it."""
    ipython: Any = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]
    png.for_type(Axes, _axes_png)
    try:
        inline_png = png.lookup_by_type(Figure)  # the inline backend's renderer
    except KeyError:
        return
    if not getattr(inline_png, "eventkit", False):

        def figure_png(figure: Figure) -> Any:
            if any(ax in _DRAWN for ax in figure.axes):
                plt.close(figure)
            return inline_png(figure)

        figure_png.eventkit = True  # type: ignore[attr-defined]
        png.for_type(Figure, figure_png)


def _axes_png(ax: Axes) -> bytes | None:
    """The PNG of an Axes' figure, taken from pyplot so the end-of-cell flush does not show it a
    second time; None (IPython then shows the text) for Axes not drawn here."""
    if ax not in _DRAWN:
        return None
    from IPython.core import pylabtools  # the inline backend's own renderer: same size and dpi

    figure = ax.get_figure(root=True)
    plt.close(figure)
    print_figure: Any = pylabtools.print_figure
    png: bytes | None = print_figure(figure, "png", bbox_inches="tight")
    return png


def _labels(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _no_data(ax: Axes) -> Axes:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
    return _done(ax)


def _notes(ax: Axes, notes: list[str | None]) -> None:
    """What the view leaves out, in grey between the title and the axes."""
    lines = [note for note in notes if note]
    if not lines:
        return
    ax.annotate("\n".join(lines), (0, 1), xycoords="axes fraction", xytext=(0, 4),
                textcoords="offset points", ha="left", va="bottom", fontsize="small",
                color="0.35", gid=NOTE_GID)  # fmt: skip
    ax.set_title(ax.get_title(), pad=8 + 11 * len(lines))


def _legend_outside(ax: Axes, title: str, *, reverse: bool = False) -> None:
    """The legend right of the axes, off the data."""
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
              fontsize="small", frameon=False, reverse=reverse)  # fmt: skip


def _count_axis(axis: Axis) -> None:
    axis.set_major_locator(MaxNLocator(integer=True))


def _percentile_marks(ax: Axes, marks: np.ndarray) -> None:
    """A line per percentile, its label on its own row under the top edge (rows never overlap),
    left of the line when the line is in the right quarter."""
    to_axes = ax.transScale + ax.transLimits
    for row, (q, value) in enumerate(zip(QUANTILES, marks, strict=True)):
        ax.axvline(value, color="0.2", linestyle=(":", "--", "-.")[row % 3], linewidth=1)
        right = to_axes.transform((value, 0))[0] > 0.75
        ax.annotate(f"p{round(q * 100)} {duration_text(value)}", (value, 1),
                    xycoords=("data", "axes fraction"), xytext=(-3 if right else 3, -3 - 12 * row),
                    textcoords="offset points", ha="right" if right else "left", va="top",
                    fontsize="small", gid=MARK_GID,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})  # fmt: skip


def _stacked_bars(
    ax: Axes, counts: pd.DataFrame, interval: str, colors: list[str] | None = None
) -> None:
    x = _naive(counts.index)
    width = pd.Timedelta(interval).to_timedelta64()
    bottom = np.zeros(len(counts), dtype=np.int64)
    for i, label in enumerate(counts.columns):
        heights = counts[label].to_numpy()
        color = colors[i] if colors else f"C{i % 10}"
        ax.bar(x, heights, width=width, bottom=bottom, align="edge", label=str(label),
               color=color, linewidth=0)  # fmt: skip
        bottom += heights


def _time_axis(ax: Axes, tz: Any) -> None:
    """Concise date/time ticks (sub-second to years) in the zone ``tz``."""
    zone = _zone(tz)
    locator = mdates.AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
    formatter = mdates.ConciseDateFormatter(locator, tz=zone)  # type: ignore[no-untyped-call]
    # below a minute, "23:45:17.75" rather than a bare "17.75" next to a far-off offset
    formatter.formats[5] = "%H:%M:%S.%f"
    formatter.offset_formats[5] = "%Y-%b-%d"
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)


def _zone(tz: Any) -> tzinfo:
    if isinstance(tz, tzinfo):
        return tz
    return UTC if str(tz).upper() == "UTC" else ZoneInfo(str(tz))


def _zone_name(tz: Any) -> str:
    zone = _zone(tz)
    return "UTC" if zone is UTC else str(getattr(zone, "key", zone))


def _moment(time: pd.Timestamp, tz: Any) -> str:
    local = time.tz_convert(_zone(tz))
    return f"{local:%Y-%m-%d %H:%M} {_zone_name(tz)}"


def _naive(index: pd.DatetimeIndex) -> np.ndarray:
    """UTC times without a zone: matplotlib takes them as UTC; the locator shows them in ``tz``."""
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    naive: np.ndarray = index.to_numpy()
    return naive


def _require(frame: pd.DataFrame, plot: str, producer: str, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{plot} needs columns {', '.join(missing)}: pass a frame from {producer}()"
        )
