"""The SQLite store's schema (numbered steps under PRAGMA user_version) and its SQL, in one place
so the store module reads as operations. Table and column names here are the file format."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

from eventkit.stores.base import WILDCARD, Claim, check_limit
from eventkit.stores.lookup import PayloadValue, check_value, field_parts

EVENTS = "events"
GROUPS = "consumer_groups"
GROUP_TYPES = "group_types"
CONSUMERS = "consumers"
DELIVERIES = "deliveries"
DEAD_LETTERS = "dead_letters"
#: copies of trimmed events that a DLQ replay made deliverable again, per group
REVIVED = "revived_events"
META = "meta"
#: stored events per type at positions up to META's 'counted_to' (schema step 6), so totals and
#: lags are sums over types and groups, not counts over the log
TYPE_COUNTS = "type_counts"
#: small texts kept beside the log for readers (EventStore.put_note), from schema step 7
NOTES = "notes"

EVENT_COLUMNS = """position, event_id, event_type, version, source, timestamp_ms, data,
    published_ms, correlation_id, causation_id"""
#: the same from a store older than schema step 5 (no correlation yet: codec reads the event's id)
EVENT_COLUMNS_BEFORE_CORRELATION = EVENT_COLUMNS.replace(
    "correlation_id, causation_id", "NULL, NULL"
)
#: a copy of an event (DLQ, REVIVED), the first columns of its table
EVENT_COPY = """position INTEGER NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
    version INTEGER NOT NULL, source TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,
    data TEXT NOT NULL, published_ms INTEGER NOT NULL"""

SEQUENCE_VALUE = f"COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{EVENTS}'), 0)"
#: g's passed events counted from the log (once, at schema step 6): O(events)
PASSED_BY_SCAN = f"""CASE WHEN EXISTS (SELECT 1 FROM {GROUP_TYPES} WHERE group_name = g.name
    AND event_type = '*') THEN (SELECT COUNT(*) FROM {EVENTS} WHERE position <= g.cursor)
  ELSE (SELECT COUNT(*) FROM {GROUP_TYPES} t JOIN {EVENTS} e ON e.event_type = t.event_type
    AND e.position <= g.cursor WHERE t.group_name = g.name) END"""

#: numbered schema steps, applied in order under PRAGMA user_version (never edit a released one)
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        f"""CREATE TABLE {EVENTS} (position INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, version INTEGER NOT NULL,
            source TEXT NOT NULL, timestamp_ms INTEGER NOT NULL, data TEXT NOT NULL,
            published_ms INTEGER NOT NULL)""",
        f"CREATE INDEX events_by_type ON {EVENTS} (event_type, position)",
        f"CREATE INDEX events_by_time ON {EVENTS} (timestamp_ms)",
        # cursor: the last position the group has scanned
        f"""CREATE TABLE {GROUPS} (name TEXT PRIMARY KEY, cursor INTEGER NOT NULL,
            delivered INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0,
            retried INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID""",
        f"""CREATE TABLE {GROUP_TYPES} (group_name TEXT NOT NULL, event_type TEXT NOT NULL,
            PRIMARY KEY (group_name, event_type)) WITHOUT ROWID""",
        f"""CREATE TABLE {CONSUMERS} (group_name TEXT NOT NULL, consumer TEXT NOT NULL,
            PRIMARY KEY (group_name, consumer)) WITHOUT ROWID""",
        # deadline_ms: the lease deadline (in_flight) or due time (retrying); NULL once acked or
        # dead, so the partial index holds exactly the unsettled work and claims stay O(batch)
        f"""CREATE TABLE {DELIVERIES} (group_name TEXT NOT NULL, position INTEGER NOT NULL,
            event_id TEXT NOT NULL, event_type TEXT NOT NULL, published_ms INTEGER NOT NULL,
            consumer TEXT NOT NULL, attempts INTEGER NOT NULL, status TEXT NOT NULL,
            first_delivered_ms INTEGER NOT NULL, acked_ms INTEGER, last_error TEXT,
            deadline_ms INTEGER, token TEXT, PRIMARY KEY (group_name, position)) WITHOUT ROWID""",
        f"""CREATE INDEX deliveries_unsettled ON {DELIVERIES} (group_name, deadline_ms)
            WHERE deadline_ms IS NOT NULL""",
        # ack is one statement (one round trip), so its counter follows by trigger
        f"""CREATE TRIGGER deliveries_acked AFTER UPDATE OF status ON {DELIVERIES}
            WHEN NEW.status = 'acked' AND OLD.status <> 'acked' BEGIN
            UPDATE {GROUPS} SET acked = acked + 1 WHERE name = NEW.group_name; END""",
        # a full copy of the event, so trimming the log never touches the DLQ
        f"""CREATE TABLE {DEAD_LETTERS} ({EVENT_COPY}, group_name TEXT NOT NULL,
            consumer TEXT NOT NULL, attempts INTEGER NOT NULL, failed_ms INTEGER NOT NULL,
            last_error TEXT NOT NULL, traceback TEXT NOT NULL, PRIMARY KEY (group_name, event_id))""",
        f"""CREATE TABLE {REVIVED} ({EVENT_COPY}, group_name TEXT NOT NULL,
            PRIMARY KEY (group_name, position)) WITHOUT ROWID""",
        f"CREATE TABLE {META} (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    ]),
    # a claim of unread events is one INSERT ... SELECT: its group's cursor and counter follow
    # by trigger, in the same statement, so no transaction spans several thread round trips
    (2, [
        f"""CREATE TRIGGER deliveries_leased AFTER INSERT ON {DELIVERIES}
            WHEN NEW.status = 'in_flight' BEGIN
            UPDATE {GROUPS} SET cursor = MAX(cursor, NEW.position), delivered = delivered + 1
            WHERE name = NEW.group_name; END""",
    ]),
    # members live until expires_ms, renewed by their heartbeat (NULL: an old row, not counted)
    (3, [f"ALTER TABLE {CONSUMERS} ADD COLUMN expires_ms INTEGER"]),
    # how many times an event was replayed from a group's DLQ, kept while it is redelivered
    (4, [
        f"ALTER TABLE {DELIVERIES} ADD COLUMN replays INTEGER NOT NULL DEFAULT 0",
        f"ALTER TABLE {DEAD_LETTERS} ADD COLUMN replays INTEGER NOT NULL DEFAULT 0",
    ]),
    # correlation and causation in the envelope (and in the copies of events); NULL in the rows
    # of older steps and in a story's first event, read as "its own story" (correlation_of);
    # stories found by index: a partial one, so publishing first events adds no entry to it
    (5, [
        *(f"ALTER TABLE {table} ADD COLUMN {column} TEXT"
          for table in (EVENTS, DEAD_LETTERS, REVIVED) for column in ("correlation_id", "causation_id")),
        f"""CREATE INDEX events_by_correlation ON {EVENTS} (correlation_id)
            WHERE correlation_id IS NOT NULL""",
    ]),
    # counts for stats and lag that cost O(types + groups), not O(events): stored events per type
    # up to META 'counted_to' (appends move it once per batch, trims take their removals off),
    # and per group the stored events of its filter at or before its cursor (`passed`, moved by
    # the claim trigger as the cursor moves); computed once here from the log
    (6, [
        f"""CREATE TABLE {TYPE_COUNTS} (event_type TEXT PRIMARY KEY, stored INTEGER NOT NULL)
            WITHOUT ROWID""",
        f"INSERT INTO {TYPE_COUNTS} SELECT event_type, COUNT(*) FROM {EVENTS} GROUP BY event_type",
        f"INSERT OR REPLACE INTO {META} VALUES ('counted_to', {SEQUENCE_VALUE})",
        f"ALTER TABLE {GROUPS} ADD COLUMN passed INTEGER NOT NULL DEFAULT 0",
        f"UPDATE {GROUPS} AS g SET passed = {PASSED_BY_SCAN}",
        "DROP TRIGGER deliveries_leased",
        f"""CREATE TRIGGER deliveries_leased AFTER INSERT ON {DELIVERIES}
            WHEN NEW.status = 'in_flight' BEGIN
            UPDATE {GROUPS} SET cursor = MAX(cursor, NEW.position), delivered = delivered + 1,
            passed = passed + (NEW.position > cursor) WHERE name = NEW.group_name; END""",
    ]),
    (7, [f"CREATE TABLE {NOTES} (name TEXT PRIMARY KEY, text TEXT NOT NULL) WITHOUT ROWID"]),
]  # fmt: skip
SCHEMA_VERSION = MIGRATIONS[-1][0]

# -- SQL shared by several operations; g is a row of GROUPS ------------------------------------
#: an event after g's cursor is in g's filter: an index seek per type, never a scan
UNREAD = f"""((EXISTS (SELECT 1 FROM {GROUP_TYPES} WHERE group_name = g.name AND event_type = '*')
    AND EXISTS (SELECT 1 FROM {EVENTS} WHERE position > g.cursor))
  OR EXISTS (SELECT 1 FROM {GROUP_TYPES} t WHERE t.group_name = g.name AND EXISTS (
    SELECT 1 FROM {EVENTS} e WHERE e.event_type = t.event_type AND e.position > g.cursor)))"""
LAG = f"""CASE WHEN EXISTS (SELECT 1 FROM {GROUP_TYPES} WHERE group_name = g.name AND event_type = '*')
  THEN (SELECT COUNT(*) FROM {EVENTS} WHERE position > g.cursor)
  ELSE (SELECT COUNT(*) FROM {GROUP_TYPES} t JOIN {EVENTS} e ON e.event_type = t.event_type
    AND e.position > g.cursor WHERE t.group_name = g.name) END"""
COUNTED_TO = f"(SELECT value FROM {META} WHERE key = 'counted_to')"
#: stored events: TYPE_COUNTS, plus the few appended after 'counted_to' (a range of the rowid)
TOTAL = f"""((SELECT COALESCE(SUM(stored), 0) FROM {TYPE_COUNTS})
  + (SELECT COUNT(*) FROM {EVENTS} NOT INDEXED WHERE position > {COUNTED_TO}))"""


def matching_sql(group: str) -> str:
    """Stored events of the group's filter (`group`: an SQL expression of its name), from the
    counts: O(types in the filter), plus an index seek per type for the uncounted tail."""
    return f"""(CASE WHEN EXISTS (SELECT 1 FROM {GROUP_TYPES} WHERE group_name = {group}
    AND event_type = '*') THEN {TOTAL}
  ELSE (SELECT COALESCE(SUM(c.stored), 0) FROM {GROUP_TYPES} t JOIN {TYPE_COUNTS} c
      ON c.event_type = t.event_type WHERE t.group_name = {group})
    + (SELECT COUNT(*) FROM {GROUP_TYPES} t JOIN {EVENTS} e ON e.event_type = t.event_type
      AND e.position > {COUNTED_TO} WHERE t.group_name = {group}) END)"""


#: unread events of g from the counts (schema step 6): its filter's stored events less those passed
LAG_COUNTED = f"({matching_sql('g.name')} - g.passed)"
PENDING = (
    f"(SELECT COUNT(*) FROM {DELIVERIES} WHERE group_name = g.name AND deadline_ms IS NOT NULL)"
)
#: the group's filter as JSON text, compared to the one a claim planned with
FILTER = f"(SELECT json_group_array(event_type) FROM {GROUP_TYPES} WHERE group_name = :group)"
#: the claim still holds its lease: (group, position, token, now)
HELD = "group_name = ? AND position = ? AND token = ? AND status = 'in_flight' AND deadline_ms >= ?"
#: the same for each [group, position, token] of a JSON list in :claims
HELD_ANY = """FROM (SELECT value ->> 0 AS g, value ->> 1 AS p, value ->> 2 AS t FROM json_each(:claims))
  WHERE group_name = g AND position = p AND token = t AND status = 'in_flight' AND deadline_ms >= :now"""
IN_JSON = "IN (SELECT value FROM json_each(?))"

PROBE = f"""SELECT {FILTER}, EXISTS (SELECT 1 FROM {DELIVERIES} WHERE group_name = :group
  AND deadline_ms <= :now), {UNREAD}, (SELECT MAX(position) FROM {EVENTS}), g.cursor
  FROM {GROUPS} g WHERE g.name = :group"""
DUE = f"""SELECT d.position, d.event_id, d.event_type, COALESCE(e.version, r.version),
    COALESCE(e.source, r.source), COALESCE(e.timestamp_ms, r.timestamp_ms),
    COALESCE(e.data, r.data), d.published_ms, IIF(e.position IS NULL, r.correlation_id,
    e.correlation_id), IIF(e.position IS NULL, r.causation_id, e.causation_id),
    d.attempts, d.status, d.consumer, d.last_error
  FROM {DELIVERIES} d INDEXED BY deliveries_unsettled  -- the PK would walk every delivery
  LEFT JOIN {EVENTS} e ON e.position = d.position
  LEFT JOIN {REVIVED} r ON r.group_name = d.group_name AND r.position = d.position
  WHERE d.group_name = ? AND d.deadline_ms <= ? AND (d.deadline_ms < ? OR d.status = 'retrying')
  ORDER BY d.position LIMIT ?"""
LEASE_DUE = f"""UPDATE {DELIVERIES} SET attempts = attempts + 1, consumer = ?, status = 'in_flight',
  deadline_ms = ?, token = ?, last_error = ? WHERE group_name = ? AND position = ?"""
COUNT_DUE = f"""UPDATE {GROUPS} SET delivered = delivered + :leased, retried = retried + :retried
  WHERE name = :group"""
#: leases the first unread events in one statement (atomic across processes without a
#: transaction); the deliveries_leased trigger moves the cursor. Tokens: "<random>-<position>"
LEASE_UNREAD = f"""INSERT INTO {DELIVERIES} (group_name, position, event_id, event_type,
  published_ms, consumer, attempts, status, first_delivered_ms, deadline_ms, token)
  SELECT :group, position, event_id, event_type, published_ms, :consumer, 1, 'in_flight', :now,
  :deadline, :prefix || '-' || position FROM ({{unread}}) RETURNING position"""
LEASED_EVENTS = f"""SELECT {EVENT_COLUMNS} FROM {EVENTS}
  WHERE position IN (SELECT value FROM json_each(?)) ORDER BY position"""
#: after a short batch leased every unread event up to :newest (the last position the probe saw,
#: so nothing published since is skipped): later scans start there, unless the filter changed
#: or the cursor went back below :seen (where this claim read from) by a group reset meanwhile
#: the events of its filter it skips count as passed (none, unless a claim missed some: exact anyway)
SKIP_TO = f"""UPDATE {GROUPS} SET cursor = MAX(cursor, :newest), passed = passed + (CASE
    WHEN EXISTS (SELECT 1 FROM {GROUP_TYPES} WHERE group_name = :group AND event_type = '*')
    THEN (SELECT COUNT(*) FROM {EVENTS} WHERE position > {GROUPS}.cursor AND position <= :newest)
    ELSE (SELECT COUNT(*) FROM {GROUP_TYPES} t JOIN {EVENTS} e ON e.event_type = t.event_type
      AND e.position > {GROUPS}.cursor AND e.position <= :newest WHERE t.group_name = :group) END)
  WHERE name = :group AND {FILTER} = :types AND cursor >= :seen"""
INSERT_EVENT = f"""INSERT INTO {EVENTS} (event_id, event_type, version, source, timestamp_ms, data,
  published_ms, correlation_id, causation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
  ON CONFLICT (event_id) DO NOTHING"""
#: the position of an event_id stored before (a publish tried again keeps its first position)
POSITION_OF = f"SELECT position FROM {EVENTS} WHERE event_id = ?"
#: the same when neither correlation_id nor causation_id is set (most publishes): two bound
#: parameters fewer per row, measurably cheaper for a batch (benchmarks/bench_core.py)
INSERT_EVENT_NARROW = f"""INSERT INTO {EVENTS} (event_id, event_type, version, source, timestamp_ms,
  data, published_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"""
SEQUENCE = f"SELECT {SEQUENCE_VALUE}"
#: bring TYPE_COUNTS up to the last position, in the appending transaction: one range scan of the
#: rows after 'counted_to' (this batch, and any single appends before it) per batch, not per row
ADVANCE_COUNTS = [
    f"""INSERT INTO {TYPE_COUNTS} SELECT event_type, COUNT(*) FROM {EVENTS} NOT INDEXED
        WHERE position > (SELECT value FROM {META} WHERE key = 'counted_to') GROUP BY event_type
        ON CONFLICT DO UPDATE SET stored = stored + excluded.stored""",
    f"UPDATE {META} SET value = {SEQUENCE_VALUE} WHERE key = 'counted_to'",
]
#: an old-enough event some group has not acked: unsettled anywhere, or unread by a matching group
PROTECTED = f"""(e.position IN (SELECT position FROM {DELIVERIES} WHERE deadline_ms IS NOT NULL)
  OR EXISTS (SELECT 1 FROM {GROUPS} g JOIN {GROUP_TYPES} t ON t.group_name = g.name
    WHERE e.position > g.cursor AND t.event_type IN ('*', e.event_type)))"""
DEAD_LETTER_COLUMNS = (
    f"{EVENT_COLUMNS}, group_name, consumer, attempts, failed_ms, last_error, traceback, replays"
)
#: the same columns from a store older than schema step 5 (no correlation yet), and step 4 (no
#: replay count yet: 0)
DEAD_LETTERS_BEFORE_CORRELATION = DEAD_LETTER_COLUMNS.replace(
    "correlation_id, causation_id", "NULL, NULL"
)
DEAD_LETTERS_BEFORE_REPLAYS = DEAD_LETTERS_BEFORE_CORRELATION.replace(", replays", ", 0")


@functools.cache
def lease_unread_sql(type_count: int) -> str:
    return LEASE_UNREAD.format(unread=unread_sql(type_count))


@functools.cache
def unread_sql(type_count: int) -> str:
    """Unread events in publish order (nothing if the filter changed since :types was read); with
    types, a LIMIT-ed index range scan per type rather than a sort of the whole backlog."""
    after = f"position > (SELECT cursor FROM {GROUPS} WHERE name = :group) AND {FILTER} = :types"
    arms = [
        f"SELECT {EVENT_COLUMNS} FROM {EVENTS} WHERE {of_type} {after} ORDER BY position LIMIT :n"
        for of_type in [f"event_type = :t{i} AND" for i in range(type_count)] or [""]  # "": all
    ]
    if len(arms) == 1:
        return arms[0]
    return (
        " UNION ALL ".join(f"SELECT * FROM ({arm})" for arm in arms) + " ORDER BY position LIMIT :n"
    )


# -- statements of the rarer operations ---------------------------------------------------

#: a new group's cursor: just before the first event (publish order) stamped at or after ?;
#: with NULL ("latest") none is found: after the last event
START_CURSOR = f"""SELECT COALESCE((SELECT MIN(position) FROM {EVENTS} WHERE timestamp_ms >= ?) - 1,
                   (SELECT MAX(position) FROM {EVENTS}), 0)"""
#: a replayed dead letter: due at once with attempts reset, for its group only
REDELIVER = f"""INSERT INTO {DELIVERIES} (group_name, position, event_id, event_type,
    published_ms, consumer, attempts, status, first_delivered_ms, deadline_ms, replays)
    VALUES (?, ?, ?, ?, ?, ?, 0, 'retrying', ?, 0, ?) ON CONFLICT DO UPDATE
    SET attempts = 0, status = 'retrying', deadline_ms = 0, token = NULL, replays = excluded.replays"""
#: a replayed dead letter trimmed from the log meanwhile: the DLQ copy becomes its group's copy
REVIVE = f"""INSERT OR REPLACE INTO {REVIVED} ({EVENT_COLUMNS}, group_name)
    SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM {EVENTS} WHERE position = ?)"""
#: the events of one story: those carrying its id, and its first event (which carries none)
CORRELATED = f"""SELECT {{columns}} FROM {EVENTS} WHERE correlation_id = :id UNION ALL
    SELECT {{columns}} FROM {EVENTS} WHERE event_id = :id AND correlation_id IS NULL
    ORDER BY position"""
#: a group's deliveries in flight, those of them leased now (the lease not expired), and those
#: awaiting a retry (the partial index holds exactly these)
UNSETTLED_COUNTS = f"""SELECT COUNT(*) FILTER (WHERE status = 'in_flight'),
    COUNT(*) FILTER (WHERE status = 'in_flight' AND deadline_ms >= :now),
    COUNT(*) FILTER (WHERE status = 'retrying')
    FROM {DELIVERIES} WHERE group_name = :group AND deadline_ms IS NOT NULL"""
#: where a reset group reads on: after the last event before the first one stamped at or after
#: :at (NULL, "latest": after the last event); 0 when no event is before it
RESET_POSITION = f"""SELECT COALESCE((SELECT MAX(position) FROM {EVENTS} WHERE position <
    COALESCE((SELECT position FROM {EVENTS} WHERE timestamp_ms >= :at ORDER BY position LIMIT 1),
    {1 << 62})), 0)"""
#: events of :group's filter after :cursor (LAG at a cursor the group may not have yet)
UNREAD_AFTER = f"""SELECT CASE WHEN EXISTS (SELECT 1 FROM {GROUP_TYPES}
    WHERE group_name = :group AND event_type = '*')
  THEN (SELECT COUNT(*) FROM {EVENTS} WHERE position > :cursor)
  ELSE (SELECT COUNT(*) FROM {GROUP_TYPES} t JOIN {EVENTS} e ON e.event_type = t.event_type
    AND e.position > :cursor WHERE t.group_name = :group) END"""
#: a reset drops every unsettled delivery (ending its lease) and the records after the new cursor
RESET_GROUP = [
    f"""DELETE FROM {DELIVERIES} WHERE group_name = :group
        AND (deadline_ms IS NOT NULL OR position > :cursor)""",
    f"UPDATE {GROUPS} SET cursor = :cursor, passed = :passed WHERE name = :group",
]
#: everything of one group; the last statement says whether there was one
DELETE_GROUP = [
    *(f"DELETE FROM {table} WHERE group_name = :group"
      for table in (GROUP_TYPES, CONSUMERS, DELIVERIES, DEAD_LETTERS, REVIVED)),
    f"DELETE FROM {GROUPS} WHERE name = :group RETURNING 1",
]  # fmt: skip
#: a revived copy is needed only while its delivery is unsettled
FORGET_SETTLED_REVIVED = f"""DELETE FROM {REVIVED} WHERE NOT EXISTS (SELECT 1 FROM {DELIVERIES} d
    WHERE d.group_name = {REVIVED}.group_name AND d.position = {REVIVED}.position
    AND d.deadline_ms IS NOT NULL)"""
DELIVERY_COLUMNS = """position, event_id, event_type, group_name, consumer, status, attempts,
    published_ms, first_delivered_ms, acked_ms, last_error"""
_GROUP_STATS = f"""SELECT g.name, {{lag}}, {{pending}},
    (SELECT COUNT(*) FROM {DEAD_LETTERS} WHERE group_name = g.name),
    g.delivered, g.acked, g.retried,
    (SELECT COUNT(*) FROM {CONSUMERS} WHERE group_name = g.name AND {{live}})
    FROM {GROUPS} g ORDER BY g.name"""
#: lag, pending, dlq, delivered, acked, retried and live consumers of each group, by name
GROUP_STATS = _GROUP_STATS.format(lag=LAG_COUNTED, pending=PENDING, live="expires_ms > :now")
#: the same on a (read-only) store older than schema step 6: lag counted over the log, O(lag)
GROUP_STATS_BEFORE_COUNTS = _GROUP_STATS.format(lag=LAG, pending=PENDING, live="expires_ms > :now")
#: the same on a store older than schema step 3, whose consumers carry no expiry
GROUP_STATS_BEFORE_EXPIRY = _GROUP_STATS.format(lag=LAG, pending=PENDING, live="1")
_STORE_TOTALS = f"""SELECT {{total}},
    COALESCE((SELECT value FROM {META} WHERE key = 'kept_unacked'), 0)"""
STORE_TOTALS = _STORE_TOTALS.format(total=TOTAL)
STORE_TOTALS_BEFORE_COUNTS = _STORE_TOTALS.format(total=f"(SELECT COUNT(*) FROM {EVENTS})")
#: stored events of :group's filter (the counts' sum, for a group's passed events at a cursor)
MATCHING = f"SELECT {matching_sql(':group')}"
#: events removed by a trim (positions in trim_doomed), per type
DOOMED_BY_TYPE = f"""SELECT e.event_type, COUNT(*) FROM trim_doomed d
    JOIN {EVENTS} e ON e.position = d.position GROUP BY e.event_type"""
UNCOUNT_TRIMMED = f"UPDATE {TYPE_COUNTS} SET stored = stored - ? WHERE event_type = ?"
#: each group's trimmed events of its filter (:removed, JSON [[type, n], ...]) were all at or
#: before its cursor (trim keeps what a matching group has not read): no longer passed
UNPASS_TRIMMED = f"""UPDATE {GROUPS} SET passed = passed - (SELECT COALESCE(SUM(value ->> 1), 0)
    FROM json_each(:removed) WHERE EXISTS (SELECT 1 FROM {GROUP_TYPES} t
      WHERE t.group_name = {GROUPS}.name AND t.event_type IN ('*', value ->> 0)))"""


# -- building statements ------------------------------------------------------------------


def held_params(claim: Claim, now: int) -> tuple[str, int, str, int]:
    return (claim.consumer_group, claim.event.position, claim.token, now)


def where(*terms: tuple[str, Any], join: str = " AND ") -> tuple[str, list[Any]]:
    """The condition of the terms whose value is not None, and their parameters."""
    used = [(clause, value) for clause, value in terms if value is not None]
    return join.join(clause for clause, _ in used) or "1", [value for _, value in used]


def limited(sql: str, params: list[Any], limit: int | None) -> tuple[str, list[Any]]:
    """In position order, with LIMIT only for a checked limit: never a negative one (no limit)."""
    check_limit(limit)
    if limit is None:
        return f"{sql} ORDER BY position", params
    return f"{sql} ORDER BY position LIMIT ?", [*params, limit]


def types_json(event_types: Sequence[str] | None) -> str | None:
    """A type filter as JSON, or None when it matches every type (as base.matches reads it)."""
    return None if not event_types or WILDCARD in event_types else json.dumps(list(event_types))


def payload_expression(field_path: str) -> str:
    """The JSON1 expression of a payload field: find() and index_payload_field() write the same
    text, so SQLite uses the index (field_parts admits identifiers only: safe to write in SQL)."""
    return f"json_extract(data, '$.{'.'.join(field_parts(field_path))}')"


#: JSON1 types a value may match: json_extract alone reads true as 1 and an object as its text
_JSON_TYPES = {str: "('text')", int: "('integer', 'real')", float: "('integer', 'real')",
               bool: "('true', 'false')"}  # fmt: skip


def payload_test(field_path: str, value: PayloadValue) -> tuple[str, list[Any]]:
    """The condition of find(): the field equals `value` as JSON sees it (lookup.payload_matches)."""
    value = check_value(value)
    extract = payload_expression(field_path)
    json_type = extract.replace("json_extract", "json_type", 1)
    if value is None:  # a JSON null, not a missing field (json_extract gives NULL for both)
        return f"{json_type} = 'null'", []
    return f"{extract} = ? AND {json_type} IN {_JSON_TYPES[type(value)]}", [value]


def dlq_where(
    group: str | None, event_ids: Sequence[str] | None, event_types: Sequence[str] | None = None
) -> tuple[str, list[Any]]:
    ids = None if event_ids is None else json.dumps(list(event_ids))
    return where(("group_name = ?", group), (f"event_id {IN_JSON}", ids),
                  (f"event_type {IN_JSON}", types_json(event_types)))  # fmt: skip


def time_window(start_ms: int | None, end_ms: int | None) -> tuple[str, list[Any]]:
    """Positions bounding the events stamped in [start_ms, end_ms), found on events_by_time:
    the first page of a time filter then reads that range of the log, not the log from its
    start (ORDER BY position would otherwise scan from position 1). Exact for any timestamps:
    every event in the window lies between the window's least and greatest position."""
    stamped, params = where(("timestamp_ms >= ?", start_ms), ("timestamp_ms < ?", end_ms))
    bounds = f"""position BETWEEN (SELECT MIN(position) FROM {EVENTS} INDEXED BY events_by_time
        WHERE {stamped}) AND (SELECT MAX(position) FROM {EVENTS} INDEXED BY events_by_time
        WHERE {stamped})"""
    return bounds, [*params, *params]
