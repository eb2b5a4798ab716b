"""Jupyter panels over a bus: browse the log, replay ranges through handlers, triage the DLQ,
watch the consumer groups live.

Every panel is an ipywidgets VBox; clicks start tasks on the running loop and `await panel.wait()`
finishes them. All event data and errors shown as HTML are escaped: payloads are untrusted. Times
are shown in UTC and labelled so (`tz=` shows another zone, labelled too). A panel whose bus was
closed says so in its status line (`panel.status`, text in `panel.status_text`) and raises nothing.
"""

from eventkit.widgets.browser import EventBrowser
from eventkit.widgets.dlq import DLQAction, DLQPanel
from eventkit.widgets.monitor import Monitor
from eventkit.widgets.replay import DryRun, ReplayPanel, ReplayResult

__all__ = [
    "DLQAction",
    "DLQPanel",
    "DryRun",
    "EventBrowser",
    "Monitor",
    "ReplayPanel",
    "ReplayResult",
]
