"""Plots: titles, labels, what is drawn (counts, quantiles), empty frames, and frames from a real bus."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import Rectangle, StepPatch  # noqa: E402

from eventkit import EventBus  # noqa: E402
from eventkit.error_kinds import UNKNOWN_KIND, error_kind, error_kinds  # noqa: E402
from eventkit.frames import deliveries_frame, dlq_frame, events_frame  # noqa: E402
from eventkit.plots import (  # noqa: E402
    choose_interval,
    lag_series,
    plot_dlq,
    plot_lag,
    plot_latency,
    plot_throughput,
)
from tests.helpers import all_of, discovered  # noqa: E402

T0 = pd.Timestamp("2026-11-02", tz="UTC")


def times(minutes: list[float]) -> pd.Series:
    return pd.Series([T0 + pd.Timedelta(minutes=m) for m in minutes]).astype("datetime64[ms, UTC]")


def deliveries(latencies: list[float], groups: list[str] | None = None) -> pd.DataFrame:
    published = times([float(i) for i in range(len(latencies))])
    return pd.DataFrame({
        "consumer_group": groups or ["g"] * len(latencies),
        "status": "acked",
        "published_at": published,
        "acked_at": published + pd.to_timedelta(latencies, unit="ms"),
        "latency_ms": np.array(latencies, dtype=float),
    })  # fmt: skip


def test_throughput_lines_add_up_to_the_events() -> None:
    events = pd.DataFrame({"timestamp": times([0, 1, 2, 61, 62, 200]),
                           "event_type": ["a", "b", "a", "a", "b", "a"]})  # fmt: skip
    ax = plot_throughput(events, interval="1h")
    assert ax.get_title() == "Throughput by event type" and "UTC" in ax.get_xlabel()
    assert ax.get_ylabel() == "events per 1h"
    drawn = {line.get_label(): list(np.asarray(line.get_ydata())) for line in ax.lines}
    assert drawn == {"a": [2, 1, 0, 1], "b": [1, 1, 0, 0]}


def test_dlq_bars_stack_by_error_type_and_sum_to_the_entries() -> None:
    frame = pd.DataFrame({
        "failed_at": times([0, 5, 90, 95, 100]),
        "last_error": ["TypeError: x", "TypeError: y", "ValueError: z", "no colon", None],
        "consumer_group": ["g1", "g1", "g2", "g2", "g2"],
    })  # fmt: skip
    ax = plot_dlq(frame)
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sum(p.get_height() for p in bars) == len(frame)
    assert "error type" in ax.get_title() and ax.get_ylabel().startswith("entries per")
    legend = ax.get_legend()
    assert legend is not None
    assert sorted(t.get_text() for t in legend.get_texts()) == [
        "?", "TypeError", "ValueError", "no colon"]  # fmt: skip
    by_group_legend = plot_dlq(frame, by="group").get_legend()
    assert by_group_legend is not None
    assert sorted(t.get_text() for t in by_group_legend.get_texts()) == ["g1", "g2"]


def test_latency_marks_p50_p95_p99_and_uses_log_x_for_a_wide_range() -> None:
    latencies = [1.0] * 50 + [10.0] * 40 + [500.0] * 9 + [5000.0]
    frame = deliveries(latencies, ["a"] * 60 + ["b"] * 40)
    ax = plot_latency(frame)
    marks = [np.asarray(line.get_xdata())[0] for line in ax.lines]
    assert marks == pytest.approx(list(np.quantile(latencies, [0.5, 0.95, 0.99])))
    assert [t.get_text().split()[0] for t in ax.texts] == ["p50", "p95", "p99"]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "latency (ms)"
    # get_data() is StairData(values, edges, baseline), typed in matplotlib's stubs as a plain tuple
    heights = sum(patch.get_data()[0].sum() for patch in all_of(StepPatch, ax.patches))
    assert heights == len(latencies)


def test_latency_of_a_narrow_range_stays_linear() -> None:
    ax = plot_latency(deliveries([5.0, 6.0, 7.0, 8.0]))
    assert ax.get_xscale() == "linear"


def test_lag_is_rebuilt_from_publish_and_ack_times() -> None:
    frame = deliveries([30 * 60_000.0, 30_000.0, 60_000.0])  # the first stays unacked for 30 min
    lag = lag_series(frame["published_at"], frame["acked_at"])
    assert lag.max() == 2 and lag.iloc[-1] == 0
    ax = plot_lag(frame)
    assert [line.get_label() for line in ax.lines] == ["g"]
    assert "not yet acked" in ax.get_ylabel()


@pytest.mark.parametrize(
    ("plot", "columns"),
    [
        (plot_dlq, ["failed_at", "last_error", "consumer_group"]),
        (plot_latency, ["latency_ms", "consumer_group"]),
        (plot_throughput, ["timestamp", "event_type"]),
        (plot_lag, ["published_at", "acked_at", "consumer_group", "status"]),
    ],
)
def test_empty_frame_draws_no_data_with_title_and_labels(plot: object, columns: list[str]) -> None:
    ax = plot(pd.DataFrame({c: [] for c in columns}))  # type: ignore[operator]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.texts] == ["no data"]


def test_a_frame_without_the_columns_names_its_producer() -> None:
    with pytest.raises(ValueError, match="deliveries_frame"):
        plot_latency(pd.DataFrame({"x": [1]}))


def test_helpers_choose_readable_bins() -> None:
    assert choose_interval(times([0, 7 * 24 * 60])) == "3h"
    assert choose_interval(times([0, 30])) == "15s"


def test_one_error_kind_rule_for_the_dlq_panel_the_replay_summary_and_plot_dlq() -> None:
    texts = ["KeyError: 'a': b", "  TypeError : x", "no colon", "", ": nothing before", "x" * 61,
             None, float("nan")]  # fmt: skip
    expected = ["KeyError", "TypeError", "no colon"] + [UNKNOWN_KIND] * 5
    assert [error_kind(t) for t in texts] == expected
    for dtype in (object, "str"):
        series = pd.Series(texts, dtype=dtype, index=range(10, 18))
        kinds = error_kinds(series)
        assert list(kinds) == expected and list(kinds.index) == list(series.index)


async def test_plots_of_real_frames(bus: EventBus) -> None:
    await bus.publish_many([discovered(i) for i in range(20)])

    def handler(event: object) -> None:
        if getattr(event, "asset_id", "") == "asset-3":
            raise RuntimeError("boom: asset 3")

    await bus.subscribe_persistent(["*"], "g", "w", handler, max_retries=0)
    assert await bus.wait_idle("g", timeout=10)
    events = await events_frame(bus)
    ax = plot_throughput(events)
    assert sum(np.asarray(line.get_ydata()).sum() for line in ax.lines) == 20
    dead = await dlq_frame(bus)
    assert sum(p.get_height() for p in all_of(Rectangle, plot_dlq(dead).patches)) == 1
    done = await deliveries_frame(bus)
    assert sum(p.get_data()[0].sum() for p in all_of(StepPatch, plot_latency(done).patches)) == 19
    assert len(plot_lag(done).lines) == 1
