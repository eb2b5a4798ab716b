"""`migration_frame`: what consumers would make of each stored event under today's migrations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from eventkit import codec
from eventkit.bus import EventBus
from eventkit.consumer import describe
from eventkit.frames_columns import PAGE, concat_pages, gc_paused, total_events, type_filter
from eventkit.frames_payload import flatten
from eventkit.pages import iter_pages
from eventkit.progress import progress_bar
from eventkit.records import StoredEvent
from eventkit.versioning import registry

MIGRATION_COLUMNS: dict[str, str] = {
    "event_id": "str", "event_type": "str", "stored_version": "int64", "current_version": "Int64",
    "migrates": "bool", "error": "object", "changed_fields": "object",
}  # fmt: skip


async def migration_frame(
    bus: EventBus, event_types: Sequence[str] | str | None = None, *, progress: bool = True
) -> pd.DataFrame:
    """What consumers would make of each stored event under the registered classes and migrations.

    The verdict is the consumers' own decode (`eventkit.codec.decode`); nothing is written.

    Parameters
    ----------
    bus : EventBus
        An initialized bus.
    event_types : sequence of str or str, optional
        Only these event types (``None`` or ``"*"``: all).
    progress : bool, default True
        Show a tqdm progress bar when the work takes more than a second.

    Returns
    -------
    pandas.DataFrame
        ``event_id``, ``event_type`` (str); ``stored_version`` (int64); ``current_version``
        (Int64: NA for a type with no registered class); ``migrates`` (bool: a consumer would
        get a typed event); ``error`` (object: the text a consumer would dead-letter the event
        with, or None); ``changed_fields`` (object: sorted list of the dotted payload names the
        migrations add, remove or change).

    Examples
    --------
    >>> plan = await migration_frame(bus, ["quality.assessed"])
    >>> plan[~plan["migrates"]][["event_id", "error"]]
    """
    types = type_filter(event_types)
    total = await total_events(bus, None) if progress and types is None else None
    pages = []
    with gc_paused(), progress_bar(total, "migration_frame", enabled=progress) as bar:
        async for page in iter_pages(bus.store, types, None, None, page_size=PAGE):
            pages.append(_migration_page(page))
            bar.update(len(page))
        return concat_pages(pages, MIGRATION_COLUMNS)


def _migration_page(page: list[StoredEvent]) -> pd.DataFrame:
    columns = zip(
        MIGRATION_COLUMNS.items(), zip(*map(_migration_row, page), strict=True), strict=True
    )
    return pd.DataFrame(
        {name: pd.Series(list(values), dtype=kind) for (name, kind), values in columns}
    )


def _migration_row(stored: StoredEvent) -> tuple[Any, ...]:
    """(event_id, type, stored, current, migrates, error, changed) for one event. The verdict is
    the consumers' own decode; the changed fields compare the stored payload with what the
    registry's migrations make of it. Nothing here migrates or parses by itself."""
    event_type, version = stored.event_type, stored.version
    current = registry.current_version(event_type)
    changed: list[str] = []
    try:
        codec.decode(stored)
        if current is not None and version != current:  # at the current version nothing migrates
            before = codec.parse_payload(stored)
            _, after = registry.migrate(event_type, version, before)  # copies before each step
            changed = _changed_fields(before, after)
    except codec.DECODE_ERRORS as e:
        return (stored.event_id, event_type, version, current, False, describe(e), [])
    return (stored.event_id, event_type, version, current, True, None, changed)


def _changed_fields(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names (as the ``data.*`` columns) of the payload fields added, removed or changed,
    sorted. Equal subtrees are skipped whole: most of a migrated payload is left as it was."""
    changed: list[str] = []
    for key in before.keys() | after.keys():
        old, new = before.get(key, _MISSING), after.get(key, _MISSING)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            changed += _changed_fields(old, new, f"{prefix}{key}.")
            continue
        for side in (old, new):  # an object on one side only: each of its leaves changed
            if isinstance(side, dict):
                changed += flatten(side, f"{prefix}{key}.")
            elif side is not _MISSING:
                changed.append(f"{prefix}{key}")
    return sorted(set(changed))


_MISSING = object()
