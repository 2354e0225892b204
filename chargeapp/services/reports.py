"""Managers' reports over a range of station-local dates: utilization, energy,
sessions, bookings, waiting, idle time, availability, free parking and revenue
per charger and per station; weekday x hour heat maps; daily trends; lounge
occupancy by hour; CSV export.

Reports read only recorded history (status_changes, charging_sessions,
bookings, receipts, occupancy_changes), never meter_readings, and read no
clock: the caller passes ``now`` to cut a range that reaches into the present.
Every query is bounded by the range, so last month's report is the same
tomorrow and costs the same next year. Functions take a session and never write.

Times, energy and sessions of whole days that are rolled up and clean come from
``connector_day_rollups`` (services/rollups.py), the rest of the range (days not
rolled up, dirty days, today) from the history; ``rollups=False`` reads only the
history. Both give exactly the same figures: a range is the sum of its days
(see "days" below), and a rollup is computed by the same code from the history.

Decisions (docs/rules.md, "Reports"):

- A range is two station-local dates, both inclusive: 1-30 November in
  Shanghai is [31 Oct 16:00 UTC, 30 Nov 16:00 UTC). At most the station's
  ``max_report_days`` (default 400) days; longer, or ending before it starts,
  is refused (422).
- In-service time = known time (from the range start, or from the first status
  ever recorded if that is later) minus time Faulted or Unavailable. Occupied
  share = Preparing..Finishing time / in-service time; charging share =
  Charging time / in-service time. A charger's times are summed over its
  connectors; station shares divide summed times (not a mean of shares).
- Energy: a closed session's metered Wh (stop - start register; a decreasing
  register counts 0) spread evenly over its duration; the part inside the
  range counts, rounded cumulatively so the parts of one session always add up
  to its total. Open sessions and sessions without both meter values add 0 Wh.
- Sessions are counted, and their length averaged, in the range they start in
  (the full length, even past the range end); open sessions are counted but
  have no length yet.
- Bookings count in the range their slot starts in, on the charger holding
  them (or, with none, the charger assigned at booking). A cancellation after
  the slot started is a no-show, as the booking rules say. Waiting time is the
  mean recorded delay of the bookings that got a charger held.
- Walk-ins: sessions started in the range on fast chargers that no booking
  checked in with. Slow chargers are walk-in by design and are not counted.
- Idle time: in each occupied run, the time after its last Charging interval;
  a run already occupied at the range start with no Charging inside the range
  counts its SuspendedEV/SuspendedEVSE/Finishing time.
- Revenue and free-parking grants are booked on the day a receipt is issued.
  A correction receipt holds the change (delta) of each component (see
  services/receipts.py), so it is simply added on its own issue date and an
  earlier range never changes; ``superseded`` is ignored. A parking receipt
  grants free parking when its ``details["qualified"]`` is true; a recheck
  correction that flips it (``details["recomputed"]["qualified"]``) adds +1 or -1.
"""
from __future__ import annotations

import csv
import gc
import io
import json
from collections import Counter
from contextlib import contextmanager
import statistics
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Iterable, NamedTuple, Sequence

from sqlalchemy import Text, case, cast, func, null, or_, select
from sqlalchemy.orm import Session, aliased

from chargeapp.db import models as m
from chargeapp.domain import charger as ch
from chargeapp.domain import usage
from chargeapp.domain.errors import InvalidRequest
from chargeapp.services import lounge
from chargeapp.services.common import rules_of, station_tz

UTC = timezone.utc
ZERO = timedelta()
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MEASURES = ("occupied", "charging")
_CHECKED_IN = "checked_in"


class InvalidReportRange(InvalidRequest):
    """A report covers station-local dates from ``start`` to ``end`` (inclusive); the end cannot be before the start."""

    code = "invalid_report_range"


class ReportRangeTooLong(InvalidReportRange):
    """A report covers at most the station's ``max_report_days``."""

    code = "report_range_too_long"


class InvalidReportMeasure(InvalidRequest):
    """A heat map shows the "occupied" or the "charging" share."""

    code = "invalid_report_measure"


# -- the range ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRange:
    """Station-local dates ``first``..``last`` (inclusive) as the UTC window [start, end), cut at ``now`` if given."""

    first: date
    last: date
    tz: tzinfo
    start: datetime
    end: datetime

    def days(self) -> list[tuple[date, datetime, datetime]]:
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


# -- reading the history (every query bounded by the range) ------------------------------


def _connectors(station: m.Station) -> list[tuple[m.Charger, m.Connector]]:
    return [(c, k) for c in station.chargers for k in c.connectors]


def _status_history(session: Session, connector_id: int, start: datetime, end: datetime) -> list[ch.StatusChange]:
    """The change in effect at ``start`` and the changes inside [start, end), in arrival order (both on the (connector_id, at) index)."""
    before = session.execute(
        select(m.StatusChange.at, m.StatusChange.status)
        .where(m.StatusChange.connector_id == connector_id, m.StatusChange.at < start)
        .order_by(m.StatusChange.at.desc(), m.StatusChange.id.desc())
        .limit(1)
    ).first()
    inside = session.execute(
        select(m.StatusChange.at, m.StatusChange.status)
        .where(m.StatusChange.connector_id == connector_id, m.StatusChange.at >= start, m.StatusChange.at < end)
        .order_by(m.StatusChange.at, m.StatusChange.id)
    ).all()
    rows = ([before] if before is not None else []) + list(inside)
    return [ch.StatusChange(at, status) for at, status in rows]


def _intervals(session: Session, station: m.Station, rng: ReportRange) -> dict[int, list[usage.StatusIntervals]]:
    """Per charger id, each connector's status intervals inside the range."""
    out: dict[int, list] = {c.id: [] for c in station.chargers}
    for charger, connector in _connectors(station):
        if rng.start < rng.end:
            history = _status_history(session, connector.id, rng.start, rng.end)
            out[charger.id].append(ch.status_intervals(history, rng.start, rng.end))
        else:
            out[charger.id].append([])
    return out


def _sessions(session: Session, station: m.Station, rng: ReportRange) -> list[usage.SessionRecord]:
    """Sessions with a start that overlap the range (a zero-length one at the range start included)."""
    return sessions_between(session, station.id, rng.start, rng.end)


def sessions_between(session: Session, station_id: int, start: datetime, end: datetime) -> list[usage.SessionRecord]:
    """The station's sessions with a start that overlap [start, end) (UTC; a zero-length one at ``start`` included)."""
    return _stations_sessions(session, [station_id], start, end)[station_id]


def _stations_sessions(session: Session, station_ids: Sequence[int], start: datetime,
                       end: datetime) -> dict[int, list[usage.SessionRecord]]:
    """Per station id, ``sessions_between`` of each (one statement for all)."""
    cs = m.ChargingSession
    out: dict[int, list[usage.SessionRecord]] = {sid: [] for sid in station_ids}
    rows = session.execute(
        select(cs.station_id, cs.id, cs.charger_id, cs.started_at, cs.stopped_at, cs.start_meter_wh,
               cs.stop_meter_wh, cs.connector_id)
        .where(
            cs.station_id.in_(list(station_ids)), cs.started_at.is_not(None), cs.started_at < end,
            or_(cs.stopped_at.is_(None), cs.stopped_at >= start),
        )
        .order_by(cs.started_at, cs.id)
    )
    for station_id, *r in rows:
        out[station_id].append(usage.SessionRecord(*r))
    return out


class _BookingRow(NamedTuple):
    charger_id: int
    status: str
    held: bool
    delay_seconds: int
    slot_start: datetime


def _bookings(session: Session, station: m.Station, rng: ReportRange) -> list[_BookingRow]:
    """Bookings whose slot starts in the range (the (station_id, slot_start) index)."""
    b = m.Booking
    rows = session.execute(
        select(func.coalesce(b.charger_id, b.booked_charger_id), b.status, b.held_at, b.delay_seconds, b.slot_start)
        .where(b.station_id == station.id, b.slot_start >= rng.start, b.slot_start < rng.end)
    )
    return [_BookingRow(cid, status, held_at is not None, delay or 0, slot)
            for cid, status, held_at, delay, slot in rows]


def _booking_counts(session: Session, station: m.Station, rng: ReportRange) -> list[tuple]:
    """Per charger and status, of the bookings whose slot starts in the range: (charger id, status, bookings,
    held, their delay seconds summed, held with a delay), summed by the database."""
    return _stations_booking_counts(session, [station.id], rng.start, rng.end)[station.id]


def _stations_booking_counts(session: Session, station_ids: Sequence[int], start: datetime,
                             end: datetime) -> dict[int, list[tuple]]:
    """Per station id, ``_booking_counts`` of the slots starting in [start, end) (one statement for all)."""
    b = m.Booking
    charger_id = func.coalesce(b.charger_id, b.booked_charger_id)
    held = b.held_at.is_not(None)
    delay = func.coalesce(b.delay_seconds, 0)
    out: dict[int, list[tuple]] = {sid: [] for sid in station_ids}
    for station_id, *row in session.execute(
        select(b.station_id, charger_id, b.status, func.count(), func.sum(case((held, 1), else_=0)),
               func.sum(case((held, delay), else_=0)), func.sum(case((held & (delay > 0), 1), else_=0)))
        .where(b.station_id.in_(list(station_ids)), b.slot_start >= start, b.slot_start < end)
        .group_by(b.station_id, charger_id, b.status)
    ):
        out[station_id].append(tuple(row))
    return out


def _booked_session_ids(session: Session, station: m.Station, rng: ReportRange) -> set[int]:
    """Ids of the sessions started in the range that a booking checked in with."""
    cs = m.ChargingSession
    return set(session.scalars(
        select(m.Booking.session_id)
        .join(cs, cs.id == m.Booking.session_id)
        .where(cs.station_id == station.id, cs.started_at >= rng.start, cs.started_at < rng.end)
    ))


_MONEY = ("energy_fen", "service_fen", "idle_fen", "parking_fen", "total_fen")


@dataclass
class _Money:
    energy_fen: int = 0
    service_fen: int = 0
    idle_fen: int = 0
    parking_fen: int = 0
    total_fen: int = 0
    free_parking_grants: int = 0

    def add(self, other: "_Money") -> None:
        for k in (*_MONEY, "free_parking_grants"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def _qualified(details) -> bool | None:
    """Whether a parking receipt's details grant free parking (a recheck correction's recomputed ones); None if they do not say."""
    if not isinstance(details, dict):
        return None
    if "qualified" in details:
        return details["qualified"] is True
    recomputed = details.get("recomputed")
    if isinstance(recomputed, dict) and "qualified" in recomputed:
        return recomputed["qualified"] is True
    return None


def _qualified_before(session: Session, receipt_id: int | None) -> bool:
    """The free-parking grant standing at receipt ``receipt_id``: the latest of its chain that says (walks corrects_id back)."""
    while receipt_id is not None:
        details, receipt_id_before = session.execute(
            select(m.Receipt.details, m.Receipt.corrects_id).where(m.Receipt.id == receipt_id)
        ).one()
        said = _qualified(details)
        if said is not None:
            return said
        receipt_id = receipt_id_before
    return False


def _receipts(session: Session, station: m.Station, rng: ReportRange) -> list[tuple[int | None, datetime, _Money]]:
    """(charger id or None, issued at, amounts) of each receipt issued in the range; a correction's amounts are its deltas.

    Free-parking grants: +1 for a parking receipt that qualified; a correction that
    changes the grant adds +1 or -1 (only corrections of the range walk their chain).
    """
    return _stations_receipts(session, [station.id], rng.start, rng.end)[station.id]


def _stations_receipts(session: Session, station_ids: Sequence[int], start: datetime,
                       end: datetime) -> dict[int, list[tuple[int | None, datetime, _Money]]]:
    """Per station id, ``_receipts`` of the receipts issued in [start, end) (one statement for all)."""
    r, cs = m.Receipt, m.ChargingSession
    rows = session.execute(
        select(r.station_id, cs.charger_id, r.issued_at, r.kind, r.stay_id, r.corrects_id, r.details,
               *(getattr(r, k) for k in _MONEY))
        .outerjoin(cs, cs.id == r.session_id)
        .where(r.station_id.in_(list(station_ids)), r.issued_at >= start, r.issued_at < end)
    )
    out: dict[int, list] = {sid: [] for sid in station_ids}
    for station_id, charger_id, issued_at, kind, stay_id, corrects_id, details, *amounts in rows:
        money = _Money(*(a or 0 for a in amounts))
        if kind == "parking":
            money.free_parking_grants = int(bool(_qualified(details)))
        elif kind == "correction" and stay_id is not None:
            now_qualified = _qualified(details)
            if now_qualified is not None:
                money.free_parking_grants = int(now_qualified) - int(_qualified_before(session, corrects_id))
        out[station_id].append((charger_id, issued_at, money))
    return out


def _minutes(delta: timedelta) -> float:
    return round(delta.total_seconds() / 60, 2)


def _connector_intervals(history: dict[int, list[usage.StatusIntervals]]) -> list[usage.StatusIntervals]:
    return [intervals for connectors in history.values() for intervals in connectors]


# -- utilization ------------------------------------------------------------------------


@dataclass
class _Figures:
    """Everything a utilization row says, for one charger or the station."""

    time: usage.StateTime = field(default_factory=usage.StateTime)
    energy_wh: int = 0
    sessions: int = 0
    lengths: list[timedelta | int] = field(default_factory=list)  # closed sessions' lengths (int: microseconds)
    bookings: int = 0
    cancellations: int = 0
    no_shows: int = 0
    disrupted: int = 0
    waits: int = 0  # bookings that got a charger held...
    wait_seconds: int = 0  # ...their recorded delays summed
    delayed: int = 0  # ...those delayed
    walk_ins: int | None = 0
    money: _Money = field(default_factory=_Money)
    connectors: int = 0


def utilization(session: Session, station: m.Station, start_date: date, end_date: date,
                now: datetime | None = None, rollups: bool = True) -> dict:
    """Utilization per charger and for the station over local dates start_date..end_date (inclusive, station tz).

    Durations in minutes (2 decimals), shares 0..1 (4 decimals; None without
    in-service time), energy in Wh, money in fen. ``now`` (aware) cuts a range
    reaching into the present. ``rollups`` False reads only the raw history (the same figures, slower).
    Raises InvalidReportRange, ReportRangeTooLong.
    """
    rng = report_range(station, start_date, end_date, now)
    if rollups:
        return _rolled_utilization(session, station, rng, _summed(session, station, rng, hours=False))
    return _utilization(session, station, rng, _intervals(session, station, rng))


def _utilization(session: Session, station: m.Station, rng: ReportRange, history: dict[int, list[usage.StatusIntervals]]) -> dict:
    chargers = list(station.chargers)
    per = {c.id: _Figures(walk_ins=0 if c.kind == "fast" else None, connectors=len(c.connectors)) for c in chargers}
    for charger_id, connectors in history.items():
        for intervals in connectors:
            per[charger_id].time.add(usage.connector_time(intervals, rng.start))

    booked = _booked_session_ids(session, station, rng)
    for s in _sessions(session, station, rng):
        f = per.get(s.charger_id)
        if f is None:
            continue
        f.energy_wh += usage.wh_between(s, rng.start, rng.end)
        if rng.start <= s.started_at < rng.end:
            f.sessions += 1
            if s.stopped_at is not None:
                f.lengths.append(s.stopped_at - s.started_at)
            if f.walk_ins is not None and s.id not in booked:
                f.walk_ins += 1
    return _finish_utilization(session, station, rng, per)


def _finish_utilization(session: Session, station: m.Station, rng: ReportRange, per: dict[int, _Figures],
                        counts: list[tuple] | None = None, receipts: list[tuple] | None = None) -> dict:
    """Bookings, waits and money per charger, then the station row, onto the times, energy and sessions in ``per``.

    ``counts`` and ``receipts`` (``_booking_counts``, ``_receipts``) are read here unless given."""
    return _utilization_report(station, rng, per, _station_total(session, station, rng, per, counts, receipts))


def _station_total(session: Session, station: m.Station, rng: ReportRange, per: dict[int, _Figures],
                   counts: list[tuple] | None = None, receipts: list[tuple] | None = None) -> _Figures:
    """Adds bookings, waits and money to ``per``; returns the station's figures (``per`` summed, money of any charger)."""
    total = _Figures()
    if counts is None:
        counts = _booking_counts(session, station, rng)
    if receipts is None:
        receipts = _receipts(session, station, rng)
    for charger_id, status, n, held, delay_seconds, delayed in counts:
        for f in (per[charger_id], total) if charger_id in per else (total,):
            f.bookings += n
            f.cancellations += n if status == "cancelled" else 0
            f.no_shows += n if status == "no_show" else 0
            f.disrupted += n if status == "disrupted" else 0
            f.waits += int(held or 0)
            f.wait_seconds += int(delay_seconds or 0)
            f.delayed += int(delayed or 0)

    for charger_id, _, money in receipts:
        if charger_id in per:
            per[charger_id].money.add(money)
        total.money.add(money)

    for f in per.values():
        _add_figures(total, f)
    return total


def _add_figures(total: _Figures, f: _Figures) -> None:
    """Times, energy, sessions, lengths, connectors and walk-ins of ``f`` into ``total`` (bookings and money are not)."""
    total.time.add(f.time)
    total.energy_wh += f.energy_wh
    total.sessions += f.sessions
    total.lengths += f.lengths
    total.connectors += f.connectors
    if f.walk_ins is not None:
        total.walk_ins += f.walk_ins


def _utilization_report(station: m.Station, rng: ReportRange, per: dict[int, _Figures], total: _Figures) -> dict:
    chargers = list(station.chargers)
    tz = rng.tz
    return {
        "station": station.code,
        "station_name": station.name,
        "timezone": station.timezone,
        "start": rng.first,
        "end": rng.last,
        "from": rng.start.astimezone(tz),
        "until": rng.end.astimezone(tz),
        "chargers": [_row(per[c.id], "charger", c, rng) for c in chargers],
        "total": _row(total, "station", None, rng),
    }


def _row(f: _Figures, scope: str, charger: m.Charger | None, rng: ReportRange | None,
         span: timedelta | None = None) -> dict:
    """A utilization row; ``span`` is the connectors' time of the window (default: the range's length each)."""
    t = f.time
    unknown = (span if span is not None else (rng.end - rng.start) * f.connectors) - t.known
    # timedelta.total_seconds() is its microseconds / 10**6: the same float from a rollup's integer
    lengths = [(d if isinstance(d, int) else d // US) / 10**6 / 60 for d in f.lengths]
    station_only = scope in ("station", "network")
    return {
        "scope": scope,
        "charger": charger.code if charger else None,
        "kind": charger.kind if charger else None,
        "level": charger.level if charger else None,
        "in_service_min": _minutes(t.in_service),
        "occupied_min": _minutes(t.occupied),
        "charging_min": _minutes(t.charging),
        "occupied_share": t.share("occupied"),
        "charging_share": t.share("charging"),
        "idle_min": _minutes(t.idle),
        "faulted_min": _minutes(t.faulted),
        "unavailable_min": _minutes(t.unavailable),
        "unknown_min": _minutes(unknown),
        "energy_wh": f.energy_wh,
        "sessions": f.sessions,
        "mean_session_min": round(statistics.fmean(lengths), 2) if lengths else None,
        "median_session_min": round(statistics.median(lengths), 2) if lengths else None,
        "bookings": f.bookings,
        "cancellations": f.cancellations,
        "no_shows": f.no_shows,
        "disrupted": f.disrupted,
        "walk_ins": f.walk_ins,
        "delayed_bookings": f.delayed,
        # statistics.fmean of the delays: their exact sum over their number
        "mean_wait_min": round(f.wait_seconds / f.waits / 60, 2) if f.waits else None,
        "free_parking_grants": f.money.free_parking_grants if station_only else None,
        "energy_fen": f.money.energy_fen,
        "service_fen": f.money.service_fen,
        "idle_fen": f.money.idle_fen,
        "parking_fen": f.money.parking_fen if station_only else None,
        "total_fen": f.money.total_fen,
    }


# -- heat map and daily trend -------------------------------------------------------------


def heatmap(session: Session, station: m.Station, start_date: date, end_date: date,
            measure: str = "occupied", now: datetime | None = None, rollups: bool = True) -> dict:
    """The station's occupied (or charging) share of in-service time by local weekday (Mon..Sun) x hour (0..23).

    ``matrix[weekday][hour]`` is 0..1 (4 decimals), None for a cell with no
    in-service time in the range. Raises InvalidReportRange, ReportRangeTooLong,
    InvalidReportMeasure.
    """
    if measure not in MEASURES:
        raise InvalidReportMeasure(f"Unknown heat map measure {measure!r}; use one of {', '.join(MEASURES)}.")
    rng = report_range(station, start_date, end_date, now)
    if rollups:
        return _rolled_heatmap(station, rng, _summed(session, station, rng), measure)
    return _heatmap(station, rng, _intervals(session, station, rng), measure)


def _heatmap(station: m.Station, rng: ReportRange, history: dict[int, list[usage.StatusIntervals]], measure: str) -> dict:
    return _heatmap_of(station, rng, usage.hour_cells(_connector_intervals(history), rng.start, rng.end, rng.tz), measure)


def _heatmap_of(station: m.Station, rng: ReportRange, cells: list[list[usage.StateTime]], measure: str) -> dict:
    return {
        "station": station.code,
        "timezone": station.timezone,
        "start": rng.first,
        "end": rng.last,
        "measure": measure,
        "weekdays": list(WEEKDAYS),
        "hours": list(range(24)),
        "matrix": [[cell.share(measure) for cell in row] for row in cells],
    }


def heatmap_rows(report: dict) -> list[dict]:
    """A heat map as table rows: one per weekday, columns "00".."23" (for CSV)."""
    return [
        {"weekday": day, **{f"{h:02d}": value for h, value in zip(report["hours"], row)}}
        for day, row in zip(report["weekdays"], report["matrix"])
    ]


def daily_trend(session: Session, station: m.Station, start_date: date, end_date: date,
                now: datetime | None = None, rollups: bool = True) -> list[dict]:
    """Per local day of the range: energy (Wh, apportioned), sessions started, walk-ins (fast chargers),
    bookings, cancellations and no-shows (by slot start), revenue (fen, by issue day), in-service minutes,
    occupied and charging share. Each counts as in ``utilization``: the days add up to its station row.

    Days wholly after ``now`` are left out. Raises InvalidReportRange, ReportRangeTooLong.
    """
    rng = report_range(station, start_date, end_date, now)
    if rollups:
        return _rolled_trend(session, station, rng, _summed(session, station, rng, hours=False, lengths=False))
    return _daily_trend(session, station, rng, _intervals(session, station, rng))


def _daily_trend(session: Session, station: m.Station, rng: ReportRange,
                 history: dict[int, list[usage.StatusIntervals]]) -> list[dict]:
    days = rng.days()
    times = usage.day_times(_connector_intervals(history), days)
    windows = {day: (lo, hi) for day, lo, hi in days}
    energy = {day: 0 for day in windows}
    sessions = {day: 0 for day in windows}
    walk_ins = {day: 0 for day in windows}
    fast = {c.id for c in station.chargers if c.kind == "fast"}
    booked = _booked_session_ids(session, station, rng) if days else set()
    for s in _sessions(session, station, rng):
        if rng.start <= s.started_at < rng.end:
            day = s.started_at.astimezone(rng.tz).date()
            sessions[day] += 1
            walk_ins[day] += s.charger_id in fast and s.id not in booked
        if usage.metered_wh(s) is None:
            continue
        day = max(s.started_at, rng.start).astimezone(rng.tz).date()
        last = min(s.stopped_at, rng.end).astimezone(rng.tz).date()
        while day <= last:  # only the days the session touches
            if day in windows:
                energy[day] += usage.wh_between(s, *windows[day])
            day += timedelta(days=1)
    return _finish_trend(session, station, rng, days, times, energy, sessions, walk_ins)


def _finish_trend(session: Session, station: m.Station, rng: ReportRange, days: list, times: dict[date, usage.StateTime],
                  energy: dict[date, int], sessions: dict[date, int], walk_ins: dict[date, int]) -> list[dict]:
    """Bookings and revenue per day, then the trend rows, onto the times, energy, sessions and walk-ins per day."""
    windows = {day: (lo, hi) for day, lo, hi in days}
    counts = {day: {"bookings": 0, "cancellations": 0, "no_shows": 0} for day in windows}
    for b in _bookings(session, station, rng) if days else ():
        c = counts[b.slot_start.astimezone(rng.tz).date()]
        c["bookings"] += 1
        c["cancellations"] += b.status == "cancelled"
        c["no_shows"] += b.status == "no_show"
    revenue = {day: 0 for day in windows}
    for _, issued_at, money in _receipts(session, station, rng) if days else ():
        revenue[issued_at.astimezone(rng.tz).date()] += money.total_fen
    return [
        {
            "date": day,
            "energy_wh": energy[day],
            "sessions": sessions[day],
            "walk_ins": walk_ins[day],
            **counts[day],
            "revenue_fen": revenue[day],
            "in_service_min": _minutes(times[day].in_service),
            "occupied_share": times[day].share("occupied"),
            "charging_share": times[day].share("charging"),
        }
        for day, _, _ in days
    ]


# -- lounge -------------------------------------------------------------------------------


def lounge_by_hour(session: Session, station: m.Station, start_date: date, end_date: date,
                   now: datetime | None = None) -> list[dict]:
    """Per zone and local hour of day (0..23): peak head count over the range, the day it was first reached, and the time-weighted average (2 decimals).

    Hours with no time in the range (all after ``now``) have peak and average None.
    Raises InvalidReportRange, ReportRangeTooLong.
    """
    return _lounge_by_hour(session, station, report_range(station, start_date, end_date, now))


def _lounge_by_hour(session: Session, station: m.Station, rng: ReportRange) -> list[dict]:
    rows = []
    for zone in station.zones:
        peak: list[int | None] = [None] * 24
        peak_on: list[date | None] = [None] * 24
        weighted = [0.0] * 24
        covered = [ZERO] * 24
        if rng.start < rng.end:
            for h in lounge.hourly_occupancy(session, zone, rng.start, rng.end, rng.tz):
                local = h.hour.astimezone(rng.tz)
                length = min(local + HOUR, rng.end) - max(local, rng.start)
                if length <= ZERO:
                    continue
                i = local.hour
                if peak[i] is None or h.peak > peak[i]:
                    peak[i], peak_on[i] = h.peak, local.date()
                weighted[i] += h.average * length.total_seconds()
                covered[i] += length
        for i in range(24):
            rows.append({
                "zone": zone.code,
                "zone_name": zone.name,
                "capacity": zone.capacity,
                "hour": i,
                "peak": peak[i],
                "peak_on": peak_on[i],
                "average": round(weighted[i] / covered[i].total_seconds(), 2) if covered[i] else None,
            })
    return rows


# -- days: what a rollup holds, and a report summed from days ------------------------------
#
# A report over whole days equals the sum of its days: times are integer microseconds, energy
# telescopes (_wh_between of adjacent windows adds up), sessions count on their start day, heat-map
# cells are per local hour (a day boundary is an hour boundary). Only idle time crosses midnight:
# a day keeps the occupied runs touching its start and end (usage.IdleParts) and _fold_idle joins them.


def connector_days(session: Session, connector_id: int, days: Sequence[tuple[date, datetime, datetime]],
                   tz: tzinfo) -> dict[date, usage.DayFigures]:
    """A connector's times of the given day windows (ascending), reading its history once per run of adjacent days."""
    return {day: f for (_, day), f in _connector_days_many(session, {connector_id: (list(days), tz)}).items()}


@dataclass
class _Summed:
    """A range's figures summed from its connector-days (rolled up or read raw)."""

    time: dict[int, usage.StateTime]  # per charger, idle included
    energy: dict[int, int]
    sessions: dict[int, int]
    lengths: dict[int, list[int]]  # microseconds
    day_time: dict[date, usage.StateTime]
    day_energy: dict[date, int]
    day_sessions: dict[date, int]
    day_fast_sessions: dict[date, int]  # sessions started on fast chargers (walk-ins but the booked ones)
    cells: list[list[usage.StateTime]]  # weekday x hour; ``known`` holds in-service time
    rolled_up: int = 0  # connector-days read from rollups
    raw: int = 0  # connector-days read from the history


def _td(us) -> timedelta:
    return timedelta(microseconds=int(us or 0))


_KINDS = ("known", "faulted", "unavailable", "occupied", "charging")


class _Inconsistent(Exception):
    """The rollups changed between the report's statements (a rollup run committed meanwhile)."""


def _summed(session: Session, station: m.Station, rng: ReportRange, use_rollups: bool = True,
            hours: bool = True, lengths: bool = True) -> _Summed:
    """The range's per-charger and per-day figures (and, with ``hours``, the heat-map cells): clean rollups for
    whole days, the history for the rest. ``lengths`` False leaves the rolled-up days' session lengths out
    (the widest rollup read, for reports that do not show them). ``_summed_many`` of a network of one."""
    return _summed_many(session, [station], {station.id: rng}, use_rollups, per_day=True, hours=hours,
                        lengths=lengths)[station.id]


def _add_day(out: _Summed, charger_id: int, day: date, f: usage.DayFigures, fast: bool, per_day: bool = True) -> None:
    """The day's figures into the charger's and (``per_day``) the day's and the heat map's."""
    for t in (out.time[charger_id], out.day_time[day]) if per_day else (out.time[charger_id],):
        for k in _KINDS:
            setattr(t, k, getattr(t, k) + _td(getattr(f, f"{k}_us")))
    out.energy[charger_id] += f.energy_wh
    out.sessions[charger_id] += f.sessions
    out.lengths[charger_id] += f.lengths_us
    if not per_day:
        return
    out.day_energy[day] += f.energy_wh
    out.day_sessions[day] += f.sessions
    out.day_fast_sessions[day] += f.sessions if fast else 0
    row = out.cells[day.weekday()]
    for h in range(24):
        cell = row[h]
        cell.known += _td(f.hours["in_service"][h])
        cell.occupied += _td(f.hours["occupied"][h])
        cell.charging += _td(f.hours["charging"][h])


def _rolled_utilization(session: Session, station: m.Station, rng: ReportRange, summed: _Summed) -> dict:
    booked = Counter(charger_id for charger_id, _ in _booked_sessions(session, station, rng).values())
    return _finish_utilization(session, station, rng, _rolled_figures(station, summed, booked))


def _rolled_figures(station: m.Station, summed: _Summed, booked: Counter) -> dict[int, _Figures]:
    """Per charger id, the figures of ``summed``, walk-ins being the fast chargers' sessions less ``booked`` ones."""
    chargers = list(station.chargers)
    per = {c.id: _Figures(walk_ins=0 if c.kind == "fast" else None, connectors=len(c.connectors)) for c in chargers}
    for c in chargers:
        f = per[c.id]
        f.time = summed.time[c.id]
        f.energy_wh = summed.energy[c.id]
        f.sessions = summed.sessions[c.id]
        f.lengths = summed.lengths[c.id]
        if f.walk_ins is not None:
            f.walk_ins = f.sessions - booked[c.id]
    return per


def _booked_sessions(session: Session, station: m.Station, rng: ReportRange) -> dict[int, tuple[int, datetime]]:
    """The sessions started in the range that a booking checked in with: id -> (charger id, started at)."""
    return _stations_booked_sessions(session, [station.id], rng.start, rng.end)[station.id]


def _stations_booked_sessions(session: Session, station_ids: Sequence[int], start: datetime,
                              end: datetime) -> dict[int, dict[int, tuple[int, datetime]]]:
    """Per station id, ``_booked_sessions`` of the sessions started in [start, end) (one statement for all)."""
    cs = m.ChargingSession
    out: dict[int, dict[int, tuple[int, datetime]]] = {sid: {} for sid in station_ids}
    for station_id, sid, cid, at in session.execute(
        select(cs.station_id, cs.id, cs.charger_id, cs.started_at)
        .join(m.Booking, m.Booking.session_id == cs.id)
        .where(cs.station_id.in_(list(station_ids)), cs.started_at >= start, cs.started_at < end)
    ):
        out[station_id][sid] = (cid, at)
    return out


def _rolled_heatmap(station: m.Station, rng: ReportRange, summed: _Summed, measure: str) -> dict:
    return _heatmap_of(station, rng, summed.cells, measure)


def _rolled_trend(session: Session, station: m.Station, rng: ReportRange, summed: _Summed) -> list[dict]:
    days = rng.days()
    fast = {c.id for c in station.chargers if c.kind == "fast"}
    walk_ins = dict(summed.day_fast_sessions)
    for charger_id, started_at in (_booked_sessions(session, station, rng).values() if days else ()):
        if charger_id in fast:
            walk_ins[started_at.astimezone(rng.tz).date()] -= 1
    return _finish_trend(session, station, rng, days, summed.day_time, summed.day_energy, summed.day_sessions,
                         walk_ins)


# -- every report at once -------------------------------------------------------------------


def station_report(session: Session, station: m.Station, start_date: date, end_date: date,
                   measure: str = "occupied", now: datetime | None = None, rollups: bool = True) -> dict:
    """Utilization, heat map (``measure``), daily trend and lounge of one range, reading the status history once.

    Each part equals its own function's result (``utilization``, ``heatmap``,
    ``daily_trend``, ``lounge_by_hour``); a page showing them all costs one pass over
    the connectors' history instead of three. Raises InvalidReportRange,
    ReportRangeTooLong, InvalidReportMeasure. With ``rollups`` (the default) whole days that are rolled up
    and clean come from ``connector_day_rollups`` and only the rest from the history; False reads only the
    history. Both give the same figures (tests/integration/test_report_rollups.py).
    """
    if measure not in MEASURES:
        raise InvalidReportMeasure(f"Unknown heat map measure {measure!r}; use one of {', '.join(MEASURES)}.")
    rng = report_range(station, start_date, end_date, now)
    if rollups:
        summed = _summed(session, station, rng)
        return {
            "utilization": _rolled_utilization(session, station, rng, summed),
            "heatmap": _rolled_heatmap(station, rng, summed, measure),
            "trend": _rolled_trend(session, station, rng, summed),
            "lounge": _lounge_by_hour(session, station, rng),
        }
    history = _intervals(session, station, rng)
    return {
        "utilization": _utilization(session, station, rng, history),
        "heatmap": _heatmap(station, rng, history, measure),
        "trend": _daily_trend(session, station, rng, history),
        "lounge": _lounge_by_hour(session, station, rng),
    }


# -- many stations at once: the network report ------------------------------------------------
#
# The same figures as ``utilization`` for each station of a list, each over its own station-local
# dates, with a statement count that does not grow with the stations: rollups are summed by grouped
# statements over every station whose whole days span the same dates, the rest of each range (days not
# rolled up, dirty days, today) comes from the history in one read per day window for every connector
# that needs it, and bookings, receipts and booked sessions are read once per range window (stations
# in zones of one offset share it). Each part is then computed by the per-station code.

_CHUNK = 500  # ids per IN list


def _chunks(ids: Sequence[int], n: int = _CHUNK) -> Iterable[list[int]]:
    ids = list(ids)
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def network_utilization(session: Session, stations: Iterable[m.Station], start_date: date, end_date: date,
                        now: datetime | None = None, rollups: bool = True) -> dict:
    """``utilization`` of every station over local dates start_date..end_date (inclusive, each station's own
    time zone), and the network row summing them.

    ``stations`` is a list as ``utilization`` takes one (duplicates are left out, the order kept);
    ``{"start", "end", "stations": [utilization of each], "total": row}``. Each station's part equals
    ``utilization(session, station, start_date, end_date, now, rollups)``; the network row (``scope``
    "network") sums the stations' rows as a station row sums its chargers (shares from summed times,
    medians over every session). Raises InvalidReportRange, ReportRangeTooLong (a station's own
    ``max_report_days``; 400 with no station).
    """
    with _collecting_later():
        return _network_utilization(session, stations, start_date, end_date, now, rollups)


@contextmanager
def _collecting_later():
    """The cyclic garbage collector paused (reference counting still frees): a network's report allocates
    some 400,000 short-lived containers (rows, figures), and the collections they trigger traverse every
    object of the process, about a third of the report's time (2 days x 10,600 ports: 1.05 s -> 0.70 s).
    Left as it was if already paused; with threads, another report may resume it early (only slower)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _network_utilization(session: Session, stations: Iterable[m.Station], start_date: date, end_date: date,
                         now: datetime | None, rollups: bool) -> dict:
    unique: dict[int, m.Station] = {}
    for s in stations:
        unique.setdefault(s.id, s)
    check_dates(start_date, end_date, min((rules_of(s).max_report_days for s in unique.values()),
                                          default=_column_default(m.StationRules.max_report_days)))
    rngs = {s.id: report_range(s, start_date, end_date, now) for s in unique.values()}
    stations = _station_views(session, list(unique.values()))
    summed = _summed_many(session, stations, rngs, rollups)
    reads = _reads_many(session, stations, rngs)
    parts, network, span = [], _Figures(), ZERO
    for s in stations:
        rng = rngs[s.id]
        booked, counts, receipts = reads[s.id]
        per = _rolled_figures(s, summed[s.id], Counter(cid for cid, _ in booked.values()))
        total = _station_total(session, s, rng, per, counts, receipts)
        parts.append(_utilization_report(s, rng, per, total))
        _add_figures(network, total)
        for k in ("bookings", "cancellations", "no_shows", "disrupted", "waits", "wait_seconds", "delayed"):
            setattr(network, k, getattr(network, k) + getattr(total, k))
        network.money.add(total.money)
        span += (rng.end - rng.start) * total.connectors
    return {"start": start_date, "end": end_date, "stations": parts,
            "total": _row(network, "network", None, None, span=span)}


def network_rows(report: dict, chargers: bool = True) -> list[dict]:
    """The network report as one table (for CSV): per station its chargers (``chargers``) and its row, then the
    network row; each row names its station."""
    out = []
    for part in report["stations"]:
        for row in (*(part["chargers"] if chargers else ()), part["total"]):
            out.append({"station": part["station"], "timezone": part["timezone"], **row})
    out.append({"station": None, "timezone": None, **report["total"]})
    return out


def _column_default(column) -> int:
    return column.default.arg


@dataclass(slots=True)
class _ConnectorView:
    id: int


@dataclass(slots=True)
class _ChargerView:
    """What the report reads of a charger (``m.Charger``'s attributes of the same names)."""

    id: int
    code: str
    kind: str
    level: str
    connectors: list[_ConnectorView]


@dataclass(slots=True)
class _StationView:
    """What the report reads of a station and its chargers, in their order (``station.chargers`` by code, their
    connectors by number), read with one statement per 500 stations instead of 20,000 ORM objects: the per-station
    functions take it for the station."""

    id: int
    code: str
    name: str
    timezone: str
    chargers: list[_ChargerView]


def _station_views(session: Session, stations: list[m.Station]) -> list[_StationView]:
    views = {s.id: _StationView(s.id, s.code, s.name, s.timezone, []) for s in stations}
    c, k = m.Charger, m.Connector
    for chunk in _chunks(list(views)):
        chargers: dict[int, _ChargerView] = {}
        for station_id, charger_id, code, kind, level, connector_id in session.execute(
            select(c.station_id, c.id, c.code, c.kind, c.level, k.id).outerjoin(k, k.charger_id == c.id)
            .where(c.station_id.in_(chunk)).order_by(c.station_id, c.code, k.number)
        ):
            charger = chargers.get(charger_id)
            if charger is None:
                charger = chargers[charger_id] = _ChargerView(charger_id, code, kind, level, [])
                views[station_id].chargers.append(charger)
            if connector_id is not None:
                charger.connectors.append(_ConnectorView(connector_id))
    return list(views.values())


def _summed_many(session: Session, stations: list, rngs: dict[int, ReportRange], use_rollups: bool = True,
                 per_day: bool = False, hours: bool = False, lengths: bool = True) -> dict[int, _Summed]:
    """Per station id (``m.Station`` or ``_StationView``), the figures of its range per charger, with ``per_day``
    per day too, with ``hours`` also by weekday x hour; ``lengths`` False leaves the rolled-up days' session
    lengths out. Read again if a rollup run committed meanwhile; after three tries from the history alone."""
    for _ in range(3):
        try:
            return _summed_many_once(session, stations, rngs, use_rollups, per_day, hours, lengths)
        except _Inconsistent:
            continue
    return _summed_many_once(session, stations, rngs, False, per_day, hours, lengths)


def _summed_many_once(session: Session, stations: list, rngs: dict[int, ReportRange], use_rollups: bool,
                      per_day: bool, hours: bool, lengths: bool) -> dict[int, _Summed]:
    outs: dict[int, _Summed] = {}
    charger_of: dict[int, int] = {}  # connector id -> charger id
    station_of: dict[int, int] = {}  # connector id -> station id
    days_of: dict[int, list] = {}
    full_of: dict[int, list[date]] = {}
    for s in stations:
        rng = rngs[s.id]
        days_of[s.id] = rng.days()
        full_of[s.id] = usage.whole_days(days_of[s.id], rng.tz)
        day_keys = [d for d, _, _ in days_of[s.id]] if per_day else []
        outs[s.id] = _Summed(
            time={c.id: usage.StateTime() for c in s.chargers}, energy={c.id: 0 for c in s.chargers},
            sessions={c.id: 0 for c in s.chargers}, lengths={c.id: [] for c in s.chargers},
            day_time={d: usage.StateTime() for d in day_keys}, day_energy={d: 0 for d in day_keys},
            day_sessions={d: 0 for d in day_keys}, day_fast_sessions={d: 0 for d in day_keys},
            cells=[[usage.StateTime() for _ in range(24)] for _ in range(7)] if per_day else [])
        for c, k in _connectors(s):
            charger_of[k.id], station_of[k.id] = c.id, s.id
    fast = {c.id for s in stations for c in s.chargers if c.kind == "fast"}

    # Whole clean days from the rollups, a grouped read per span of whole days.
    covered: dict[int, set[date]] = {}  # connector id -> its days read (its station's full_set: every whole day)
    edges: dict[int, list[tuple[date, usage.IdleParts]]] = {}
    mid_idle: dict[int, int] = {}
    full_set: dict[int, set[date]] = {}
    if use_rollups:
        spans: dict[tuple[date, date], list] = {}
        for s in stations:
            full = full_of[s.id]
            if full and s.chargers:
                full_set[s.id] = set(full)
                spans.setdefault((full[0], full[-1]), []).append(s)
        with _work_mem(session):
            for (first, last), group in spans.items():
                for chunk in _chunks([s.id for s in group]):
                    _read_rollups_many(session, chunk, first, last, charger_of, station_of, outs, covered, full_set,
                                       edges, mid_idle, per_day, hours, lengths)

    # The rest from the history: partial days, days not rolled up, dirty days.
    todo: dict[int, tuple[list, tzinfo]] = {}
    for s in stations:
        days, tz = days_of[s.id], rngs[s.id].tz
        rest = [d for d in days if d[0] not in full_set[s.id]] if s.id in full_set else days
        for c, k in _connectors(s):
            read = covered.get(k.id)
            todo[k.id] = (days if read is None else rest if read is full_set.get(s.id)
                          else [d for d in days if d[0] not in read], tz)
    raw = _connector_days_many(session, todo, hours=hours)
    windows_of: dict[int, dict[tuple[int, date], tuple[datetime, datetime]]] = {s.id: {} for s in stations}
    for cid, (days, _) in todo.items():
        windows = windows_of[station_of[cid]]
        for day, lo, hi in days:
            windows[(cid, day)] = (lo, hi)
    merged_of = {sid: usage.merged_windows(windows.values()) for sid, windows in windows_of.items()}
    by_window: dict[tuple[datetime, datetime], list[int]] = {}
    for sid, merged in merged_of.items():
        for lo_hi in merged:
            by_window.setdefault(lo_hi, []).append(sid)
    found: dict[tuple[int, datetime, datetime], list[usage.SessionRecord]] = {}
    for (lo, hi), sids in by_window.items():
        for chunk in _chunks(sids):
            for sid, rows in _stations_sessions(session, chunk, lo, hi).items():
                found[(sid, lo, hi)] = rows
    for s in stations:
        rng, out, windows = rngs[s.id], outs[s.id], windows_of[s.id]
        seen: dict[int, usage.SessionRecord] = {}
        for lo, hi in merged_of[s.id]:
            for row in found[(s.id, lo, hi)]:
                seen[row.id] = row
        figures = {key: raw[key] for key in windows}
        usage.add_sessions(figures, windows, seen.values(), rng.tz, rng.start, rng.end)
        for (cid, day), f in figures.items():
            _add_day(out, charger_of[cid], day, f, charger_of[cid] in fast, per_day)
        out.raw = len(figures)
        for c, k in _connectors(s):
            parts = edges.get(k.id, []) + [(d, figures[(k.id, d)].idle) for d, _, _ in todo[k.id][0]]
            out.time[c.id].idle += _td(usage.fold_sparse(rng.first, parts) + mid_idle.get(k.id, 0))
    return outs


def _connector_days_many(session: Session, todo: dict[int, tuple[list, tzinfo]],
                         hours: bool = True) -> dict[tuple[int, date], usage.DayFigures]:
    """``connector_days`` of many connectors (connector id -> (day windows, time zone)), reading the history
    of every connector with the same run of adjacent days at once."""
    runs: dict[tuple[datetime, datetime], list[tuple[int, list, tzinfo]]] = {}
    for cid, (days, tz) in todo.items():
        for span in usage.adjacent_runs(days):
            runs.setdefault((span[0][1], span[-1][2]), []).append((cid, span, tz))
    out: dict[tuple[int, date], usage.DayFigures] = {}
    for (lo, hi), items in runs.items():
        histories = _status_histories(session, [cid for cid, _, _ in items], lo, hi)
        for cid, span, tz in items:
            for day, f in usage.span_day_figures(histories[cid], span, tz, hours).items():
                out[(cid, day)] = f
    return out


def _status_histories(session: Session, connector_ids: list[int], start: datetime,
                      end: datetime) -> dict[int, list[ch.StatusChange]]:
    """Per connector id, ``_status_history`` of [start, end): two statements per 500 connectors."""
    sc, earlier = m.StatusChange, aliased(m.StatusChange)

    def in_effect(column):  # of the change in effect at ``start``: an index probe per connector, as _status_history
        return (select(column).where(earlier.connector_id == m.Connector.id, earlier.at < start)
                .order_by(earlier.at.desc(), earlier.id.desc()).limit(1).correlate(m.Connector).scalar_subquery())

    out: dict[int, list[ch.StatusChange]] = {cid: [] for cid in connector_ids}
    for chunk in _chunks(connector_ids):
        for cid, at, status in session.execute(select(m.Connector.id, in_effect(earlier.at), in_effect(earlier.status))
                                               .where(m.Connector.id.in_(chunk))):
            if at is not None:
                out[cid].append(ch.StatusChange(at, status))
        for cid, at, status in session.execute(select(sc.connector_id, sc.at, sc.status).where(
                sc.connector_id.in_(chunk), sc.at >= start, sc.at < end).order_by(sc.connector_id, sc.at, sc.id)):
            out[cid].append(ch.StatusChange(at, status))
    return out


def _reads_many(session: Session, stations: list[_StationView],
                rngs: dict[int, ReportRange]) -> dict[int, tuple[dict, list, list]]:
    """Per station id, (``_booked_sessions``, ``_booking_counts``, ``_receipts``) of its range: three statements
    per range window (stations whose zones have the same offsets share one)."""
    by_window: dict[tuple[datetime, datetime], list[int]] = {}
    for s in stations:
        by_window.setdefault((rngs[s.id].start, rngs[s.id].end), []).append(s.id)
    out: dict[int, tuple[dict, list, list]] = {}
    for (start, end), sids in by_window.items():
        for chunk in _chunks(sids):
            booked = _stations_booked_sessions(session, chunk, start, end)
            counts = _stations_booking_counts(session, chunk, start, end)
            receipts = _stations_receipts(session, chunk, start, end)
            for sid in chunk:
                out[sid] = (booked[sid], counts[sid], receipts[sid])
    return out


# PostgreSQL groups a year of a network's session lengths (100 MB of text for 10,600 connectors) in a hash
# table: with the default 4 MB it spills to disk (6.3 s), with 64 MB it does not (2.1 s).
_ROLLUP_WORK_MEM = "64MB"


@contextmanager
def _work_mem(session: Session):
    """On PostgreSQL, the rollup statements run with ``_ROLLUP_WORK_MEM`` of sort and hash memory (set for the
    transaction, then set back); elsewhere nothing."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    before = session.scalar(select(func.current_setting("work_mem")))
    session.execute(select(func.set_config("work_mem", _ROLLUP_WORK_MEM, True)))
    try:
        yield
    finally:
        session.execute(select(func.set_config("work_mem", before, True)))


def _read_rollups_many(session: Session, station_ids: list[int], first: date, last: date, charger_of: dict[int, int],
                       station_of: dict[int, int], outs: dict[int, _Summed], covered: dict[int, set[date]],
                       full_set: dict[int, set[date]], edges: dict, mid_idle: dict[int, int], per_day: bool = False,
                       hours: bool = False, lengths: bool = True) -> None:
    """Sum the clean rollups of the stations whose whole days are ``first``..``last`` into ``outs``; note the
    connector-days read in ``covered``, the rows whose idle runs cross midnight in ``edges``.

    One grouped statement per connector: the sums, and the session lengths of its rows joined into one JSON text
    (a row per connector, not per connector-day: fetching a year's 3.6 million rows took 30 s at 10,600 ports);
    with ``per_day`` one grouped per station and day, with ``hours`` one per station and weekday; then only the
    rows whose idle time crosses midnight, and the days of connectors with some days not read (dirty, not rolled
    up). The later statements are checked against counts and revision sums of the same rows taken by the first;
    a rollup run committing in between makes the report read again.
    """
    r = m.ConnectorDayRollup
    where = (r.station_id.in_(station_ids), r.day >= first, r.day <= last, r.dirty == 0)
    kinds = [func.sum(getattr(r, f"{k}_us")) for k in _KINDS]
    edge = or_(r.lead > 0, r.trail)
    whole = (last - first).days + 1
    day_lengths = func.aggregate_strings(case((r.sessions > 0, cast(r.lengths_us, Text))), ",") if lengths else null()
    rows = session.execute(
        select(r.connector_id, func.count(), func.sum(r.revision), *kinds, func.sum(r.energy_wh),
               func.sum(r.sessions), func.sum(r.mid_idle_us), func.sum(case((edge, 1), else_=0)),
               func.sum(case((edge, r.revision), else_=0)), day_lengths)
        .where(*where).group_by(r.connector_id)
    ).all()
    expected = {"edges": [0, 0], "partial": [0, 0]}
    own = [0, 0]  # rows and revisions of the stations' own connectors
    partial: list[int] = []
    for cid, n, revisions, *sums, n_edges, edge_revisions, lengths_text in rows:
        expected["edges"][0] += int(n_edges)
        expected["edges"][1] += int(edge_revisions)
        if cid not in charger_of:
            continue
        own[0] += int(n)
        own[1] += int(revisions)
        out, charger_id = outs[station_of[cid]], charger_of[cid]
        t = out.time[charger_id]
        for k, v in zip(_KINDS, sums):
            setattr(t, k, getattr(t, k) + _td(v))
        out.energy[charger_id] += int(sums[5] or 0)
        out.sessions[charger_id] += int(sums[6] or 0)
        out.rolled_up += int(n)
        mid_idle[cid] = mid_idle.get(cid, 0) + int(sums[7] or 0)
        if lengths_text:
            out.lengths[charger_id] += [us for day in json.loads(f"[{lengths_text}]") for us in day]
        if n == whole:
            covered[cid] = full_set[station_of[cid]]
        else:
            partial.append(cid)
            covered[cid] = set()
            expected["partial"][0] += int(n)
            expected["partial"][1] += int(revisions)

    found = {"edges": [0, 0], "partial": [0, 0]}
    # The stations' own connectors (as ``charger_of``): a row of a connector now elsewhere is left out.
    connector = (m.Connector, m.Connector.id == r.connector_id)
    charger = (m.Charger, (m.Charger.id == m.Connector.charger_id) & (m.Charger.station_id == r.station_id))
    check = (func.count(), func.sum(r.revision))
    if per_day:
        expected["days"], found["days"] = own, [0, 0]
        fast_sessions = func.sum(case((m.Charger.kind == "fast", r.sessions), else_=0))
        for station_id, day, n, revisions, *sums in session.execute(
            select(r.station_id, r.day, *check, *kinds, func.sum(r.energy_wh), func.sum(r.sessions), fast_sessions)
            .join(*connector).join(*charger).where(*where).group_by(r.station_id, r.day)
        ):
            found["days"][0] += int(n)
            found["days"][1] += int(revisions or 0)
            out = outs[station_id]
            t = out.day_time[day]
            for k, v in zip(_KINDS, sums):
                setattr(t, k, getattr(t, k) + _td(v))
            out.day_energy[day] += int(sums[5] or 0)
            out.day_sessions[day] += int(sums[6] or 0)
            out.day_fast_sessions[day] += int(sums[7] or 0)
    if hours:
        expected["hours"], found["hours"] = own, [0, 0]
        hourly = [func.sum(getattr(r, f"{k}_h{h:02d}")) for k in m.ROLLUP_HOURLY for h in range(24)]
        for station_id, weekday, n, revisions, *sums in session.execute(
            select(r.station_id, r.weekday, *check, *hourly)
            .join(*connector).join(*charger).where(*where).group_by(r.station_id, r.weekday)
        ):
            found["hours"][0] += int(n)
            found["hours"][1] += int(revisions or 0)
            cells = outs[station_id].cells[weekday]
            for h in range(24):
                cells[h].known += _td(sums[h])
                cells[h].occupied += _td(sums[24 + h])
                cells[h].charging += _td(sums[48 + h])

    idle_cols = [getattr(r, name) for name in usage.IdleParts._fields]
    for cid, day, revision, *parts in session.execute(select(r.connector_id, r.day, r.revision, *idle_cols)
                                                      .where(*where, edge)):
        found["edges"][0] += 1
        found["edges"][1] += revision
        if cid in charger_of:
            edges.setdefault(cid, []).append((day, usage.IdleParts(*parts)._replace(mid_idle_us=0)))  # in mid_idle
    for chunk in _chunks(partial):
        for cid, day, revision in session.execute(select(r.connector_id, r.day, r.revision)
                                                  .where(*where, r.connector_id.in_(chunk))):
            found["partial"][0] += 1
            found["partial"][1] += revision
            covered[cid].add(day)
    if found != expected:
        raise _Inconsistent()


# -- CSV ----------------------------------------------------------------------------------

# A cell starting with one of these is a formula to Excel and WPS (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_csv(rows: Sequence[dict], columns: Sequence[str] | None = None, tz: tzinfo | None = None) -> bytes:
    """Rows as CSV bytes for Excel and WPS: UTF-8 with a BOM, CRLF line ends, a header of the keys (first-seen order, or ``columns``).

    Datetimes are RFC 3339 in ``tz`` (the station's; their own offset when None),
    dates ISO, None empty, booleans true/false, numbers (Decimal too) as written. Text that Excel would run as a
    formula (=, +, -, @) gets a leading apostrophe.
    """
    header = list(columns) if columns is not None else _keys(rows)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(k), tz) for k in header])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _keys(rows: Iterable[dict]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for k in row:
            seen.setdefault(k, None)
    return list(seen)


def _cell(value, tz: tzinfo | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return (value.astimezone(tz) if tz is not None else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Decimal):  # exact amounts (yuan from fen): a number, never a formula
        return format(value, "f")
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def utilization_rows(report: dict) -> list[dict]:
    """The utilization report as one table: a row per charger, then the station row (for CSV)."""
    return [*report["chargers"], report["total"]]
