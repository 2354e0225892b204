"""Issue 16: the words a driver or manager reads, each in its own context, and booking refusals
that say which rule refused the slot, through Flask's test client with CSRF on.

The station is the factories' ``s1`` (F1-F3 fast on B1, S01-S02 slow on B2), open around the
clock; the clock is fixed at 2026-11-22 14:00 Shanghai (conftest ``T0``).
"""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.services import auth as auth_service
from chargeapp.services import booking as booking_service
from chargeapp.services.auth import password_hasher
from chargeapp.services.registry import create_user

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse"
SLOT = "2026-11-22T15:00:00+08:00"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def token(client, path="/login") -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def post(client, path, data=None, page="/stations"):
    return client.post(path, data={**(data or {}), "csrf_token": token(client, page)})


def log_in(client, email):
    r = client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": token(client)})
    assert r.status_code == 302
    return client


def text(r) -> str:
    return r.get_data(as_text=True)


@pytest.fixture
def ann(session, clock, station):
    user = auth_service.register_driver(session, clock.now() - timedelta(days=1), password_hasher(1, 1024, 1),
                                        email="ann@example.com", password=PASSWORD, name="Ann", plate="沪A12345")
    session.commit()
    return user


@pytest.fixture
def driver(client, ann):
    return log_in(client, "ann@example.com")


@pytest.fixture
def manager(client, session, clock, station):
    create_user(session, email="boss@example.com", password_hash=password_hasher(1, 1024, 1).hash(PASSWORD),
                now=clock.now() - timedelta(days=1), name="Boss", role="manager", stations=(station,))
    session.commit()
    return log_in(client, "boss@example.com")


def english(client, page="/stations"):
    post(client, "/language", {"lang": "en", "next": page}, page)


def close_at_night(session, station):
    """Open 07:00-22:00 station time."""
    station.opens_at, station.closes_at = time(7), time(22)
    session.commit()


# -- each rule refuses a slot with its own reason, and no check-in rules come with it ------------

RULE_REFUSALS = [
    ("2026-11-22T15:10:00+08:00", "slot_not_on_grid", None),
    ("2026-11-22T13:00:00+08:00", "slot_in_past", None),
    ("2026-11-23T15:00:00+08:00", "slot_too_far_ahead", None),
    ("2026-11-22T22:00:00+08:00", "station_closed", None),
    ("2026-11-22T16:00:00+08:00", "station_maintenance", None),
]


def _zh(code: str) -> str:
    """The Chinese refusal the pages give for an error code (from the compiled catalog)."""
    from chargeapp.web.pages import i18n

    return str(i18n.REFUSALS[code])


@pytest.mark.parametrize("slot, code, _hint", RULE_REFUSALS, ids=[r[1] for r in RULE_REFUSALS])
def test_the_confirm_page_names_the_rule_that_refuses_the_slot_and_shows_no_check_in_rules(
        app, driver, session, station, slot, code, _hint):
    close_at_night(session, station)
    session.add(m.MaintenanceWindow(station_id=station.id, starts_at=datetime.fromisoformat("2026-11-22T16:15:00+08:00"),
                                    ends_at=datetime.fromisoformat("2026-11-22T17:00:00+08:00"), reason="pumps"))
    session.commit()
    with app.test_request_context():
        expected = _zh(code)
    r = driver.get("/stations/s1/book", query_string={"slot": slot})
    html = text(r)
    assert r.status_code == 422, html
    assert expected in html
    assert "该时段已无法预约" not in html
    assert 'class="rules"' not in html and "签到" not in html
    assert 'id="confirm-booking"' not in html


def test_the_rule_refusals_all_differ_in_chinese(app):
    with app.test_request_context():
        texts = {_zh(code) for _, code, _ in RULE_REFUSALS} | {_zh("slot_unavailable")}
    assert len(texts) == len(RULE_REFUSALS) + 1


def test_a_full_slot_says_it_was_taken_and_shows_no_check_in_rules(app, driver, session, clock):
    for i in range(3):
        d = auth_service.register_driver(session, clock.now() - timedelta(days=1), password_hasher(1, 1024, 1),
                                         email=f"d{i}@example.com", password=PASSWORD, name="D")
        booking_service.book_slot(session, clock.now(), d.id, "s1", datetime.fromisoformat(SLOT))
    r = driver.get("/stations/s1/book", query_string={"slot": SLOT})
    with app.test_request_context():
        expected = _zh("slot_unavailable")
    assert r.status_code == 409 and expected in text(r)
    assert "签到" not in text(r) and 'id="confirm-booking"' not in text(r)


def test_a_bookable_slot_still_comes_with_its_check_in_rules(driver):
    html = text(driver.get("/stations/s1/book", query_string={"slot": SLOT}))
    assert 'id="confirm-booking"' in html and "签到" in html
    # the suspension rule in words with plural forms: 3 no-shows in 30 days suspend booking for 7 days
    assert "释放充电桩。30 天内爽约 3 次将暂停预约 7 天。" in html


def test_in_english_a_refused_slot_gives_the_services_own_sentence(driver):
    english(driver)
    html = text(driver.get("/stations/s1/book", query_string={"slot": "2026-11-22T13:00:00+08:00"}))
    assert "That slot has already started." in html and "Check in between" not in html


# -- the tomorrow tab -------------------------------------------------------------------------


def test_tomorrow_without_a_bookable_slot_is_not_offered_and_says_when_it_opens(driver, session, station):
    station.rules.booking_horizon_minutes = 4 * 60
    session.commit()
    html = text(driver.get("/stations/s1"))
    # the first slot of tomorrow (00:00) can be booked 4 hours before: from 20:00 today
    assert "day=tomorrow" not in html
    assert "无可预约时段" in html
    assert "当天第一个时段从 20:00 起可以预约" in html
    english(driver, "/stations/s1")
    html = text(driver.get("/stations/s1"))
    assert "first slot can be booked from 20:00" in html


def test_a_day_past_its_opening_hours_says_so_and_tomorrow_says_when_it_opens(driver, session, station):
    # open 06:00-07:00 only, 4 h ahead: at 14:00 today is over, tomorrow's 06:00 opens at 02:00
    station.opens_at, station.closes_at = time(6), time(7)
    station.rules.booking_horizon_minutes = 4 * 60
    session.commit()
    html = text(driver.get("/stations/s1"))
    assert "day=tomorrow" not in html
    assert "今天：当天余下时间本站不营业。" in html
    assert "当天第一个时段从 明天 02:00 起可以预约" in html


def test_tomorrow_with_slots_is_offered(driver):
    assert "day=tomorrow" in text(driver.get("/stations/s1"))


# -- the API: one code per rule, on both databases -----------------------------------------------


def _api_driver(client):
    r = client.post("/api/v1/auth/register", json={"email": "api@example.com", "password": PASSWORD})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


@pytest.mark.parametrize("slot, code, _hint", RULE_REFUSALS, ids=[r[1] for r in RULE_REFUSALS])
def test_the_api_refuses_each_rule_with_its_own_code(client, session, station, slot, code, _hint):
    close_at_night(session, station)
    session.add(m.MaintenanceWindow(station_id=station.id, starts_at=datetime.fromisoformat("2026-11-22T16:15:00+08:00"),
                                    ends_at=datetime.fromisoformat("2026-11-22T17:00:00+08:00"), reason="pumps"))
    session.commit()
    r = client.post("/api/v1/bookings", headers=_api_driver(client), json={"station": "s1", "slot_start": slot})
    assert r.status_code == 422 and r.json["code"] == code, r.json
    assert session.scalar(select(m.Booking.id)) is None


# -- words in their context -------------------------------------------------------------------


def test_the_managers_live_view_says_in_service_not_service_fee(manager):
    html = text(manager.get("/manage/s1"))
    assert "启用状态" in html and "服务费" not in html


def test_find_is_search_on_the_managers_receipt_and_parking_pages(manager):
    for path in ("/manage/s1/receipts", "/manage/s1/stays"):
        html = text(manager.get(path))
        assert ">查找</button>" in html and "找桩" not in html.split("<main", 1)[1], path


def test_the_drivers_tab_is_find_a_charger(driver):
    assert ">找桩</a>" in text(driver.get("/stations"))


def test_dead_letters_and_clock_skew_are_said_plainly(manager):
    html = text(manager.get("/manage/s1/dead-letters"))
    assert "无法处理的设备消息" in html and "死信" not in html
    rules = text(manager.get("/manage/s1/rules"))
    assert "时钟偏差" not in rules and "设备时钟与服务器最多可差几秒" in rules


def test_floors_are_named_as_chinese_garages_do(driver, session, station):
    b = booking_service.book_slot(session, datetime.fromisoformat("2026-11-22T14:00:00+08:00"),
                                  session.scalar(select(m.User.id).where(m.User.email == "ann@example.com")),
                                  "s1", datetime.fromisoformat(SLOT))[0]
    html = text(driver.get(f"/bookings/{b.id}"))
    assert "地下一层（B1）" in html and "楼层" not in html
    for c in station.chargers:
        c.level = "G"
    session.commit()
    html = text(driver.get(f"/bookings/{b.id}"))
    assert "地面层" in html and "楼层" not in html and "G<" not in html
    station_page = text(driver.get("/stations/s1"))
    assert '<span class="tile-level">地面层</span>' in station_page
    english(driver)
    html = text(driver.get(f"/bookings/{b.id}"))
    assert "on <strong>the ground floor</strong>" in html


def test_a_one_day_report_says_1_day(manager):
    html = text(manager.get("/manage/s1/reports", query_string={"from": "2026-11-21", "to": "2026-11-21"}))
    assert "（1 天）" in html
    english(manager, "/manage/")
    html = text(manager.get("/manage/s1/reports", query_string={"from": "2026-11-21", "to": "2026-11-21"}))
    assert "(1 day)" in html and "1 days" not in html


def test_yuan_is_written_with_the_yuan_sign_in_both_languages(manager):
    zh = text(manager.get("/manage/s1/tariffs"))
    assert "¥" in zh and "CN¥" not in zh
    english(manager, "/manage/")
    en = text(manager.get("/manage/s1/tariffs"))
    assert "¥" in en and "CN¥" not in en


def test_the_managers_tabs_name_the_lists_not_counts(manager):
    html = text(manager.get("/manage/s1/sessions"))
    assert ">充电记录</a>" in html and ">停车记录</a>" in html and "充电次数" not in html


def test_the_finders_districts_are_not_called_zones(driver):
    html = text(driver.get("/stations"))
    assert "全部城区" in html and "区域" not in html.split("<main", 1)[1]


def test_a_station_with_one_of_each_speaks_in_the_singular(driver, session, station):
    r = station.rules
    r.walkin_reserved_fast, r.checkin_grace_minutes, r.no_show_limit, r.no_show_window_days, r.suspension_days = 1, 1, 1, 1, 1
    session.commit()
    english(driver, "/stations/s1")
    html = text(driver.get("/stations/s1"))
    assert "1 fast charger is kept free for walk-ins." in html
    assert "Not checked in 1 minute after the start" in html
    assert "1 no-show in 1 day suspends booking for 1 day." in html
    assert "1 days" not in html and "1 minutes" not in html


def test_a_refused_second_booking_shows_the_refusal_without_a_form_or_check_in_rules(driver, session, ann, clock):
    booking_service.book_slot(session, clock.now(), ann.id, "s1", datetime.fromisoformat(SLOT))
    session.commit()
    html = text(driver.get("/stations/s1/book", query_string={"slot": "2026-11-22T16:00:00+08:00"}))
    key = re.search(r'name="key" value="([^"]+)"', html).group(1)
    r = driver.post("/stations/s1/book", data={"slot": "2026-11-22T16:00:00+08:00", "key": key,
                                                "csrf_token": CSRF.search(html).group(1)})
    assert r.status_code == 409 and "您已有一个预约" in text(r)
    assert 'id="confirm-booking"' not in text(r) and "签到" not in text(r)


def test_the_api_documents_each_booking_rules_code(client, station):
    post_doc = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/bookings"]["post"]
    for _, code, _ in RULE_REFUSALS:
        assert code in post_doc["description"], code
    assert "slot_unavailable" in post_doc["description"]
