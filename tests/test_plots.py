"""Plots: what is drawn (counts, quantiles), and what a reader sees at real spans: date/time ticks
from milliseconds to years, whole-number counts, percentile labels apart, legends off the data,
far-off stragglers and slow tails left out and said so; empty frames; frames from a real bus."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.patches import Rectangle, StepPatch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from eventkit import EventBus  # noqa: E402
from eventkit.error_kinds import UNKNOWN_KIND, error_kind, error_kinds  # noqa: E402
from eventkit.frames import deliveries_frame, dlq_frame, events_frame  # noqa: E402
from eventkit.plots import (  # noqa: E402
    MARK_GID,
    NOTE_GID,
    Window,
    choose_interval,
    duration_text,
    interval_label,
    lag_series,
    plot_dlq,
    plot_dlq_over_time,
    plot_lag,
    plot_latency,
    plot_throughput,
)
from tests.helpers import all_of, discovered  # noqa: E402

T0 = pd.Timestamp("2026-11-02", tz="UTC")


def times(minutes: list[float]) -> pd.Series:
    return pd.Series([T0 + pd.Timedelta(minutes=m) for m in minutes]).astype("datetime64[ms, UTC]")


def spread(span: str, n: int = 200) -> pd.Series:
    """n times evenly over the span from T0."""
    return pd.Series(pd.date_range(T0, T0 + pd.Timedelta(span), periods=n)).astype(
        "datetime64[ms, UTC]"
    )


def deliveries(latencies: list[float], groups: list[str] | None = None) -> pd.DataFrame:
    published = times([float(i) for i in range(len(latencies))])
    return pd.DataFrame({
        "consumer_group": groups or ["g"] * len(latencies),
        "status": "acked",
        "published_at": published,
        "acked_at": published + pd.to_timedelta(latencies, unit="ms"),
        "latency_ms": np.array(latencies, dtype=float),
    })  # fmt: skip


def drawn(ax: Axes) -> Axes:
    """Lay the figure out and draw it (no pixels), so ticks, labels and extents are final."""
    figure = ax.get_figure(root=True)
    assert figure is not None
    figure.draw_without_rendering()
    return ax


def tick_texts(ax: Axes) -> list[str]:
    return [t.get_text() for t in drawn(ax).get_xticklabels() if t.get_text()]


def notes(ax: Axes) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_gid() == NOTE_GID]


def bar_totals(ax: Axes) -> dict[str, list[int]]:
    return {
        str(c.get_label()): [round(p.get_height()) for p in c.patches]
        for c in ax.containers
        if isinstance(c, BarContainer)
    }


def overlaps(a: Text | Axes, b: Text | Axes) -> bool:
    return bool(a.get_window_extent().overlaps(b.get_window_extent()))


def assert_whole_number_ticks(ax: Axes, axis: str = "y") -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    assert isinstance(target.get_major_locator(), MaxNLocator)
    ticks = ax.get_yticks() if axis == "y" else ax.get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


# -- throughput -----------------------------------------------------------------------------------


def test_throughput_bars_stack_by_type_and_add_up_to_the_events() -> None:
    events = pd.DataFrame({"timestamp": times([0, 1, 2, 61, 62, 200]),
                           "event_type": ["a", "b", "a", "a", "b", "a"]})  # fmt: skip
    ax = plot_throughput(events, interval="1h")
    assert ax.get_title() == "Throughput by event type" and ax.get_xlabel() == "event time (UTC)"
    assert ax.get_ylabel() == "events per hour"
    assert bar_totals(ax) == {"a": [2, 1, 0, 1], "b": [1, 1, 0, 0]}
    assert_whole_number_ticks(drawn(ax))


@pytest.mark.parametrize(
    ("span", "label", "offset"),
    [  # a run of under a second, half an hour, a week, three years
        ("800ms", r"\d\d:\d\d(:\d\d\.\d)?", "2026-Nov-02"),
        ("30min", r"\d\d:\d\d", "2026-Nov-02"),
        ("7D", r"\d\d", "2026-Nov"),
        ("1095D", r"\d{4}|[A-Z][a-z]{2}", ""),
    ],
)
def test_time_axes_carry_date_and_time_labels_at_every_span(
    span: str, label: str, offset: str
) -> None:
    ax = plot_throughput(pd.DataFrame({"timestamp": spread(span), "event_type": "a"}))
    texts = tick_texts(ax)
    assert len(texts) >= 4 and all(re.fullmatch(label, t) for t in texts), texts
    assert ax.xaxis.get_offset_text().get_text() == offset
    bins = len(ax.patches)
    assert 20 <= bins <= 121, bins  # bins chosen from the span: neither one bar nor thousands


def test_choose_interval_and_its_label_from_milliseconds_to_years() -> None:
    assert choose_interval(spread("800ms")) == "10ms"
    assert choose_interval(times([0, 30])) == "15s"
    assert choose_interval(times([0, 7 * 24 * 60])) == "2h"
    assert choose_interval(spread("1095D")) == "14D"
    assert [interval_label(i) for i in ("10ms", "1s", "15s", "1min", "2h", "1D", "7D", "14D",
                                        "91D")] == [  # fmt: skip
        "10 ms", "second", "15 s", "minute", "2 h", "day", "week", "2 weeks", "13 weeks"]  # fmt: skip
    assert [duration_text(v) for v in (0.4, 97.2, 2300.0)] == ["0.4 ms", "97 ms", "2.3 s"]


def test_another_zone_is_shown_and_named() -> None:
    events = pd.DataFrame({"timestamp": spread("7D"), "event_type": "a"})
    ax = drawn(plot_throughput(events, tz="America/New_York"))
    assert ax.get_xlabel() == "event time (America/New_York)"
    zone = ZoneInfo("America/New_York")
    day_ticks = [mdates.num2date(t, tz=zone) for t in ax.get_xticks()]
    assert all((d.hour, d.minute) == (0, 0) for d in day_ticks)  # New York midnights, not UTC's


def test_a_far_off_straggler_is_left_out_of_the_view_and_said() -> None:
    week = spread("7D", n=500)
    events = pd.DataFrame({
        "timestamp": pd.concat([pd.Series([pd.Timestamp("2026-03-09", tz="UTC")]), week],
                               ignore_index=True).astype("datetime64[ms, UTC]"),
        "event_type": "a",
    })  # fmt: skip
    ax = plot_throughput(events)
    left, right = ax.get_xlim()
    assert right - left < 8  # days: the week fills the width, not a sliver of eight months
    assert sum(sum(v) for v in bar_totals(ax).values()) == 500
    assert notes(ax) == ["Not shown: 1 event earlier (2026-03-09 00:00 UTC)"]
    note = next(t for t in ax.texts if t.get_gid() == NOTE_GID)
    assert not overlaps(drawn(ax).title, note)


def test_window_keeps_evenly_spread_and_few_points() -> None:
    even = Window.of(spread("7D", n=500))
    assert (len(even.before), len(even.after)) == (0, 0) and even.note("event", "UTC") is None
    few = Window.of(times([0, 1, 2, 500_000]))  # too few points to call any of them a straggler
    assert few.end == times([500_000])[0]


# -- latency --------------------------------------------------------------------------------------


def test_latency_marks_p50_p95_p99_and_uses_log_x_for_a_wide_range() -> None:
    latencies = [1.0] * 50 + [10.0] * 40 + [500.0] * 9 + [700.0]
    frame = deliveries(latencies, ["a"] * 60 + ["b"] * 40)
    ax = plot_latency(frame)
    marks = [np.asarray(line.get_xdata())[0] for line in ax.lines]
    assert marks == pytest.approx(list(np.quantile(latencies, [0.5, 0.95, 0.99])))
    labels = [t.get_text() for t in ax.texts if t.get_gid() == MARK_GID]
    assert [t.split()[0] for t in labels] == ["p50", "p95", "p99"]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "latency (ms)"
    # get_data() is StairData(values, edges, baseline), typed in matplotlib's stubs as a plain tuple
    heights = sum(patch.get_data()[0].sum() for patch in all_of(StepPatch, ax.patches))
    assert heights == len(latencies) and notes(ax) == []
    assert "1000" in tick_texts(ax) or "100" in tick_texts(ax)  # plain numbers, not 10³


def test_latency_of_a_narrow_range_stays_linear() -> None:
    ax = plot_latency(deliveries([5.0, 6.0, 7.0, 8.0]))
    assert ax.get_xscale() == "linear"


def test_a_few_slow_retries_do_not_flatten_the_rest_and_the_note_says_what_was_cut() -> None:
    rng = np.random.default_rng(3)
    latencies = list(rng.gamma(4, 25, 997)) + [2300.0, 1800.0, 1500.0]
    ax = plot_latency(deliveries(latencies))
    p99 = float(np.quantile(latencies, 0.99))
    assert ax.get_xlim()[1] < 2 * p99 < 1500  # the bulk fills the width
    assert notes(ax) == ["3 slower deliveries not shown (max 2.3 s)"]
    heights = sum(patch.get_data()[0].sum() for patch in all_of(StepPatch, ax.patches))
    assert heights == 997


def test_percentile_labels_do_not_overlap_even_when_the_marks_are_close() -> None:
    latencies = [100.0] * 90 + [179.0] * 5 + [180.0] * 4 + [181.0]  # p95 and p99 a pixel apart
    ax = drawn(plot_latency(deliveries(latencies)))
    labels = [t for t in ax.texts if t.get_gid() == MARK_GID]
    assert len(labels) == 3
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            assert not overlaps(a, b), (a.get_text(), b.get_text())
    figure_box = ax.get_figure(root=True).bbox  # type: ignore[union-attr]
    assert all(figure_box.contains(*t.get_window_extent().p1) for t in labels)


# -- lag ------------------------------------------------------------------------------------------


def test_lag_is_rebuilt_from_publish_and_ack_times() -> None:
    frame = deliveries([30 * 60_000.0, 30_000.0, 60_000.0])  # the first stays unacked for 30 min
    lag = lag_series(frame["published_at"], frame["acked_at"])
    assert lag.max() == 2 and lag.iloc[-1] == 0
    ax = plot_lag(frame)
    assert [line.get_label() for line in ax.lines] == ["g"]
    assert "not yet acked" in ax.get_ylabel()


def test_lag_of_a_run_of_a_second_has_millisecond_bins_and_time_labels() -> None:
    start = pd.Timestamp("2026-11-02 10:00", tz="UTC")
    published = pd.Series([start + pd.Timedelta(milliseconds=2 * i) for i in range(200)])
    frame = pd.DataFrame({
        "consumer_group": "g", "status": ["acked"] * 199 + ["dead"],
        "published_at": published.astype("datetime64[ms, UTC]"),
        "acked_at": (published + pd.Timedelta(milliseconds=300)).astype("datetime64[ms, UTC]"),
    })  # fmt: skip
    ax = plot_lag(frame)
    (line,) = ax.lines
    values = np.asarray(line.get_ydata())
    assert len(values) > 30 and values.max() >= 140 and values[-1] == 0  # a shape, not one point
    assert "per 5 ms" in ax.get_ylabel() or "per 10 ms" in ax.get_ylabel()
    assert all(re.fullmatch(r"\d\d:\d\d(:\d\d\.\d+)?", t) for t in tick_texts(ax))
    assert notes(ax) == ["1 dead-lettered delivery not counted"]
    assert_whole_number_ticks(ax)


# -- DLQ ------------------------------------------------------------------------------------------


def dlq(failed_at: pd.Series, errors: Sequence[str | None], groups: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"failed_at": failed_at, "last_error": errors, "consumer_group": groups})


def test_dlq_is_horizontal_bars_by_error_kind_commonest_first() -> None:
    frame = dlq(times([0, 5, 20, 25, 30]),
                ["TypeError: x", "TypeError: y", "ValueError: z", "no colon", None],
                ["g1", "g1", "g2", "g2", "g2"])  # fmt: skip
    ax = drawn(plot_dlq(frame))
    bars = all_of(Rectangle, ax.patches)
    assert sum(p.get_width() for p in bars) == len(frame)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["TypeError", "?", "ValueError",
                                                           "no colon"]  # fmt: skip
    assert ax.get_title() == "Dead-letter entries by error type (5)"
    assert_whole_number_ticks(ax, "x")
    by_group = drawn(plot_dlq(frame, by="group"))
    assert [t.get_text() for t in by_group.get_yticklabels()] == ["g2", "g1"]
    figure = ax.get_figure(root=True)
    assert figure is not None and len(figure.axes) == 1  # half an hour: no time panel


def test_dlq_over_a_long_span_adds_counts_over_time_in_the_same_colours() -> None:
    failed = spread("400D", n=60)
    frame = dlq(failed, ["ValueError: a"] * 40 + ["KeyError: b"] * 20, ["g"] * 60)
    ax = plot_dlq(frame)
    figure = ax.get_figure(root=True)
    assert figure is not None and len(figure.axes) == 2
    over_time = figure.axes[1]
    assert over_time.get_title() == "Dead-letter entries over time"
    totals = bar_totals(over_time)
    assert {k: sum(v) for k, v in totals.items()} == {"ValueError": 40, "KeyError": 20}
    bar_colour = {t.get_text(): p.get_facecolor() for t, p in
                  zip(drawn(ax).get_yticklabels(), ax.patches, strict=True)}  # fmt: skip
    for container in over_time.containers:
        assert isinstance(container, BarContainer)
        assert container.patches[0].get_facecolor() == bar_colour[str(container.get_label())]
    assert all(re.fullmatch(r"\d{4}|[A-Z][a-z]{2}", t) for t in tick_texts(over_time))
    assert_whole_number_ticks(over_time)
    assert len(plot_dlq_over_time(frame).patches) >= 20


# -- shared ---------------------------------------------------------------------------------------


def legend_cases() -> list[tuple[str, Callable[[], Axes]]]:
    week = pd.DataFrame({"timestamp": spread("7D"), "event_type": ["a", "b"] * 100})
    slow = deliveries([float(v) for v in range(1, 200)], ["a", "b"] * 99 + ["a"])
    long_dlq = dlq(spread("400D", n=10), ["KeyError: b"] * 10, ["g"] * 10)
    return [
        ("throughput", lambda: plot_throughput(week)),
        ("latency", lambda: plot_latency(slow)),
        ("lag", lambda: plot_lag(slow)),
        ("dlq over time", lambda: plot_dlq_over_time(long_dlq)),
    ]


@pytest.mark.parametrize(("name", "plot"), legend_cases())
def test_legends_sit_off_the_data(name: str, plot: Callable[[], Axes]) -> None:
    ax = drawn(plot())
    legend = ax.get_legend()
    assert legend is not None
    assert not legend.get_window_extent().overlaps(ax.get_window_extent()), name


def test_figures_do_not_pile_up_in_pyplot_outside_a_notebook() -> None:
    before = plt.get_fignums()
    for _, plot in legend_cases():
        plot()
    assert plt.get_fignums() == before  # Agg: each figure is the caller's, closed in pyplot


@pytest.mark.parametrize(
    ("plot", "columns"),
    [
        (plot_dlq, ["failed_at", "last_error", "consumer_group"]),
        (plot_dlq_over_time, ["failed_at", "last_error", "consumer_group"]),
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
    with pytest.raises(ValueError, match="'error' or 'group'"):
        plot_dlq(dlq(times([0]), ["x"], ["g"]), by="kind")


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
    assert sum(sum(v) for v in bar_totals(ax).values()) == 20
    dead = await dlq_frame(bus)
    assert sum(p.get_width() for p in all_of(Rectangle, plot_dlq(dead).patches)) == 1
    done = await deliveries_frame(bus)
    assert sum(p.get_data()[0].sum() for p in all_of(StepPatch, plot_latency(done).patches)) == 19
    lag = plot_lag(done)
    assert len(lag.lines) == 1 and notes(lag) == ["1 dead-lettered delivery not counted"]
