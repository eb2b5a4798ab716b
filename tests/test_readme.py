"""The README's quick start runs as written, and it gives exactly the two commands CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventkit.versioning import isolated_registry, registry
from tests.blocks import python_blocks, run_block

README = Path(__file__).resolve().parents[1] / "README.md"


async def test_quick_start_blocks_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(README)
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    with isolated_registry():
        for i, block in enumerate(blocks):
            await run_block(block, namespace, f"README block {i}")
        assert registry.current_version("quality.assessed") == 2
    assert namespace["indexed"] == ["abc123"]
    assert (tmp_path / "quickstart.db").exists()
    printed = capsys.readouterr().out
    assert "ConnectionError: thumbnail service down" in printed
    assert "'acked': 1" in printed


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)```", text, flags=re.S)[:2]
    assert commands[0].strip().endswith("eventkit demo")
    assert commands[1].strip() == "./scripts/test"
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./scripts/test" in ci
