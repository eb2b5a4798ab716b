"""One self-overwriting status line for long commands (demo, import, export): standard library only."""

from __future__ import annotations

import sys
import time
from typing import TextIO


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
