"""The `eventkit` command: demo, import/export, stats, DLQ and group operations on any store;
`top` and `tail` watch it live."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from eventkit.cli_common import CommandError, describe_store, open_bus, sqlite_path
from eventkit.cli_groups import check_groups_usage, require_group, run_groups
from eventkit.config import EventStoreConfig
from eventkit.demo import run_demo
from eventkit.errors import EventKitError
from eventkit.live import LiveBus, file_identity, run_tail, run_top
from eventkit.progress import ProgressLine

DEMO_PATH = Path("eventkit-demo.db")
#: commands that run until Ctrl-C, which ends them normally (exit 0)
LIVE_COMMANDS = ("top", "tail")
#: seconds before import/export show progress: a quick command prints only its result
PROGRESS_DELAY = 0.5


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


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`, else a usage error saying so."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not a number >= {minimum}")
        return value

    return parse


_positive_int = _whole_number(1)
_count = _whole_number(0)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0.1 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} is not between 0.1 and 3600 seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the demo job on its own SQLite file")
    demo.add_argument("--path", type=Path, default=DEMO_PATH, help=f"default: ./{DEMO_PATH}")
    demo.add_argument("--events", type=_positive_int, default=3000)
    demo.add_argument("--report-dir", type=Path, default=Path("eventkit-report"))
    demo.add_argument("--no-report", action="store_true")

    importer = commands.add_parser("import", help="load a JSON Lines export into the store")
    importer.add_argument("file", type=Path)
    importer.add_argument(
        "--skip-invalid",
        action="store_true",
        help="import the valid lines and name the invalid ones (default: import nothing)",
    )
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

    groups = commands.add_parser(
        "groups", help="list the consumer groups; move a group's position back or on, or delete it"
    )
    groups.add_argument("action", nargs="?", choices=["list", "reset", "delete"], default="list")
    groups.add_argument("group", nargs="?", help="the group to reset or delete")
    groups.add_argument(
        "--to", help="reset: earliest, latest or an ISO time (event time; naive = UTC)"
    )
    groups.add_argument(
        "--force", action="store_true",
        help="reset even while consumers hold leases: they are released, their acks will not count",
    )  # fmt: skip
    groups.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    groups.set_defaults(groups_parser=groups)  # its usage errors name `eventkit groups`
    _store_options(groups)

    top = commands.add_parser("top", help="watch the groups' lag, in flight, DLQ and throughput")
    top.add_argument("--every", type=_seconds, default=1.0, help="seconds between samples")
    top.add_argument("--once", action="store_true", help="print one sample and exit")
    _store_options(top)

    tail = commands.add_parser("tail", help="print the newest events; -f: and new ones as stored")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument("-n", dest="count", type=_count, default=10, help="default: 10")
    tail.add_argument("--type", dest="event_types", action="append", help="repeatable")
    _store_options(tail)
    return parser


async def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        return await _demo(args)
    config = _config(args)
    if args.command == "import":
        return await _import(config, args)
    if args.command == "export":
        return await _export(config, args)
    if args.command == "stats":
        async with open_bus(config, read_only=True) as bus:
            print(json.dumps(await bus.get_stats(), indent=2, default=str))
        return 0
    if args.command in LIVE_COMMANDS:
        return await _live(config, args)
    if args.command == "groups":
        return await run_groups(config, args)
    return await _dlq(config, args)


async def _demo(args: argparse.Namespace) -> int:
    path: Path = args.path
    if path.exists():
        if not path.name.endswith("eventkit-demo.db") or not path.is_file():
            raise CommandError(f"{path} exists and is not a demo store: pick another --path")
        for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            leftover.unlink(missing_ok=True)
        print(f"removed the previous demo store {path}")
    report = None if args.no_report else args.report_dir
    await run_demo(path, events=args.events, report_dir=report)
    return 0


async def _import(config: EventStoreConfig, args: argparse.Namespace) -> int:
    from eventkit.transfer import check_jsonl, import_jsonl

    progress = ProgressLine(delay=PROGRESS_DELAY)
    checked = check_jsonl(  # the whole file, before the store is opened (or created)
        args.file, progress=lambda done, _: progress.update(f"checked {done} lines of {args.file}")
    )
    progress.clear()
    if checked.invalid and not args.skip_invalid:
        raise CommandError(
            f"{checked.describe()}; nothing was imported: fix the file, or pass --skip-invalid "
            "to import the other lines"
        )
    if config.backend == "sqlite" and _something_at(sqlite_path(config)):
        async with open_bus(config, read_only=True):  # refuses a file that is not an eventkit store
            pass
    async with open_bus(config) as bus:
        count = await import_jsonl(
            bus, args.file, skip_invalid=args.skip_invalid, checked=checked,
            progress=lambda done, total: progress.update(_counted("imported", done, total)),
        )  # fmt: skip
        progress.done(f"imported {count} events from {args.file} into {bus.store.backend}")
    return 0


async def _export(config: EventStoreConfig, args: argparse.Namespace) -> int:
    from eventkit.transfer import check_output_path

    check_output_path(args.output)  # before the store is opened
    if config.backend == "sqlite":
        store = sqlite_path(config).resolve()
        if args.output.resolve() in (store, Path(f"{store}-wal"), Path(f"{store}-shm")):
            raise CommandError(f"{args.output} is the store itself: export to another file")
    if args.format != "jsonl":
        try:
            from eventkit.frames import export_frame
        except ImportError:
            raise CommandError(
                f"{args.format} export needs pandas: pip install 'eventkit[notebook]' "
                "(or use --format jsonl)"
            ) from None
    progress = ProgressLine(delay=PROGRESS_DELAY)
    report = lambda done, total: progress.update(_counted("exported", done, total))  # noqa: E731
    async with open_bus(config, read_only=True) as bus:
        if args.format == "jsonl":
            from eventkit.transfer import export_jsonl

            count = await export_jsonl(
                bus, args.output, event_types=args.event_types, progress=report
            )
        else:
            count = await export_frame(bus, args.output, args.format, event_types=args.event_types)
    progress.done(f"exported {count} events to {args.output}")
    return 0


async def _dlq(config: EventStoreConfig, args: argparse.Namespace) -> int:
    async with open_bus(config, read_only=True) as bus:  # the group must exist, whatever the action
        await require_group(bus, config, args.group)
        if not (args.replay or args.discard):
            letters = await bus.store.get_pending_events(args.group)
            print(f"{len(letters)} dead letters in {args.group!r}")
            for letter in letters:
                print(
                    f"{letter.event_id}\t{letter.stored.event_type}\t{letter.attempts}\t"
                    f"{letter.last_error}"
                )
            return 0
    async with open_bus(config) as bus:
        if args.replay:
            print(f"replayed {await bus.replay_dlq(args.group)} events to {args.group!r}")
        else:
            print(f"discarded {await bus.discard_dlq(args.group)} events from {args.group!r}")
    return 0


async def _live(config: EventStoreConfig, args: argparse.Namespace) -> int:
    """top and tail: read-only, and opened again when the store changes under them (see LiveBus)."""
    wal = Path(f"{sqlite_path(config)}-wal")
    marker = file_identity(wal) if config.backend == "sqlite" else lambda: None
    live = LiveBus(lambda: open_bus(config, read_only=True), marker)
    tty = sys.stdout.isatty()
    try:
        if args.command == "top":
            await run_top(
                live, sys.stdout, describe_store(config), every=args.every, once=args.once, tty=tty
            )
        else:
            width = shutil.get_terminal_size().columns if tty else 0
            await run_tail(
                live, sys.stdout, sys.stderr, count=args.count, event_types=args.event_types,
                follow=args.follow, payload_chars=max(width - 80, 40) if tty else 80,
            )  # fmt: skip
    except BrokenPipeError:  # `eventkit tail -f | head`: the reader left, which ends us quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        await live.drop()
    return 0


def _something_at(path: Path) -> bool:
    """A folder or a file with data is there (an empty file is a new SQLite database)."""
    try:
        return path.is_dir() or path.stat().st_size > 0
    except FileNotFoundError:
        return False


def _counted(verb: str, done: int, total: int | None) -> str:
    return f"{verb} {done}/{total} events" if total else f"{verb} {done} events"


def _one_line(error: BaseException) -> str:
    """An error as one line: its message (an OSError's file first) and any notes."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error) or type(error).__name__
    parts = [text, *getattr(error, "__notes__", [])]
    return " ".join(" ".join(part.split()) for part in parts)


def _error(text: str) -> None:
    """One line on stderr, on a clean line even after a progress line on a terminal."""
    clear = "\r\x1b[K" if sys.stderr.isatty() else ""
    print(f"{clear}eventkit: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit code 0 on success; 1 with one line on stderr for bad input, a store or an OS error;
    2 for a usage error (argparse). EVENTKIT_DEBUG=1 shows the traceback of an unexpected error."""
    args = build_parser().parse_args(argv)  # usage errors exit 2 here
    if args.command == "groups":
        check_groups_usage(args.groups_parser, args)
    handler = logging.StreamHandler(sys.stderr)  # library warnings, one line each
    handler.setFormatter(logging.Formatter("eventkit: %(message)s"))
    handler.setLevel(logging.WARNING)
    package_logger = logging.getLogger("eventkit")
    package_logger.addHandler(handler)
    try:
        return asyncio.run(_run(args))
    except (EventKitError, OSError, CommandError) as e:
        _error(_one_line(e))
        return e.exit_code if isinstance(e, CommandError) else 1
    except KeyboardInterrupt:  # Ctrl-C is how top and tail are meant to end
        return 0 if args.command in LIVE_COMMANDS else 130
    except Exception as e:
        if os.environ.get("EVENTKIT_DEBUG"):
            raise
        _error(
            f"unexpected {type(e).__name__}: {_one_line(e)} (please report it; "
            "EVENTKIT_DEBUG=1 shows the traceback)"
        )
        return 1
    finally:
        package_logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
