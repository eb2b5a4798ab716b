"""DLQPanel: see what a consumer group gave up on, grouped by error, and replay or discard it."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from eventkit.bus import EventBus
from eventkit.error_kinds import error_kind
from eventkit.records import DeadLetter
from eventkit.widgets._base import AsyncPanel, escape, html_table, pre

#: entries listed in the selection box; the summary still counts all of them
MAX_LISTED = 500
#: entries whose details are shown at once when several are selected
MAX_DETAILS = 3
ALL_ERRORS = "*"


@dataclass(frozen=True)
class DLQAction:
    """What the last button did: tests and notebooks assert on it."""

    action: str
    requested: int | None
    count: int
    remaining: int


class DLQPanel(AsyncPanel):
    """DLQ entries of one group: counts by error type, a selection list, details and four actions."""

    def __init__(self, bus: EventBus, consumer_group: str, *, max_listed: int = MAX_LISTED) -> None:
        super().__init__(bus)
        self.consumer_group = consumer_group
        self.max_listed = max_listed
        #: every DLQ entry of the group as last loaded, oldest failure first
        self.dead_letters: list[DeadLetter] = []
        self.last_action: DLQAction | None = None

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
                ]
            ),
            self.status,
            self.detail_html,
        ]
        self._start("refresh", self.refresh())

    def __repr__(self) -> str:
        return f"DLQPanel(consumer_group={self.consumer_group!r}, entries={len(self.dead_letters)})"

    # -- loading ------------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Reload the group's DLQ from the store and redraw, keeping the selection that remains."""
        self.dead_letters = await self.bus.store.get_pending_events(self.consumer_group)
        by_type = Counter(error_kind(d.last_error) for d in self.dead_letters)
        self._render_summary(by_type)
        keep = self.error_filter.value if self.error_filter.value in by_type else ALL_ERRORS
        self.error_filter.options = [(f"all errors ({len(self.dead_letters)})", ALL_ERRORS)] + [
            (f"{name} ({count})", name) for name, count in by_type.most_common()
        ]
        self.error_filter.value = keep
        self._fill_entries()
        if not self.dead_letters:
            self.say(f"The DLQ of {self.consumer_group!r} is empty.")
        else:
            self.say(
                f"{len(self.dead_letters)} entries in the DLQ of {self.consumer_group!r}, "
                f"{len(by_type)} error type(s)."
            )

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
        self.entries.options = [(self._label(d), d.event_id) for d in listed]
        self.entries.value = tuple(d.event_id for d in listed if d.event_id in selected)
        if len(visible) > len(listed):
            self.say(f"Listing the first {len(listed)} of {len(visible)} entries.", "warning")
        self._render_details()

    @staticmethod
    def _label(dead: DeadLetter) -> str:
        # option labels are shown as text by the front end, not parsed as HTML
        failed = dead.failed_at.isoformat(timespec="seconds")
        return (
            f"{dead.stored.event_type} · {dead.event_id} · {error_kind(dead.last_error)} · "
            f"{dead.attempts} attempt(s) · {failed}"
        )

    # -- details ------------------------------------------------------------------------------

    def _on_entries_change(self, change: dict[str, Any]) -> None:
        self._render_details()

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

    @staticmethod
    def _detail(dead: DeadLetter) -> str:
        stored = dead.stored
        facts = [
            ("event id", stored.event_id),
            ("type", f"{stored.event_type} v{stored.version}"),
            ("source", stored.source),
            ("consumer", f"{dead.consumer_group} / {dead.consumer_name}"),
            ("attempts", dead.attempts),
            ("failed at", dead.failed_at),
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

    # -- actions ------------------------------------------------------------------------------

    def _selected_ids(self) -> list[str]:
        return list(self.entries.value)

    def _on_replay_selected_button_click(self, button: widgets.Button) -> None:
        self._start("Replay selected", self._act("replay", self._selected_ids()))

    def _on_replay_all_button_click(self, button: widgets.Button) -> None:
        self._start("Replay all", self._act("replay", None))

    def _on_discard_selected_button_click(self, button: widgets.Button) -> None:
        self._start("Discard selected", self._act("discard", self._selected_ids()))

    def _on_discard_all_button_click(self, button: widgets.Button) -> None:
        self._start("Discard all", self._act("discard", None))

    def _on_refresh_button_click(self, button: widgets.Button) -> None:
        self._start("Refresh", self.refresh())

    async def _act(self, action: str, event_ids: Sequence[str] | None) -> None:
        """Replay or discard (None: all of the group's entries), then reload and say what happened."""
        if event_ids is not None and not event_ids:
            self.say(f"Select entries to {action} first.", "warning")
            return
        group = self.consumer_group
        if action == "replay":
            count = await self.bus.replay_dlq(group, event_ids=event_ids)
        else:
            count = await self.bus.discard_dlq(group, event_ids=event_ids)
        await self.refresh()
        requested = None if event_ids is None else len(event_ids)
        self.last_action = DLQAction(action, requested, count, len(self.dead_letters))
        done = "replayed" if action == "replay" else "discarded"
        self.say(
            f"{done.capitalize()} {count} entr{'y' if count == 1 else 'ies'}"
            + ("" if requested is None else f" of {requested} selected")
            + f"; {len(self.dead_letters)} left in the DLQ of {group!r}."
        )
