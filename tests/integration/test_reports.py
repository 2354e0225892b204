"""Managers' reports (chargeapp.services.reports) and their API, on history built directly with the models.

The station is in Asia/Shanghai (UTC+8); 10 November 2026 is a Tuesday.
"""
from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta, timezone
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.extensions import api
from chargeapp.services import reports
from chargeapp.services.registry import create_user
from chargeapp.web.api.reports import blp
from chargeapp.web.security import issue_token
from tests.conftest import T0
from tests.factories import make_driver, make_station

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc
NOV10, NOV11 = date(2026, 11, 10), date(2026, 11, 11)
_tx = count(1)


def local(day: int, hh: int, mm: int = 0) -> datetime:
    """A Shanghai wall time in November 2026."""
    return datetime(2026, 11, day, hh, mm, tzinfo=SH)


def charger(session, station, code) -> m.Charger:
    return session.scalar(select(m.Charger).where(m.Charger.station_id == station.id, m.Charger.code == code))


def statuses(session, station, code, *changes):
    """Status history of a charger's connector 1: (at, status) pairs."""
    connector = charger(session, station, code).connectors[0]
    for at, st in changes:
        session.add(m.StatusChange(connector_id=connector.id, status=st, at=at))
    session.flush()


def charging_session(session, station, code, started, stopped, wh=None, driver=None):
    c = charger(session, station, code)
    cs = m.ChargingSession(
        station_id=station.id, charger_id=c.id, connector_id=c.connectors[0].id, transaction_id=next(_tx),
        started_at=started, stopped_at=stopped, start_meter_wh=1000 if wh is not None else None,
        stop_meter_wh=1000 + wh if wh is not None else None, driver_id=driver.id if driver else None,
    )
    session.add(cs)
    session.flush()
    return cs


def booking(session, station, code, slot, status, driver, held=True, delay=0, cs=None):
    c = charger(session, station, code)
    b = m.Booking(
        driver_id=driver.id, station_id=station.id, charger_id=c.id, booked_charger_id=c.id,
        slot_start=slot, slot_end=slot + timedelta(minutes=30), status=status, created_at=slot - timedelta(hours=2),
        held_at=slot - timedelta(minutes=10) if held else None, delay_seconds=delay,
        session_id=cs.id if cs else None,
    )
    session.add(b)
    session.flush()
    return b


def receipt(session, station, issued, cs=None, kind="charging", corrects=None, details=None, stay=None, **fen):
    r = m.Receipt(
        kind=kind, station_id=station.id, session_id=cs.id if cs else None, corrects_id=corrects.id if corrects else None,
        issued_at=issued, details=details or {}, total_fen=sum(fen.values()), stay_id=stay.id if stay else None, **fen,
    )
    session.add(r)
    session.flush()
    return r


def row(report, code):
    return next(r for r in report["chargers"] if r["charger"] == code)


# -- time in states ------------------------------------------------------------------


def test_occupied_and_charging_share_of_a_charger_with_known_intervals(session, station):
    statuses(session, station, "F1",
             (local(10, 0), "Available"), (local(10, 8), "Preparing"), (local(10, 8, 10), "Charging"),
             (local(10, 9, 10), "SuspendedEV"), (local(10, 9, 30), "Finishing"), (local(10, 9, 40), "Available"))
    report = reports.utilization(session, station, NOV10, NOV10)
    f1 = row(report, "F1")
    # Occupied 08:00-09:40 = 100 min, Charging 08:10-09:10 = 60 min, of 1440 in service.
    assert (f1["in_service_min"], f1["occupied_min"], f1["charging_min"]) == (1440, 100, 60)
    assert (f1["occupied_share"], f1["charging_share"]) == (round(100 / 1440, 4), round(60 / 1440, 4))
    assert f1["idle_min"] == 30  # 09:10 (end of the last Charging) to 09:40 Available
    assert f1["unknown_min"] == 0
    # The station divides summed times: only F1 has a known history, so the same shares.
    total = report["total"]
    assert total["occupied_share"] == f1["occupied_share"] and total["in_service_min"] == 1440
    assert total["unknown_min"] == 4 * 1440  # F2, F3, S01, S02 never reported
    assert row(report, "F2")["occupied_share"] is None
    assert report["from"].isoformat() == "2026-11-10T00:00:00+08:00"
    assert report["until"].isoformat() == "2026-11-11T00:00:00+08:00"


def test_a_status_changed_before_the_range_counts_from_the_range_start(session, station):
    statuses(session, station, "F1", (local(9, 22), "Charging"), (local(10, 1), "Available"))
    f1 = row(reports.utilization(session, station, NOV10, NOV10), "F1")
    assert (f1["charging_min"], f1["in_service_min"], f1["unknown_min"]) == (60, 1440, 0)
    # On the 9th the history starts at 22:00: the 22 hours before are unknown, not in service.
    f1 = row(reports.utilization(session, station, date(2026, 11, 9), date(2026, 11, 9)), "F1")
    assert (f1["charging_min"], f1["in_service_min"], f1["unknown_min"]) == (120, 120, 1320)
    assert f1["charging_share"] == 1.0


def test_faulted_and_unavailable_time_is_not_in_service(session, station):
    statuses(session, station, "F2",
             (local(10, 0), "Available"), (local(10, 6), "Faulted"), (local(10, 12), "Available"),
             (local(10, 18), "Charging"), (local(10, 21), "Unavailable"), (local(10, 23), "Available"))
    f2 = row(reports.utilization(session, station, NOV10, NOV10), "F2")
    assert (f2["faulted_min"], f2["unavailable_min"]) == (360, 120)
    assert f2["in_service_min"] == 1440 - 360 - 120
    assert f2["charging_share"] == round(180 / 960, 4)  # 0.1875, not 180/1440


def test_idle_time_of_a_car_plugged_in_since_before_the_range(session, station):
    statuses(session, station, "F1", (local(9, 23), "Charging"), (local(9, 23, 50), "Finishing"),
             (local(10, 0, 20), "Available"))
    assert row(reports.utilization(session, station, NOV10, NOV10), "F1")["idle_min"] == 20


def test_the_day_boundary_is_shanghai_midnight_not_utc(session, station):
    # Charging 10 Nov 23:00 to 11 Nov 01:00 Shanghai (15:00-17:00 UTC, all on the 10th in UTC).
    statuses(session, station, "F1", (local(10, 0), "Available"), (local(10, 23), "Charging"),
             (local(11, 1), "Available"))
    charging_session(session, station, "F1", local(10, 23), local(11, 1), wh=10_001)
    # 11 Nov 07:30 Shanghai is 10 Nov 23:30 UTC: a session of the 11th.
    charging_session(session, station, "F1", local(11, 7, 30), local(11, 8), wh=2_000)

    day10 = row(reports.utilization(session, station, NOV10, NOV10), "F1")
    day11 = row(reports.utilization(session, station, NOV11, NOV11), "F1")
    assert (day10["charging_min"], day11["charging_min"]) == (60, 60)
    # 10,001 Wh spread evenly: half is 5,000.5 -> 5,001 (half-up) before midnight, the rest after.
    assert (day10["energy_wh"], day11["energy_wh"]) == (5_001, 5_000 + 2_000)
    # A session counts (with its full length) on the day it starts.
    assert (day10["sessions"], day10["mean_session_min"]) == (1, 120)
    assert (day11["sessions"], day11["median_session_min"]) == (1, 30)

    trend = reports.daily_trend(session, station, NOV10, NOV11)
    assert [(d["date"], d["energy_wh"], d["sessions"]) for d in trend] == [(NOV10, 5_001, 1), (NOV11, 7_000, 1)]
    assert trend[0]["charging_share"] == round(60 / 1440, 4)
    both = row(reports.utilization(session, station, NOV10, NOV11), "F1")
    assert both["energy_wh"] == 12_001  # the parts of a session add up to its total


def test_open_sessions_and_sessions_without_meter_values_add_no_energy(session, station):
    charging_session(session, station, "F1", local(10, 8), None, wh=None)
    charging_session(session, station, "F2", local(10, 8), local(10, 9), wh=None)
    f1 = row(reports.utilization(session, station, NOV10, NOV10), "F1")
    assert (f1["sessions"], f1["energy_wh"], f1["mean_session_min"]) == (1, 0, None)


# -- bookings, walk-ins, waiting ------------------------------------------------------


def test_bookings_cancellations_no_shows_walk_ins_and_waiting(session, station, clock):
    drivers = [make_driver(session, clock.now()) for _ in range(4)]
    booked = charging_session(session, station, "F1", local(10, 9, 2), local(10, 9, 40), wh=20_000)
    charging_session(session, station, "F1", local(10, 14), local(10, 14, 30), wh=15_000)  # walk-in
    late = charging_session(session, station, "F2", local(10, 12, 12), local(10, 13), wh=25_000)
    charging_session(session, station, "S01", local(10, 8), local(10, 12), wh=20_000)  # slow: not a walk-in
    booking(session, station, "F1", local(10, 9), "checked_in", drivers[0], cs=booked)
    booking(session, station, "F1", local(10, 10), "no_show", drivers[1])
    booking(session, station, "F1", local(10, 11), "cancelled", drivers[2], held=False)
    booking(session, station, "F2", local(10, 12), "checked_in", drivers[3], delay=600, cs=late)

    report = reports.utilization(session, station, NOV10, NOV10)
    f1, f2, s01, total = row(report, "F1"), row(report, "F2"), row(report, "S01"), report["total"]
    assert (f1["bookings"], f1["cancellations"], f1["no_shows"], f1["walk_ins"]) == (3, 1, 1, 1)
    assert (f1["mean_wait_min"], f1["delayed_bookings"]) == (0, 0)
    assert (f2["bookings"], f2["walk_ins"], f2["mean_wait_min"]) == (1, 0, 10)
    assert s01["walk_ins"] is None and s01["sessions"] == 1
    # Waiting: the three bookings that got a charger held waited 0, 0 and 600 s.
    assert (total["bookings"], total["walk_ins"], total["delayed_bookings"]) == (4, 1, 1)
    assert total["mean_wait_min"] == round(200 / 60, 2)
    assert total["sessions"] == 4 and total["energy_wh"] == 80_000


# -- revenue and free parking ---------------------------------------------------------


def stay(session, station, entry, exit):
    st = m.ParkingStay(station_id=station.id, plate="沪A12345", entry_at=entry, exit_at=exit)
    session.add(st)
    session.flush()
    return st


def test_revenue_by_component_with_corrections_booked_on_their_own_day(session, station):
    cs = charging_session(session, station, "F1", local(10, 9), local(10, 10), wh=30_000)
    original = receipt(session, station, local(10, 10, 10), cs, energy_fen=3227, service_fen=2400, idle_fen=300)
    receipt(session, station, local(10, 12, 10), kind="parking", stay=stay(session, station, local(10, 8, 50),
            local(10, 12)), details={"qualified": True}, parking_fen=500)
    second = stay(session, station, local(10, 15), local(10, 17, 50))
    unqualified = receipt(session, station, local(10, 18), kind="parking", stay=second, details={"qualified": False},
                          parking_fen=1000)
    earlier = charging_session(session, station, "F1", local(9, 23), local(9, 23, 30), wh=100)
    receipt(session, station, local(9, 23, 59), earlier, energy_fen=1)  # the day before, in Shanghai time
    # The next day: the manager waives the idle fee, and late telemetry qualifies the second stay.
    # A correction holds the change of each component.
    receipt(session, station, local(11, 9), cs, kind="correction", corrects=original, idle_fen=-300,
            details={"source": "manager", "pinned": ["idle_fen"]})
    receipt(session, station, local(11, 9, 5), kind="correction", corrects=unqualified, stay=second,
            details={"source": "recheck", "recomputed": {"qualified": True}}, parking_fen=-1000)

    day10 = reports.utilization(session, station, NOV10, NOV10)
    f1, total = row(day10, "F1"), day10["total"]
    assert (f1["energy_fen"], f1["service_fen"], f1["idle_fen"], f1["total_fen"]) == (3227, 2400, 300, 5927)
    assert f1["parking_fen"] is None and f1["free_parking_grants"] is None
    assert (total["parking_fen"], total["free_parking_grants"], total["total_fen"]) == (1500, 1, 7427)

    day11 = reports.utilization(session, station, NOV11, NOV11)
    f1, total = row(day11, "F1"), day11["total"]
    assert (f1["energy_fen"], f1["idle_fen"], f1["total_fen"]) == (0, -300, -300)
    assert (total["parking_fen"], total["free_parking_grants"], total["total_fen"]) == (-1000, 1, -1300)
    both = reports.utilization(session, station, NOV10, NOV11)["total"]
    assert (both["idle_fen"], both["parking_fen"], both["free_parking_grants"], both["total_fen"]) == (0, 500, 2, 6127)


# -- heat map and lounge ----------------------------------------------------------------


def test_heatmap_cell_is_the_occupied_share_of_that_weekday_hour(session, station):
    statuses(session, station, "F1", (local(10, 0), "Available"), (local(10, 8), "Charging"),
             (local(10, 8, 30), "Available"))
    statuses(session, station, "F2", (local(10, 0), "Available"))
    hm = reports.heatmap(session, station, NOV10, NOV10)
    tue, wed = hm["weekdays"].index("Tue"), hm["weekdays"].index("Wed")
    assert hm["matrix"][tue][8] == 0.25  # 30 min occupied of 2 connectors x 60 min
    assert hm["matrix"][tue][9] == 0.0
    assert hm["matrix"][wed][8] is None  # no in-service time on a Wednesday
    # Shanghai 08:00 is 00:00 UTC: the cell is the station-local hour.
    assert hm["matrix"][tue][0] == 0.0
    charging = reports.heatmap(session, station, NOV10, NOV10, measure="charging")
    assert charging["matrix"][tue][8] == 0.25
    with pytest.raises(reports.InvalidReportMeasure):
        reports.heatmap(session, station, NOV10, NOV10, measure="energy")


def test_lounge_peak_and_average_per_zone_by_hour(session, station):
    hall = session.scalar(select(m.Zone).where(m.Zone.station_id == station.id, m.Zone.code == "hall"))
    session.add_all([
        m.OccupancyChange(zone_id=hall.id, at=local(10, 8), delta=0, source="set", count_after=5),
        m.OccupancyChange(zone_id=hall.id, at=local(10, 8, 30), delta=3, source="door"),
    ])
    session.flush()
    rows = reports.lounge_by_hour(session, station, NOV10, NOV10)
    assert len(rows) == 2 * 24
    eight = next(r for r in rows if r["zone"] == "hall" and r["hour"] == 8)
    assert (eight["peak"], eight["average"], eight["peak_on"]) == (8, 6.5, NOV10)  # 5 for 30 min, 8 for 30 min
    # Over two days the 04:00 reset empties the hall: the 08:00 hour averages 6.5 and 0.
    two = reports.lounge_by_hour(session, station, NOV10, NOV11)
    eight = next(r for r in two if r["zone"] == "hall" and r["hour"] == 8)
    assert (eight["peak"], eight["average"], eight["peak_on"]) == (8, 3.25, NOV10)


# -- ranges and CSV -------------------------------------------------------------------------


def test_range_longer_than_the_station_maximum_or_reversed_is_refused(session, station):
    assert reports.report_range(station, date(2025, 1, 1), date(2025, 1, 1) + timedelta(days=399))
    with pytest.raises(reports.ReportRangeTooLong, match="at most 400 days"):
        reports.utilization(session, station, date(2025, 1, 1), date(2025, 1, 1) + timedelta(days=400))
    station.rules.max_report_days = 7
    with pytest.raises(reports.ReportRangeTooLong):
        reports.daily_trend(session, station, NOV10, NOV10 + timedelta(days=7))
    with pytest.raises(reports.InvalidReportRange, match="before it starts"):
        reports.heatmap(session, station, NOV11, NOV10)
    with pytest.raises(reports.InvalidReportRange):
        reports.report_range(station, local(10, 0), NOV11)


def test_now_cuts_a_range_that_reaches_into_the_present(session, station):
    statuses(session, station, "F1", (local(22, 0), "Available"))
    f1 = row(reports.utilization(session, station, date(2026, 11, 22), date(2026, 11, 23), now=T0), "F1")
    assert f1["in_service_min"] == 14 * 60  # T0 is 14:00 in Shanghai
    days = reports.daily_trend(session, station, date(2026, 11, 22), date(2026, 11, 23), now=T0)
    assert [d["date"] for d in days] == [date(2026, 11, 22)]


def test_csv_has_a_bom_crlf_line_ends_and_opens_as_utf8_with_chinese_names():
    rows = [
        {"zone": "茶水间", "at": datetime(2026, 11, 10, 0, 30, tzinfo=UTC), "peak": 3, "average": 1.5},
        {"zone": "=HYPERLINK(\"x\")", "at": None, "peak": None, "day": date(2026, 11, 10)},
    ]
    data = reports.to_csv(rows, tz=SH)
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == 3 and b"\n" not in data.replace(b"\r\n", b"")
    parsed = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert parsed[0] == ["zone", "at", "peak", "average", "day"]
    assert parsed[1] == ["茶水间", "2026-11-10T08:30:00+08:00", "3", "1.5", ""]
    assert parsed[2] == ["'=HYPERLINK(\"x\")", "", "", "", "2026-11-10"]
    assert reports.to_csv([], columns=["a", "b"]) == "\ufeffa,b\r\n".encode()


# -- API ---------------------------------------------------------------------------------


@pytest.fixture
def reports_api(app):
    """The reports blueprint on the test app (routes.py registers it in the real app)."""
    if "reports" not in app.blueprints:
        api.register_blueprint(blp)
    return app


def bearer(user) -> dict:
    return {"Authorization": f"Bearer {issue_token(user)}"}


@pytest.fixture
def manager(session, station, clock):
    user = create_user(session, email="boss@example.com", password_hash="x", now=clock.now(), role="manager",
                       stations=(station,))
    session.commit()
    return user


URL = "/api/v1/manage/stations/{}/reports/{}?start=2026-11-10&end=2026-11-10"


def test_api_utilization_as_json(reports_api, client, session, station, manager):
    statuses(session, station, "F1", (local(10, 0), "Available"), (local(10, 8), "Charging"),
             (local(10, 9), "Available"))
    session.commit()
    r = client.get(URL.format("s1", "utilization"), headers=bearer(manager))
    assert r.status_code == 200, r.json
    assert r.json["from"] == "2026-11-10T00:00:00+08:00" and r.json["start"] == "2026-11-10"
    f1 = next(c for c in r.json["chargers"] if c["charger"] == "F1")
    assert (f1["charging_min"], f1["charging_share"]) == (60, round(60 / 1440, 4))
    assert r.json["total"]["scope"] == "station"


@pytest.mark.parametrize("report", ["utilization", "heatmap", "trend", "lounge"])
def test_api_csv_export_of_every_table(reports_api, client, session, station, manager, report):
    hall = session.scalar(select(m.Zone).where(m.Zone.code == "hall"))
    hall.name = "一楼大厅"
    session.commit()
    r = client.get(URL.format("s1", report) + "&format=csv", headers=bearer(manager))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"].startswith(f'attachment; filename="s1-{report}')
    assert r.data.startswith(b"\xef\xbb\xbf") and r.data.endswith(b"\r\n")
    table = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"), newline="")))
    assert len(table) > 1
    if report == "lounge":
        assert table[1][:2] == ["hall", "一楼大厅"]


def test_api_scoping_other_manager_404_driver_403_admin_sees_all(reports_api, client, session, station, clock,
                                                                    manager, driver):
    other = make_station(session, clock.now(), code="s2")
    other_manager = create_user(session, email="other@example.com", password_hash="x", now=clock.now(),
                                role="manager", stations=(other,))
    admin = create_user(session, email="root@example.com", password_hash="x", now=clock.now(), role="admin")
    session.commit()
    mine = client.get(URL.format("s1", "trend"), headers=bearer(manager))
    assert mine.status_code == 200 and mine.json["days"][0]["date"] == "2026-11-10"
    hidden = client.get(URL.format("s1", "trend"), headers=bearer(other_manager))
    missing = client.get(URL.format("nowhere", "trend"), headers=bearer(other_manager))
    assert (hidden.status_code, missing.status_code) == (404, 404)
    assert hidden.json == {**missing.json, "message": "No station 's1'."}  # the same answer as a missing station
    assert client.get(URL.format("s1", "trend"), headers=bearer(driver)).status_code == 403
    assert client.get(URL.format("s1", "trend")).status_code == 401
    assert client.get(URL.format("s2", "heatmap"), headers=bearer(admin)).status_code == 200


@pytest.mark.parametrize("query, code", [
    ("start=2026-11-10&end=2026-11-09", "invalid_report_range"),
    ("start=2025-01-01&end=2026-11-10", "report_range_too_long"),
    ("start=2026-13-01&end=2026-11-10", "unprocessable_entity"),
    ("start=yesterday&end=2026-11-10", "unprocessable_entity"),
    ("end=2026-11-10", "unprocessable_entity"),
    ("start=2026-11-10&end=2026-11-10&format=xlsx", "unprocessable_entity"),
])
def test_api_bad_dates_and_ranges_are_422_with_a_message(reports_api, client, station, manager, query, code):
    r = client.get(f"/api/v1/manage/stations/s1/reports/utilization?{query}", headers=bearer(manager))
    assert r.status_code == 422
    assert r.json["code"] == code and r.json["message"]


def test_api_heatmap_measure_is_checked(reports_api, client, station, manager):
    r = client.get(URL.format("s1", "heatmap") + "&measure=charging", headers=bearer(manager))
    assert r.status_code == 200 and r.json["measure"] == "charging" and len(r.json["matrix"]) == 7
    assert client.get(URL.format("s1", "heatmap") + "&measure=x", headers=bearer(manager)).status_code == 422
