"""The layering holds: no import circle in eventkit/, stores below the model, the core free of the
notebook stack (read from the source, and checked again in a fresh interpreter)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "eventkit"

#: the one documented upward hop: DeadLetter.event decodes on demand (SPEC §3), lazily
ALLOWED_UPWARD = {("eventkit.records", "eventkit.codec")}
#: what a store may not import: the model, its encoding, delivery policy and the bus
ABOVE_STORES = {
    "eventkit.events", "eventkit.versioning", "eventkit.codec", "eventkit.consumer",
    "eventkit.bus", "eventkit.policy", "eventkit.handlers", "eventkit.settling",
}  # fmt: skip
NOTEBOOK_LIBRARIES = {"pandas", "numpy", "matplotlib", "ipywidgets", "IPython", "pyarrow"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import outside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                for alias in child.names:  # `from eventkit import codec` imports a module
                    candidate = f"{child.module}.{alias.name}"
                    found.append((candidate if candidate in MODULES else child.module, top))
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            visit(child, top and not nested)

    visit(tree, True)
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        graph[name] = {
            target
            for target, _ in _imports(path)
            if target in MODULES and target != name and (name, target) not in ALLOWED_UPWARD
        }
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if target.startswith(node + ".") or node.startswith(target + "."):
                continue  # a package and its own modules: Python loads the package first
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_in_eventkit() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_circle() -> None:  # so the test above can fail
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_stores_import_no_model_delivery_or_bus_module() -> None:
    for name, path in MODULES.items():
        if name.startswith("eventkit.stores"):
            above = {target for target, _ in _imports(path)} & ABOVE_STORES
            assert not above, f"{name} imports {sorted(above)}"


def test_records_and_clock_are_leaves() -> None:
    leaves = {"eventkit.clock", "eventkit.checks", "eventkit.errors", "eventkit.jsontext"}
    for leaf in leaves:  # a leaf imports only other leaves (no circle: see the test above)
        inner = {t for t, _ in _imports(MODULES[leaf]) if t.startswith("eventkit")}
        assert inner <= leaves - {leaf}, (leaf, inner)
    top_level = {t for t, top in _imports(MODULES["eventkit.records"]) if top}
    assert {t for t in top_level if t.startswith("eventkit")} == {"eventkit.clock"}


def _notebook_layer() -> set[str]:
    """Modules that import the notebook stack, and those that import them at module level."""
    layer = {
        name
        for name, path in MODULES.items()
        if any(t.split(".")[0] in NOTEBOOK_LIBRARIES for t, _ in _imports(path))
    }
    grew = True
    while grew:
        grew = False
        for name, path in MODULES.items():
            if name not in layer and any(t in layer for t, top in _imports(path) if top):
                layer.add(name)
                grew = True
    return layer


def test_the_core_imports_no_notebook_library_at_module_level() -> None:
    layer = _notebook_layer()
    assert {"eventkit.frames", "eventkit.plots", "eventkit.widgets"} <= layer
    core = {"eventkit", "eventkit.bus", "eventkit.codec", "eventkit.consumer", "eventkit.events",
            "eventkit.cli", "eventkit.transfer", "eventkit.config", "eventkit.stores",
            "eventkit.stores.base", "eventkit.stores.sqlite", "eventkit.stores.redis",
            "eventkit.stores.memory", "eventkit.records", "eventkit.versioning"}  # fmt: skip
    assert not core & layer, sorted(core & layer)


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
