"""The one clock: UTC epoch milliseconds at rest, timezone-aware UTC datetimes in the API.

A leaf module (standard library only), so stores, codec and events share one clock domain without
importing each other.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta


def now_ms() -> int:
    """Now as UTC epoch milliseconds: every lease, due time and published time uses this."""
    return time.time_ns() // 1_000_000


def utc_now_ms() -> datetime:
    """Now, in UTC, at the millisecond precision events are stored with."""
    return ms_to_datetime(now_ms())


def to_utc_ms(moment: datetime) -> datetime:
    """Naive datetimes are taken as UTC; precision is cut to milliseconds so a stored event
    read back equals the one published."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def datetime_to_ms(moment: datetime) -> int:
    """Epoch milliseconds of a datetime (naive: taken as UTC)."""
    ms = _MILLISECONDS.get(moment)  # events made or read in this process: a lookup
    if ms is not None:
        return ms
    if moment.tzinfo is not UTC:  # events keep UTC already: only foreign datetimes pay for this
        moment = to_utc_ms(moment)
    return (moment - _EPOCH) // _ONE_MS


#: recent conversions, both ways: events published together share their milliseconds, and
#: datetimes are immutable, so a batch reuses them (emptied when full, so they stay small)
_DATETIMES: dict[int, datetime] = {}
_MILLISECONDS: dict[datetime, int] = {}


def ms_to_datetime(ms: int) -> datetime:
    """The UTC datetime of epoch milliseconds; ValueError outside datetime's years 1-9999."""
    moment = _DATETIMES.get(ms)
    if moment is None:
        try:
            moment = _EPOCH + timedelta(milliseconds=int(ms))  # twice as fast as fromtimestamp()
        except OverflowError:
            raise ValueError(f"{ms} ms since the epoch is out of datetime's range") from None
        if len(_DATETIMES) >= 4096:
            _DATETIMES.clear()
            _MILLISECONDS.clear()
        _DATETIMES[ms] = moment
        _MILLISECONDS[moment] = int(ms)
    return moment
