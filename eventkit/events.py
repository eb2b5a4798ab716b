"""Events as dataclasses: the envelope every event shares, a generic Event, how a payload dict
becomes a typed event (migrated through the registry), and the sample domain."""

from __future__ import annotations

import dataclasses
import functools
import typing
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from eventkit.checks import has_lone_surrogate
from eventkit.clock import datetime_to_ms, ms_to_datetime, to_utc_ms, utc_now_ms
from eventkit.errors import SerializationError
from eventkit.jsontext import json_safe
from eventkit.versioning import registry

__all__ = [  # the clock's conversions are re-exported: events are where users look for them
    "ENVELOPE_FIELDS", "BaseEvent", "Event", "create_event", "datetime_to_ms", "ms_to_datetime",
    "utc_now_ms", "AssetDiscoveredEvent", "AssetProcessedEvent", "QualityAssessedEvent",
    "WorkflowStartedEvent", "WorkflowCompletedEvent", "WorkflowFailedEvent", "SAMPLE_EVENTS",
    "build_event", "event_from_dict", "payload_fields", "datetime_fields", "HANDLED_EVENT",
    "caused_by",
]  # fmt: skip

ENVELOPE_FIELDS = frozenset({"event_id", "timestamp", "source", "correlation_id", "causation_id"})

E = TypeVar("E", bound="BaseEvent")


def _new_event_id() -> str:
    return uuid.uuid4().hex


@dataclass(kw_only=True)
class BaseEvent:
    """An event: payload fields are declared on subclasses; identity and time are fixed at creation."""

    event_type: ClassVar[str] = "event"
    version: ClassVar[int] = 1

    event_id: str = field(default_factory=_new_event_id)
    timestamp: datetime = field(default_factory=utc_now_ms)
    source: str = ""
    #: the story this event belongs to: the id of its first event. Left empty, it is taken at
    #: creation from the event whose handler is running (HANDLED_EVENT), else the event's own id
    correlation_id: str = ""
    #: the id of the event whose handler created this one (None: the first of its story)
    causation_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a subclass naming its own event_type is registered at its version, so consumers get it
        # back typed; @versioned_event registers explicitly (and may replace this)
        if "event_type" in cls.__dict__ and not cls.__dict__.get("_abstract", False):
            registry.register_class(cls, replace_existing=False)

    def __post_init__(self) -> None:
        if not isinstance(self.event_id, str) or not self.event_id:
            raise TypeError(f"event_id must be a non-empty string, got {self.event_id!r}")
        if isinstance(self.timestamp, int | float) and not isinstance(self.timestamp, bool):
            self.timestamp = ms_to_datetime(int(self.timestamp))
        elif isinstance(self.timestamp, str):
            self.timestamp = datetime.fromisoformat(self.timestamp)
        if not isinstance(self.timestamp, datetime):
            raise TypeError(f"timestamp must be a datetime, got {type(self.timestamp).__name__}")
        if self.timestamp.tzinfo is not UTC or self.timestamp.microsecond % 1000:
            self.timestamp = to_utc_ms(self.timestamp)  # decoded events are UTC ms already
        if not self.correlation_id:  # given by hand or by decode: kept as it is
            parent = HANDLED_EVENT.get()
            if parent is None:  # the first event of a story
                self.correlation_id = self.event_id
            else:  # created while handling `parent`: the same story, caused by it
                self.correlation_id = parent.correlation_id
                if self.causation_id is None:
                    self.causation_id = parent.event_id

    def payload(self) -> dict[str, Any]:
        """The payload fields as a dict (no envelope fields)."""
        # not self.__dict__.copy(): that would give each event a dict object of its own where
        # Python keeps plain instances' attributes inline (memory, and garbage collection time)
        return {name: getattr(self, name) for name in _payload_names(type(self))}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: envelope fields, the timestamp as epoch ms, the payload under "data"."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "version": self.version,
            "source": self.source,
            "timestamp": datetime_to_ms(self.timestamp),
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "data": json_safe(self.payload()),
        }

    @classmethod
    def from_dict(cls: type[E], record: dict[str, Any]) -> E:
        """Rebuild an event from to_dict() output, migrating older versions to the current class."""
        event = event_from_dict(record, expected=None if cls is BaseEvent else cls)
        return event  # type: ignore[return-value]


@dataclass(kw_only=True)
class Event(BaseEvent):
    """An event of a type this process has no class for: its payload stays a plain dict."""

    _abstract: ClassVar[bool] = True
    event_type: str = "event"  # type: ignore[misc]
    version: int = 1  # type: ignore[misc]
    data: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return dict(self.data)


def build_event(
    event_type: str,
    version: int,
    data: dict[str, Any],
    *,
    event_id: str,
    timestamp_ms: int,
    source: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> BaseEvent:
    """A payload dict as an event of the current version of its type (migrated step by step), or
    a generic Event for a type with no class. SerializationError (or the registry's
    UnsupportedVersionError/MigrationError) when it cannot be one: no retry would help."""
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
    for name, value in (("correlation_id", correlation_id), ("causation_id", causation_id)):
        if value is not None and (type(value) is not str or has_lone_surrogate(value)):
            raise SerializationError(
                f"stored {event_type} event {event_id} has a {name} {value!r} that is not text"
            )
    # an event stored before correlation existed starts its own story
    envelope: dict[str, Any] = {"event_id": event_id, "timestamp": ms_to_datetime(timestamp_ms), "source": source,
                "correlation_id": correlation_id or event_id, "causation_id": causation_id}  # fmt: skip
    current = registry.current_version(event_type)
    if current is not None and version != current:  # older, or newer: the error says so
        version, data = registry.migrate(event_type, version, data)
    cls = registry.current_class(event_type)
    if cls is None:
        return Event(event_type=event_type, version=version, data=data, **envelope)
    fields = payload_fields(cls)
    if not fields.issuperset(data):
        unknown = sorted(set(data) - fields)
        raise SerializationError(
            f"stored {event_type} v{version} has fields {cls.__name__} does not declare: "
            f"{', '.join(unknown)}; add them to the class or a migration that maps them"
        )
    for name in datetime_fields(cls):
        if isinstance(data.get(name), str):
            data[name] = datetime.fromisoformat(data[name])
    try:
        return typing.cast(BaseEvent, cls(**envelope, **data))
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


def event_from_dict(record: dict[str, Any], expected: type[BaseEvent] | None = None) -> BaseEvent:
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
        event = build_event(
            event_type,
            int(record.get("version", 1)),
            dict(data),
            event_id=str(record["event_id"]),
            timestamp_ms=timestamp_ms,
            source=str(record.get("source", "")),
            correlation_id=record.get("correlation_id"),
            causation_id=record.get("causation_id"),
        )
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        if isinstance(e, SerializationError):
            raise
        raise SerializationError(f"not an event record ({e!r}): {str(record)[:200]}") from e
    if expected is not None and not isinstance(event, expected):
        raise SerializationError(
            f"record is a {type(event).__name__} ({event_type}), not a {expected.__name__}"
        )
    return event


@functools.cache
def payload_fields(cls: type) -> frozenset[str]:
    """The payload fields a class takes in __init__ (envelope fields left out)."""
    return frozenset(f.name for f in dataclasses.fields(cls) if f.init) - ENVELOPE_FIELDS


@functools.cache
def datetime_fields(cls: type) -> tuple[str, ...]:
    """Payload fields declared as datetimes: stored as RFC 3339 text, read back as datetimes."""
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


_PAYLOAD_NAMES: dict[type, tuple[str, ...]] = {}


def _payload_names(cls: type[BaseEvent]) -> tuple[str, ...]:
    """Computed once per class: publishing calls payload() for every event."""
    names = _PAYLOAD_NAMES.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = _PAYLOAD_NAMES[cls] = tuple(f.name for f in fields if f.name not in ENVELOPE_FIELDS)
    return names


#: the event whose handler runs in this context (set by the consumer, replay and in-process
#: subscribers around each call): an event created meanwhile continues its story
HANDLED_EVENT: ContextVar[BaseEvent | None] = ContextVar("eventkit_handled_event", default=None)


@contextmanager
def caused_by(event: BaseEvent) -> Iterator[None]:
    """Events created in this block continue `event`'s story, as if its handler created them."""
    token = HANDLED_EVENT.set(event)
    try:
        yield
    finally:
        HANDLED_EVENT.reset(token)


def create_event(event_class: type[E], source: str = "", **fields: Any) -> E:
    """Build an event, naming any field the class does not declare (a typo would be lost).

    `correlation_id=` and `causation_id=` place it in a story by hand; left out, it continues
    the story of the event being handled (or starts its own)."""
    known = {f.name for f in dataclasses.fields(event_class) if f.init}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise TypeError(
            f"{event_class.__name__} has no field {', '.join(map(repr, unknown))}; "
            f"its fields are {', '.join(sorted(known - ENVELOPE_FIELDS)) or 'none'}"
        )
    missing = sorted(
        f.name
        for f in dataclasses.fields(event_class)
        if f.init
        and f.name not in fields
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise TypeError(f"{event_class.__name__} needs field {', '.join(map(repr, missing))}")
    return event_class(source=source, **fields)


# -- the sample domain: an asset pipeline and its workflows --------------------------------------


@dataclass(kw_only=True)
class AssetDiscoveredEvent(BaseEvent):
    """A scanner found a media file."""

    event_type: ClassVar[str] = "asset.discovered"
    asset_id: str
    file_path: str
    media_type: str
    file_size: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class AssetProcessedEvent(BaseEvent):
    """An asset went through the processing pipeline."""

    event_type: ClassVar[str] = "asset.processed"
    asset_id: str
    output_path: str = ""
    processing_time_ms: float = 0.0
    operations: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class QualityAssessedEvent(BaseEvent):
    """A quality score for an asset (version 1: score and issues only)."""

    event_type: ClassVar[str] = "quality.assessed"
    asset_id: str
    score: float
    issues: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class WorkflowStartedEvent(BaseEvent):
    event_type: ClassVar[str] = "workflow.started"
    workflow_id: str
    workflow_type: str
    input_data: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class WorkflowCompletedEvent(BaseEvent):
    event_type: ClassVar[str] = "workflow.completed"
    workflow_id: str
    duration_ms: float = 0.0
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class WorkflowFailedEvent(BaseEvent):
    event_type: ClassVar[str] = "workflow.failed"
    workflow_id: str
    error_message: str
    error_type: str = "Error"


SAMPLE_EVENTS: tuple[type[BaseEvent], ...] = (
    AssetDiscoveredEvent,
    AssetProcessedEvent,
    QualityAssessedEvent,
    WorkflowStartedEvent,
    WorkflowCompletedEvent,
    WorkflowFailedEvent,
)
