"""The DLQ triage notebook, exported with its widget state, shows the panel's rows in a real browser.

nbconvert's HTML loads require.js and the widget renderer from a CDN, unreachable offline, so both are
served from npm packages fetched by tests/fetch_widget_js.sh; headless Chromium renders the page and
--dump-dom gives the DOM after the widgets' JavaScript ran.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import nbformat
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "02_dlq_triage.ipynb"
WIDGET_JS = ROOT / ".cache" / "widgets-js"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1000,1500", "--virtual-time-budget=15000",
]  # fmt: skip


class RenderedText(HTMLParser):
    """What the widgets drew: HTML widget contents and select options, not the embedded state JSON
    (a <script>) nor the notebook's own code and outputs."""

    VOID = frozenset("area base br col embed hr img input link meta source wbr".split())

    def __init__(self) -> None:
        super().__init__()
        self.options: list[str] = []
        self.widget_text: list[str] = []
        self._stack: list[str] = []
        self._html_depth: int | None = None  # stack depth of the widget-html-content element

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        self._stack.append(tag)
        classes = (dict(attrs).get("class") or "").split()
        if self._html_depth is None and "widget-html-content" in classes:
            self._html_depth = len(self._stack)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID or tag not in self._stack:
            return
        while self._stack and self._stack.pop() != tag:
            pass
        if self._html_depth is not None and len(self._stack) < self._html_depth:
            self._html_depth = None

    def handle_data(self, data: str) -> None:
        data = data.replace("\xa0", " ")  # the select widget draws spaces as no-break spaces
        if self._stack and self._stack[-1] == "option":
            self.options.append(data)
        elif self._html_depth is not None:
            self.widget_text.append(data)


def widget_js() -> Path:
    """The npm-served renderer; fetched here when the test command has not done it already."""
    if not (WIDGET_JS / "embed-amd.js").exists() or not (WIDGET_JS / "require.js").exists():
        subprocess.run(["bash", str(ROOT / "tests" / "fetch_widget_js.sh")], check=True)
    return WIDGET_JS


def dlq_panel_rows(state: dict[str, Any]) -> list[str]:
    """Option labels of the DLQ panels' "Entries" lists, as saved in the notebook's widget state."""
    rows: list[str] = []
    for model in state["state"].values():
        values = model.get("state", {})
        if (
            model.get("model_name") == "SelectMultipleModel"
            and values.get("description") == "Entries"
        ):
            rows.extend(values.get("_options_labels", []))
    return rows


def test_committed_notebook_keeps_its_widget_state() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    state = notebook.metadata["widgets"][WIDGET_STATE]
    assert state["state"], "execute with widget state stored: jupyter execute --inplace"
    assert dlq_panel_rows(state), "the notebook shows no DLQ panel with entries"


def test_dlq_triage_renders_the_panel_rows_in_chromium() -> None:
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium (apt-get install chromium)"
    js = widget_js()
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    rows = dlq_panel_rows(notebook.metadata["widgets"][WIDGET_STATE])
    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        require_js_url=(js / "require.js").as_uri(),
        widget_renderer_url=(js / "embed-amd.js").as_uri(),
        mathjax_url="",
    )
    body, _ = exporter.from_notebook_node(notebook)
    with tempfile.TemporaryDirectory() as work:
        page = Path(work) / "02_dlq_triage.html"
        page.write_text(body, encoding="utf-8")
        done = subprocess.run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={work}/profile", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    parsed = RenderedText()
    parsed.feed(done.stdout)
    text = " ".join(parsed.widget_text)
    # every DLQ row the panel listed is drawn as an option of the rendered select box
    assert rows and set(rows) <= set(parsed.options), (rows, parsed.options[:20])
    assert "Dead letters of group" in text and "error type" in text
    # the selected entry's <script> payload is drawn as visible text (the parser decodes &lt;), so
    # it was escaped: injected markup would be an element, not text
    assert "<script" in text, "the escaped <script> payload is not shown"
