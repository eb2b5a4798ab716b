"""`export_frame`'s writing: events_frame to a CSV or Parquet file a page at a time, in a page's memory.

A file's columns and dtypes must be fixed before its first page is written, and they must be those
`events_frame` would give for the same filter (declared by the classes, else from every value the
store holds, never from one page). So the export reads the events twice: a first pass parses the
payloads only for their column names and JSON kinds (kept: a few sets per column), and the store's
kinds are brought up to date as `events_frame` does; the second pass converts each page to that
one plan and appends it, to a `pyarrow.parquet.ParquetWriter` whose schema is that of the first
page (every later page is cast to it) or to a CSV file whose header is written once.

Cells a file cannot hold as one type are JSON text in both formats: ``object`` columns (dicts,
lists of undeclared items) and mixed-kind columns; declared ``list[X]`` columns stay lists in
Parquet (their Arrow type is fixed by the declaration). The file appears only once complete: pages
go to a temporary file beside it, renamed over `path` at the end; a failure removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from eventkit.frames_dtypes import Target, needs_store_kinds, targets
from eventkit.frames_kinds import keep_whole_log_kinds, read_store_kinds, store_kinds
from eventkit.frames_payload import (
    CoercedValuesWarning,
    PayloadPage,
    converted_column,
    merge_kinds,
    parse_page,
    typed_page,
)
from eventkit.progress import progress_bar
from eventkit.records import StoredEvent
from eventkit.stores.base import EventStore

EXPORT_FORMATS = ("csv", "parquet")


#: a page's envelope columns, built by the frames module
Envelope = Callable[[list[StoredEvent]], dict[str, Any]]
#: a fresh read of the exported events, a page at a time
Pages = Callable[[], AsyncIterator[list[StoredEvent]]]


def check_format(format: str) -> None:
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")


async def write_pages(
    store: EventStore,
    path: str | Path,
    format: str,
    pages: Pages,
    envelope: Envelope,
    empty: pd.DataFrame,
    *,
    whole: bool,
    total: int | None,
    progress: bool,
) -> int:
    """The body of `eventkit.frames.export_frame`: plan from a first read of `pages`, then write
    each page of a second read; `empty` is the frame of no events. Returns the rows written."""
    check_format(format)
    plan = await _plan(store, pages, whole, total, progress)
    with _replacing(Path(path)) as temporary:
        writer = _CsvPages(temporary) if format == "csv" else _ParquetPages(temporary)
        try:
            rows = await _write(store, pages, envelope, plan, writer, total, progress)
            if rows == 0:
                writer.write(_portable(empty))
        finally:
            writer.close()
    plan.warn_coerced()
    return rows


class _Plan:
    """The export's columns and their targets, fixed by the first pass."""

    def __init__(self, names: list[str], plan: dict[str, Target], failed: bool) -> None:
        self.names = names
        self.plan = plan
        self.failed = failed  # some payload is not a JSON object: a data_error column
        self.coerced: Counter[str] = Counter()

    def warn_coerced(self) -> None:
        for name, count in self.coerced.items():
            if count:
                target = self.plan[name]
                warnings.warn(
                    f"export_frame: {count:,} value{'s' if count != 1 else ''} of {name} did not "
                    f"fit its dtype {target.dtype} (declared as {target.origin}) and became <NA>",
                    CoercedValuesWarning,
                    stacklevel=3,
                )


async def _plan(
    store: EventStore, pages: Pages, whole: bool, total: int | None, progress: bool
) -> _Plan:
    """First pass: the payload columns of the exported events and their kinds (parsed, kept as
    sets), then the store's kinds where a column is typed by its values."""
    own: dict[str, set[str]] = {}
    names: dict[str, None] = {}
    seen_types: set[str] = set()
    failed, last, schema = False, 0, None
    with progress_bar(total, "export_frame (columns)", enabled=progress) as bar:
        async for page in pages():
            seen_types |= {e.event_type for e in page}
            parsed, schema = await asyncio.to_thread(parse_page, [e.data for e in page], schema)
            merge_kinds(own, parsed.kinds)
            names.update(dict.fromkeys(parsed.columns))
            failed = failed or parsed.errors is not None
            last = page[-1].position
            bar.update(len(page))
    known = store_kinds(store)
    if whole and last:
        await keep_whole_log_kinds(store, own, last)  # the whole log: its kinds are the store's
    elif needs_store_kinds(own, seen_types):
        await read_store_kinds(store, progress)
    kinds = {name: set(found) for name, found in known.kinds.items()}
    merge_kinds(kinds, own)
    return _Plan(list(names), targets(names, kinds, seen_types), failed)


async def _write(
    store: EventStore,
    pages: Pages,
    envelope: Envelope,
    plan: _Plan,
    writer: _CsvPages | _ParquetPages,
    total: int | None,
    progress: bool,
) -> int:
    """Second pass: each page converted to the plan and appended (the next page is read meanwhile)."""
    rows, schema = 0, None
    known = {name: set(found) for name, found in store_kinds(store).kinds.items()}
    with progress_bar(total, "export_frame", enabled=progress) as bar:
        async for page in pages():
            page_types = {e.event_type for e in page}
            texts = [e.data for e in page]
            parsing = asyncio.to_thread(typed_page, texts, page_types, schema, known)
            columns = envelope(page)
            payload, schema = await parsing
            frame = _page_frame(columns, payload, plan)
            await asyncio.to_thread(writer.write, frame)
            rows += len(frame)
            bar.update(len(page))
    return rows


def _page_frame(columns: dict[str, Any], payload: PayloadPage, plan: _Plan) -> pd.DataFrame:
    columns = dict(columns)
    for name in plan.names:
        columns[name], lost = converted_column(payload, name, plan.plan[name])
        plan.coerced[name] += lost
    if plan.failed:
        columns["data_error"] = pd.array(payload.errors or [None] * payload.rows, dtype="string")
    return _portable(pd.DataFrame(columns, copy=False))


def _portable(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns (dicts, undeclared lists, mixed cells) as JSON text, so that every page
    has one Arrow type per column whatever it holds; declared Arrow lists stay as they are."""
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object:
            frame[name] = pd.array(column.map(_json_cell), dtype="string")
    return frame


def _json_cell(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, np.ndarray) else value)


class _ParquetPages:
    """Pages appended as row groups; the first page's schema is the file's, later pages cast to it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        if self._writer is None:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            self._writer = pq.ParquetWriter(self.path, table.schema)
        else:
            table = pa.Table.from_pandas(frame, schema=self._writer.schema, preserve_index=False)
        self._writer.write_table(table)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class _CsvPages:
    """Pages appended as CSV text: the header with the first page only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._header = True

    def write(self, frame: pd.DataFrame) -> None:
        frame = frame.copy(deep=False)
        for name in frame.columns:  # Arrow lists as JSON text, as the other object cells
            if isinstance(frame[name].dtype, pd.ArrowDtype):
                frame[name] = frame[name].map(_json_cell)
        frame.to_csv(self.path, mode="w" if self._header else "a", header=self._header, index=False)
        self._header = False

    def close(self) -> None:
        return None


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside path, renamed over it on success and removed on failure."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.part")  # umask permissions
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
