"""The story of one thing as a timeline: one row per event of a `trace_frame`, in causal order,
with each consumer group's delivery attempts, ack and dead-letter marks (`plots.plot_trace`)."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from eventkit.plot_display import FIGSIZE, axes_or_new, mark_drawn
from eventkit.plot_time import naive, time_axis, zone_name

__all__ = ["TRACE_MARKS", "plot_trace"]

#: what each mark means, as the legend says it: (label, marker, filled)
TRACE_MARKS = {
    "published": ("published", "o", True),
    "first": ("first delivery", "o", False),
    "retry": ("retry (spread: times not recorded)", "|", True),
    "acked": ("acked", "s", True),
    "dead": ("dead-lettered", "X", True),
}
#: rows shown on a new figure before it stops growing taller
_TALL = 24
_REQUIRED = ("step", "depth", "event_id", "event_type", "published_at", "causation_id",
             "consumer_group", "status", "attempts", "first_delivered_at", "acked_at",
             "failed_at")  # fmt: skip


def plot_trace(frame: pd.DataFrame, ax: Axes | None = None, *, tz: Any = "UTC") -> Axes:
    """One story as a timeline: each event on its own row (parents above their children, rows
    labelled by type and short id), an arrow from each cause to what it caused, and per consumer
    group (one colour each) a line from publish to outcome with a mark for the first delivery,
    each retry, the ack and the dead letter.

    Parameters
    ----------
    frame : pandas.DataFrame
        From `eventkit.frames.trace_frame`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure, as tall as the rows need, when None.
    tz : str or tzinfo, default "UTC"
        Zone of the time axis' tick labels.

    Returns
    -------
    matplotlib.axes.Axes

    Notes
    -----
    The store keeps when a delivery began, how many attempts it took, and when it was acked
    or dead-lettered; not when each retry ran. Retries are drawn as ticks spread evenly
    between the first delivery and the outcome, and the legend says so.

    Examples
    --------
    >>> plot_trace(await trace_frame(bus, event_id=letter.event_id))  # doctest: +SKIP
    """
    missing = [name for name in _REQUIRED if name not in frame.columns]
    if missing:
        raise ValueError(
            f"plot_trace needs a frame from trace_frame(); it lacks {', '.join(missing)}"
        )
    events = frame.drop_duplicates("step").sort_values("step")
    rows = len(events)
    if ax is None:  # wide enough for the legend beside the rows, tall enough for the rows
        ax = axes_or_new(None, height=min(1.6 + 0.38 * max(rows, 1), 1.6 + 0.38 * _TALL))
        cast(Figure, ax.figure).set_figwidth(FIGSIZE[0] * 1.25)
    ax.set_xlabel(f"time ({zone_name(tz)})")
    if frame.empty:
        ax.set_title("Trace: no events")
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center",
                color="gray")  # fmt: skip
        return mark_drawn(ax)
    row_of = {step: i for i, step in enumerate(events["step"])}
    published = _times(events["published_at"])
    where = dict(zip(events["event_id"], zip(published, range(rows), strict=True), strict=True))
    _causes(ax, events, where)
    ax.plot(published, np.arange(rows), "o", color="0.15", markersize=5, zorder=4)
    groups = sorted(frame["consumer_group"].dropna().unique())
    spread = 0.5 / max(len(groups), 1)
    for g, group in enumerate(groups):
        offset = (g - (len(groups) - 1) / 2) * spread
        _deliveries(ax, frame[frame["consumer_group"] == group], row_of, offset, f"C{g % 10}")
    ax.set_yticks(range(rows), [_label(e) for e in events.itertuples()], fontsize="small")
    ax.set_ylim(rows - 0.5, -0.5)  # the first event on top
    ax.grid(axis="x", color="0.9")
    time_axis(ax, tz)
    ax.margins(x=0.04)
    deliveries = int(frame["consumer_group"].notna().sum())
    story = str(events["correlation_id"].iloc[0])[:8] if "correlation_id" in events else "?"
    ax.set_title(f"Trace of story {story}: {rows} event{'s' * (rows != 1)}, "
                 f"{deliveries} deliver{'ies' if deliveries != 1 else 'y'}")  # fmt: skip
    _legend(ax, groups)
    return mark_drawn(ax)


def _times(column: pd.Series) -> np.ndarray:
    return naive(pd.DatetimeIndex(column))


def _label(event: Any) -> str:
    return f"{event.event_type} · {str(event.event_id)[:8]}"


def _causes(ax: Axes, events: pd.DataFrame, where: dict[str, tuple[Any, int]]) -> None:
    """An arrow from each cause's publish mark to what it caused."""
    for event_id, cause in zip(events["event_id"], events["causation_id"], strict=True):
        if isinstance(cause, str) and cause in where:
            (x0, y0), (x1, y1) = where[cause], where[event_id]
            ax.annotate("", (x1, y1), (x0, y0), zorder=1,
                        arrowprops={"arrowstyle": "-|>", "color": "0.6", "lw": 0.8,
                                    "shrinkA": 3, "shrinkB": 4, "connectionstyle": "angle,angleA=0,angleB=90"})  # fmt: skip


def _deliveries(
    ax: Axes, rows: pd.DataFrame, row_of: dict[int, int], offset: float, color: str
) -> None:
    """One group's deliveries: publish-to-outcome line, first delivery, retries, ack, dead."""
    y = np.array([row_of[s] for s in rows["step"]], float) + offset
    start = _times(rows["published_at"])
    first = _times(rows["first_delivered_at"])
    acked = _times(rows["acked_at"])
    dead = _times(rows["failed_at"])
    is_dead = (rows["status"] == "dead").to_numpy() | ~np.isnat(dead)
    end = np.where(~np.isnat(acked), acked, np.where(~np.isnat(dead), dead, first))
    for x0, x1, yy in zip(start, end, y, strict=True):
        if not np.isnat(x1):
            ax.plot([x0, x1], [yy, yy], color=color, lw=1.4, alpha=0.7, zorder=2)
    ax.plot(first, y, "o", mfc="white", mec=color, mew=1.4, ms=6, zorder=3)
    attempts = rows["attempts"].fillna(0).to_numpy(int)
    for x0, x1, yy, n in zip(first, end, y, attempts, strict=True):
        if n > 1 and not np.isnat(x0) and not np.isnat(x1):  # the retries, evenly between
            ticks = x0 + (x1 - x0) * (np.arange(1, n) / n)
            ax.plot(ticks, [yy] * (n - 1), "|", color=color, ms=9, mew=1.6, zorder=3)
    ax.plot(acked, y, "s", color=color, ms=5, zorder=4)
    if is_dead.any():
        x = np.where(np.isnat(dead), end, dead)[is_dead]
        ax.plot(x, y[is_dead], "X", color="#c0392b", mec=color, mew=0.8, ms=9, zorder=5)


def _legend(ax: Axes, groups: list[str]) -> None:
    handles = [
        Line2D([], [], color=f"C{g % 10}", lw=2, label=group) for g, group in enumerate(groups)
    ]
    for key, (label, marker, filled) in TRACE_MARKS.items():
        color = "#c0392b" if key == "dead" else "0.2"
        handles.append(Line2D([], [], ls="", marker=marker, color=color, label=label,
                              mfc=color if filled else "white", ms=7))  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
              fontsize="small", frameon=False, title="groups and marks")  # fmt: skip
