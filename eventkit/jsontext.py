"""JSON text of payloads: one writer and one reader, shared by codec, events and transfer.

msgspec does the common work (five times as fast as json); the json module takes what msgspec
refuses, so both paths accept and write the same text. A leaf module: msgspec, json, checks.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import PurePath
from typing import Any

import msgspec

from eventkit.checks import has_lone_surrogate


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
#: reads a JSON object in a third of json.loads' time and to the same values (integers of any
#: size included); what it refuses goes to parse_refused, so both accept exactly the same text
parse_object: Callable[[str], dict[str, Any]] = msgspec.json.Decoder(dict).decode
#: what parse_object raises for text it does not take (json.loads may still read it)
REFUSED = (msgspec.MsgspecError, RecursionError, TypeError, ValueError)


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
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise ValueError("nesting deeper than the recursion limit") from None
    if has_lone_surrogate(text):  # msgspec refuses these; json would write what no store keeps
        raise ValueError("it holds a lone surrogate, which is not valid Unicode text")
    return text


def json_safe(value: Any) -> Any:
    """The value as plain JSON types (datetimes as ISO text, sets as lists)."""
    return json.loads(dumps(value))


def parse_refused(text: str) -> Any:
    """What parse_object refused, read by json.loads (NaN, Infinity, what json itself writes);
    ValueError says what is wrong with the rest, lone surrogates (text that was not UTF-8)
    included."""
    if isinstance(text, str) and has_lone_surrogate(text):
        raise ValueError("it is not UTF-8 text (it holds a lone surrogate)")
    return json.loads(text)
