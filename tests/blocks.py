"""Run documentation code blocks (with top-level await) the way a user pastes them."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Any


async def run_block(source: str, namespace: dict[str, Any], name: str = "<block>") -> None:
    code = compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # noqa: S307 - the documentation's own examples
    if inspect.iscoroutine(result):
        await result


def python_blocks(markdown: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown.read_text(), flags=re.S)
