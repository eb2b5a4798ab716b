"""Regenerate the README's figures from the demo's report: docs/figures/throughput.png and latency.png.

    .venv/bin/python scripts/make_figures.py

Runs the demo (its fixed seeds: the same events, failures and dead letters every time) on a
temporary SQLite file and keeps two of the report's figures. Event times follow the clock of the
run and latencies the machine, so dates and a few bars move between runs; shapes, counts and
labels do not.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before eventkit.report imports pyplot: no window, no display needed

from eventkit.demo import run_demo  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures"
FIGURES = ("throughput.png", "latency.png")
MAX_BYTES = 150_000  # committed images stay small


def main() -> int:
    """Run the demo with a report and copy FIGURES into docs/figures/."""
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="eventkit-figures-") as tmp:
        report = Path(tmp) / "report"
        asyncio.run(run_demo(Path(tmp) / "demo.db", report_dir=report, out=lambda _: None))
        for name in FIGURES:
            target = OUT / name
            shutil.copyfile(report / name, target)
            size = target.stat().st_size
            print(f"{target.relative_to(OUT.parent.parent)}: {size:,} bytes")
            if size > MAX_BYTES:
                print(f"{name} is over {MAX_BYTES:,} bytes: too big to commit", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
