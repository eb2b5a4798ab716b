"""What a DLQ action became: a replay polls until each replayed entry was handled again (acked by
the group) or came back to the DLQ, or the wait ends; DLQPanel keeps it as a DLQAction and says it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from eventkit.bus import EventBus
from eventkit.clock import now_ms
from eventkit.records import DeadLetter, DeliveryStatus

#: delivery records read per round trip while checking what a replay became
DELIVERY_PAGE = 500


@dataclass(frozen=True)
class DLQAction:
    """What the last button did: tests and notebooks assert on it.

    For a replay, `handled` + `back` + `waiting` == `count`: handled again (acked), back in the
    DLQ, or neither when the wait ended (no consumer of the group running, or a slow handler).
    """

    action: str
    requested: int | None
    count: int
    remaining: int
    handled: int = 0
    back: int = 0
    waiting: int = 0


async def replay_and_wait(
    bus: EventBus,
    group: str,
    event_ids: Sequence[str] | None,
    *,
    timeout: float,
    say: Callable[[str], object],
) -> tuple[int, set[str], set[str], set[str]]:
    """Replay the entries (None: all of the group's) and wait for the outcome: (count replayed,
    ids replayed, ids handled again, ids back in the DLQ)."""
    before = {d.event_id: d for d in await bus.dead_letters(group, event_ids)}
    began_ms = now_ms()
    count = await bus.replay_dlq(group, event_ids=list(before)) if before else 0
    replayed = set(before)
    if count < len(before):  # someone else replayed or discarded some meanwhile
        stayed = await bus.dead_letters(group, list(before))
        replayed -= {d.event_id for d in stayed if not came_back(d, before, began_ms)}
    handled, back = await wait_for_outcome(
        bus, group, replayed, before, began_ms, timeout=timeout, say=say
    )
    return count, replayed, handled, back


def replay_summary(done: DLQAction, group: str, timeout: float) -> str:
    """ "3 replayed: 2 handled, 1 back in the DLQ; 1 left in the DLQ of 'g'." and why some wait."""
    left = f"{done.remaining:,} left in the DLQ of {group!r}."
    if done.count == 0:
        return f"Nothing was replayed; {left}"
    text = f"{done.count:,} replayed: {done.handled:,} handled, {done.back:,} back in the DLQ"
    if done.waiting:
        text += (
            f", {done.waiting:,} not handled within {timeout:g} s "
            f"(is a consumer of {group!r} running?)"
        )
    return f"{text}; {left}"


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
