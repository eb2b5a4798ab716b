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


def test_every_figure_the_readme_shows_is_a_committed_png() -> None:
    images = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", README.read_text())
    assert len(images) >= 3  # two report figures and the DLQ panel in JupyterLab
    for alt, target in images:
        path = README.parent / target
        assert path.is_file(), f"README shows {target}, which is not in the repository"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", target
        assert 1_000 < path.stat().st_size < 400_000, target
        assert len(alt) > 20, f"{target} needs alt text that says what it shows"
