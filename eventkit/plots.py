"""Matplotlib views of the frames (DLQ, latency, throughput, lag), readable at 10 or 10M rows and
at any span from milliseconds to years.

Every plot aggregates with pandas or numpy first (counts per time bin, one histogram per group), so
the number of artists depends on bins and groups, never on rows. Times are drawn in UTC unless
``tz=`` names another zone, and the axis label says which (bins, stragglers and ticks:
`eventkit.plot_time`). What a view leaves out (far-off stragglers in time, the slowest deliveries)
is said in a grey note under the title. The DLQ views are drawn in `eventkit.plot_dlq` and the
helpers the views share are in `eventkit.plot_axes`; this module re-exports what users import.

Showing (`eventkit.plot_display`): with the inline backend (Jupyter, nbconvert, nbval) a figure
made here shows once at the end of the cell, and an Axes drawn here that is a cell's result shows
as its figure (once) rather than as ``<Axes: …>``. With any other backend (Agg in scripts and
tests) the figure is closed at once: save or display ``ax.figure`` yourself.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from eventkit.plot_axes import (
    MAX_SERIES,
    NOTE_GID,
    add_notes,
    count_axis,
    label_codes,
    legend_outside,
    no_data,
    require_columns,
    set_labels,
    stacked_bars,
)
from eventkit.plot_display import FIGSIZE, axes_or_new, mark_drawn
from eventkit.plot_dlq import LONG_DLQ_SPAN, plot_dlq, plot_dlq_over_time
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

LATENCY_BINS = 60
QUANTILES = (0.50, 0.95, 0.99)
#: latencies shown spanning more than this ratio (max / min) are drawn on a log axis
LOG_RATIO = 100.0
#: a slowest latency beyond TAIL_RATIO x p99 is a tail that would flatten the rest: the view
#: stops at CLIP_RATIO x p99 and a note counts what it leaves out
TAIL_RATIO = 2.0
CLIP_RATIO = 1.5
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
    require_columns(events, "plot_throughput", "events_frame", ["timestamp", "event_type"])
    ax = axes_or_new(ax)
    set_labels(ax, "Throughput by event type", f"event time ({zone_name(tz)})", "events")
    if events.empty:
        return no_data(ax)
    window = Window.of(events["timestamp"])
    shown = events[window.holds(events["timestamp"])]
    interval = interval or choose_interval(shown["timestamp"])
    codes, names = label_codes(shown["event_type"])
    counts = binned_counts(shown["timestamp"], codes, names, interval)
    stacked_bars(ax, counts, interval)
    time_axis(ax, tz)
    ax.set_ylabel(f"events per {interval_label(interval)}")
    count_axis(ax.yaxis)
    legend_outside(ax, "event type", reverse=True)
    add_notes(ax, [window.note("event", tz)])
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
    require_columns(
        deliveries, "plot_latency", "deliveries_frame", ["latency_ms", "consumer_group"]
    )
    ax = axes_or_new(ax)
    set_labels(ax, "Publish → ack latency", "latency (ms)", "deliveries per bin")
    acked = deliveries[deliveries["latency_ms"].notna()]
    if acked.empty:
        return no_data(ax)
    latency = acked["latency_ms"].to_numpy(dtype=np.float64).clip(min=0)
    marks = np.quantile(latency, QUANTILES)
    upper = _latency_view_end(latency, float(marks[-1]))
    in_view = latency <= upper
    edges, log = _latency_edges(latency[in_view])
    codes, groups = label_codes(acked["consumer_group"])
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
    count_axis(ax.yaxis)
    _percentile_marks(ax, marks)
    legend_outside(ax, "consumer group (acked)")
    hidden = int((~in_view).sum())
    slower = f"{hidden:,} slower deliver{'y' if hidden == 1 else 'ies'} not shown"
    add_notes(ax, [f"{slower} (max {duration_text(latency.max())})" if hidden else None])
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
    require_columns(deliveries, "plot_lag", "deliveries_frame",
                    ["published_at", "acked_at", "consumer_group", "status"])  # fmt: skip
    ax = axes_or_new(ax)
    set_labels(ax, "Unacked events per consumer group", f"time ({zone_name(tz)})",
               "published, not yet acked")  # fmt: skip
    live = deliveries[deliveries["status"] != "dead"]
    if live.empty:
        return no_data(ax)
    window = Window.of(pd.concat([live["published_at"], live["acked_at"].dropna()]))
    interval = choose_interval(pd.Series([window.start, window.end]))
    codes, groups = label_codes(live["consumer_group"])
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
    count_axis(ax.yaxis)
    legend_outside(ax, "consumer group")
    dead = len(deliveries) - len(live)
    add_notes(ax, [window.note("publish or ack time", tz),
                   f"{dead:,} dead-lettered deliver{'y' if dead == 1 else 'ies'} not counted"
                   if dead else None])  # fmt: skip
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
