"""benchmarks/RESULTS.md is shared: each benchmark rewrites its own "## ..." section and no other."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(section: str, body: str) -> None:
    """Replace the section titled `section` (its heading line) with `body`, or append it."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    start = text.find(section)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(section))
        text = text[:start] + body + ("" if end < 0 else text[end:])
    RESULTS.write_text(text)
