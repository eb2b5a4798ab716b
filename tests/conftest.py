"""Fixtures: one real store per backend (memory, SQLite file, Redis server, Redis Cluster), and
buses on them."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventkit import EventBus, EventStoreConfig
from eventkit.stores import MemoryEventStore, open_store
from eventkit.stores.base import EventStore
from eventkit.stores.redis_keys import Keys
from eventkit.versioning import isolated_registry

#: the store backends; "redis-cluster" is backend "redis" on a 3-master cluster (the same config,
#: only the URL differs: it names one node of the cluster)
BACKENDS = ["memory", "sqlite", "redis", "redis-cluster"]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL exported by the test command, else a redis-server started here for the session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    from tests.redis_server import RedisServer

    with RedisServer() as server:
        os.environ["REDIS_URL"] = server.url
        yield server.url
        del os.environ["REDIS_URL"]


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Any]:
    """A 3-master Redis Cluster for the session, started on first use (tests/redis_cluster.py)."""
    from tests.redis_cluster import RedisClusterServers

    with RedisClusterServers() as cluster:
        yield cluster


class Backend:
    """Makes stores (and configs) that all point at one place, as several processes would."""

    def __init__(self, param: str, tmp_path: Path, redis_url: str | None) -> None:
        #: the backend setting; `param` tells "redis" on one node from "redis-cluster"
        self.name = "redis" if param == "redis-cluster" else param
        self.param = param
        self.path = tmp_path / "events.db"
        self.redis_url = redis_url
        self.namespace = f"test-{uuid.uuid4().hex[:10]}"
        self._memory = MemoryEventStore()

    def config(self, **overrides: Any) -> EventStoreConfig:
        values: dict[str, Any] = {
            "backend": self.name,
            "path": self.path,
            "redis_url": self.redis_url,
            "namespace": self.namespace,
            "poll_interval_seconds": 0.05,
            "trim_interval_hours": None,
        }
        values.update(overrides)
        return EventStoreConfig(**values)

    def new_store(self) -> EventStore:
        return self._memory if self.name == "memory" else open_store(self.config())


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    elif request.param == "redis-cluster":
        url = request.getfixturevalue("redis_cluster").url
    made = Backend(request.param, tmp_path, url)
    with isolated_registry():
        yield made
    if url is not None:
        _drop_namespace(url, made.namespace)


def _drop_namespace(url: str, namespace: str) -> None:
    """Delete the namespace's keys (both layouts), on one node or on every master of a cluster."""
    import redis
    from redis.cluster import RedisCluster

    with redis.Redis.from_url(url) as probe:
        clustered = probe.info("cluster").get("cluster_enabled") == 1
    client = RedisCluster.from_url(url) if clustered else redis.Redis.from_url(url)
    try:
        for pattern in (Keys(namespace).pattern, f"{namespace}*"):
            for key in list(client.scan_iter(match=pattern, count=1000)):
                client.delete(key)
    finally:
        client.close()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[EventStore]:
    opened = backend.new_store()
    await opened.open()
    yield opened
    await opened.close()


BusFactory = Callable[..., Awaitable[EventBus]]


@pytest.fixture
async def make_bus(backend: Backend) -> AsyncIterator[BusFactory]:
    """Buses on the backend's one store location; each closed at the end of the test."""
    made: list[EventBus] = []

    async def make(**overrides: Any) -> EventBus:
        config = backend.config(**overrides)
        bus = EventBus(config, store=backend.new_store())
        await bus.initialize()
        made.append(bus)
        return bus

    yield make
    for bus in made:
        await bus.close(timeout=1.0)


@pytest.fixture
async def bus(make_bus: BusFactory) -> EventBus:
    return await make_bus()
