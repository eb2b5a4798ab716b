"""Progress for long work: a self-overwriting terminal line (CLI, demo) and tqdm bars (frames, import, export, replay)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class ProgressLine:
    """One self-overwriting status line on a terminal; plain lines, throttled, elsewhere.

    Updates within `delay` seconds of creation are not shown, so a command that ends quickly
    prints only its result (and an error stays the only line); `done` always shows.
    """

    def __init__(self, stream: TextIO | None = None, every: float = 0.2, delay: float = 0.0):
        self.stream = stream or sys.stderr
        self.every = every
        self._start = time.monotonic()
        self._delay = delay
        self._last = 0.0
        self._tty = self.stream.isatty()
        self._showing = False  # a line without its newline is on the terminal

    def update(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and (
            now - self._start < self._delay or now - self._last < (self.every if self._tty else 1.0)
        ):
            return
        self._last = now
        if self._tty:
            self.stream.write(f"\r\x1b[K{text}")
            self._showing = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self, text: str) -> None:
        self.update(text, force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
            self._showing = False

    def clear(self) -> None:
        """Erase the line shown on a terminal, so what is printed next starts a clean line."""
        if self._showing:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._showing = False


#: a bar appears only once work has run this long, so quick calls stay quiet
BAR_DELAY_SECONDS = 1.0

#: progress(done, total or None): how library calls report long work to a caller
Progress = Callable[[int, int | None], None]
#: what a `progress=` argument takes: True for a tqdm bar (after a second), False for none, or a
#: callback (the CLI passes one that writes its ProgressLine)
ProgressArg = Progress | bool | None


def progress_bar(
    total: int | None, description: str, *, enabled: bool = True, unit: str = "event"
) -> Any:
    """A tqdm.auto bar (a widget in Jupyter, a text line elsewhere) for long work, shown only
    after BAR_DELAY_SECONDS so short calls print nothing; enabled=False gives a silent one.
    Use as a context manager and call .update(n). Silent too when tqdm is not installed (it
    comes with the notebook extra)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the notebook extra is not installed
        return _SilentBar()
    return tqdm(
        total=total, desc=description, unit=unit, unit_scale=True, delay=BAR_DELAY_SECONDS,
        disable=not enabled, leave=True, dynamic_ncols=True,
    )  # fmt: skip


class _SilentBar:
    """What progress_bar gives without tqdm: the same calls, doing nothing."""

    def __init__(self) -> None:
        self.n = 0
        self.total: int | None = None

    def __enter__(self) -> _SilentBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.n += n

    def refresh(self) -> None:
        return None

    def close(self) -> None:
        return None


@contextmanager
def reporting(progress: ProgressArg, description: str) -> Iterator[Progress | None]:
    """The callback behind a `progress=` argument: the caller's own, one that moves a tqdm bar
    (True), or None (False/None: nothing to report)."""
    if callable(progress):
        yield progress
        return
    if not progress:
        yield None
        return
    with progress_bar(None, description) as bar:

        def update(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        yield update
