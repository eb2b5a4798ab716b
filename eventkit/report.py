"""The demo's report: the frames as CSV and the plots as PNG, in one folder (notebook extra)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from eventkit.bus import EventBus
from eventkit.frames import deliveries_frame, dlq_frame, events_frame
from eventkit.plots import plot_dlq, plot_lag, plot_latency, plot_throughput

#: sharp enough for a README or a slide, small enough to commit (a 9 x 4 in figure: ~1000 x 450 px)
DPI = 110


async def write_report(bus: EventBus, folder: Path) -> list[Path]:
    """Write events/deliveries/dlq CSVs and throughput/latency/lag/DLQ PNGs; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    events = await events_frame(bus)
    deliveries = await deliveries_frame(bus)
    dead = await dlq_frame(bus)
    written = []
    for name, frame in (("events", events), ("deliveries", deliveries), ("dlq", dead)):
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    for name, ax in (
        ("throughput", plot_throughput(events)),
        ("latency", plot_latency(deliveries)),
        ("lag", plot_lag(deliveries)),
        ("dlq", plot_dlq(dead)),
    ):
        written.append(save_figure(ax, folder / f"{name}.png"))
    return written


def save_figure(ax: Axes, path: Path) -> Path:
    """Save the Axes' whole figure on white (readable in dark viewers too) and close it, so a
    report written from a notebook does not also show every figure in the cell."""
    figure = ax.get_figure(root=True)
    assert figure is not None  # every plot_* draws on a figure
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(figure)
    return path
