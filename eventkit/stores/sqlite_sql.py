"""The SQLite store's schema (numbered steps under PRAGMA user_version) and its SQL, in one place
so the store module reads as operations. Table and column names here are the file format."""

from __future__ import annotations

import functools

EVENTS = "events"
GROUPS = "consumer_groups"
GROUP_TYPES = "group_types"
CONSUMERS = "consumers"
DELIVERIES = "deliveries"
DEAD_LETTERS = "dead_letters"
#: copies of trimmed events that a DLQ replay made deliverable again, per group
REVIVED = "revived_events"
META = "meta"

EXPIRED_LEASE_ERROR = "lease expired: consumer {} did not settle within its lease (died or hung)"
EVENT_COLUMNS = "position, event_id, event_type, version, source, timestamp_ms, data, published_ms"
#: a copy of an event (DLQ, REVIVED), the first columns of its table
EVENT_COPY = """position INTEGER NOT NULL, event_id TEXT NOT NULL, event_type TEXT NOT NULL,
    version INTEGER NOT NULL, source TEXT NOT NULL, timestamp_ms INTEGER NOT NULL,
    data TEXT NOT NULL, published_ms INTEGER NOT NULL"""

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
  AND deadline_ms <= :now), {UNREAD}, (SELECT MAX(position) FROM {EVENTS})
  FROM {GROUPS} g WHERE g.name = :group"""
DUE = f"""SELECT d.position, d.event_id, d.event_type, COALESCE(e.version, r.version),
    COALESCE(e.source, r.source), COALESCE(e.timestamp_ms, r.timestamp_ms),
    COALESCE(e.data, r.data), d.published_ms, d.attempts, d.status, d.consumer, d.last_error
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
SKIP_TO = f"""UPDATE {GROUPS} SET cursor = MAX(cursor, :newest)
  WHERE name = :group AND {FILTER} = :types"""
INSERT_EVENT = f"""INSERT INTO {EVENTS} (event_id, event_type, version, source, timestamp_ms, data,
  published_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING"""
SEQUENCE = f"SELECT COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{EVENTS}'), 0)"
#: an old-enough event some group has not acked: unsettled anywhere, or unread by a matching group
PROTECTED = f"""(e.position IN (SELECT position FROM {DELIVERIES} WHERE deadline_ms IS NOT NULL)
  OR EXISTS (SELECT 1 FROM {GROUPS} g JOIN {GROUP_TYPES} t ON t.group_name = g.name
    WHERE e.position > g.cursor AND t.event_type IN ('*', e.event_type)))"""
DEAD_LETTER_COLUMNS = (
    f"{EVENT_COLUMNS}, group_name, consumer, attempts, failed_ms, last_error, traceback"
)


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
