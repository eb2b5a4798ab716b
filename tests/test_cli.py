"""The `eventkit` command: the demo job, import/export round trip, stats and DLQ operations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _eventkit(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "eventkit", *args], cwd=cwd, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )  # fmt: skip


def test_demo_runs_on_its_own_sqlite_file_and_reports(tmp_path: Path) -> None:
    done = _eventkit("demo", "--events", "600", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (tmp_path / "eventkit-demo.db").exists()
    assert not (tmp_path / ".eventkit").exists()  # never the user's default store
    assert "published 600/600 events" in done.stderr  # progress is visible
    assert "consuming |" in done.stderr
    assert "catalog" in out and "thumbnails" in out
    assert "dead-letter queue of 'thumbnails':" in out
    assert "too large to thumbnail" in out  # poison events reached the DLQ with their error
    report = tmp_path / "eventkit-report"
    for name in ("events.csv", "deliveries.csv", "dlq.csv", "throughput.png", "latency.png"):
        assert (report / name).stat().st_size > 0, name
    assert "report written to" in out
    [hint] = [line for line in out.splitlines() if "replay them with:" in line]
    command = hint.split("replay them with:")[1].split("(or")[0].split()
    assert command[:2] == ["eventkit", "dlq"] and "eventkit-demo.db" in command  # the demo's store
    replayed = _eventkit(*command[1:], cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert replayed.returncode == 0 and "replayed" in replayed.stdout, replayed.stderr
    assert not (tmp_path / ".eventkit").exists()
    again = _eventkit("demo", "--events", "100", "--no-report", cwd=tmp_path)
    assert again.returncode == 0 and "removed the previous demo store" in again.stdout


def test_import_export_stats_and_dlq_commands(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    rows = [
        {"event_id": f"id-{i}", "event_type": "workflow.started", "version": 1, "source": "cli",
         "timestamp": 1_790_000_000_000 + i, "data": {"workflow_id": f"wf-{i}", "workflow_type": "x"}}
        for i in range(25)
    ]  # fmt: skip
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    store = ["--backend", "sqlite", "--path", str(tmp_path / "cli.db")]
    imported = _eventkit("import", str(source), *store, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "imported 25 events" in imported.stderr
    exported = _eventkit("export", "--format", "jsonl", "-o", "out.jsonl", *store, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    back = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert back == rows  # ids, timestamps and versions kept
    stats = _eventkit("stats", *store, cwd=tmp_path)
    assert json.loads(stats.stdout)["store"]["total_events"] == 25
    dlq = _eventkit("dlq", "nobody", *store, cwd=tmp_path)
    assert "0 dead letters in 'nobody'" in dlq.stdout


def test_bad_backend_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    done = _eventkit("stats", cwd=tmp_path, env={"EVENT_STORE_BACKEND": "mysql"})
    assert done.returncode == 2
    assert "EVENT_STORE_BACKEND='mysql'" in done.stderr and "Traceback" not in done.stderr
