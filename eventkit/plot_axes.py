"""Small helpers every plot module shares: column checks, label codes capped at MAX_SERIES, and
the dressing of an Axes (titles, grey notes, legend, whole-number counts, stacked bars)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.ticker import MaxNLocator

from eventkit.plot_display import mark_drawn
from eventkit.plot_time import naive

#: more error kinds or groups than this are drawn together as "other"
MAX_SERIES = 8
NOTE_GID = "eventkit-note"


def require_columns(frame: pd.DataFrame, plot: str, producer: str, columns: Iterable[str]) -> None:
    """ValueError naming the missing columns and the frames function that has them."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{plot} needs columns {', '.join(missing)}: pass a frame from {producer}()"
        )


def label_codes(labels: pd.Series) -> tuple[np.ndarray, list[str]]:
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


def set_labels(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    """Title and both axis labels, set before drawing so even an empty view has them."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def no_data(ax: Axes) -> Axes:
    """An empty view: "no data" in its middle, its labels kept."""
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
    return mark_drawn(ax)


def add_notes(ax: Axes, notes: list[str | None]) -> None:
    """What the view leaves out, in grey between the title and the axes."""
    lines = [note for note in notes if note]
    if not lines:
        return
    ax.annotate("\n".join(lines), (0, 1), xycoords="axes fraction", xytext=(0, 4),
                textcoords="offset points", ha="left", va="bottom", fontsize="small",
                color="0.35", gid=NOTE_GID)  # fmt: skip
    ax.set_title(ax.get_title(), pad=8 + 11 * len(lines))


def legend_outside(ax: Axes, title: str, *, reverse: bool = False) -> None:
    """The legend right of the axes, off the data."""
    ax.legend(title=title, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0,
              fontsize="small", frameon=False, reverse=reverse)  # fmt: skip


def count_axis(axis: Axis) -> None:
    """Ticks at whole numbers only: counts have no halves."""
    axis.set_major_locator(MaxNLocator(integer=True))


def stacked_bars(
    ax: Axes, counts: pd.DataFrame, interval: str, colors: list[str] | None = None
) -> None:
    """One bar per time bin, the columns stacked (colours C0, C1, ... unless `colors`)."""
    x = naive(counts.index)
    width = pd.Timedelta(interval).to_timedelta64()
    bottom = np.zeros(len(counts), dtype=np.int64)
    for i, label in enumerate(counts.columns):
        heights = counts[label].to_numpy()
        color = colors[i] if colors else f"C{i % 10}"
        ax.bar(x, heights, width=width, bottom=bottom, align="edge", label=str(label),
               color=color, linewidth=0)  # fmt: skip
        bottom += heights
