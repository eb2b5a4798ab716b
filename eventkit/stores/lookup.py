"""Looking events up by what they carry: a payload field's value, or the story they belong to.

The rules every backend shares: SQLite asks JSON1 (with an index the user may add), memory and
Redis scan the log with payload_matches and in_story below.
"""

from __future__ import annotations

import json
import re
from typing import Any

from eventkit.errors import ConfigError
from eventkit.records import StoredEvent

__all__ = ["PayloadValue", "check_value", "field_parts", "in_story", "payload_matches"]

#: what a payload field can be compared with: JSON scalars (None is a JSON null)
PayloadValue = str | int | float | bool | None

#: a payload field path: names joined by dots ("asset_id", "metadata.width"); the names are
#: identifiers, so a path can be written into SQL (an index expression takes no parameters)
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_MISSING = object()


def field_parts(field_path: str) -> tuple[str, ...]:
    """The names of a payload field path; ConfigError for one that is not a dotted identifier."""
    if not isinstance(field_path, str) or not _PATH.fullmatch(field_path):
        raise ConfigError(
            "field_path", field_path, 'use payload field names joined by dots, e.g. "asset_id"'
        )
    return tuple(field_path.split("."))


def check_value(value: object) -> PayloadValue:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise ConfigError(
            "value", value, "compare a payload field with a str, number, bool or None"
        )
    return value


def payload_matches(data: str | bytes, parts: tuple[str, ...], value: PayloadValue) -> bool:
    """The payload's field at `parts` equals `value` as JSON sees it: a string only matches a
    string, a number a number (1 == 1.0), a bool a bool, None a null (not a missing field).
    A payload that is not a JSON object matches nothing."""
    try:
        found: Any = json.loads(data)
    except (TypeError, ValueError, RecursionError):
        return False
    for name in parts:
        if not isinstance(found, dict):
            return False
        found = found.get(name, _MISSING)
    if found is _MISSING:
        return False
    if value is None or isinstance(value, bool):
        return found is value
    if isinstance(value, str):
        return type(found) is str and found == value
    return type(found) in (int, float) and bool(found == value)


def in_story(stored: StoredEvent, correlation_id: str) -> bool:
    """The event belongs to that story (one stored before correlation existed: its own)."""
    return (stored.correlation_id or stored.event_id) == correlation_id
