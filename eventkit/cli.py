"""The `eventkit` command: demo, import/export, stats and DLQ operations on any store."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from eventkit.bus import EventBus
from eventkit.config import EventStoreConfig
from eventkit.demo import ProgressLine, run_demo
from eventkit.errors import EventKitError

DEMO_PATH = Path("eventkit-demo.db")


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["sqlite", "redis", "memory"], help="default: env")
    parser.add_argument("--path", help="SQLite file (default: EVENT_STORE_PATH or ~/.eventkit)")
    parser.add_argument("--redis-url", help="default: REDIS_URL")
    parser.add_argument("--namespace", help="Redis key prefix (default: eventkit)")


def _config(args: argparse.Namespace) -> EventStoreConfig:
    overrides = {
        key: value
        for key, value in (
            ("backend", args.backend),
            ("path", args.path),
            ("redis_url", args.redis_url),
            ("namespace", args.namespace),
        )
        if value is not None
    }
    return EventStoreConfig.from_env(trim_interval_hours=None, **overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the demo job on its own SQLite file")
    demo.add_argument("--path", type=Path, default=DEMO_PATH, help=f"default: ./{DEMO_PATH}")
    demo.add_argument("--events", type=int, default=3000)
    demo.add_argument("--report-dir", type=Path, default=Path("eventkit-report"))
    demo.add_argument("--no-report", action="store_true")

    importer = commands.add_parser("import", help="load a JSON Lines export into the store")
    importer.add_argument("file", type=Path)
    importer.add_argument("--skip-invalid", action="store_true", help="count bad lines, go on")
    _store_options(importer)

    exporter = commands.add_parser("export", help="write the store's events to a file")
    exporter.add_argument("--format", choices=["jsonl", "csv", "parquet"], default="jsonl")
    exporter.add_argument("--output", "-o", type=Path, required=True)
    exporter.add_argument("--type", dest="event_types", action="append", help="repeatable")
    _store_options(exporter)

    stats = commands.add_parser("stats", help="print the store's stats as JSON")
    _store_options(stats)

    dlq = commands.add_parser("dlq", help="list, replay or discard a group's dead letters")
    dlq.add_argument("group")
    action = dlq.add_mutually_exclusive_group()
    action.add_argument("--replay", action="store_true")
    action.add_argument("--discard", action="store_true")
    _store_options(dlq)
    return parser


async def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return await _demo(args)
    async with EventBus(_config(args)) as bus:
        if args.command == "import":
            return await _import(bus, args)
        if args.command == "export":
            return await _export(bus, args)
        if args.command == "stats":
            print(json.dumps(await bus.get_stats(), indent=2, default=str))
            return 0
        return await _dlq(bus, args)


async def _demo(args: argparse.Namespace) -> int:
    path: Path = args.path
    if path.exists():
        if not path.name.endswith("eventkit-demo.db"):
            print(f"{path} exists and is not a demo store; pick another --path", file=sys.stderr)
            return 2
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        print(f"removed the previous demo store {path}")
    report = None if args.no_report else args.report_dir
    await run_demo(path, events=args.events, report_dir=report)
    return 0


async def _import(bus: EventBus, args: argparse.Namespace) -> int:
    from eventkit.transfer import import_jsonl

    progress = ProgressLine()
    count = await import_jsonl(
        bus, args.file, skip_invalid=args.skip_invalid,
        progress=lambda done, total: progress.update(_counted("imported", done, total)),
    )  # fmt: skip
    progress.done(f"imported {count} events from {args.file} into {bus.store.backend}")
    return 0


async def _export(bus: EventBus, args: argparse.Namespace) -> int:
    progress = ProgressLine()
    report = lambda done, total: progress.update(_counted("exported", done, total))  # noqa: E731
    if args.format == "jsonl":
        from eventkit.transfer import export_jsonl

        count = await export_jsonl(bus, args.output, event_types=args.event_types, progress=report)
    else:
        try:
            from eventkit.frames import export_frame
        except ImportError:
            print(
                "csv/parquet export needs pandas: pip install 'eventkit[notebook]'", file=sys.stderr
            )
            return 2
        count = await export_frame(bus, args.output, args.format, event_types=args.event_types)
    progress.done(f"exported {count} events to {args.output}")
    return 0


async def _dlq(bus: EventBus, args: argparse.Namespace) -> int:
    if args.replay:
        print(f"replayed {await bus.replay_dlq(args.group)} events to {args.group!r}")
    elif args.discard:
        print(f"discarded {await bus.discard_dlq(args.group)} events from {args.group!r}")
    else:
        letters = await bus.store.get_pending_events(args.group)
        print(f"{len(letters)} dead letters in {args.group!r}")
        for letter in letters:
            print(
                f"{letter.event_id}\t{letter.stored.event_type}\t{letter.attempts}\t{letter.last_error}"
            )
    return 0


def _counted(verb: str, done: int, total: int | None) -> str:
    return f"{verb} {done}/{total} events" if total else f"{verb} {done} events"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except EventKitError as e:
        print(f"eventkit: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
