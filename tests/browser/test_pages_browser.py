"""The pages in a real browser (Chromium through Playwright), as drivers and a lounge TV see them."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest

from chargeapp.seed import DEMO_DRIVER

pytestmark = pytest.mark.e2e
STATION = "yangpu-liaoyuan"


def _log_in(w, live, next_path: str = "/stations"):
    page = w.page
    page.goto(f"{live.url}/login?next={next_path}")
    page.fill("#email", DEMO_DRIVER[0])
    page.fill("#password", DEMO_DRIVER[1])
    page.click("form.stack button[type=submit]")


def test_driver_on_a_phone_finds_the_station_by_district_books_and_cancels(live, phone):
    page = phone.page
    page.goto(f"{live.url}/stations")
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    # The map is drawn from /static (Leaflet) with a marker per station, although no
    # tile can load here (no internet): it says so and the list stays usable.
    page.wait_for_selector("#map.map-on .leaflet-marker-icon")
    assert page.locator(".leaflet-marker-icon").count() == 3
    page.wait_for_selector("#map.map-offline .map-note", timeout=8000)
    phone.shot("01-finder-zh-phone")

    page.select_option("#district", "杨浦区")  # submits by itself
    page.wait_for_url(re.compile(r"district="))
    cards = page.locator(".station-card")
    assert cards.count() == 2
    phone.shot("02-finder-district-zh-phone")

    page.click(f'.station-card[data-code="{STATION}"] a')  # tap 1: the station
    page.wait_for_url(re.compile(rf"/stations/{STATION}$"))
    assert page.locator(".tiles .tile").count() >= 5
    phone.shot("03-station-zh-phone")

    page.locator("a.slot").first.click()  # tap 2: a slot (logging in on the way)
    page.wait_for_url(re.compile(r"/login"))
    phone.shot("04-login-zh-phone")
    page.fill("#email", DEMO_DRIVER[0])
    page.fill("#password", DEMO_DRIVER[1])
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(rf"/stations/{STATION}/book\?slot="))
    phone.shot("05-confirm-zh-phone")

    page.click("#confirm-booking")  # tap 3: confirm
    page.wait_for_url(re.compile(r"/bookings/\d+$"))
    assert page.locator(".flash-ok").count() == 1
    assert page.locator(".charger-code").inner_text() == "F1"
    countdown = page.locator(".countdown")
    first = countdown.inner_text()
    assert re.fullmatch(r"\d+:\d\d(:\d\d)?", first)
    page.wait_for_function("t => document.querySelector('.countdown').textContent !== t", arg=first, timeout=3000)
    phone.shot("06-booking-zh-phone")

    page.click("#cancel-booking")  # a step that asks first (no script needed)
    page.wait_for_selector("#confirm-cancel")
    phone.shot("07a-cancel-step-zh-phone")
    page.click("#confirm-cancel")
    page.wait_for_selector(".flash-ok")
    assert "免费" in page.locator(".flash-ok").inner_text()
    assert page.locator("#cancel-booking").count() == 0
    phone.shot("07-cancelled-zh-phone")

    page.click('nav.tabs a[href="/notifications"]')
    assert page.locator(".note").count() >= 2
    phone.shot("08-notifications-zh-phone")
    page.click('nav.tabs a[href="/charging"]')
    page.wait_for_selector("h1")
    phone.shot("09-charging-zh-phone")


def test_lounge_board_changes_within_2_seconds_of_a_status_published_to_the_broker(live, tv, station_over_mqtt):
    """Issue 4: charger -> Mosquitto -> bridge -> database -> board stream -> Chromium, timed from the publish."""
    page = tv.page
    page.goto(f"{live.url}/board/{STATION}")
    page.wait_for_selector("#live.live")
    tile = '#fast-tiles .btile[data-code="F2"]'
    assert "st-free" in page.locator(tile).get_attribute("class")
    before = int(page.locator("#fast-free").inner_text())
    time.sleep(1.2)  # the stream's first snapshot is in; the next change must be a new one
    f2 = station_over_mqtt.charger("F2")

    live.clock.advance(seconds=1)
    sent = f2.publish_status("Charging")
    page.wait_for_selector(f"{tile}.st-charging", timeout=2000)
    charging_after = time.monotonic() - sent
    assert charging_after < 2.0
    assert int(page.locator("#fast-free").inner_text()) == before - 1
    assert page.locator(f"{tile} .btile-state").inner_text() == "充电中"
    tv.shot("20-board-zh-tv", full_page=False)

    live.clock.advance(seconds=1)
    sent = f2.publish_status("Available")
    page.wait_for_selector(f"{tile}.st-free", timeout=2000)
    free_after = time.monotonic() - sent
    assert free_after < 2.0
    assert int(page.locator("#fast-free").inner_text()) == before
    metrics = station_over_mqtt.bridge.metrics  # applied as sent: device time valid on the app's clock
    assert metrics.value("chargeapp_bridge_messages_applied_total", {"kind": "status"}) == 2
    assert metrics.value("chargeapp_bridge_skewed_timestamps_total") == 0
    print(f"board latency from publish: Charging {charging_after:.3f} s, Available {free_after:.3f} s")


def test_lounge_board_says_stale_when_the_stream_goes_quiet_and_recovers_by_itself(live, tv):
    config = live.app.config
    config["CHARGEAPP_BOARD_HEARTBEAT_SECONDS"] = 0.5  # stale after 3 quiet heartbeats + 2 s = 3 s
    config["CHARGEAPP_BOARD_STREAM_SECONDS"] = 1  # short streams: the browser reconnects every ~3 s
    page = tv.page
    try:
        page.goto(f"{live.url}/board/{STATION}")
        page.wait_for_selector("#live.live")
        # From now on every stream ends at once without an event (a server that answers
        # but sends nothing): the board must say its figures are stale.
        config["CHARGEAPP_BOARD_STREAM_SECONDS"] = 0
        page.wait_for_selector("#live.stale", timeout=8000)
        assert page.locator("#board.stale").count() == 1
        tv.shot("21-board-stale-zh-tv", full_page=False)
        config["CHARGEAPP_BOARD_STREAM_SECONDS"] = 30
        page.wait_for_selector("#live.live", timeout=8000)  # it reconnected by itself
    finally:
        config["CHARGEAPP_BOARD_HEARTBEAT_SECONDS"] = 5.0
        config["CHARGEAPP_BOARD_STREAM_SECONDS"] = 30


def _box(page, selector: str) -> dict:
    box = page.locator(selector).bounding_box()
    assert box is not None, f"{selector} is not drawn"
    return box


def test_lounge_board_fills_a_1920x1080_tv_with_a_legend_and_a_qr_code(live, tv_1080):
    page = tv_1080.page
    page.goto(f"{live.url}/board/{STATION}")
    page.wait_for_selector("#live.live")
    tv_1080.shot("22-board-zh-1080", full_page=False)
    width, height = 1920, 1080
    # Nothing runs off the screen (a TV cannot scroll), and the board reaches its bottom and both sides.
    assert page.evaluate("document.documentElement.scrollHeight") <= height
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    chargers, lounge = _box(page, ".board-chargers"), _box(page, ".board-lounge")
    slow, qr = _box(page, "#slow-tiles"), _box(page, ".board-qr")
    assert chargers["x"] < 0.05 * width and lounge["x"] + lounge["width"] > 0.95 * width
    assert chargers["x"] + chargers["width"] < lounge["x"]  # side by side, not stacked
    assert slow["y"] + slow["height"] > 0.9 * height  # the chargers grow to the bottom: no empty half
    assert qr["y"] + qr["height"] > 0.9 * height and qr["y"] + qr["height"] <= height
    fast = _box(page, '#fast-tiles .btile[data-code="F1"]')
    assert fast["height"] > 0.15 * height  # a fast charger is readable across the room
    # The QR code is drawn (an SVG image, decoded by the browser), large enough for a phone to read from a seat.
    img = page.locator(".board-qr img")
    assert img.evaluate("i => i.complete && i.naturalWidth > 0")
    assert _box(page, ".board-qr img")["width"] >= 150
    # The slow chargers' colours have a key, each swatch the colour of the tiles it stands for.
    assert page.locator(".legend li").count() == 6
    assert page.locator(".legend").inner_text().split("\n")[0].strip() == "空闲"
    swatch = page.locator(".swatch.st-free").evaluate("e => getComputedStyle(e).backgroundColor")
    tile = page.locator('#slow-tiles .btile[data-code="S01"]').evaluate("e => getComputedStyle(e).backgroundColor")
    assert swatch == tile
    legend, slow_head = _box(page, ".legend"), _box(page, ".board-slow-head h2")
    assert legend["y"] < slow["y"] and legend["y"] + legend["height"] > slow_head["y"]  # beside or under its heading
    # English: the same layout, every word in English.
    page.goto(f"{live.url}/board/{STATION}?lang=en")
    page.wait_for_selector("#live.live")
    assert page.evaluate("document.documentElement.scrollHeight") <= height
    assert "Scan to book a fast charger" in page.locator(".board-qr").inner_text()
    assert "Plugged in, not charging" in page.locator(".legend").inner_text()
    tv_1080.shot("23-board-en-1080", full_page=False)


def test_lounge_board_on_a_phone_is_one_column_that_fits_its_width(live, phone):
    page = phone.page
    page.goto(f"{live.url}/board/{STATION}")
    page.wait_for_selector("#live.live")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    chargers, lounge = _box(page, ".board-chargers"), _box(page, ".board-lounge")
    assert lounge["y"] >= chargers["y"] + chargers["height"]  # stacked, no overlap
    slow = _box(page, "#slow-tiles")
    assert _box(page, ".legend")["y"] + _box(page, ".legend")["height"] <= slow["y"]
    phone.shot("24-board-zh-phone")


PAGES = [
    ("finder", "/stations", {"zh_Hans": "找快充桩", "en": "Find a fast charger"}),
    ("station", f"/stations/{STATION}", {"zh_Hans": "预约快充时段", "en": "Book a fast-charge slot"}),
    ("charger", f"/stations/{STATION}/chargers/F3", {"zh_Hans": "充电桩 F3", "en": "Charger F3"}),
    ("bookings", "/bookings", {"zh_Hans": "我的预约", "en": "My bookings"}),
    ("charging", "/charging", {"zh_Hans": "\n免费停车至 16:10\n", "en": "\nParking free until 16:10\n"}),
    ("notifications", "/notifications", {"zh_Hans": "消息", "en": "Messages"}),
    ("register", "/register", {"zh_Hans": "注册司机账号", "en": "Create a driver account"}),
    ("not-found", "/bookings/999999", {"zh_Hans": "没有这个预约", "en": "No such booking"}),
]


def _a_stay_with_a_charge_and_a_receipt(live):
    """At 15:30: the demo driver's car in since 14:10 (the plate is theirs since the 14:00 seed);
    F3 charged 14:30-14:50 (receipt issued), S01 charging since 15:20."""
    from chargeapp.services import charging, gates, receipts

    now = live.clock.advance(minutes=90)
    t = now.replace(hour=6, minute=10, second=0, microsecond=0)  # 14:10 Shanghai
    minute = timedelta(minutes=1)
    with live.write() as s:
        gates.record_gate_passage(s, station_code=STATION, gate_code="gate-in", plate="沪A12345", direction="in",
                                  at=t, now=now)
        charging.record_transaction(s, station_code=STATION, charger_code="F3", event="start", connector=1,
                                    transaction_id=501, id_tag="D-DEMO01", meter_wh=1000, at=t + 20 * minute, now=now)
        charging.record_status(s, station_code=STATION, charger_code="F3", connector=1, status="Charging",
                               at=t + 20 * minute, now=now)
        charging.record_status(s, station_code=STATION, charger_code="F3", connector=1, status="Finishing",
                               at=t + 40 * minute, now=now)
        charging.record_transaction(s, station_code=STATION, charger_code="F3", event="stop", connector=1,
                                    transaction_id=501, id_tag="D-DEMO01", meter_wh=19500, at=t + 41 * minute, now=now)
        charging.record_status(s, station_code=STATION, charger_code="F3", connector=1, status="Available",
                               at=t + 45 * minute, now=now)
        charging.record_transaction(s, station_code=STATION, charger_code="S01", event="start", connector=1,
                                    transaction_id=502, id_tag="D-DEMO01", meter_wh=0, at=t + 70 * minute, now=now)
        charging.record_status(s, station_code=STATION, charger_code="S01", connector=1, status="Charging",
                               at=t + 70 * minute, now=now)
        receipts.settle_due(s, now)


def test_pages_render_in_chinese_and_in_english_without_csp_violations(live, phone):
    _a_stay_with_a_charge_and_a_receipt(live)
    page = phone.page
    _log_in(phone, live)
    page.wait_for_url(re.compile(r"/stations$"))
    for lang in ("zh_Hans", "en"):
        if lang == "en":
            page.click('form.lang button[value="en"]')  # the language switch
            page.wait_for_selector("html[lang=en]")
        for name, path, expected in PAGES:
            page.goto(live.url + path)
            assert page.locator("html").get_attribute("lang") == ("zh-Hans" if lang == "zh_Hans" else "en")
            assert expected[lang] in page.locator("main").inner_text(), (name, lang)
            phone.shot(f"3x-{name}-{lang}-phone")
    page.goto(f"{live.url}/board/{STATION}?lang=en")
    page.wait_for_selector("#live.live")
    assert "fast chargers free" in page.locator(".board-summary").inner_text()
    phone.shot("3x-board-en-phone", full_page=False)


# The WCAG contrast ratio of an element's text against the first opaque background behind it.
CONTRAST = """
el => {
  const rgb = s => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  let bg = null;
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);  // rgb(r, g, b) or rgba(r, g, b, a)
    if (c.length === 3 || c[3] === 1) { bg = c.slice(0, 3); break; }
  }
  bg = bg || [255, 255, 255];
  const fg = lum(rgb(getComputedStyle(el).color)), back = lum(bg);
  return (Math.max(fg, back) + 0.05) / (Math.min(fg, back) + 0.05);
}
"""
CARE_TEXTS = ["main h1", "main .muted", "nav.tabs a", ".topbar .brand", ".topbar .care-btn", "main .slot"]


def test_care_mode_on_a_phone_makes_the_type_larger_and_the_contrast_aaa(live, phone):
    page = phone.page
    page.goto(f"{live.url}/stations/{STATION}")
    size = lambda sel: page.locator(sel).first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")  # noqa: E731
    before = {sel: size(sel) for sel in ("body", "main h1", "main .muted", "nav.tabs a")}
    assert page.locator("html").get_attribute("class") in (None, "")
    page.click(".care-switch button")  # the switch in the header
    page.wait_for_selector("html.care")
    assert page.url.endswith(f"/stations/{STATION}")  # back on the same page
    for sel, px in before.items():
        assert size(sel) >= px * 1.2, (sel, px, size(sel))
    assert size("main .muted") >= 18  # even the fine print is large
    for sel in CARE_TEXTS:
        ratio = page.locator(sel).first.evaluate(CONTRAST)
        assert ratio >= 7.0, (sel, round(ratio, 2))  # WCAG AAA for normal text
    assert page.locator(".care-switch button").get_attribute("aria-pressed") == "true"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # larger, still no sideways scrolling
    phone.shot("25-station-care-zh-phone")
    page.goto(f"{live.url}/stations")  # remembered on the next page
    page.wait_for_selector("html.care")
    phone.shot("26-finder-care-zh-phone")
    page.click(".care-switch button")  # and off again
    page.wait_for_function("!document.documentElement.classList.contains('care')")
