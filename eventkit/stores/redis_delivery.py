"""The Redis store's bookkeeping on the client side: what the scripts that write take (keys,
arguments) and what claim's reply becomes.

A claim's first deliveries share one lease (redis_lua/lib.lua): no record and no deadline per
event until it is settled, so the scripts' work per event is the stream's own (XREADGROUP, XACK)
and, at ack, one small record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventkit.stores.base import Claim, GroupStart
from eventkit.stores.redis_client import Client
from eventkit.stores.redis_keys import Keys
from eventkit.stores.redis_records import stored, to_entry_id


def claim_keys(keys: Keys, group: str) -> list[str]:
    g = keys.group(group)
    return [keys.events, g.records, g.due, g.types, g.counters, keys.meta, keys.groups,
            g.leases, g.lease_due, g.seen]  # fmt: skip


def claims_of(
    reply: Sequence[Any], group: str, consumer: str, deadline: int
) -> tuple[str, int, list[Claim]]:
    """claim.lua's reply as (last entry id, ms to the next deadline, claims): the deliveries due
    again first, then the first deliveries in publish order."""
    last_id, next_due_ms, token, due, fresh = reply
    claims = [
        Claim(stored(entry_id, fields), group, consumer, attempt, deadline, token, error)
        for entry_id, attempt, error, fields in due
    ]
    claims += [
        Claim(stored(entry_id, fields), group, consumer, 1, deadline, token, None)
        for entry_id, fields in zip(fresh[::2], fresh[1::2], strict=True)
    ]
    return last_id, next_due_ms, claims


def ack_calls(keys: Keys, claims: Sequence[Claim]) -> list[tuple[list[str], list[str]]]:
    """The ack script's calls, one per group: a claim batch shares one token, so each token goes
    once with its entry ids as one space-separated argument (redis-py packs every argument in
    Python); a claim given twice counts once."""
    ids: dict[str, dict[str, dict[str, None]]] = {}
    for claim in claims:
        by_token = ids.setdefault(claim.consumer_group, {})
        by_token.setdefault(claim.token, {})[to_entry_id(claim.event.position)] = None
    calls = []
    for group, by_token in ids.items():
        g = keys.group(group)
        args = [group]
        for token, entry_ids in by_token.items():
            args += [token, " ".join(entry_ids)]
        calls.append(([keys.events, g.records, g.due, g.counters, g.leases, g.lease_due], args))
    return calls


def settle_call(
    keys: Keys, op: str, claim: Claim, *extra: str | int
) -> tuple[list[str], list[Any]]:
    """The settle script's keys and arguments for one claim (see redis_lua/settle.lua)."""
    group = claim.consumer_group
    g = keys.group(group)
    args = [op, group, to_entry_id(claim.event.position), claim.token, *extra]
    return [keys.events, g.records, g.due, g.dlq, g.counters, g.leases, g.lease_due], args


Call = tuple[list[str], list[Any]]


def start_args(start: GroupStart) -> tuple[str, int]:
    """A group start as the scripts take it: mode ("0" earliest, "$" latest, "ts") and ms."""
    if start == "earliest" or start == "latest":
        return ("0" if start == "earliest" else "$"), 0
    return "ts", int(start)


def ensure_call(keys: Keys, group: str, event_types: Sequence[str], start: GroupStart) -> Call:
    g = keys.group(group)
    return (
        [keys.events, keys.groups, g.types, keys.counts, g.seen, keys.meta],
        [group, *start_args(start), *event_types],
    )


def reset_call(keys: Keys, group: str, to: GroupStart, force: bool, dry_run: bool) -> Call:
    g = keys.group(group)
    return (
        [
            keys.events,
            keys.groups,
            g.records,
            g.due,
            g.types,
            g.leases,
            g.lease_due,
            g.counters,
            g.seen,
            keys.counts,
        ],  # fmt: skip
        [group, *start_args(to), int(force), int(dry_run)],
    )


def trim_call(
    keys: Keys, groups: Sequence[str], before_ms: int | None, max_events: int | None
) -> Call:
    """trim.lua's keys (the namespace's, then six per group) and arguments."""
    names = [keys.events, keys.ids, keys.meta, keys.counts]
    for group in groups:
        g = keys.group(group)
        names += (g.due, g.types, g.records, g.leases, g.lease_due, g.seen)
    limits = ["" if before_ms is None else before_ms, "" if max_events is None else max_events]
    return names, [*limits, *groups]


async def discard(client: Client, dlq: str, event_ids: Sequence[str] | None) -> int:
    """Remove DLQ entries (all when `event_ids` is None); how many were there."""
    if event_ids is None:
        async with client.pipeline(transaction=True) as pipe:
            pipe.hlen(dlq)
            pipe.delete(dlq)
            count, _ = await pipe.execute()
        return int(count)
    return int(await client.hdel(dlq, *event_ids)) if event_ids else 0
