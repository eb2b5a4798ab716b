"""run(coro): call async eventkit from synchronous code, also inside a running notebook loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion and return its result.

    With no loop running this is asyncio.run. Inside a running loop (a Jupyter cell) the loop is
    made re-entrant with nest_asyncio, applied here lazily and never at import.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    try:
        import nest_asyncio
    except ImportError:
        coro.close()
        raise RuntimeError(
            "eventkit.run() inside a running event loop needs nest-asyncio: "
            "pip install 'eventkit[notebook]', or simply 'await' the coroutine in the cell"
        ) from None
    nest_asyncio.apply(loop)
    return loop.run_until_complete(coro)
