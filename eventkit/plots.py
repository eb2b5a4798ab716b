"""Matplotlib views of the frames (DLQ, latency, throughput, lag), readable at 10 or 10M rows and
at any span from milliseconds to years.

Every plot aggregates with pandas or numpy first (counts per time bin, one histogram per group), so
the number of artists depends on bins and groups, never on rows. Times are drawn in UTC unless
``tz=`` names another zone, and the axis label says which (bins, stragglers and ticks:
`eventkit.plot_time`). What a view leaves out (far-off stragglers in time, the slowest deliveries)
is said in a grey note under the title.

Showing (`eventkit.plot_display`): with the inline backend (Jupyter, nbconvert, nbval) a figure
made here shows once at the end of the cell, and an Axes drawn here that is a cell's result shows
as its figure (once) rather than as ``<Axes: …>``. With any other backend (Agg in scripts and
tests) the figure is closed at once: save or display ``ax.figure`` yourself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import FuncFormatter, MaxNLocator

from eventkit.error_kinds import error_kinds
from eventkit.plot_display import FIGSIZE, axes_or_new, hand_over, mark_drawn
from eventkit.plot_time import (
    INTERVALS,
    MAX_BINS,
    MIN_TO_TRIM,
    SQUASH,
    STRAGGLERS,
    Window,
    binned_counts,
    choose_interval,
    interval_label,
    lag_series,
    naive,
    time_axis,
    zone_name,
)
from eventkit.plot_trace import plot_trace

__all__ = [  # the time names are re-exported: tests and notebooks import them from here
    "plot_dlq", "plot_dlq_over_time", "plot_lag", "plot_latency", "plot_throughput", "plot_trace",
    "Window", "choose_interval", "duration_text", "interval_label", "lag_series",
    "CLIP_RATIO", "FIGSIZE", "INTERVALS", "LATENCY_BINS", "LOG_RATIO", "LONG_DLQ_SPAN", "MARK_GID",
    "MAX_BINS", "MAX_SERIES", "MIN_TO_TRIM", "NOTE_GID", "QUANTILES", "SQUASH", "STRAGGLERS",
    "TAIL_RATIO",
]  # fmt: skip

#: more error kinds or groups than this are drawn together as "other"
MAX_SERIES = 8
LATENCY_BINS = 60
QUANTILES = (0.50, 0.95, 0.99)
#: latencies shown spanning more than this ratio (max / min) are drawn on a log axis
LOG_RATIO = 100.0
#: a slowest latency beyond TAIL_RATIO x p99 is a tail that would flatten the rest: the view
#: stops at CLIP_RATIO x p99 and a note counts what it leaves out
TAIL_RATIO = 2.0
CLIP_RATIO = 1.5
#: DLQ entries spread wider than this get a second panel: entries over time
LONG_DLQ_SPAN = pd.Timedelta("1h")
NOTE_GID = "eventkit-note"
MARK_GID = "eventkit-percentile"


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
    ax = axes_or_new(ax)
    _labels(ax, "Throughput by event type", f"event time ({zone_name(tz)})", "events")
    if events.empty:
        return _no_data(ax)
    window = Window.of(events["timestamp"])
    shown = events[window.holds(events["timestamp"])]
    interval = interval or choose_interval(shown["timestamp"])
    codes, names = _codes(shown["event_type"])
    counts = binned_counts(shown["timestamp"], codes, names, interval)
    _stacked_bars(ax, counts, interval)
    time_axis(ax, tz)
    ax.set_ylabel(f"events per {interval_label(interval)}")
    _count_axis(ax.yaxis)
    _legend_outside(ax, "event type", reverse=True)
    _notes(ax, [window.note("event", tz)])
    return mark_drawn(ax)


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
    ax = axes_or_new(ax)
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
    return mark_drawn(ax)


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
    ax = axes_or_new(ax)
    _labels(ax, "Unacked events per consumer group", f"time ({zone_name(tz)})",
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
        x = np.append(naive(edges), naive(pd.DatetimeIndex([window.end])))
        ax.step(x, np.append(lag.to_numpy(), [left, left]), where="post", label=group)
    time_axis(ax, tz)
    ax.set_ylabel(f"published, not yet acked\n(peak per {interval_label(interval)})")
    ax.set_ylim(bottom=0)
    _count_axis(ax.yaxis)
    _legend_outside(ax, "consumer group")
    dead = len(deliveries) - len(live)
    _notes(ax, [window.note("publish or ack time", tz),
                f"{dead:,} dead-lettered deliver{'y' if dead == 1 else 'ies'} not counted"
                if dead else None])  # fmt: skip
    return mark_drawn(ax)


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
        hand_over(figure)
    # a new figure for the bars alone is as tall as its bars need: one bar is not a wall of blue
    ax = axes_or_new(ax, height=min(max(2.2, 1.3 + 0.45 * labels.nunique()), FIGSIZE[1] * 1.5))
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
    return mark_drawn(ax)


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
    ax = axes_or_new(ax)
    _labels(ax, "Dead-letter entries over time", f"failed at ({zone_name(tz)})", "entries")
    if frame.empty:
        return _no_data(ax)
    window = Window.of(frame["failed_at"])
    inside = window.holds(frame["failed_at"])
    interval = choose_interval(frame["failed_at"][inside])
    codes, names = _codes(labels[inside])
    counts = binned_counts(frame["failed_at"][inside], codes, names, interval)
    counts = counts[counts.sum().sort_values(ascending=False, kind="stable").index]
    _stacked_bars(ax, counts, interval, colors=_stable_colors(labels, counts.columns))
    time_axis(ax, tz)
    ax.set_ylabel(f"entries per {interval_label(interval)}")
    _count_axis(ax.yaxis)
    _legend_outside(ax, kind)
    _notes(ax, [window.note("entry", tz, plural="entries")])
    return mark_drawn(ax)


# -- aggregation ----------------------------------------------------------------------------------


def duration_text(ms: float) -> str:
    """Milliseconds as a reader says them: "0.4 ms", "97 ms", "2.3 s", "4.1 min"."""
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


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


def _labels(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def _no_data(ax: Axes) -> Axes:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
    return mark_drawn(ax)


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
    x = naive(counts.index)
    width = pd.Timedelta(interval).to_timedelta64()
    bottom = np.zeros(len(counts), dtype=np.int64)
    for i, label in enumerate(counts.columns):
        heights = counts[label].to_numpy()
        color = colors[i] if colors else f"C{i % 10}"
        ax.bar(x, heights, width=width, bottom=bottom, align="edge", label=str(label),
               color=color, linewidth=0)  # fmt: skip
        bottom += heights


def _require(frame: pd.DataFrame, plot: str, producer: str, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{plot} needs columns {', '.join(missing)}: pass a frame from {producer}()"
        )
