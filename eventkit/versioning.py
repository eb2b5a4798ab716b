"""Schema versions of event types and the chain of migrations that brings old payloads up to date."""

from __future__ import annotations

import copy
import dataclasses
import logging
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from eventkit.errors import MigrationError, UnsupportedVersionError

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=type)


class EventMigration:
    """One step of an event type's schema: payload at from_version -> payload at to_version.

    Subclasses give from_version/to_version as class attributes or properties, and may name
    their event_type (or pass it to register_migration).
    """

    event_type: str | None = None
    from_version: int
    to_version: int

    def migrate(self, event_data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} must implement migrate(event_data)")


def _same_definition(first: type, second: type) -> bool:
    """A class defined again: by @dataclass(slots=True), which makes a new class (its qualified
    name is set only after it is registered), or a notebook cell run again. The new one is what
    the code now uses, so it replaces the old."""
    return (first.__module__, first.__name__) == (second.__module__, second.__name__)


@dataclass
class EventRegistry:
    """Classes by (event type, version) and migrations by (event type, from_version)."""

    classes: dict[str, dict[int, type]] = field(default_factory=dict)
    descriptions: dict[tuple[str, int], str] = field(default_factory=dict)
    migrations: dict[str, dict[int, EventMigration]] = field(default_factory=dict)
    #: counts changes, so what readers derive from the registry (codec's decode plans) knows
    #: when it is stale
    generation: int = field(default=0, repr=False, compare=False)

    def register_class(
        self, cls: type, *, replace_existing: bool = True, description: str = ""
    ) -> None:
        event_type, version = cls.event_type, cls.version  # type: ignore[attr-defined]
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise MigrationError(
                f"{cls.__name__}: version must be a positive int, got {version!r} "
                "(versions are integers everywhere, e.g. version=2)"
            )
        versions = self.classes.setdefault(event_type, {})
        existing = versions.get(version)
        if existing is not None and not replace_existing and not _same_definition(existing, cls):
            return
        self.generation += 1
        # the same class registered before at another version (class body default) is forgotten
        for other_version, other in list(versions.items()):
            if other is cls and other_version != version:
                del versions[other_version]
        versions[version] = cls
        if description:
            self.descriptions[(event_type, version)] = description

    def register_migration(self, migration: EventMigration, event_type: str | None = None) -> None:
        event_type = event_type or migration.event_type
        name = type(migration).__name__
        if not event_type:
            raise MigrationError(
                f"{name} names no event type: set event_type on the class or pass "
                "register_migration(migration, event_type='...')"
            )
        start, end = migration.from_version, migration.to_version
        for label, value in (("from_version", start), ("to_version", end)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise MigrationError(f"{name}.{label} must be a positive int, got {value!r}")
        if end < start + 1:
            raise MigrationError(
                f"{name} goes from version {start} to {end}: a migration must go up by at least 1"
            )
        self.generation += 1
        steps = self.migrations.setdefault(event_type, {})
        existing = steps.get(start)
        if existing is not None and type(existing).__qualname__ != type(migration).__qualname__:
            raise MigrationError(
                f"{event_type} already has a migration from version {start} "
                f"({type(existing).__name__}); remove one of them"
            )
        steps[start] = migration
        if self._has_cycle(event_type):
            del steps[start]
            raise MigrationError(f"{name} would make the {event_type} migrations loop")

    def _has_cycle(self, event_type: str) -> bool:
        steps = self.migrations.get(event_type, {})
        for first in steps:
            seen, version = set(), first
            while version in steps:
                if version in seen:
                    return True
                seen.add(version)
                version = steps[version].to_version
        return False

    def current_version(self, event_type: str) -> int | None:
        versions = self.classes.get(event_type)
        return max(versions) if versions else None

    def current_class(self, event_type: str) -> type | None:
        version = self.current_version(event_type)
        return None if version is None else self.classes[event_type][version]

    def migrate(
        self, event_type: str, version: int, data: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Bring a payload from its stored version to the current one, one step at a time."""
        current = self.current_version(event_type)
        if current is None:
            return version, data
        if version > current:
            raise UnsupportedVersionError(event_type, version, current, "newer than this code")
        steps = self.migrations.get(event_type, {})
        while version < current:
            step = steps.get(version)
            if step is None:
                raise UnsupportedVersionError(
                    event_type, version, current, f"no migration registered from version {version}"
                )
            try:
                data = step.migrate(copy.deepcopy(data))
            except Exception as e:
                raise MigrationError(
                    f"{type(step).__name__} failed on {event_type} v{version}: {e!r}; "
                    "fix the migration, then replay the DLQ"
                ) from e
            if not isinstance(data, dict):
                raise MigrationError(f"{type(step).__name__}.migrate must return a dict")
            version = step.to_version
        if version != current:
            raise UnsupportedVersionError(
                event_type, version, current, f"the chain stops at version {version}"
            )
        return version, data

    def restore(self, saved: EventRegistry) -> None:
        """Take back the classes and migrations of an earlier copy()."""
        self.classes, self.descriptions = saved.classes, saved.descriptions
        self.migrations = saved.migrations
        self.generation += 1

    def copy(self) -> EventRegistry:
        return EventRegistry(
            {k: dict(v) for k, v in self.classes.items()},
            dict(self.descriptions),
            {k: dict(v) for k, v in self.migrations.items()},
        )


#: the process-wide registry the decorators write into
registry = EventRegistry()


@typing.dataclass_transform(kw_only_default=True, field_specifiers=(dataclasses.field,))
def versioned_event(
    version: int, event_type: str | None = None, description: str = ""
) -> Callable[[C], C]:
    """Register a class as `version` of `event_type` (making it a dataclass if it is not one)."""

    def register(cls: C) -> C:
        cls.version = version  # type: ignore[attr-defined]
        if event_type is not None:
            cls.event_type = event_type  # type: ignore[attr-defined]
        if "__dataclass_fields__" not in cls.__dict__:
            cls = typing.cast(C, dataclasses.dataclass(kw_only=True)(cls))
        registry.register_class(cls, description=description)
        return cls

    return register


def register_migration(
    migration: EventMigration | type[EventMigration], event_type: str | None = None
) -> None:
    """Add a migration step to the registry (a class is instantiated)."""
    instance = migration() if isinstance(migration, type) else migration
    registry.register_migration(instance, event_type)


@contextmanager
def isolated_registry() -> Iterator[EventRegistry]:
    """Run with a copy of the registry and restore it after: for tests and what-if notebooks."""
    saved = registry.copy()
    try:
        yield registry
    finally:
        registry.restore(saved)
