"""GET /api/v1/reports/network: every managed station's utilization over the same local dates, and the network row.

An administrator gets every station, a manager theirs only, a driver 403; bad ranges are 422 with a code.
"""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from chargeapp.services import charging
from chargeapp.services.registry import create_user
from chargeapp.web.security import issue_token
from tests.factories import make_station

pytestmark = pytest.mark.integration
SH = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc
URL = "/api/v1/reports/network?start=2026-11-10&end=2026-11-11"


def bearer(user) -> dict:
    return {"Authorization": f"Bearer {issue_token(user)}"}


def status(session, station, code, at, value):
    charging.record_status(session, station_code=station.code, charger_code=code, connector=1, status=value, at=at,
                           received_at=at, device_ts=at, now=at)


@pytest.fixture
def users(session, clock, station, driver):
    other = make_station(session, clock.now(), code="s2", timezone="Europe/Berlin", fast=2, slow=0)
    for st, tz in ((station, SH), (other, ZoneInfo("Europe/Berlin"))):
        start = datetime(2026, 11, 10, 8, tzinfo=tz)
        status(session, st, "F1", start, "Available")
        status(session, st, "F1", start + timedelta(hours=2), "Charging")
        status(session, st, "F1", start + timedelta(hours=3), "Available")
    admin = create_user(session, email="root@example.com", password_hash="x", now=clock.now(), role="admin")
    manager = create_user(session, email="boss@example.com", password_hash="x", now=clock.now(), role="manager",
                          stations=(station,))
    idle = create_user(session, email="new@example.com", password_hash="x", now=clock.now(), role="manager")
    session.commit()
    return {"admin": admin, "manager": manager, "idle": idle, "driver": driver}


def test_an_administrator_gets_every_station_each_as_its_own_report(client, users):
    r = client.get(URL, headers=bearer(users["admin"]))
    assert r.status_code == 200, r.json
    assert (r.json["start"], r.json["end"]) == ("2026-11-10", "2026-11-11")
    assert [p["station"] for p in r.json["stations"]] == ["s1", "s2"]
    assert [p["from"] for p in r.json["stations"]] == ["2026-11-10T00:00:00+08:00", "2026-11-10T00:00:00+01:00"]
    assert all("chargers" not in p for p in r.json["stations"])
    for part in r.json["stations"]:
        own = client.get(f"/api/v1/manage/stations/{part['station']}/reports/utilization?start=2026-11-10"
                         "&end=2026-11-11", headers=bearer(users["admin"])).json
        assert part == {k: v for k, v in own.items() if k != "chargers"}
        assert part["total"]["charging_min"] == 60
    total = r.json["total"]
    assert total["scope"] == "network" and total["charging_min"] == 120
    assert total["charging_share"] == round(120 / (total["in_service_min"]), 4)

    detailed = client.get(URL + "&chargers=true", headers=bearer(users["admin"])).json
    own = client.get("/api/v1/manage/stations/s2/reports/utilization?start=2026-11-10&end=2026-11-11",
                     headers=bearer(users["admin"])).json
    assert detailed["stations"][1] == own and detailed["total"] == total


def test_a_manager_gets_their_stations_only_a_driver_403_no_token_401(client, users):
    mine = client.get(URL, headers=bearer(users["manager"]))
    assert mine.status_code == 200 and [p["station"] for p in mine.json["stations"]] == ["s1"]
    assert mine.json["total"]["charging_min"] == 60
    none = client.get(URL, headers=bearer(users["idle"]))
    assert none.status_code == 200 and none.json["stations"] == [] and none.json["total"]["sessions"] == 0
    assert client.get(URL, headers=bearer(users["driver"])).status_code == 403
    assert client.get(URL).status_code == 401


def test_csv_has_a_row_per_station_and_charger_then_the_network(client, users):
    r = client.get(URL + "&format=csv&chargers=true", headers=bearer(users["admin"]))
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"] == 'attachment; filename="network-utilization-2026-11-10-2026-11-11.csv"'
    assert r.data.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(r.data.decode("utf-8-sig"), newline="")))
    assert [(row["station"], row["scope"], row["charger"]) for row in table] == [
        ("s1", "charger", "F1"), ("s1", "charger", "F2"), ("s1", "charger", "F3"), ("s1", "charger", "S01"),
        ("s1", "charger", "S02"), ("s1", "station", ""), ("s2", "charger", "F1"), ("s2", "charger", "F2"),
        ("s2", "station", ""), ("", "network", "")]
    assert table[-1]["charging_min"] == "120.0"
    short = client.get(URL + "&format=csv", headers=bearer(users["admin"]))
    assert [row[:2] for row in csv.reader(io.StringIO(short.data.decode("utf-8-sig")))][1:] == [
        ["s1", "Asia/Shanghai"], ["s2", "Europe/Berlin"], ["", ""]]


@pytest.mark.parametrize("query, code", [
    ("from=2026-11-10&to=2026-11-09", "invalid_report_range"),
    ("from=2025-01-01&to=2026-11-10", "report_range_too_long"),
    ("from=2026-13-01&to=2026-11-10", "unprocessable_entity"),
    ("from=yesterday&to=2026-11-10", "unprocessable_entity"),
    ("to=2026-11-10", "unprocessable_entity"),
    ("from=2026-11-10", "unprocessable_entity"),
    ("from=2026-11-10&to=2026-11-10&format=xlsx", "unprocessable_entity"),
    ("from=9999-12-31&to=9999-12-31", "unprocessable_entity"),  # fields.Day: 2000-01-01 to 2099-12-31
    ("start=2026-11-10&end=2026-11-09", "invalid_report_range"),
    ("start=2026-11-10", "unprocessable_entity"),
    ("start=2026-11-10&from=2026-11-09&end=2026-11-10", "unprocessable_entity"),  # two different first days
])
def test_bad_ranges_are_422_with_a_code_and_a_message(client, users, query, code):
    for who in ("admin", "idle"):
        r = client.get(f"/api/v1/reports/network?{query}", headers=bearer(users[who]))
        assert r.status_code == 422, (who, r.json)
        assert r.json["code"] == code and r.json["message"]


def test_start_and_end_as_in_the_station_reports_and_from_and_to_as_before_give_the_same_report(client, users):
    headers = bearer(users["admin"])
    named = client.get(URL, headers=headers)
    assert named.status_code == 200, named.json
    assert client.get("/api/v1/reports/network?from=2026-11-10&to=2026-11-11", headers=headers).json == named.json
    mixed = client.get("/api/v1/reports/network?start=2026-11-10&from=2026-11-10&to=2026-11-11", headers=headers)
    assert mixed.json == named.json  # the same day twice is no conflict
    r = client.get("/api/v1/reports/network?start=2026-11-10&from=2026-11-09&end=2026-11-11", headers=headers)
    assert r.status_code == 422 and "not both" in str(r.json), r.json
