"""Peers (issue 12): eventkit beside faststream, taskiq-redis, saq, arq, persist-queue, huey and
eventsourcing, measured side by side in one run.

    .venv/bin/python benchmarks/bench_peers.py [--quick] [--peers arq,huey] [--no-write]
                                               [--scratch DIR] [--rounds 3]

Each peer lives in its own venv under the scratch folder (default ~/.cache/eventkit-bench/peers/
<name>), made with `python -m venv` from this venv's interpreter and `pip install` of the pinned
version from PyPI on first use: arq needs redis-py < 6 and saq < 8, so they cannot share eventkit's
venv. Each measurement is a small script, benchmarks/peers/bench_<name>.py, run in the peer's venv
(eventkit's, bench_eventkit.py, in this one); it prints one JSON line of figures.

The workload is bench_core.py's: N = 20,000 events of ~370 B (the event with its envelope, as JSON);
publish one by one, publish in batches of 1,000 where the peer has a batch publish (— where not),
consume+ack of what is stored by a fresh consumer, and publish→handler latency p50/p99 at one event
every 5 ms (300 events after 20 of warm-up). eventkit consumes at batch_size=500 and at the default
batch_size=10. SQLite peers run with WAL + synchronous=NORMAL like eventkit; Redis is a
redis-server started here on a free loopback port without persistence (no AOF, no RDB), flushed
between runs and stopped at the end. Rounds are interleaved (every runner once per round, the order
rotated each round); the table gives medians with the range over rounds, and ratios are taken
within a round (eventkit's figure against the peer's from the same round), then their median.

Prints markdown and, unless --no-write, rewrites the "## Peers (issue 12)" section of
benchmarks/RESULTS.md. --quick: N = 2,000, 100 latency events, one round (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_core import RedisServer  # noqa: E402
from benchmarks.results_file import RESULTS, write_section  # noqa: E402

SECTION = "## Peers (issue 12)"
PEER_DIR = ROOT / "benchmarks" / "peers"
DEFAULT_SCRATCH = Path.home() / ".cache" / "eventkit-bench" / "peers"
COLUMNS = ("publish_single", "publish_batch", "consume", "p50", "p99")
THROUGHPUT = ("publish_single", "publish_batch", "consume")
RUN_TIMEOUT = 1_200  # seconds for one runner in one round


@dataclass(frozen=True)
class Peer:
    name: str  # --peers name, venv folder, benchmarks/peers/bench_<name with _>.py
    label: str  # the table's library column
    backend: str
    distribution: str
    version: str
    requirements: tuple[str, ...]

    @property
    def script(self) -> Path:
        return PEER_DIR / f"bench_{self.name.replace('-', '_')}.py"


PEERS = {
    peer.name: peer
    for peer in (
        Peer("faststream", "faststream {v}", "redis", "faststream", "0.7.8",
             ("faststream[redis]==0.7.8", "hiredis")),
        Peer("taskiq-redis", "taskiq-redis {v}", "redis", "taskiq-redis", "1.2.4",
             ("taskiq-redis==1.2.4", "hiredis")),
        Peer("saq", "saq {v}", "redis", "saq", "0.26.4",
             ("saq[redis,hiredis]==0.26.4", "typing_extensions")),
        Peer("arq", "arq {v} (poll 0.05 s)", "redis", "arq", "0.28.0", ("arq==0.28.0",)),
        Peer("persist-queue", "persist-queue {v} (SQLiteAckQueue)", "sqlite", "persist-queue",
             "1.1.0", ("persist-queue==1.1.0",)),
        Peer("huey", "huey {v} (SqliteHuey)", "sqlite", "huey", "3.5.4", ("huey==3.5.4",)),
        Peer("eventsourcing", "eventsourcing {v}", "sqlite", "eventsourcing", "9.5.6",
             ("eventsourcing==9.5.6",)),
    )
}  # fmt: skip
EVENTKIT = ("eventkit-sqlite", "eventkit-redis")


# -- venvs --------------------------------------------------------------------------------------


def base_python() -> str:
    """This venv's interpreter outside the venv, so every peer runs on the same Python."""
    candidate = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    return str(candidate) if candidate.exists() else (shutil.which("python3") or "python3")


def installed_version(python: Path, distribution: str) -> str | None:
    if not python.exists():
        return None
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def ensure_venv(scratch: Path, peer: Peer) -> Path:
    """The peer's venv with its pinned version, made (or repaired) on first use."""
    venv = scratch / peer.name
    python = venv / "bin" / "python"
    if installed_version(python, peer.distribution) == peer.version:
        return python
    print(f"   making {venv} ({', '.join(peer.requirements)}) ...", flush=True)
    if not python.exists():
        subprocess.run([base_python(), "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         *peer.requirements],
        check=True,
    )  # fmt: skip
    found = installed_version(python, peer.distribution)
    if found != peer.version:
        raise RuntimeError(f"{peer.name}: installed {found}, wanted {peer.version}")
    return python


# -- running ------------------------------------------------------------------------------------


def flush_redis(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"FLUSHALL\r\n")
        if not s.recv(64).startswith(b"+OK"):
            raise RuntimeError("FLUSHALL failed")


def run_script(python: Path | str, script: Path, args: Sequence[str], log: Path) -> dict[str, Any]:
    """Run one measurement; its last JSON line, or {"error": ...} with the log's tail."""
    start = time.perf_counter()
    with log.open("w") as err:
        try:
            done = subprocess.run(
                [str(python), str(script), *args], stdout=subprocess.PIPE, stderr=err,
                text=True, timeout=RUN_TIMEOUT, cwd=str(ROOT),
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {RUN_TIMEOUT} s (log: {log})"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = log.read_text().strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' / '.join(tail)} (log: {log})"}
    result: dict[str, Any] = json.loads(lines[-1])
    result["seconds"] = time.perf_counter() - start
    return result


@dataclass
class Sizes:
    n: int
    latency: int
    rounds: int


def run_rounds(
    runners: Sequence[str], pythons: dict[str, Path], sizes: Sizes, redis: RedisServer,
    work: Path,
) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """results[runner][round]: each runner once per round, the order rotated every round."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runners}
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for r in range(sizes.rounds):
        order = list(runners[r % len(runners) :]) + list(runners[: r % len(runners)])
        print(f"-- round {r + 1}/{sizes.rounds}: {', '.join(order)}", flush=True)
        for name in order:
            folder = work / f"{name}-r{r}"
            folder.mkdir(parents=True, exist_ok=True)
            args = ["--n", str(sizes.n), "--latency", str(sizes.latency), "--tag", f"r{r}",
                    "--redis-url", redis.url, "--workdir", str(folder)]  # fmt: skip
            if name in EVENTKIT:
                args += ["--backend", name.split("-")[1]]
                script = PEER_DIR / "bench_eventkit.py"
                python: Path | str = sys.executable
            else:
                script, python = PEERS[name].script, pythons[name]
            result = run_script(python, script, args, logs / f"{name}-r{r}.log")
            flush_redis(redis.port)
            shutil.rmtree(folder, ignore_errors=True)
            results[name].append(result)
            if "error" in result:
                print(f"   {name}: ERROR {result['error']}", flush=True)
            else:
                figures = ", ".join(
                    f"{key} {_num(result[key])}" for key in (*COLUMNS, "consume_default")
                    if result.get(key) is not None
                )  # fmt: skip
                print(f"   {name} ({result['seconds']:.0f} s): {figures}", flush=True)
    return results


# -- report -------------------------------------------------------------------------------------


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def values(rounds: Sequence[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in rounds if "error" not in r and r.get(key) is not None]


def cell(rounds: Sequence[dict[str, Any]], key: str, unit: str) -> str:
    found = values(rounds, key)
    if not found:
        return "—" if any("error" not in r for r in rounds) else "error"
    text = f"{_num(statistics.median(found))}{unit}"
    if len(found) > 1:
        text += f" ({_num(min(found))}–{_num(max(found))})"
    return text


def median_or_none(rounds: Sequence[dict[str, Any]], key: str) -> float | None:
    found = values(rounds, key)
    return statistics.median(found) if found else None


def label_of(name: str, rounds: Sequence[dict[str, Any]]) -> str:
    version = next((r["version"] for r in rounds if "version" in r), PEERS[name].version)
    return PEERS[name].label.format(v=version)


def figures_table(results: dict[str, list[dict[str, Any]]], peers: Sequence[str]) -> str:
    head = "| library | backend | publish 1-by-1 | publish batch | consume+ack | p50 | p99 |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
    units = {"publish_single": "/s", "publish_batch": "/s", "consume": "/s", "p50": " ms",
             "p99": " ms"}  # fmt: skip
    for backend in ("sqlite", "redis"):
        rounds = results[f"eventkit-{backend}"]
        cells = " | ".join(cell(rounds, key, units[key]) for key in COLUMNS)
        lines.append(f"| eventkit (batch_size=500) | {backend} | {cells} |")
    default = " / ".join(cell(results[f"eventkit-{b}"], "consume_default", "/s")
                         for b in ("sqlite", "redis"))  # fmt: skip
    lines.append(f"| eventkit, default batch_size=10 | sqlite / redis | | | {default} | | |")
    for name in peers:
        rounds = results[name]
        cells = " | ".join(cell(rounds, key, units[key]) for key in COLUMNS)
        lines.append(f"| {label_of(name, rounds)} | {PEERS[name].backend} | {cells} |")
    return "\n".join(lines)


def ratio_table(results: dict[str, list[dict[str, Any]]], peers: Sequence[str]) -> str:
    """eventkit ÷ peer per round on the peer's backend, then the median (range) of those."""
    head = "| eventkit ÷ peer, same round | backend | publish 1-by-1 | publish batch | consume+ack " \
           "| p50 | p99 |"  # fmt: skip
    lines = [head, "|---|---|---:|---:|---:|---:|---:|"]
    for name in peers:
        backend = PEERS[name].backend
        ours, theirs = results[f"eventkit-{backend}"], results[name]
        cells = []
        for key in COLUMNS:
            ratios = [
                a[key] / b[key]
                for a, b in zip(ours, theirs, strict=True)
                if "error" not in a and "error" not in b and a.get(key) and b.get(key)
            ]
            if not ratios:
                cells.append("—")
                continue
            text = f"{statistics.median(ratios):.2f}×"
            if len(ratios) > 1:
                text += f" ({min(ratios):.2f}–{max(ratios):.2f})"
            cells.append(text)
        lines.append(f"| {label_of(name, theirs)} | {backend} | {' | '.join(cells)} |")
    return "\n".join(lines)


def acceptance(results: dict[str, list[dict[str, Any]]], peers: Sequence[str]) -> list[str]:
    """Issue 12's first acceptance row, on the medians of this run."""
    names = {"publish_single": "publish one by one", "publish_batch": "publish batch",
             "consume": "consume+ack (batch_size=500)"}  # fmt: skip
    lines = []
    for backend in ("sqlite", "redis"):
        ours = results[f"eventkit-{backend}"]
        mine = [p for p in peers if PEERS[p].backend == backend]
        for key in THROUGHPUT:
            value = median_or_none(ours, key)
            theirs = [(median_or_none(results[p], key), p) for p in mine]
            theirs = [(v, p) for v, p in theirs if v is not None]
            if value is None or not theirs:
                continue
            best, who = max(theirs)
            verdict = "meets" if value >= best else "**misses**"
            lines.append(f"- {backend}, {names[key]} ≥ every peer: {verdict} "
                         f"({_num(value)}/s against {who}'s {_num(best)}/s)")  # fmt: skip
        value = median_or_none(ours, "p50")
        theirs = [(v, p) for p in mine if (v := median_or_none(results[p], "p50")) is not None]
        if value is not None and theirs:
            best, who = min(theirs)
            verdict = "meets" if value <= best * 1.10 else "**misses**"
            lines.append(f"- {backend}, p50 within 10 % of the best peer's: {verdict} "
                         f"({_num(value)} ms against {who}'s {_num(best)} ms)")  # fmt: skip
        p99 = median_or_none(ours, "p99")
        if p99 is not None:
            worst = max(values(ours, "p99"))
            verdict = "meets" if p99 < 5.0 else "**misses**"
            lines.append(f"- {backend}, p99 < 5 ms: {verdict} (median {_num(p99)} ms, "
                         f"worst round {_num(worst)} ms)")  # fmt: skip
    return lines


def environment(
    command: str, sizes: Sizes, results: dict[str, list[dict[str, Any]]], seconds: float
) -> list[str]:
    server = shutil.which("redis-server") or "redis-server"
    out = subprocess.run([server, "--version"], capture_output=True, text=True).stdout
    redis_version = out.split("v=")[1].split()[0] if "v=" in out else "?"
    extras = []
    for name, rounds in results.items():
        for r in rounds:
            if "error" in r:
                continue
            pins = [f"{k.replace('_py', '-py')} {r[k]}" for k in ("taskiq", "redis_py") if k in r]
            if pins:
                extras.append(f"{name}: {', '.join(pins)}")
            break
    return [
        f"- command: `{command}` ({seconds / 60:.1f} min in all)",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} CPUs, {platform.machine()}, {platform.system()} "
        f"{platform.release()}, a virtual machine whose speed drifts with its host's load (the "
        f"same code runs up to ~40 % apart across hours): read the ratios, taken within a round",
        f"- Python {platform.python_version()} for eventkit and every peer (one venv each), "
        f"SQLite {sqlite3.sqlite_version}, redis-server {redis_version} (`--save '' "
        f"--appendonly no`, flushed between runs)",
        f"- N = {sizes.n:,} events of ~370 B per measure, {sizes.rounds} interleaved round(s), "
        f"medians (min–max over rounds); latency: {sizes.latency} events 5 ms apart after 20 of "
        f"warm-up; publish batch = 1,000 events per call",
        "- SQLite: WAL + synchronous=NORMAL everywhere (set by the peer script where the library "
        "does not); consume+ack: one consumer at the library's defaults except faststream "
        "(max_records=500, logging off) and arq (poll_delay 0.05 s)",
        *([f"- dependencies: {'; '.join(extras)}"] if extras else []),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N=2,000, one round (smoke run)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    parser.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH, help="venvs live here")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md")
    args = parser.parse_args(argv)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        parser.error(f"unknown peers {unknown}: choose from {', '.join(PEERS)}")
    sizes = Sizes(2_000, 100, 1) if args.quick else Sizes(20_000, 300, 3)
    if args.rounds:
        sizes.rounds = args.rounds
    command = " ".join([".venv/bin/python benchmarks/bench_peers.py",
                        *(argv if argv is not None else sys.argv[1:])])  # fmt: skip
    began = time.perf_counter()
    scratch = args.scratch.expanduser().resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    print("-- venvs ...", flush=True)
    pythons = {name: ensure_venv(scratch, PEERS[name]) for name in peers}
    runners = [*EVENTKIT, *peers]
    with RedisServer() as redis, tempfile.TemporaryDirectory(dir=scratch, prefix="run-") as tmp:
        results = run_rounds(runners, pythons, sizes, redis, Path(tmp))
        logs = scratch / "last-run-logs"
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(Path(tmp) / "logs", logs)
    seconds = time.perf_counter() - began
    body = [
        SECTION, "", *environment(command, sizes, results, seconds), "",
        figures_table(results, peers), "",
        "Ratios within a round (above 1× eventkit is ahead on throughput; below 1× it is ahead on "
        "latency):", "",
        ratio_table(results, peers), "",
        "Issue 12's acceptance (first row) on this run's medians:", "",
        *acceptance(results, peers), "",
    ]  # fmt: skip
    text = "\n".join(body)
    print(text)
    print(f"({seconds:.0f} s; logs in {scratch / 'last-run-logs'})")
    if not args.no_write:
        write_section(SECTION, text)
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    failed = any("error" in r for rounds in results.values() for r in rounds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
