"""Groups, stats and retention of the SQLite store: the operations that keep its counts exact.

Schema step 6 keeps two counts so that stats cost O(types + groups), not O(events):
- TYPE_COUNTS: stored events per type at positions up to META 'counted_to'. Appends add theirs
  once per batch (sqlite_append.py); readers add the few rows after 'counted_to' by a range scan;
  a trim takes off what it removed, in its transaction.
- GROUPS.passed: per group, the stored events of its filter at or before its cursor. The claim
  trigger adds one per event the cursor moves past; SKIP_TO adds what it skips (nothing, normally);
  a trim takes off the group's removed events (all at or before its cursor: trim keeps what a
  matching group has not read); a new group, a new type in a filter and a reset set it from the
  counts and the unread events after the cursor (O(unread), 0 from 'earliest' and 'latest').
A group's lag is then its filter's stored events less its passed ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import cast

import aiosqlite

from eventkit.errors import GroupBusyError, GroupNotFoundError
from eventkit.stores.base import (
    WILDCARD,
    GroupReset,
    GroupStart,
    GroupStats,
    Stats,
    TrimResult,
    check_limit,
    now_ms,
    stats_with_store_block,
)
from eventkit.stores.sqlite_file import SQLiteFile
from eventkit.stores.sqlite_sql import (
    ADVANCE_COUNTS,
    DELIVERIES,
    DOOMED_BY_TYPE,
    EVENTS,
    FORGET_SETTLED_REVIVED,
    GROUP_STATS,
    GROUP_STATS_BEFORE_COUNTS,
    GROUP_STATS_BEFORE_EXPIRY,
    GROUP_TYPES,
    GROUPS,
    MATCHING,
    META,
    PROTECTED,
    RESET_GROUP,
    RESET_POSITION,
    START_CURSOR,
    STORE_TOTALS,
    STORE_TOTALS_BEFORE_COUNTS,
    UNCOUNT_TRIMMED,
    UNPASS_TRIMMED,
    UNREAD_AFTER,
    UNSETTLED_COUNTS,
    where,
)

logger = logging.getLogger(__name__)
#: the schema step that keeps TYPE_COUNTS and GROUPS.passed
COUNTS_STEP = 6


async def _one(db: aiosqlite.Connection, sql: str, params: object) -> int:
    [(value,)] = await db.execute_fetchall(sql, params)
    return int(value)


async def _unread_after(db: aiosqlite.Connection, group: str, cursor: int) -> tuple[int, int]:
    """(stored events of the group's filter, those of them after cursor): from the counts when
    the cursor is 0, else by an index range per type over the unread ones."""
    params = {"group": group, "cursor": cursor}
    matching = await _one(db, MATCHING, params)
    unread = matching if cursor == 0 else await _one(db, UNREAD_AFTER, params)
    return matching, unread


async def ensure_group(
    file: SQLiteFile, group: str, event_types: Sequence[str], start: GroupStart
) -> None:
    """Create the group at start if new, add types to its filter; its passed count follows."""
    types = list(event_types)
    async with file.transaction() as db:
        found = list(
            await db.execute_fetchall(f"SELECT cursor FROM {GROUPS} WHERE name = ?", (group,))
        )
        if found:
            [(cursor,)] = found
        else:
            cursor = 0
            if start != "earliest":  # just before the first event (publish order) stamped at
                # or after start; "latest" (NULL) finds none: after the last event
                at = None if start == "latest" else int(start)
                cursor = await _one(db, START_CURSOR, (at,))
            await db.execute(f"INSERT INTO {GROUPS} (name, cursor) VALUES (?, ?)", (group, cursor))
            types = types or [WILDCARD]  # an empty filter matches every type
        sql = f"INSERT OR IGNORE INTO {GROUP_TYPES} VALUES (?, ?)"
        added = (await db.executemany(sql, [(group, t) for t in types])).rowcount
        if cursor and added:  # events of the (new) filter at or before the cursor are passed
            matching, unread = await _unread_after(db, group, cursor)
            await db.execute(
                f"UPDATE {GROUPS} SET passed = ? WHERE name = ?", (matching - unread, group)
            )


async def reset_group(
    file: SQLiteFile, group: str, to: GroupStart, *, force: bool, dry_run: bool
) -> GroupReset:
    """One transaction: the checks, the counts and the move see the same state."""
    async with file.transaction() as db:
        params: dict[str, object] = {"group": group, "now": now_ms()}
        if not await db.execute_fetchall(f"SELECT 1 FROM {GROUPS} WHERE name = :group", params):
            raise GroupNotFoundError(group)
        [(in_flight, leased, retrying)] = await db.execute_fetchall(UNSETTLED_COUNTS, params)
        if leased and not force:
            raise GroupBusyError(group, leased)
        cursor = 0
        if to != "earliest":
            at = None if to == "latest" else int(to)
            cursor = await _one(db, RESET_POSITION, {"at": at})
        matching, unread = await _unread_after(db, group, cursor)
        params.update(cursor=cursor, passed=matching - unread)
        if not dry_run:
            for sql in RESET_GROUP:
                await db.execute(sql, params)
            await db.execute(FORGET_SETTLED_REVIVED)
    return GroupReset(group, cursor, unread, in_flight, retrying)


async def stats(file: SQLiteFile, backend: str) -> Stats:
    """From the counts (schema step 6); a read-only store older than that counts over the log."""
    schema = file.schema
    totals = STORE_TOTALS if schema >= COUNTS_STEP else STORE_TOTALS_BEFORE_COUNTS
    sql = GROUP_STATS if schema >= COUNTS_STEP else GROUP_STATS_BEFORE_COUNTS
    if schema < 3:  # consumers carry an expiry from schema step 3 on
        sql = GROUP_STATS_BEFORE_EXPIRY
    rows = await file.query(sql, {"now": now_ms()})
    keys = ("lag", "in_flight", "dlq", "delivered", "acked", "retried", "consumers")
    groups = {row[0]: cast(GroupStats, dict(zip(keys, row[1:], strict=True))) for row in rows}
    [(total, kept)] = await file.query(totals)
    return stats_with_store_block(backend, total, kept, groups)


async def trim(file: SQLiteFile, *, before_ms: int | None, max_events: int | None) -> TrimResult:
    check_limit(max_events)
    removed = kept = 0
    async with file.transaction() as db:
        newest = []  # the newest event beyond the max_events kept
        if max_events is not None:
            sql = f"SELECT position FROM {EVENTS} ORDER BY position DESC LIMIT 1 OFFSET ?"
            newest = [p for (p,) in await db.execute_fetchall(sql, (max_events,))]
        old, params = where(("timestamp_ms < ?", before_ms),
                             ("position <= ?", newest[0] if newest else None), join=" OR ")  # fmt: skip
        if params:
            count = await _one(db, f"SELECT COUNT(*) FROM {EVENTS} WHERE {old}", params)
            await db.execute("DELETE FROM trim_doomed")
            removed = (await db.execute(
                f"INSERT INTO trim_doomed SELECT position FROM {EVENTS} e WHERE ({old}) AND NOT {PROTECTED}",
                params)).rowcount  # fmt: skip
            kept = count - removed
            if removed:
                await _uncount(db)
            doomed = "position IN (SELECT position FROM trim_doomed)"
            for (group,) in await db.execute_fetchall(f"SELECT name FROM {GROUPS}"):
                await db.execute(
                    f"DELETE FROM {DELIVERIES} WHERE group_name = ? AND {doomed}", (group,)
                )
            await db.execute(f"DELETE FROM {EVENTS} WHERE {doomed}")
            await db.execute(FORGET_SETTLED_REVIVED)
        await db.execute(f"INSERT OR REPLACE INTO {META} VALUES ('kept_unacked', ?)", (kept,))
    if removed:
        logger.info("trimmed %d events from %s (%d kept: not yet acked)", removed, file.path, kept)
    return TrimResult(removed, kept)


async def _uncount(db: aiosqlite.Connection) -> None:
    """Take the events in trim_doomed off the counts: first the counts catch up with the log, so
    every doomed event is counted; then per type, and per group for its filter's types."""
    for sql in ADVANCE_COUNTS:
        await db.execute(sql)
    removed = [tuple(row) for row in await db.execute_fetchall(DOOMED_BY_TYPE)]
    await db.executemany(UNCOUNT_TRIMMED, [(n, event_type) for event_type, n in removed])
    await db.execute(UNPASS_TRIMMED, {"removed": json.dumps(removed)})
