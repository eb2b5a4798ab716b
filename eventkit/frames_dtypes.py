"""Which dtype each payload column gets, from the event classes' annotations or from its values.

A column's dtype never depends on which rows a frame holds (SPEC §6):

- a payload field that a registered event class declares gets the dtype of its annotation
  (`DECLARED`; ``X | None`` as X): ``int`` -> ``Int64``, ``float`` -> ``Float64``, ``str`` ->
  ``string``, ``bool`` -> ``boolean``, ``datetime`` -> ``datetime64[ms, UTC]``, ``list[str]``
  (``list`` of int, float, str or bool) -> an Arrow list dtype (``list<item: string>[pyarrow]``,
  zero-copy from the parser, an item reads as a list), other lists, dicts, tuples and sets ->
  ``object``. Classes that declare ``int`` and ``float`` for one name give ``Float64``; other
  disagreements, and annotations such as ``Any``, leave the column to its values.
- any other column (generic events, nested ``data.metadata.*`` keys, fields of old versions) is
  typed from *every* value the store holds under that name (`eventkit.frames_kinds.StoreKinds`), by `inferred`: only
  whole numbers -> ``Int64`` (``2160.0`` counts as whole), numbers -> ``Float64``, booleans ->
  ``boolean``, text -> ``string``, any list -> ``object``; a mix of kinds (``10`` and
  ``"12 MB"``) -> ``string`` holding each value's JSON text (``"10"``), so nothing is lost; a
  name whose values are all null -> ``string``.
- a value that does not fit a declared dtype (``"12 MB"`` for an ``int``, ``2.5`` for an ``int``,
  text that is not ISO 8601 for a ``datetime``) becomes NA and is counted (`Column.coerced`).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import NoneType, UnionType
from typing import Any, NamedTuple, TypeAlias

import pandas as pd
import pyarrow as pa

from eventkit.events import Event, payload_fields
from eventkit.versioning import registry

DATA_PREFIX = "data."
UTC_MS = "datetime64[ms, UTC]"

#: a column's dtype: a pandas dtype name, or a list dtype (Arrow lists, zero-copy from the parser)
Dtype: TypeAlias = "str | pd.ArrowDtype"


class Target(NamedTuple):
    """What a payload column becomes: a dtype, and whether values that do not fit are NA
    (declared) or rendered as JSON text (a mixed column typed by its values)."""

    dtype: Dtype
    declared: bool
    #: for messages: "int in AssetDiscoveredEvent.file_size" or "its values"
    origin: str


_SCALARS: dict[Any, str] = {
    int: "Int64", float: "Float64", str: "string", bool: "boolean", datetime: UTC_MS,
    "int": "Int64", "float": "Float64", "str": "string", "bool": "boolean", "datetime": UTC_MS,
}  # fmt: skip
#: the Arrow item type of a declared list[X]
_LIST_ITEMS = {"Int64": pa.int64(), "Float64": pa.float64(), "string": pa.string(),
               "boolean": pa.bool_()}  # fmt: skip
_CONTAINERS = (list, dict, tuple, set, frozenset)
_CONTAINER_NAMES = ("list", "dict", "tuple", "set", "frozenset", "List", "Dict", "Tuple", "Set")


def _annotation_dtype(hint: Any) -> Dtype | None:
    """The column dtype of a field annotation; None: left to the values (Any, unions, classes)."""
    if isinstance(hint, str):  # an annotation get_type_hints could not resolve: its text
        return _annotation_text_dtype(hint)
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is UnionType:
        found = {_annotation_dtype(a) for a in typing.get_args(hint) if a is not NoneType}
        if found == {"Int64", "Float64"}:
            return "Float64"
        return found.pop() if len(found) == 1 else None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return _list_dtype(_annotation_dtype(item) if item in _SCALARS else None)
    try:
        if hint in _SCALARS:
            return _SCALARS[hint]
    except TypeError:  # an unhashable annotation
        return None
    if hint in _CONTAINERS or origin in _CONTAINERS:
        return "object"
    return None


def _annotation_text_dtype(hint: str) -> Dtype | None:
    text = hint.strip()
    if text.startswith("Optional[") and text.endswith("]"):
        text = text.removeprefix("Optional[").removesuffix("]")
    parts = [p.strip() for p in text.split("|") if p.strip() != "None"]
    if len(parts) != 1:
        return None
    name = parts[0]
    if name.startswith(("list[", "List[")):
        return _list_dtype(_SCALARS.get(name[5:-1].strip()))
    return _SCALARS.get(name) or ("object" if name.startswith(_CONTAINER_NAMES) else None)


def _list_dtype(item: Dtype | None) -> Dtype:
    """list[int], list[str], ...: an Arrow list of that item type; other lists: object."""
    kind = _LIST_ITEMS.get(item) if isinstance(item, str) else None
    return "object" if kind is None else pd.ArrowDtype(pa.list_(kind))


def _class_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # annotations naming something local: their text
        return {f.name: f.type for f in dataclasses.fields(cls)}


_declared: dict[frozenset[str], dict[str, Target]] = {}
_declared_generation = -1


def declared(event_types: Iterable[str]) -> dict[str, Target]:
    """Column -> dtype of every payload field the registered classes of these event types (any
    version) declare; worked out again when the registry changes. Only the frame's own types
    count: a class of another type that happens to share a field name says nothing here."""
    global _declared_generation
    if _declared_generation != registry.generation:
        _declared.clear()
        _declared_generation = registry.generation
    key = frozenset(event_types)
    known = _declared.get(key)
    if known is None:
        known = _declared[key] = _declared_by(key)
    return known


def _declared_by(event_types: frozenset[str]) -> dict[str, Target]:
    found: dict[str, dict[Dtype, str]] = {}  # column -> dtype -> where it is declared
    for event_type, versions in registry.classes.items():
        if event_type not in event_types:
            continue
        for cls in versions.values():
            if cls is Event or not dataclasses.is_dataclass(cls):
                continue
            hints = _class_hints(cls)
            for name in sorted(payload_fields(cls)):
                dtype = _annotation_dtype(hints.get(name))
                if dtype is not None:
                    where = f"{_hint_text(hints.get(name))} in {cls.__name__}.{name}"
                    found.setdefault(DATA_PREFIX + name, {}).setdefault(dtype, where)
    targets: dict[str, Target] = {}
    for column, dtypes in found.items():
        if len(dtypes) == 1:
            (dtype, where), = dtypes.items()  # fmt: skip
            targets[column] = Target(dtype, True, where)
        elif set(dtypes) == {"Int64", "Float64"}:
            targets[column] = Target("Float64", True, " and ".join(dtypes.values()))
    return targets


def _hint_text(hint: Any) -> str:
    if isinstance(hint, str) or typing.get_origin(hint) is not None:
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", None) or str(hint)


def inferred(kinds: set[str]) -> Target:
    """The dtype of an undeclared column from the kinds of all of its values in the store."""
    if not kinds or kinds == {"str"}:
        return Target("string", False, "its values")
    if "list" in kinds:
        return Target("object", False, "its values")
    for dtype, allowed in (
        ("boolean", {"bool"}),
        ("Int64", {"int"}),
        ("Float64", {"int", "float"}),
    ):
        if kinds <= allowed:
            return Target(dtype, False, "its values")
    return Target("string", False, "its values (of mixed kinds, as JSON text)")


def targets(
    columns: Iterable[str], kinds: Mapping[str, set[str]], event_types: Iterable[str]
) -> dict[str, Target]:
    """Each column's dtype: declared by a class of one of these types, else from its kinds."""
    known = declared(event_types)
    return {c: known.get(c) or inferred(kinds.get(c, set())) for c in columns}


def needs_store_kinds(columns: Iterable[str], event_types: Iterable[str]) -> bool:
    """Whether some column's dtype comes from its values (so from the whole store's values)."""
    known = declared(event_types)
    return any(c not in known for c in columns)
