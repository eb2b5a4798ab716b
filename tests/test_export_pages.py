"""export_frame writes page by page: one schema for the whole file, the frame events_frame gives,
the CSV header once, and no file at all (nor a half one) when it fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from eventkit import EventBus, frames
from eventkit.frames import events_frame, export_frame
from eventkit.stores.base import NewEvent

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def raw(n: int, data: str, event_type: str = "x.raw") -> NewEvent:
    stamp = int((T0 + timedelta(minutes=n)).timestamp() * 1000)
    return NewEvent(f"e{n:02d}", event_type, 1, "test", stamp, data)


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frames, "PAGE", 3)


async def fill(bus: EventBus) -> None:
    """Kinds that change from page to page: whole numbers, then text; a field only in the last
    page; lists in one page only."""
    await bus.store.append([raw(n, f'{{"size": {n}, "tags": ["a", {n}]}}') for n in range(3)])
    await bus.store.append([raw(n, f'{{"size": "big {n}"}}') for n in range(3, 6)])
    await bus.store.append([raw(n, f'{{"size": {n}.5, "late": true}}') for n in range(6, 8)])


@pytest.mark.usefixtures("small_pages")
async def test_parquet_pages_share_one_schema_and_match_events_frame(
    bus: EventBus, tmp_path: Path
) -> None:
    await fill(bus)
    out = tmp_path / "all.parquet"
    assert await export_frame(bus, out, "parquet", progress=False) == 8
    assert pq.ParquetFile(out).num_row_groups == 3  # one per page
    back = pd.read_parquet(out)
    frame = await events_frame(bus, progress=False)
    assert list(back.columns) == list(frame.columns)
    assert list(back["data.size"]) == ["0", "1", "2", "big 3", "big 4", "big 5", "6.5", "7.5"]
    assert list(back["data.late"].fillna(False)) == [False] * 6 + [True] * 2
    assert list(back["data.tags"].fillna("")) == ['["a", 0]', '["a", 1]', '["a", 2]', *[""] * 5]
    assert (back["event_id"] == frame["event_id"]).all()


@pytest.mark.usefixtures("small_pages")
async def test_csv_pages_write_the_header_once(bus: EventBus, tmp_path: Path) -> None:
    await fill(bus)
    out = tmp_path / "all.csv"
    assert await export_frame(bus, out, "csv", start_time=T0 + timedelta(minutes=1)) == 7
    text = out.read_text().splitlines()
    assert len(text) == 8 and text[0].startswith("event_id,") and text.count(text[0]) == 1
    assert list(pd.read_csv(out)["event_id"]) == [f"e{n:02d}" for n in range(1, 8)]


async def test_an_export_of_no_events_has_the_columns_and_no_rows(
    bus: EventBus, tmp_path: Path
) -> None:
    out = tmp_path / "none.parquet"
    assert await export_frame(bus, out, "parquet", progress=False) == 0
    back = pd.read_parquet(out)
    assert len(back) == 0 and {"event_id", "timestamp"} <= set(back.columns)


@pytest.mark.usefixtures("small_pages")
async def test_a_failed_export_leaves_the_old_file_and_no_part(
    bus: EventBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fill(bus)
    out = tmp_path / "all.csv"
    out.write_text("old\n")
    written = []

    def fail_on_second_page(frame: pd.DataFrame) -> pd.DataFrame:
        written.append(len(frame))
        if len(written) == 2:
            raise OSError("disk full")
        return frame

    monkeypatch.setattr("eventkit.frames_export._portable", fail_on_second_page)
    with pytest.raises(OSError, match="disk full"):
        await export_frame(bus, out, "csv", progress=False)
    assert out.read_text() == "old\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
