"""Show a figure drawn by `eventkit.plots` exactly once in Jupyter, and close it anywhere else.

With the inline backend (Jupyter, nbconvert, nbval) a new figure stays with pyplot, which shows it
once at the end of the cell, and an Axes drawn here that is a cell's result shows as its figure
(once) rather than as ``<Axes: …>``. With any other backend (Agg in scripts and tests) the figure
is closed at once, so nothing piles up in pyplot: save or display ``ax.figure`` yourself.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

#: size of a new figure, in inches
FIGSIZE = (9.0, 4.0)

#: Axes drawn here: the notebook display hook shows these, and only these, as their figure
_DRAWN: weakref.WeakSet[Axes] = weakref.WeakSet()


def axes_or_new(ax: Axes | None, height: float = FIGSIZE[1]) -> Axes:
    """``ax`` itself, or the Axes of a new figure handed over to pyplot (see `hand_over`)."""
    if ax is not None:
        return ax
    figure, ax = plt.subplots(figsize=(FIGSIZE[0], height), layout="constrained")
    hand_over(figure)
    return ax


def hand_over(figure: Figure) -> None:
    """Leave a new figure with pyplot where the inline backend shows it at the end of the cell;
    close it anywhere else, so scripts and tests do not pile figures up in pyplot."""
    if not _inline_backend():
        plt.close(figure)


def mark_drawn(ax: Axes) -> Axes:
    """Remember the Axes for the display hook, and install the hook once in a notebook."""
    _DRAWN.add(ax)
    if _inline_backend():
        _install_display_hook()
    return ax


def _inline_backend() -> bool:
    return "inline" in str(matplotlib.get_backend())


def _install_display_hook() -> None:
    """Show an Axes drawn here, left as a cell's result, as its figure instead of ``<Axes: …>``;
    and let ``display(ax.figure)`` take the figure from pyplot, so the flush does not repeat it."""
    ipython: Any = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    png = shell.display_formatter.formatters["image/png"]
    png.for_type(Axes, _axes_png)
    try:
        inline_png = png.lookup_by_type(Figure)  # the inline backend's renderer
    except KeyError:
        return
    if not getattr(inline_png, "eventkit", False):

        def figure_png(figure: Figure) -> Any:
            if any(ax in _DRAWN for ax in figure.axes):
                plt.close(figure)
            return inline_png(figure)

        figure_png.eventkit = True  # type: ignore[attr-defined]
        png.for_type(Figure, figure_png)


def _axes_png(ax: Axes) -> bytes | None:
    """The PNG of an Axes' figure, taken from pyplot so the end-of-cell flush does not show it a
    second time; None (IPython then shows the text) for Axes not drawn here."""
    if ax not in _DRAWN:
        return None
    from IPython.core import pylabtools  # the inline backend's own renderer: same size and dpi

    figure = ax.get_figure(root=True)
    plt.close(figure)
    print_figure: Any = pylabtools.print_figure
    png: bytes | None = print_figure(figure, "png", bbox_inches="tight")
    return png
