"""JSON Lines import and export: a portable snapshot of any store, with ids, times and versions kept.

Each line is the shape of ``jsonl_record``: ``{event_id, event_type, version, source,
timestamp (epoch ms), correlation_id, causation_id, data}`` (files without the two ids import as
events that each start their own story). Records go to and from the store as they are stored, never decoded
or migrated, so old versions, unknown types and poison events travel unchanged. An import is all
or nothing: the whole file is checked first (a streaming pass), then written. Core dependencies
only: the CLI imports this without the notebook extra.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import reprlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from eventkit import codec
from eventkit.bus import EventBus
from eventkit.checks import (
    MAX_INT64,
    MAX_TIMESTAMP_MS,
    MIN_TIMESTAMP_MS,
    check_name,
    check_number,
    check_text,
    timestamp_in_range,
)
from eventkit.clock import TimeInput, parse_time
from eventkit.errors import ConfigError, EventKitError, SerializationError
from eventkit.events import datetime_to_ms
from eventkit.pages import iter_pages, one_by_one
from eventkit.progress import Progress, ProgressArg, reporting
from eventkit.records import correlation_of
from eventkit.stores.base import NewEvent, StoredEvent

logger = logging.getLogger(__name__)

#: how often export reports progress
EXPORT_PROGRESS_EVERY = 10_000
#: how often the check pass of an import reports progress (lines)
CHECK_PROGRESS_EVERY = 10_000
#: line numbers named when invalid lines are reported
SHOWN_INVALID = 5

_shown = reprlib.Repr()  # a bad value is named in an error, never pasted whole
_shown.maxstring = _shown.maxother = _shown.maxlong = 60


@dataclass(frozen=True)
class JsonlCheck:
    """What the check pass of an import found: how many lines, which are not events."""

    path: Path
    lines: int
    invalid: int
    #: (line number, reason) of the first SHOWN_INVALID invalid lines
    first_invalid: tuple[tuple[int, str], ...]

    def lines_named(self) -> str:
        """The invalid lines' numbers: "line 4", or "lines 2, 7, 9, ..." (the first few)."""
        numbers = ", ".join(str(n) for n, _ in self.first_invalid)
        more = ", ..." if self.invalid > len(self.first_invalid) else ""
        return f"line{'s' if self.invalid > 1 else ''} {numbers}{more}"

    def describe(self) -> str:
        """The invalid lines in one line of text: the first with its reason, how many in all."""
        number, reason = self.first_invalid[0]
        text = f"{self.path}, line {number}: {reason}"
        if self.invalid > 1:
            text += f" ({_count(self.invalid, 'invalid line')} in all: {self.lines_named()})"
        return text

    def error(self) -> SerializationError:
        return SerializationError(f"{self.describe()}; nothing was imported")


def check_jsonl(path: str | Path, *, progress: Progress | None = None) -> JsonlCheck:
    """Read the whole file once, line by line (never all of it at once), and say which lines are
    not events that import_jsonl could store: JSON, fields and values (ids and types non-empty
    without NUL, version 1..2**63-1, timestamp within years 1-9999, valid Unicode everywhere).

    OSError (missing file, a folder, permission denied) names the file.
    progress: called with (lines checked, None) now and then.
    """
    path = Path(path)
    lines = invalid = 0
    first: list[tuple[int, str]] = []
    for number, record in _records(path):
        lines = number
        if isinstance(record, str):
            invalid += 1
            if len(first) < SHOWN_INVALID:
                first.append((number, record))
        if progress is not None and number % CHECK_PROGRESS_EVERY == 0:
            progress(number, None)
    if progress is not None:
        progress(lines, None)
    return JsonlCheck(path, lines, invalid, tuple(first))


async def import_jsonl(
    bus: EventBus,
    path: str | Path,
    *,
    batch_size: int = 1000,
    progress: ProgressArg = True,
    skip_invalid: bool = False,
    checked: JsonlCheck | None = None,
) -> int:
    """Append the file's records as stored (ids, timestamps, versions kept); returns how many were
    new. Idempotent: an event_id already in the store is not added again.

    All or nothing: the whole file is checked first (check_jsonl), then written. A bad line
    raises SerializationError naming the file and line (and how many others are bad), and
    nothing is imported.

    Args:
        skip_invalid: import the valid lines; the invalid ones are logged at WARNING (how many,
            the first line numbers and the first reason).
        progress: True (default) shows a bar once the import has run a second (tqdm: a widget in
            Jupyter); False shows none; a callable is called with (lines done, lines in the file)
            after each batch written.
        checked: the result of check_jsonl(path) when the caller ran it already (the CLI does,
            before it opens the store), so the file is not checked twice.
    """
    check_number("batch_size", batch_size, integer=True, minimum=1)
    path = Path(path)
    if checked is not None and checked.path == path:
        check = checked
    else:  # a pass over the whole file: off the event loop, which other work may share
        check = await asyncio.to_thread(check_jsonl, path)
    if check.invalid:
        if not skip_invalid:
            raise check.error()
        number, reason = check.first_invalid[0]
        logger.warning(
            "skipped %s of %s (%s); line %d: %s",
            _count(check.invalid, "invalid line"), path, check.lines_named(), number, reason,
        )  # fmt: skip
    with reporting(progress, f"importing {path.name}") as report:
        return await _import_checked(bus, path, check, batch_size, skip_invalid, report)


async def _import_checked(
    bus: EventBus,
    path: Path,
    check: JsonlCheck,
    batch_size: int,
    skip_invalid: bool,
    progress: Progress | None,
) -> int:
    added = 0
    try:
        batch: dict[str, NewEvent] = {}
        for number, record in _records(path):
            if isinstance(record, str):
                if not skip_invalid:  # it was valid when checked
                    raise SerializationError(
                        f"{path}, line {number}: {record}; the file changed while it was imported"
                    )
                continue
            batch.setdefault(record.event_id, record)  # a repeated id in one batch: the first wins
            if len(batch) >= batch_size:
                added += await _append_new(bus, list(batch.values()))
                batch.clear()
                if progress is not None:
                    progress(number, check.lines)
        if batch:
            added += await _append_new(bus, list(batch.values()))
    except (EventKitError, OSError) as e:
        e.add_note(
            f"{added} events of {path} were imported before this; importing the file again "
            "adds only the rest (ids already stored are skipped)"
        )
        raise
    if progress is not None:
        progress(check.lines, check.lines)
    return added


def check_output_path(path: str | Path) -> Path:
    """A file that an export can write: OSError naming it when it is a folder, when its folder
    does not exist, or when that folder is not writable."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, "is a folder: give the name of the file to write", str(path)
        )
    if not folder.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, f"cannot write it: the folder {folder} does not exist", str(path)
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES, f"cannot write it: the folder {folder} is not writable", str(path)
        )
    return path


async def export_jsonl(
    bus: EventBus,
    path: str | Path,
    *,
    event_types: Sequence[str] | None = None,
    start_time: TimeInput | None = None,
    end_time: TimeInput | None = None,
    progress: ProgressArg = True,
) -> int:
    """Write the matching events in publish order as JSON Lines; returns how many.

    Times filter on each event's own timestamp (start_time <= t < end_time) and take what
    clock.parse_time takes: datetimes (naive = UTC), pandas.Timestamp, dates, ISO strings.
    progress: True (default) shows a bar once the export has run a second; False none; a
    callable gets (events written, None) every EXPORT_PROGRESS_EVERY and (n, n) at the end.

    The file appears complete or not at all (written beside it, then renamed). A stored payload
    that is not JSON raises SerializationError naming the event, rather than exporting it mangled.
    """
    path = check_output_path(path)
    start = None if start_time is None else parse_time(start_time, "start_time")
    end = None if end_time is None else parse_time(end_time, "end_time")
    with reporting(progress, f"exporting to {path.name}") as report:
        return await _export(bus, path, event_types, start, end, report)


async def _export(
    bus: EventBus,
    path: Path,
    event_types: Sequence[str] | None,
    start_time: datetime | None,
    end_time: datetime | None,
    progress: Progress | None,
) -> int:
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            async for stored in one_by_one(
                iter_pages(bus.store, event_types, start_time, end_time)
            ):
                out.write(codec.dumps(jsonl_record(stored)))
                out.write("\n")
                count += 1
                if progress is not None and count % EXPORT_PROGRESS_EVERY == 0:
                    progress(count, None)
        os.replace(partial, path)
    except OSError as e:  # name the file asked for, not the partial one beside it
        raise OSError(e.errno, f"cannot write it ({e.strerror or e})", str(path)) from e
    finally:
        partial.unlink(missing_ok=True)
    if progress is not None:
        progress(count, count)
    return count


async def _append_new(bus: EventBus, events: list[NewEvent]) -> int:
    """Append the events whose ids the store does not hold yet; how many that was."""
    known = {e.event_id for e in await bus.store.get_events([e.event_id for e in events])}
    new = [e for e in events if e.event_id not in known]
    if new:
        await bus.store.append(new)
    return len(new)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _records(path: Path) -> Iterator[tuple[int, NewEvent | str]]:
    """(line number, event or the reason the line is not one); blank lines skipped. OSError
    (missing file, a folder, permission denied) names the file."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise OSError(e.errno, f"cannot read it ({e.strerror or e})", str(path)) from e
    with f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield number, _parse_line(raw)
            except (ValueError, TypeError, OverflowError, RecursionError) as e:
                yield number, str(e)


def jsonl_record(stored: StoredEvent) -> dict[str, Any]:
    """The portable form of a stored event (JSON Lines export): ids, times and version kept."""
    return {
        "event_id": stored.event_id,
        "event_type": stored.event_type,
        "version": stored.version,
        "source": stored.source,
        "timestamp": stored.timestamp_ms,
        "correlation_id": correlation_of(stored),
        "causation_id": stored.causation_id,
        "data": codec.parse_payload(stored),
    }


def _parse_line(raw: bytes) -> NewEvent:
    """The line as an event the store can keep and read back, else ValueError saying why."""
    try:  # strict: json.loads(bytes) would let encoded lone surrogates through
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start + 1} of the line)") from None
    try:  # msgspec reads valid lines fast; json has the last word (NaN) and the error messages
        try:
            record = msgspec.json.decode(text)
        except msgspec.DecodeError:
            record = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    event_id, event_type = _name(record, "event_id"), _name(record, "event_type")
    version = record.get("version", 1)
    if type(version) is not int or not 1 <= version <= MAX_INT64:
        raise ValueError(f"version must be an int in 1..{MAX_INT64}, got {_shown.repr(version)}")
    source = record.get("source", "")
    if not isinstance(source, str):
        raise ValueError(f"source must be a string, got {_shown.repr(source)}")
    if not source.isascii() or "\x00" in source:
        check_text("source", source)  # SerializationError is a ValueError
    data = record.get("data", {})
    if not isinstance(data, dict):
        raise ValueError(f"data must be a JSON object, got {type(data).__name__}")
    try:
        payload = codec.dumps(data)
    except (TypeError, ValueError) as e:
        raise ValueError(f"data cannot be stored: {e}") from None
    # a file written before correlation existed has neither: each event starts its own story
    correlation_id = _name(record, "correlation_id") if record.get("correlation_id") else None
    if correlation_id == event_id:  # its own story: stored as none, as codec.encode does
        correlation_id = None
    causation_id = _name(record, "causation_id") if record.get("causation_id") else None
    return NewEvent(event_id, event_type, version, source, _timestamp_ms(record), payload,
                    correlation_id, causation_id)  # fmt: skip


def _name(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    if type(value) is str and value.isascii() and "\x00" not in value and not value.isspace():
        if value:  # the common case, without check_name's calls
            return value
    try:
        return check_name(key, value)
    except ConfigError as e:
        raise ValueError(f"{key} {_shown.repr(value)} cannot be used: {e.hint}") from None


def _timestamp_ms(record: dict[str, Any]) -> int:
    """Epoch milliseconds as exported; ISO 8601 text (BaseEvent-style records) is accepted too.
    Either must be a time in years 1-9999, which every store and datetime can hold."""
    value = record.get("timestamp")
    ms: object = None
    if type(value) is int:
        ms = value
    elif isinstance(value, str):
        try:
            ms = datetime_to_ms(datetime.fromisoformat(value))
        except ValueError:
            raise ValueError(
                f"timestamp {_shown.repr(value)} is not ISO 8601 text (e.g. 2025-01-31T12:00:00Z)"
            ) from None
        except OverflowError:  # a time zone takes it past year 1 or 9999
            ms = None
    else:
        raise ValueError(
            f"timestamp must be epoch milliseconds (an int) or ISO 8601 text, got {_shown.repr(value)}"
        )
    if not timestamp_in_range(ms):
        raise ValueError(
            f"timestamp {_shown.repr(value)} is outside years 1-9999 (epoch milliseconds "
            f"{MIN_TIMESTAMP_MS}..{MAX_TIMESTAMP_MS})"
        )
    assert isinstance(ms, int)
    return ms
