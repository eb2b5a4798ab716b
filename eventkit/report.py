"""The demo's report: the frames as CSV and the plots as PNG, in one folder (notebook extra)."""

from __future__ import annotations

from pathlib import Path

from eventkit.bus import EventBus
from eventkit.frames import deliveries_frame, dlq_frame, events_frame
from eventkit.plots import plot_dlq, plot_lag, plot_latency, plot_throughput


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
        path = folder / f"{name}.png"
        figure = ax.get_figure(root=True)
        assert figure is not None  # every plot_* draws on a figure
        figure.savefig(path, dpi=100, bbox_inches="tight")
        written.append(path)
    return written
