"""The Redis store on a real 3-master Redis Cluster: namespaces spread over the masters, a master
killed with SIGKILL and restarted on its AOF, a namespace's slot moved while consumers run.

The cluster is this module's own (tests/redis_cluster.py), not the conformance suite's, because
these tests kill nodes and move slots. Every store is opened with the URL of the first node,
whichever master holds its namespace: the client finds the rest of the cluster from there.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from redis.crc import key_slot

from eventkit import BaseEvent, EventBus, EventStoreConfig
from eventkit.errors import StoreError, StoreUnavailableError
from eventkit.stores import open_store
from eventkit.stores.redis import RedisEventStore
from eventkit.stores.redis_keys import Keys
from tests.conftest import _drop_namespace
from tests.helpers import discovered, new_events, wait_until
from tests.redis_cluster import ClusterNode, RedisClusterServers

GROUP = "g"
PASSWORD = "cluster-S3cret-pw"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers() as started:
        yield started


def namespace_on(cluster: RedisClusterServers, node: ClusterNode, prefix: str) -> str:
    """A fresh namespace whose slot `node` serves (found by redis-py's own slot function)."""
    run = uuid.uuid4().hex[:6]
    for i in itertools.count():
        namespace = f"{prefix}-{run}-{i}"
        if cluster.node_of_slot(key_slot(Keys(namespace).events.encode())) is node:
            return namespace
    raise AssertionError("unreachable")


def _config(cluster: RedisClusterServers, namespace: str) -> EventStoreConfig:
    return EventStoreConfig(
        backend="redis", redis_url=cluster.url, namespace=namespace,
        poll_interval_seconds=0.05, trim_interval_hours=None,
    )  # fmt: skip


def _keys_by_node(cluster: RedisClusterServers, namespace: str) -> dict[int, list[str]]:
    """Every key of the namespace, by the port of the node that holds it (SCAN on each)."""
    found: dict[int, list[str]] = {}
    for node in cluster.nodes:
        with cluster.client(node) as client:
            keys = sorted(client.scan_iter(match=Keys(namespace).pattern, count=1000))
        if keys:
            found[node.port] = keys
    return found


async def test_two_namespaces_land_on_different_masters_and_both_work(
    cluster: RedisClusterServers,
) -> None:
    first, second = cluster.nodes[1], cluster.nodes[2]  # the URL names nodes[0]: found, not given
    namespaces = [namespace_on(cluster, first, "one"), namespace_on(cluster, second, "two")]
    buses, handled = [], [_Consumers(), _Consumers()]
    try:
        for namespace, consumers in zip(namespaces, handled, strict=True):
            bus = EventBus(_config(cluster, namespace))
            await bus.initialize()
            buses.append(bus)
            await consumers.start(bus)
        published = [
            await bus.publish_many([discovered(i, asset_id=f"{n}-{i}") for i in range(50)])
            for n, bus in enumerate(buses)
        ]
        for bus in buses:
            assert await bus.wait_idle(GROUP, timeout=30)
        for consumers, ids in zip(handled, published, strict=True):  # its own events, once each
            assert consumers.handled == Counter(ids)
        for namespace, node in zip(namespaces, (first, second), strict=True):
            by_node = _keys_by_node(cluster, namespace)
            assert list(by_node) == [node.port]  # every key of the namespace on its one master
            slots = {cluster.keyslot(key) for key in by_node[node.port]}
            assert len(slots) == 1  # CLUSTER KEYSLOT: one slot for the whole namespace
            assert cluster.node_of_slot(slots.pop()) is node  # CLUSTER NODES: served by it
            assert len(by_node[node.port]) >= 6  # stream, ids, groups, meta, the group's keys
        stats = [await bus.store.stats() for bus in buses]
        assert [s["store"]["total_events"] for s in stats] == [50, 50]
    finally:
        for bus in buses:
            await bus.close(timeout=1.0)
        for namespace in namespaces:
            _drop_namespace(cluster.url, namespace)


async def test_a_cluster_is_detected_and_opened_with_the_plain_redis_backend(
    cluster: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventkit")
    namespace = namespace_on(cluster, cluster.nodes[2], "open")
    store = open_store(_config(cluster, namespace))
    assert isinstance(store, RedisEventStore)
    await store.open()
    try:
        assert "(cluster)" in caplog.text
        positions = await store.append([])
        assert positions == []
        assert (await store.stats())["store"]["total_events"] == 0
    finally:
        await store.close()


async def test_a_cluster_behind_tls_and_a_password_works_and_never_shows_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventkit")
    with RedisClusterServers(password=PASSWORD, tls=True) as secured:
        assert secured.url.startswith("rediss://") and PASSWORD in secured.url
        namespace = namespace_on(secured, secured.nodes[2], "tls")
        consumers = _Consumers()
        async with EventBus(_config(secured, namespace)) as bus:
            await consumers.start(bus)
            ids = await bus.publish_many([discovered(i) for i in range(20)])
            assert await bus.wait_idle(GROUP, timeout=30)
            assert consumers.handled == Counter(ids)
            shown = [repr(bus.store), str(bus.config)]
        wrong = secured.url.replace(PASSWORD, "not-" + PASSWORD)
        store = open_store(EventStoreConfig(backend="redis", redis_url=wrong, namespace=namespace))
        with pytest.raises(StoreError) as refused:
            await store.open()
        shown.append(str(refused.value))
        assert "(cluster)" in caplog.text
        for text in [*shown, caplog.text]:
            assert PASSWORD not in text


async def test_pipelined_scripts_run_on_a_node_that_forgot_every_script(
    cluster: RedisClusterServers,
) -> None:
    """What a restarted node, or one a slot just moved to, looks like: SCRIPT FLUSH. Calls that
    send scripts in a pipeline (EVALSHA only there) load them and go on."""
    node = cluster.nodes[1]
    namespace = namespace_on(cluster, node, "flush")
    store = open_store(_config(cluster, namespace))
    await store.open()
    try:
        await store.append(new_events(5))
        await store.ensure_group(GROUP, ["*"])
        claims = await store.claim(GROUP, "c", limit=5, lease_ms=60_000)
        assert len(claims) == 5
        with cluster.client(node) as client:
            client.script_flush()
        assert (await store.stats())["groups"][GROUP]["in_flight"] == 5  # unread, in a pipeline
        with cluster.client(node) as client:
            client.script_flush()
        assert await store.release(claims) == 5  # settle, in a pipeline
        with cluster.client(node) as client:
            client.script_flush()
        assert not await store.is_idle([GROUP])  # unread, in a pipeline: 5 due again
    finally:
        await store.close()
        _drop_namespace(cluster.url, namespace)


class _Publisher:
    """Publishes one event every few ms until stopped; remembers which publishes returned (the
    store acknowledged them) and what errors the others raised."""

    def __init__(self, bus: EventBus, tag: str) -> None:
        self.bus = bus
        self.tag = tag
        self.acknowledged: list[str] = []
        self.unavailable = 0
        self.untyped: list[BaseException] = []
        self._stop = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        for i in itertools.count():
            if self._stop.is_set():
                return
            event = discovered(10_000 + i, asset_id=f"{self.tag}-{i}")
            try:
                await self.bus.publish(event)
            except StoreUnavailableError:
                self.unavailable += 1
            except Exception as e:
                self.untyped.append(e)
            else:
                self.acknowledged.append(event.event_id)
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self.task, 60)

    async def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task})


class _Consumers:
    """Two persistent consumers of one group on one bus, counting what they handled."""

    def __init__(self) -> None:
        self.handled: Counter[str] = Counter()

    async def handler(self, event: BaseEvent) -> None:
        await asyncio.sleep(0.002)
        self.handled[event.event_id] += 1

    async def start(self, bus: EventBus) -> None:
        for name in ("w1", "w2"):
            await bus.subscribe_persistent(
                ["*"], GROUP, name, self.handler, max_retries=3, retry_delay=0.05
            )


async def _assert_nothing_lost(
    bus: EventBus, consumers: _Consumers, acknowledged: set[str]
) -> None:
    """Every acknowledged publish is stored and handled (or, never here, in the DLQ), and the
    same subscriptions still work: nothing was re-subscribed."""
    assert await bus.wait_idle(GROUP, timeout=60)
    stored = {e.event_id for e in await bus.store.read()}
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged events not stored"
    dead = {d.event_id for d in await bus.store.get_pending_events(GROUP)}
    assert dead == set()
    lost = acknowledged - set(consumers.handled)
    assert not lost, f"{len(lost)} acknowledged events were never handled"
    extra = discovered(999_999, asset_id="after")
    await bus.publish(extra)
    await wait_until(lambda: consumers.handled[extra.event_id] >= 1, timeout=30)


@pytest.mark.timeout(180)
async def test_a_master_killed_and_restarted_loses_no_acknowledged_publish(
    cluster: RedisClusterServers,
) -> None:
    victim = cluster.nodes[1]
    namespace = namespace_on(cluster, victim, "kill")
    bus = EventBus(_config(cluster, namespace))
    await bus.initialize()
    consumers, publisher = _Consumers(), None
    try:
        backlog = await bus.publish_many([discovered(i) for i in range(300)])
        await consumers.start(bus)
        publisher = _Publisher(bus, "live")
        await wait_until(lambda: len(consumers.handled) >= 30, timeout=30)
        assert len(consumers.handled) < len(backlog)  # killed with a backlog and live publishes
        await asyncio.to_thread(victim.kill)
        await wait_until(lambda: publisher.unavailable > 0, timeout=60)  # it was noticed
        await asyncio.sleep(2 * 2.0)  # past the node timeout: the cluster marks it failing
        await asyncio.to_thread(victim.start)
        await asyncio.to_thread(cluster.wait_ok)
        after = len(publisher.acknowledged)
        await wait_until(lambda: len(publisher.acknowledged) >= after + 20, timeout=60)
        await publisher.stop()
        assert publisher.untyped == [], publisher.untyped

        await _assert_nothing_lost(bus, consumers, set(backlog) | set(publisher.acknowledged))
    finally:
        if publisher is not None:
            await publisher.cancel()
        await bus.close(timeout=1.0)
        _drop_namespace(cluster.url, namespace)


def _move_slot(
    cluster: RedisClusterServers, slot: int, source: ClusterNode, target: ClusterNode
) -> int:
    """Move `slot` as redis-cli --cluster reshard does, one key at a time with a pause between,
    so clients meet the slot half moved (ASK, TRYAGAIN): the keys moved."""
    import time

    source_id, target_id = cluster.node_id(source), cluster.node_id(target)
    moved = 0
    with cluster.client(source) as src, cluster.client(target) as dst:
        dst.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while keys := src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1):
            src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            time.sleep(0.05)
        for node in (target, source, *(n for n in cluster.nodes if n not in (source, target))):
            with cluster.client(node) as client:
                client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
    cluster.wait_ok()
    return moved


@pytest.mark.timeout(180)
async def test_moving_a_namespaces_slot_while_consumers_run_loses_nothing(
    cluster: RedisClusterServers,
) -> None:
    source, target = cluster.nodes[2], cluster.nodes[0]
    namespace = namespace_on(cluster, source, "move")
    slot = key_slot(Keys(namespace).events.encode())
    bus = EventBus(_config(cluster, namespace))
    await bus.initialize()
    consumers, publisher = _Consumers(), None
    try:
        backlog = await bus.publish_many([discovered(i) for i in range(300)])
        await consumers.start(bus)
        publisher = _Publisher(bus, "live")
        await wait_until(lambda: len(consumers.handled) >= 30, timeout=30)
        assert len(consumers.handled) < len(backlog)  # moved with a backlog and live publishes
        moved = await asyncio.to_thread(_move_slot, cluster, slot, source, target)
        assert moved >= 6  # the stream, ids, groups, meta and the group's keys went over
        assert cluster.node_of_slot(slot) is target
        after = len(publisher.acknowledged)
        await wait_until(lambda: len(publisher.acknowledged) >= after + 20, timeout=60)
        await publisher.stop()
        assert publisher.untyped == [], publisher.untyped

        await _assert_nothing_lost(bus, consumers, set(backlog) | set(publisher.acknowledged))
        assert list(_keys_by_node(cluster, namespace)) == [target.port]
    finally:
        if publisher is not None:
            await publisher.cancel()
        await bus.close(timeout=1.0)
        _drop_namespace(cluster.url, namespace)
