"""The one clock: UTC epoch milliseconds at rest, timezone-aware UTC datetimes in the API.

A leaf module (standard library and eventkit.errors only), so stores, codec and events share one clock domain without
importing each other.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from eventkit.errors import ConfigError


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


#: what every time filter accepts (frames, panels, replay, CLI): pandas.Timestamp is a datetime
TimeInput = datetime | date | str


def parse_time(value: TimeInput, label: str = "time") -> datetime:
    """A time filter as a UTC datetime: a datetime (naive = UTC) or pandas.Timestamp, a date
    (its midnight, UTC), or an ISO 8601 string ("2026-11-03", "2026-11-03T12:00",
    "2026-11-03 12:00:00+01:00", "...Z"). ConfigError (a ValueError) names the label and what
    is accepted."""
    if isinstance(value, datetime):
        return to_utc_ms(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return to_utc_ms(datetime.fromisoformat(value.strip()))
        except ValueError:
            pass
    raise ConfigError(
        label,
        value,
        "give a datetime (naive = UTC), a pandas.Timestamp, a date or an ISO 8601 "
        "string such as '2026-11-03' or '2026-11-03T12:00:00Z'",
    )
