"""The tutorials' panels in a live JupyterLab, driven by a real browser, as a reader would use them.

JupyterLab runs on a free loopback port over a temporary copy of notebooks/ and data/ (the committed
notebooks are never modified), Debian's Chromium is driven by Playwright (which cannot download its
own browsers here), every cell is run from the Run menu, and the panels' buttons are clicked. What
the page then shows is asserted. The live Monitor is watched on a small notebook written into the
temporary folder. On failure a screenshot of the page lands in .artifacts/; with
EVENTKIT_SCREENSHOT=path set, a screenshot of the DLQ panel is saved there (for the README).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / ".artifacts"
SAMPLE = ROOT / "data" / "sample_events.jsonl"
#: how long a notebook's Run All may take in the browser (kernel start included)
RUN_ALL_TIMEOUT_MS = 60_000
#: how long one click may take to show its outcome (a DLQ replay waits for the group to finish)
CLICK_TIMEOUT_MS = 20_000
#: JupyterLab user settings: every cell attached to the page (the default windowing detaches cells
#: far from the viewport), and no news or update toasts over the notebook
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_server(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/api/status", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"jupyter lab did not answer within 60 s:\n{log.read_text()}")


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM lets the server shut its kernels down; SIGKILL to its own process group if it hangs."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


@pytest.fixture(scope="module")
def lab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder the server runs in: its notebooks/ is the root JupyterLab shows."""
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="module")
def lab(lab_home: Path) -> Iterator[str]:
    """A JupyterLab server on a copy of notebooks/ and data/; yields its base URL."""
    home = lab_home
    shutil.copytree(ROOT / "notebooks", home / "notebooks", ignore=shutil.ignore_patterns(".*"))
    shutil.copytree(ROOT / "data", home / "data", ignore=shutil.ignore_patterns("*.py"))
    settings = home / ".settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values), encoding="utf-8")
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / ".workspaces"),
        "JUPYTER_RUNTIME_DIR": str(home / ".runtime"),
    }
    port = free_port()
    log = home / "lab.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}",
                "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=", "--allow-root",
                "--ServerApp.terminals_enabled=False", "--LabApp.news_url=None",
                f"--ServerApp.root_dir={home / 'notebooks'}",
            ],
            cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_server(url, server, log)
        yield url
    finally:
        stop(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    assert chromium, "install Debian's chromium (apt-get install chromium)"
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
        )
        try:
            yield launched
        finally:
            launched.close()


@contextmanager
def notebook(browser: Browser, lab: str, name: str) -> Iterator[Page]:
    """A page with the notebook open and every cell run; a screenshot in .artifacts/ on failure."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        # a workspace of its own, reset: JupyterLab would otherwise reopen the other test's tab
        page.goto(f"{lab}/lab/workspaces/{Path(name).stem}/tree/{name}?reset")
        # the kernel is up once the toolbar says so; Run All before that would queue, but a kernel
        # that cannot start must fail here, with a clear message, not as a missing output later
        expect(page.locator(".jp-NotebookPanel")).to_have_count(1, timeout=30_000)
        kernel = page.locator(".jp-StatusBar-Widget", has_text="Python 3 (ipykernel) | Idle")
        expect(kernel).to_have_count(1, timeout=30_000)
        run_all_cells(page)
        yield page
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}.png"), full_page=True)
        (ARTIFACTS / f"{Path(name).stem}.console.txt").write_text("\n".join(console), "utf-8")
        raise
    finally:
        page.close()


def run_all_cells(page: Page) -> None:
    """Run → Run All Cells, then wait until the hidden check cell (the last one) reports."""
    first = page.locator(".jp-NotebookPanel .jp-CodeCell").first.locator(".jp-InputArea-prompt")
    for attempt in range(3):
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        # JupyterLab clears the cells but runs nothing if its session has not attached the kernel
        # yet (seen under load although the status bar said Idle): then Run All is clicked again
        try:
            expect(first).to_have_text(re.compile(r"\[(\*|\d+)\]"), timeout=10_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
    checks = page.locator(".jp-NotebookPanel .jp-CodeCell").last.locator(".jp-OutputArea")
    expect(checks).to_contain_text("all checks passed", timeout=RUN_ALL_TIMEOUT_MS)
    # no cell raised: an error is drawn as stderr output holding its traceback (warnings, e.g. a
    # frame's coerced values, are stderr too, and are allowed: they are meant for the reader)
    stderr = page.locator(".jp-NotebookPanel .jp-OutputArea-output[data-mime-type*='stderr']")
    expect(stderr.filter(has_text="Traceback")).to_have_count(0)


def panel_of(page: Page, code: str) -> Locator:
    """The widget that the code cell holding `code` displays (found by its source, not its title)."""
    cell = page.locator(".jp-NotebookPanel .jp-CodeCell").filter(has_text=code)
    expect(cell).to_have_count(1)
    panel = cell.locator(".jp-OutputArea-output .jupyter-widgets").first
    expect(panel).to_be_visible()
    # drawn as a live widget, not as its text repr ("DLQPanel(...)", "VBox(...)")
    expect(cell.locator(".jp-OutputArea-output[data-mime-type='text/plain']")).to_have_count(0)
    panel.scroll_into_view_if_needed()
    return panel


def button(panel: Locator, label: str | re.Pattern[str]) -> Locator:
    found = panel.locator(".widget-button").filter(has_text=label)
    expect(found).to_have_count(1)
    return found


def screenshot(page: Page, panel: Locator, target: Path) -> None:
    """The whole panel, in a window tall enough that nothing is cut off (for the README)."""
    size = page.viewport_size
    page.set_viewport_size({"width": 1400, "height": 2400})
    try:
        panel.scroll_into_view_if_needed()
        target.parent.mkdir(parents=True, exist_ok=True)
        panel.screenshot(path=str(target))
    finally:
        if size is not None:
            page.set_viewport_size(size)


def sample_count(event_type: str) -> int:
    with SAMPLE.open(encoding="utf-8") as lines:
        return sum(json.loads(line)["event_type"] == event_type for line in lines if line.strip())


def test_dlq_panel_replays_and_discards_in_jupyterlab(browser: Browser, lab: str) -> None:
    with notebook(browser, lab, "02_dlq_triage.ipynb") as page:
        triage = panel_of(page, 'DLQPanel(bus, "thumbnails")')
        entries = triage.locator(".widget-select-multiple select")
        expect(entries.locator("option")).to_have_count(2)
        for label in ("Replay selected", "Replay all", "Discard selected", "Discard all"):
            expect(button(triage, label)).to_be_enabled()

        # select an entry: its payload and error are shown; the thumbnailer was fixed by Run All
        entries.select_option(index=0)
        expect(triage).to_contain_text("TypeError", timeout=CLICK_TIMEOUT_MS)
        expect(triage).to_contain_text("Traceback")
        if target := os.environ.get("EVENTKIT_SCREENSHOT"):
            screenshot(page, triage, Path(target))

        # its story: the timeline as an image and the chain as a table, in the panel
        button(triage, "Show trace").click()
        trace = triage.locator(".jp-OutputArea-output")
        expect(trace.locator("img")).to_have_count(1, timeout=CLICK_TIMEOUT_MS)
        expect(trace.locator("table")).to_contain_text("asset.discovered")  # a poison event, alone
        expect(trace.locator("table")).to_contain_text("in the DLQ after 3 attempts: TypeError")

        button(triage, "Replay selected").click()
        expect(triage).to_contain_text(
            "1 replayed: 1 handled, 0 back in the DLQ", timeout=CLICK_TIMEOUT_MS
        )
        expect(entries.locator("option")).to_have_count(1)

        # "Discard all" asks first; only the confirmation removes the entry
        button(triage, "Discard all").click()
        confirm = button(triage, "Confirm discard all (1)")
        expect(entries.locator("option")).to_have_count(1)
        confirm.click()
        expect(entries.locator("option")).to_have_count(0, timeout=CLICK_TIMEOUT_MS)
        expect(triage).to_contain_text(re.compile(r"discarded", re.I))
        expect(button(triage, "Discard all")).to_be_visible()

        # the search index's rejection is shown escaped: the <script> is text, not an element
        review = panel_of(page, 'DLQPanel(bus, "search-index")')
        review.locator(".widget-select-multiple select").select_option(index=0)
        expect(review).to_contain_text("<script>alert(1)</script>", timeout=CLICK_TIMEOUT_MS)
        expect(review.locator("script")).to_have_count(0)


def test_replay_panel_dry_run_and_replay_in_jupyterlab(browser: Browser, lab: str) -> None:
    assets = sample_count("asset.discovered")
    with notebook(browser, lab, "03_replay.ipynb") as page:
        replay = panel_of(page, "ReplayPanel(bus, handlers=")
        expect(button(replay, "Dry run")).to_be_enabled()
        # SPEC §6: the first handler's declared types (asset.discovered), the whole time range
        button(replay, "Dry run").click()
        expect(replay).to_contain_text(
            f"Dry run: {assets:,} events would be replayed through 'rebuild index'; "
            "no handler was called.",
            timeout=CLICK_TIMEOUT_MS,
        )
        button(replay, re.compile(r"^Replay$")).click()
        expect(replay).to_contain_text(
            f"{assets - 1:,} handled, 1 failed", timeout=CLICK_TIMEOUT_MS
        )
        expect(replay).to_contain_text("cannot index")  # the failure is listed with its error

        browser_panel = panel_of(page, "EventBrowser(bus)")
        expect(button(browser_panel, "Apply")).to_be_enabled()


#: the Monitor's notebook, written into the temporary notebooks/ folder (never into the repo)
MONITOR_NOTEBOOK = "monitor_live.ipynb"
MONITOR_CELLS = [
    (
        "markdown",
        "# The Monitor, live\nA SQLite store filled from the sample week, watched every 0.5 s; "
        "a consumer group held at a gate until its button is clicked.",
    ),
    (
        "code",
        """import asyncio
import tempfile
from pathlib import Path

import ipywidgets as widgets

from eventkit import EventBus, EventStoreConfig
from eventkit.transfer import import_jsonl
from eventkit.widgets import Monitor

workdir = tempfile.TemporaryDirectory(prefix="eventkit-monitor-")
config = EventStoreConfig(backend="sqlite", path=Path(workdir.name) / "events.db",
                          trim_interval_hours=None, poll_interval_seconds=0.02)
bus = EventBus(config)
await bus.initialize()
imported = await import_jsonl(bus, Path("../data/sample_events.jsonl"))""",
    ),
    ("code", "monitor = Monitor(bus, every=0.5)\nmonitor"),
    (
        "code",
        """gate = asyncio.Event()
handled = []


async def index(event) -> None:
    await gate.wait()  # held until the button below is clicked
    await asyncio.sleep(0.001)  # a little work per event: the lag goes down over seconds
    handled.append(event.event_id)


await bus.subscribe_persistent(["*"], "indexer", "indexer-1", index, lease_seconds=120)
go = widgets.Button(description="Open the gate")
go.on_click(lambda _: gate.set())
go""",
    ),
    (
        "code",
        """await monitor.refresh()
assert imported > 3000 and monitor.running and handled == []
assert [(row.group, row.lag + row.in_flight) for row in monitor.rows] == [("indexer", imported)]
print("all checks passed")""",
    ),
]
#: columns of the Monitor's table (sparklines between)
LAG, IN_FLIGHT, ACKED_PER_SECOND = 1, 3, 5


def write_monitor_notebook(folder: Path) -> None:
    """The cells above as an nbformat 4.5 notebook, not yet run."""
    cells: list[dict[str, object]] = []
    for number, (kind, source) in enumerate(MONITOR_CELLS):
        cell: dict[str, object] = {"cell_type": kind, "id": f"cell-{number}", "metadata": {},
                                   "source": source}  # fmt: skip
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    kernel = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    made = {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4,
            "nbformat_minor": 5}  # fmt: skip
    (folder / MONITOR_NOTEBOOK).write_text(json.dumps(made, indent=1), encoding="utf-8")


def figure(row: Locator, column: int) -> str:
    return row.locator("td").nth(column).inner_text().strip()


def number(row: Locator, column: int) -> int:
    return int(figure(row, column).replace(",", ""))


def test_monitor_refreshes_live_and_stops_when_paused_in_jupyterlab(
    browser: Browser, lab: str, lab_home: Path
) -> None:
    write_monitor_notebook(lab_home / "notebooks")
    with notebook(browser, lab, MONITOR_NOTEBOOK) as page:
        monitor = panel_of(page, "Monitor(bus, every=0.5)")
        row = monitor.locator("table.eventkit-monitor tbody tr").filter(has_text="indexer")
        expect(row).to_have_count(1, timeout=CLICK_TIMEOUT_MS)
        header = monitor.locator(".widget-html").filter(has_text="Sampled")

        # held at the gate: new samples keep coming, every event is unread or claimed (the
        # consumer claims a few batches ahead), nothing is acked
        total = sum(1 for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip())
        sampled = header.inner_text()
        expect(header).not_to_have_text(sampled, timeout=5_000)
        held = number(row, LAG)
        assert total - 100 < held < total and held + number(row, IN_FLIGHT) == total
        assert figure(row, ACKED_PER_SECOND) in ("-", "0.0")

        gate = page.locator(".jp-NotebookPanel .jp-CodeCell").filter(has_text="gate.set()")
        gate.locator(".widget-button", has_text="Open the gate").click()
        lags, rates = [held], []
        deadline = time.monotonic() + 30
        while lags[-1] > 0 and time.monotonic() < deadline:
            page.wait_for_timeout(100)
            lag = number(row, LAG)
            if lag != lags[-1]:
                lags.append(lag)
            if (rate := figure(row, ACKED_PER_SECOND)) not in ("-", "0.0"):
                rates.append(float(rate.replace(",", "")))
        assert lags[-1] == 0, lags
        assert lags == sorted(lags, reverse=True) and len(lags) >= 3, lags  # seen going down
        assert rates and max(rates) > 0, rates  # throughput appeared

        # Pause (the Monitor's only control; it has no close button): the samples stop
        button(monitor, "Pause").click()
        expect(monitor).to_contain_text("Paused: click Resume", timeout=CLICK_TIMEOUT_MS)
        frozen = header.inner_text()
        page.wait_for_timeout(2_000)  # four periods
        assert header.inner_text() == frozen
        button(monitor, "Resume").click()  # and they come again: the pause was what stopped them
        expect(header).not_to_have_text(frozen, timeout=5_000)
        button(monitor, "Pause").click()  # leave the kernel quiet for the other tests
        expect(monitor).to_contain_text("Paused: click Resume", timeout=CLICK_TIMEOUT_MS)
