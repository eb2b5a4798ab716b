"""The only place that knows the stored shape: event <-> JSON text, then migrate to a typed instance."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import typing
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import PurePath
from typing import Any

import msgspec

from eventkit import versioning
from eventkit.checks import check_name, check_text, has_lone_surrogate
from eventkit.errors import MigrationError, SerializationError, UnsupportedVersionError
from eventkit.events import (
    ENVELOPE_FIELDS,
    BaseEvent,
    Event,
    datetime_to_ms,
    ms_to_datetime,
)
from eventkit.stores.base import NewEvent, StoredEvent

#: errors that no retry can fix: the delivery goes to the DLQ at once
DECODE_ERRORS = (SerializationError, UnsupportedVersionError, MigrationError)


def _unknown(value: Any) -> Any:
    """For msgspec: the one type it does not write itself."""
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


#: the payload encoder: datetimes as RFC 3339 text, UUIDs as hex (as event ids are), enums as
#: their values, sets and tuples as arrays, bytes as base64, Decimals and dataclasses too; five
#: times as fast as json's C encoder, which publishing spends most of its time in
_encode_fast = msgspec.json.Encoder(enc_hook=_unknown, uuid_format="hex").encode


def _default(value: Any) -> Any:
    """For json: what msgspec would write, so a payload reads the same whichever encoder wrote it."""
    if isinstance(value, uuid.UUID):
        return value.hex
    return msgspec.to_builtins(value, builtin_types=(uuid.UUID,), enc_hook=_unknown)


#: built once: json.dumps with these options would build a new encoder on every call
_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":"))
#: the C encoder behind it, kept too: JSONEncoder.encode makes a new one per call (a quarter of
#: its time). Without markers it has no cycle check: a cycle hits the recursion limit
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
#: reads a payload in a third of json.loads' time and to the same values (integers of any size
#: included); what it refuses goes to json.loads, so both accept exactly the same text
_parse_object: Callable[[str], dict[str, Any]] = msgspec.json.Decoder(dict).decode


_new_tuple = tuple.__new__


def dumps(value: Any) -> str:
    """Compact JSON text. msgspec writes it unless the value holds a null: msgspec also writes
    NaN and Infinity as null, where json keeps them, so a float is never lost to None. json
    also takes what msgspec refuses (bool and None keys, subclasses of str and int) and names
    what neither can write."""
    try:
        fast = _encode_fast(value)
    except (TypeError, ValueError, RecursionError):
        pass
    else:
        if b"null" not in fast:
            return fast.decode()
    if _C_ENCODER is None:
        text = _ENCODER.encode(value)
    else:
        try:
            text = "".join(_C_ENCODER(value, 0))
        except RecursionError:
            raise ValueError(
                "circular reference (or nesting deeper than the recursion limit)"
            ) from None
    if has_lone_surrogate(text):  # msgspec refuses these; json would write what no store keeps
        raise ValueError("it holds a lone surrogate, which is not valid Unicode text")
    return text


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
    event_id, event_type, source = event.event_id, event.event_type, event.source
    if event_type not in _CHECKED_TYPES:
        _CHECKED_TYPES.add(check_name("event_type", event_type))
    try:
        plain = event_id.isascii() and source.isascii()  # nothing to check further: fast
    except AttributeError:
        plain = False
    if not plain:
        _check_envelope_text(event_id, event_type, source)
    try:
        timestamp_ms = datetime_to_ms(event.timestamp)
        version = int(event.version)
    except (TypeError, ValueError, OverflowError, AttributeError) as e:
        raise SerializationError(
            f"{event_type} event {event_id} has a timestamp or version that cannot be stored "
            f"({e}); use a datetime in years 1-9999 and an int version"
        ) from e
    # what NewEvent(...) makes, without the Python frame of a named tuple's __new__
    return _new_tuple(NewEvent, (event_id, event_type, version, source, timestamp_ms, data))


#: event types already checked as names (a class's type is checked at its first publish)
_CHECKED_TYPES: set[str] = set()


def _check_envelope_text(event_id: object, event_type: str, source: object) -> None:
    """Ids and sources that are not plain ASCII: strings a store can keep as UTF-8 text."""
    check_name("event_id", event_id)
    if not isinstance(source, str):
        raise SerializationError(f"source must be a string, got {type(source).__name__}")
    check_text(f"source of {event_type} event {event_id!r}", source)


def parse_payload(stored: StoredEvent) -> dict[str, Any]:
    try:
        return _parse_object(stored.data)
    except (msgspec.MsgspecError, RecursionError, TypeError, ValueError):
        return _parse_refused(stored)


def _parse_refused(stored: StoredEvent) -> dict[str, Any]:
    """What msgspec refused, read by json.loads: it also reads the NaN, Infinity and lone
    surrogates json writes, and its error says what is wrong with the rest."""
    text = stored.data
    if isinstance(text, str) and has_lone_surrogate(text):
        raise SerializationError(
            f"stored payload of {stored.event_type} event {stored.event_id} is not UTF-8 text; "
            "inspect it with dlq_frame() and discard or fix it"
        )
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError) as e:
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
    """A stored event migrated to the current version of its type, as that class (or Event).

    Whatever is wrong with a stored record (a store holds what outside writers put there too)
    is a SerializationError, or UnsupportedVersionError/MigrationError: no retry can fix it, so
    the consumer dead-letters it at once instead of failing on it forever.
    """
    try:
        try:  # parse_payload inline: a call less per delivery
            data = _parse_object(stored.data)
        except (msgspec.MsgspecError, RecursionError, TypeError, ValueError):
            data = _parse_refused(stored)
        plan = versioning.registry.derived.get((stored.event_type, stored.version))
        if plan is None:
            plan = _plan(stored.event_type, stored.version)
        template, event_id = plan.template, stored.event_id
        # the common case inline: a complete payload of the current version, nothing to convert
        source = stored.source
        if (
            template is not None
            and type(event_id) is str
            and event_id.isascii()
            and event_id
            and type(source) is str
            and source.isascii()  # else build() checks that both are valid text
        ):
            attributes = template.copy()
            attributes.update(data)
            # nothing unknown was added and nothing is missing: every payload field is there
            # (the template also holds the three envelope fields, which come from the store)
            if len(attributes) == len(template) and len(data) == len(template) - 3:
                attributes["event_id"], attributes["source"] = event_id, source
                attributes["timestamp"] = ms_to_datetime(stored.timestamp_ms)
                event = object.__new__(plan.cls)  # type: ignore[arg-type]
                event.__dict__ = attributes
                return typing.cast(BaseEvent, event)
        return build(
            stored.event_type,
            stored.version,
            data,
            event_id=event_id,
            timestamp_ms=stored.timestamp_ms,
            source=stored.source,
        )
    except DECODE_ERRORS:
        raise
    except Exception as e:
        raise SerializationError(
            f"stored {stored.event_type!r} event {stored.event_id!r} cannot be read "
            f"({type(e).__name__}: {e}); inspect it with dlq_frame() and discard or fix it"
        ) from e


def decode_lenient(stored: StoredEvent) -> BaseEvent:
    """Typed where it can be, else a generic Event holding what was stored (for DLQ views)."""
    try:
        return decode(stored)
    except DECODE_ERRORS:
        pass
    try:
        data = parse_payload(stored)
    except SerializationError:
        data = {"_raw": _as_text(stored.data)}
    try:
        timestamp = ms_to_datetime(stored.timestamp_ms)
    except (TypeError, ValueError, OverflowError):
        timestamp = ms_to_datetime(stored.published_ms)  # the store's own clock: always valid
        data = {**data, "_raw_timestamp_ms": _as_text(stored.timestamp_ms)}
    version = stored.version
    event = Event(
        event_id=_as_text(stored.event_id) or f"position-{stored.position}",
        timestamp=timestamp,
        source=_as_text(stored.source),
        event_type=_as_text(stored.event_type),
        version=version if type(version) is int else 0,
        data=data,
    )
    return event


def _as_text(value: object) -> str:
    """Stored text as a printable str, whatever an outside writer put there."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if has_lone_surrogate(text):
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    """How payloads of one stored (type, version) become events, worked out once per registry
    state: every delivery is decoded, so this is the consume path's hottest code."""

    cls: type | None
    migrates: bool
    fields: frozenset[str]
    datetime_fields: tuple[str, ...]
    #: set when a complete payload can become an instance without __init__ (see _template)
    template: dict[str, Any] | None


def _plan(event_type: str, version: int) -> _Plan:
    key = (event_type, version)
    plan: _Plan | None = versioning.registry.derived.get(key)
    if plan is None:
        # once per stored (type, version): what an outside writer may have put in the envelope
        if type(event_type) is not str or not event_type or has_lone_surrogate(event_type):
            raise SerializationError(f"stored event type {event_type!r} is not a name")
        if type(version) is not int or version < 1:
            raise SerializationError(
                f"stored {event_type} event has version {version!r}, not an integer >= 1"
            )
        current = versioning.registry.current_version(event_type)
        cls = versioning.registry.current_class(event_type)
        migrates = current is not None and version != current
        datetime_fields = () if cls is None else _datetime_fields(cls)
        plan = versioning.registry.derived[key] = _Plan(
            cls,
            migrates,
            frozenset() if cls is None else _init_fields(cls),
            datetime_fields,
            None if cls is None or migrates or datetime_fields else _template(cls),
        )
    return plan


def _template(cls: type) -> dict[str, Any] | None:
    """The keys of the instance dict dataclass __init__ builds, in its order, for classes where
    copying this, filling it from a payload that has every field and setting it as __dict__
    makes the same object as __init__, in half its time (decoding is most of a consumer's work):
    the generated __init__, BaseEvent's __post_init__ (a no-op for what a store holds: a
    non-empty id and a UTC millisecond timestamp), and every field a plain init attribute."""
    code = getattr(cls.__init__, "__code__", None)  # type: ignore[misc]
    generated = getattr(code, "co_qualname", "").endswith("__create_fn__.<locals>.__init__")
    if not (
        generated
        and dataclasses.is_dataclass(cls)
        and getattr(cls, "__post_init__", None) is BaseEvent.__post_init__
        and cls.__setattr__ is object.__setattr__
        and cls.__new__ is object.__new__
        and not any("__slots__" in vars(klass) for klass in cls.__mro__)
    ):
        return None
    fields = dataclasses.fields(cls)
    if any(
        not f.init or hasattr(type(inspect.getattr_static(cls, f.name, None)), "__set__")
        for f in fields
    ):
        return None  # __init__ sets a default itself, or goes through a descriptor's __set__
    return dict.fromkeys(f.name for f in fields)


def build(
    event_type: str,
    version: int,
    data: dict[str, Any],
    *,
    event_id: str,
    timestamp_ms: int,
    source: str,
) -> BaseEvent:
    if (
        type(event_id) is not str
        or not event_id
        or type(source) is not str
        or has_lone_surrogate(event_id)
        or has_lone_surrogate(source)
    ):
        raise SerializationError(
            f"stored {event_type} event has an event_id {event_id!r} or source {source!r} "
            "that is not text (not UTF-8, or missing)"
        )
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
    except Exception as e:  # the class's own checks (__post_init__) refuse it: no retry helps
        raise SerializationError(
            f"stored {event_type} v{version} is refused by {cls.__name__}: {type(e).__name__}: {e}; "
            "discard it from the DLQ, or add a migration that makes it valid"
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
    return tuple(
        f.name
        for f in dataclasses.fields(cls)
        if hints.get(f.name) in wanted and f.name not in ENVELOPE_FIELDS
    )
