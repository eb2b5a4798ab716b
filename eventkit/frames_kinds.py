"""The JSON kinds of every value a store holds per payload column, read once and kept up to date."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Mapping

import pyarrow as pa

from eventkit.frames_payload import merge_kinds, parse_page
from eventkit.progress import progress_bar
from eventkit.records import StoredEvent
from eventkit.stores.base import EventStore

#: rows per round trip when StoreKinds reads the whole store
SCAN_PAGE = 50_000


@dataclasses.dataclass
class StoreKinds:
    """The JSON kinds of every value stored under each payload column, read up to `position`.

    One per store object, kept while the store lives, and read on from where it stopped, so a
    filtered frame reads the whole store once and then only what was appended since. Trimmed
    events leave their kinds: a column's dtype never narrows while the process runs."""

    position: int | None = None
    kinds: dict[str, set[str]] = dataclasses.field(default_factory=dict)

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
    return known.kinds
