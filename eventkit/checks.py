"""Checks at the door: names, numbers, text and times that would poison the store if let in.

A leaf module (errors only), so config, bus, codec, stores and the CLI all refuse the same things
with the same words (SPEC §7 "Refused at the door").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, cast

from eventkit.clock import datetime_to_ms
from eventkit.errors import ConfigError, SerializationError

#: datetime's range in epoch milliseconds: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999Z
MIN_TIMESTAMP_MS = -62_135_596_800_000
MAX_TIMESTAMP_MS = 253_402_300_799_999
#: what SQLite's INTEGER (and Redis' integer replies) hold
MAX_INT64 = 2**63 - 1


def has_lone_surrogate(text: str) -> bool:
    """True when `text` cannot be written as UTF-8 (a lone surrogate, e.g. from bad decoding)."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_name(label: str, value: object) -> str:
    """A group, consumer, event type or namespace name: a non-empty string without NUL."""
    if not isinstance(value, str):
        raise ConfigError(label, value, "use a non-empty string")
    if not value.strip():
        raise ConfigError(label, value, "use a non-empty name")
    if "\x00" in value:
        raise ConfigError(label, value, "a name cannot hold the NUL character")
    if has_lone_surrogate(value):
        raise ConfigError(label, value, "a name must be valid Unicode (it holds a lone surrogate)")
    return value


def check_text(label: str, value: str) -> str:
    """Text to store (a source, a payload): must be writable as UTF-8, else SerializationError."""
    if has_lone_surrogate(value):
        raise SerializationError(
            f"{label} holds a lone surrogate, which no store can keep as UTF-8 text: "
            "fix the text (e.g. decode bytes with errors='replace')"
        )
    if "\x00" in value:
        raise SerializationError(f"{label} holds the NUL character: remove it")
    return value


def check_number(
    label: str,
    value: Any,
    *,
    integer: bool = False,
    minimum: float = 0,
    allow_minimum: bool = True,
    maximum: float | None = None,
) -> Any:
    """A configured number: a real int (or float unless `integer`), never bool, NaN or infinite,
    at least `minimum` (strictly above it when not `allow_minimum`), at most `maximum`."""
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ConfigError(label, value, f"use {'a whole number' if integer else 'a number'}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(label, value, "use a finite number")
    number = cast(float, value)  # an int or a finite float by now
    if number < minimum if allow_minimum else number <= minimum:
        bound = f">= {minimum}" if allow_minimum else f"> {minimum}"
        raise ConfigError(label, value, f"use a number {bound}")
    if maximum is not None and number > maximum:
        raise ConfigError(label, value, f"use a number <= {maximum}")
    return value


def timestamp_in_range(ms: object) -> bool:
    """True for integer epoch milliseconds that a datetime can hold (years 1 to 9999)."""
    return (
        type(ms) is int and MIN_TIMESTAMP_MS <= ms <= MAX_TIMESTAMP_MS  # noqa: E721 (not bool)
    )


def event_types_of(event_types: Sequence[str] | str) -> tuple[str, ...]:
    """One type or several as a tuple of checked names ('*' for every type)."""
    if isinstance(event_types, str):
        event_types = [event_types]
    types = tuple(event_types)
    if not types:
        raise ConfigError("event_types", event_types, "name at least one event type (or '*')")
    for event_type in types:
        check_name("event_types", event_type)
    return types


def group_start_of(
    start: Literal["earliest", "latest"] | datetime,
) -> Literal["earliest", "latest"] | int:
    """A new group's start as the store takes it: a datetime becomes epoch milliseconds."""
    if isinstance(start, datetime):
        return datetime_to_ms(start)
    if start in ("earliest", "latest"):
        return start
    raise ConfigError("start", start, "use 'earliest', 'latest' or a datetime")
