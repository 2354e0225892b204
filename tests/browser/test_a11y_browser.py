"""Every driver and manager page (and the lounge board) through axe-core, in Chinese on a phone and a desk
(and in English on a desk).

Issue 16, "Every driver and manager reaches it": no page may have a serious or critical axe
violation (tests/browser/axe.py; axe is vendored under tests/browser/vendor/). Beside the
walk, the things an automated engine cannot judge are checked by hand: a skip link that is
the first tab stop, focus moving to the message after booking and cancelling, the live view
keeping the focused element across its 5-second refresh and announcing only its status.
The pages' data: the report test's history at hongkou-quyang (receipts, sessions) and a
parking stay there, so the driver tests on yangpu-liaoyuan see nothing of it.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from chargeapp.seed import DEMO_DRIVER, DEMO_MANAGER
from tests.browser import axe
from tests.browser.conftest import CSP_PROBE, _watched
from tests.browser.test_report_browser import write_history

pytestmark = pytest.mark.e2e
DRIVER_STATION = "yangpu-liaoyuan"
STATION = "hongkou-quyang"
SH = ZoneInfo("Asia/Shanghai")
VIEWPORTS = {
    "phone": dict(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True),
    "desk": dict(viewport={"width": 1280, "height": 900}),
}


def _context(browser, viewport: str):
    context = browser.new_context(locale="zh-CN", **VIEWPORTS[viewport])
    context.add_init_script(CSP_PROBE)
    axe.install(context)
    return context


@pytest.fixture(params=["phone", "desk"])
def seen(request, browser):
    """A Chinese page with axe in it, on a phone or a desk; CSP violations and script errors fail the test."""
    context = _context(browser, request.param)
    w = _watched(context)
    w.viewport, w.lang = request.param, "zh_Hans"
    yield w
    w.assert_clean()
    context.close()


def _manager_records(live) -> dict:
    """A receipt, a session and a parking stay at hongkou-quyang (written once), by id; and an open session."""
    from sqlalchemy import select

    from chargeapp.db import db
    from chargeapp.db import models as m
    from chargeapp.services import gates

    from chargeapp.services import charging

    write_history(live)
    with live.write() as s:
        station = s.scalar(select(m.Station).where(m.Station.code == STATION))
        if s.scalar(select(m.ParkingStay.id).where(m.ParkingStay.station_id == station.id)) is None:
            now = live.clock.now()
            # A card's session open on S06 (the live view's open-sessions table), nobody's booking or receipt.
            charging.record_transaction(s, station_code=STATION, charger_code="S06", event="start", connector=1,
                                        transaction_id=9301, id_tag="CARD-A11Y", meter_wh=0,
                                        at=now - timedelta(minutes=30), now=now)
            for direction, hour in (("in", 10), ("out", 12)):
                gates.record_gate_passage(s, station_code=STATION, gate_code="gate", plate="沪B12345",
                                          direction=direction, at=datetime(2026, 11, 20, hour, tzinfo=SH), now=now)
    with live.app.app_context():
        station = db.session.scalar(select(m.Station).where(m.Station.code == STATION))
        first = lambda model: db.session.scalar(  # noqa: E731
            select(model.id).where(model.station_id == station.id).order_by(model.id))
        return {"receipt": first(m.Receipt), "session": first(m.ChargingSession), "stay": first(m.ParkingStay)}


def _reset_token(live) -> str:
    from chargeapp.services import accounts

    with live.write() as s:
        token, _, _ = accounts.issue_reset_link(s, live.clock.now(), None, DEMO_DRIVER[0],
                                                live.app.config["SECRET_KEY"], reason="a11y walk")
    return token


def _log_in(page, live, who, next_path):
    page.goto(f"{live.url}/login?next={next_path}")
    page.fill("#email", who[0])
    page.fill("#password", who[1])
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(re.escape(next_path.split("?")[0]) + r"(\?|$)"))


def _log_out(page):
    page.click("nav.tabs form button[type=submit]")


def _focused(page) -> str:
    """The element with the keyboard's focus as tag.class.class."""
    return page.evaluate("""() => { const e = document.activeElement;
      return [e.tagName.toLowerCase()].concat(Array.from(e.classList)).join('.'); }""")


# A Latin word of three letters or more standing alone (not part of a code such as F1, S01, APP-3F2A or an email).
LATIN_WORD = re.compile(r"(?<![A-Za-z0-9@._/-])[A-Za-z]{3,}(?![A-Za-z0-9@._/-])")
# Words a Chinese page may show in Latin letters: names, codes and units, never a sentence's words.
NOT_ENGLISH = {
    "English",  # the language switch names the other language in itself
    "kWh", "CNY", "CSV",  # units and formats
    "Leaflet", "AutoNavi", "OpenStreetMap", "OSM",  # the map's attribution (names)
    "PowerMeterFailure", "Faulted", "Available", "Charging", "Preparing", "Finishing", "SuspendedEV",
    "SuspendedEVSE", "Unavailable", "Reserved", "NoError", "OtherError",  # OCPP codes, shown as the charger sent them
    "chargeapp", "demo", "sim",  # in the demo accounts' emails and the brand
}


def english_words(page) -> set[str]:
    """The English words a page shows: Latin words outside names, codes and units (NOT_ENGLISH), and outside what
    the page marks as not to be translated (identifiers an operator chose: ``translate="no"``, ``<code>``)."""
    text = page.evaluate("""() => { const copy = document.body.cloneNode(true);
      copy.querySelectorAll('[translate="no"], code, kbd, samp, script, style').forEach(e => e.remove());
      copy.style.position = 'absolute'; copy.style.left = '-99999px'; document.documentElement.appendChild(copy);
      const text = copy.innerText; copy.remove(); return text; }""")
    return {w for w in LATIN_WORD.findall(text) if w not in NOT_ENGLISH}


def _check(w, found: dict, name: str, ready: str | None = None):
    page = w.page
    if ready:
        page.wait_for_selector(ready)
    assert page.locator("html").get_attribute("lang") == ("zh-Hans" if w.lang == "zh_Hans" else w.lang), name
    bad = axe.serious_violations(page)
    if bad:
        found[name] = axe.describe(bad)
    if w.lang == "zh_Hans":
        english = english_words(page)
        if english:
            found[name + " (English words)"] = ", ".join(sorted(english))
    w.shot(f"a11y-{name}-{w.lang}-{w.viewport}")


@pytest.fixture(params=["zh_Hans-phone", "zh_Hans-desk", "en-desk"])
def walker(request, browser):
    """As ``seen``, in Chinese on a phone and a desk, and once in English (a desk) for the English pages' words."""
    lang, viewport = request.param.split("-")
    context = _context(browser, viewport)
    w = _watched(context)
    w.viewport, w.lang = viewport, lang
    yield w
    w.assert_clean()
    context.close()


def _in_language(w) -> None:
    """Switch to the walk's language with the header's switch (a login starts a new session in Chinese)."""
    want = "zh-Hans" if w.lang == "zh_Hans" else w.lang
    if w.page.locator("html").get_attribute("lang") != want:
        w.page.click(f'form.lang button[value="{w.lang}"]')
        w.page.wait_for_selector(f"html[lang={want}]")


def test_every_page_has_no_serious_or_critical_axe_violation(live, walker):
    records = _manager_records(live)
    seen = walker
    page, found = seen.page, {}
    page.goto(live.url + "/login")
    _in_language(seen)

    def visit(name, path, ready=None):
        page.goto(live.url + path)
        _check(seen, found, name, ready)

    visit("login", "/login")
    visit("register", "/register")
    visit("reset-password", f"/reset-password/{_reset_token(live)}")
    visit("board", f"/board/{DRIVER_STATION}", "#live.live")
    visit("finder", "/stations", "#map.map-on .leaflet-marker-icon")
    visit("station", f"/stations/{DRIVER_STATION}")
    visit("charger", f"/stations/{DRIVER_STATION}/chargers/F3")

    _log_in(page, live, DEMO_DRIVER, f"/stations/{DRIVER_STATION}")
    _in_language(seen)
    page.locator("a.slot").first.click()
    page.wait_for_url(re.compile(r"/book\?slot="))
    _check(seen, found, "confirm")
    page.click("#confirm-booking")
    page.wait_for_url(re.compile(r"/bookings/\d+$"))
    _check(seen, found, "booking", ".flash-ok")
    assert _focused(page) == "p.flash.flash-ok"  # the message has the focus: read out, and Tab goes on from it
    booking = page.url
    page.click("#cancel-booking")
    page.wait_for_selector("#confirm-cancel")
    _check(seen, found, "cancel")
    page.click("#confirm-cancel")
    page.wait_for_selector(".flash-ok")
    _check(seen, found, "booking-cancelled")
    assert _focused(page) == "p.flash.flash-ok"
    assert page.url == booking
    for name, path in (("bookings", "/bookings"), ("charging", "/charging"), ("notifications", "/notifications"),
                       ("profile", "/profile"), ("not-found", "/bookings/999999")):
        visit(name, path)
    page.goto(live.url + "/profile")
    _log_out(page)

    _log_in(page, live, DEMO_MANAGER, "/manage/")
    _in_language(seen)
    _check(seen, found, "manage-index")
    base = f"/manage/{STATION}"
    for name, path in (
            ("manage-station", base), ("manage-chargers", f"{base}/chargers"), ("manage-zones", f"{base}/zones"),
            ("manage-rules", f"{base}/rules"), ("manage-maintenance", f"{base}/maintenance"),
            ("manage-tariffs", f"{base}/tariffs"), ("manage-receipts", f"{base}/receipts"),
            ("manage-receipt", f"{base}/receipts/{records['receipt']}"), ("manage-sessions", f"{base}/sessions"),
            ("manage-session", f"{base}/sessions/{records['session']}"), ("manage-stays", f"{base}/stays"),
            ("manage-stay", f"{base}/stays/{records['stay']}"), ("manage-dead-letters", f"{base}/dead-letters"),
            ("manage-audit", f"{base}/audit"), ("manage-password-reset", "/manage/password-reset"),
            ("manage-live-liaoyuan", f"/manage/{DRIVER_STATION}")):
        visit(name, path)
    visit("manage-report", f"{base}/reports?from=2026-11-16&to=2026-11-21", "canvas[data-chart]")
    assert not found, "axe found serious or critical violations, or English words on a Chinese page:\n" + "\n".join(
        f"[{name}]\n{text}" for name, text in found.items())


def test_the_skip_link_is_the_first_tab_stop_and_the_map_markers_are_named_and_out_of_the_tab_order(live, seen):
    page = seen.page
    page.goto(f"{live.url}/stations")
    page.wait_for_selector("#map.map-on .leaflet-marker-icon")
    names = page.locator(".station-card").evaluate_all("cs => cs.map(c => c.dataset.name)")
    markers = page.locator(".leaflet-marker-icon")
    assert sorted(markers.evaluate_all("ms => ms.map(m => m.alt)")) == sorted(names)  # not Leaflet's "Marker"
    page.keyboard.press("Tab")
    assert _focused(page) == "a.skip-link"
    assert page.locator(".skip-link").inner_text() == "跳到正文"
    assert page.locator(".skip-link").is_visible()  # shown while it has the focus
    seen.shot(f"a11y-skip-link-{seen.viewport}", full_page=False)
    page.keyboard.press("Enter")
    assert _focused(page) == "main.page"
    # From the page, the keyboard reaches the first station in the list without a stop on the map.
    stops = []
    for _ in range(12):
        page.keyboard.press("Tab")
        stops.append(page.evaluate("(e => e.closest('.leaflet-control-attribution') ? 'attribution: ' + e.textContent"
                                   " : e.closest('#map') ? 'map: ' + e.outerHTML.slice(0, 120)"
                                   " : e.closest('.station-card') ? 'station' : 'other')(document.activeElement)"))
        if stops[-1] == "station":
            break
    # (The map's attribution links stay: the tiles' licence asks for them.)
    assert not [s for s in stops if s.startswith("map")] and stops[-1] == "station", stops
    # Our own focus outline: 3 px, solid.
    outline = page.evaluate("(() => { const s = getComputedStyle(document.activeElement); "
                            "return [s.outlineStyle, s.outlineWidth]; })()")
    assert outline == ["solid", "3px"], outline


def test_the_live_view_keeps_the_focus_across_refreshes_and_announces_only_what_changed(live, browser):
    """yangpu-bus-depot: no other browser test looks at it, so a fault there disturbs nothing."""
    from chargeapp.services import charging

    code = "yangpu-bus-depot"
    context = _context(browser, "desk")
    w = _watched(context)
    w.viewport = "desk"
    page = w.page
    page.set_default_timeout(15000)
    try:
        _log_in(page, live, DEMO_MANAGER, f"/manage/{code}")
        assert page.locator("#live [role=status], #live [aria-live]").count() == 0  # the fragment is not live
        table = page.locator('#live .table-wrap[aria-labelledby="chargers-h"]')
        table.focus()
        table.evaluate("t => { t.scrollLeft = 40; }")
        scrolled = table.evaluate("t => t.scrollLeft")
        page.evaluate("document.querySelector('[data-live-fragment]').dataset.seen = '1'")
        page.wait_for_function("() => !document.querySelector('[data-live-fragment]').dataset.seen")  # swapped
        assert page.evaluate("document.activeElement.getAttribute('aria-labelledby')") == "chargers-h"
        assert page.evaluate("document.activeElement.closest('[data-live-fragment]') !== null")
        assert table.evaluate("t => t.scrollLeft") == scrolled
        assert page.locator("#live-said").inner_text() == ""  # nothing changed: nothing said

        now = live.clock.now()
        with live.write() as s:
            charging.record_status(s, station_code=code, charger_code="F3", connector=1, status="Faulted",
                                   error_code="GroundFailure", at=now, now=now)
        try:
            page.wait_for_function("() => document.getElementById('live-said').textContent.includes('需要处理')")
            assert "1" in page.locator("#live-said").inner_text()
            assert page.evaluate("document.activeElement.getAttribute('aria-labelledby')") == "chargers-h"
            w.shot("a11y-live-announced-desk", full_page=False)
            # A faulted tile (red on pale red) with its floor label, on the driver's page and the board: the
            # audit measured dimmed floor labels at 3.2-3.8:1 on the coloured tiles.
            for path, ready in ((f"/stations/{code}", ".tile.st-down .tile-level"),
                                (f"/board/{code}", ".btile.st-down .btile-level")):
                page.goto(live.url + path)
                page.wait_for_selector(ready)
                assert not axe.serious_violations(page), (path, axe.describe(axe.serious_violations(page)))
        finally:
            with live.write() as s:
                charging.record_status(s, station_code=code, charger_code="F3", connector=1, status="Available",
                                       at=now + timedelta(seconds=1), now=now)
        w.assert_clean()
    finally:
        context.close()
