"""DLQPanel: see what a consumer group gave up on, grouped by error, and replay or discard it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.error_kinds import error_kind
from eventkit.records import DeadLetter, correlation_of
from eventkit.widgets._base import (
    ZoneInput,
    escape,
    html_table,
    plural,
    pre,
    time_text,
)
from eventkit.widgets._dlq_outcome import DLQAction, replay_and_wait, replay_summary
from eventkit.widgets._trace_view import TraceTarget, TracingPanel

__all__ = ["DLQAction", "DLQPanel"]  # DLQAction lives with the replay outcome it describes

#: entries listed in the selection box; the summary still counts all of them
MAX_LISTED = 500
#: entries whose details are shown at once when several are selected
MAX_DETAILS = 3
ALL_ERRORS = "*"
#: how long a replay waits for the group to handle the replayed entries again (SPEC §6)
REPLAY_TIMEOUT = 30.0
#: longest payload value shown in an entry's label
MAX_KEY_CHARS = 40


def replays(dead: DeadLetter) -> int:
    """How many times the entry was replayed before it came back (0 on stores that predate it)."""
    return dead.replays


def payload_key(dead: DeadLetter) -> str:
    """A payload field that tells entries apart: the first id-like one ("asset_id=asset-3"), else
    the first text field; "" when the payload has neither or cannot be read."""
    try:
        payload: Any = dead.event.payload()
    except Exception:
        try:
            payload = json.loads(dead.stored.data)
        except ValueError:
            return ""
    if not isinstance(payload, dict):
        return ""
    fields = [(k, v) for k, v in payload.items() if isinstance(v, str | int) and v != ""]
    id_like = [(k, v) for k, v in fields if k == "id" or str(k).endswith(("_id", "Id"))]
    texts = [(k, v) for k, v in fields if isinstance(v, str)]
    for name, value in id_like or texts:
        text = str(value)
        if len(text) > MAX_KEY_CHARS:
            text = text[: MAX_KEY_CHARS - 1] + "…"
        return f"{name}={text}"
    return ""


class DLQPanel(TracingPanel):
    """The dead-letter queue of one consumer group: what failed, why, and what to do with it.

    A summary counts entries by error type (with an example error); the "Error type" menu narrows
    the list; each entry is labelled with a payload key (e.g. ``asset_id=asset-3``), its type,
    error type, attempts, how often it was already replayed and when it failed. Selecting entries
    shows their full event id, payload, error and traceback. All of it is escaped: payloads and
    errors are untrusted text.

    Parameters
    ----------
    bus : EventBus
        An initialized bus. If a later cell closes it, the status line says which cell to run again.
    consumer_group : str
        The group whose DLQ is shown.
    max_listed : int, default 500
        Entries listed in the selection box (the summary still counts all of them).
    tz : str or tzinfo, optional
        Zone to show failure times in; UTC unless given, and always labelled.
    replay_timeout : float, default 30.0
        Seconds a replay waits for the group to handle the entries again or dead-letter them.

    Buttons
    -------
    Replay selected / Replay all
        Give the entries back to the group (attempts reset), then wait until each one was handled
        (acked) or came back to the DLQ, and say how many of each: "3 replayed: 2 handled, 1 back
        in the DLQ". An entry that comes back shows "replayed 1×" in its label.
    Discard selected / Discard all
        Delete entries for good. "Discard all", and "Discard selected" of more than one entry, ask
        first: the button turns into "Confirm discard all (12)" and only a click on that deletes;
        any other action (or Refresh) cancels. One selected entry is discarded at once.
    Refresh
        Reload the DLQ from the store (also cancels a pending confirmation).
    Show trace
        The story of the one selected entry (every event of its correlation, each group's
        outcome): timeline and table below, frame in `panel.trace`. Off unless exactly one entry
        is selected; `await panel.show_trace()` does the same and returns the frame.

    The status line is `panel.status` (text in `panel.status_text`); the last action's outcome is
    `panel.last_action` (a DLQAction).

    Examples
    --------
    >>> panel = DLQPanel(bus, "thumbnails")
    >>> display(panel)                                # in a notebook; or drive it from code:
    >>> panel.replay_all_button.click(); await panel.wait()
    >>> panel.last_action.handled, panel.last_action.back
    (5, 1)
    """

    trace_hint = "Select one entry first"

    def __init__(
        self,
        bus: EventBus,
        consumer_group: str,
        *,
        max_listed: int = MAX_LISTED,
        tz: ZoneInput = None,
        replay_timeout: float = REPLAY_TIMEOUT,
    ) -> None:
        super().__init__(bus, tz=tz)
        self.consumer_group = consumer_group
        self.max_listed = max_listed
        self.replay_timeout = replay_timeout
        #: every DLQ entry of the group as last loaded, oldest failure first
        self.dead_letters: list[DeadLetter] = []
        self.last_action: DLQAction | None = None
        #: a discard waiting for its confirmation click: ("all" | "selected", event ids)
        self.pending_confirmation: tuple[str, list[str]] | None = None

        self.title = widgets.HTML(f"<h4>Dead letters of group {escape(consumer_group)}</h4>")
        self.summary_html = widgets.HTML()
        self.error_filter = widgets.Dropdown(
            options=[("all errors", ALL_ERRORS)], value=ALL_ERRORS, description="Error type"
        )
        self.entries = widgets.SelectMultiple(
            options=[], rows=8, description="Entries", layout=widgets.Layout(width="95%")
        )
        self.detail_html = widgets.HTML()
        self.replay_selected_button = self._button(
            "Replay selected", self._on_replay_selected_button_click
        )
        self.replay_all_button = self._button("Replay all", self._on_replay_all_button_click)
        self.discard_selected_button = self._button(
            "Discard selected", self._on_discard_selected_button_click, button_style="warning"
        )
        self.discard_all_button = self._button(
            "Discard all", self._on_discard_all_button_click, button_style="danger"
        )
        self.refresh_button = self._button("Refresh", self._on_refresh_button_click)
        self.error_filter.observe(self._on_error_filter_change, names="value")
        self.entries.observe(self._on_entries_change, names="value")
        self.children = [
            self.title,
            self.summary_html,
            self.error_filter,
            self.entries,
            widgets.HBox(
                [
                    self.replay_selected_button,
                    self.replay_all_button,
                    self.discard_selected_button,
                    self.discard_all_button,
                    self.refresh_button,
                    self.trace_button,
                ]
            ),
            self.status,
            self.detail_html,
            self.trace_output,
        ]
        self._labels: dict[str, str] = {}
        self._start("Refresh", self.refresh())

    def __repr__(self) -> str:
        return f"DLQPanel(consumer_group={self.consumer_group!r}, entries={len(self.dead_letters)})"

    # -- loading ------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload the group's DLQ from the store and redraw, keeping the selection that remains;
        cancels a discard waiting for confirmation."""
        self.cancel_confirmation()
        await self._safely("Refresh", self._refresh())

    async def _refresh(self) -> None:
        by_type = await self._load()
        if not self.dead_letters:
            self.say(f"The DLQ of {self.consumer_group!r} is empty.")
        else:
            self.say(
                f"{plural(len(self.dead_letters), 'entry', 'entries')} in the DLQ of "
                f"{self.consumer_group!r}, {plural(len(by_type), 'error type')}."
            )

    async def _load(self) -> Counter[str]:
        self.dead_letters = await self.bus.dead_letters(self.consumer_group)
        self._labels = {d.event_id: self._label(d) for d in self.dead_letters[: self.max_listed]}
        by_type = Counter(error_kind(d.last_error) for d in self.dead_letters)
        self._render_summary(by_type)
        keep = self.error_filter.value if self.error_filter.value in by_type else ALL_ERRORS
        self.error_filter.options = [(f"all errors ({len(self.dead_letters)})", ALL_ERRORS)] + [
            (f"{name} ({count})", name) for name, count in by_type.most_common()
        ]
        self.error_filter.value = keep
        self._fill_entries()
        return by_type

    def _render_summary(self, by_type: Counter[str]) -> None:
        if not by_type:
            self.summary_html.value = "<i>No dead letters.</i>"
            return
        rows = [(name, count, self._example_error(name)) for name, count in by_type.most_common()]
        self.summary_html.value = html_table(["error type", "entries", "example error"], rows)

    def _example_error(self, name: str) -> str:
        return next(d.last_error for d in self.dead_letters if error_kind(d.last_error) == name)

    def _visible(self) -> list[DeadLetter]:
        chosen = self.error_filter.value
        return [
            d
            for d in self.dead_letters
            if chosen == ALL_ERRORS or error_kind(d.last_error) == chosen
        ]

    def _fill_entries(self) -> None:
        visible = self._visible()
        selected = set(self.entries.value)
        listed = visible[: self.max_listed]
        self.entries.options = [
            (self._labels.get(d.event_id) or self._label(d), d.event_id) for d in listed
        ]
        self.entries.value = tuple(d.event_id for d in listed if d.event_id in selected)
        if len(visible) > len(listed):
            self.say(f"Listing the first {len(listed)} of {len(visible)} entries.", "warning")
        self._render_details()

    def _label(self, dead: DeadLetter) -> str:
        # option labels are shown as text by the front end, not parsed as HTML
        parts = [payload_key(dead), dead.stored.event_type, error_kind(dead.last_error)]
        parts.append(plural(dead.attempts, "attempt"))
        if replays(dead):
            parts.append(f"replayed {replays(dead)}×")
        parts.append(f"failed {time_text(dead.failed_at, self.zone)[:19]} {self.zone_label}")
        parts.append(dead.event_id[:8])
        return " · ".join(p for p in parts if p)

    # -- details ------------------------------------------------------------------------------

    def _on_entries_change(self, change: dict[str, Any]) -> None:
        if self.pending_confirmation and self.pending_confirmation[0] == "selected":
            self.cancel_confirmation("the selection changed")
        self._render_details()
        self._on_selection_change()

    def _on_error_filter_change(self, change: dict[str, Any]) -> None:
        self._fill_entries()

    def _render_details(self) -> None:
        chosen = set(self.entries.value)
        picked = [d for d in self.dead_letters if d.event_id in chosen]
        if not picked:
            self.detail_html.value = "<i>Select entries to see payload, error and traceback.</i>"
            return
        parts = [self._detail(d) for d in picked[:MAX_DETAILS]]
        if len(picked) > MAX_DETAILS:
            parts.append(f"<i>…and {len(picked) - MAX_DETAILS} more selected.</i>")
        self.detail_html.value = "<hr>".join(parts)

    def _detail(self, dead: DeadLetter) -> str:
        stored = dead.stored
        facts = [
            ("event id", stored.event_id),
            ("type", f"{stored.event_type} v{stored.version}"),
            ("source", stored.source),
            ("consumer", f"{dead.consumer_group} / {dead.consumer_name}"),
            ("attempts", dead.attempts),
            ("replayed before", f"{replays(dead)}×"),
            (f"failed at ({self.zone_label})", time_text(dead.failed_at, self.zone)),
        ]
        try:
            payload = json.dumps(dead.event.payload(), indent=2, ensure_ascii=False, default=str)
        except Exception as e:  # a corrupt row still shows what was stored
            payload = f"(cannot decode: {e})\n{stored.data}"
        return (
            html_table(["field", "value"], facts)
            + pre(payload, "Payload")
            + pre(dead.last_error, "Error")
            + pre(dead.traceback or "(no traceback recorded)", "Traceback")
        )

    # -- confirmation -------------------------------------------------------------------------

    def cancel_confirmation(self, why: str = "") -> None:
        """Put the discard buttons back; a confirmation click is needed again."""
        if self.pending_confirmation is None:
            return
        self.pending_confirmation = None
        self.discard_all_button.description = "Discard all"
        self.discard_selected_button.description = "Discard selected"
        if why:
            self.say(f"Discard cancelled: {why}.")

    async def _ask_confirmation(self, which: str, event_ids: Sequence[str] | None) -> None:
        """Arm a discard: the button now reads "Confirm discard … (n)"; nothing is removed yet."""
        if event_ids is not None and not event_ids:
            self.say("Select entries to discard first.", "warning")
            return
        await self._load()  # count what is there now, not what was loaded a while ago
        present = [d.event_id for d in self.dead_letters]
        ids = present if event_ids is None else [i for i in event_ids if i in set(present)]
        if not ids:
            self.say(f"Nothing to discard: the DLQ of {self.consumer_group!r} is empty.")
            return
        if which == "selected" and len(ids) == 1:
            await self._discard(ids, requested=1)
            return
        self.pending_confirmation = (which, ids)
        button = self.discard_all_button if which == "all" else self.discard_selected_button
        button.description = f"Confirm discard {which} ({len(ids)})"
        self.say(
            f"Click “{button.description}” to delete {plural(len(ids), 'entry', 'entries')} for "
            "good; any other action cancels."
        )

    # -- actions ------------------------------------------------------------------------------

    def _selected_ids(self) -> list[str]:
        return list(self.entries.value)

    def _trace_target(self) -> TraceTarget | None:
        chosen = self._selected_ids()
        dead = [d for d in self.dead_letters if len(chosen) == 1 and d.event_id == chosen[0]]
        return TraceTarget(dead[0].event_id, correlation_of(dead[0].stored)) if dead else None

    def _on_replay_selected_button_click(self, button: widgets.Button) -> None:
        self.cancel_confirmation()
        self._start("Replay selected", self._replay(self._selected_ids()))

    def _on_replay_all_button_click(self, button: widgets.Button) -> None:
        self.cancel_confirmation()
        self._start("Replay all", self._replay(None))

    def _on_discard_selected_button_click(self, button: widgets.Button) -> None:
        self._on_discard_click("selected", self._selected_ids())

    def _on_discard_all_button_click(self, button: widgets.Button) -> None:
        self._on_discard_click("all", None)

    def _on_discard_click(self, which: str, event_ids: list[str] | None) -> None:
        label = f"Discard {which}"
        confirmed = self.pending_confirmation
        if confirmed is not None and confirmed[0] == which:
            self.cancel_confirmation()
            requested = len(confirmed[1]) if which == "selected" else None
            self._start(label, self._discard(confirmed[1], requested=requested))
            return
        self.cancel_confirmation()
        self._start(label, self._ask_confirmation(which, event_ids))

    def _on_refresh_button_click(self, button: widgets.Button) -> None:
        self._start("Refresh", self.refresh())

    async def _discard(self, event_ids: list[str], *, requested: int | None) -> None:
        count = await self.bus.discard_dlq(self.consumer_group, event_ids=event_ids)
        await self._load()
        self.last_action = DLQAction("discard", requested, count, len(self.dead_letters))
        self.say(
            f"Discarded {plural(count, 'entry', 'entries')}"
            + ("" if requested is None else f" of {requested} selected")
            + f"; {len(self.dead_letters):,} left in the DLQ of {self.consumer_group!r}."
        )

    async def _replay(self, event_ids: Sequence[str] | None) -> None:
        """Replay (None: all of the group's entries), wait for the outcome, and say it."""
        if event_ids is not None and not event_ids:
            self.say("Select entries to replay first.", "warning")
            return
        requested = None if event_ids is None else len(event_ids)
        count, replayed, handled, back = await replay_and_wait(
            self.bus, self.consumer_group, event_ids, timeout=self.replay_timeout, say=self.say
        )
        await self._load()
        waiting = len(replayed) - len(handled) - len(back)
        self.last_action = DLQAction(
            "replay", requested, count, len(self.dead_letters), len(handled), len(back), waiting
        )
        summary = replay_summary(self.last_action, self.consumer_group, self.replay_timeout)
        self.say(summary, "warning" if back or waiting else "info")
