"""The `eventkit groups` subcommand, apart from the rest of the CLI: list the consumer groups, move
one's position back or on, or delete it, asking first."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Literal

from eventkit.bus import EventBus
from eventkit.cli_common import CommandError, describe_store, open_bus
from eventkit.clock import parse_time
from eventkit.config import EventStoreConfig
from eventkit.errors import ConfigError, GroupBusyError
from eventkit.records import GroupReset


async def require_group(bus: EventBus, config: EventStoreConfig, group: str) -> None:
    """CommandError naming the known groups, unless the store holds `group`."""
    groups = await bus.list_groups()
    if group not in groups:
        known = (
            f"known groups: {', '.join(groups)}"
            if groups
            else "the store has no consumer groups yet"
        )
        raise CommandError(f"no consumer group {group!r} in {describe_store(config)}; {known}")


ResetTarget = Literal["earliest", "latest"] | datetime
#: the figures `eventkit groups` lists (get_stats()["groups"] keys) and their headings
GROUP_COLUMNS = {"lag": "lag", "in_flight": "in flight", "dlq": "dlq", "consumers": "consumers"}


def check_groups_usage(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What argparse cannot check alone (exit 2): reset and delete name a group, reset a time."""
    if args.action == "list":
        if args.group is not None or args.to is not None or args.force:
            parser.error("groups list takes no GROUP, --to or --force")
        return
    if args.group is None:
        parser.error(f"groups {args.action} needs a GROUP")
    if args.action == "delete":
        if args.to is not None or args.force:
            parser.error("groups delete takes no --to or --force")
        return
    if args.to is None:
        parser.error("groups reset needs --to earliest|latest|ISO-time")
    try:
        args.target = args.to if args.to in ("earliest", "latest") else parse_time(args.to, "--to")
    except ConfigError as e:
        parser.error(str(e))


async def run_groups(config: EventStoreConfig, args: argparse.Namespace) -> int:
    if args.action == "list":
        async with open_bus(config, read_only=True) as bus:
            figures = (await bus.get_stats())["groups"]
        if not figures:
            print(f"no consumer groups in {describe_store(config)}")
            return 0
        width = max(len("group"), *map(len, figures))
        print(f"{'group':<{width}}" + "".join(f"  {h:>9}" for h in GROUP_COLUMNS.values()))
        for name, group in figures.items():
            print(f"{name:<{width}}" + "".join(f"  {group[k]:>9,}" for k in GROUP_COLUMNS))
        return 0
    async with open_bus(config, read_only=True) as bus:  # creates nothing when the group is unknown
        await require_group(bus, config, args.group)
        dlq = await bus.dlq_size(args.group) if args.action == "delete" else 0
    if args.action == "delete":
        _confirm(f"Delete group {args.group!r} with its deliveries, counters and {dlq:,} DLQ "
                 "entries?", f"delete group {args.group!r}", args.yes)  # fmt: skip
        async with open_bus(config) as bus:
            await bus.delete_group(args.group)
        print(f"deleted group {args.group!r} with its deliveries, counters and {dlq:,} DLQ entries")
        return 0
    return await _reset(config, args, args.target)


async def _reset(config: EventStoreConfig, args: argparse.Namespace, to: ResetTarget) -> int:
    group, where = args.group, _moment(to)
    try:
        async with open_bus(config) as bus:
            result = await _reset_confirmed(bus, args, to, where)
    except GroupBusyError as e:  # also if a consumer took a lease while we asked
        raise CommandError(
            f"group {group!r} has {e.leased:,} deliveries leased to running consumers: stop "
            "them, or pass --force (their acks will not count)"
        ) from None
    print(
        f"reset group {group!r} to {where}: {result.unread:,} events to deliver again; released "
        f"{result.in_flight:,} in flight, dropped {result.retrying:,} retrying; DLQ and counters kept"
    )
    return 0


async def _reset_confirmed(
    bus: EventBus, args: argparse.Namespace, to: ResetTarget, where: str
) -> GroupReset:
    """What a reset would do, asked about, then done."""
    group = args.group
    preview = await bus.reset_group(group, to, force=args.force, dry_run=True)
    released = (
        f"; {preview.in_flight:,} in flight will be released, {preview.retrying:,} retrying "
        "dropped" if preview.in_flight or preview.retrying else ""
    )  # fmt: skip
    _confirm(
        f"Reset group {group!r} to {where}? {preview.unread:,} events will be delivered "
        f"again{released}", f"reset group {group!r} to {where}", args.yes,
    )  # fmt: skip
    return await bus.reset_group(group, to, force=args.force)


def _moment(to: ResetTarget) -> str:
    """A reset target as the prompt says it: "earliest", "latest" or "2026-11-03 00:00 UTC"."""
    if not isinstance(to, datetime):
        return to
    seconds = f":{to:%S}" if to.second or to.microsecond else ""
    return f"{to:%Y-%m-%d %H:%M}{seconds} UTC"


def _confirm(question: str, action: str, yes: bool) -> None:
    """Ask on a terminal (the default is no); without one, only --yes goes on (exit 2)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise CommandError(
            f"to {action}, pass --yes: it cannot be undone, and stdin is not a terminal to ask",
            exit_code=2,
        )
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise CommandError("cancelled: nothing was changed")
