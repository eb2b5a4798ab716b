"""eventkit: durable events on asyncio — a store and bus with consumer groups, retries, DLQ and replay."""

from eventkit.bus import EnhancedEventBus, EventBus
from eventkit.config import EventStoreConfig
from eventkit.consumer import Delivery
from eventkit.events import BaseEvent, Event, create_event
from eventkit.runner import run
from eventkit.stores.base import DeadLetter, DeliveryStatus
from eventkit.versioning import EventMigration, register_migration, versioned_event

__version__ = "0.1.0"

__all__ = [
    "BaseEvent",
    "DeadLetter",
    "Delivery",
    "DeliveryStatus",
    "EnhancedEventBus",
    "Event",
    "EventBus",
    "EventMigration",
    "EventStoreConfig",
    "create_event",
    "register_migration",
    "run",
    "versioned_event",
]
