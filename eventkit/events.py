"""Events as dataclasses: the envelope every event shares, a generic Event, and the sample domain."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

ENVELOPE_FIELDS = frozenset({"event_id", "timestamp", "source"})

E = TypeVar("E", bound="BaseEvent")


def utc_now_ms() -> datetime:
    """Now, in UTC, at the millisecond precision events are stored with."""
    return ms_to_datetime(time.time_ns() // 1_000_000)


def to_utc_ms(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC; precision is cut to milliseconds so a stored event
    read back equals the one published."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def datetime_to_ms(moment: datetime) -> int:
    ms = _MILLISECONDS.get(moment)  # events made or read in this process: a lookup
    if ms is not None:
        return ms
    if moment.tzinfo is not UTC:  # events keep UTC already: only foreign datetimes pay for this
        moment = to_utc_ms(moment)
    return (moment - _EPOCH) // _ONE_MS


#: recent conversions, both ways: events published together share their milliseconds, and
#: datetimes are immutable, so a batch reuses them (emptied when full, so they stay small)
_DATETIMES: dict[int, datetime] = {}
_MILLISECONDS: dict[datetime, int] = {}


def ms_to_datetime(ms: int) -> datetime:
    moment = _DATETIMES.get(ms)
    if moment is None:
        try:
            moment = _EPOCH + timedelta(milliseconds=int(ms))  # twice as fast as fromtimestamp()
        except OverflowError:
            raise ValueError(f"{ms} ms since the epoch is out of datetime's range") from None
        if len(_DATETIMES) >= 4096:
            _DATETIMES.clear()
            _MILLISECONDS.clear()
        _DATETIMES[ms] = moment
        _MILLISECONDS[moment] = int(ms)
    return moment


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a subclass naming its own event_type is registered at its version, so consumers get it
        # back typed; @versioned_event registers explicitly (and may replace this)
        if "event_type" in cls.__dict__ and not cls.__dict__.get("_abstract", False):
            from eventkit.versioning import registry

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

    def payload(self) -> dict[str, Any]:
        """The payload fields as a dict (no envelope fields)."""
        # not self.__dict__.copy(): that would give each event a dict object of its own where
        # Python keeps plain instances' attributes inline (memory, and garbage collection time)
        return {name: getattr(self, name) for name in _payload_names(type(self))}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict: envelope fields, the timestamp as epoch ms, the payload under "data"."""
        from eventkit.codec import json_safe

        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "version": self.version,
            "source": self.source,
            "timestamp": datetime_to_ms(self.timestamp),
            "data": json_safe(self.payload()),
        }

    @classmethod
    def from_dict(cls: type[E], record: dict[str, Any]) -> E:
        """Rebuild an event from to_dict() output, migrating older versions to the current class."""
        from eventkit.codec import decode_dict

        event = decode_dict(record, expected=None if cls is BaseEvent else cls)
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


_PAYLOAD_NAMES: dict[type, tuple[str, ...]] = {}


def _payload_names(cls: type[BaseEvent]) -> tuple[str, ...]:
    """Computed once per class: publishing calls payload() for every event."""
    names = _PAYLOAD_NAMES.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = _PAYLOAD_NAMES[cls] = tuple(f.name for f in fields if f.name not in ENVELOPE_FIELDS)
    return names


def create_event(event_class: type[E], source: str = "", **fields: Any) -> E:
    """Build an event, naming any field the class does not declare (a typo would be lost)."""
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
