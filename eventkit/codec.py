"""The only place that knows the stored shape: event <-> JSON text, then migrate to a typed instance."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any

from eventkit import versioning
from eventkit.checks import check_name, check_text, has_lone_surrogate
from eventkit.clock import datetime_to_ms, ms_to_datetime
from eventkit.errors import MigrationError, SerializationError, UnsupportedVersionError
from eventkit.events import BaseEvent, Event, build_event, datetime_fields
from eventkit.jsontext import REFUSED, dumps, json_safe, parse_object, parse_refused
from eventkit.records import NewEvent, StoredEvent, new_event_of

__all__ = ["DECODE_ERRORS", "decode", "decode_lenient", "dumps", "encode", "json_safe",
           "parse_payload"]  # fmt: skip

#: errors that no retry can fix: the delivery goes to the DLQ at once
DECODE_ERRORS = (SerializationError, UnsupportedVersionError, MigrationError)


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
    correlation_id, causation_id = event.correlation_id, event.causation_id
    if event_type not in _CHECKED_TYPES:
        _CHECKED_TYPES.add(check_name("event_type", event_type))
    try:  # nothing to check further: fast (a first event's correlation is its own id)
        plain = (
            event_id.isascii()
            and source.isascii()
            and (correlation_id is event_id or (correlation_id and correlation_id.isascii()))
            and (causation_id is None or (causation_id and causation_id.isascii()))
        )
    except AttributeError:
        plain = False
    if not plain:
        _check_envelope_text(event_id, event_type, source)
        check_name("correlation_id", correlation_id)
        if causation_id is not None:
            check_name("causation_id", causation_id)
    try:
        timestamp_ms = datetime_to_ms(event.timestamp)
        version = int(event.version)
    except (TypeError, ValueError, OverflowError, AttributeError) as e:
        raise SerializationError(
            f"{event_type} event {event_id} has a timestamp or version that cannot be stored "
            f"({e}); use a datetime in years 1-9999 and an int version"
        ) from e
    # a first event's correlation is its own id: not stored again (records.correlation_of reads
    # it back), so publishing outside handlers costs no index entry in a store
    stored_correlation = None if correlation_id == event_id else correlation_id
    return new_event_of(
        (
            event_id,
            event_type,
            version,
            source,
            timestamp_ms,
            data,
            stored_correlation,
            causation_id,
        )
    )


#: event types already checked as names (a class's type is checked at its first publish)
_CHECKED_TYPES: set[str] = set()


def _check_envelope_text(event_id: object, event_type: str, source: object) -> None:
    """Ids and sources that are not plain ASCII: strings a store can keep as UTF-8 text."""
    check_name("event_id", event_id)
    if not isinstance(source, str):
        raise SerializationError(f"source must be a string, got {type(source).__name__}")
    check_text(f"source of {event_type} event {event_id!r}", source)


def parse_payload(stored: StoredEvent) -> dict[str, Any]:
    """The stored payload as a dict; SerializationError when it is not a JSON object."""
    try:
        return parse_object(stored.data)
    except REFUSED:
        return _parse_refused(stored)


def _parse_refused(stored: StoredEvent) -> dict[str, Any]:
    try:
        data = parse_refused(stored.data)
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
        # every field at once: one unpacking instead of eight attribute reads (per delivery)
        (_, event_id, event_type, version, source, timestamp_ms, text, _, correlation_id,
         causation_id) = stored  # fmt: skip
        try:  # parse_payload inline: a call less per delivery
            data = parse_object(text)
        except REFUSED:
            data = _parse_refused(stored)
        plan = _PLANS.get((event_type, version))  # the lookup inline: per delivery
        if plan is None or plan.generation != _registry.generation:
            plan = _plan(event_type, version)
        template = plan.template
        # the common case inline: a complete payload of the current version, nothing to convert
        if (
            template is not None
            and type(event_id) is str
            and event_id.isascii()
            and event_id
            and type(source) is str
            and source.isascii()  # else build() checks that all are valid text
            and (
                correlation_id is None or (type(correlation_id) is str and correlation_id.isascii())
            )
            and (causation_id is None or (type(causation_id) is str and causation_id.isascii()))
        ):
            attributes = template.copy()
            attributes.update(data)
            # nothing unknown was added and nothing is missing: every payload field is there
            # (the template also holds the five envelope fields, which come from the store)
            if len(attributes) == len(template) and len(data) == len(template) - 5:
                attributes["event_id"], attributes["source"] = event_id, source
                attributes["timestamp"] = ms_to_datetime(timestamp_ms)
                # an event stored before correlation existed starts its own story
                attributes["correlation_id"] = correlation_id or event_id
                attributes["causation_id"] = causation_id
                event: Any = object.__new__(typing.cast(type, plan.cls))
                event.__dict__ = attributes
                return typing.cast(BaseEvent, event)
        return build_event(
            event_type,
            version,
            data,
            event_id=event_id,
            timestamp_ms=timestamp_ms,
            source=source,
            correlation_id=correlation_id,
            causation_id=causation_id,
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
    event_id = _as_text(stored.event_id) or f"position-{stored.position}"
    event = Event(
        event_id=event_id,
        timestamp=timestamp,
        source=_as_text(stored.source),
        correlation_id=_as_text(stored.correlation_id) or event_id,
        causation_id=_as_text(stored.causation_id) or None,
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
    #: set when a complete payload can become an instance without __init__ (_instance_template)
    template: dict[str, Any] | None
    #: the registry generation it was made in: a plan of an older one is made again
    generation: int


#: decode plans by stored (event type, version), for the registry generation they were made in
_PLANS: dict[tuple[str, int], _Plan] = {}
#: the one registry (isolated_registry() swaps its contents, never the object)
_registry = versioning.registry


def _plan(event_type: str, version: int) -> _Plan:
    """The decode plan of a stored (type, version), worked out once per registry generation."""
    plan = _PLANS.get((event_type, version))
    if plan is None or plan.generation != _registry.generation:
        plan = _PLANS[(event_type, version)] = _make_plan(event_type, version)
    return plan


def _make_plan(event_type: str, version: int) -> _Plan:
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
    fast = cls is not None and not migrates and not datetime_fields(cls)
    template = _instance_template(cls) if cls is not None and fast else None
    return _Plan(cls, migrates, template, versioning.registry.generation)


def _instance_template(cls: type) -> dict[str, Any] | None:
    """The keys of the instance dict dataclass __init__ builds, in its order, for classes where
    copying this, filling it from a payload that has every field and setting it as __dict__
    makes the same object as __init__, in half its time (decoding is most of a consumer's work):
    the generated __init__, BaseEvent's __post_init__ (a no-op for what a store holds: a
    non-empty id, a UTC millisecond timestamp and a correlation id), and every field a plain
    init attribute."""
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
