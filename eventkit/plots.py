"""Matplotlib views of the frames: DLQ, latency, throughput and lag, readable at 10 or 10M rows.

Every plot aggregates with pandas or numpy first (counts per time bin, one histogram per group), so
the number of artists depends on bins and groups, never on rows. Figures are made with
``plt.subplots()`` and closed at once, so nothing is shown twice in a notebook; the Axes is returned
(its figure is ``ax.figure``). Times are drawn in UTC.
"""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from eventkit.error_kinds import error_kinds

#: time bins tried in order: the first giving at most MAX_BINS bins over the span is used
INTERVALS = ("1s", "5s", "15s", "1min", "5min", "15min", "1h", "3h", "6h", "12h", "1D", "7D")
MAX_BINS = 120
#: more error types or groups than this are stacked as "other"
MAX_SERIES = 8
LATENCY_BINS = 60
QUANTILES = (0.50, 0.95, 0.99)
#: a latency range wider than this ratio (max / min) is drawn on a log axis
LOG_RATIO = 100.0


def plot_dlq(frame: pd.DataFrame, ax: Axes | None = None, *, by: str = "error") -> Axes:
    """DLQ entries per time bin, stacked by error type (`eventkit.error_kinds`) or by group."""
    if by not in ("error", "group"):
        raise ValueError(f"by must be 'error' or 'group', got {by!r}")
    _require(frame, "plot_dlq", "dlq_frame", ["failed_at", "last_error", "consumer_group"])
    ax = _axes(ax)
    kind = "error type" if by == "error" else "consumer group"
    ax.set_title(f"Dead-letter entries by {kind}")
    ax.set_xlabel("failed at (UTC)")
    ax.set_ylabel("entries per bin")
    if frame.empty:
        return _no_data(ax)
    labels = error_kinds(frame["last_error"]) if by == "error" else frame["consumer_group"]
    interval = choose_interval(frame["failed_at"])
    counts = _binned_counts(frame["failed_at"], labels, interval)
    _stacked_bars(ax, counts, interval)
    ax.set_ylabel(f"entries per {interval}")
    ax.legend(title=kind, fontsize="small")
    return ax


def plot_latency(deliveries: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Publish->ack latency of acked deliveries per group, with p50/p95/p99 of all of them marked."""
    _require(deliveries, "plot_latency", "deliveries_frame", ["latency_ms", "consumer_group"])
    ax = _axes(ax)
    ax.set_title("Publish → ack latency")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("deliveries")
    acked = deliveries[deliveries["latency_ms"].notna()]
    if acked.empty:
        return _no_data(ax)
    latency = acked["latency_ms"].to_numpy(dtype=np.float64).clip(min=0)
    edges, log = _latency_edges(latency)
    codes, groups = _codes(acked["consumer_group"])
    clipped = latency.clip(edges[0], edges[-1])  # outliers land in the first or last bin
    for code, group in enumerate(groups):
        counts, _ = np.histogram(clipped[codes == code], edges)
        ax.stairs(counts, edges, label=f"{group} ({counts.sum():,})")
    if log:
        ax.set_xscale("log")
    for q, value in zip(QUANTILES, np.quantile(latency, QUANTILES), strict=True):
        ax.axvline(value, color="black", linestyle=":", linewidth=1)
        label = f"p{round(q * 100)} {value:,.1f} ms"
        ax.annotate(label, (value, 1), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize="small")  # fmt: skip
    ax.legend(title="consumer group (acked)", fontsize="small")
    return ax


def plot_throughput(
    events: pd.DataFrame, ax: Axes | None = None, interval: str | None = None
) -> Axes:
    """Events per time interval by type (the interval is chosen from the time span when None)."""
    _require(events, "plot_throughput", "events_frame", ["timestamp", "event_type"])
    ax = _axes(ax)
    ax.set_title("Throughput by event type")
    ax.set_xlabel("event time (UTC)")
    ax.set_ylabel(f"events per {interval or 'interval'}")
    if events.empty:
        return _no_data(ax)
    interval = interval or choose_interval(events["timestamp"])
    counts = _binned_counts(events["timestamp"], events["event_type"], interval)
    for event_type in counts.columns:
        ax.step(_naive(counts.index), counts[event_type].to_numpy(), where="post", label=event_type)
    _time_axis(ax)
    ax.set_ylabel(f"events per {interval}")
    ax.legend(title="event type", fontsize="small")
    return ax


def plot_lag(deliveries: pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Per group over time: events published but not yet acked, rebuilt from published_at/acked_at
    (dead-lettered deliveries are left out: when they left is not recorded)."""
    _require(deliveries, "plot_lag", "deliveries_frame",
             ["published_at", "acked_at", "consumer_group", "status"])  # fmt: skip
    ax = _axes(ax)
    ax.set_title("Unacked events per consumer group")
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("published, not yet acked")
    live = deliveries[deliveries["status"] != "dead"]
    if live.empty:
        return _no_data(ax)
    codes, groups = _codes(live["consumer_group"])
    for code, group in enumerate(groups):
        rows = live[codes == code]
        lag = lag_series(rows["published_at"], rows["acked_at"])
        ax.step(_naive(lag.index), lag.to_numpy(), where="post", label=group)
    _time_axis(ax)
    ax.legend(title="consumer group", fontsize="small")
    return ax


# -- aggregation ----------------------------------------------------------------------------------


def choose_interval(times: pd.Series) -> str:
    """The finest interval that keeps the span within MAX_BINS bins."""
    span = times.max() - times.min() if len(times) else pd.Timedelta(0)
    for interval in INTERVALS:
        if span / pd.Timedelta(interval) <= MAX_BINS:
            return interval
    return INTERVALS[-1]


def lag_series(published: pd.Series, acked: pd.Series) -> pd.Series:
    """Unacked count after each change (+1 at publish, -1 at ack), at most MAX_BINS points' worth
    of steps: the peak of each bin is kept, so a short spike still shows."""
    acked = acked.dropna()
    times = np.concatenate([published.to_numpy("datetime64[ms]"), acked.to_numpy("datetime64[ms]")])
    steps = np.concatenate([np.ones(len(published), np.int64), -np.ones(len(acked), np.int64)])
    order = np.argsort(times, kind="stable")
    lag = pd.Series(np.cumsum(steps[order]), index=pd.DatetimeIndex(times[order], tz="UTC"))
    interval = choose_interval(lag.index.to_series())
    return lag.resample(interval).max().ffill()


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


def _latency_edges(latency: np.ndarray) -> tuple[np.ndarray, bool]:
    low, high = float(latency.min()), float(latency.max())
    positive_low = max(low, 0.1)  # ms stamps make 0 possible: log bins start at 0.1 ms
    if high / positive_low > LOG_RATIO:
        return np.geomspace(positive_low, high, LATENCY_BINS + 1), True
    if high == low:
        return np.linspace(low - 0.5, high + 0.5, 2), False
    return np.linspace(low, high, LATENCY_BINS + 1), False


# -- drawing --------------------------------------------------------------------------------------


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    fig, ax = plt.subplots(figsize=(9, 4), layout="constrained")
    plt.close(fig)  # the caller shows ax.figure; pyplot must not show it a second time
    return ax


def _no_data(ax: Axes) -> Axes:
    ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
    return ax


def _stacked_bars(ax: Axes, counts: pd.DataFrame, interval: str) -> None:
    x = _naive(counts.index)
    width = pd.Timedelta(interval) / pd.Timedelta(days=1) * 0.9  # matplotlib dates are in days
    bottom = np.zeros(len(counts))
    for label in counts.columns:
        heights = counts[label].to_numpy()
        ax.bar(x, heights, width=width, bottom=bottom, align="edge", label=str(label))
        bottom += heights
    _time_axis(ax)


def _time_axis(ax: Axes) -> None:
    locator = mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _naive(index: pd.DatetimeIndex) -> np.ndarray:
    """UTC times without a zone: matplotlib then draws them as they are, in UTC."""
    naive: np.ndarray = index.tz_convert("UTC").tz_localize(None).to_numpy()
    return naive


def _require(frame: pd.DataFrame, plot: str, producer: str, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{plot} needs columns {', '.join(missing)}: pass a frame from {producer}()"
        )
