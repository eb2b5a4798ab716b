"""What the `eventkit` command's modules share: a bus on the chosen store, how to name that store,
and the error a command reports as one line."""

from __future__ import annotations

from pathlib import Path

from eventkit.bus import EventBus
from eventkit.config import DEFAULT_PATH, EventStoreConfig
from eventkit.stores import open_store


class CommandError(Exception):
    """Bad input the command found itself: printed as one line, exit code 1 (or `exit_code`: 2
    for a usage error found once the store was asked)."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def open_bus(config: EventStoreConfig, *, read_only: bool = False) -> EventBus:
    """A bus on the configured store; read_only opens it without creating or changing anything."""
    return EventBus(config, store=open_store(config, read_only=read_only))


def sqlite_path(config: EventStoreConfig) -> Path:
    """The SQLite file, ~ expanded, without creating its folder (as resolved_path would)."""
    return Path(config.path if config.path is not None else DEFAULT_PATH).expanduser()


def describe_store(config: EventStoreConfig) -> str:
    if config.backend == "sqlite":
        return f"SQLite store {sqlite_path(config)}"
    if config.backend == "redis":
        return f"Redis store {config.safe_redis_url} (namespace {config.namespace!r})"
    return "the memory store"
