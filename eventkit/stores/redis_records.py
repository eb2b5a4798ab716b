"""What the Redis store holds, on the Python side: stream entries, delivery records, leases,
dead letters.

redis_lua/lib.lua writes them (FIELDS with append.lua, encode_record, acked_text, claim.lua's
lease, encode_dead_letter); this module is the one Python reader of each, gives append its
arguments in the entry's field order, and maps positions to stream entry ids and back.
"""

from __future__ import annotations

import json
from collections.abc import Container, Sequence
from operator import attrgetter
from typing import Any, NamedTuple

from eventkit.records import stored_event_of
from eventkit.stores.base import DeadLetter, DeliveryRecord, DeliveryStatus, NewEvent, StoredEvent

#: position = ms << SEQ_BITS | seq of the entry id "ms-seq": a bijection while seq < 2**20 (a
#: million entries in one millisecond), and below 2**63 until the year 2248
SEQ_BITS = 20

#: a stream entry's field names, in the order append writes them (lib.lua FIELDS); entries
#: written before correlation existed, and those of events with neither id, lack the last two
#: (read as None: codec takes the event_id)
ENTRY_FIELDS = ("event_id", "event_type", "version", "source", "timestamp_ms", "data",
                "correlation_id", "causation_id")  # fmt: skip
_ENTRY_NAMES = list(ENTRY_FIELDS)  # a script replies with a list: compared as one
#: the entry of an event with neither correlation nor causation (most): append leaves both out
_FIRST_NAMES = _ENTRY_NAMES[:6]
_entry_values = attrgetter(*ENTRY_FIELDS)


def to_position(entry_id: str) -> int:
    ms, _, seq = entry_id.partition("-")
    return (int(ms) << SEQ_BITS) | int(seq)


def to_entry_id(position: int) -> str:
    return f"{position >> SEQ_BITS}-{position & ((1 << SEQ_BITS) - 1)}"


def entry_values(events: Sequence[NewEvent]) -> list[str | int]:
    """The append script's arguments: a digit per event saying how many of its values follow (6,
    or 8 when it has a correlation or causation id; a missing one is ""), then the values in
    ENTRY_FIELDS order. Leaving the two out when unset saves redis-py two argument encodings
    per event, a fifth of publish_many's client time (benchmarks/bench_core.py)."""
    sizes: list[str] = []
    values: list[str | int] = [""]
    for event in events:
        *envelope, correlation_id, causation_id = _entry_values(event)
        values += envelope
        if correlation_id is None and causation_id is None:
            sizes.append("6")
        else:
            sizes.append("8")
            values += (correlation_id or "", causation_id or "")
    values[0] = "".join(sizes)
    return values


def stored(entry_id: str, fields: Sequence[str] | dict[str, str]) -> StoredEvent:
    """A stream entry (a script's flat [name, value, ...] list, or XRANGE's dict) as stored.

    Never fails: an entry another program wrote may lack fields or hold text where a number
    belongs; such values are kept as they are (None when missing) and codec.decode refuses the
    event with a SerializationError, so it goes to the DLQ instead of failing every claim.
    """
    ms, _, seq = entry_id.partition("-")
    position = (int(ms) << SEQ_BITS) | int(seq)
    names = fields[::2] if isinstance(fields, list) else None
    if isinstance(fields, list) and (names == _ENTRY_NAMES or names == _FIRST_NAMES):
        # as append wrote it (every delivery passes here): read by position, in ENTRY_FIELDS order
        event_id, event_type, version, source, timestamp_ms, data, *story = fields[1::2]
        correlation, cause = story or ("", "")
        try:
            return stored_event_of((
                position, event_id, event_type, int(version), source, int(timestamp_ms), data,
                int(ms), correlation or None, cause or None,
            ))  # fmt: skip
        except ValueError:
            pass  # a number field that is not one: kept as text below
    f = fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2], strict=False))
    values: Any = (
        position, f.get("event_id") or entry_id, f.get("event_type"), _number(f.get("version")),
        f.get("source"), _number(f.get("timestamp_ms")), f.get("data"), int(ms),
        f.get("correlation_id") or None, f.get("causation_id") or None,
    )  # fmt: skip
    return stored_event_of(values)


def _number(text: str | None) -> int | str | None:
    """An integer field as int, or as it was stored when it is not one (codec says why)."""
    try:
        return int(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text


class RawRecord(NamedTuple):
    """A delivery record with every key lib.lua's encode_record writes, in its order."""

    status: str
    #: the lease's token while in flight (and after extend_lease); "" once settled
    token: str
    acked_ms: int | None
    consumer: str
    attempts: int
    first_ms: int
    #: None in a record replay made for an event whose record a trim had removed
    lease_ms: int | None
    event_id: str
    event_type: str
    last_error: str | None
    #: the entry's fields ([name, value, ...]) once a trim removed it from the stream
    copy: list[str] | None = None
    #: times replayed from the DLQ (written only once it was replayed)
    replays: int = 0


#: a compact record begins so (lib.lua acked_text): "ack <first_ms> <acked_ms> <lease_ms> <consumer>"
ACKED = "ack "


def read_record(text: str, event_id: str = "", event_type: str = "") -> RawRecord:
    """A delivery record's text, every key (a key the scripts do not write is a TypeError). The
    compact record of a first delivery acked under its lease holds neither the event's id nor
    its type (the stream entry does): the caller passes them."""
    if text.startswith(ACKED):
        first_ms, acked_ms, lease_ms, consumer = text[len(ACKED) :].split(" ", 3)
        return RawRecord("acked", "", int(acked_ms), consumer, 1, int(first_ms), int(lease_ms),
                         event_id, event_type, None)  # fmt: skip
    return RawRecord(**json.loads(text))


def leased_records(leases: dict[str, str], records: Container[str]) -> dict[str, RawRecord]:
    """The first deliveries in flight under their claims' leases (a lease's ids without a record
    of their own; see lib.lua), by entry id, without the event's id and type (the entry has them)."""
    found: dict[str, RawRecord] = {}
    for token, text in leases.items():
        if token.startswith(("ids:", "left:")):
            continue
        first_ms, lease_ms, consumer = text.split(" ", 2)
        for entry_id in leases.get("ids:" + token, "").split():
            if entry_id not in records:
                found[entry_id] = RawRecord("in_flight", token, None, consumer, 1, int(first_ms),
                                            int(lease_ms), "", "", None)  # fmt: skip
    return found


def needs_entry(text: str) -> bool:
    """Whether a record's text leaves the event's id and type to the stream entry."""
    return text.startswith(ACKED)


def delivery_record(group: str, entry_id: str, r: RawRecord) -> DeliveryRecord:
    return DeliveryRecord(
        to_position(entry_id), r.event_id, r.event_type, group, r.consumer,
        DeliveryStatus(r.status), int(r.attempts), int(entry_id.partition("-")[0]),
        int(r.first_ms), None if r.acked_ms is None else int(r.acked_ms), r.last_error,
    )  # fmt: skip


def dead_letter(group: str, text: str) -> DeadLetter:
    """A dead letter's JSON text (lib.lua encode_dead_letter): the event's copy and the failure."""
    d = json.loads(text)
    return DeadLetter(
        stored(d["id"], d["fields"]), group, d["consumer"], int(d["attempts"]),
        int(d["failed_ms"]), d["error"], d["traceback"], int(d.get("replays", 0)),
    )  # fmt: skip
