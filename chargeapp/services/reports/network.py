"""The network report: ``utilization`` of every station of a list, each over its own station-local dates,
and the network row summing them, with a statement count that does not grow with the stations.

Rollups are summed by grouped statements over every station whose whole days span the same dates, the rest
of each range comes from the history in one read per day window for every connector that needs it
(reports/days.py), and bookings, receipts and booked sessions are read once per range window (stations in
zones of one offset share it). Each part is then computed by the per-station code (reports/station.py), so
a station's part equals its own report. Costs: docs/performance.md ("Reports").
"""
from __future__ import annotations

import gc
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.services.common import rules_of
from chargeapp.services.reports import history
from chargeapp.services.reports import station as station_reports
from chargeapp.services.reports.dates import ReportRange, check_dates, report_range
from chargeapp.services.reports.days import summed_days_many

ZERO = timedelta()


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
    stations = station_views(session, list(unique.values()))
    summed = summed_days_many(session, stations, rngs, rollups)
    reads = reads_many(session, stations, rngs)
    parts, network, span = [], station_reports.Figures(), ZERO
    for s in stations:
        rng = rngs[s.id]
        booked, counts, receipts = reads[s.id]
        per = station_reports.rolled_figures(s, summed[s.id], Counter(cid for cid, _ in booked.values()))
        total = station_reports.station_total(session, s, rng, per, counts, receipts)
        parts.append(station_reports.utilization_report(s, rng, per, total))
        station_reports.add_figures(network, total)
        for k in ("bookings", "cancellations", "no_shows", "disrupted", "waits", "wait_seconds", "delayed"):
            setattr(network, k, getattr(network, k) + getattr(total, k))
        network.money.add(total.money)
        span += (rng.end - rng.start) * total.connectors
    return {"start": start_date, "end": end_date, "stations": parts,
            "total": station_reports.utilization_row(network, "network", None, None, span=span)}


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


def station_views(session: Session, stations: list[m.Station]) -> list[_StationView]:
    """The stations as views (their order kept), one statement per 500 stations."""
    views = {s.id: _StationView(s.id, s.code, s.name, s.timezone, []) for s in stations}
    c, k = m.Charger, m.Connector
    for chunk in history.chunks(list(views)):
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


def reads_many(session: Session, stations: list[_StationView],
               rngs: dict[int, ReportRange]) -> dict[int, tuple[dict, list, list]]:
    """Per station id, (``booked_sessions``, ``booking_counts``, ``receipts``) of its range: three statements
    per range window (stations whose zones have the same offsets share one)."""
    by_window: dict[tuple[datetime, datetime], list[int]] = {}
    for s in stations:
        by_window.setdefault((rngs[s.id].start, rngs[s.id].end), []).append(s.id)
    out: dict[int, tuple[dict, list, list]] = {}
    for (start, end), sids in by_window.items():
        for chunk in history.chunks(sids):
            booked = history.stations_booked_sessions(session, chunk, start, end)
            counts = history.stations_booking_counts(session, chunk, start, end)
            receipts = history.stations_receipts(session, chunk, start, end)
            for sid in chunk:
                out[sid] = (booked[sid], counts[sid], receipts[sid])
    return out
