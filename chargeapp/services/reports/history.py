"""What the reports read of the recorded history: status changes, charging sessions, bookings, receipts.

Every query is bounded by a window (the range, a day run), so last month's report costs the same next
year; nothing here writes or reads the clock. The ``stations_*`` reads serve many stations with one
statement; the single-station reads are those of a list of one. How each record counts is in
docs/rules.md ("Reports"); the choices made here:

- A booking counts on the charger holding it or, with none, the charger assigned at booking.
- A receipt counts on its issue day; a correction holds the change (delta) of each amount
  (services/receipts.py), so it is simply added and ``superseded`` is ignored. A parking receipt grants
  free parking when its ``details["qualified"]`` is true; a recheck correction that flips it
  (``details["recomputed"]["qualified"]``) adds +1 or -1.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Iterable, NamedTuple, Sequence

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session, aliased

from chargeapp.db import models as m
from chargeapp.domain import charger as ch
from chargeapp.domain import usage
from chargeapp.services.reports.dates import ReportRange

CHUNK = 500  # ids per IN list


def chunks(ids: Sequence[int], n: int = CHUNK) -> Iterable[list[int]]:
    """The ids in lists of at most ``n``."""
    ids = list(ids)
    for i in range(0, len(ids), n):
        yield ids[i:i + n]


def connectors(station: m.Station) -> list[tuple[m.Charger, m.Connector]]:
    """(charger, connector) of every connector of the station, in the station's order."""
    return [(c, k) for c in station.chargers for k in c.connectors]


# -- status changes --------------------------------------------------------------------------


def status_history(session: Session, connector_id: int, start: datetime, end: datetime) -> list[ch.StatusChange]:
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


def status_histories(session: Session, connector_ids: list[int], start: datetime,
                     end: datetime) -> dict[int, list[ch.StatusChange]]:
    """Per connector id, ``status_history`` of [start, end): two statements per 500 connectors."""
    sc, earlier = m.StatusChange, aliased(m.StatusChange)

    def in_effect(column):  # of the change in effect at ``start``: an index probe per connector, as status_history
        return (select(column).where(earlier.connector_id == m.Connector.id, earlier.at < start)
                .order_by(earlier.at.desc(), earlier.id.desc()).limit(1).correlate(m.Connector).scalar_subquery())

    out: dict[int, list[ch.StatusChange]] = {cid: [] for cid in connector_ids}
    for chunk in chunks(connector_ids):
        for cid, at, status in session.execute(select(m.Connector.id, in_effect(earlier.at), in_effect(earlier.status))
                                               .where(m.Connector.id.in_(chunk))):
            if at is not None:
                out[cid].append(ch.StatusChange(at, status))
        for cid, at, status in session.execute(select(sc.connector_id, sc.at, sc.status).where(
                sc.connector_id.in_(chunk), sc.at >= start, sc.at < end).order_by(sc.connector_id, sc.at, sc.id)):
            out[cid].append(ch.StatusChange(at, status))
    return out


def station_intervals(session: Session, station: m.Station, rng: ReportRange) -> dict[int, list[usage.StatusIntervals]]:
    """Per charger id, each connector's status intervals inside the range."""
    out: dict[int, list] = {c.id: [] for c in station.chargers}
    for charger, connector in connectors(station):
        if rng.start < rng.end:
            history = status_history(session, connector.id, rng.start, rng.end)
            out[charger.id].append(ch.status_intervals(history, rng.start, rng.end))
        else:
            out[charger.id].append([])
    return out


def connector_days(session: Session, connector_id: int, days: Sequence[usage.DayWindow],
                   tz: tzinfo) -> dict[date, usage.DayFigures]:
    """A connector's times of the given day windows (ascending), reading its history once per run of adjacent days."""
    return {day: f for (_, day), f in connector_days_many(session, {connector_id: (list(days), tz)}).items()}


def connector_days_many(session: Session, todo: dict[int, tuple[list[usage.DayWindow], tzinfo]],
                        hours: bool = True) -> dict[tuple[int, date], usage.DayFigures]:
    """``connector_days`` of many connectors (connector id -> (day windows, time zone)), reading the history
    of every connector with the same run of adjacent days at once."""
    runs: dict[tuple[datetime, datetime], list[tuple[int, list, tzinfo]]] = {}
    for cid, (days, tz) in todo.items():
        for span in usage.adjacent_runs(days):
            runs.setdefault((span[0][1], span[-1][2]), []).append((cid, span, tz))
    out: dict[tuple[int, date], usage.DayFigures] = {}
    for (lo, hi), items in runs.items():
        histories = status_histories(session, [cid for cid, _, _ in items], lo, hi)
        for cid, span, tz in items:
            for day, f in usage.span_day_figures(histories[cid], span, tz, hours).items():
                out[(cid, day)] = f
    return out


# -- sessions ---------------------------------------------------------------------------------


def sessions_between(session: Session, station_id: int, start: datetime, end: datetime) -> list[usage.SessionRecord]:
    """The station's sessions with a start that overlap [start, end) (UTC; a zero-length one at ``start`` included)."""
    return stations_sessions(session, [station_id], start, end)[station_id]


def stations_sessions(session: Session, station_ids: Sequence[int], start: datetime,
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


def booked_session_ids(session: Session, station: m.Station, rng: ReportRange) -> set[int]:
    """Ids of the sessions started in the range that a booking checked in with."""
    cs = m.ChargingSession
    return set(session.scalars(
        select(m.Booking.session_id)
        .join(cs, cs.id == m.Booking.session_id)
        .where(cs.station_id == station.id, cs.started_at >= rng.start, cs.started_at < rng.end)
    ))


def booked_sessions(session: Session, station: m.Station, rng: ReportRange) -> dict[int, tuple[int, datetime]]:
    """The sessions started in the range that a booking checked in with: id -> (charger id, started at)."""
    return stations_booked_sessions(session, [station.id], rng.start, rng.end)[station.id]


def stations_booked_sessions(session: Session, station_ids: Sequence[int], start: datetime,
                             end: datetime) -> dict[int, dict[int, tuple[int, datetime]]]:
    """Per station id, ``booked_sessions`` of the sessions started in [start, end) (one statement for all)."""
    cs = m.ChargingSession
    out: dict[int, dict[int, tuple[int, datetime]]] = {sid: {} for sid in station_ids}
    for station_id, sid, cid, at in session.execute(
        select(cs.station_id, cs.id, cs.charger_id, cs.started_at)
        .join(m.Booking, m.Booking.session_id == cs.id)
        .where(cs.station_id.in_(list(station_ids)), cs.started_at >= start, cs.started_at < end)
    ):
        out[station_id][sid] = (cid, at)
    return out


# -- bookings ---------------------------------------------------------------------------------


class BookingRow(NamedTuple):
    charger_id: int
    status: str
    held: bool
    delay_seconds: int
    slot_start: datetime


def bookings(session: Session, station: m.Station, rng: ReportRange) -> list[BookingRow]:
    """Bookings whose slot starts in the range (the (station_id, slot_start) index)."""
    b = m.Booking
    rows = session.execute(
        select(func.coalesce(b.charger_id, b.booked_charger_id), b.status, b.held_at, b.delay_seconds, b.slot_start)
        .where(b.station_id == station.id, b.slot_start >= rng.start, b.slot_start < rng.end)
    )
    return [BookingRow(cid, status, held_at is not None, delay or 0, slot)
            for cid, status, held_at, delay, slot in rows]


def booking_counts(session: Session, station: m.Station, rng: ReportRange) -> list[tuple]:
    """Per charger and status, of the bookings whose slot starts in the range: (charger id, status, bookings,
    held, their delay seconds summed, held with a delay), summed by the database."""
    return stations_booking_counts(session, [station.id], rng.start, rng.end)[station.id]


def stations_booking_counts(session: Session, station_ids: Sequence[int], start: datetime,
                            end: datetime) -> dict[int, list[tuple]]:
    """Per station id, ``booking_counts`` of the slots starting in [start, end) (one statement for all)."""
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


# -- receipts ---------------------------------------------------------------------------------

MONEY = ("energy_fen", "service_fen", "idle_fen", "parking_fen", "total_fen")


@dataclass
class Money:
    """Amounts of receipts (fen) and the free-parking grants they make."""

    energy_fen: int = 0
    service_fen: int = 0
    idle_fen: int = 0
    parking_fen: int = 0
    total_fen: int = 0
    free_parking_grants: int = 0

    def add(self, other: "Money") -> None:
        for k in (*MONEY, "free_parking_grants"):
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


def receipts(session: Session, station: m.Station, rng: ReportRange) -> list[tuple[int | None, datetime, Money]]:
    """(charger id or None, issued at, amounts) of each receipt issued in the range; a correction's amounts are its deltas.

    Free-parking grants: +1 for a parking receipt that qualified; a correction that
    changes the grant adds +1 or -1 (only corrections of the range walk their chain).
    """
    return stations_receipts(session, [station.id], rng.start, rng.end)[station.id]


def stations_receipts(session: Session, station_ids: Sequence[int], start: datetime,
                      end: datetime) -> dict[int, list[tuple[int | None, datetime, Money]]]:
    """Per station id, ``receipts`` of the receipts issued in [start, end) (one statement for all)."""
    r, cs = m.Receipt, m.ChargingSession
    rows = session.execute(
        select(r.station_id, cs.charger_id, r.issued_at, r.kind, r.stay_id, r.corrects_id, r.details,
               *(getattr(r, k) for k in MONEY))
        .outerjoin(cs, cs.id == r.session_id)
        .where(r.station_id.in_(list(station_ids)), r.issued_at >= start, r.issued_at < end)
    )
    out: dict[int, list] = {sid: [] for sid in station_ids}
    for station_id, charger_id, issued_at, kind, stay_id, corrects_id, details, *amounts in rows:
        money = Money(*(a or 0 for a in amounts))
        if kind == "parking":
            money.free_parking_grants = int(bool(_qualified(details)))
        elif kind == "correction" and stay_id is not None:
            now_qualified = _qualified(details)
            if now_qualified is not None:
                money.free_parking_grants = int(now_qualified) - int(_qualified_before(session, corrects_id))
        out[station_id].append((charger_id, issued_at, money))
    return out
