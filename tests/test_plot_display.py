"""A plot_* call as a cell's last line shows its figure exactly once in a real kernel (inline backend,
as under JupyterLab, nbconvert and nbval), and the call still returns the Axes."""

from __future__ import annotations

from typing import Any

import nbformat
from nbclient import NotebookClient

SETUP = """
import numpy as np
import pandas as pd
from eventkit.plots import plot_dlq_over_time, plot_latency, plot_throughput

t = pd.Series(pd.date_range("2026-11-02", periods=50, freq="min", tz="UTC")).astype("datetime64[ms, UTC]")
events = pd.DataFrame({"timestamp": t, "event_type": ["a", "b"] * 25})
deliveries = pd.DataFrame({"consumer_group": "g", "latency_ms": np.arange(50, dtype=float)})
dead = pd.DataFrame({"failed_at": t, "last_error": "ValueError: x", "consumer_group": "g"})
"""

#: cell source -> how many figures the reader should see (and never an `<Axes …>` text alone)
CELLS = {
    "plot_throughput(events)": 1,  # the last line: the figure, once, and no "<Axes: …>" text
    "ax = plot_latency(deliveries)\nax.set_xlim(0, 10);": 1,  # assigned: pyplot shows it at the end
    "ax": 1,  # an Axes drawn here, as a later cell's result: its figure again, on request
    "import matplotlib.pyplot as plt\nfig, (a, b) = plt.subplots(1, 2)\n"
    "plot_throughput(events, ax=a)\nplot_latency(deliveries, ax=b)": 1,  # the reader's figure: once
    "ax = plot_throughput(events)\nprint(type(ax).__name__)": 1,
    # as notebooks written for closed figures do: display() shows it, the end of the cell not again
    "from IPython.display import display\nax = plot_dlq_over_time(dead)\ndisplay(ax.figure)": 1,
    "_ = plot_latency(deliveries)\n_ = plot_throughput(events)": 2,  # two calls, two figures
}


def outputs_of(sources: list[str]) -> list[list[dict[str, Any]]]:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(s) for s in [SETUP, *sources]]
    NotebookClient(notebook, kernel_name="python3", timeout=120).execute()
    return [list(cell.outputs) for cell in notebook.cells[1:]]


def test_a_plot_as_a_cells_last_line_shows_its_figure_exactly_once() -> None:
    results = outputs_of(list(CELLS))
    for (source, figures), outputs in zip(CELLS.items(), results, strict=True):
        images = [o for o in outputs if "image/png" in o.get("data", {})]
        assert len(images) == figures, (source, outputs)
        # an "<Axes: …>" line shows only as the fallback text of the figure itself, never alone
        texts = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})
                 and "image/png" not in o["data"]]  # fmt: skip
        assert not any(text.startswith("<Axes") for text in texts), (source, outputs)
        assert not [o for o in outputs if o["output_type"] == "error"], outputs
    printed = "".join(o.get("text", "") for o in results[4])
    assert printed.strip() == "Axes"  # the call still returns the Axes
    result = next(o for o in results[0] if o["output_type"] == "execute_result")
    assert result["data"]["text/plain"].startswith("<Axes: title={'center': 'Throughput")
