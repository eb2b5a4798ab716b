"""The DLQ views, by error kind or group: bars of the totals, and entries per time bin in the same
colours (re-exported by `eventkit.plots`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from eventkit.error_kinds import error_kinds
from eventkit.plot_axes import (
    add_notes,
    count_axis,
    label_codes,
    legend_outside,
    no_data,
    require_columns,
    set_labels,
    stacked_bars,
)
from eventkit.plot_display import FIGSIZE, axes_or_new, hand_over, mark_drawn
from eventkit.plot_time import (
    Window,
    binned_counts,
    choose_interval,
    interval_label,
    time_axis,
    zone_name,
)

#: DLQ entries spread wider than this get a second panel: entries over time
LONG_DLQ_SPAN = pd.Timedelta("1h")


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
    set_labels(ax, f"Dead-letter entries by {kind}", "entries", kind)
    if frame.empty:
        return no_data(ax)
    codes, names = label_codes(labels)
    totals = np.bincount(codes, minlength=len(names))
    order = np.argsort(-totals, kind="stable")  # the commonest on top
    bars = ax.barh([names[i] for i in order], totals[order], color=[f"C{i % 10}" for i in order])
    ax.bar_label(bars, labels=[f"{t:,}" for t in totals[order]], padding=3)
    ax.invert_yaxis()
    ax.margins(x=0.12)
    count_axis(ax.xaxis)
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
    set_labels(ax, "Dead-letter entries over time", f"failed at ({zone_name(tz)})", "entries")
    if frame.empty:
        return no_data(ax)
    window = Window.of(frame["failed_at"])
    inside = window.holds(frame["failed_at"])
    interval = choose_interval(frame["failed_at"][inside])
    codes, names = label_codes(labels[inside])
    counts = binned_counts(frame["failed_at"][inside], codes, names, interval)
    counts = counts[counts.sum().sort_values(ascending=False, kind="stable").index]
    stacked_bars(ax, counts, interval, colors=_stable_colors(labels, counts.columns))
    time_axis(ax, tz)
    ax.set_ylabel(f"entries per {interval_label(interval)}")
    count_axis(ax.yaxis)
    legend_outside(ax, kind)
    add_notes(ax, [window.note("entry", tz, plural="entries")])
    return mark_drawn(ax)


def _dlq_labels(frame: pd.DataFrame, plot: str, by: str) -> tuple[pd.Series, str]:
    if by not in ("error", "group"):
        raise ValueError(f"by must be 'error' or 'group', got {by!r}")
    require_columns(frame, plot, "dlq_frame", ["failed_at", "last_error", "consumer_group"])
    if by == "error":
        return error_kinds(frame["last_error"]), "error type"
    return frame["consumer_group"].astype(object), "consumer group"


def _stable_colors(labels: pd.Series, names: Iterable[str]) -> list[str]:
    """The colour plot_dlq's bars give each label (by code order), for the time panel to match."""
    _, all_names = label_codes(labels)
    return [f"C{all_names.index(name) % 10}" for name in names]
