"""One station's reports over a range: utilization per charger and for the station, the weekday x hour heat
map, the daily trend, the lounge by hour, and all of them at once (``station_report``).

Figures come from the days (reports/days.py: rollups where whole and clean, else the history); with
``rollups=False`` from the history alone, which gives the same figures. What each figure counts is in
docs/rules.md ("Reports"); the choices made here:

- Shares divide summed times (a station's are its chargers' times summed), never a mean of shares.
- Sessions count, and their lengths are averaged, in the range they start in (the full length, even past
  the range end); open sessions count but have no length yet.
- Walk-ins are counted on fast chargers only (None on slow ones: walk-in by design).
"""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain import usage
from chargeapp.domain.errors import InvalidRequest
from chargeapp.services import lounge
from chargeapp.services.reports import history
from chargeapp.services.reports.dates import ReportRange, report_range
from chargeapp.services.reports.days import Summed, summed_days

ZERO = timedelta()
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MEASURES = ("occupied", "charging")
ByCharger = dict[int, list[usage.StatusIntervals]]  # per charger id, each connector's status intervals in the range


class InvalidReportMeasure(InvalidRequest):
    """A heat map shows the "occupied" or the "charging" share."""

    code = "invalid_report_measure"


def _connector_intervals(by_charger: ByCharger) -> list[usage.StatusIntervals]:
    return [intervals for connectors in by_charger.values() for intervals in connectors]


# -- utilization ------------------------------------------------------------------------


@dataclass
class Figures:
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
    money: history.Money = field(default_factory=history.Money)
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
        return _rolled_utilization(session, station, rng, summed_days(session, station, rng, hours=False))
    return _utilization(session, station, rng, history.station_intervals(session, station, rng))


def _utilization(session: Session, station: m.Station, rng: ReportRange, by_charger: ByCharger) -> dict:
    chargers = list(station.chargers)
    per = {c.id: Figures(walk_ins=0 if c.kind == "fast" else None, connectors=len(c.connectors)) for c in chargers}
    for charger_id, connectors in by_charger.items():
        for intervals in connectors:
            per[charger_id].time.add(usage.connector_time(intervals, rng.start))

    booked = history.booked_session_ids(session, station, rng)
    for s in history.sessions_between(session, station.id, rng.start, rng.end):
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


def _finish_utilization(session: Session, station: m.Station, rng: ReportRange, per: dict[int, Figures],
                        counts: list[tuple] | None = None, receipts: list[tuple] | None = None) -> dict:
    """Bookings, waits and money per charger, then the station row, onto the times, energy and sessions in ``per``.

    ``counts`` and ``receipts`` (``_booking_counts``, ``_receipts``) are read here unless given."""
    return utilization_report(station, rng, per, station_total(session, station, rng, per, counts, receipts))


def station_total(session: Session, station: m.Station, rng: ReportRange, per: dict[int, Figures],
                   counts: list[tuple] | None = None, receipts: list[tuple] | None = None) -> Figures:
    """Adds bookings, waits and money to ``per``; returns the station's figures (``per`` summed, money of any charger)."""
    total = Figures()
    if counts is None:
        counts = history.booking_counts(session, station, rng)
    if receipts is None:
        receipts = history.receipts(session, station, rng)
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
        add_figures(total, f)
    return total


def add_figures(total: Figures, f: Figures) -> None:
    """Times, energy, sessions, lengths, connectors and walk-ins of ``f`` into ``total`` (bookings and money are not)."""
    total.time.add(f.time)
    total.energy_wh += f.energy_wh
    total.sessions += f.sessions
    total.lengths += f.lengths
    total.connectors += f.connectors
    if f.walk_ins is not None:
        total.walk_ins += f.walk_ins


def utilization_report(station: m.Station, rng: ReportRange, per: dict[int, Figures], total: Figures) -> dict:
    """The utilization report of ``per`` (charger id -> figures) and the station's ``total``."""
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
        "chargers": [utilization_row(per[c.id], "charger", c, rng) for c in chargers],
        "total": utilization_row(total, "station", None, rng),
    }


def utilization_row(f: Figures, scope: str, charger: m.Charger | None, rng: ReportRange | None,
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
        "in_service_min": usage.minutes(t.in_service),
        "occupied_min": usage.minutes(t.occupied),
        "charging_min": usage.minutes(t.charging),
        "occupied_share": t.share("occupied"),
        "charging_share": t.share("charging"),
        "idle_min": usage.minutes(t.idle),
        "faulted_min": usage.minutes(t.faulted),
        "unavailable_min": usage.minutes(t.unavailable),
        "unknown_min": usage.minutes(unknown),
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
        return _rolled_heatmap(station, rng, summed_days(session, station, rng), measure)
    return _heatmap(station, rng, history.station_intervals(session, station, rng), measure)


def _heatmap(station: m.Station, rng: ReportRange, by_charger: ByCharger, measure: str) -> dict:
    cells = usage.hour_cells(_connector_intervals(by_charger), rng.start, rng.end, rng.tz)
    return _heatmap_of(station, rng, cells, measure)


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


def daily_trend(session: Session, station: m.Station, start_date: date, end_date: date,
                now: datetime | None = None, rollups: bool = True) -> list[dict]:
    """Per local day of the range: energy (Wh, apportioned), sessions started, walk-ins (fast chargers),
    bookings, cancellations and no-shows (by slot start), revenue (fen, by issue day), in-service minutes,
    occupied and charging share. Each counts as in ``utilization``: the days add up to its station row.

    Days wholly after ``now`` are left out. Raises InvalidReportRange, ReportRangeTooLong.
    """
    rng = report_range(station, start_date, end_date, now)
    if rollups:
        return _rolled_trend(session, station, rng, summed_days(session, station, rng, hours=False, lengths=False))
    return _daily_trend(session, station, rng, history.station_intervals(session, station, rng))


def _daily_trend(session: Session, station: m.Station, rng: ReportRange,
                 by_charger: ByCharger) -> list[dict]:
    days = rng.days()
    times = usage.day_times(_connector_intervals(by_charger), days)
    windows = {day: (lo, hi) for day, lo, hi in days}
    energy = {day: 0 for day in windows}
    sessions = {day: 0 for day in windows}
    walk_ins = {day: 0 for day in windows}
    fast = {c.id for c in station.chargers if c.kind == "fast"}
    booked = history.booked_session_ids(session, station, rng) if days else set()
    for s in history.sessions_between(session, station.id, rng.start, rng.end):
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
    for b in history.bookings(session, station, rng) if days else ():
        c = counts[b.slot_start.astimezone(rng.tz).date()]
        c["bookings"] += 1
        c["cancellations"] += b.status == "cancelled"
        c["no_shows"] += b.status == "no_show"
    revenue = {day: 0 for day in windows}
    for _, issued_at, money in history.receipts(session, station, rng) if days else ():
        revenue[issued_at.astimezone(rng.tz).date()] += money.total_fen
    return [
        {
            "date": day,
            "energy_wh": energy[day],
            "sessions": sessions[day],
            "walk_ins": walk_ins[day],
            **counts[day],
            "revenue_fen": revenue[day],
            "in_service_min": usage.minutes(times[day].in_service),
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


# -- from summed days (rollups and history) --------------------------------------------------


def _rolled_utilization(session: Session, station: m.Station, rng: ReportRange, summed: Summed) -> dict:
    booked = Counter(charger_id for charger_id, _ in history.booked_sessions(session, station, rng).values())
    return _finish_utilization(session, station, rng, rolled_figures(station, summed, booked))


def rolled_figures(station: m.Station, summed: Summed, booked: Counter) -> dict[int, Figures]:
    """Per charger id, the figures of ``summed``, walk-ins being the fast chargers' sessions less ``booked`` ones."""
    chargers = list(station.chargers)
    per = {c.id: Figures(walk_ins=0 if c.kind == "fast" else None, connectors=len(c.connectors)) for c in chargers}
    for c in chargers:
        f = per[c.id]
        f.time = summed.time[c.id]
        f.energy_wh = summed.energy[c.id]
        f.sessions = summed.sessions[c.id]
        f.lengths = summed.lengths[c.id]
        if f.walk_ins is not None:
            f.walk_ins = f.sessions - booked[c.id]
    return per


def _rolled_heatmap(station: m.Station, rng: ReportRange, summed: Summed, measure: str) -> dict:
    return _heatmap_of(station, rng, summed.cells, measure)


def _rolled_trend(session: Session, station: m.Station, rng: ReportRange, summed: Summed) -> list[dict]:
    days = rng.days()
    fast = {c.id for c in station.chargers if c.kind == "fast"}
    walk_ins = dict(summed.day_fast_sessions)
    for charger_id, started_at in (history.booked_sessions(session, station, rng).values() if days else ()):
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
        summed = summed_days(session, station, rng)
        return {
            "utilization": _rolled_utilization(session, station, rng, summed),
            "heatmap": _rolled_heatmap(station, rng, summed, measure),
            "trend": _rolled_trend(session, station, rng, summed),
            "lounge": _lounge_by_hour(session, station, rng),
        }
    by_charger = history.station_intervals(session, station, rng)
    return {
        "utilization": _utilization(session, station, rng, by_charger),
        "heatmap": _heatmap(station, rng, by_charger, measure),
        "trend": _daily_trend(session, station, rng, by_charger),
        "lounge": _lounge_by_hour(session, station, rng),
    }
