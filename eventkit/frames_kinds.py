"""The JSON kinds of every value a store holds per payload column, read once and kept up to date.

SPEC §6 types a generic payload column from all the store's values, so the first frame of a store
reads its whole log (3.8 s at 10^6 events). What that read learned is kept in the store itself, as
a note (EventStore.put_note), so the next process, notebook or kernel restart reads only the events
stored after it: a frame of the newest 10^5 then costs the same at 10^5 or 10^7 stored events
(benchmarks/bench_scale.py). Trimmed events leave their kinds: a column's dtype never narrows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import weakref
from collections.abc import Mapping

import pyarrow as pa

from eventkit.errors import StoreError
from eventkit.frames_payload import merge_kinds, parse_page
from eventkit.progress import progress_bar
from eventkit.records import StoredEvent
from eventkit.stores.base import EventStore

logger = logging.getLogger(__name__)

#: rows per round trip when StoreKinds reads the whole store
SCAN_PAGE = 50_000
#: the store's note holding what the last process learned: {"format", "position", "kinds"}
NOTE = "frames.payload_kinds"
NOTE_FORMAT = 1


@dataclasses.dataclass
class StoreKinds:
    """The JSON kinds of every value stored under each payload column, read up to `position`.

    One per store object, kept while the store lives, and read on from where it stopped, so a
    filtered frame reads the whole store once and then only what was appended since. Trimmed
    events leave their kinds: a column's dtype never narrows. The store's note (NOTE) carries
    them from one process to the next."""

    position: int | None = None
    kinds: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    #: the store's note was read (once per store object)
    note_read: bool = False
    #: the position the store's note holds, as last read or written here
    noted_position: int | None = None

    def add(self, kinds: Mapping[str, set[str]], last_position: int) -> None:
        merge_kinds(self.kinds, kinds)
        if self.position is None or last_position > self.position:
            self.position = last_position


_STORE_KINDS: weakref.WeakKeyDictionary[EventStore, StoreKinds] = weakref.WeakKeyDictionary()


def store_kinds(store: EventStore) -> StoreKinds:
    kinds = _STORE_KINDS.get(store)
    if kinds is None:
        kinds = _STORE_KINDS[store] = StoreKinds()
    return kinds


async def read_store_kinds(store: EventStore, progress: bool = True) -> dict[str, set[str]]:
    """Bring the store's StoreKinds up to date, reading only events after its position (the
    next page is read while this one parses)."""
    known = store_kinds(store)
    if not known.note_read:
        await _read_note(store, known)
    schema: pa.Schema | None = None
    reading: asyncio.Future[list[StoredEvent]] | None = asyncio.ensure_future(
        store.read(after_position=known.position, limit=SCAN_PAGE)
    )
    with progress_bar(None, "payload dtypes of the whole store", enabled=progress) as bar:
        try:
            while reading is not None:
                page = await reading
                reading = None
                if len(page) == SCAN_PAGE:  # there may be more
                    after = page[-1].position
                    reading = asyncio.ensure_future(
                        store.read(after_position=after, limit=SCAN_PAGE)
                    )
                if page:
                    texts = [e.data for e in page]
                    parsed, schema = await asyncio.to_thread(parse_page, texts, schema)
                    known.add(parsed.kinds, page[-1].position)
                    bar.update(len(page))
        finally:
            if reading is not None:
                reading.cancel()
    await _write_note(store, known)
    return known.kinds


async def keep_whole_log_kinds(
    store: EventStore, kinds: Mapping[str, set[str]], last_position: int
) -> None:
    """A frame of the whole log (up to last_position) is its own answer: remember its kinds, in
    this process and in the store's note."""
    known = store_kinds(store)
    known.add(kinds, last_position)
    if not known.note_read:
        await _read_note(store, known)
    await _write_note(store, known)


async def _read_note(store: EventStore, known: StoreKinds) -> None:
    """Take in what an earlier process learned (both cover the log from its start, so their
    union covers it up to the later of the two positions)."""
    known.note_read = True
    try:
        text = await store.get_note(NOTE)
        note = json.loads(text) if text is not None else None
        if note is None or note.get("format") != NOTE_FORMAT:
            return
        position, kinds = int(note["position"]), note["kinds"]
        found = {str(name): {str(kind) for kind in found} for name, found in kinds.items()}
    except (StoreError, ValueError, TypeError, KeyError, AttributeError) as e:
        logger.debug("the payload kinds noted in %r are not used: %s", store, e)
        return
    known.add(found, position)
    known.noted_position = position


async def _write_note(store: EventStore, known: StoreKinds) -> None:
    """Keep what this process learned for the next one; a store that cannot take it (read-only)
    only means the next process reads the log again. Only when it knows more than the note."""
    if known.position is None or known.position <= (known.noted_position or 0):
        return
    kinds = {name: sorted(found) for name, found in sorted(known.kinds.items())}
    text = json.dumps({"format": NOTE_FORMAT, "position": known.position, "kinds": kinds})
    try:
        await store.put_note(NOTE, text)
        known.noted_position = known.position
    except StoreError as e:
        logger.debug("payload kinds not noted in %r: %s", store, e)
