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


# -- receipt explanations ("计费明细") -----------------------------------------------------------------

RECEIPT_LINES = [
    ("charging_session", {"charger": "F2", "from": "12:00", "to": "2026-11-23 00:30", "energy_wh": 20000},
     "Charger F2 from 12:00 to 2026-11-23 00:30: 20.000 kWh.", "充电桩 F2，12:00 至 2026-11-23 00:30：20.000 kWh。"),
    ("charging_energy", {"bands": [{"band": "peak", "wh": 12000, "price": 10755},
                                   {"band": "valley", "wh": 8000, "price": 3000}], "energy_fen": 1531},
     "Energy: 12.000 kWh peak at ¥1.0755/kWh, 8.000 kWh valley at ¥0.3000/kWh: ¥15.31.",
     "电费：峰时 12.000 kWh × ¥1.0755/kWh、谷时 8.000 kWh × ¥0.3000/kWh：¥15.31。"),
    ("charging_service", {"energy_wh": 20000, "price": 8000, "service_fen": 1600},
     "Service: 20.000 kWh at ¥0.8000/kWh: ¥16.00.", "服务费：20.000 kWh × ¥0.8000/kWh：¥16.00。"),
    ("idle_slow_charger", {}, "No idle fee on slow chargers.", "慢充桩不收占位费。"),
    ("idle_no_charging", {}, "No Charging time recorded: no idle fee.", "没有记录到充电时间：不收占位费。"),
    ("idle_not_reported", {"charging_end": "12:30"},
     "Charging ended at 12:30; the connector has not reported Available yet: no idle fee charged.",
     "充电于 12:30 结束；充电枪尚未报告空闲：不收占位费。"),
    ("idle_within_grace", {"idle_seconds": 359, "from": "12:30", "until": "12:35", "grace_seconds": 600},
     "Idle 5 min 59 s from 12:30 until 12:35 (10 min free): no idle fee.",
     "占位 5 分 59 秒，12:30 至 12:35（免费 10 分钟）：不收占位费。"),
    ("idle_billed", {"idle_seconds": 1500, "from": "12:30", "until": "12:55", "grace_seconds": 600, "minutes": 15,
                     "rate_fen": 100, "amount_fen": 1500},
     "Idle 25 min from 12:30 until 12:55 (10 min free): 15 min at ¥1.00/min = ¥15.00.",
     "占位 25 分钟，12:30 至 12:55（免费 10 分钟）：15 分钟 × ¥1.00/分钟 = ¥15.00。"),
    ("idle_capped", {"idle_seconds": 1500, "from": "12:30", "until": "12:55", "grace_seconds": 600, "minutes": 15,
                     "rate_fen": 100, "amount_fen": 1500, "fee_fen": 1000},
     "Idle 25 min from 12:30 until 12:55 (10 min free): 15 min at ¥1.00/min = ¥15.00, capped at ¥10.00.",
     "占位 25 分钟，12:30 至 12:55（免费 10 分钟）：15 分钟 × ¥1.00/分钟 = ¥15.00，封顶 ¥10.00。"),
    ("total", {"total_fen": 2711}, "Total ¥27.11.", "合计 ¥27.11。"),
    ("parking_qualified", {"charged_seconds": 1020, "needed_seconds": 900, "free_seconds": 7200, "until": "16:00"},
     "Charged 17 min (15 min needed): first 120 min free, until 16:00.",
     "已充电 17 分钟（需 15 分钟）：前 120 分钟 免费停车，至 16:00。"),
    ("parking_not_qualified", {"charged_seconds": 0, "needed_seconds": 900},
     "Charged 0 min (15 min needed): no free parking.", "已充电 0 分钟（需 15 分钟）：没有免费停车。"),
    ("parking_block_after_free", {"blocks": 1, "block_seconds": 1800, "fee_fen": 500},
     "1 block of 30 min after that: ¥5.00.", "此后 1 个 30 分钟 计费段：¥5.00。"),
    ("parking_blocks_from_entry", {"blocks": 3, "block_seconds": 1800, "entry": "13:00", "fee_fen": 1500},
     "3 blocks of 30 min from entry at 13:00: ¥15.00.", "自 13:00 入场起 3 个 30 分钟 计费段：¥15.00。"),
    ("parking_left_in_free_time", {"fee_fen": 0}, "Left within the free time: ¥0.00.", "在免费时间内离场：¥0.00。"),
    ("parking_daily_cap", {"day": "2026-11-22", "blocks": 30, "cap_fen": 6000},
     "Daily cap on 2026-11-22: 30 blocks capped at ¥60.00.", "2026-11-22 当日封顶：30 个计费段，封顶 ¥60.00。"),
    ("correction_waived", {"receipt": 3, "components": ["idle_fen"], "reason": "charger fault",
                           "changes": [{"what": "idle_fen", "before": 1000, "after": 0},
                                       {"what": "total", "before": 3711, "after": 2711}]},
     "Correction of receipt #3: idle fee waived by the station manager: idle fee ¥10.00 -> ¥0.00 (-¥10.00); "
     "total ¥37.11 -> ¥27.11. Reason: charger fault",
     "更正收据 #3：站长免除了占位费：占位费 ¥10.00 → ¥0.00（-¥10.00）；合计 ¥37.11 → ¥27.11。原因：charger fault"),
]


@pytest.mark.parametrize("code,params,en,zh", RECEIPT_LINES, ids=[c for c, *_ in RECEIPT_LINES])
def test_every_receipt_line_reads_in_english_and_in_chinese_with_yuan(app, code, params, en, zh):
    receipt = {"explanation": "(stored)", "explanation_lines": [{"code": code, "params": params}]}
    with app.test_request_context():
        with force_locale("en"):
            assert messages.receipt_lines(receipt) == [en]
        with force_locale("zh_Hans"):
            assert messages.receipt_lines(receipt) == [zh]


def _charged_receipt(session, clock, ann):
    from chargeapp.services import receipts
    from tests.integration.test_pages import _charge, _tag

    _charge(session, clock, charger="F2", tag=_tag(session, ann), start_min=-120, stop_min=-90)
    receipts.settle_due(session, clock.now())
    session.commit()
    return session.scalar(select(m.Receipt).where(m.Receipt.driver_id == ann.id))


def test_a_charging_receipt_is_explained_line_by_line_in_the_pages_language(logged_in, session, clock, ann):
    receipt = _charged_receipt(session, clock, ann)
    assert [line["code"] for line in receipt.explanation_lines] == [
        "charging_session", "charging_energy", "charging_service", "idle_within_grace", "total"]
    html = _text(logged_in.get("/charging"))
    assert '<ul class="explanation" lang="zh-Hans">' in html
    assert "<li>充电桩 F2，12:00 至 12:30：20.000 kWh。</li>" in html
    assert f"<li>合计 ¥{receipt.total_fen // 100}.{receipt.total_fen % 100:02d}。</li>" in html
    assert "CNY" not in html
    post(logged_in, "/language", {"lang": "en", "next": "/charging"})
    html = _text(logged_in.get("/charging"))
    assert '<ul class="explanation" lang="en">' in html and "<li>Charger F2 from 12:00 to 12:30: 20.000 kWh.</li>" in html
    assert "CN¥" not in html and "CNY" not in html


@pytest.mark.parametrize("accept", ["zh-CN", "en"])
def test_the_api_gives_a_receipts_explanation_in_the_accept_language(logged_in, client, session, clock, ann,
                                                                      accept):
    receipt = _charged_receipt(session, clock, ann)
    r = client.get("/api/v1/me/receipts", headers={**_api_headers(client), "Accept-Language": accept})
    assert r.status_code == 200 and r.headers["Content-Language"] == ("en" if accept == "en" else "zh-Hans")
    (body,) = r.json
    assert body["explanation"] == receipt.explanation  # English, as stored
    assert body["explanation_lines"] == receipt.explanation_lines
    if accept == "en":
        assert body["explanation_text"].startswith("Charger F2 from 12:00 to 12:30: 20.000 kWh. Energy:")
    else:
        assert body["explanation_text"].startswith("充电桩 F2，12:00 至 12:30：20.000 kWh。 电费：")


def test_an_old_receipt_without_lines_is_shown_as_stored_marked_english(logged_in, session, clock, ann):
    receipt = _charged_receipt(session, clock, ann)
    receipt.explanation_lines = None
    session.commit()
    html = _text(logged_in.get("/charging"))
    assert re.search(rf'<ul class="explanation" lang="en">\s*<li>{re.escape(receipt.explanation)}</li>', html)


def test_the_migration_reads_old_receipt_explanations_back_into_the_lines_the_services_write(database_url, clock):
    """Receipts written by the services (charging, parking, a manager's waiver), their lines dropped by a
    downgrade: the upgrade reads the English explanations back into the very lines the services write; an
    explanation it cannot read stays as stored with no lines."""
    from flask_migrate import downgrade, upgrade

    from chargeapp.app import create_app
    from chargeapp.services import receipts
    from tests.factories import make_station
    from tests.integration.test_cli_and_migrations import _fresh_schema
    from tests.integration.test_receipts import charged, manager_of, new_driver, stay

    before = "ddd776fabd23"
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CHARGEAPP_CLOCK": clock})
    with app.app_context():
        _fresh_schema()
        upgrade()
        session = db.session
        now = clock.now()
        station = make_station(session, now)
        driver = new_driver(session)
        charged(session, station, driver, now - timedelta(hours=3), 20, stop_after=25)  # an idle fee
        stay(session, station, now - timedelta(hours=3), now - timedelta(minutes=30))  # free time, then blocks
        stay(session, station, now - timedelta(hours=6), now - timedelta(hours=5), plate="沪B99999")  # no charging
        session.commit()
        receipts.settle_due(session, now - timedelta(minutes=1))
        charging = session.scalar(select(m.Receipt).where(m.Receipt.kind == "charging"))
        receipts.waive_fee(session, now, manager_of(session, station), charging.id, "charger fault; sorry",
                           component="idle")
        session.commit()
        written = {r.id: r.explanation_lines for r in session.scalars(select(m.Receipt))}
        codes = {line["code"] for lines in written.values() for line in lines}
        assert {"charging_session", "idle_billed", "parking_qualified", "parking_not_qualified",
                "correction_waived"} <= codes, codes
        garbled = session.scalar(select(m.Receipt).where(m.Receipt.kind == "parking"))
        garbled.explanation = "Parking as the old app wrote it."
        garbled_id = garbled.id
        session.commit()
        session.remove()

        downgrade(revision=before)
        upgrade()
        read = {r.id: r.explanation_lines for r in session.scalars(select(m.Receipt))}
        assert read.pop(garbled_id) is None
        assert read == {i: lines for i, lines in written.items() if i != garbled_id}
        assert all(r.explanation for r in session.scalars(select(m.Receipt)))
        session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("accept,text", [
    ("zh", "目前已充电 10 分钟（需 15 分钟）：再充 5 分钟 即可免费停车至 15:00。 现在离场需付 ¥10.00。"),
    ("en", "Charged 10 min so far (15 min needed): charge 5 min more for free parking until 15:00. "
           "Leaving now costs ¥10.00."),
])
def test_the_api_explains_an_open_stay_in_the_accept_language(logged_in, client, session, clock, ann, accept, text):
    from chargeapp.services import gates
    from tests.integration.test_pages import _charge, _tag

    gates.record_gate_passage(session, station_code="s1", gate_code="G-in", plate="沪A12345", direction="in",
                              at=clock.now() - timedelta(minutes=60), now=clock.now())
    _charge(session, clock, tag=_tag(session, ann), start_min=-10)
    session.commit()
    r = client.get("/api/v1/me/parking", headers={**_api_headers(client), "Accept-Language": accept})
    assert r.status_code == 200, r.json
    (stay,) = r.json
    assert stay["explanation_text"] == text
    assert stay["explanation"].startswith("Charged 10 min so far (15 min needed)")
