"""JSON Lines import and export: a portable snapshot of any store, with ids, times and versions kept.

Each line is the shape of ``codec.stored_to_dict``: ``{event_id, event_type, version, source,
timestamp (epoch ms), data}``. Records go to and from the store as they are stored, never decoded
or migrated, so old versions, unknown types and poison events travel unchanged. Standard library
only: the CLI imports this without the notebook extra.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from eventkit import codec
from eventkit.bus import EventBus, iter_stored
from eventkit.errors import SerializationError
from eventkit.events import datetime_to_ms
from eventkit.stores.base import NewEvent

logger = logging.getLogger(__name__)

#: progress(count_done, total_or_None)
Progress = Callable[[int, int | None], None]
#: how often export reports progress
EXPORT_PROGRESS_EVERY = 10_000
#: line numbers named when invalid lines are skipped
SHOWN_INVALID = 5


async def import_jsonl(
    bus: EventBus,
    path: str | Path,
    *,
    batch_size: int = 1000,
    progress: Progress | None = None,
    skip_invalid: bool = False,
) -> int:
    """Append the file's records as stored (ids, timestamps, versions kept); returns how many were
    new. Idempotent: an event_id already in the store is not added again.

    Args:
        skip_invalid: count and log invalid lines instead of raising SerializationError at the first.
        progress: called with (lines done, lines in the file) after each batch.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    path = Path(path)
    total = _count_lines(path)
    added, invalid = 0, []
    batch: dict[str, NewEvent] = {}
    done = 0
    for number, record in _records(path):
        done = number
        if isinstance(record, SerializationError):
            if not skip_invalid:
                raise record
            invalid.append(record)
            continue
        batch.setdefault(record.event_id, record)  # a repeated id in one batch: the first wins
        if len(batch) >= batch_size:
            added += await _append_new(bus, list(batch.values()))
            batch.clear()
            if progress is not None:
                progress(done, total)
    if batch:
        added += await _append_new(bus, list(batch.values()))
    if progress is not None:
        progress(total, total)
    if invalid:
        shown = "; ".join(str(e) for e in invalid[:SHOWN_INVALID])
        logger.warning("skipped %d invalid lines of %s: %s", len(invalid), path, shown)
    return added


async def export_jsonl(
    bus: EventBus,
    path: str | Path,
    *,
    event_types: Sequence[str] | None = None,
    start_time: datetime | None = None,
    end_time: datetime | None = None,
    progress: Progress | None = None,
) -> int:
    """Write the matching events in publish order as JSON Lines; returns how many.

    The file appears complete or not at all (written beside it, then renamed). A stored payload
    that is not JSON raises SerializationError naming the event, rather than exporting it mangled.
    """
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    count = 0
    try:
        with partial.open("w", encoding="utf-8", newline="\n") as out:
            async for stored in iter_stored(bus.store, event_types, start_time, end_time):
                out.write(codec.dumps(codec.stored_to_dict(stored)))
                out.write("\n")
                count += 1
                if progress is not None and count % EXPORT_PROGRESS_EVERY == 0:
                    progress(count, None)
        os.replace(partial, path)
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


def _count_lines(path: Path) -> int:
    """Lines in the file (a last line without a newline counts), read in binary blocks."""
    count, last = 0, b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def _records(path: Path) -> Iterator[tuple[int, NewEvent | SerializationError]]:
    """(line number, event or the error saying why the line is not one); blank lines skipped."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                yield number, _parse_line(raw)
            except (ValueError, TypeError, UnicodeDecodeError) as e:
                yield number, SerializationError(f"{path}, line {number}: {e}")


def _parse_line(raw: bytes) -> NewEvent:
    record = json.loads(raw.decode("utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    event_id, event_type = record.get("event_id"), record.get("event_type")
    for name, value in (("event_id", event_id), ("event_type", event_type)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    version = record.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version must be an int >= 1, got {version!r}")
    source = record.get("source", "")
    if not isinstance(source, str):
        raise ValueError(f"source must be a string, got {source!r}")
    data = record.get("data", {})
    if not isinstance(data, dict):
        raise ValueError(f"data must be a JSON object, got {type(data).__name__}")
    return NewEvent(
        str(event_id), str(event_type), version, source, _timestamp_ms(record), codec.dumps(data)
    )


def _timestamp_ms(record: dict[str, Any]) -> int:
    """Epoch milliseconds as exported; ISO 8601 text (BaseEvent-style records) is accepted too."""
    value = record.get("timestamp")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return datetime_to_ms(datetime.fromisoformat(value))
    raise ValueError(f"timestamp must be epoch milliseconds or ISO 8601 text, got {value!r}")
