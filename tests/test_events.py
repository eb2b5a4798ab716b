"""Events: creation, identity, time, dict round trips, the generic Event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from eventkit import BaseEvent, Event, create_event
from eventkit.codec import decode, encode
from eventkit.errors import SerializationError
from eventkit.events import SAMPLE_EVENTS, AssetDiscoveredEvent, QualityAssessedEvent
from eventkit.stores.base import StoredEvent


def test_create_event_names_an_unknown_field() -> None:
    with pytest.raises(TypeError, match="'colour'"):
        create_event(AssetDiscoveredEvent, source="s", asset_id="a", file_path="/f",
                     media_type="image", colour="red")  # fmt: skip


def test_create_event_names_a_missing_field() -> None:
    with pytest.raises(TypeError, match="'file_path'"):
        create_event(AssetDiscoveredEvent, source="s", asset_id="a", media_type="image")


def test_identity_and_time_are_fixed_at_creation_in_utc_milliseconds() -> None:
    event = create_event(QualityAssessedEvent, source="q", asset_id="a", score=0.5)
    assert len(event.event_id) == 32 and event.event_id == event.event_id
    assert event.timestamp.tzinfo is UTC and event.timestamp.microsecond % 1000 == 0
    assert abs(event.timestamp - datetime.now(UTC)) < timedelta(seconds=5)
    assert create_event(QualityAssessedEvent, asset_id="a", score=0.5).event_id != event.event_id


def test_other_timezones_are_converted_and_naive_taken_as_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = QualityAssessedEvent(
        asset_id="a", score=1, timestamp=datetime(2026, 1, 1, 14, tzinfo=plus_two)
    )
    assert event.timestamp == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert event.timestamp.tzinfo is UTC
    naive = QualityAssessedEvent(
        asset_id="a", score=1, timestamp=datetime(2026, 1, 1, 12, 0, 0, 123456)
    )
    assert naive.timestamp == datetime(2026, 1, 1, 12, 0, 0, 123000, tzinfo=UTC)


def test_to_dict_and_from_dict_round_trip_through_json() -> None:
    import json

    event = create_event(AssetDiscoveredEvent, source="scanner", asset_id="a1", file_path="/x.jpg",
                         media_type="image", file_size=10, metadata={"tags": ["a"]})  # fmt: skip
    record = json.loads(json.dumps(event.to_dict()))
    assert record["version"] == 1 and isinstance(record["timestamp"], int)
    assert record["data"]["metadata"] == {"tags": ["a"]}
    again = BaseEvent.from_dict(record)
    assert again == event and type(again) is AssetDiscoveredEvent
    assert AssetDiscoveredEvent.from_dict(record) == event
    with pytest.raises(SerializationError):
        QualityAssessedEvent.from_dict(record)


def test_every_sample_event_round_trips_through_the_codec() -> None:
    values = {str: "x", int: 3, float: 0.5}
    for cls in SAMPLE_EVENTS:
        fields = {
            name: values.get(hint, values[str])
            for name, hint in {"asset_id": str, "file_path": str, "media_type": str, "score": float,
                               "workflow_id": str, "workflow_type": str, "error_message": str}.items()
            if name in cls.__dataclass_fields__
        }  # fmt: skip
        event = create_event(cls, source="t", **fields)
        new = encode(event)
        stored = new.stored(1, 0)
        assert decode(stored) == event, cls.__name__


def test_generic_event_keeps_type_version_and_data() -> None:
    event = Event(event_type="billing.charged", version=3, data={"amount": 5}, source="b")
    assert (event.event_type, event.version, event.data) == ("billing.charged", 3, {"amount": 5})
    assert event.to_dict()["data"] == {"amount": 5}


def test_datetime_payload_fields_survive_the_round_trip() -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    @dataclass(kw_only=True)
    class Scheduled(BaseEvent):
        event_type: ClassVar[str] = "job.scheduled"
        run_at: datetime

    event = Scheduled(run_at=datetime(2026, 2, 3, 4, 5, tzinfo=UTC))
    assert BaseEvent.from_dict(event.to_dict()) == event


def test_a_payload_that_contains_itself_is_a_serialization_error() -> None:
    looped: dict[str, object] = {}
    looped["self"] = looped
    event = Event(event_type="t.loop", data=looped)
    with pytest.raises(SerializationError, match="not JSON"):
        encode(event)


def test_encoding_keeps_unicode_and_big_integers_exact() -> None:
    event = Event(event_type="t.exact", data={"name": "Zoë ✓", "big": 2**70, "neg": -(2**65)})
    new = encode(event)
    assert "Zoë ✓" in new.data  # written as text, not \\u escapes
    again = decode(new.stored(1, 0))
    assert again.payload() == {"name": "Zoë ✓", "big": 2**70, "neg": -(2**65)}


@pytest.mark.parametrize(
    "text", ['{"score": 1}', ' {"score": 1}', '{"score": 1}\n', '{ "score" : 1 }']
)
def test_stored_payloads_written_by_other_tools_decode(text: str) -> None:
    stored = StoredEvent(1, "e1", "t.other", 1, "s", 0, text, 0)
    assert decode(stored).payload() == {"score": 1}


@pytest.mark.parametrize("text", ['{"score": 1}x', '{"score": 1', "[1]", ""])
def test_stored_payloads_that_are_not_one_json_object_are_serialization_errors(text: str) -> None:
    stored = StoredEvent(1, "e1", "t.other", 1, "s", 0, text, 0)
    with pytest.raises(SerializationError, match="e1"):
        decode(stored)


def test_decoding_follows_classes_registered_after_earlier_decodes() -> None:
    from dataclasses import dataclass
    from typing import ClassVar

    from eventkit.versioning import isolated_registry

    stored = StoredEvent(1, "e1", "t.late", 1, "s", 0, '{"n": 1}', 0)
    assert type(decode(stored)) is Event  # no class yet: generic
    with isolated_registry():

        @dataclass(kw_only=True)
        class Late(BaseEvent):
            event_type: ClassVar[str] = "t.late"
            n: int

        assert type(decode(stored)) is Late
    assert type(decode(stored)) is Event  # the class left with the isolated registry


def test_milliseconds_convert_both_ways_for_known_and_foreign_datetimes() -> None:
    from eventkit.events import datetime_to_ms, ms_to_datetime

    ms = 1_700_000_000_123
    moment = ms_to_datetime(ms)  # remembered both ways
    assert moment == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert datetime_to_ms(moment) == ms
    assert datetime_to_ms(moment.astimezone(timezone(timedelta(hours=5)))) == ms
    assert datetime_to_ms(moment.replace(tzinfo=None)) == ms  # naive is UTC
    assert datetime_to_ms(moment + timedelta(microseconds=999)) == ms  # cut to the millisecond
    assert datetime_to_ms(datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)) == -1
