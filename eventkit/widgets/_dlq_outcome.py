"""What a DLQ replay became: poll until each replayed entry was handled again (acked by the group)
or came back to the DLQ, or the wait ends; DLQPanel says the counts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from eventkit.bus import EventBus
from eventkit.records import DeadLetter, DeliveryStatus

#: delivery records read per round trip while checking what a replay became
DELIVERY_PAGE = 500


async def wait_for_outcome(
    bus: EventBus,
    group: str,
    replayed: set[str],
    before: dict[str, DeadLetter],
    began_ms: int,
    *,
    timeout: float,
    say: Callable[[str], object],
) -> tuple[set[str], set[str]]:
    """Poll until every replayed entry was acked by the group or came back to its DLQ, or the
    timeout passes: (handled ids, back ids). ``say`` gets the progress while it waits."""
    handled: set[str] = set()
    back: set[str] = set()
    if not replayed:
        return handled, back
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.02
    while True:
        open_ids = replayed - handled - back
        letters = await bus.dead_letters(group, sorted(open_ids))
        back |= {d.event_id for d in letters if came_back(d, before, began_ms)}
        handled |= await acked(bus, group, replayed - handled - back, before)
        settled = len(handled) + len(back)
        if settled >= len(replayed) or loop.time() >= deadline:
            return handled, back
        say(
            f"{len(replayed):,} replayed; waiting for group {group!r} to handle "
            f"them ({settled:,} settled so far)…"
        )
        await asyncio.sleep(min(delay, max(deadline - loop.time(), 0)))
        delay = min(delay * 2, 1.0)


async def acked(
    bus: EventBus, group: str, ids: Collection[str], before: dict[str, DeadLetter]
) -> set[str]:
    """Which of these events the group acked, reading its delivery records only over the
    positions the events hold."""
    if not ids:
        return set()
    positions = [before[i].stored.position for i in ids]
    last = max(positions)
    after: int | None = min(positions) - 1
    found: set[str] = set()
    while True:
        page = await bus.store.deliveries(group, after_position=after, limit=DELIVERY_PAGE)
        for record in page:
            if record.event_id in ids and record.status == DeliveryStatus.ACKED:
                found.add(record.event_id)
        if len(page) < DELIVERY_PAGE or page[-1].position >= last:
            return found
        after = page[-1].position


def came_back(dead: DeadLetter, before: dict[str, DeadLetter], began_ms: int) -> bool:
    """A DLQ entry seen after a replay is one that failed again (not one the replay left)."""
    old = before.get(dead.event_id)
    return old is None or dead.replays > old.replays or dead.failed_ms >= began_ms
