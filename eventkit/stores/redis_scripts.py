"""The Redis store's Lua scripts: read once from the package's redis_lua/ files, registered per client.

Each script runs with lib.lua in front of it (shared helpers and the one definition of what the
scripts write), so Redis reports a script's line numbers counting lib.lua's lines first.
"""

from __future__ import annotations

import dataclasses
import functools
from importlib.resources import files
from types import MappingProxyType
from typing import Any

from redis.commands.core import AsyncScript

FOLDER = "redis_lua"
LIB = "lib.lua"


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


@functools.cache
def sources() -> MappingProxyType[str, str]:
    """The text Redis runs for each script, by name: lib.lua, then the script's file."""
    folder = files(__package__) / FOLDER
    lib = (folder / LIB).read_text(encoding="utf-8")
    return MappingProxyType(
        {
            field.name: lib + "\n" + (folder / f"{field.name}.lua").read_text(encoding="utf-8")
            for field in dataclasses.fields(Scripts)
        }
    )
