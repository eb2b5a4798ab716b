"""Backends behind one protocol; open_store imports only the one a config asks for."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from eventkit.config import DEFAULT_PATH, EventStoreConfig
from eventkit.errors import ConfigError
from eventkit.stores.base import (
    Claim,
    DeadLetter,
    DeliveryRecord,
    DeliveryStatus,
    EventStore,
    NewEvent,
    StoredEvent,
    TrimResult,
)
from eventkit.stores.memory import MemoryEventStore

if TYPE_CHECKING:
    from eventkit.stores.redis import RedisEventStore
    from eventkit.stores.sqlite import SQLiteEventStore


def open_store(config: EventStoreConfig, *, read_only: bool = False) -> EventStore:
    """Build (not yet open) the store a config names.

    read_only: the store will only be read (the CLI's stats, export and DLQ listing), so opening
    it creates, migrates or changes no file or folder: a SQLite file is opened read-only and must
    already be an eventkit store. Redis and memory stores write only when asked to.
    """
    if config.backend == "memory":
        return MemoryEventStore()
    if config.backend == "sqlite":
        from eventkit.stores.sqlite import SQLiteEventStore

        if read_only:  # not resolved_path: that creates the folder
            path = Path(config.path if config.path is not None else DEFAULT_PATH).expanduser()
            return SQLiteEventStore(path, busy_timeout_ms=config.busy_timeout_ms, read_only=True)
        return SQLiteEventStore(config.resolved_path, busy_timeout_ms=config.busy_timeout_ms)
    if config.backend == "redis":
        try:
            from eventkit.stores.redis import RedisEventStore
        except ImportError as e:
            raise ConfigError(
                "EVENT_STORE_BACKEND", "redis", "install the driver: pip install 'eventkit[redis]'"
            ) from e
        return cast(
            EventStore,
            RedisEventStore(
                config.resolved_redis_url, namespace=config.namespace, read_only=read_only
            ),
        )
    raise ConfigError("backend", config.backend, "use sqlite, redis or memory")


def __getattr__(name: str) -> object:
    # the SQLite and Redis classes load on first use, so `import eventkit` needs neither driver
    if name == "SQLiteEventStore":
        from eventkit.stores.sqlite import SQLiteEventStore

        return SQLiteEventStore
    if name == "RedisEventStore":
        from eventkit.stores.redis import RedisEventStore

        return RedisEventStore
    raise AttributeError(name)


__all__ = [
    "Claim",
    "DeadLetter",
    "DeliveryRecord",
    "DeliveryStatus",
    "EventStore",
    "MemoryEventStore",
    "NewEvent",
    "RedisEventStore",
    "SQLiteEventStore",
    "StoredEvent",
    "TrimResult",
    "open_store",
]
