"""Connector states (OCPP 1.6 StatusNotification) and the time a connector spent in each.

A connector's history is a list of ``StatusChange`` records; a state holds from its
change until the next change. Everything here works on absolute instants: datetimes
are normalised to UTC before any arithmetic, because Python subtracts two datetimes
that share a tzinfo by wall clock, which is wrong across a DST change.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Iterable

from .errors import InvalidRequest
from .intervals import Interval


class InvalidTimeWindow(InvalidRequest):
    """A time window must have timezone-aware ends and must not end before it starts."""

    code = "invalid_time_window"


class InvalidStatusChange(InvalidRequest):
    """A status change needs a timezone-aware time and one of the OCPP 1.6 connector states."""

    code = "invalid_status_change"


class ConnectorStatus(str, Enum):
    """OCPP 1.6 ChargePointStatus of one connector; the value is the wire spelling."""

    AVAILABLE = "Available"
    PREPARING = "Preparing"
    CHARGING = "Charging"
    SUSPENDED_EV = "SuspendedEV"
    SUSPENDED_EVSE = "SuspendedEVSE"
    FINISHING = "Finishing"
    RESERVED = "Reserved"
    UNAVAILABLE = "Unavailable"
    FAULTED = "Faulted"

    def __str__(self) -> str:
        return self.value


# A vehicle is at the connector (plugged in) in these states.
OCCUPIED_STATUSES: frozenset[ConnectorStatus] = frozenset(
    {
        ConnectorStatus.PREPARING,
        ConnectorStatus.CHARGING,
        ConnectorStatus.SUSPENDED_EV,
        ConnectorStatus.SUSPENDED_EVSE,
        ConnectorStatus.FINISHING,
    }
)

# The connector cannot serve anybody in these states (counts against availability).
OUT_OF_SERVICE_STATUSES: frozenset[ConnectorStatus] = frozenset(
    {ConnectorStatus.UNAVAILABLE, ConnectorStatus.FAULTED}
)


def as_status(status: ConnectorStatus | str) -> ConnectorStatus:
    """The ConnectorStatus for an enum member or its OCPP spelling ("SuspendedEV"); raises InvalidStatusChange."""
    try:
        return ConnectorStatus(status)
    except ValueError:
        raise InvalidStatusChange(f"Unknown connector status: {status!r}", status=str(status)) from None


def is_occupied(status: ConnectorStatus | str) -> bool:
    """True if a vehicle is at the connector (Preparing .. Finishing); accepts the enum or its OCPP string."""
    # Coerce first: a str-Enum member hashes by name, so "Charging" alone is not found in the set.
    return as_status(status) in OCCUPIED_STATUSES


def is_out_of_service(status: ConnectorStatus | str) -> bool:
    """True for Unavailable and Faulted; accepts the enum or its OCPP string."""
    return as_status(status) in OUT_OF_SERVICE_STATUSES


@dataclass(frozen=True)
class StatusChange:
    """The connector entered ``status`` at ``at`` (timezone-aware, device time)."""

    at: datetime
    status: ConnectorStatus

    def __post_init__(self):
        if not isinstance(self.at, datetime) or self.at.utcoffset() is None:
            raise InvalidStatusChange("A status change needs a timezone-aware time", at=str(self.at))
        object.__setattr__(self, "status", as_status(self.status))


def utc(at: datetime) -> datetime:
    """The same instant in UTC; raises InvalidTimeWindow for a naive datetime."""
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise InvalidTimeWindow("Times must be timezone-aware datetimes", at=str(at))
    return at.astimezone(timezone.utc)


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = utc(start), utc(end)
    if end < start:
        raise InvalidTimeWindow(f"Window ends before it starts: {start} > {end}")
    return start, end


def status_intervals(
    changes: Iterable[StatusChange], start: datetime, end: datetime
) -> list[tuple[ConnectorStatus, Interval]]:
    """States in effect within [start, end) (aware; returned in UTC), in time order, from an unsorted history.

    The state at ``start`` is the last change at or before it; time before the first
    known change is omitted (unknown). Changes at the same instant: the one listed
    last wins. Repeated notifications of the same state are joined into one interval.
    """
    start, end = _window(start, end)
    # Stable sort by instant keeps the input order of same-instant changes.
    ordered = sorted(changes, key=lambda c: utc(c.at))
    out: list[tuple[ConnectorStatus, Interval]] = []
    for i, change in enumerate(ordered):
        seg_start = utc(change.at)
        seg_end = utc(ordered[i + 1].at) if i + 1 < len(ordered) else end
        s, e = max(seg_start, start), min(seg_end, end)
        if s >= e:
            continue
        if out and out[-1][0] == change.status and out[-1][1].end == s:
            out[-1] = (change.status, Interval(out[-1][1].start, e))
        else:
            out.append((change.status, Interval(s, e)))
    return out


def time_in_states(
    changes: Iterable[StatusChange], start: datetime, end: datetime
) -> dict[ConnectorStatus, timedelta]:
    """Time spent in each state within [start, end); every ConnectorStatus is a key (zero if unseen); unknown time is in none."""
    totals = {status: timedelta() for status in ConnectorStatus}
    for status, interval in status_intervals(changes, start, end):
        totals[status] += interval.duration
    return totals


def intervals_in(
    changes: Iterable[StatusChange],
    start: datetime,
    end: datetime,
    statuses: Iterable[ConnectorStatus | str],
) -> list[Interval]:
    """The intervals (UTC, sorted, adjacent ones joined) within [start, end) spent in any of ``statuses``."""
    wanted = {as_status(s) for s in statuses}
    out: list[Interval] = []
    for status, interval in status_intervals(changes, start, end):
        if status not in wanted:
            continue
        if out and out[-1].end == interval.start:
            out[-1] = Interval(out[-1].start, interval.end)
        else:
            out.append(interval)
    return out


def charging_intervals(changes: Iterable[StatusChange], start: datetime, end: datetime) -> list[Interval]:
    """Intervals (UTC) within [start, end) in the Charging state only; SuspendedEV/EVSE, Preparing, Finishing do not count."""
    return intervals_in(changes, start, end, [ConnectorStatus.CHARGING])


def occupied_intervals(changes: Iterable[StatusChange], start: datetime, end: datetime) -> list[Interval]:
    """Intervals (UTC) within [start, end) in an occupied state (Preparing .. Finishing), adjacent ones joined."""
    return intervals_in(changes, start, end, OCCUPIED_STATUSES)


def out_of_service_intervals(changes: Iterable[StatusChange], start: datetime, end: datetime) -> list[Interval]:
    """Intervals (UTC) within [start, end) spent Unavailable or Faulted, adjacent ones joined."""
    return intervals_in(changes, start, end, OUT_OF_SERVICE_STATUSES)
