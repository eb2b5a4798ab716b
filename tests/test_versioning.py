"""The migration registry: validation of steps, chains, and what a gap or newer version does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from eventkit import BaseEvent, EventMigration, register_migration, versioned_event
from eventkit.errors import MigrationError, UnsupportedVersionError
from eventkit.versioning import EventRegistry, isolated_registry, registry


def _step(start: int, end: int, event_type: str = "t.x") -> EventMigration:
    class Step(EventMigration):
        from_version = start
        to_version = end

        def migrate(self, event_data: dict[str, Any]) -> dict[str, Any]:
            event_data.setdefault("trail", []).append(end)
            return event_data

    Step.__qualname__ = f"Step{start}to{end}"
    step = Step()
    step.event_type = event_type
    return step


def _registry_with_versions(*versions: int) -> EventRegistry:
    reg = EventRegistry()
    for version in versions:
        reg.classes.setdefault("t.x", {})[version] = type(f"V{version}", (), {})
    return reg


def test_registry_refuses_a_step_that_does_not_go_up() -> None:
    reg = EventRegistry()
    with pytest.raises(MigrationError, match="go up by at least 1"):
        reg.register_migration(_step(2, 2))
    with pytest.raises(MigrationError, match="go up"):
        reg.register_migration(_step(3, 1))


def test_registry_refuses_a_duplicate_step() -> None:
    reg = EventRegistry()
    reg.register_migration(_step(1, 2))
    with pytest.raises(MigrationError, match="already has a migration from version 1"):
        reg.register_migration(_step(1, 3))


def test_registry_refuses_a_migration_without_event_type() -> None:
    step = _step(1, 2)
    step.event_type = None
    with pytest.raises(MigrationError, match="names no event type"):
        EventRegistry().register_migration(step)


def test_chain_runs_step_by_step_on_a_copy() -> None:
    reg = _registry_with_versions(1, 2, 4)
    reg.register_migration(_step(1, 2))
    reg.register_migration(_step(2, 4))
    original: dict[str, Any] = {"trail": []}
    version, data = reg.migrate("t.x", 1, original)
    assert (version, data["trail"]) == (4, [2, 4])
    assert original == {"trail": []}


def test_newer_version_and_gap_raise_unsupported_with_both_versions() -> None:
    reg = _registry_with_versions(1, 3)
    with pytest.raises(UnsupportedVersionError, match="version 5.*version 3"):
        reg.migrate("t.x", 5, {})
    with pytest.raises(UnsupportedVersionError, match="no migration registered from version 1"):
        reg.migrate("t.x", 1, {})


def test_a_failing_migration_is_a_migration_error_naming_it() -> None:
    class Broken(EventMigration):
        event_type = "t.x"
        from_version = 1
        to_version = 2

        def migrate(self, event_data: dict[str, Any]) -> dict[str, Any]:
            raise KeyError("score")

    reg = _registry_with_versions(1, 2)
    reg.register_migration(Broken())
    with pytest.raises(MigrationError, match="Broken failed"):
        reg.migrate("t.x", 1, {})


def test_versioned_event_makes_a_dataclass_and_the_highest_version_current() -> None:
    with isolated_registry():

        @versioned_event(version=2, event_type="asset.discovered", description="Added tags")
        class AssetDiscoveredV2(BaseEvent):
            asset_id: str
            tags: list[str]

        assert registry.current_class("asset.discovered") is AssetDiscoveredV2
        assert AssetDiscoveredV2(asset_id="a", tags=["x"]).version == 2
        assert registry.descriptions[("asset.discovered", 2)] == "Added tags"
    assert registry.current_version("asset.discovered") == 1  # isolation restored it


def test_register_migration_takes_a_class_or_an_instance() -> None:
    with isolated_registry():

        class Up(EventMigration):
            event_type = "t.y"
            from_version = 1
            to_version = 2

            def migrate(self, event_data: dict[str, Any]) -> dict[str, Any]:
                return event_data

        register_migration(Up)
        register_migration(Up())  # re-running a notebook cell replaces, no error
        assert 1 in registry.migrations["t.y"]


def test_a_class_defined_again_replaces_its_first_definition() -> None:
    with isolated_registry() as reg:

        def define(version_note: str) -> type[BaseEvent]:
            @dataclass(kw_only=True)
            class Noted(BaseEvent):  # as a notebook cell run twice defines it
                event_type: ClassVar[str] = "t.noted"
                note: str = version_note

            return Noted

        first, second = define("first"), define("second")
        assert reg.current_class("t.noted") is second

        @dataclass(kw_only=True)
        class Other(BaseEvent):  # another class for a type already taken does not displace it
            event_type: ClassVar[str] = "t.noted"

        assert reg.current_class("t.noted") is second and first is not second
