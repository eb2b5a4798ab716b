"""Redis-only behaviour on real redis-servers: processes, crashes, passwords, TLS, restarts."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import traceback
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from eventkit import BaseEvent, EventBus, EventStoreConfig, clock
from eventkit.codec import encode
from eventkit.errors import StoreError, StoreUnavailableError
from eventkit.stores import redis_client
from eventkit.stores.base import (
    Claim,
    DeadLetter,
    DeliveryRecord,
    DeliveryStatus,
    NewEvent,
    TrimResult,
)
from eventkit.stores.redis import RedisEventStore
from eventkit.stores.redis_keys import Keys
from eventkit.stores.redis_records import (
    ENTRY_FIELDS,
    SEQ_BITS,
    RawRecord,
    dead_letter,
    entry_values,
    leased_records,
    needs_entry,
    read_record,
    stored,
    to_entry_id,
    to_position,
)
from eventkit.stores.redis_scripts import Scripts, sources
from eventkit.stores.redis_wait import BlockedRead
from tests.helpers import Recorder, discovered, new_events, wait_until
from tests.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cret-Pa55word"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as started:
        yield started


def _namespace() -> str:
    return f"rtest-{uuid.uuid4().hex[:10]}"


def _config(url: str, namespace: str) -> EventStoreConfig:
    return EventStoreConfig(
        backend="redis", redis_url=url, namespace=namespace, trim_interval_hours=None,
        poll_interval_seconds=0.05,
    )  # fmt: skip


def _spawn(url: str, namespace: str, group: str, name: str, mode: str) -> subprocess.Popen[str]:
    config = {"backend": "redis", "redis_url": url, "namespace": namespace,
              "trim_interval_hours": None, "poll_interval_seconds": 0.05}  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "tests.worker_process", json.dumps(config), group, name, mode],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


async def _opened(url: str, namespace: str | None = None) -> RedisEventStore:
    store = RedisEventStore(url, namespace=namespace or _namespace())
    await store.open()
    return store


async def test_two_processes_split_1000_events_without_duplicates(server: RedisServer) -> None:
    namespace = _namespace()
    store = await _opened(server.url, namespace)
    try:
        await store.ensure_group("split", ["*"])
        events = [discovered(i) for i in range(1000)]
        await store.append([encode(e) for e in events])
        workers = [_spawn(server.url, namespace, "split", f"proc-{i}", "work") for i in range(2)]
        outputs = [await asyncio.to_thread(w.communicate, timeout=120) for w in workers]
        assert all(w.returncode == 0 for w in workers), [err for _, err in outputs]
        handled = [
            [line.split()[1] for line in out.splitlines() if line.startswith("handled")]
            for out, _ in outputs
        ]
        everything = handled[0] + handled[1]
        assert len(everything) == len(set(everything)) == 1000  # none twice
        assert set(everything) == {e.event_id for e in events}  # none lost
        assert all(len(share) > 100 for share in handled), [len(s) for s in handled]
        stats = (await store.stats())["groups"]["split"]
        assert (stats["acked"], stats["delivered"], stats["pending"], stats["lag"]) == (
            1000, 1000, 0, 0,
        )  # fmt: skip
    finally:
        await store.close()


async def test_sigkill_mid_handler_loses_nothing_and_the_next_claim_is_attempt_2(
    server: RedisServer,
) -> None:
    namespace = _namespace()
    store = await _opened(server.url, namespace)
    try:
        await store.ensure_group("crash", ["*"])
        events = new_events(20)
        await store.append(events)
        worker = _spawn(server.url, namespace, "crash", "doomed", "hang")
        assert worker.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(worker.stdout.readline), 30)
        _, killed_id, attempt = line.split()
        assert attempt == "1"
        worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(worker.communicate)
        assert worker.returncode == -signal.SIGKILL

        claimed: dict[str, Claim] = {}

        async def claim_the_rest() -> bool:
            for claim in await store.claim("crash", "survivor", limit=50, lease_ms=30_000):
                assert claim.event.event_id not in claimed  # never leased twice
                claimed[claim.event.event_id] = claim
            return len(claimed) == 20

        await wait_until(claim_the_rest, timeout=15)  # the dead worker's lease is 1 s
        assert claimed[killed_id].attempt == 2  # the crash counted as an attempt
        assert "lease expired" in (claimed[killed_id].last_error or "")
        assert "doomed" in (claimed[killed_id].last_error or "")
        assert await store.ack(list(claimed.values())) == 20
        assert await store.is_idle(["crash"])
        stats = (await store.stats())["groups"]["crash"]
        assert (stats["acked"], stats["pending"], stats["dlq"]) == (20, 0, 0)
        assert stats["retried"] >= 1
    finally:
        await store.close()


async def test_password_in_the_url_works_and_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with RedisServer(password=PASSWORD) as server:
        assert PASSWORD in server.url
        config = _config(server.url, _namespace())
        async with EventBus(config) as bus:
            rec = Recorder()
            await bus.subscribe_persistent(["*"], "g", "w", rec)
            await bus.publish_many([discovered(i) for i in range(5)])
            assert await bus.wait_idle(timeout=10)
            assert len(rec.ids) == 5
            stats = await bus.get_stats()
            assert stats["store"]["backend"] == "redis" and stats["groups"]["g"]["acked"] == 5
            shown = [repr(bus.store), str(bus.store), repr(config), str(config), json.dumps(stats)]
            assert "***" in repr(bus.store)
        wrong = server.url.replace(PASSWORD, "Wr0ng-" + PASSWORD[::-1])
        with pytest.raises(StoreUnavailableError) as failed:
            await _opened(wrong)
        shown += [
            str(failed.value),
            repr(failed.value),
            "".join(traceback.format_exception(failed.value)),
        ]
        assert "Wr0ng" not in " ".join(shown[-3:])
    shown.append(caplog.text)
    assert caplog.records  # something was logged, and none of it holds the password
    for text in shown:
        assert PASSWORD not in text and PASSWORD[::-1] not in text


async def test_tls_server_reached_with_rediss() -> None:
    with RedisServer(tls=True, password=PASSWORD) as server:
        assert server.url.startswith("rediss://") and "ssl_ca_certs=" in server.url
        store = await _opened(server.url)
        try:
            positions = await store.append(new_events(3))
            await store.ensure_group("g", ["*"])
            claims = await store.claim("g", "w", limit=10, lease_ms=5_000)
            assert [c.event.position for c in claims] == positions
            assert await store.ack(claims) == 3
        finally:
            await store.close()
        # the certificate is really checked: without the CA the handshake is refused
        untrusted = server.url.split("?")[0]
        with pytest.raises(StoreUnavailableError, match="rediss://:\\*\\*\\*@127.0.0.1"):
            await _opened(untrusted)
        # and a plain redis:// client cannot talk to the TLS port
        with pytest.raises(StoreUnavailableError):
            await _opened(untrusted.replace("rediss://", "redis://"))


async def test_restart_during_consumption_acks_every_event_exactly_once() -> None:
    with RedisServer(appendonly=True) as server:
        config = _config(server.url, _namespace())
        async with EventBus(config) as bus:
            rec = Recorder()
            for i in range(2):
                await bus.subscribe_persistent(
                    ["*"], "g", f"w{i}", rec, batch_size=5, lease_seconds=2.0
                )
            events = [discovered(i) for i in range(300)]
            await bus.publish_many(events[:100])
            await wait_until(lambda: len(rec.ids) >= 20, timeout=10)
            restart = asyncio.create_task(asyncio.to_thread(server.restart))
            for event in events[100:200]:  # publishes ride out the restart (retry, reconnect)
                await bus.publish(event)
            await restart
            await bus.publish_many(events[200:])
            assert await bus.wait_idle(timeout=30)
            assert set(rec.ids) == {e.event_id for e in events}  # nothing lost
            stats = (await bus.get_stats())["groups"]["g"]
            assert (stats["acked"], stats["pending"], stats["dlq"], stats["lag"]) == (300, 0, 0, 0)
            records = await bus.store.deliveries("g")
            assert len(records) == 300 and all(r.status == "acked" for r in records)
            # an event handled twice (its ack lost in the restart) shows as a 2nd attempt
            twice = [e for e in rec.ids if rec.ids.count(e) > 1]
            assert all(r.attempts > 1 for r in records if r.event_id in twice)


async def test_group_is_recreated_after_a_restart_without_persistence() -> None:
    with RedisServer() as server:
        store = await _opened(server.url)
        try:
            await store.ensure_group("g", ["asset.discovered"])
            await store.append(new_events(2))
            await asyncio.to_thread(server.restart)  # --appendonly no --save '': all data gone
            assert await store.read() == []
            await store.append(new_events(3))
            claims = await store.claim("g", "w", limit=10, lease_ms=5_000)
            assert len(claims) == 3  # the group came back at "earliest", filter included
            assert await store.groups() == ["g"]
        finally:
            await store.close()


async def test_redis_down_at_open_raises_store_unavailable_without_the_password() -> None:
    with RedisServer(password=PASSWORD) as server:
        url = server.url
    # the server is stopped: nothing listens on that port now
    with pytest.raises(StoreUnavailableError) as failed:
        await _opened(url)
    text = str(failed.value) + repr(failed.value)
    text += "".join(traceback.format_exception(failed.value))
    assert "unavailable" in text and "127.0.0.1" in text and ":***@" in text
    assert PASSWORD not in text
    bus = EventBus(_config(url, _namespace()))
    with pytest.raises(StoreUnavailableError) as via_bus:
        await bus.initialize()
    assert PASSWORD not in str(via_bus.value)


async def test_publishers_beyond_the_pool_wait_their_turn_on_its_connections() -> None:
    with RedisServer() as server:
        store = await _opened(server.url)
        try:
            batches = [new_events(1) for _ in range(10 * redis_client.POOL_SIZE)]
            positions = await asyncio.gather(*(store.append(batch) for batch in batches))
            assert len({p for [p] in positions}) == len(batches)  # none refused, none lost
            assert len(await store.read()) == len(batches)
            async with aioredis.Redis.from_url(server.url) as looking:
                info = await looking.info("clients")
            # the store's own, and this INFO's: each publisher waited for a free connection
            assert info["connected_clients"] <= redis_client.POOL_SIZE + 1
        finally:
            await store.close()


async def test_a_write_the_server_stops_reading_times_out_as_redis_py_says() -> None:
    with RedisServer() as server:
        # the store's command client, without its reconnect attempts (each would time out too)
        client = redis_client._client(f"{server.url}?socket_timeout=0.5", Retry(NoBackoff(), 0))
        try:
            await client.ping()  # connected: what follows is the write itself
            assert server.pid is not None
            os.kill(server.pid, signal.SIGSTOP)  # hung: the socket's buffers fill, then it waits
            try:
                async with asyncio.timeout(60):  # a hang fails the test instead of blocking it
                    with pytest.raises(RedisTimeoutError, match="writing to socket"):
                        await client.set("big", b"x" * 64_000_000)
            finally:
                os.kill(server.pid, signal.SIGCONT)
            assert await client.ping()  # a new connection once the server is back
        finally:
            await client.aclose()


async def test_positions_map_back_to_stream_ids(server: RedisServer) -> None:
    store = await _opened(server.url)
    try:
        positions = await store.append(new_events(5))
        page = await store.read(after_position=positions[1], limit=2)
        assert [e.position for e in page] == positions[2:4]
        assert all(e.position >> 20 == e.published_ms for e in page)  # ms << 20 | seq
        event: BaseEvent = discovered(1)
        twice = await store.append([encode(event)] * 2)  # a batch repeating one id stores it once
        assert twice[0] == twice[1] > positions[-1]
        assert await store.append([encode(event)]) == twice[:1]
        assert len(await store.read()) == 6
    finally:
        await store.close()


async def test_scripts_the_server_forgot_are_loaded_again_by_the_next_call(
    server: RedisServer,
) -> None:
    """SCRIPT FLUSH is what a restart without persistence does to scripts: each call that
    meets NOSCRIPT loads its script once and runs it, and nothing is written twice."""
    store = await _opened(server.url)
    try:
        await store.ensure_group("g", ["*"])
        client = aioredis.Redis.from_url(server.url)
        await client.script_flush()
        positions = await store.append(new_events(3))  # append.lua (entry.lua only)
        await client.script_flush()
        claims = await store.claim("g", "a", limit=10, lease_ms=60_000)  # claim.lua (lib.lua)
        await client.script_flush()
        assert await store.ack(claims) == 3
        assert [c.event.position for c in claims] == positions
        assert len(await store.read()) == 3
        shas = [
            hashlib.sha1(sources()[name].encode()).hexdigest()
            for name in ("append", "claim", "ack")
        ]
        assert await client.script_exists(*shas) == [False, False, True]  # flushed, reloaded
        await client.aclose()
    finally:
        await store.close()


async def test_a_cancelled_claim_leaves_nothing_leased(server: RedisServer) -> None:
    """How a consumer stops at once: cancelling its blocking claim, at any point, loses nothing."""
    store = await _opened(server.url)
    try:
        await store.ensure_group("g", ["*"])
        waiting = asyncio.ensure_future(store.claim("g", "a", limit=10, lease_ms=60_000,
                                                    block_ms=5_000))  # fmt: skip
        await asyncio.sleep(0.1)  # blocked in the wait for new entries
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await store.append(new_events(3))
        racing = asyncio.ensure_future(store.claim("g", "a", limit=10, lease_ms=60_000))
        await asyncio.sleep(0)  # the script is sent, its reply not yet read
        racing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await racing
        claims = await store.claim("g", "b", limit=10, lease_ms=60_000)
        assert len(claims) == 3  # released by the cancelled claim, not left to its lease
        assert [c.attempt for c in claims] == [1, 1, 1]  # and not counted as an attempt
    finally:
        await store.close()


async def test_a_blocked_claim_takes_the_entry_that_ends_its_wait_with_a_whole_lease(
    server: RedisServer,
) -> None:
    """The claim runs behind the blocked read on its connection (redis_wait.py): the entry that
    ends the wait comes back leased from then on, not from when the wait began."""
    store = await _opened(server.url)
    try:
        await store.ensure_group("g", ["*"])
        waiting = asyncio.ensure_future(
            store.claim("g", "a", limit=10, lease_ms=2_000, block_ms=3_000)
        )
        await asyncio.sleep(0.5)  # blocked
        published = clock.now_ms()
        positions = await store.append(new_events(1))
        claims = await waiting
        assert [(c.event.position, c.attempt) for c in claims] == [(positions[0], 1)]
        assert claims[0].lease_deadline_ms >= published + 2_000 - 100  # not 500 ms early
        assert claims[0].lease_deadline_ms <= clock.now_ms() + 2_000
        assert await store.ack(claims) == 1
    finally:
        await store.close()


async def test_a_blocked_claim_cancelled_after_it_claimed_releases_what_it_leased(
    server: RedisServer,
) -> None:
    """The race a stopping consumer can meet: the claim behind the read has already run on the
    server when the wait is cancelled. Its reply is read after all and what it leased released:
    the next consumer gets the event as a first attempt, not after the lease runs out."""
    namespace = _namespace()
    store = await _opened(server.url, namespace)
    try:
        await store.ensure_group("g", ["*"])
        waiting = asyncio.ensure_future(
            store.claim("g", "a", limit=10, lease_ms=60_000, block_ms=3_000)
        )
        await asyncio.sleep(0.2)  # blocked, the claim queued behind the read
        keys = Keys(namespace)
        with redis.Redis.from_url(server.url) as publisher:  # blocks this loop: no reply is read
            publisher.eval(sources()["append"], 4, keys.events, keys.ids, keys.counts,
                           keys.meta, *entry_values([encode(discovered(1))]))  # fmt: skip
            [(_, [(entry_id, _)])] = publisher.xread({keys.events: "0"})
        waiting.cancel()  # the server claimed for "a", its reply unread
        with pytest.raises(asyncio.CancelledError):
            await waiting
        claims = await store.claim("g", "b", limit=10, lease_ms=60_000)
        assert [(to_entry_id(c.event.position), c.attempt) for c in claims] == [
            (entry_id.decode(), 1)
        ]
    finally:
        await store.close()


async def test_a_user_refused_client_commands_still_gets_blocked_claims(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that denies CLIENT (CLIENT ID, CLIENT UNBLOCK): the store waits, then claims, as
    on a cluster, instead of failing each claim; and a stop still ends the wait at once."""
    caplog.set_level(logging.INFO, logger="eventkit")
    admin = aioredis.Redis.from_url(server.url)
    user = f"limited{uuid.uuid4().hex[:6]}"
    await admin.acl_setuser(user, enabled=True, passwords=["+s3cret"], keys=["*"],
                            channels=["*"], commands=["+@all", "-client"])  # fmt: skip
    url = server.url.replace("redis://", f"redis://{user}:s3cret@")
    store = await _opened(url)
    try:
        await store.ensure_group("g", ["*"])
        for _ in range(2):  # the first finds out, the second goes the plain way at once
            waiting = asyncio.ensure_future(
                store.claim("g", "a", limit=10, lease_ms=60_000, block_ms=3_000)
            )
            await asyncio.sleep(0.2)
            positions = await store.append(new_events(1))
            claims = await waiting
            assert [c.event.position for c in claims] == positions
            assert await store.ack(claims) == 1
        assert caplog.text.count("wait, then claim") == 1
        waiting = asyncio.ensure_future(store.claim("g", "a", limit=10, lease_ms=60_000,
                                                    block_ms=3_000))  # fmt: skip
        await asyncio.sleep(0.2)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiting, 1.0)  # not the 3 s of the read
    finally:
        await store.close()
        await admin.acl_deluser(user)
        await admin.aclose()


async def test_stopping_a_blocked_read_whose_connection_never_opened_returns_at_once(
    server: RedisServer,
) -> None:
    """unblock() waits for the connection's id: a read that failed before sending it must say
    so, or a consumer stopping then would wait forever."""
    nobody = aioredis.Redis(host="127.0.0.1", port=free_port(), retry=Retry(NoBackoff(), 0))
    commands = aioredis.Redis.from_url(server.url)
    try:
        read = BlockedRead(nobody, commands, "events", "0-0", 3_000)
        with pytest.raises(redis.ConnectionError):
            await read.then_run(Scripts.register(commands).claim, ["k"], [])
        await asyncio.wait_for(read.unblock(), 1.0)
    finally:
        await nobody.aclose()
        await commands.aclose()


async def test_a_blocked_claim_on_a_server_that_forgot_its_scripts_still_claims(
    server: RedisServer,
) -> None:
    """NOSCRIPT behind the read: the claim is made again the plain way, which loads it."""
    store = await _opened(server.url)
    client = aioredis.Redis.from_url(server.url)
    try:
        await store.ensure_group("g", ["*"])
        waiting = asyncio.ensure_future(
            store.claim("g", "a", limit=10, lease_ms=60_000, block_ms=3_000)
        )
        await asyncio.sleep(0.2)  # blocked, the claim script's EVALSHA queued behind the read
        await client.script_flush()
        positions = await store.append(new_events(2))  # loads append.lua again, not claim.lua
        claims = await waiting
        assert [c.event.position for c in claims] == positions
        assert await store.ack(claims) == 2
    finally:
        await client.aclose()
        await store.close()


async def test_closing_an_idle_bus_does_not_wait_out_blocking_claims(server: RedisServer) -> None:
    config = _config(server.url, _namespace())
    bus = EventBus(EventStoreConfig(**{**vars(config), "poll_interval_seconds": 1.0}))
    await bus.initialize()
    rec = Recorder()
    for name in ("a", "b", "c"):
        await bus.subscribe_persistent(["*"], "g", name, rec)
    await bus.publish(discovered(1))
    assert await bus.wait_idle("g", timeout=10) and len(rec.ids) == 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    await bus.close(timeout=30)
    # three consumers each blocked in XREAD for up to 1 s: cancelled, not waited out
    assert loop.time() - started < 0.5


# -- what the scripts write, read back by the Python reader -------------------------------------


class Between:
    """Equal to any integer in [low, high]: a time the server stamped during one operation."""

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and self.low <= other <= self.high

    def __repr__(self) -> str:
        return f"Between({self.low}, {self.high})"


class RawView:
    """A plain redis client on one namespace: the hashes as the scripts left them, parsed by
    redis_records' readers, and the server's clock around each operation."""

    def __init__(self, url: str, namespace: str, group: str) -> None:
        self.client = aioredis.from_url(url, decode_responses=True)
        self.keys = Keys(namespace)
        self.group = self.keys.group(group)
        self.group_name = group

    async def now_ms(self) -> int:
        seconds, micros = await self.client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def during(self, operation: Awaitable[Any]) -> tuple[Any, Between]:
        """The operation's result, and the server times it may have stamped."""
        before = await self.now_ms()
        result = await operation
        return result, Between(before, await self.now_ms())

    async def records(self) -> dict[str, RawRecord]:
        """Every delivery record: the records hash (JSON, or compact once a first delivery was
        acked under its lease) and the first deliveries in flight under their claims' leases."""
        texts: dict[str, str] = await self.client.hgetall(self.group.records)
        leases: dict[str, str] = await self.client.hgetall(self.group.leases)
        fields = list(RawRecord._fields)
        optional = fields[fields.index("copy") :]  # written only once they apply
        for text in texts.values():  # every JSON writer keeps one key order: the one ack relies on
            if needs_entry(text):
                continue
            keys = list(json.loads(text))
            required = fields[: len(fields) - len(optional)]
            assert keys[: len(required)] == required, text
            tail = keys[len(required) :]
            assert tail == [name for name in optional if name in tail], text
        found = {
            entry_id: read_record(
                text, *(await self.event_of(entry_id) if needs_entry(text) else ("", ""))
            )  # fmt: skip
            for entry_id, text in texts.items()
        }
        for entry_id, record in leased_records(leases, texts).items():
            event_id, event_type = await self.event_of(entry_id)
            found[entry_id] = record._replace(event_id=event_id, event_type=event_type)
        return found

    async def event_of(self, entry_id: str) -> tuple[str, str]:
        fields = dict(zip(*[iter(await self.entry(entry_id))] * 2, strict=True))
        return fields["event_id"], fields["event_type"]

    async def dead_letters(self) -> dict[str, DeadLetter]:
        texts: dict[str, str] = await self.client.hgetall(self.group.dlq)
        return {event_id: dead_letter(self.group_name, text) for event_id, text in texts.items()}

    async def entry(self, entry_id: str) -> list[str]:
        """A stream entry's fields as the scripts see them: [name, value, ...]."""
        [(_, fields)] = await self.client.xrange(self.keys.events, entry_id, entry_id)
        return [text for pair in fields.items() for text in pair]


def _leased(event: NewEvent, token: str, consumer: str, first: Any, lease_ms: int) -> RawRecord:
    """The record of a first delivery, as claim writes it."""
    return RawRecord("in_flight", token, None, consumer, 1, first, lease_ms, event.event_id,
                     event.event_type, None)  # fmt: skip


async def test_append_writes_entries_the_python_reader_reads_back(redis_url: str) -> None:
    namespace = _namespace()
    store, raw = await _opened(redis_url, namespace), RawView(redis_url, namespace, "g")
    try:
        first, second, third, fourth = new_events(4)
        events = [
            first,  # a story's first event: no correlation nor causation field in the entry
            second._replace(correlation_id=first.event_id, causation_id=first.event_id),
            third._replace(correlation_id="imported-story"),  # imported: no causation
            fourth,
        ]
        positions = await store.append(events)
        for event, position in zip(events, positions, strict=True):
            entry_id = to_entry_id(position)
            fields = await raw.entry(entry_id)
            # the layouts stored() reads by position: the story's fields only when it has any
            in_story = event.correlation_id is not None or event.causation_id is not None
            assert fields[::2] == list(ENTRY_FIELDS if in_story else ENTRY_FIELDS[:6])
            want = event.stored(position, position >> SEQ_BITS)
            assert stored(entry_id, fields) == want  # as a script returns it
            as_dict = dict(zip(fields[::2], fields[1::2], strict=True))
            assert stored(entry_id, as_dict) == want  # as XRANGE returns it
        assert await store.read() == [stored(to_entry_id(p), await raw.entry(to_entry_id(p)))
                                      for p in positions]  # fmt: skip
    finally:
        await store.close()
        await raw.client.aclose()


async def test_every_script_writes_delivery_records_the_python_reader_reads_back(
    redis_url: str,
) -> None:
    """claim (first delivery, due again, lease expired), ack, retry, dead-letter, release,
    replay and extend each leave a record (dead-letter also a DLQ entry) that the Python readers
    parse field by field, and that ack, which checks a lease on the record's text, accepts."""
    namespace = _namespace()
    store, raw = await _opened(redis_url, namespace), RawView(redis_url, namespace, "g")
    me = 'w/1 "é"'  # text each JSON encoder must escape alike
    try:
        await store.ensure_group("g", ["*"])
        events = new_events(6)
        ids = [to_entry_id(p) for p in await store.append(events)]
        claims, first = await raw.during(store.claim("g", me, limit=5, lease_ms=30_000))
        want = {ids[i]: _leased(e, claims[0].token, me, first, 30_000)
                for i, e in enumerate(events[:5])}  # fmt: skip
        [short], leased = await raw.during(store.claim("g", "short", limit=1, lease_ms=1))
        want[ids[5]] = _leased(events[5], short.token, "short", leased, 1)
        assert await raw.records() == want

        _, acked = await raw.during(store.ack(claims[:1]))
        want[ids[0]] = want[ids[0]]._replace(status="acked", token="", acked_ms=acked)
        assert await store.retry_later(claims[1], due_ms=0, error="boom")
        want[ids[1]] = want[ids[1]]._replace(status="retrying", token="", last_error="boom")
        _, failed = await raw.during(store.dead_letter(claims[2], error="fatal", traceback="tb"))
        want[ids[2]] = want[ids[2]]._replace(status="dead", token="", last_error="fatal")
        assert await store.release(claims[3:4]) == 1
        want[ids[3]] = want[ids[3]]._replace(status="retrying", token="", attempts=0)
        assert await store.extend_lease(claims[4], 60_000) is not None
        want[ids[4]] = want[ids[4]]._replace(lease_ms=60_000)
        assert await raw.records() == want
        letter = DeadLetter(claims[2].event, "g", me, 1, failed, "fatal", "tb")
        assert await raw.dead_letters() == {events[2].event_id: letter}

        assert await store.replay_dead_letters("g") == 1
        want[ids[2]] = want[ids[2]]._replace(status="retrying", attempts=0, replays=1)
        assert await raw.records() == want and await raw.dead_letters() == {}

        await asyncio.sleep(0.05)  # the lease of events[5] has expired

        again = await store.claim("g", "w2", limit=10, lease_ms=20_000)
        by_id = {c.event.event_id: c.event for c in [*claims, short]}
        assert sorted(c.event for c in again) == [by_id[events[i].event_id] for i in (1, 2, 3, 5)]
        for i, attempts in ((1, 2), (2, 1), (3, 1), (5, 2)):
            want[ids[i]] = want[ids[i]]._replace(status="in_flight", token=again[0].token,
                                                 consumer="w2", attempts=attempts, lease_ms=20_000)  # fmt: skip
        [expired] = [c.last_error or "" for c in again if c.event.event_id == events[5].event_id]
        assert "lease expired" in expired and "short" in expired
        want[ids[5]] = want[ids[5]]._replace(last_error=expired)
        assert await raw.records() == want
        for claim in again:  # the claim carries what the record holds
            record = want[to_entry_id(claim.event.position)]
            assert (claim.attempt, claim.last_error) == (record.attempts, record.last_error)

        # ack checks the lease on the text: it accepts what the due path and extend wrote
        counted, done = await raw.during(store.ack([*again, claims[4]]))
        assert counted == 5
        for i in (1, 2, 3, 4, 5):
            want[ids[i]] = want[ids[i]]._replace(status="acked", token="", acked_ms=done)
        assert await raw.records() == want
        assert await store.deliveries("g") == [  # the public record, from the same reader
            DeliveryRecord(to_position(i), r.event_id, r.event_type, "g", r.consumer,
                           DeliveryStatus(r.status), r.attempts, to_position(i) >> SEQ_BITS,
                           r.first_ms, r.acked_ms, r.last_error)
            for i, r in sorted(want.items(), key=lambda item: to_position(item[0]))
        ]  # fmt: skip
    finally:
        await store.close()
        await raw.client.aclose()


async def test_replay_after_a_trim_keeps_the_event_in_its_record_and_delivers_it(
    redis_url: str,
) -> None:
    """A dead letter whose entry a trim removed: replay writes a record holding the entry's
    fields (copy), claim delivers the event from it, ack settles it, and the reader reads each."""
    namespace = _namespace()
    store, raw = await _opened(redis_url, namespace), RawView(redis_url, namespace, "g")
    try:
        await store.ensure_group("g", ["*"])
        [event] = new_events(1)
        [entry_id] = [to_entry_id(p) for p in await store.append([event])]
        fields = await raw.entry(entry_id)
        [claim] = await store.claim("g", "w", limit=1, lease_ms=30_000)
        assert await store.dead_letter(claim, error="fatal")
        assert await store.trim(max_events=0) == TrimResult(1, 0)
        assert await store.read() == [] and await raw.records() == {}
        assert (await raw.dead_letters())[event.event_id].stored == claim.event

        replayed, at = await raw.during(store.replay_dead_letters("g"))
        assert replayed == 1
        want = RawRecord("retrying", "", None, "w", 0, at, None, event.event_id, event.event_type,
                         None, fields, replays=1)  # fmt: skip
        assert await raw.records() == {entry_id: want}

        [again] = await store.claim("g", "w2", limit=1, lease_ms=30_000)
        assert again.event == claim.event and again.attempt == 1
        want = want._replace(status="in_flight", token=again.token, consumer="w2", attempts=1,
                             lease_ms=30_000)  # fmt: skip
        assert await raw.records() == {entry_id: want}
        _, acked = await raw.during(store.ack([again]))
        assert await raw.records() == {entry_id: want._replace(status="acked", token="",
                                                               acked_ms=acked)}  # fmt: skip
    finally:
        await store.close()
        await raw.client.aclose()


# -- the key layout before the hash tag: moved once, on open, without loss ----------------------


class _OldLayoutStore(RedisEventStore):
    """The store as it was before the cluster-ready layout: the same scripts, on the old key
    names (`ns:events`, `ns:group:g:due`, ...), and no move on open."""

    def __init__(self, url: str, namespace: str) -> None:
        super().__init__(url, namespace=namespace)
        self._keys = Keys(namespace, tagged=False)

    async def _upgrade(self) -> None:
        return None


async def _everything(store: RedisEventStore) -> dict[str, Any]:
    """What a user can see of a store: events, groups, deliveries, dead letters, stats."""
    groups = await store.groups()
    return {
        "events": await store.read(),
        "groups": groups,
        "deliveries": {g: await store.deliveries(g) for g in groups},
        "dlq": {g: await store.get_pending_events(g) for g in groups},
        "stats": await store.stats(),
    }


async def test_a_store_in_the_old_key_layout_is_moved_on_open_without_loss(
    server: RedisServer,
) -> None:
    namespace = _namespace()
    raw = aioredis.from_url(server.url, decode_responses=True)
    old = _OldLayoutStore(server.url, namespace)
    await old.open()
    try:
        positions = await old.append(new_events(20))
        await old.ensure_group("g", ["*"])
        await old.ensure_group("h", ["*"])
        await old.register_consumer("g", "c1")
        claims = await old.claim("g", "c1", limit=6, lease_ms=60_000)
        assert await old.ack(claims[:2]) == 2
        assert await old.retry_later(claims[2], due_ms=claims[2].lease_deadline_ms, error="later")
        assert await old.dead_letter(claims[3], error="boom", traceback="tb")
        in_flight = claims[4:6] + await old.claim("h", "c2", limit=3, lease_ms=60_000)
        before = await _everything(old)
        pending_before = [await raw.xpending(f"{namespace}:events", g) for g in ("g", "h")]
    finally:
        await old.close()
    assert await raw.type(f"{namespace}:events") == "stream"  # the old names, as written
    assert await raw.type(f"{namespace}:group:g:dlq") == "hash"
    assert len(before["dlq"]["g"]) == 1
    in_flight_before = [before["stats"]["groups"][g]["in_flight"] for g in ("g", "h")]
    assert in_flight_before == [3, 3]  # g: 2 leased + 1 retrying; h: 3 leased

    reader = RedisEventStore(server.url, namespace=namespace, read_only=True)
    with pytest.raises(StoreError, match="earlier eventkit; it was left unchanged"):
        await reader.open()  # reading (the CLI's stats, dlq, top) never moves a store
    assert await raw.type(f"{namespace}:events") == "stream"

    store = await _opened(server.url, namespace)  # moves the namespace
    try:
        assert await _everything(store) == before
        keys = Keys(namespace)
        assert [await raw.xpending(keys.events, g) for g in ("g", "h")] == pending_before
        assert await store.ack(in_flight) == 5  # the leases made before the move still hold
        rest = await store.claim("g", "c1", limit=50, lease_ms=60_000)
        assert [c.event.position for c in rest] == positions[6:]  # unread go on where they were
        assert await store.replay_dead_letters("g") == 1
        assert [c.event.event_id for c in await store.claim("h", "c2", limit=50, lease_ms=1)] == [
            e.event_id for e in before["events"][3:]
        ]
        reader = RedisEventStore(server.url, namespace=namespace, read_only=True)
        await reader.open()  # once moved, a read-only open reads it
        try:
            assert (await reader.stats())["store"]["total_events"] == 20
        finally:
            await reader.close()
        left = sorted([key async for key in raw.scan_iter(match=f"{namespace}:*")])
        assert left == [f"{namespace}:{name}" for name in ("events", "groups", "ids")]
        assert {await raw.type(key) for key in left} == {"string"}  # notes for old processes
    finally:
        await store.close()
    again = await _opened(server.url, namespace)  # a second open moves nothing
    try:
        assert (await again.stats())["store"]["total_events"] == 20
    finally:
        await again.close()
    old = _OldLayoutStore(server.url, namespace)  # a process still on the old layout
    await old.open()
    try:
        with pytest.raises(StoreError, match="WRONGTYPE"):  # fails loudly, writes nothing
            await old.append(new_events(1))
    finally:
        await old.close()
        await raw.aclose()
