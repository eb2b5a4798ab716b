""" "Show trace" clicked from code in EventBrowser and DLQPanel, on a memory store and a SQLite file:
two interleaved stories made by handlers that publish, one link dead-lettered by a hostile payload,
and one effect stored before its cause (so causal order is not publish order)."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest

from eventkit import BaseEvent, EventBus, create_event
from eventkit.events import (
    AssetDiscoveredEvent,
    AssetProcessedEvent,
    QualityAssessedEvent,
    WorkflowStartedEvent,
)
from eventkit.widgets import DLQPanel, EventBrowser
from eventkit.widgets._trace_view import SELECTED
from tests.conftest import BusFactory
from tests.test_widgets import SCRIPT, html_values

pytestmark = pytest.mark.parametrize("backend", ["memory", "sqlite"], indirect=True)

HOSTILE = f"b{SCRIPT}"
HEADERS = ["", "#", "event type", "event id", "event time (UTC)", "indexer", "pipeline"]


@dataclass
class Chain:
    """What was published, per workflow (keyed by its root's id), in the order it was created;
    `early` is wf-1's effect that reached the store before its cause."""

    by_workflow: dict[str, list[BaseEvent]] = field(default_factory=dict)
    early: BaseEvent | None = None

    def ids(self, workflow: str) -> list[str]:
        return [e.event_id for e in self.by_workflow[workflow]]


class TableReader(HTMLParser):
    """The trace table's body rows as (text, title) cells, and its header texts."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[tuple[str, str]]] = []
        self._cell: list[str] | None = None
        self._title = ""
        self._in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "thead":
            self._in_head = True
        elif tag == "tr" and not self._in_head:
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell, self._title = [], dict(attrs).get("title") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell)
            if tag == "th":
                self.headers.append(text)
            else:
                self.rows[-1].append((text, self._title))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def read_table(html: str) -> TableReader:
    reader = TableReader()
    reader.feed(html)
    return reader


async def run_chain(bus: EventBus) -> Chain:
    """Two stories, published together so their positions interleave: workflow → its assets →
    each processed. The indexer refuses the assets whose id holds markup, twice, so their
    processed events end in its DLQ. wf-1 also has an audit report (caused by the workflow's
    start) that another process stored before the start itself."""
    chain = Chain()

    async def pipeline(event: BaseEvent) -> None:
        workflow = event.correlation_id
        if isinstance(event, WorkflowStartedEvent):
            names = ["a", HOSTILE] if event.workflow_id == "wf-1" else ["c<i>"]
            made: list[BaseEvent] = [
                create_event(AssetDiscoveredEvent, source="scanner", asset_id=name,
                             file_path=f"/in/{name}.jpg", media_type="image")
                for name in names
            ]  # fmt: skip
        else:
            made = [create_event(AssetProcessedEvent, source="pipeline", asset_id=event.asset_id)]  # type: ignore[attr-defined]
        chain.by_workflow[workflow].extend(made)
        for new in made:
            await bus.publish(new)

    async def indexer(event: BaseEvent) -> None:
        if "<" in event.asset_id:  # type: ignore[attr-defined]
            raise ValueError(f"cannot index {event.asset_id}")  # type: ignore[attr-defined]

    await bus.subscribe_persistent(["workflow.started", "asset.discovered"], "pipeline", "p",
                                   pipeline, retry_delay=0.01)  # fmt: skip
    await bus.subscribe_persistent(["asset.processed"], "indexer", "i", indexer, max_retries=1,
                                   retry_delay=0.01)  # fmt: skip
    roots = [create_event(WorkflowStartedEvent, source="orchestrator", workflow_id=f"wf-{n}",
                          workflow_type="import") for n in (1, 2)]  # fmt: skip
    chain.by_workflow = {root.event_id: [root] for root in roots}
    chain.early = create_event(QualityAssessedEvent, source="auditor", asset_id="a", score=0.9,
                               correlation_id=roots[0].event_id, causation_id=roots[0].event_id)  # fmt: skip
    await bus.publish(chain.early)
    await bus.publish_many(roots)
    assert await bus.wait_idle(timeout=10)
    return chain


def causal_order(chain: Chain, root: str) -> list[str]:
    """wf-1's story as the trace must list it: the root first although the audit report was
    stored before it; then the root's effects in publish order (report, a, b); then what each
    asset caused (a's processed event before b's)."""
    root_event, a, b, a_done, b_done = chain.by_workflow[root]
    assert chain.early is not None
    assert (a.causation_id, b.causation_id) == (root, root)
    assert (a_done.causation_id, b_done.causation_id) == (a.event_id, b.event_id)
    return [root_event.event_id, chain.early.event_id, a.event_id, b.event_id, a_done.event_id,
            b_done.event_id]  # fmt: skip


def assert_trace_shown(panel: EventBrowser | DLQPanel, order: list[str], selected: str) -> None:
    table = read_table(panel.trace_html)
    assert table.headers == HEADERS
    assert [row[3][1] for row in table.rows] == order  # the full ids, in causal order
    assert [row[3][0] for row in table.rows] == [i[:8] for i in order]
    assert [row[2][0] for row in table.rows] == [
        "workflow.started", "↳ quality.assessed", "↳ asset.discovered", "↳ asset.discovered",
        "\u00a0\u00a0↳ asset.processed", "\u00a0\u00a0↳ asset.processed",
    ]  # fmt: skip
    assert [row[0][0] for row in table.rows] == [SELECTED if i == selected else "" for i in order]
    outcome = {(row[3][1], group): row[5 + g] for row in table.rows
               for g, group in enumerate(("indexer", "pipeline"))}  # fmt: skip
    assert [outcome[(i, "pipeline")][0] for i in order] == ["acked", "", "acked", "acked", "", ""]
    assert [outcome[(i, "indexer")][0] for i in order[:5]] == [""] * 4 + ["acked"]
    dead_text, dead_title = outcome[(order[5], "indexer")]
    assert dead_text.startswith("in the DLQ after 2 attempts: ValueError: cannot index b<script>")
    assert dead_title == f"ValueError: cannot index {HOSTILE}"
    # the frame behind it, and the Output area: the timeline as a PNG, then the same table
    assert panel.trace is not None
    assert list(panel.trace.drop_duplicates("step")["event_id"]) == order
    png, table_output = panel.trace_output.outputs
    assert base64.b64decode(png["data"]["image/png"]).startswith(b"\x89PNG")
    assert table_output["data"]["text/html"] == panel.trace_html
    assert panel.status_text == (
        f"Trace of event {selected[:8]}: 6 events in its story, delivered to 2 consumer groups."
    )


def assert_escaped(panel: EventBrowser | DLQPanel) -> None:
    shown = [*html_values(panel), *(o["data"].get("text/html", "") for o in
                                     panel.trace_output.outputs)]  # fmt: skip
    assert not any("<script" in value.lower() or "<i>" in value for value in shown)
    assert "cannot index b&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in panel.trace_html


async def test_browser_show_trace_lists_the_chain_of_the_picked_event(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus()
    chain = await run_chain(bus)
    [root, other] = chain.by_workflow
    order = causal_order(chain, root)
    browser = EventBrowser(bus)
    await browser.wait()
    assert browser.frame is not None and len(browser.frame) == 6 + 3
    assert browser.trace_button.disabled and browser.trace_button.description == "Show trace"
    assert await browser.show_trace() is None  # from code with nothing picked: says what to do
    assert browser.status_text == "Pick an event under “Event” first, then click “Show trace”."

    picked = order[4]  # a's processed event, acked by the indexer
    browser.row_picker.value = int(browser.frame.index[browser.frame["event_id"] == picked][0])
    assert not browser.trace_button.disabled
    browser.trace_button.click()
    await browser.wait()
    assert browser.errors == []
    assert_trace_shown(browser, order, picked)
    assert_escaped(browser)
    assert not browser.trace_button.disabled  # the finished task left it on: an event is picked

    # the other story's trace holds only its own three events, however they interleave
    browser.row_picker.value = int(browser.frame.index[browser.frame["event_id"] == other][0])
    assert browser.trace is None and browser.trace_output.outputs == ()  # the old trace went
    frame = await browser.show_trace()
    assert frame is not None and list(frame.drop_duplicates("step")["event_id"]) == chain.ids(other)

    browser.row_picker.value = None
    assert browser.trace_button.disabled and browser.trace_output.outputs == ()
    browser.apply_button.click()
    await browser.wait()
    assert browser.trace_button.disabled  # a finished task does not turn it back on


async def test_dlq_panel_show_trace_shows_the_dead_letters_chain_and_outcome(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus()
    chain = await run_chain(bus)
    [root, other] = chain.by_workflow
    order = causal_order(chain, root)
    panel = DLQPanel(bus, "indexer")
    await panel.wait()
    entries = [value for _, value in panel.entries.options]
    assert sorted(entries) == sorted([order[5], chain.ids(other)[-1]])
    assert panel.trace_button.disabled  # nothing selected
    panel.entries.value = tuple(entries)
    assert panel.trace_button.disabled  # two selected: whose story? none
    panel.entries.value = (order[5],)
    assert not panel.trace_button.disabled

    panel.trace_button.click()
    await panel.wait()
    assert panel.errors == []
    assert_trace_shown(panel, order, order[5])
    assert_escaped(panel)
    assert await panel.show_trace() is panel.trace is not None  # from code, the same

    panel.entries.value = ()
    assert panel.trace_button.disabled and panel.trace is None
    panel.refresh_button.click()
    await panel.wait()
    assert panel.trace_button.disabled


async def test_show_trace_of_an_event_trimmed_away_says_so_in_plain_words(
    make_bus: BusFactory,
) -> None:
    bus = await make_bus()
    lone = create_event(WorkflowStartedEvent, source="cron", workflow_id="w", workflow_type="x")
    await bus.publish(lone)
    browser = EventBrowser(bus)
    await browser.wait()
    browser.show_event(0)  # from code: what the "Event" menu does
    assert not browser.trace_button.disabled
    await asyncio.sleep(0.01)
    assert await bus.trim_old_events(max_age_days=0) == 1  # no group needs it
    browser.trace_button.click()
    await browser.wait()
    assert browser.trace is None and browser.trace_output.outputs == ()
    assert browser.messages[-1] == (
        "warning",
        f"Event {lone.event_id[:8]} is no longer in the store (trimmed, or its store was "
        "replaced): there is no trace to show.",
    )
