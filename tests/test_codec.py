"""The codec's fast paths give what the plain ones would: msgspec beside json, and events built
without __init__ beside events built by it."""

from __future__ import annotations

import dataclasses
import json
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from eventkit import BaseEvent, Event, EventBus, EventStoreConfig, create_event
from eventkit.codec import decode, dumps, encode
from eventkit.errors import SerializationError
from eventkit.events import SAMPLE_EVENTS, AssetDiscoveredEvent, datetime_fields
from eventkit.records import NewEvent, new_event_of, stored_event_of
from eventkit.stores.base import StoredEvent

SAMPLE_VALUES: dict[str, Any] = {
    "asset_id": "a1", "file_path": "/p.jpg", "media_type": "image", "file_size": 7,
    "metadata": {"w": 1}, "output_path": "/o", "processing_time_ms": 1.5,
    "operations": ["resize"], "score": 0.5, "issues": ["blur"], "workflow_id": "w1",
    "workflow_type": "ingest", "input_data": {"k": [1]}, "duration_ms": 2.5,
    "output": {"ok": True}, "error_message": "boom", "error_type": "IOError",
}  # fmt: skip


def stored(event: BaseEvent) -> StoredEvent:
    return encode(event).stored(1, 0)


def raw(event_type: str, payload: str, version: int = 1) -> StoredEvent:
    return StoredEvent(1, "e1", event_type, version, "s", 1_700_000_000_000, payload, 0)


@pytest.mark.parametrize("cls", SAMPLE_EVENTS, ids=lambda c: c.event_type)
def test_decoded_events_are_what_their_init_builds(cls: type[BaseEvent]) -> None:
    fields = {
        f.name: SAMPLE_VALUES[f.name] for f in dataclasses.fields(cls) if f.name in SAMPLE_VALUES
    }
    event = create_event(cls, source="src", **fields)
    again = decode(stored(event))
    assert type(again) is cls
    assert again == event
    assert list(vars(again).items()) == list(vars(event).items())  # same attributes, same order


def test_decoded_events_share_no_state() -> None:
    record = stored(create_event(AssetDiscoveredEvent, asset_id="a", file_path="/p",
                                 media_type="image", metadata={"tags": ["x"]}))  # fmt: skip
    first, second = decode(record), decode(record)
    assert isinstance(first, AssetDiscoveredEvent) and isinstance(second, AssetDiscoveredEvent)
    first.metadata["tags"].append("changed")
    first.asset_id = "changed"
    assert second.metadata == {"tags": ["x"]} and second.asset_id == "a"
    third = decode(record)
    assert isinstance(third, AssetDiscoveredEvent)
    assert third.metadata == {"tags": ["x"]} and third.asset_id == "a"


def test_a_payload_without_a_defaulted_field_gets_the_default() -> None:
    again = decode(raw("asset.discovered", '{"asset_id":"a","file_path":"/p","media_type":"i"}'))
    assert isinstance(again, AssetDiscoveredEvent)
    assert (again.file_size, again.metadata) == (0, {})
    other = decode(raw("asset.discovered", '{"asset_id":"b","file_path":"/p","media_type":"i"}'))
    assert isinstance(other, AssetDiscoveredEvent)
    assert other.metadata is not again.metadata  # a default_factory runs for each event


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"asset_id":"a","file_path":"/p"}', "does not fit"),  # media_type missing
        ('{"asset_id":"a","file_path":"/p","media_type":"i","colour":1}', "colour"),
        ('{"asset_id":"a","file_path":"/p","colour":1,"file_size":2}', "colour"),
    ],
)
def test_missing_and_unknown_fields_are_serialization_errors(payload: str, message: str) -> None:
    with pytest.raises(SerializationError, match=message):
        decode(raw("asset.discovered", payload))


def test_classes_whose_init_does_more_are_built_by_it() -> None:
    @dataclass(kw_only=True)
    class Normalised(BaseEvent):
        event_type: ClassVar[str] = "t.normalised"
        code: str

        def __post_init__(self) -> None:
            super().__post_init__()
            self.code = self.code.upper()

    @dataclass(kw_only=True)
    class Counted(BaseEvent):
        event_type: ClassVar[str] = "t.counted"
        items: list[int]
        size: int = field(init=False, default=-1)

    @dataclass(kw_only=True, slots=True)
    class Slotted(BaseEvent):
        event_type: ClassVar[str] = "t.slotted"
        n: int

    normalised = decode(raw("t.normalised", '{"code":"abc"}'))
    assert isinstance(normalised, Normalised) and normalised.code == "ABC"
    counted = decode(raw("t.counted", '{"items":[1,2]}'))
    assert isinstance(counted, Counted) and (counted.items, counted.size) == ([1, 2], -1)
    slotted = decode(raw("t.slotted", '{"n":3}'))
    assert isinstance(slotted, Slotted) and slotted.n == 3 and slotted.event_id == "e1"


async def test_an_event_its_class_refuses_goes_to_the_dlq_and_the_group_goes_on() -> None:
    @dataclass(kw_only=True)
    class Reading(BaseEvent):
        event_type: ClassVar[str] = "t.reading"
        value: float

        def __post_init__(self) -> None:
            super().__post_init__()
            if not 0 <= self.value <= 1:
                raise ValueError(f"value {self.value} is outside [0, 1]")

    handled: list[float] = []
    async with EventBus(EventStoreConfig(backend="memory", trim_interval_hours=None)) as bus:
        # a producer without the class (or with an older one) wrote a value the class refuses
        await bus.publish(Event(event_type="t.reading", data={"value": 5.0}))
        await bus.publish(Reading(value=0.5))

        async def handle(event: Reading) -> None:
            handled.append(event.value)

        await bus.subscribe_persistent(["t.reading"], "readers", "r1", handle)
        assert await bus.wait_idle("readers", timeout=5)
        [letter] = await bus.store.get_pending_events("readers")
    assert handled == [0.5]
    assert letter.attempts == 1  # no retry: the class would refuse it every time
    assert "SerializationError" in letter.last_error and "outside [0, 1]" in letter.last_error


@pytest.mark.parametrize("extra", [{}, {"nothing": None}], ids=["msgspec", "json"])
def test_both_encoders_write_the_same_values(extra: dict[str, Any]) -> None:
    # a payload holding a null takes json's path; every other value must read the same either way
    payload = {
        "when": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "id": uuid.UUID(int=255),
        "blob": b"\x00\xff",
        "price": Decimal("1.10"),
        "tags": {"only"},
        "pair": (1, 2),
        "big": 2**70,
        "text": "Zoë ✓",
    }
    written = json.loads(dumps({**payload, **extra}))
    assert written == {
        "when": "2026-01-02T03:04:05.678000Z",
        "id": "000000000000000000000000000000ff",
        "blob": "AP8=",
        "price": "1.10",
        "tags": ["only"],
        "pair": [1, 2],
        "big": 2**70,
        "text": "Zoë ✓",
        **extra,
    }


@pytest.mark.parametrize("extra", [{}, {"nothing": None}], ids=["alone", "beside-null"])
def test_nan_and_infinity_are_kept_not_written_as_null(extra: dict[str, Any]) -> None:
    event = Event(event_type="t.floats", data={"nan": math.nan, "inf": -math.inf, **extra})
    again = decode(stored(event))
    assert isinstance(again, Event)
    assert math.isnan(again.data["nan"]) and again.data["inf"] == -math.inf


def test_keys_and_strings_msgspec_refuses_are_written_by_json() -> None:
    class Name(str):
        pass

    assert dumps({True: 1, None: 2, 3: Name("x")}) == '{"true":1,"null":2,"3":"x"}'
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        dumps({"thing": object()})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"v":NaN}', "nan"),  # json's own extensions, refused by msgspec
        ('{"v":"\\ud800"}', "\ud800"),  # a lone surrogate, escaped as json writes it
        ('{"v":123456789012345678901234567890}', 123456789012345678901234567890),
        ('{"v":1,"v":2}', 2),  # the last of duplicate keys, as json.loads
    ],
)
def test_stored_text_reads_as_json_loads_reads_it(text: str, expected: Any) -> None:
    value = decode(raw("t.read", text)).payload()["v"]
    if expected == "nan":
        assert math.isnan(value)
    else:
        assert value == expected and type(value) is type(expected)


def test_payload_holds_the_fields_only_however_the_instance_was_changed() -> None:
    @dataclass(kw_only=True, slots=True)
    class Slim(BaseEvent):
        event_type: ClassVar[str] = "t.slim"
        n: int

    event = create_event(AssetDiscoveredEvent, asset_id="a", file_path="/p", media_type="i")
    expected = {"asset_id": "a", "file_path": "/p", "media_type": "i", "file_size": 0,
                "metadata": {}}  # fmt: skip
    assert event.payload() == expected and list(event.payload()) == list(expected)
    event.__dict__["note"] = "set by a handler"  # an attribute besides the fields
    assert event.payload() == expected
    del event.__dict__["note"]
    del event.asset_id
    event.asset_id = "b"  # the instance dict's order changed
    assert event.payload() == {**expected, "asset_id": "b"}
    assert Slim(n=4).payload() == {"n": 4}


@pytest.mark.parametrize("cls", SAMPLE_EVENTS, ids=lambda c: c.event_type)
def test_sample_events_take_the_fast_decode_path(cls: type[BaseEvent]) -> None:
    """codec._instance_template relies on how dataclasses generates __init__ (its code's
    qualified name); if a Python release changes that, decoding silently halves its speed:
    this fails loudly instead, so the check can be updated."""
    from eventkit.codec import _plan

    if datetime_fields(cls):
        return  # such classes convert text to datetimes: always built by __init__
    assert _plan(cls.event_type, cls.version).template is not None, cls


def test_records_made_in_c_equal_what_their_constructors_make() -> None:
    """new_event_of/stored_event_of skip the named tuples' constructors (records.py says why):
    they must stay the same records, field for field, whatever fields the classes gain."""
    new_fields = tuple(f"n{i}" for i in range(len(NewEvent._fields)))
    stored_fields = tuple(f"s{i}" for i in range(len(StoredEvent._fields)))
    made_new, made_stored = new_event_of(new_fields), stored_event_of(stored_fields)
    assert type(made_new) is NewEvent and made_new == NewEvent(*new_fields)
    assert type(made_stored) is StoredEvent and made_stored == StoredEvent(*stored_fields)
    assert made_stored.causation_id == stored_fields[StoredEvent._fields.index("causation_id")]
    # what a store makes from a NewEvent at a position: the same as the constructor would
    assert made_new.stored(7, 9) == StoredEvent(7, *new_fields[:6], 9, *new_fields[6:])
