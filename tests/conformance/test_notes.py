"""Notes: small texts a store keeps beside its log for readers (frames_kinds keeps payload kinds)."""

from __future__ import annotations

from eventkit.stores.base import EventStore
from tests.conftest import Backend


async def test_a_note_is_kept_replaced_and_seen_by_every_store_on_the_same_place(
    store: EventStore, backend: Backend
) -> None:
    assert await store.get_note("frames.payload_kinds") is None
    await store.put_note("frames.payload_kinds", '{"position": 3}')
    await store.put_note("other", "ünïcode <b>text</b>")
    await store.put_note("frames.payload_kinds", '{"position": 7}')
    other = backend.new_store()  # another process's view of the same store
    await other.open()
    try:
        assert await other.get_note("frames.payload_kinds") == '{"position": 7}'
        assert await other.get_note("other") == "ünïcode <b>text</b>"
        assert await other.get_note("missing") is None
    finally:
        if other is not store:
            await other.close()
