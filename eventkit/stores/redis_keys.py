"""Every key the Redis store uses, all under its namespace, with what each one holds.

Each key begins with the namespace as a Redis Cluster hash tag, `{ns}:events`, `{ns}:group:g:due`:
Redis hashes only the text between the first `{` and the `}` after it, so every key of a namespace
lies in one slot (one node of a cluster) and each Lua script, which touches several of them, stays
one atomic step; different namespaces spread over the nodes. A namespace is the unit of sharding.

Stores written before the tag (`ns:events`, ...) are moved once, on open (LegacyLayout).
"""

from __future__ import annotations

import logging
from typing import Any

from eventkit.errors import StoreError

logger = logging.getLogger(__name__)


class Keys:
    """The namespace's keys; a group's own keys come from group()."""

    def __init__(self, ns: str, *, tagged: bool = True) -> None:
        #: what every key begins with: the hash tag `{ns}` (or the namespace, in the old layout)
        self.prefix = f"{{{ns}}}" if tagged else ns
        self.events = f"{self.prefix}:events"  # stream: the log (redis_records.ENTRY_FIELDS)
        self.ids = f"{self.prefix}:ids"  # hash event_id -> entry id (idempotent append)
        self.groups = f"{self.prefix}:groups"  # set of group names
        # hash: leases (token counter), kept_unacked, deleted:<group> (a group deleted on purpose),
        # counted (1 once `counts` and each group's `seen` are kept: lag without a scan)
        self.meta = f"{self.prefix}:meta"
        self.counts = f"{self.prefix}:counts"  # hash event_type -> entries of it in the stream
        self.notes = f"{self.prefix}:notes"  # hash name -> text kept for readers (put_note)

    def group(self, group: str) -> GroupKeys:
        return GroupKeys(f"{self.prefix}:group:{group}")

    def own(self) -> list[str]:
        """The namespace's keys that are not a group's."""
        return [self.events, self.ids, self.groups, self.meta, self.counts]

    @property
    def pattern(self) -> str:
        """A SCAN MATCH pattern for every key of the namespace (glob characters escaped)."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self.prefix)
        return escaped + ":*"


class GroupKeys:
    """One consumer group's keys."""

    def __init__(self, base: str) -> None:
        self.types = f"{base}:types"  # set: the union of subscribed event types
        self.members = f"{base}:members"  # zset consumer name -> live until (ms, heartbeat)
        # zset entry id -> lease deadline | retry due (server ms), for deliveries with a record
        self.due = f"{base}:due"
        self.records = f"{base}:records"  # hash entry id -> delivery record (redis_lua/lib.lua)
        self.dlq = f"{base}:dlq"  # hash event_id -> dead letter: a copy of the event + failure
        self.counters = f"{base}:counters"  # hash: delivered, acked, retried, leased
        # one lease per claim of first deliveries (redis_lua/lib.lua): token -> deadline, and
        # token -> "first_ms lease_ms consumer", ids:token -> "id id ...", left:token -> count
        self.lease_due = f"{base}:lease_due"
        self.leases = f"{base}:leases"
        self.seen = f"{base}:seen"  # hash event_type -> entries of it the group's cursor passed

    def all(self) -> list[str]:
        return [self.types, self.members, self.due, self.records, self.dlq, self.counters,
                self.lease_due, self.leases, self.seen]  # fmt: skip


class LegacyLayout:
    """The keys of a namespace written before the hash tag, and their new names, pairwise.

    The move (redis_lua/move_layout.lua) renames each key that exists, so the stream keeps its
    consumer groups and pending entries, the records and the DLQ their contents, then writes a
    note (a string) over the old stream, ids and groups keys, so a process still running an older
    eventkit fails loudly there (WRONGTYPE) rather than write where nobody reads. On one node only: a cluster never held the
    old layout (its scripts fail there with CROSSSLOT).
    """

    def __init__(self, ns: str) -> None:
        self.old, self.new = Keys(ns, tagged=False), Keys(ns)

    def pairs(self, groups: list[str]) -> tuple[list[str], list[str]]:
        """(old keys, new keys) of the namespace and of `groups`, in the same order."""
        old, new = self.old.own(), self.new.own()
        for group in groups:
            old += self.old.group(group).all()
            new += self.new.group(group).all()
        return old, new


async def refuse_legacy_layout(client: Any, ns: str) -> None:
    """Reading must not change anything: an old layout is refused, saying how to move it."""
    old = LegacyLayout(ns).old  # after a move these hold a note (a string)
    kinds = (await client.type(old.events), await client.type(old.groups))
    if kinds[0] == "stream" or kinds[1] == "set":
        raise StoreError(
            f"namespace {ns!r} is in the key layout of an earlier eventkit; it was left "
            "unchanged: open it once with this version's EventBus (not a read-only command) to "
            "move it to the new layout, without loss"
        )


async def move_legacy_layout(client: Any, move: Any, ns: str) -> int:
    """Move namespace `ns` from the old layout to the tagged one, once, in one script: the keys
    moved (0: nothing to move; -2: both layouts hold keys, so nothing was touched)."""
    layout = LegacyLayout(ns)
    mark = f"moved: namespace {ns!r} now lives under {layout.new.prefix}: (eventkit's cluster-"
    mark += "ready key layout); upgrade every process that uses it"
    while True:
        async with client.pipeline(transaction=False) as pipe:
            pipe.type(layout.old.events)
            pipe.type(layout.old.groups)
            stream, groups_set = await pipe.execute()
        if stream != "stream" and groups_set != "set":
            return 0
        groups = sorted(await client.smembers(layout.old.groups)) if groups_set == "set" else []
        old, new = layout.pairs(groups)
        moved = int(await move(keys=[*old, *new], args=[mark, *groups]))
        if moved == -1:  # a group was added meanwhile (an old process still runs): again
            continue
        if moved > 0:
            logger.warning(
                "namespace %r: moved %d keys to the cluster-ready layout %s:*",
                ns, moved, layout.new.prefix,
            )  # fmt: skip
        elif moved == -2:
            logger.warning(
                "namespace %r has keys in both layouts: using %s:*, leaving %s:* untouched",
                ns, layout.new.prefix, ns,
            )  # fmt: skip
        return moved


async def count_legacy(client: Any, count: Any, keys: Keys) -> int:
    """Count a namespace once for lag (redis_lua/count.lua): one pass over a stream written
    before the counts were kept; nothing to do for one kept from its start. The entries counted."""
    while True:
        if await client.hget(keys.meta, "counted"):
            return 0
        groups = sorted(await client.smembers(keys.groups))
        seen = [keys.group(group).seen for group in groups]
        done = int(await count(keys=[keys.events, keys.meta, keys.counts, keys.groups, *seen],
                               args=groups))  # fmt: skip
        if done >= 0:  # -1: a group was added meanwhile: again
            if done:
                logger.warning(
                    "%s: %d events counted once for lag (kept from now on)", keys.prefix, done
                )
            return done
