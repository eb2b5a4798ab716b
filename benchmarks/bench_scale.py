"""Growth benchmark (issue 12): the cost of each operation as a store grows from 10^4 to 10^7 events.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1e4,1e5,1e6,1e7] [--backends sqlite,redis]
        [--redis-max 2e6] [--no-write]

For every size a fresh store is filled through its own `append` in batches of 10,000 (the store's
schema, indexes and ids as eventkit writes them: uuid4 event ids, ~230 B payloads, timestamps in
publish order), then each operation is timed on it: publish_many and single publishes through the
bus, claim+ack of a batch, an idle claim, get_stats with caught-up groups, get_stats with a group
behind by the whole store (its lag), a trim of 10 %, events_frame of the last 10^5 events (the
first on the store, which types payload columns from every stored value, and one in a later
process, which reads the kinds the first noted in the store), and an
export of the whole store to Parquet in a child process (time and peak RSS, read from /proc).
Redis runs on its own redis-server (no persistence) on a free loopback port, up to --redis-max.
Prints a table, draws benchmarks/scale.png (log-log) and rewrites the "## Growth (issue 12)"
section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_core import (  # noqa: E402
    EVENT_TYPE,
    RedisServer,
    environment,
    make_events,
    median_of,
)
from benchmarks.results_file import RESULTS, write_section  # noqa: E402
from eventkit import EventBus, EventStoreConfig, codec  # noqa: E402
from eventkit.records import NewEvent  # noqa: E402

SECTION = "## Growth (issue 12)"
PLOT = Path(__file__).resolve().parent / "scale.png"
FILL_BATCH = 10_000
PUBLISH_BATCH = 1_000
PUBLISH_BATCHES = 10
SINGLES = 200
CLAIM_BATCH = 500
CLAIMS = 10
IDLE_CLAIMS = 100
STATS_RUNS = 20
FRAME_TAIL = 100_000
#: the child exporting to Parquet is stopped above this RSS, to keep the shared machine usable
EXPORT_RSS_CAP_MB = 8_192
#: goals of issue 12
MAX_GROWTH = 1.5
EXPORT_RSS_GOAL_MB = 1_024


@dataclass
class Measure:
    """One operation's cost on one backend at each size."""

    backend: str
    name: str
    unit: str
    #: a goal of flat cost (within MAX_GROWTH from 10^5 up), or only information
    flat: bool = True
    values: dict[int, float] = field(default_factory=dict)
    notes: dict[int, str] = field(default_factory=dict)

    def growth(self) -> float | None:
        """Cost at the largest size over the cost at 10^5 (the issue's goal compares these)."""
        sizes = sorted(s for s in self.values if s >= 100_000)
        if len(sizes) < 2 or not self.values[sizes[0]]:
            return None
        growth = self.values[sizes[-1]] / self.values[sizes[0]]
        return None if math.isnan(growth) else growth

    def passed(self) -> bool | None:
        if self.name == "export peak RSS":
            return max(self.values.items())[1] < EXPORT_RSS_GOAL_MB if self.values else None
        growth = self.growth()
        if any(math.isnan(v) for v in self.values.values()):
            return False
        return None if not self.flat or growth is None else growth <= MAX_GROWTH


class Results:
    def __init__(self) -> None:
        self.measures: dict[tuple[str, str], Measure] = {}

    def add(self, backend: str, size: int, name: str, unit: str, value: float, *,
            flat: bool = True, note: str = "") -> None:  # fmt: skip
        measure = self.measures.setdefault((backend, name), Measure(backend, name, unit, flat=flat))
        measure.values[size] = value
        if note:
            measure.notes[size] = note
        print(f"   {name}: {_num(value)} {unit}{f' ({note})' if note else ''}", flush=True)


def _failed(error: BaseException) -> str:
    last = str(error).strip().splitlines()[-1:] or [""]
    return f"failed: {type(error).__name__}: {last[0][:120]}"


def _num(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _size(text: str) -> int:
    return int(float(text))


def _label(size: int) -> str:
    exponent = len(str(size)) - 1
    mantissa = size / 10**exponent
    return f"10^{exponent}" if mantissa == 1 else f"{mantissa:g}·10^{exponent}"


async def per_call(work: Callable[[], Awaitable[Any]], runs: int) -> float:
    """Median µs of one call of work over runs."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        await work()
        times.append((time.perf_counter() - start) * 1e6)
    return median_of(times)


# -- filling -----------------------------------------------------------------------------------


async def fill(bus: EventBus, count: int) -> tuple[float, int]:
    """Append count events through the store's own append, oldest first; events/s and the
    timestamp_ms of the first (event i is stamped first + i)."""
    template = codec.encode(make_events(1)[0])
    data = template.data.replace("0000000", "%07d").replace("1000000", "%d")
    first = int(time.time() * 1000) - count - 60_000
    start = time.perf_counter()
    for low in range(0, count, FILL_BATCH):
        await bus.store.append([
            NewEvent(uuid.uuid4().hex, template.event_type, template.version, template.source,
                     first + n, data % (n, n, 1_000_000 + n))
            for n in range(low, min(low + FILL_BATCH, count))
        ])  # fmt: skip
    return count / (time.perf_counter() - start), first


# -- one size ----------------------------------------------------------------------------------


async def measure_size(
    backend: str, size: int, config: EventStoreConfig, export: Callable[[], dict[str, Any]],
    results: Results,
) -> None:  # fmt: skip
    def add(name: str, unit: str, value: float, **kw: Any) -> None:
        results.add(backend, size, name, unit, value, **kw)

    async with EventBus(config) as bus:
        store = bus.store
        rate, first_ms = await fill(bus, size)
        add("fill through store.append (batches of 10,000)", "events/s", rate, flat=False)
        gc.collect()
        for group in ("work", "steady"):
            await store.ensure_group(group, [EVENT_TYPE], "latest")
            await store.register_consumer(group, "c1")

        # publish: batches through the bus (encode included), then one by one
        events = make_events(PUBLISH_BATCH * PUBLISH_BATCHES + SINGLES, f"s{size}-")
        batches = [events[i : i + PUBLISH_BATCH] for i in range(0, PUBLISH_BATCH * PUBLISH_BATCHES,
                                                                 PUBLISH_BATCH)]  # fmt: skip
        batch_iter = iter(batches)
        cost = await per_call(lambda: bus.publish_many(next(batch_iter)), PUBLISH_BATCHES)
        add("publish_many, per event (batches of 1,000)", "µs", cost / PUBLISH_BATCH)
        single_iter = iter(events[PUBLISH_BATCH * PUBLISH_BATCHES :])
        add("publish one event", "µs", await per_call(lambda: bus.publish(next(single_iter)),
                                                      SINGLES))  # fmt: skip

        # claim + ack of a batch, on a group that has the events just published to do
        async def claim_ack(group: str = "work") -> None:
            claims = await store.claim(group, "c1", limit=CLAIM_BATCH, lease_ms=60_000)
            assert len(claims) == CLAIM_BATCH, len(claims)
            await store.ack(claims)

        add("claim+ack of 500", "µs", await per_call(claim_ack, CLAIMS))
        for group in ("work", "steady"):  # caught up: the steady state of a live group
            while claims := await store.claim(group, "c1", limit=5_000, lease_ms=60_000):
                await store.ack(claims)

        async def idle() -> None:
            assert not await store.claim("steady", "c1", limit=CLAIM_BATCH, lease_ms=60_000)

        add("idle claim", "µs", await per_call(idle, IDLE_CLAIMS))
        add("get_stats (2 groups, caught up)", "µs", await per_call(bus.get_stats, STATS_RUNS))

        # trim 10 %: every group is past the filled events
        total = (await bus.get_stats())["store"]["total_events"]
        start = time.perf_counter()
        trimmed = await store.trim(max_events=total - total // 10)
        seconds = time.perf_counter() - start
        add("trim of 10 %, per removed event", "µs", seconds * 1e6 / max(trimmed.removed, 1),
            note=f"{trimmed.removed:,} in {seconds:.2f} s")  # fmt: skip

        # events_frame of the newest FRAME_TAIL events, chosen by time as a user would

        published = len(events)
        tail_from = size - (FRAME_TAIL - published)
        since = None
        if tail_from > 0:
            since = datetime.fromtimestamp((first_ms + tail_from) / 1000, UTC)
        await measure_frames(bus, config, since, add)

        # lag: a group behind by the whole store
        await store.ensure_group("behind", [EVENT_TYPE], "earliest")
        stats = await bus.get_stats()
        lag = stats["groups"]["behind"]["lag"]
        add("get_stats with a group behind by all (its lag)", "µs",
            await per_call(bus.get_stats, 5), note=f"lag {lag:,}")  # fmt: skip
        stored = stats["store"]["total_events"]

    gc.collect()
    try:
        found = export()
    except RuntimeError as e:
        add("export to Parquet, per event", "µs", math.nan, note=_failed(e))
        return
    if "error" in found:
        add("export to Parquet, per event", "µs", found["seconds"] * 1e6 / stored,
            note=found["error"])  # fmt: skip
    else:
        add("export to Parquet, per event", "µs", found["seconds"] * 1e6 / found["rows"],
            note=f"{found['rows']:,} rows in {found['seconds']:.1f} s")  # fmt: skip
    add("export peak RSS", "MB", found["peak_mb"], flat=False,
        note=found.get("error", ""))  # fmt: skip


async def measure_frames(
    bus: EventBus, config: EventStoreConfig, since: datetime | None,
    add: Callable[..., None],
) -> None:  # fmt: skip
    """The first frame of a store reads every payload once (SPEC §6 types generic columns from all
    the store's values) and notes what it learned in the store; a later process (a new bus on the
    same store) reads that note and only what was stored after it."""
    from eventkit.frames import events_frame

    for name, frame_bus in (("first on this store", bus), ("in a later process", None)):
        label = f"events_frame of the newest 10^5, {name}"
        try:
            if frame_bus is None:
                async with EventBus(config) as later:
                    start = time.perf_counter()
                    rows = len(await events_frame(later, start_time=since, progress=False))
            else:
                start = time.perf_counter()
                rows = len(await events_frame(frame_bus, start_time=since, progress=False))
        except Exception as e:  # noqa: BLE001 - reported in the table, the other rows go on
            add(label, "s", math.nan, note=_failed(e))
        else:
            seconds = time.perf_counter() - start
            add(label, "s", seconds, flat=frame_bus is None, note=f"{rows:,} rows")


# -- export in a child process -----------------------------------------------------------------


def export_in_child(config: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run export_frame in a fresh interpreter; its time, rows and peak RSS (VmHWM), stopped if
    its RSS passes EXPORT_RSS_CAP_MB."""
    errors = tempfile.TemporaryFile("w+")
    child = subprocess.Popen(
        [sys.executable, __file__, "--export-child", json.dumps(config), str(out)],
        stdout=subprocess.PIPE, stderr=errors, text=True,
    )  # fmt: skip
    peak_mb, began = 0.0, time.perf_counter()
    while child.poll() is None:
        rss = _proc_kb(child.pid, "VmHWM") / 1024
        peak_mb = max(peak_mb, rss)
        if rss > EXPORT_RSS_CAP_MB:
            child.kill()
            child.wait()
            seconds = time.perf_counter() - began
            return {"seconds": seconds, "peak_mb": rss,
                    "error": f"stopped at {rss:,.0f} MB RSS after {seconds:.0f} s"}  # fmt: skip
        time.sleep(0.1)
    assert child.stdout is not None
    output = child.stdout.read()
    errors.seek(0)
    error, _ = errors.read(), errors.close()
    if child.returncode:
        raise RuntimeError(f"export child failed ({child.returncode}): {error or output}")
    found: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    found["peak_mb"] = max(found["peak_mb"], peak_mb)
    out.unlink(missing_ok=True)
    return found


def _proc_kb(pid: int | str, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


async def export_child(config_json: str, out: str) -> None:
    from eventkit.frames import export_frame

    fields = json.loads(config_json)
    config = EventStoreConfig(**fields, trim_interval_hours=None, max_events=None)
    async with EventBus(config) as bus:
        start = time.perf_counter()
        rows = await export_frame(bus, out, "parquet", progress=False)
        seconds = time.perf_counter() - start
    print(
        json.dumps({"rows": rows, "seconds": seconds, "peak_mb": _proc_kb("self", "VmHWM") / 1024})
    )


# -- backends ----------------------------------------------------------------------------------


async def bench_sqlite(sizes: Sequence[int], workdir: Path, results: Results) -> None:
    for size in sizes:
        print(f"-- sqlite, {size:,} events", flush=True)
        path = workdir / f"scale-{size}.db"
        config = EventStoreConfig(backend="sqlite", path=path, trim_interval_hours=None,
                                  max_events=None)  # fmt: skip
        await measure_size(
            "sqlite", size, config,
            lambda path=path: export_in_child({"backend": "sqlite", "path": str(path)},
                                              workdir / "x.parquet"),
            results,
        )  # fmt: skip
        for leftover in workdir.glob(f"scale-{size}.db*"):
            leftover.unlink()


async def bench_redis(sizes: Sequence[int], url: str, workdir: Path, results: Results) -> None:
    import redis.asyncio as aioredis

    for size in sizes:
        print(f"-- redis, {size:,} events", flush=True)
        namespace = f"scale-{size}"
        config = EventStoreConfig(backend="redis", redis_url=url, namespace=namespace,
                                  trim_interval_hours=None, max_events=None)  # fmt: skip
        child = {"backend": "redis", "redis_url": url, "namespace": namespace}
        await measure_size(
            "redis",
            size,
            config,
            lambda child=child: export_in_child(child, workdir / "x.parquet"),
            results,
        )
        client = aioredis.Redis.from_url(url)
        try:
            await client.flushall()
        finally:
            await client.aclose()


# -- report ------------------------------------------------------------------------------------


def table(results: Results, sizes: Sequence[int]) -> str:
    head = [
        "backend",
        "operation",
        *(_label(s) for s in sizes),
        "largest / 10^5",
        "goal",
        "result",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(sizes) + 1) + "---|---|"]
    for m in results.measures.values():
        cells = []
        for s in sizes:
            if s not in m.values:
                cells.append("")
                continue
            note = f" ({m.notes[s]})" if s in m.notes else ""
            unit = "" if math.isnan(m.values[s]) else f" {m.unit}"
            cells.append(f"{_num(m.values[s])}{unit}{note}")
        growth = m.growth()
        if m.name == "export peak RSS":
            goal = f"< {EXPORT_RSS_GOAL_MB:,} MB at the largest size"
        else:
            goal = f"≤ {MAX_GROWTH}×" if m.flat else "info"
        result = {True: "PASS", False: "**FAIL**", None: "info"}[m.passed()]
        ratio = "—" if growth is None else f"{growth:.2f}×"
        lines.append(
            f"| {m.backend} | {m.name} | {' | '.join(cells)} | {ratio} | {goal} | {result} |"
        )
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = sorted({m.backend for m in results.measures.values()}, reverse=True)
    fig, axes = plt.subplots(1, len(backends) + 1, figsize=(6.2 * (len(backends) + 1), 5.6),
                             layout="constrained")  # fmt: skip
    for ax, backend in zip(axes, backends, strict=False):
        for m in results.measures.values():
            if m.backend != backend or m.unit == "MB" or m.unit == "events/s":
                continue
            xs = sorted(m.values)
            scale = 1e6 if m.unit == "s" else 1.0  # seconds → µs: one axis
            ax.plot(xs, [m.values[x] * scale for x in xs], marker="o", label=m.name)
        ax.set(xscale="log", yscale="log", xlabel="events stored",
               ylabel="cost per operation (µs)", title=f"{backend}: cost per operation")  # fmt: skip
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1)
    ax = axes[-1]
    for m in results.measures.values():
        if m.name == "export peak RSS":
            xs = sorted(m.values)
            ax.plot(xs, [m.values[x] for x in xs], marker="o", label=f"{m.backend}")
    ax.axhline(EXPORT_RSS_GOAL_MB, color="red", linestyle="--", label="goal: 1 GB")
    ax.set(xscale="log", yscale="log", xlabel="events stored", ylabel="peak RSS (MB)",
           title="export of the whole store to Parquet")  # fmt: skip
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e4,1e5,1e6,1e7", help="stored events, comma-separated")
    parser.add_argument("--backends", default="sqlite,redis")
    parser.add_argument("--redis-max", default="2e6", help="Redis sizes stop here (memory)")
    parser.add_argument(
        "--no-write",
        action="store_true",
        help="print only; leave RESULTS.md and scale.png (unless --plot)",
    )
    parser.add_argument("--plot", type=Path, default=None, help=f"draw here (default {PLOT.name})")
    parser.add_argument("--export-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.export_child:
        await export_child(*args.export_child)
        return 0
    sizes = sorted({_size(s) for s in args.sizes.split(",") if s.strip()})
    redis_max = _size(args.redis_max)
    redis_sizes = sorted({min(s, redis_max) for s in sizes})
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    command = " ".join([".venv/bin/python benchmarks/bench_scale.py",
                        *(argv if argv is not None else sys.argv[1:])])  # fmt: skip
    results = Results()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="eventkit-scale-") as tmp:
        for backend in backends:
            if backend == "sqlite":
                await bench_sqlite(sizes, Path(tmp), results)
            elif backend == "redis":
                with RedisServer() as server:
                    await bench_redis(redis_sizes, server.url, Path(tmp), results)
            else:
                parser.error(f"unknown backend {backend!r}: use sqlite or redis")
    columns = sorted({s for m in results.measures.values() for s in m.values})
    text = table(results, columns)
    elapsed = time.perf_counter() - began
    print(text)
    print(f"({elapsed:.0f} s)")
    drawing = args.plot or (None if args.no_write else PLOT)
    if drawing is not None:
        plot(results, drawing)
        print(f"drew {drawing}")
    if not args.no_write:
        notes = [
            f"- run time: {elapsed / 60:.0f} min on a 2-core virtual machine whose speed drifts "
            "with its host's load: single figures, not medians of runs; read ratios, not absolute "
            "values",
            "- each size is a fresh store filled through its own append; groups subscribe to "
            f"`{EVENT_TYPE}`; costs are medians of {PUBLISH_BATCHES}-{IDLE_CLAIMS} calls",
            f"- plot: `benchmarks/{PLOT.name}`",
        ]
        env = [line for line in environment(command) if not line.startswith("- SQLite")]
        write_section(SECTION, "\n".join([SECTION, "", *env, *notes, "", text, ""]))
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
