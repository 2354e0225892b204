"""What the services record as a code and parameters, shown in the reader's language (issue 16):
notifications (the messages page, a booking's history, the API) and the manager's attention list
(the live view, the API), in Simplified Chinese and English; money as ¥ with two decimals in both,
times in the station's zone; old rows whose sentence could not be read shown as stored.
"""
from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from flask_babel import force_locale
from sqlalchemy import insert, select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.services import charging
from chargeapp.web import messages
from tests.integration.test_pages import book_via_page, log_in, make_account, post

pytestmark = pytest.mark.integration

CJK = re.compile(r"[\u4e00-\u9fff]")

# Each notification code with params as the services write them, and the English sentence they store.
NOTIFICATIONS = [
    ("booked", {"charger": "F1", "level": "B1", "station": "辽源服务中心", "start": "11-22 15:00", "end": "15:30"},
     "Booked F1 (B1) at 辽源服务中心, 11-22 15:00-15:30."),
    ("cancelled", {}, "Booking cancelled, free of charge."),
    ("no_show_cancelled_late", {}, "Cancelled after the slot started: counted as a no-show."),
    ("no_show", {"minutes": 10},
     "No check-in within 10 minutes of the slot: the booking is a no-show and the charger was released."),
    ("suspended", {"until": "2026-11-29 14:00"},
     "Booking suspended until 2026-11-29 14:00 after repeated no-shows. Existing bookings stand."),
    ("suspension_lifted", {}, "Your booking suspension was lifted."),
    ("delayed", {"slot": "15:00"},
     "No fast charger is free yet for your 15:00 slot: we will hold the first one that frees up and tell you which."),
    ("delayed_hold_refused", {"answer": "Occupied"},
     "The held charger answered 'Occupied'; we will hold the first fast charger that frees up."),
    ("held", {"where": "F1 (B1)", "deadline": "15:10"}, "F1 (B1) is held for you until 15:10."),
    ("held_after_wait", {"where": "F2 (B1)", "delay": 0, "deadline": "15:10"},
     "F2 (B1) is now held for you. Check in by 15:10."),
    ("held_after_delay", {"where": "F2 (B1)", "delay": 7, "deadline": "15:17"},
     "F2 (B1) is now held for you, 7 min after your slot started. Check in by 15:17."),
    ("moved", {"where": "F2 (B1)", "deadline": "15:10"},
     "Your charger was busy or out of service: moved to F2 (B1), held until 15:10."),
    ("moved_charger_down", {"from": "F1", "slot": "15:00", "charger": "F3"},
     "F1 is out of service: your 15:00 slot moved to F3."),
    ("disrupted_charger_down", {"from": "F1", "slot": "15:00"},
     "F1 is out of service and no other fast charger is free for your 15:00 slot: the booking is cancelled at "
     "no cost. Please book again."),
    ("disrupted_maintenance", {"station": "辽源服务中心", "start": "11-22 15:00", "end": "15:30"},
     "辽源服务中心 is closed for maintenance during your 11-22 15:00-15:30 slot: the booking is cancelled at no "
     "cost. Please book another slot."),
    ("no_show_reversed", {},
     "Your charger reported a start inside the check-in window: the no-show is withdrawn."),
    ("checked_in", {"charger": "F1"}, "Checked in on F1."),
]


class Row:
    def __init__(self, code, params, message="(stored)"):
        self.code, self.params, self.message = code, params, message


@pytest.mark.parametrize("code,params,english", NOTIFICATIONS, ids=[c for c, _, _ in NOTIFICATIONS])
def test_every_notification_code_reads_as_the_services_sentence_in_english_and_in_chinese(app, code, params,
                                                                                           english):
    with app.test_request_context():
        with force_locale("en"):
            assert messages.notification_text(Row(code, params)) == english
        with force_locale("zh_Hans"):
            zh = messages.notification_text(Row(code, params))
    assert CJK.search(zh) and "%(" not in zh and zh != english
    for value in params.values():
        if value and not (code == "delayed_hold_refused"):  # the charger's answer is translated
            assert str(value) in zh, (value, zh)


def test_a_receipt_correction_shows_money_as_yuan_with_two_decimals_in_both_languages(app):
    row = Row("receipt_corrected", {"receipt": 12, "changes": [
        {"what": "energy", "before": 20000, "after": 21500},
        {"what": "energy_fen", "before": 2151, "after": 2711},
        {"what": "total", "before": 3000, "after": 3560}]})
    with app.test_request_context():
        with force_locale("en"):
            en = messages.notification_text(row)
        with force_locale("zh_Hans"):
            zh = messages.notification_text(row)
    assert en == ("Receipt #12 was corrected: energy 20.000 kWh -> 21.500 kWh; "
                  "energy ¥21.51 -> ¥27.11 (+¥5.60); total ¥30.00 -> ¥35.60.")
    assert zh == "收据 #12 已更正：电量 20.000 kWh → 21.500 kWh；电费 ¥21.51 → ¥27.11（+¥5.60）；合计 ¥30.00 → ¥35.60。"
    assert "CN¥" not in en + zh and "CNY" not in en + zh


def test_a_notification_without_a_code_or_with_params_that_do_not_fit_is_shown_as_stored(app):
    with app.test_request_context(), force_locale("zh_Hans"):
        assert messages.notification_text(Row(None, None, "Something old.")) == "Something old."
        assert messages.notification_text(Row("booked", {"charger": "F1"}, "Booked F1.")) == "Booked F1."
        assert messages.notification_text(Row("from_the_future", {}, "New kind.")) == "New kind."


# -- pages and API -----------------------------------------------------------------------------------


@pytest.fixture
def ann(session, clock, station):
    return make_account(session, clock)


@pytest.fixture
def logged_in(client, ann):
    assert log_in(client).status_code == 302
    return client


def _text(r) -> str:
    return unescape(r.get_data(as_text=True))


def test_a_booking_notification_is_chinese_on_the_chinese_pages_and_english_on_the_english_ones(
        logged_in, session, ann, station):
    r = book_via_page(logged_in)
    booking_page = r.headers["Location"]
    n = session.scalar(select(m.Notification).where(m.Notification.user_id == ann.id))
    assert n.code == "booked" and n.params["start"] == "11-22 15:00" and n.params["end"] == "15:30"
    chinese = f"已预约 {station.name} 的 F1（B1），11-22 15:00-15:30。"
    for page in ("/notifications", booking_page):
        html = _text(logged_in.get(page))
        assert f'<span class="note-text" lang="zh-Hans">{chinese}</span>' in html, page
        assert n.message not in html
    post(logged_in, "/language", {"lang": "en", "next": "/notifications"})
    for page in ("/notifications", booking_page):
        html = _text(logged_in.get(page))
        assert f'<span class="note-text" lang="en">{n.message}</span>' in html, page


def test_an_old_notification_that_could_not_be_read_is_shown_as_stored_marked_english(logged_in, session, ann,
                                                                                      clock):
    session.add(m.Notification(user_id=ann.id, kind="held", message="Something the old app said.",
                               created_at=clock.now(), data={}))
    session.commit()
    html = _text(logged_in.get("/notifications"))
    assert '<span class="note-text" lang="en">Something the old app said.</span>' in html


def _api_headers(client, email="ann@example.com"):
    r = client.post("/api/v1/auth/login", json={"email": email, "password": "correct-horse"})
    return {"Authorization": f"Bearer {r.json['token']}"}


@pytest.mark.parametrize("accept,lang", [("zh-CN,zh;q=0.9,en;q=0.8", "zh-Hans"), ("en-US,en;q=0.9", "en"),
                                         ("fr-FR, en;q=0.5", "en"), (None, "zh-Hans"), ("de", "zh-Hans"),
                                         ("en;q=0.5, zh-TW;q=0.8", "zh-Hans")])
def test_the_api_gives_notifications_in_the_accept_language_and_keeps_the_english_message(
        logged_in, client, session, ann, station, accept, lang):
    book_via_page(logged_in)
    headers = _api_headers(client)
    if accept:
        headers["Accept-Language"] = accept
    r = client.get("/api/v1/me/notifications", headers=headers)
    assert r.status_code == 200 and r.headers["Content-Language"] == lang
    (n,) = r.json
    assert n["code"] == "booked" and n["params"]["charger"] == "F1"
    assert n["message"] == f"Booked F1 (B1) at {station.name}, 11-22 15:00-15:30."
    if lang == "en":
        assert n["text"] == n["message"]
    else:
        assert n["text"] == f"已预约 {station.name} 的 F1（B1），11-22 15:00-15:30。"


# -- the manager's attention list ----------------------------------------------------------------------


@pytest.fixture
def boss(session, clock, station):
    from chargeapp.services.registry import create_user
    from chargeapp.services.auth import password_hasher

    user = create_user(session, email="boss@example.com", password_hash=password_hasher(1, 1024, 1).hash(
        "correct-horse"), now=clock.now() - timedelta(days=1), name="Boss", role="manager", stations=(station,))
    session.commit()
    return user


def _faulted_f2(session, clock):
    now = clock.now()
    charging.record_status(session, station_code="s1", charger_code="F2", connector=1, status="Faulted",
                           error_code="PowerMeterFailure", at=now - timedelta(minutes=20), now=now)
    session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D2")).online = False
    start = now - timedelta(hours=13)
    charging.record_transaction(session, station_code="s1", charger_code="F3", event="start", connector=1,
                                transaction_id=5, id_tag="T", meter_wh=0, at=start, now=now)
    session.commit()


def test_the_attention_list_is_chinese_on_the_chinese_live_view_and_english_on_the_english_one(
        client, session, clock, boss):
    _faulted_f2(session, clock)
    assert log_in(client, "boss@example.com", next_path="/manage/").status_code == 302
    html = _text(client.get("/manage/s1/live"))
    assert '<span class="note-text" lang="zh-Hans">F2 的 1 号枪故障（PowerMeterFailure）。</span>' in html
    assert "门传感器 D2 离线" in html
    assert "F3 上的充电会话" in html and "已持续 13 小时（自 11-22 01:00 起）" in html  # station time (UTC+8)
    post(client, "/language", {"lang": "en", "next": "/manage/"}, page="/manage/")
    html = _text(client.get("/manage/s1/live"))
    assert '<span class="note-text" lang="en">F2 connector 1 is Faulted (PowerMeterFailure).</span>' in html
    assert "open for 13 h (since 11-22 01:00)" in html


@pytest.mark.parametrize("accept,faulted", [
    ("zh-Hans", "F2 的 1 号枪故障（PowerMeterFailure）。"),
    ("en", "F2 connector 1 is Faulted (PowerMeterFailure)."),
])
def test_the_api_gives_the_attention_list_in_the_accept_language(client, session, clock, boss, accept, faulted):
    _faulted_f2(session, clock)
    headers = {**_api_headers(client, "boss@example.com"), "Accept-Language": accept}
    r = client.get("/api/v1/manage/stations/s1", headers=headers)
    assert r.status_code == 200, r.json
    item = next(i for i in r.json["attention"] if i["code"] == "charger_faulted")
    assert item["text"] == faulted
    assert item["message"] == "F2 connector 1 is Faulted (PowerMeterFailure)."
    assert item["params"] == {"charger": "F2", "connector": 1, "error_code": "PowerMeterFailure"}
    assert all(i["text"] for i in r.json["attention"])


# -- old rows: the migration reads their sentences back into codes ------------------------------------

OLD_SENTENCES = [(code, english) for code, _, english in NOTIFICATIONS] + [
    ("receipt_corrected", "Receipt #7 was corrected: energy 20.000 kWh -> 21.500 kWh; energy 21.51 CNY -> "
                          "27.11 CNY (+5.60 CNY); idle fee 3.00 CNY -> 0.00 CNY (-3.00 CNY); total 30.00 CNY -> "
                          "32.60 CNY."),
]
KIND_OF = {"no_show_cancelled_late": "no_show", "delayed_hold_refused": "delayed", "held_after_wait": "held",
           "held_after_delay": "held", "moved_charger_down": "moved", "disrupted_charger_down": "disrupted",
           "disrupted_maintenance": "disrupted"}
UNREADABLE = [("held", "F1 is yours."), ("booked", "Booked F1 at s1, tomorrow."),
              ("receipt_corrected", "Receipt #7 was corrected: energy 1 kWh -> 2 kWh; total 1 CNY -> 2 CNY."),
              ("something_else", "Booking cancelled, free of charge.")]


def test_the_migration_reads_old_english_notifications_into_codes_and_keeps_what_it_cannot_read(
        database_url, clock):
    from flask_migrate import upgrade

    from chargeapp.app import create_app
    from tests.factories import make_driver
    from tests.integration.test_cli_and_migrations import _fresh_schema

    before = "ddd776fabd23"  # the revision before the notification codes (a3c9e5d1f047)
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CHARGEAPP_CLOCK": clock})
    with app.app_context():
        _fresh_schema()
        upgrade(revision=before)
        session = db.session
        driver = make_driver(session, clock.now())
        session.commit()
        old = [(KIND_OF.get(code, code), text) for code, text in OLD_SENTENCES] + UNREADABLE
        columns = ", ".join(["user_id", "kind", "message", "data", "created_at"])
        for kind, text in old:  # the table as it was: no code, no params
            session.execute(db.text(f"INSERT INTO notifications ({columns}) VALUES (:u, :k, :msg, '{{}}', :at)"),
                            {"u": driver.id, "k": kind, "msg": text, "at": clock.now()})
        session.commit()
        session.remove()  # (no transaction open while migrating)
        upgrade()
        rows = session.execute(select(m.Notification.message, m.Notification.code, m.Notification.params)
                               .order_by(m.Notification.id)).all()
        assert [r.message for r in rows] == [text for _, text in old]  # every sentence kept as it was
        read, unread = rows[:len(OLD_SENTENCES)], rows[len(OLD_SENTENCES):]
        assert [r.code for r in read] == [code for code, _ in OLD_SENTENCES]
        expected = {code: params for code, params, _ in NOTIFICATIONS}
        expected["held_after_wait"] = {"where": "F2 (B1)", "deadline": "15:10"}  # (no delay in the old sentence)
        for r in read[:-1]:
            assert r.params == expected[r.code], r.code
        assert read[-1].params == {"receipt": 7, "changes": [
            {"what": "energy", "before": 20000, "after": 21500},
            {"what": "energy_fen", "before": 2151, "after": 2711},
            {"what": "idle_fen", "before": 300, "after": 0},
            {"what": "total", "before": 3000, "after": 3260}]}
        assert [(r.code, r.params) for r in unread] == [(None, None)] * len(UNREADABLE)
        with app.test_request_context(), force_locale("zh_Hans"):
            shown = [messages.notification_text(n) for n in session.scalars(
                select(m.Notification).order_by(m.Notification.id))]
        assert shown[-len(UNREADABLE):] == [text for _, text in UNREADABLE]
        assert all(CJK.search(text) for text in shown[:len(OLD_SENTENCES)])
        assert "¥27.11" in shown[len(OLD_SENTENCES) - 1]
        session.remove()
        db.engine.dispose()
