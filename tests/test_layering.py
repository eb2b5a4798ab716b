"""The core never loads the notebook stack or an unused driver (a fresh interpreter checks)."""

from __future__ import annotations

import json
import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_eventkit_loads_no_pandas_matplotlib_or_ipywidgets() -> None:
    loaded = _modules_after("import eventkit, eventkit.bus, eventkit.cli, eventkit.transfer")
    assert "eventkit.bus" in loaded
    assert not {"pandas", "matplotlib", "ipywidgets", "IPython", "nest_asyncio"} & loaded


def test_sqlite_backend_does_not_load_redis() -> None:
    loaded = _modules_after(
        "import eventkit\nfrom eventkit.stores import open_store\n"
        "from eventkit import EventStoreConfig\n"
        "open_store(EventStoreConfig(backend='sqlite', path='/tmp/eventkit-layering.db'))"
    )
    assert "aiosqlite" in loaded and "redis" not in loaded
