"""The manager's report pages through Flask's test client: who may see them, refused
ranges, both languages, the charts' data and every CSV equal to the service's numbers.

The station is the factories' ``s1`` (F1-F3 fast, S01-S02 slow, two zones) in
Shanghai; the clock is 2026-11-22 14:00 Shanghai (a Sunday). History is written with
the models, as in test_reports.py, on 10 and 11 November 2026 (Tuesday, Wednesday).
"""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from decimal import Decimal
from html import unescape

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.services import reports
from chargeapp.services.auth import password_hasher
from chargeapp.services.registry import create_user
from tests.factories import make_station
from tests.integration.test_reports import booking, charging_session, local, receipt, statuses, stay

pytestmark = pytest.mark.integration

PASSWORD = "manager-pass"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NOV10, NOV11 = date(2026, 11, 10), date(2026, 11, 11)
RANGE = {"from": "2026-11-10", "to": "2026-11-11"}
URL = "/manage/s1/reports"


@pytest.fixture
def app(app):
    # CSRF stays on, as in production.
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def account(session, clock, email, role, stations=()):
    user = create_user(session, email=email, password_hash=password_hasher(1, 1024, 1).hash(PASSWORD),
                       now=clock.now(), name=email.split("@")[0], role=role, stations=tuple(stations))
    session.commit()
    return user


def log_in(client, email):
    token = CSRF.search(client.get("/login").get_data(as_text=True)).group(1)
    r = client.post("/login", data={"email": email, "password": PASSWORD, "next": "/manage/", "csrf_token": token})
    assert r.status_code == 302, r.get_data(as_text=True)
    return client


@pytest.fixture
def manager(session, clock, station):
    return account(session, clock, "boss@example.com", "manager", [station])


@pytest.fixture
def boss(client, manager):
    return log_in(client, manager.email)


@pytest.fixture
def history(session, station, clock):
    """Two days of history at s1: statuses, sessions, bookings, receipts, lounge counts."""
    driver = account(session, clock, "d@example.com", "driver")
    statuses(session, station, "F1",
             (local(10, 0), "Available"), (local(10, 8), "Preparing"), (local(10, 8, 10), "Charging"),
             (local(10, 9, 10), "SuspendedEV"), (local(10, 9, 30), "Finishing"), (local(10, 9, 40), "Available"),
             (local(11, 14), "Charging"), (local(11, 15), "Available"))
    statuses(session, station, "F2", (local(10, 0), "Available"), (local(10, 6), "Faulted"),
             (local(10, 12), "Available"))
    statuses(session, station, "S01", (local(10, 0), "Available"), (local(10, 20), "Charging"),
             (local(11, 2), "Available"))
    booked = charging_session(session, station, "F1", local(10, 8, 10), local(10, 9, 10), wh=30_000)
    charging_session(session, station, "F1", local(11, 14), local(11, 15), wh=25_001)  # a walk-in
    charging_session(session, station, "S01", local(10, 20), local(11, 2), wh=40_000)
    booking(session, station, "F1", local(10, 8), "checked_in", driver, delay=300, cs=booked)
    booking(session, station, "F1", local(10, 10), "no_show", driver)
    booking(session, station, "F2", local(11, 9), "cancelled", driver, held=False)
    original = receipt(session, station, local(10, 9, 20), booked, energy_fen=3227, service_fen=2400, idle_fen=300)
    receipt(session, station, local(10, 12, 10), kind="parking", stay=stay(session, station, local(10, 7, 50),
            local(10, 12)), details={"qualified": True}, parking_fen=500)
    receipt(session, station, local(11, 9), booked, kind="correction", corrects=original, idle_fen=-300,
            details={"source": "manager", "pinned": ["idle_fen"]})
    hall = session.scalar(select(m.Zone).where(m.Zone.station_id == station.id, m.Zone.code == "hall"))
    session.add_all([
        m.OccupancyChange(zone_id=hall.id, at=local(10, 8), delta=0, source="set", count_after=5),
        m.OccupancyChange(zone_id=hall.id, at=local(10, 8, 30), delta=3, source="door"),
        m.OccupancyChange(zone_id=hall.id, at=local(10, 9), delta=-6, source="door"),
    ])
    session.commit()


def rows_of(resp) -> list[list[str]]:
    body = resp.get_data()
    assert body.startswith(b"\xef\xbb\xbf")  # UTF-8 with BOM, for Excel and WPS
    assert b"\r\n" in body
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def num(value) -> str:
    """The CSV text of a service number (empty for None)."""
    return "" if value is None else str(value)


def pct(share) -> str:
    return "" if share is None else format(Decimal(str(share)).scaleb(2), "f")


def yuan(fen) -> str:
    return "" if fen is None else format(Decimal(fen).scaleb(-2), "f")


def kwh(wh) -> str:
    return format(Decimal(wh).scaleb(-3), "f")


# -- who may see a report --------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(client, station):
    r = client.get(URL, query_string=RANGE)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/manage/s1/reports")
    r = client.get(f"{URL}/utilization.csv", query_string=RANGE)
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_a_driver_gets_403_on_the_page_and_the_csv(client, session, clock, station):
    account(session, clock, "driver@example.com", "driver")
    log_in(client, "driver@example.com")
    for path in (URL, f"{URL}/utilization.csv"):
        r = client.get(path, query_string=RANGE)
        assert r.status_code == 403, path
        assert "此页面仅供站点管理员使用" in r.get_data(as_text=True)


def test_another_managers_station_is_404_as_if_it_did_not_exist(client, session, clock, station, manager):
    other = make_station(session, clock.now(), code="s2")
    session.commit()
    account(session, clock, "other@example.com", "manager", [other])
    log_in(client, "other@example.com")
    for path in (URL, f"{URL}/utilization.csv", "/manage/nowhere/reports"):
        assert client.get(path, query_string=RANGE).status_code == 404, path
    assert client.get("/manage/s2/reports", query_string=RANGE).status_code == 200


def test_an_administrator_sees_every_station(client, session, clock, station):
    account(session, clock, "admin@example.com", "admin")
    log_in(client, "admin@example.com")
    assert client.get(URL, query_string=RANGE).status_code == 200


def test_an_unknown_table_is_404(boss):
    assert boss.get(f"{URL}/passwords.csv", query_string=RANGE).status_code == 404


# -- ranges --------------------------------------------------------------------------------


def test_without_a_range_the_page_shows_the_last_7_full_days_and_offers_presets(boss):
    html = boss.get(URL).get_data(as_text=True)
    # Today is Sunday 22 November (Shanghai): the last 7 full days are 15-21 November.
    assert 'name="from" value="2026-11-15"' in html and 'name="to" value="2026-11-21"' in html
    for first, last in (("2026-11-22", "2026-11-22"), ("2026-11-21", "2026-11-21"), ("2026-10-23", "2026-11-21"),
                        ("2026-11-01", "2026-11-22"), ("2026-10-01", "2026-10-31")):
        assert f"from={first}&amp;to={last}" in html, (first, last)
    assert re.search(r'from=2026-11-15&amp;to=2026-11-21"\s*aria-current="true"', html)


def test_dates_that_are_not_dates_are_a_400_with_the_form_and_a_message(boss):
    r = boss.get(URL, query_string={"from": "yesterday", "to": "2026-11-11", "lang": "en"})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "Dates are written YYYY-MM-DD." in html and 'id="range-form"' in html
    assert "<canvas" not in html


def test_a_range_ending_before_it_starts_is_422_with_a_message(boss):
    r = boss.get(URL, query_string={"from": "2026-11-11", "to": "2026-11-10", "lang": "en"})
    assert r.status_code == 422
    assert "The range ends (2026-11-10) before it starts (2026-11-11)." in r.get_data(as_text=True)


def test_a_range_longer_than_the_station_allows_is_422_in_both_languages_and_for_the_csv(boss):
    first = date(2026, 11, 22) - timedelta(days=400)  # 401 days up to today; the default maximum is 400
    query = {"from": first.isoformat(), "to": "2026-11-22"}
    r = boss.get(URL, query_string={**query, "lang": "en"})
    assert r.status_code == 422
    assert "A report covers at most 400 days; this range is 401 days." in r.get_data(as_text=True)
    r = boss.get(URL, query_string={**query, "lang": "zh_Hans"})
    assert r.status_code == 422
    assert "400" in r.get_data(as_text=True) and "401" in r.get_data(as_text=True)
    assert boss.get(f"{URL}/trend.csv", query_string=query).status_code == 422
    # The longest allowed range is answered.
    assert boss.get(URL, query_string={"from": (first + timedelta(days=1)).isoformat(), "to": "2026-11-22"}
                    ).status_code == 200


def test_presets_and_csv_links_keep_the_heat_map_measure_and_a_lang_given_in_the_url(boss):
    html = boss.get(URL, query_string={**RANGE, "measure": "charging", "lang": "en"}).get_data(as_text=True)
    assert "/manage/s1/reports?measure=charging&amp;lang=en&amp;from=2026-11-21&amp;to=2026-11-21" in html
    assert "/manage/s1/reports/heatmap.csv?from=2026-11-10&amp;to=2026-11-11&amp;lang=en&amp;measure=charging" in html
    assert '<option value="charging" selected>' in html


def test_one_date_alone_is_a_report_of_that_day(boss, history):
    html = boss.get(URL, query_string={"from": "2026-11-10", "lang": "en"}).get_data(as_text=True)
    assert 'name="to" value="2026-11-10"' in html


# -- the page ------------------------------------------------------------------------------


def charts(html: str) -> dict[str, dict]:
    return {name: json.loads(unescape(spec)) for name, spec in
            re.findall(r'<canvas id="chart-([\w-]+)"[^>]*data-chart=\'([^\']*)\'', html)}


def test_the_page_has_every_section_with_a_chart_and_a_csv_link(boss, history, session, station):
    r = boss.get(URL, query_string={**RANGE, "lang": "en"})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    for name in ("summary", "utilization", "energy", "bookings", "availability", "revenue", "heatmap", "trend",
                 "lounge"):
        assert f'id="{name}"' in html, name
        assert f"/manage/s1/reports/{name}.csv?" in html, name
    drawn = charts(html)
    assert set(drawn) == {"utilization", "energy", "bookings", "availability", "revenue", "trend", "trend-2", "lounge"}
    # The charts carry the service's numbers.
    report = reports.utilization(session, station, NOV10, NOV11)
    f1 = next(r for r in report["chargers"] if r["charger"] == "F1")
    util = drawn["utilization"]
    assert util["labels"] == ["F1", "F2", "F3", "S01", "S02"]
    assert util["datasets"][0]["data"][0] == round(f1["occupied_share"] * 100, 2)
    assert drawn["revenue"]["datasets"][0]["data"] == [32.27, 24.0, 0.0, 5.0]
    trend = reports.daily_trend(session, station, NOV10, NOV11)
    assert drawn["trend"]["datasets"][0]["data"] == [d["energy_wh"] / 1000 for d in trend]
    assert drawn["trend-2"]["datasets"][3]["data"] == [64.27, -3.0]  # revenue per day, yuan
    # The heat map is a table of classed cells: Tuesday 08:00 at F1 was occupied.
    hm = reports.heatmap(session, station, NOV10, NOV11)
    tue8 = hm["matrix"][1][8]
    assert tue8 and f'class="heat-{round(tue8 * 10)}" title="Tue 08:00' in html
    # Scripts are files; no inline script or style.
    assert "<script>" not in html and "style=" not in html
    assert 'src="/static/vendor/chartjs-4.6.1/chart.umd.min.js' in html and 'src="/static/js/reports.js' in html
    assert 'media="print"' in html and 'id="print-report"' in html
    # The station's tabs of the manager dashboard, with this page among them.
    assert 'href="/manage/s1/reports"' in html and 'href="/manage/s1/chargers"' in html


def test_both_languages_render(boss, history):
    zh = boss.get(URL, query_string={**RANGE, "lang": "zh_Hans"})
    en = boss.get(URL, query_string={**RANGE, "lang": "en"})
    assert zh.status_code == en.status_code == 200
    zh_html, en_html = zh.get_data(as_text=True), en.get_data(as_text=True)
    assert '<html lang="zh-Hans">' in zh_html and '<html lang="en">' in en_html
    assert "Utilization per charger" in en_html and "Lounge occupancy by hour" in en_html
    assert "Utilization per charger" not in zh_html and "Lounge occupancy by hour" not in zh_html
    assert "报表" in zh_html and "11月10日" in zh_html
    assert "Nov 10" in en_html


def test_the_page_and_csv_of_a_range_reaching_into_today_stop_at_now(boss, session, station, clock):
    statuses(session, station, "F3", (local(22, 0), "Available"), (local(22, 13), "Charging"))
    session.commit()
    r = boss.get(f"{URL}/utilization.csv", query_string={"from": "2026-11-22", "to": "2026-11-22", "lang": "en"})
    rows = rows_of(r)
    f3 = next(row for row in rows if row[0] == "F3")
    assert f3[3] == "840.0"  # in service 00:00-14:00, not the whole day
    assert f3[7] == pct(round(60 / 840, 4))


# -- CSV: the service's numbers --------------------------------------------------------------


def test_the_utilization_csv_is_the_services_numbers(boss, history, session, station):
    r = boss.get(f"{URL}/utilization.csv", query_string={**RANGE, "lang": "en"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"] == 'attachment; filename="s1-utilization-2026-11-10-2026-11-11.csv"'
    assert r.headers["Cache-Control"] == "private, no-store"
    rows = rows_of(r)
    assert rows[0] == ["Charger", "Kind", "Level", "In service (min)", "Occupied (min)", "Occupied (%)",
                       "Charging (min)", "Charging (%)"]
    report = reports.utilization(session, station, NOV10, NOV11)
    expected = [[c["charger"], c["kind"], c["level"], num(c["in_service_min"]), num(c["occupied_min"]),
                 pct(c["occupied_share"]), num(c["charging_min"]), pct(c["charging_share"])]
                for c in report["chargers"]]
    t = report["total"]
    expected.append(["Station", "", "", num(t["in_service_min"]), num(t["occupied_min"]), pct(t["occupied_share"]),
                     num(t["charging_min"]), pct(t["charging_share"])])
    assert rows[1:] == expected
    # F1 on the 10th and 11th: occupied 08:00-09:40 and 14:00-15:00, of 2 x 1440 in service.
    assert rows[1][4] == "160.0" and rows[1][5] == pct(round(160 / 2880, 4))


def test_energy_bookings_availability_and_revenue_csvs_are_the_services_numbers(boss, history, session, station):
    report = reports.utilization(session, station, NOV10, NOV11)
    every = [*report["chargers"], report["total"]]

    rows = rows_of(boss.get(f"{URL}/energy.csv", query_string={**RANGE, "lang": "en"}))
    assert rows[0] == ["Charger", "Energy (kWh)", "Sessions", "Mean session (min)", "Median session (min)"]
    assert [r[1:] for r in rows[1:]] == [[kwh(c["energy_wh"]), num(c["sessions"]), num(c["mean_session_min"]),
                                          num(c["median_session_min"])] for c in every]
    assert rows[-1][1] == "95.001"  # 30,000 + 25,001 + 40,000 Wh

    rows = rows_of(boss.get(f"{URL}/bookings.csv", query_string={**RANGE, "lang": "en"}))
    fast = [c for c in report["chargers"] if c["kind"] == "fast"] + [report["total"]]
    assert [r[1:] for r in rows[1:]] == [
        [num(c[k]) for k in ("bookings", "cancellations", "no_shows", "disrupted", "walk_ins", "delayed_bookings",
                             "mean_wait_min")] for c in fast]
    assert rows[1][1:6] == ["2", "0", "1", "0", "1"]  # F1: 2 bookings, a no-show, a walk-in

    rows = rows_of(boss.get(f"{URL}/availability.csv", query_string={**RANGE, "lang": "en"}))
    assert [r[1:] for r in rows[1:]] == [
        [num(c[k]) for k in ("idle_min", "faulted_min", "unavailable_min", "unknown_min")] for c in every]
    assert rows[2][2] == "360.0"  # F2 faulted 06:00-12:00

    rows = rows_of(boss.get(f"{URL}/revenue.csv", query_string={**RANGE, "lang": "en"}))
    assert rows[0] == ["Charger", "Energy (yuan)", "Service (yuan)", "Idle fee (yuan)", "Parking (yuan)",
                       "Total (yuan)", "Free-parking grants"]
    assert [r[1:] for r in rows[1:]] == [
        [yuan(c["energy_fen"]), yuan(c["service_fen"]), yuan(c["idle_fen"]), yuan(c["parking_fen"]),
         yuan(c["total_fen"]), num(c["free_parking_grants"])] for c in every]
    assert rows[-1] == ["Station", "32.27", "24.00", "0.00", "5.00", "61.27", "1"]
    # The correction on the 11th alone: a negative amount is a number, not an escaped formula.
    rows = rows_of(boss.get(f"{URL}/revenue.csv", query_string={"from": "2026-11-11", "to": "2026-11-11",
                                                                 "lang": "en"}))
    assert rows[1][3] == "-3.00"


def test_summary_heatmap_trend_and_lounge_csvs_are_the_services_numbers(boss, history, session, station):
    t = reports.utilization(session, station, NOV10, NOV11)["total"]
    rows = rows_of(boss.get(f"{URL}/summary.csv", query_string={**RANGE, "lang": "en"}))
    summary = dict(rows[1:])
    assert summary["Occupied share of in-service time"] == pct(t["occupied_share"])
    assert summary["Energy (kWh)"] == kwh(t["energy_wh"])
    assert summary["No-shows"] == "1" and summary["Walk-ins (fast chargers)"] == "1"
    assert summary["Mean wait for a held fast charger (min)"] == num(t["mean_wait_min"])
    assert summary["Revenue (yuan)"] == yuan(t["total_fen"]) == "61.27"
    assert summary["Free-parking grants"] == "1"

    for measure in ("occupied", "charging"):
        r = boss.get(f"{URL}/heatmap.csv", query_string={**RANGE, "measure": measure, "lang": "en"})
        assert f"heatmap-{measure}-2026-11-10-2026-11-11.csv" in r.headers["Content-Disposition"]
        rows = rows_of(r)
        hm = reports.heatmap(session, station, NOV10, NOV11, measure)
        assert rows[0] == ["Weekday", *(f"{h:02d}" for h in range(24))]
        assert [r[0] for r in rows[1:]] == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        assert [r[1:] for r in rows[1:]] == [[pct(v) for v in day] for day in hm["matrix"]]

    rows = rows_of(boss.get(f"{URL}/trend.csv", query_string={**RANGE, "lang": "en"}))
    trend = reports.daily_trend(session, station, NOV10, NOV11)
    assert rows[0] == ["Date", "Energy (kWh)", "Sessions", "Walk-ins", "Bookings", "Cancellations", "No-shows",
                       "Revenue (yuan)", "In service (min)", "Occupied (%)", "Charging (%)"]
    assert rows[1:] == [[d["date"].isoformat(), kwh(d["energy_wh"]), num(d["sessions"]), num(d["walk_ins"]),
                         num(d["bookings"]), num(d["cancellations"]), num(d["no_shows"]), yuan(d["revenue_fen"]),
                         num(d["in_service_min"]), pct(d["occupied_share"]), pct(d["charging_share"])] for d in trend]
    # 10 Nov: F1's booked charge and a no-show, ¥59.27 + ¥5 parking; 11 Nov: a walk-in, a cancellation, -¥3 idle fee.
    assert [r[3:8] for r in rows[1:]] == [["0", "2", "0", "1", "64.27"], ["1", "1", "1", "0", "-3.00"]]

    rows = rows_of(boss.get(f"{URL}/lounge.csv", query_string={**RANGE, "lang": "en"}))
    assert rows[0][:4] == ["Hour", "Hall peak (capacity 20)", "Hall peak day", "Hall average"]
    hours = reports.lounge_by_hour(session, station, NOV10, NOV11)
    hall = {h["hour"]: h for h in hours if h["zone"] == "hall"}
    tea = {h["hour"]: h for h in hours if h["zone"] == "tea"}
    assert len(rows) == 25
    for i, r in enumerate(rows[1:]):
        assert r == [f"{i:02d}:00", num(hall[i]["peak"]), hall[i]["peak_on"].isoformat() if hall[i]["peak_on"] else "",
                     num(hall[i]["average"]), num(tea[i]["peak"]),
                     tea[i]["peak_on"].isoformat() if tea[i]["peak_on"] else "", num(tea[i]["average"])]
    assert rows[9][1] == "8"  # 08:30-09:00 on the 10th: 5 + 3


def test_the_chinese_csv_has_chinese_headers_and_the_same_numbers(boss, history):
    en = rows_of(boss.get(f"{URL}/energy.csv", query_string={**RANGE, "lang": "en"}))
    zh = rows_of(boss.get(f"{URL}/energy.csv", query_string={**RANGE, "lang": "zh_Hans"}))
    assert zh[0] != en[0] and zh[0][0] == "充电桩"
    assert [r[1:] for r in zh[1:]] == [r[1:] for r in en[1:]]


def test_a_range_in_the_future_or_today_renders_with_what_there_is(boss, history):
    r = boss.get(URL, query_string={"from": "2026-12-01", "to": "2026-12-07", "lang": "en"})
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "Nothing in this range." in html  # the daily trend has no day yet
    rows = rows_of(boss.get(f"{URL}/trend.csv", query_string={"from": "2026-12-01", "to": "2026-12-07"}))
    assert len(rows) == 1  # the header alone
    r = boss.get(URL, query_string={"from": "2026-11-22", "to": "2026-11-22"})
    assert r.status_code == 200
