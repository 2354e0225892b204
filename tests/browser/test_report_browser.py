"""The manager's reports in a real browser (Chromium through Playwright): a manager logs
in, opens a report, sees the charts drawn, changes the range, downloads a CSV, prints;
in Chinese and in English, with no CSP violation or script error.

The history is written through the services (statuses, transactions, door counts,
receipts) at the demo's small station hongkou-quyang during 16-21 November 2026, so
the driver tests on yangpu-liaoyuan see nothing of it. Screenshots go to
test-artifacts/pages/ (r*-*.png).
"""
from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from chargeapp.seed import DEMO_MANAGER
from tests.browser.conftest import ARTIFACTS, CSP_PROBE, _watched

pytestmark = pytest.mark.e2e
STATION = "hongkou-quyang"
SH = ZoneInfo("Asia/Shanghai")
SECTIONS = ("summary", "utilization", "energy", "bookings", "availability", "revenue", "heatmap", "trend", "lounge")
CHARTS = ("utilization", "energy", "bookings", "availability", "revenue", "trend", "trend-2", "lounge")


@pytest.fixture
def desk(browser):
    """A manager's desktop page (1280x900), Chinese by default; CSP violations and script errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", accept_downloads=True)
    context.add_init_script(CSP_PROBE)
    w = _watched(context)
    yield w
    w.assert_clean()
    context.close()


def at(day: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 11, day, hh, mm, tzinfo=SH)


_written = {"done": False}


def write_history(live) -> None:
    """Six days of use at hongkou-quyang, through the services (once per test session)."""
    if _written["done"]:
        return
    from chargeapp.services import charging, lounge, receipts

    now = live.clock.now()
    tx = iter(range(9100, 9200))
    with live.write() as s:
        def status(charger, st, when):
            charging.record_status(s, station_code=STATION, charger_code=charger, connector=1, status=st,
                                   at=when, now=now)

        def charge(charger, start, minutes, wh, idle=10):
            t = next(tx)
            status(charger, "Preparing", start - timedelta(minutes=2))
            charging.record_transaction(s, station_code=STATION, charger_code=charger, event="start", connector=1,
                                        transaction_id=t, id_tag="D-DEMO01", meter_wh=100_000, at=start, now=now)
            status(charger, "Charging", start)
            stop = start + timedelta(minutes=minutes)
            status(charger, "Finishing", stop)
            cs = charging.record_transaction(s, station_code=STATION, charger_code=charger, event="stop",
                                             connector=1, transaction_id=t, id_tag="D-DEMO01",
                                             meter_wh=100_000 + wh, at=stop, now=now)
            status(charger, "Available", stop + timedelta(minutes=idle))
            receipts.issue_charging_receipt(s, stop + timedelta(hours=1), cs)

        for charger in ("F1", "F2", "S01", "S02", "S03"):
            status(charger, "Available", at(16, 0))
        for day in range(16, 22):
            charge("F1", at(day, 8, 30), 40, 30_000 + 1_000 * day)
            charge("F1", at(day, 17, 30), 50, 42_000, idle=25)
            if day % 2:
                charge("F2", at(day, 12), 35, 28_000)
            charge("S01", at(day, 1), 300, 35_000, idle=60)
        status("F2", "Faulted", at(19, 20))
        status("F2", "Available", at(20, 9))
        seq = 0
        ins = outs = 0
        for day in range(16, 22):
            for hour, entered, left in ((9, 4, 0), (12, 3, 2), (15, 2, 3), (20, 0, 4)):
                seq += 1
                ins, outs = ins + entered, outs + left
                lounge.record_door_count(s, station_code=STATION, sensor_code="door-room", boot=1, seq=seq,
                                         in_total=ins, out_total=outs, at=at(day, hour), now=now)
    _written["done"] = True


def log_in(w, live, next_path: str):
    page = w.page
    page.goto(f"{live.url}/login?next={next_path}")
    page.fill("#email", DEMO_MANAGER[0])
    page.fill("#password", DEMO_MANAGER[1])
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_path.split("?")[0])))


def drawn_charts(page) -> dict:
    """Per canvas: whether Chart.js drew it (a Chart instance, a size) and how many data points it has."""
    return page.evaluate("""() => {
      const out = {};
      document.querySelectorAll('canvas[data-chart]').forEach(c => {
        const chart = window.Chart && window.Chart.getChart(c);
        out[c.id.replace('chart-', '')] = chart ? {
          points: chart.data.datasets.reduce((n, d) => n + d.data.filter(v => v !== null && v !== 0).length, 0),
          width: c.width, height: c.height } : null;
      });
      return out;
    }""")


def service_utilization(live, first: date, last: date) -> dict:
    from sqlalchemy import select

    from chargeapp.db import db
    from chargeapp.db import models as m
    from chargeapp.services import reports

    with live.app.app_context():
        station = db.session.scalar(select(m.Station).where(m.Station.code == STATION))
        return reports.utilization(db.session, station, first, last, live.clock.now())


def read_csv(download) -> list[list[str]]:
    body = open(download.path(), "rb").read()
    assert body.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))


def test_a_manager_opens_a_report_sees_the_charts_downloads_the_csv_and_prints(live, desk):
    write_history(live)
    page = desk.page
    log_in(desk, live, f"/manage/{STATION}/reports")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    assert "报表" in page.locator("h1").inner_text()
    # The default range is the last 7 full days: 15-21 November at the demo's clock (22 November).
    yesterday = live.clock.now().astimezone(SH).date() - timedelta(days=1)
    assert page.input_value("#from") == (yesterday - timedelta(days=6)).isoformat()
    assert page.input_value("#to") == yesterday.isoformat()
    page.wait_for_function("() => window.Chart && document.querySelectorAll('canvas[data-chart]').length === 8 && "
                           "[...document.querySelectorAll('canvas[data-chart]')].every(c => window.Chart.getChart(c))")
    drawn = drawn_charts(page)
    assert set(drawn) == set(CHARTS)
    for name, chart in drawn.items():
        assert chart and chart["width"] > 100 and chart["height"] > 100, name
        assert chart["points"] > 0, name
    assert page.locator("#table-heatmap td[class^=heat-]").count() == 7 * 24
    assert page.locator("#table-heatmap td.heat-none").count() < 7 * 24  # some cells have a share
    assert page.locator(".report-section .csv").count() == 9
    desk.shot("r1-report-zh")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(".report-head").screenshot(path=str(ARTIFACTS / "r1-0-head-zh.png"))
    page.locator(".report-controls").screenshot(path=str(ARTIFACTS / "r1-0-controls-zh.png"))
    for i, name in enumerate(SECTIONS, start=1):
        page.locator(f"#{name}").screenshot(path=str(ARTIFACTS / f"r1-{i}-{name}-zh.png"))

    # The submit button says it is working while the next report is worked out.
    page.evaluate("() => document.getElementById('range-form').addEventListener('submit', e => e.preventDefault())")
    page.click("#show-report")
    page.wait_for_function("() => document.getElementById('show-report').disabled")
    assert page.inner_text("#show-report") == "计算中…"
    assert page.is_visible("#report-working")

    # A preset: yesterday (Saturday 21 November).
    page.goto(f"{live.url}/manage/{STATION}/reports")
    page.click(".presets a:has-text('昨天')")
    page.wait_for_url(re.compile(rf"from={yesterday.isoformat()}&to={yesterday.isoformat()}"))
    assert page.locator(".presets a[aria-current=true]").inner_text() == "昨天"

    # Download the utilization CSV of 16-21 November: the service's numbers.
    page.goto(f"{live.url}/manage/{STATION}/reports?from=2026-11-16&to=2026-11-21")
    with page.expect_download() as info:
        page.click("#utilization a.csv")
    download = info.value
    assert download.suggested_filename == f"{STATION}-utilization-2026-11-16-2026-11-21.csv"
    rows = read_csv(download)
    assert rows[0][:6] == ["充电桩", "类型", "楼层", "在役（分钟）", "占用（分钟）", "占用（%）"]
    report = service_utilization(live, date(2026, 11, 16), date(2026, 11, 21))
    f1 = next(r for r in report["chargers"] if r["charger"] == "F1")
    row = next(r for r in rows if r[0] == "F1")
    assert row[3] == str(f1["in_service_min"]) and row[4] == str(f1["occupied_min"])
    assert Decimal(row[5]) == Decimal(str(f1["occupied_share"])) * 100
    assert f1["occupied_min"] > 0
    assert rows[-1][0] == "充电站"

    # The revenue CSV: yuan, exactly the service's fen.
    with page.expect_download() as info:
        page.click("#revenue a.csv")
    rows = read_csv(info.value)
    total = rows[-1]
    assert Decimal(total[5]) * 100 == report["total"]["total_fen"] > 0

    # Printable: no navigation, no form, the charts and tables stay.
    page.emulate_media(media="print")
    assert not page.is_visible("nav.tabs") and not page.is_visible("#range-form")
    assert page.is_visible(".print-only") and page.is_visible("#chart-utilization")
    desk.shot("r3-report-print-zh")
    page.emulate_media(media="screen")
    assert page.is_visible("#print-report")  # the Print button, shown by the script


def test_the_report_in_english_and_a_refused_range(live, desk):
    write_history(live)
    page = desk.page
    log_in(desk, live, f"/manage/{STATION}/reports")
    page.click('form.lang button[value="en"]')
    page.wait_for_selector("html[lang=en]")
    page.goto(f"{live.url}/manage/{STATION}/reports?from=2026-11-01&to=2026-11-22")
    assert "Reports" in page.locator("h1").inner_text()
    assert page.locator("#utilization h2").inner_text() == "Utilization per charger"
    assert "Sun, Nov 22" in page.inner_text("#trend")
    page.wait_for_function("() => [...document.querySelectorAll('canvas[data-chart]')]"
                           ".every(c => window.Chart && window.Chart.getChart(c))")
    assert all(c and c["points"] > 0 for c in drawn_charts(page).values())
    desk.shot("r2-report-en")
    # On a phone the sections stack and wide tables scroll sideways inside their section.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    desk.shot("r5-report-phone-en", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 900})

    with page.expect_download() as info:
        page.click("#lounge a.csv")
    rows = read_csv(info.value)
    assert rows[0] == ["Hour", "Rest corner peak (capacity 6)", "Rest corner peak day", "Rest corner average"]
    assert rows[10][0] == "09:00" and int(rows[10][1]) >= 4

    page.fill("#from", "2025-01-01")
    page.fill("#to", "2026-11-22")
    page.click("#show-report")
    page.wait_for_selector(".refusal")
    assert "A report covers at most 400 days" in page.inner_text(".refusal")
    assert page.locator("canvas").count() == 0
    desk.shot("r4-report-refused-en")
