"""Every public exception of eventkit, each carrying its fields and a hint on what to do."""

from __future__ import annotations


class EventKitError(Exception):
    """Base of all eventkit errors."""


class ConfigError(EventKitError, ValueError):
    """A configuration value (from the environment or EventStoreConfig) cannot be used."""

    def __init__(self, variable: str, value: object, hint: str) -> None:
        self.variable = variable
        self.value = value
        self.hint = hint
        super().__init__(f"{variable}={value!r} cannot be used: {hint}")


class MigrationError(EventKitError, ValueError):
    """A migration cannot be registered (wrong direction, duplicate step, cycle) or failed to run."""


class UnsupportedVersionError(EventKitError):
    """A stored event's version cannot be brought to the current one (newer than known, or a gap)."""

    def __init__(
        self, event_type: str, stored_version: int, supported_version: int, reason: str = ""
    ) -> None:
        self.event_type = event_type
        self.stored_version = stored_version
        self.supported_version = supported_version
        detail = f" ({reason})" if reason else ""
        super().__init__(
            f"{event_type} is stored at version {stored_version} but this process supports "
            f"version {supported_version}{detail}: deploy code that registers version "
            f"{stored_version} (or the missing migration), then replay the DLQ"
        )


class SerializationError(EventKitError, ValueError):
    """An event cannot be encoded to JSON, or a stored payload cannot be decoded."""


class StoreError(EventKitError):
    """The event store failed an operation."""


class StoreUnavailableError(StoreError):
    """The event store cannot be reached (Redis down, SQLite file not writable or locked)."""


class GroupNotFoundError(StoreError):
    """A consumer group was named that the store does not hold."""

    def __init__(self, group: str) -> None:
        self.group = group
        super().__init__(f"consumer group {group!r} does not exist: subscribe to create it")


class GroupBusyError(StoreError):
    """A group's position cannot move while its members hold leases (they are handling events)."""

    def __init__(self, group: str, leased: int) -> None:
        self.group = group
        self.leased = leased
        super().__init__(
            f"consumer group {group!r} has {leased} deliveries leased to its consumers: stop its "
            "consumers or pass force=True (their late acks will not count)"
        )


class LeaseLostError(EventKitError):
    """The delivery's lease expired or was taken by another consumer; its result will not count."""


class BusClosedError(EventKitError, RuntimeError):
    """The bus is closed or was never initialized."""


__all__ = [
    "BusClosedError",
    "ConfigError",
    "EventKitError",
    "GroupBusyError",
    "GroupNotFoundError",
    "LeaseLostError",
    "MigrationError",
    "SerializationError",
    "StoreError",
    "StoreUnavailableError",
    "UnsupportedVersionError",
]
