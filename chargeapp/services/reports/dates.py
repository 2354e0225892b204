"""The range a report covers: station-local dates, both inclusive, as a UTC window cut at ``now``.

1-30 November in Shanghai is [31 Oct 16:00 UTC, 30 Nov 16:00 UTC); at most the station's
``max_report_days`` (default 400); longer, or ending before it starts, is refused (422).
See docs/rules.md, "Reports".
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from chargeapp.db import models as m
from chargeapp.domain import charger as ch
from chargeapp.domain import usage
from chargeapp.domain.errors import InvalidRequest
from chargeapp.services.common import rules_of, station_tz


class InvalidReportRange(InvalidRequest):
    """A report covers station-local dates from ``start`` to ``end`` (inclusive); the end cannot be before the start."""

    code = "invalid_report_range"


class ReportRangeTooLong(InvalidReportRange):
    """A report covers at most the station's ``max_report_days``."""

    code = "report_range_too_long"


@dataclass(frozen=True)
class ReportRange:
    """Station-local dates ``first``..``last`` (inclusive) as the UTC window [start, end), cut at ``now`` if given."""

    first: date
    last: date
    tz: tzinfo
    start: datetime
    end: datetime

    def days(self) -> list[usage.DayWindow]:
        """Each local day with its UTC window clipped to the range; days wholly after ``end`` are left out."""
        return usage.day_windows(self.first, self.last, self.tz, self.start, self.end)


def check_dates(start_date: date, end_date: date, limit: int) -> None:
    """Raise InvalidReportRange (not dates, end before start) or ReportRangeTooLong (more than ``limit`` days)."""
    for name, value in (("start", start_date), ("end", end_date)):
        if not isinstance(value, date) or isinstance(value, datetime):
            raise InvalidReportRange(f"The report {name} must be a date (YYYY-MM-DD).", **{name: str(value)})
    if end_date < start_date:
        raise InvalidReportRange(
            f"The report ends ({end_date.isoformat()}) before it starts ({start_date.isoformat()}).",
            start=start_date.isoformat(), end=end_date.isoformat(),
        )
    days = (end_date - start_date).days + 1
    if days > limit:
        raise ReportRangeTooLong(
            f"A report covers at most {limit} days; {start_date.isoformat()} to {end_date.isoformat()} is {days}.",
            days=days, max_days=limit,
        )


def report_range(station: m.Station, start_date: date, end_date: date, now: datetime | None = None) -> ReportRange:
    """The UTC window of local dates start_date..end_date (inclusive) in the station's tz, cut at ``now`` (aware) if given.

    Raises InvalidReportRange (not dates, end before start) and ReportRangeTooLong
    (more than the station's max_report_days).
    """
    check_dates(start_date, end_date, rules_of(station).max_report_days)
    tz = station_tz(station)
    start = usage.local_midnight(start_date, tz)
    end = usage.local_midnight(end_date + timedelta(days=1), tz)
    if now is not None:
        end = min(end, max(start, ch.utc(now)))
    return ReportRange(start_date, end_date, tz, start, end)
