"""Every key the Redis store uses, all under its namespace, with what each one holds."""

from __future__ import annotations


class Keys:
    """The namespace's keys; a group's own keys come from group()."""

    def __init__(self, ns: str) -> None:
        self.events = f"{ns}:events"  # stream: the log; fields as redis_records.ENTRY_FIELDS
        self.ids = f"{ns}:ids"  # hash event_id -> entry id (idempotent append)
        self.groups = f"{ns}:groups"  # set of group names
        self.meta = f"{ns}:meta"  # hash: leases (token counter), kept_unacked
        self._ns = ns

    def group(self, group: str) -> GroupKeys:
        return GroupKeys(f"{self._ns}:group:{group}")


class GroupKeys:
    """One consumer group's keys."""

    def __init__(self, base: str) -> None:
        self.types = f"{base}:types"  # set: the union of subscribed event types
        self.members = f"{base}:members"  # zset consumer name -> live until (ms, heartbeat)
        self.due = f"{base}:due"  # zset entry id -> lease deadline | retry due (server ms)
        self.records = f"{base}:records"  # hash entry id -> delivery record (redis_lua/lib.lua)
        self.dlq = f"{base}:dlq"  # hash event_id -> dead letter: a copy of the event + failure
        self.counters = f"{base}:counters"  # hash: delivered, acked, retried
