"""What the frame modules share: argument parsing, assembling typed pages, the finishing touches."""

from __future__ import annotations

import gc
import warnings
import zoneinfo
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import tzinfo
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from eventkit.bus import EventBus
from eventkit.clock import TimeInput, parse_time
from eventkit.errors import ConfigError
from eventkit.frames_dtypes import needs_store_kinds, targets
from eventkit.frames_kinds import keep_whole_log_kinds, read_store_kinds, store_kinds
from eventkit.frames_payload import CoercedValuesWarning, PayloadPage, converted_column, merge_kinds

#: rows read from the store per round trip: large enough that per-page costs vanish
PAGE = 50_000


# -- arguments ------------------------------------------------------------------------------------


def type_filter(event_types: Sequence[str] | str | None) -> list[str] | None:
    """The event types to read: None for every type ("*" among them, or none given)."""
    types = [event_types] if isinstance(event_types, str) else event_types
    return None if types is None or "*" in types else list(types)


def time_filter(value: TimeInput | None, label: str) -> Any:
    """A start or end time as a UTC datetime (None: no bound); label names it in errors."""
    return None if value is None else parse_time(value, label)


def display_zone(tz: str | tzinfo | None) -> tzinfo | str:
    """The zone time columns are shown in: "UTC" unless tz names another."""
    if tz is None or tz == "UTC":
        return "UTC"
    if isinstance(tz, tzinfo):
        return tz
    try:
        return zoneinfo.ZoneInfo(str(tz))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            "tz", tz, "give an IANA zone name such as 'Europe/Berlin' or a tzinfo"
        ) from None


async def total_events(bus: EventBus, limit: int | None) -> int | None:
    """The progress bar's total: the store's event count (capped by limit)."""
    total = (await bus.store.stats())["store"]["total_events"]
    return total if limit is None else min(total, limit)


# -- building columns -----------------------------------------------------------------------------


async def column_kinds(
    bus: EventBus,
    pages: list[PayloadPage],
    complete: int | None,
    progress: bool,
    event_types: set[str],
) -> dict[str, set[str]]:
    """The JSON kinds of every value the store holds under the pages' payload columns. A frame
    of the whole log (complete: its last position) is its own answer and is remembered; any
    other reads the store's kinds (once per store, then only what was appended since)."""
    own: dict[str, set[str]] = {}
    for page in pages:
        merge_kinds(own, page.kinds)
    known = store_kinds(bus.store)
    if complete is not None:
        await keep_whole_log_kinds(bus.store, own, complete)
    elif needs_store_kinds(own, event_types):
        await read_store_kinds(bus.store, progress)
    merged = {name: set(found) for name, found in known.kinds.items()}
    merge_kinds(merged, own)
    return merged


def assemble(
    pages: list[tuple[dict[str, Any], PayloadPage]],
    kinds: dict[str, set[str]],
    envelope: dict[str, str],
    zone: tzinfo | str,
    who: str,
    event_types: set[str],
) -> pd.DataFrame:
    """Envelope and payload pages as one frame, every payload column in its one dtype (declared
    by the classes of the frame's event types, else from the store's values)."""
    names = list(dict.fromkeys(name for _, page in pages for name in page.columns))
    plan = targets(names, kinds, event_types)
    failed = any(page.errors is not None for _, page in pages)
    coerced: Counter[str] = Counter()
    frames = []
    for columns, page in pages:
        columns = dict(columns)
        for name in names:
            columns[name], lost = converted_column(page, name, plan[name])
            coerced[name] += lost
        if failed:
            columns["data_error"] = pd.array(page.errors or [None] * page.rows, dtype="string")
        frames.append(pd.DataFrame(columns, copy=False))
    frame = finish(concat_pages(frames, envelope), zone, coerced)
    for name, count in coerced.items():
        if count:
            target = plan[name]
            warnings.warn(
                f"{who}: {count:,} value{'s' if count != 1 else ''} of {name} did not fit its "
                f"dtype {target.dtype} (declared as {target.origin}) and became <NA>; "
                f"frame.attrs['coerced'] counts them",
                CoercedValuesWarning,
                stacklevel=3,
            )
    return frame


def finish(frame: pd.DataFrame, zone: tzinfo | str, coerced: Counter[str]) -> pd.DataFrame:
    """Time columns in the zone asked for; attrs saying which zone and what was coerced."""
    if zone != "UTC":
        for name in frame.columns:
            if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
                frame[name] = frame[name].dt.tz_convert(zone)
    frame.attrs["tz"] = str(zone)
    frame.attrs["coerced"] = {name: n for name, n in coerced.items() if n}
    return frame


@contextmanager
def gc_paused() -> Iterator[None]:
    """Building a frame allocates millions of small objects and the cyclic GC would scan them over
    and over (a fifth of the time on 1M rows); nothing built here is cyclic garbage. Restored after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def text_column(values: Sequence[str | None]) -> Any:
    """A "str" column: through a pyarrow array, twice as fast as pd.array(values, dtype="str")."""
    return pd.array(pa.array(values, pa.string()), dtype="str")


def utc_column(ms: Sequence[int] | np.ndarray) -> Any:
    """Epoch milliseconds (NaN: missing) as a datetime64[ms, UTC] column, without a copy per row."""
    values = np.asarray(ms)
    if values.dtype.kind == "f":  # NaT is int64's minimum
        values = np.where(np.isnan(values), np.iinfo(np.int64).min, values)
    stamps = values.astype(np.int64, copy=False).view("datetime64[ms]")
    return pd.Series(stamps).dt.tz_localize("UTC").array


def concat_pages(pages: list[pd.DataFrame], columns: dict[str, str]) -> pd.DataFrame:
    """Pages as one frame; no pages gives the documented columns and dtypes with no rows."""
    if not pages:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in columns.items()})
    if len(pages) == 1:
        return pages[0]
    return pd.concat(pages, ignore_index=True, sort=False)
