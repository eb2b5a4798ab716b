"""The Redis store's Lua scripts: read once from the package's redis_lua/ files, registered per client.

Each script runs with entry.lua and lib.lua in front of it (shared helpers and the one definition
of what the scripts write), append with entry.lua only: Redis runs a script's whole text on each
call, and lib.lua's definitions would be an eighth of the append's server time. Redis reports a
script's line numbers counting those lines first.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from importlib.resources import files
from types import MappingProxyType
from typing import Any

from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

FOLDER = "redis_lua"
#: what goes in front of each script, by default and for those that need less
PRELUDE = ("entry.lua", "lib.lua")
PRELUDES = {"append": ("entry.lua",)}


@dataclasses.dataclass(frozen=True, slots=True)
class Scripts:
    """The scripts registered on one client (redis_lua/<name>.lua each): calling one runs EVALSHA,
    and redis-py loads it again when the server no longer knows it (NOSCRIPT, after a restart)."""

    append: AsyncScript
    ensure_group: AsyncScript
    claim: AsyncScript
    ack: AsyncScript
    settle: AsyncScript
    replay: AsyncScript
    unread: AsyncScript
    trim: AsyncScript
    move_layout: AsyncScript
    reset_group: AsyncScript
    delete_group: AsyncScript
    count: AsyncScript

    @classmethod
    def register(cls, client: Any) -> Scripts:
        """Register every script on `client` (nothing is sent until a script first runs)."""
        return cls(**{name: client.register_script(text) for name, text in sources().items()})

    async def load(self, client: Any) -> None:
        """Load every script on the server (on a cluster, every master): a pipeline runs EVALSHA
        only, and a cluster's node knows no script after a restart or once a slot moved to it."""
        for field in dataclasses.fields(self):
            await client.script_load(getattr(self, field.name).script)


async def run(client: Any, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """EVALSHA of a registered script, loaded again when the server no longer knows it (NOSCRIPT,
    after a restart), as AsyncScript.__call__ does, without its two imports, two isinstance
    checks and argument copies per call: ~6 % of a publish one by one (benchmarks/bench_peers.py
    row "publish 1-by-1", redis)."""
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        script.sha = await client.script_load(script.script)
        return await client.evalsha(script.sha, len(keys), *keys, *args)


@functools.cache
def sources() -> MappingProxyType[str, str]:
    """The text Redis runs for each script, by name: its prelude's files, then its own."""
    folder = files(__package__) / FOLDER

    def text(name: str) -> str:
        return (folder / name).read_text(encoding="utf-8")

    return MappingProxyType(
        {
            field.name: "\n".join(
                [*map(text, PRELUDES.get(field.name, PRELUDE)), text(f"{field.name}.lua")]
            )
            for field in dataclasses.fields(Scripts)
        }
    )
