"""The web pages through Flask's test client: login, CSRF, headers, languages, ownership,
booking and its refusals, parking, remote start/stop and the board's event stream.

The station is the factories' ``s1`` (F1-F3 fast on B1, S01-S02 slow, two zones), the
clock is fixed at 2026-11-22 14:00 Shanghai (conftest ``T0``).
"""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.services import auth as auth_service
from chargeapp.services import booking as booking_service
from chargeapp.services import charging, gates
from chargeapp.services.auth import password_hasher

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse"
SLOT = "2026-11-22T15:00:00+08:00"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(app):
    # CSRF stays on in every test here, as in production (Flask-WTF's default).
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def make_account(session, clock, email="ann@example.com", plate="沪A12345"):
    """A driver registered (with the plate) a day before the test's now."""
    user = auth_service.register_driver(session, clock.now() - timedelta(days=1), password_hasher(1, 1024, 1),
                                        email=email,
                                        password=PASSWORD, name="Ann", plate=plate)
    session.commit()
    return user


def token(client, path="/login") -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def log_in(client, email="ann@example.com", password=PASSWORD, next_path="/stations"):
    return client.post("/login", data={"email": email, "password": password, "next": next_path,
                                       "csrf_token": token(client)})


def post(client, path, data=None, page="/stations"):
    """A form post with the token of this client's session (as the browser sends it)."""
    return client.post(path, data={**(data or {}), "csrf_token": token(client, page)})


def book_via_page(client, slot=SLOT, station="s1", **extra):
    confirm = client.get(f"/stations/{station}/book", query_string={"slot": slot})
    html = confirm.get_data(as_text=True)
    key = re.search(r'name="key" value="([^"]+)"', html)
    data = {"slot": slot, "key": key.group(1) if key else "", "csrf_token": CSRF.search(html).group(1), **extra}
    return client.post(f"/stations/{station}/book", data=data)


@pytest.fixture
def ann(session, clock, station):
    return make_account(session, clock)


@pytest.fixture
def logged_in(client, ann):
    assert log_in(client).status_code == 302
    return client


# -- login, logout, CSRF ---------------------------------------------------------------------


def test_login_with_the_right_password_starts_a_session_and_returns_to_the_page_asked_for(client, ann):
    r = log_in(client, next_path="/bookings")
    assert r.status_code == 302 and r.headers["Location"] == "/bookings"
    assert client.get("/bookings").status_code == 200


def test_a_wrong_password_is_refused_on_the_page_with_a_message(client, ann):
    r = log_in(client, password="wrong-wrong")
    assert r.status_code == 401
    assert "邮箱或密码错误" in r.get_data(as_text=True)
    assert client.get("/bookings").status_code == 302  # still logged out


def test_pages_of_a_driver_send_anonymous_visitors_to_the_login_page(client, station):
    r = client.get("/bookings")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/bookings")


def test_logout_ends_the_session(logged_in):
    assert post(logged_in, "/logout").status_code == 302
    assert logged_in.get("/bookings").status_code == 302


def test_login_never_redirects_to_another_site(app, ann):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        r = log_in(app.test_client(), next_path=target)
        assert r.headers["Location"] == "/stations", target


def test_a_form_posted_without_the_csrf_token_is_refused(logged_in, app):
    assert app.config["WTF_CSRF_ENABLED"] is True
    r = logged_in.post("/stations/s1/book", data={"slot": SLOT})
    assert r.status_code == 400
    assert "表单已过期" in r.get_data(as_text=True)
    r = logged_in.post("/login", data={"email": "ann@example.com", "password": PASSWORD})
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("text/html")


def test_a_token_of_another_session_is_refused(client, app, ann):
    other = app.test_client()
    foreign = token(other)
    r = client.post("/login", data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": foreign})
    assert r.status_code == 400


def test_the_bearer_token_api_is_exempt_from_csrf(client, ann):
    r = client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": PASSWORD})
    assert r.status_code == 200 and r.json["token"]


def test_a_changed_password_ends_the_pages_session(logged_in, session, ann):
    ann.password_hash = password_hasher(1, 1024, 1).hash("another-pass")
    session.commit()
    assert logged_in.get("/bookings").status_code == 302


# -- cookies and headers ----------------------------------------------------------------------


def _session_cookie(response) -> str:
    return next(v for v in response.headers.getlist("Set-Cookie") if v.startswith("chargeapp_session="))


def test_session_cookie_is_httponly_samesite_lax_and_not_secure_over_plain_http_by_default(client, ann):
    cookie = _session_cookie(log_in(client))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie


@pytest.mark.parametrize("mode, base_url, secure", [
    ("auto", "https://chargeapp.example", True),
    ("1", "http://127.0.0.1", True),
    ("0", "https://chargeapp.example", False),
])
def test_session_cookie_secure_flag_follows_the_setting(app, ann, mode, base_url, secure):
    app.config["CHARGEAPP_SESSION_COOKIE_SECURE"] = mode
    client = app.test_client()
    csrf = CSRF.search(client.get("/login", base_url=base_url).get_data(as_text=True)).group(1)
    r = client.post("/login", base_url=base_url, headers={"Referer": base_url + "/login"},
                    data={"email": "ann@example.com", "password": PASSWORD, "csrf_token": csrf})
    assert r.status_code == 302
    assert ("Secure" in _session_cookie(r)) is secure


@pytest.mark.parametrize("path", ["/stations", "/stations/s1", "/board/s1", "/login", "/api/v1/stations",
                                  "/static/css/app.css", "/no-such-page"])
def test_every_response_has_the_security_headers(client, station, path):
    r = client.get(path)
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "img-src 'self' data: https://*.is.autonavi.com" in csp  # the default tile host
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "same-origin"


def test_the_tile_host_in_the_policy_comes_from_the_configured_template(database_url, clock):
    from chargeapp.app import create_app

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CHARGEAPP_CLOCK": clock,
                      "CHARGEAPP_MAP_TILES": "https://{s}.tile.example.org/{z}/{x}/{y}.png"})
    csp = app.test_client().get("/healthz").headers["Content-Security-Policy"]
    assert "img-src 'self' data: https://*.tile.example.org;" in csp


def test_the_api_docs_page_references_only_this_sites_urls_and_its_viewer_is_served_here(client, station):
    r = client.get("/api/v1/docs")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    urls = re.findall(r'\b(?:src|href|spec-url)="([^"]*)"', html)
    assert any("/static/vendor/redoc-2." in u for u in urls) and "/api/v1/openapi.json" in urls
    assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
    assert "<style" not in html and not re.search(r"\sstyle=", html)
    script = next(u for u in urls if u.endswith("redoc.standalone.js"))
    served = client.get(script)
    assert served.status_code == 200 and served.mimetype in ("text/javascript", "application/javascript")
    assert len(served.get_data()) > 500_000  # the whole bundle, not a stub


def test_the_api_docs_policy_names_no_other_site_and_only_it_allows_inline_styles(client, station):
    docs = client.get("/api/v1/docs").headers["Content-Security-Policy"]
    assert "script-src 'self';" in docs and "img-src 'self' data:;" in docs
    assert "http" not in docs  # no CDN, no font host: nothing but this site (and blob: for ReDoc's worker)
    assert "'unsafe-inline'" in docs  # ReDoc's styled-components write <style> at run time
    assert "unsafe-inline" not in client.get("/stations").headers["Content-Security-Policy"]


def test_templates_and_scripts_have_no_inline_script_style_or_handler():
    root = Path(__file__).resolve().parents[2] / "chargeapp"
    for path in (root / "templates").rglob("*.html"):
        html = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert "<style" not in html and not re.search(r"\sstyle=", html), path
        assert not re.search(r"\son[a-z]+=", html), path


def test_a_drivers_pages_are_not_kept_by_shared_caches(logged_in):
    assert logged_in.get("/bookings").headers["Cache-Control"] == "private, no-store"


# -- languages ----------------------------------------------------------------------------------

PAGES = [
    ("/stations", "找快充桩", "Find a fast charger"),
    ("/stations/s1", "预约快充时段", "Book a fast-charge slot"),
    ("/stations/s1/chargers/F1", "充电桩 F1", "Charger F1"),
    (f"/stations/s1/book?slot={SLOT.replace('+', '%2B')}", "确认预约", "Confirm booking"),
    ("/bookings", "我的预约", "My bookings"),
    ("/notifications", "消息", "Messages"),
    ("/charging", "免费停车", "Free parking"),
    ("/board/s1", "个快充桩空闲", "fast chargers free"),
    ("/register", "注册司机账号", "Create a driver account"),
]


@pytest.mark.parametrize("path, zh, en", PAGES)
def test_every_page_renders_in_chinese_by_default_and_in_english_when_chosen(logged_in, path, zh, en):
    r = logged_in.get(path)
    assert r.status_code == 200, path
    html = r.get_data(as_text=True)
    assert '<html lang="zh-Hans">' in html and zh in html
    assert post(logged_in, "/language", {"lang": "en", "next": path}).status_code == 302
    html = logged_in.get(path).get_data(as_text=True)
    assert '<html lang="en">' in html and en in html
    post(logged_in, "/language", {"lang": "zh_Hans", "next": path})


def test_the_language_switch_returns_to_the_same_page_without_a_lang_parameter(logged_in):
    r = post(logged_in, "/language", {"lang": "en", "next": "/board/s1?lang=zh_Hans&x=1"})
    assert r.headers["Location"] == "/board/s1?x=1"


HTML_TAG = re.compile(r"<html[^>]*>")


def test_the_care_mode_switch_puts_a_class_on_html_and_is_remembered_like_the_language(client, ann):
    page = client.get("/stations").get_data(as_text=True)
    assert HTML_TAG.search(page).group(0) == '<html lang="zh-Hans">'
    assert 'name="care" value="on"' in page and 'aria-pressed="false"' in page and ">关怀模式</button>" in page
    r = post(client, "/care", {"care": "on", "next": "/stations?district=x"})
    assert r.status_code == 302 and r.headers["Location"] == "/stations?district=x"
    page = client.get("/stations").get_data(as_text=True)
    assert HTML_TAG.search(page).group(0) == '<html lang="zh-Hans" class="care">'
    assert 'name="care" value="off"' in page and 'aria-pressed="true"' in page
    assert log_in(client).status_code == 302  # a fresh session on login keeps the choice, as the language
    assert 'class="care"' in HTML_TAG.search(client.get("/bookings").get_data(as_text=True)).group(0)
    post(client, "/logout")
    assert 'class="care"' in HTML_TAG.search(client.get("/stations").get_data(as_text=True)).group(0)
    assert "Large text" in client.get("/stations?lang=en").get_data(as_text=True)
    post(client, "/care", {"care": "off", "next": "/stations"})
    assert "care" not in HTML_TAG.search(client.get("/stations").get_data(as_text=True)).group(0)


def test_care_mode_leaves_the_board_and_never_leads_off_the_site(client, station):
    post(client, "/care", {"care": "on", "next": "/stations"})
    board = client.get("/board/s1").get_data(as_text=True)
    assert "care" not in HTML_TAG.search(board).group(0) and "care-switch" not in board  # a shared TV
    assert post(client, "/care", {"care": "on", "next": "https://evil.example/"}).headers["Location"] == "/stations"


def test_every_page_string_has_a_chinese_translation():
    import gettext

    from babel.messages.extract import extract_from_dir

    root = Path(__file__).resolve().parents[2]
    keywords = {"_": None, "gettext": None, "_l": None, "lazy_gettext": None,
                "pgettext": ((1, "c"), 2), "lazy_pgettext": ((1, "c"), 2)}
    method_map = [("chargeapp/web/pages/**.py", "python"), ("chargeapp/web/messages.py", "python"),
                  ("chargeapp/templates/**.html", "jinja2")]
    found = {}
    for filename, _, message, _, context in extract_from_dir(str(root), method_map, keywords=keywords):
        msgid = message[0] if isinstance(message, tuple) else message
        found[(context, msgid)] = filename
    with open(root / "chargeapp/translations/zh_Hans/LC_MESSAGES/messages.mo", "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    untranslated = {k: v for k, v in found.items() if (f"{k[0]}\x04{k[1]}" if k[0] else k[1]) not in catalog}
    assert not untranslated, f"run the translation update (docs/pages.md): {sorted(untranslated)[:10]}"


# -- booking through the pages -----------------------------------------------------------------


def test_booking_through_the_page_books_any_fast_charger_and_shows_it(logged_in, session, ann):
    r = book_via_page(logged_in)
    assert r.status_code == 302
    booking = session.scalar(select(m.Booking).where(m.Booking.driver_id == ann.id))
    assert r.headers["Location"] == f"/bookings/{booking.id}"
    html = logged_in.get(r.headers["Location"]).get_data(as_text=True)
    assert "预约成功：F1" in html and 'class="charger-code">F1<' in html and "B1" in html
    # slot 15:00: check-in 14:50-15:10; at 14:00 the countdown runs to 14:50
    assert 'data-seconds="3000"' in html and "14:50 – 15:10" in html


def test_a_double_tap_on_confirm_books_once(logged_in, session, ann):
    confirm = logged_in.get("/stations/s1/book", query_string={"slot": SLOT}).get_data(as_text=True)
    data = {"slot": SLOT, "key": re.search(r'name="key" value="([^"]+)"', confirm).group(1),
            "csrf_token": CSRF.search(confirm).group(1)}
    first = logged_in.post("/stations/s1/book", data=data)
    second = logged_in.post("/stations/s1/book", data=data)
    assert first.headers["Location"] == second.headers["Location"]
    assert len(session.scalars(select(m.Booking).where(m.Booking.driver_id == ann.id)).all()) == 1


def test_a_driver_cannot_see_another_drivers_booking_page(logged_in, app, session, clock, station):
    bob = make_account(session, clock, email="bob@example.com", plate=None)
    b, _ = booking_service.book_slot(session, clock.now(), bob.id, "s1", booking_service_slot())
    r = logged_in.get(f"/bookings/{b.id}")
    assert r.status_code == 404
    assert "没有这个预约" in r.get_data(as_text=True)
    assert post(logged_in, f"/bookings/{b.id}/cancel").status_code == 404
    assert session.get(m.Booking, b.id).status == "booked"


def booking_service_slot():
    from datetime import datetime

    return datetime.fromisoformat(SLOT)


def test_a_second_booking_is_refused_with_a_clear_message(logged_in):
    assert book_via_page(logged_in).status_code == 302
    r = book_via_page(logged_in, slot="2026-11-22T16:00:00+08:00")
    assert r.status_code == 409
    assert "您已有一个预约" in r.get_data(as_text=True)


def test_a_slot_taken_by_others_is_refused_with_a_clear_message(logged_in, session, clock):
    for i in range(3):
        d = make_account(session, clock, email=f"d{i}@example.com", plate=None)
        booking_service.book_slot(session, clock.now(), d.id, "s1", booking_service_slot())
    page = logged_in.get("/stations/s1/book", query_string={"slot": SLOT})
    assert page.status_code == 409 and "该时段刚被约满" in page.get_data(as_text=True)
    assert 'id="confirm-booking"' not in page.get_data(as_text=True)


def test_a_refusal_is_in_english_when_english_is_chosen(logged_in):
    post(logged_in, "/language", {"lang": "en"})
    book_via_page(logged_in)
    r = book_via_page(logged_in, slot="2026-11-22T16:00:00+08:00")
    assert r.status_code == 409
    assert "You already have an active booking; cancel it first." in r.get_data(as_text=True)


def test_a_suspended_driver_is_told_until_when(logged_in, session, clock, ann, station):
    for days in (1, 5, 9):
        at = clock.now() - timedelta(days=days)
        session.add(m.Booking(driver_id=ann.id, station_id=station.id, booked_charger_id=station.chargers[0].id,
                              slot_start=at, slot_end=at + timedelta(minutes=30), status="no_show",
                              created_at=at, no_show_at=at))
    ann.suspended_until = clock.now() + timedelta(days=6)
    session.commit()
    assert "因多次爽约" in logged_in.get("/stations/s1").get_data(as_text=True)
    r = book_via_page(logged_in)
    assert r.status_code == 403
    # the last no-show was 1 day ago at 14:00: suspended until 11-28 14:00
    assert "因多次爽约，预约功能已暂停。 11月28日周六 14:00 起可再次预约。" in r.get_data(as_text=True)


def test_a_slot_outside_opening_hours_or_not_a_time_is_refused(logged_in):
    r = logged_in.get("/stations/s1/book", query_string={"slot": "tomorrow"})
    assert r.status_code == 422
    r = book_via_page(logged_in, slot="2026-11-22T15:10:00+08:00")
    assert r.status_code in (409, 422)


def test_cancelling_through_the_page_is_free_before_the_slot(logged_in, session, ann):
    location = book_via_page(logged_in).headers["Location"]
    booking_id = int(location.rsplit("/", 1)[1])
    r = post(logged_in, f"/bookings/{booking_id}/cancel", {"confirm": "yes"}, page=location)
    assert r.status_code == 302
    html = logged_in.get(location).get_data(as_text=True)
    assert "预约已取消，免费。" in html and 'id="cancel-booking"' not in html
    assert session.get(m.Booking, booking_id).status == "cancelled"
    notes = logged_in.get("/notifications").get_data(as_text=True)
    assert "已预约" in notes and "已取消" in notes


# -- parking, sessions, receipts, remote start/stop --------------------------------------------


def _charge(session, clock, charger="F1", tx=77, tag="TAG", start_min=-50, stop_min=None):
    now = clock.now()
    start = now + timedelta(minutes=start_min)
    charging.record_transaction(session, station_code="s1", charger_code=charger, event="start", connector=1,
                                transaction_id=tx, id_tag=tag, meter_wh=1000, at=start, now=now)
    charging.record_status(session, station_code="s1", charger_code=charger, connector=1, status="Charging",
                           at=start, now=now)
    if stop_min is not None:
        stop = now + timedelta(minutes=stop_min)
        charging.record_status(session, station_code="s1", charger_code=charger, connector=1,
                               status="Finishing", at=stop, now=now)
        charging.record_transaction(session, station_code="s1", charger_code=charger, event="stop", connector=1,
                                    transaction_id=tx, id_tag=tag, meter_wh=21000, at=stop, now=now)
        charging.record_status(session, station_code="s1", charger_code=charger, connector=1,
                               status="Available", at=stop + timedelta(minutes=2), now=now)
    session.commit()


def _tag(session, user) -> str:
    return session.scalar(select(m.IdTag.tag).where(m.IdTag.user_id == user.id))


def test_during_a_stay_the_charging_page_says_until_when_parking_is_free(logged_in, session, clock, ann):
    # in at 13:00, charging 13:10-13:30 (20 min >= 15): the first 120 min are free, until 15:00
    gates.record_gate_passage(session, station_code="s1", gate_code="G-in", plate="沪A12345", direction="in",
                              at=clock.now() - timedelta(minutes=60), now=clock.now())
    _charge(session, clock, tag=_tag(session, ann), start_min=-50, stop_min=-30)
    html = logged_in.get("/charging").get_data(as_text=True)
    assert ">免费停车至 15:00<" in html
    assert "充电满 15 分钟，自入场起前 120 分钟停车免费" in html
    post(logged_in, "/language", {"lang": "en"})
    assert ">Parking free until 15:00<" in logged_in.get("/charging").get_data(as_text=True)


def test_before_qualifying_the_charging_page_says_how_much_more_to_charge(logged_in, session, clock, ann):
    gates.record_gate_passage(session, station_code="s1", gate_code="G-in", plate="沪A12345", direction="in",
                              at=clock.now() - timedelta(minutes=30), now=clock.now())
    _charge(session, clock, tag=_tag(session, ann), start_min=-10)
    post(logged_in, "/language", {"lang": "en"})
    html = logged_in.get("/charging").get_data(as_text=True)
    assert "Charge 5 min more for free parking until 15:30" in html
    assert "Stop charging" in html  # the session is open


def test_receipts_are_listed_with_their_components_and_explanation(logged_in, session, clock, ann):
    from chargeapp.services import receipts

    _charge(session, clock, charger="F2", tag=_tag(session, ann), start_min=-120, stop_min=-90)
    receipts.settle_due(session, clock.now())
    session.commit()
    post(logged_in, "/language", {"lang": "en"})
    html = logged_in.get("/charging").get_data(as_text=True)
    receipt = session.scalar(select(m.Receipt).where(m.Receipt.driver_id == ann.id))
    assert receipt is not None and f"#{receipt.id}" in html
    assert "20.000 kWh" in html and "How this was worked out" in html


def test_remote_start_queues_a_command_with_the_drivers_app_tag(logged_in, session, ann):
    r = post(logged_in, "/stations/s1/chargers/F2/start", page="/stations/s1/chargers/F2")
    assert r.status_code == 302
    cmd = session.scalar(select(m.CommandOutbox).where(m.CommandOutbox.name == "remote_start"))
    assert cmd.payload["id_tag"] == _tag(session, ann) and cmd.payload["connector"] == 1
    assert "已向 F2 发送启动指令" in logged_in.get("/stations/s1/chargers/F2").get_data(as_text=True)
    post(logged_in, "/stations/s1/chargers/F2/start", page="/stations/s1/chargers/F2")  # a double tap
    assert len(session.scalars(select(m.CommandOutbox).where(m.CommandOutbox.name == "remote_start")).all()) == 1


def test_remote_start_is_refused_on_a_charger_in_use(logged_in, session, clock):
    _charge(session, clock, charger="F3", tag="SOMEONE", start_min=-5)
    page = logged_in.get("/stations/s1/chargers/F3").get_data(as_text=True)
    assert "该充电桩正在使用中" in page and 'id="remote-start"' not in page
    post(logged_in, "/stations/s1/chargers/F3/start", page="/stations/s1/chargers/F3")
    assert session.scalar(select(m.CommandOutbox).where(m.CommandOutbox.name == "remote_start")) is None


def test_remote_stop_only_for_the_drivers_own_open_session(logged_in, session, clock, ann):
    _charge(session, clock, charger="F1", tx=81, tag=_tag(session, ann), start_min=-5)
    _charge(session, clock, charger="F2", tx=82, tag="SOMEONE", start_min=-5)
    own = session.scalar(select(m.ChargingSession).where(m.ChargingSession.transaction_id == 81))
    other = session.scalar(select(m.ChargingSession).where(m.ChargingSession.transaction_id == 82))
    assert post(logged_in, f"/charging/sessions/{other.id}/stop").status_code == 404
    assert post(logged_in, f"/charging/sessions/{own.id}/stop").status_code == 302
    stops = session.scalars(select(m.CommandOutbox).where(m.CommandOutbox.name == "remote_stop")).all()
    assert [c.payload["transaction_id"] for c in stops] == [81]


# -- the lounge board ---------------------------------------------------------------------------


def test_the_board_stream_sends_a_snapshot_then_heartbeats_and_ends_by_itself(app, client, station):
    """On a fake pacer (its time moves only by the stream's own waits), so a busy machine cannot change what is sent:
    a 1.5 s stream polling every 0.05 s is 30 rounds, with a heartbeat after every 0.2 s without a change. (On the
    wall clock it failed twice beside other tests, once after being widened from 0.6 s to 1.5 s.)"""
    from chargeapp.clock import FakePacer

    pace = app.extensions["chargeapp.board_pacer"] = FakePacer()
    app.config.update(CHARGEAPP_BOARD_STREAM_SECONDS=1.5, CHARGEAPP_BOARD_POLL_SECONDS=0.05,
                      CHARGEAPP_BOARD_HEARTBEAT_SECONDS=0.2)
    r = client.get("/board/s1/events")
    assert r.mimetype == "text/event-stream" and r.headers["X-Accel-Buffering"] == "no"
    body = r.get_data(as_text=True)  # returns: the stream ended on its own
    assert body.startswith("retry: 2000")
    assert body.count("event: snapshot") == 1  # nothing changed: one snapshot, then heartbeats
    assert pace.waits == 30 and pace.elapsed == pytest.approx(1.5)
    assert body.count("event: heartbeat") == 7  # at 0.2, 0.4, ... 1.4 s
    assert body.rstrip().splitlines()[-2] == "event: bye"
    assert '"fast_free":3' in body and '"label":"空闲"' in body


def test_the_board_stream_sends_a_new_snapshot_when_a_charger_changes(app, client, session, clock, station):
    """Read as a browser does, as it comes: the change is made once the first snapshot is in (a timer could fire
    before a slow stream's start, or after its end: this failed once beside other tests), and the test stops
    reading at the second snapshot instead of waiting for the stream's end."""
    import threading

    app.config.update(CHARGEAPP_BOARD_STREAM_SECONDS=20, CHARGEAPP_BOARD_POLL_SECONDS=0.05)

    def change():
        with app.app_context():
            from chargeapp.db import db

            charging.record_status(db.session, station_code="s1", charger_code="F1", connector=1,
                                   status="Faulted", at=clock.now(), now=clock.now())
            db.session.commit()

    r = client.get("/board/s1/events", buffered=False)
    body, changer = "", threading.Thread(target=change)
    try:
        for chunk in r.response:
            body += chunk.decode() if isinstance(chunk, bytes) else chunk
            if body.count("event: snapshot") == 1 and changer.ident is None:
                changer.start()
            if body.count("event: snapshot") == 2 or "event: bye" in body:
                break
    finally:
        r.close()
        if changer.ident is not None:
            changer.join()
    assert body.count("event: snapshot") == 2, body
    assert '"fast_free":3' in body.split("event: snapshot")[1]
    assert '"fast_free":2' in body.split("event: snapshot")[-1]


def test_the_board_has_a_legend_for_the_colours_of_the_slow_chargers(client, station):
    html = client.get("/board/s1").get_data(as_text=True)
    legend = html.split('<ul class="legend"', 1)[1].split("</ul>", 1)[0]
    assert 'aria-label="颜色说明"' in legend
    for css, zh in [("free", "空闲"), ("charging", "充电中"), ("busy", "已插枪未充电"), ("reserved", "已预留"),
                    ("down", "故障/不可用"), ("off", "离线/停用")]:
        assert f'<span class="swatch st-{css}" aria-hidden="true"></span>{zh}</li>' in legend
    english = client.get("/board/s1?lang=en").get_data(as_text=True)
    assert "Plugged in, not charging" in english and "Offline / out of service" in english


def test_the_board_shows_a_qr_code_drawn_here_that_opens_the_station_in_the_driver_app(client, station):
    from chargeapp.web.pages.qr import qr_data_uri

    html = client.get("/board/s1").get_data(as_text=True)
    qr = re.search(r'<a class="board-qr" href="([^"]+)">\s*<img src="([^"]+)" alt="([^"]+)"', html)
    assert qr is not None
    assert qr.group(1) == "http://localhost/stations/s1"  # the address this board was reached at
    assert qr.group(2).startswith("data:image/svg+xml") and qr.group(2) == qr_data_uri(qr.group(1))
    assert qr.group(3) == "二维码：在司机端打开本站" and "扫码预约快充" in html
    assert client.get(qr.group(1)).status_code == 200  # the code leads to the station's page
    assert "Scan to book a fast charger" in client.get("/board/s1?lang=en").get_data(as_text=True)


def test_the_next_free_slot_on_the_board_has_no_date_today_and_its_date_when_tomorrow(client, clock, station):
    html = client.get("/board/s1").get_data(as_text=True)  # 14:00: the 14:30 slot is today
    assert re.search(r'id="next-slot">14:30<', html)
    assert re.search(r'<span class="figure-day" id="next-slot-day" hidden></span>', html)
    clock.advance(minutes=9 * 60 + 45)  # 23:45 Shanghai: the next slot starts at midnight, tomorrow
    html = client.get("/board/s1").get_data(as_text=True)
    assert re.search(r'id="next-slot">00:00<', html)
    assert '<span class="figure-day" id="next-slot-day">明天 11月23日周一</span>' in html
    english = client.get("/board/s1?lang=en").get_data(as_text=True)
    assert '<span class="figure-day" id="next-slot-day">tomorrow, Mon, Nov 23</span>' in english


def test_the_board_stream_carries_the_day_of_the_next_free_slot(app, client, clock, station):
    from chargeapp.clock import FakePacer

    app.extensions["chargeapp.board_pacer"] = FakePacer()
    app.config.update(CHARGEAPP_BOARD_STREAM_SECONDS=0.1, CHARGEAPP_BOARD_POLL_SECONDS=0.05)
    clock.advance(minutes=9 * 60 + 45)
    body = client.get("/board/s1/events").get_data(as_text=True)
    assert '"next_free_slot":"00:00","next_free_day":"明天 11月23日周一"' in body


def test_an_unknown_station_board_is_a_404_page(client, station):
    assert client.get("/board/nowhere").status_code == 404
    assert client.get("/board/nowhere/events").status_code == 404


@pytest.mark.parametrize("field, value", [("name", "Ann\x00Lee"), ("email", "ann\x00@example.com"),
                                          ("plate", "沪A\x0012345")])
def test_a_value_the_database_cannot_hold_is_an_html_answer_never_json_or_a_500(client, station, field, value):
    """A NUL character cannot be stored in PostgreSQL text: the page says so in HTML (SQLite stores it)."""
    data = {"email": "ann@example.com", "password": PASSWORD, "name": "Ann", "plate": "", field: value,
            "csrf_token": token(client, "/register")}
    r = client.post("/register", data=data)
    assert r.status_code < 500
    assert r.status_code in (302, 303) or r.mimetype == "text/html", (r.status_code, r.mimetype)


def test_the_login_page_counts_only_refused_logins_towards_its_limit(client, ann):
    for _ in range(8):
        assert log_in(client).status_code == 302
        client.post("/logout", data={"csrf_token": token(client, "/stations")})
    codes = [log_in(client, password="wrong-password").status_code for _ in range(6)]
    assert codes[:5] == [401] * 5 and codes[5] == 429
