"""Jupyter panels over a bus: browse the log, replay ranges through handlers, triage the DLQ.

Every panel is an ipywidgets VBox; clicks start tasks on the running loop and `await panel.wait()`
finishes them. All event data and errors shown as HTML are escaped: payloads are untrusted.
"""

from eventkit.widgets.browser import EventBrowser
from eventkit.widgets.dlq import DLQAction, DLQPanel
from eventkit.widgets.replay import DryRun, ReplayPanel, ReplayResult

__all__ = ["DLQAction", "DLQPanel", "DryRun", "EventBrowser", "ReplayPanel", "ReplayResult"]
