"""services.reports.station_report (every report of a range from one read of the history),
the heat map and daily trend counted per slot rather than per piece of every interval
(checked against the obvious way on zones with a clock change and a half-hour offset),
and CSV cells of exact decimals.
"""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.domain import charger as ch
from chargeapp.domain import usage
from chargeapp.services import reports
from chargeapp.services.reports import history as report_history
from tests.factories import make_station
from tests.factories import make_driver
from tests.integration.test_reports import (  # noqa: F401  (reports_api, manager: fixtures)
    bearer, booking, charging_session, local, manager, receipt, reports_api, statuses,
)

pytestmark = pytest.mark.integration
UTC = timezone.utc
STATES = ["Available", "Preparing", "Charging", "SuspendedEV", "Finishing", "Faulted", "Unavailable"]


def random_history(session, station, tz: ZoneInfo, first: date, days: int, seed: int) -> None:
    """Status changes at random minutes on every connector, starting before the range."""
    rnd = random.Random(seed)
    start = datetime.combine(first, datetime.min.time(), tzinfo=tz) - timedelta(hours=5)
    for c in station.chargers:
        t, changes = start, []
        while t < start + timedelta(days=days + 1):
            changes.append((t.astimezone(UTC), rnd.choice(STATES)))
            t += timedelta(minutes=rnd.choice([7, 45, 95, 300, 1500, 4000]))
        statuses(session, station, c.code, *changes)


def slow_heatmap_and_trend(session, station, first: date, last: date, now=None):
    """The obvious way: every interval cut at each local hour and local midnight with astimezone."""
    rng = reports.report_range(station, first, last, now)
    cells = [[usage.StateTime() for _ in range(24)] for _ in range(7)]
    days = {day: usage.StateTime() for day, _, _ in rng.days()}
    for connectors in report_history.station_intervals(session, station, rng).values():
        for intervals in connectors:
            for status, iv in intervals:
                t = iv.start
                while t < iv.end:
                    loc = t.astimezone(rng.tz)
                    e = min(loc.replace(minute=0, second=0, microsecond=0).astimezone(UTC) + timedelta(hours=1),
                            iv.end)
                    cells[loc.weekday()][loc.hour].count(status, e - t)
                    days[loc.date()].count(status, e - t)
                    t = e
    return ([[c.share("occupied") for c in row] for row in cells],
            [(d, t.in_service, t.share("charging")) for d, t in days.items()])


@pytest.mark.parametrize("tz_name, first, last", [
    ("America/New_York", date(2026, 10, 25), date(2026, 11, 7)),  # clocks go back on 1 November
    ("Europe/Berlin", date(2026, 3, 22), date(2026, 4, 2)),  # clocks go forward on 29 March
    ("Asia/Kolkata", date(2026, 11, 1), date(2026, 11, 10)),  # UTC+05:30
    ("Asia/Shanghai", date(2026, 11, 1), date(2026, 11, 22)),  # into today, cut at now (14:00)
])
def test_heatmap_and_trend_equal_cutting_every_interval_at_local_hours(session, clock, tz_name, first, last):
    station = make_station(session, clock.now(), code="tz", timezone=tz_name)
    random_history(session, station, ZoneInfo(tz_name), first, (last - first).days + 1, seed=len(tz_name))
    now = clock.now()
    matrix, days = slow_heatmap_and_trend(session, station, first, last, now)
    assert reports.heatmap(session, station, first, last, now=now)["matrix"] == matrix
    trend = reports.daily_trend(session, station, first, last, now)
    assert [(d["date"], d["in_service_min"], d["charging_share"]) for d in trend] == [
        (day, usage.minutes(in_service), share) for day, in_service, share in days]
    assert any(v for row in matrix for v in row if v)  # the history is not all idle


def test_a_charge_over_several_days_fills_every_hour_it_covers(session, station):
    statuses(session, station, "F1", (local(9, 12), "Available"), (local(10, 6, 30), "Charging"),
             (local(12, 18, 15), "Available"))
    hm = reports.heatmap(session, station, date(2026, 11, 10), date(2026, 11, 12), measure="charging")
    tue, wed, thu = 1, 2, 3
    assert hm["matrix"][tue][5] == 0.0 and hm["matrix"][tue][6] == 0.5 and hm["matrix"][tue][7] == 1.0
    assert all(v == 1.0 for v in hm["matrix"][wed])
    assert hm["matrix"][thu][17] == 1.0 and hm["matrix"][thu][18] == 0.25 and hm["matrix"][thu][19] == 0.0


def test_station_report_is_each_report_from_one_read(session, station, clock, monkeypatch):
    random_history(session, station, ZoneInfo("Asia/Shanghai"), date(2026, 11, 1), 22, seed=7)
    charging_session(session, station, "F1", local(10, 8), local(10, 9, 30), wh=30_000)
    hall = session.scalar(select(m.Zone).where(m.Zone.station_id == station.id, m.Zone.code == "hall"))
    session.add(m.OccupancyChange(zone_id=hall.id, at=local(10, 8), delta=0, source="set", count_after=4))
    session.flush()
    first, last, now = date(2026, 11, 1), date(2026, 11, 22), clock.now()

    reads = []
    real = report_history.status_histories

    def counted(*args):
        reads.extend(args[1])
        return real(*args)

    monkeypatch.setattr(report_history, "status_histories", counted)
    every = reports.station_report(session, station, first, last, "charging", now)
    monkeypatch.undo()
    connectors = [k.id for c in station.chargers for k in c.connectors]
    assert sorted(reads) == sorted(connectors)  # each connector's history read once

    assert every["utilization"] == reports.utilization(session, station, first, last, now)
    assert every["heatmap"] == reports.heatmap(session, station, first, last, "charging", now)
    assert every["trend"] == reports.daily_trend(session, station, first, last, now)
    assert every["lounge"] == reports.lounge_by_hour(session, station, first, last, now)
    with pytest.raises(reports.InvalidReportMeasure):
        reports.station_report(session, station, first, last, "energy", now)
    with pytest.raises(reports.ReportRangeTooLong):
        reports.station_report(session, station, date(2025, 1, 1), last, "occupied", now)


def test_a_range_wholly_in_the_future_has_no_days_and_empty_cells(session, station, clock):
    every = reports.station_report(session, station, date(2026, 12, 1), date(2026, 12, 3), now=clock.now())
    assert every["trend"] == []
    assert all(v is None for row in every["heatmap"]["matrix"] for v in row)


def test_csv_writes_exact_decimals_as_numbers_even_negative_ones():
    body = reports.to_csv([{"yuan": Decimal("-3.00"), "kwh": Decimal(25001).scaleb(-3), "pct": Decimal("0.0420").scaleb(2),
                            "text": "-3"}])
    text = body.decode("utf-8-sig")
    assert text == "yuan,kwh,pct,text\r\n-3.00,25.001,4.20,'-3\r\n"


def test_status_intervals_module_is_what_the_slots_count():
    # The slots rely on the intervals of a connector being ordered and disjoint.
    t0 = datetime(2026, 11, 10, tzinfo=UTC)
    history = [ch.StatusChange(t0, "Available"), ch.StatusChange(t0 + timedelta(hours=2), "Charging")]
    ivs = ch.status_intervals(history, t0, t0 + timedelta(hours=5))
    assert all(a[1].end <= b[1].start for a, b in zip(ivs, ivs[1:]))


def test_the_daily_trend_counts_bookings_walk_ins_and_revenue_per_day_adding_up_to_the_station(session, station,
                                                                                               clock):
    drivers = [make_driver(session, clock.now()) for _ in range(3)]
    booked = charging_session(session, station, "F1", local(10, 9, 2), local(10, 9, 40), wh=20_000)
    walk_in = charging_session(session, station, "F2", local(10, 23, 30), local(11, 0, 30), wh=10_000)
    charging_session(session, station, "S01", local(11, 8), local(11, 12), wh=20_000)  # slow: not a walk-in
    booking(session, station, "F1", local(10, 9), "checked_in", drivers[0], cs=booked)
    booking(session, station, "F1", local(10, 23, 30), "no_show", drivers[1])
    booking(session, station, "F2", local(11, 0), "cancelled", drivers[2], held=False)
    first = receipt(session, station, local(10, 23, 59), booked, energy_fen=1000, service_fen=500)
    receipt(session, station, local(11, 0, 40), walk_in, energy_fen=700)
    receipt(session, station, local(11, 9), booked, kind="correction", corrects=first, service_fen=-500)
    session.flush()

    days = reports.daily_trend(session, station, date(2026, 11, 10), date(2026, 11, 11))
    assert [(d["walk_ins"], d["bookings"], d["cancellations"], d["no_shows"], d["revenue_fen"]) for d in days] == [
        (1, 2, 0, 1, 1500), (0, 1, 1, 0, 200)]
    total = reports.utilization(session, station, date(2026, 11, 10), date(2026, 11, 11))["total"]
    for key, total_key in (("walk_ins", "walk_ins"), ("bookings", "bookings"), ("cancellations", "cancellations"),
                           ("no_shows", "no_shows"), ("revenue_fen", "total_fen"), ("sessions", "sessions"),
                           ("energy_wh", "energy_wh")):
        assert sum(d[key] for d in days) == total[total_key], key


def test_the_api_trend_has_the_per_day_counts_and_revenue_in_json_and_csv(reports_api, client, session, station,
                                                                         manager, clock):
    driver = make_driver(session, clock.now())
    cs = charging_session(session, station, "F1", local(10, 9), local(10, 10), wh=5_000)
    booking(session, station, "F2", local(10, 12), "no_show", driver)
    receipt(session, station, local(10, 10, 5), cs, energy_fen=1234)
    session.commit()
    r = client.get("/api/v1/manage/stations/s1/reports/trend?start=2026-11-10&end=2026-11-10", headers=bearer(manager))
    assert r.status_code == 200
    day = r.json["days"][0]
    assert (day["walk_ins"], day["bookings"], day["no_shows"], day["cancellations"], day["revenue_fen"]) == (
        1, 1, 1, 0, 1234)
    r = client.get("/api/v1/manage/stations/s1/reports/trend?start=2026-11-10&end=2026-11-10&format=csv",
                   headers=bearer(manager))
    header, row = r.data.decode("utf-8-sig").splitlines()
    assert header.split(",")[:8] == ["date", "energy_wh", "sessions", "walk_ins", "bookings", "cancellations",
                                     "no_shows", "revenue_fen"]
    assert row.split(",")[3:8] == ["1", "1", "0", "1", "1234"]
