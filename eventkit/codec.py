"""The only place that knows the stored shape: event <-> JSON text, then migrate to a typed instance."""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import typing
import uuid
from collections.abc import Callable
from datetime import date, datetime
from pathlib import PurePath
from typing import Any

from eventkit import versioning
from eventkit.errors import MigrationError, SerializationError, UnsupportedVersionError
from eventkit.events import (
    BaseEvent,
    Event,
    datetime_to_ms,
    ms_to_datetime,
)
from eventkit.stores.base import NewEvent, StoredEvent

#: errors that no retry can fix: the delivery goes to the DLQ at once
DECODE_ERRORS = (SerializationError, UnsupportedVersionError, MigrationError)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


#: built once: json.dumps with these options would build a new encoder on every call
_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":"))
#: the C encoder behind it, kept too: JSONEncoder.encode makes a new one per call (a quarter of
#: publish's encoding time). Without markers it has no cycle check: a cycle hits the recursion limit
_make_c_encoder: Callable[..., Callable[[Any, int], list[str]]] | None = typing.cast(
    Any, json.encoder
).c_make_encoder
_C_ENCODER = (
    None
    if _make_c_encoder is None
    else _make_c_encoder(
        None, _default, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
)
#: the C scanner json.loads ends in, called without the two wrappers around it
_scan_once: Callable[[str, int], tuple[Any, int]] = typing.cast(
    Any, json.decoder.JSONDecoder()
).scan_once


def dumps(value: Any) -> str:
    if _C_ENCODER is None:
        return _ENCODER.encode(value)
    try:
        return "".join(_C_ENCODER(value, 0))
    except RecursionError:
        raise ValueError(
            "circular reference (or nesting deeper than the recursion limit)"
        ) from None


def json_safe(value: Any) -> Any:
    """The value as plain JSON types (datetimes as ISO text, sets as lists)."""
    return json.loads(dumps(value))


def encode(event: BaseEvent) -> NewEvent:
    """An event as the store keeps it; SerializationError names a payload that is not JSON."""
    if not isinstance(event, BaseEvent):
        raise SerializationError(
            f"can only publish BaseEvent instances, got {type(event).__name__}: "
            "subclass eventkit.BaseEvent or use create_event()"
        )
    payload = event.payload()
    try:
        data = dumps(payload)
    except (TypeError, ValueError) as e:
        raise SerializationError(
            f"{event.event_type} event {event.event_id} has a payload that is not JSON ({e}); "
            "use JSON types (str, int, float, bool, None, list, dict) or datetime"
        ) from e
    return NewEvent(
        event.event_id,
        event.event_type,
        int(event.version),
        event.source,
        datetime_to_ms(event.timestamp),
        data,
    )


def parse_payload(stored: StoredEvent) -> dict[str, Any]:
    text = stored.data
    if isinstance(text, str) and text[:1] == "{":  # what encode() writes: no space around it
        try:
            data, end = _scan_once(text, 0)
            if end == len(text):
                return typing.cast(dict[str, Any], data)
        except (StopIteration, ValueError):
            pass  # json.loads below gives the error its message
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as e:
        raise SerializationError(
            f"stored payload of {stored.event_type} event {stored.event_id} is not valid JSON "
            f"({e}); inspect it with dlq_frame() and discard or fix it"
        ) from e
    if not isinstance(data, dict):
        raise SerializationError(
            f"stored payload of {stored.event_type} event {stored.event_id} is "
            f"{type(data).__name__}, not a JSON object; discard it from the DLQ"
        )
    return data


def decode(stored: StoredEvent) -> BaseEvent:
    """A stored event migrated to the current version of its type, as that class (or Event)."""
    return build(
        stored.event_type,
        stored.version,
        parse_payload(stored),
        event_id=stored.event_id,
        timestamp_ms=stored.timestamp_ms,
        source=stored.source,
    )


def decode_lenient(stored: StoredEvent) -> BaseEvent:
    """Typed where it can be, else a generic Event holding what was stored (for DLQ views)."""
    try:
        return decode(stored)
    except DECODE_ERRORS:
        try:
            data = parse_payload(stored)
        except SerializationError:
            data = {"_raw": stored.data}
        return Event(
            event_id=stored.event_id,
            timestamp=ms_to_datetime(stored.timestamp_ms),
            source=stored.source,
            event_type=stored.event_type,
            version=stored.version,
            data=data,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How payloads of one stored (type, version) become events, worked out once per registry
    state: every delivery is decoded, so this is the consume path's hottest code."""

    cls: type | None
    migrates: bool
    fields: frozenset[str]
    datetime_fields: tuple[str, ...]


def _plan(event_type: str, version: int) -> _Plan:
    derived = versioning.registry.derived
    key = ("codec.plan", event_type, version)
    plan: _Plan | None = derived.get(key)
    if plan is None:
        current = versioning.registry.current_version(event_type)
        cls = versioning.registry.current_class(event_type)
        plan = derived[key] = _Plan(
            cls,
            current is not None and version != current,
            frozenset() if cls is None else _init_fields(cls),
            () if cls is None else _datetime_fields(cls),
        )
    return plan


def build(
    event_type: str,
    version: int,
    data: dict[str, Any],
    *,
    event_id: str,
    timestamp_ms: int,
    source: str,
) -> BaseEvent:
    plan = _plan(event_type, version)
    if plan.migrates:  # older (or newer: the error says so) than the current class
        version, data = versioning.registry.migrate(event_type, version, data)
    cls = plan.cls
    timestamp = ms_to_datetime(timestamp_ms)
    if cls is None:
        return Event(event_type=event_type, version=version, data=data, event_id=event_id,
                     timestamp=timestamp, source=source)  # fmt: skip
    if not plan.fields.issuperset(data):
        unknown = sorted(set(data) - plan.fields)
        raise SerializationError(
            f"stored {event_type} v{version} has fields {cls.__name__} does not declare: "
            f"{', '.join(unknown)}; add them to the class or a migration that maps them"
        )
    for name in plan.datetime_fields:
        if isinstance(data.get(name), str):
            data[name] = datetime.fromisoformat(data[name])
    try:
        event = cls(event_id=event_id, timestamp=timestamp, source=source, **data)
        return typing.cast(BaseEvent, event)
    except TypeError as e:
        raise SerializationError(
            f"stored {event_type} v{version} does not fit {cls.__name__}: {e}; "
            "add a migration that fills the missing fields"
        ) from e


def decode_dict(record: dict[str, Any], expected: type[BaseEvent] | None = None) -> BaseEvent:
    """An event from BaseEvent.to_dict() output (or a JSON Lines export row)."""
    try:
        event_type = record.get("event_type") or (expected.event_type if expected else None)
        data = record.get("data", {})
        if not isinstance(event_type, str) or not isinstance(data, dict):
            raise SerializationError("a record needs a string event_type and a data object")
        timestamp = record.get("timestamp")
        if isinstance(timestamp, str):
            timestamp_ms = datetime_to_ms(datetime.fromisoformat(timestamp))
        elif isinstance(timestamp, datetime):
            timestamp_ms = datetime_to_ms(timestamp)
        else:
            timestamp_ms = int(typing.cast(int, timestamp))
        event = build(
            event_type,
            int(record.get("version", 1)),
            dict(data),
            event_id=str(record["event_id"]),
            timestamp_ms=timestamp_ms,
            source=str(record.get("source", "")),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise SerializationError(f"not an event record ({e!r}): {str(record)[:200]}") from e
    if expected is not None and not isinstance(event, expected):
        raise SerializationError(
            f"record is a {type(event).__name__} ({event_type}), not a {expected.__name__}"
        )
    return event


def stored_to_dict(stored: StoredEvent) -> dict[str, Any]:
    """The portable form of a stored event (JSON Lines export): ids, times and version kept."""
    return {
        "event_id": stored.event_id,
        "event_type": stored.event_type,
        "version": stored.version,
        "source": stored.source,
        "timestamp": stored.timestamp_ms,
        "data": parse_payload(stored),
    }


@functools.cache
def _init_fields(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init) - {
        "event_id",
        "timestamp",
        "source",
    }


@functools.cache
def _datetime_fields(cls: type) -> tuple[str, ...]:
    try:
        hints: dict[str, Any] = typing.get_type_hints(cls)
    except Exception:  # annotations naming something local: fall back to their text
        hints = {f.name: f.type for f in dataclasses.fields(cls)}
    wanted = (datetime, datetime | None, "datetime", "datetime | None", "Optional[datetime]")
    return tuple(f.name for f in dataclasses.fields(cls) if hints.get(f.name) in wanted)
