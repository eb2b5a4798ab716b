"""The one rule that groups error texts by kind, for the DLQ panel, the replay summary and plot_dlq.

Errors are stored as ``describe(error)`` writes them (``"RuntimeError: flaky"``, see
`eventkit.consumer.describe`), so the kind is the text before the first colon. Anything else
(no text, nothing before the colon, or a head too long to be a type's name, as in a bare message)
groups under UNKNOWN_KIND.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: the kind of an error whose text names none
UNKNOWN_KIND = "?"
#: the longest head taken as a kind: longer, it is a message without a type in front
MAX_KIND_CHARS = 60


def error_kind(text: object) -> str:
    """ "TypeError: x" -> "TypeError"; UNKNOWN_KIND for None, NaN, "" or a head that is no name."""
    if not isinstance(text, str):
        return UNKNOWN_KIND
    head = text.split(":", 1)[0].strip()
    return head if 0 < len(head) <= MAX_KIND_CHARS else UNKNOWN_KIND


def error_kinds(errors: pd.Series) -> pd.Series:
    """error_kind of each cell, worked out once per distinct text (10M rows hold few of them)."""
    kinds = {text: error_kind(text) for text in errors.dropna().unique()}
    return errors.map(kinds).fillna(UNKNOWN_KIND).astype(object)
