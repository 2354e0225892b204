"""The manager dashboard's pages through Flask's test client, CSRF on: who may see what,
the live view and its fragment, every change (each in the audit log), refusals (4xx, in
the manager's language, nothing changed, the form re-shown) and both languages.

The station is the factories' ``s1`` (F1-F3 fast, S01-S02 slow, zones hall and tea,
sensors D1 and D2, gates G-in and G-out); the clock is fixed at 2026-11-22 14:00 Shanghai.
The test and the client's requests share one app context, hence one database session:
what a request committed is visible to the test directly.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from chargeapp.db import models as m
from chargeapp.services import charging, gates, receipts
from chargeapp.services.auth import password_hasher
from chargeapp.services.registry import create_user
from tests.factories import make_driver, make_station

pytestmark = pytest.mark.integration

PASSWORD = "correct-horse"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
UTC = timezone.utc


@pytest.fixture
def app(app):
    # CSRF stays on in every test here, as in production (Flask-WTF's default).
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def _account(session, clock, email, role, stations=()):
    user = create_user(session, email=email, password_hash=password_hasher(1, 1024, 1).hash(PASSWORD),
                       now=clock.now() - timedelta(days=1), name=email.split("@")[0].title(), role=role,
                       stations=tuple(stations))
    session.commit()
    return user


def token(client, path="/login") -> str:
    return CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def log_in(client, email, next_path=None):
    data = {"email": email, "password": PASSWORD, "csrf_token": token(client)}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/login", data=data)


def post(client, path, data=None, page="/manage/"):
    """A form post with the token of this client's session (as the browser sends it)."""
    return client.post(path, data={**(data or {}), "csrf_token": token(client, page)})


def audit_actions(session) -> list[str]:
    return list(session.scalars(select(m.AuditEntry.action).order_by(m.AuditEntry.id)))


def text(r) -> str:
    return r.get_data(as_text=True)


@pytest.fixture
def other_station(session, clock):
    st = make_station(session, clock.now(), code="s2")
    session.commit()
    return st


@pytest.fixture
def boss(session, clock, station):
    return _account(session, clock, "boss@example.com", "manager", (station,))


@pytest.fixture
def manager(client, boss):
    assert log_in(client, "boss@example.com").status_code == 302
    return client


@pytest.fixture
def english(manager):
    post(manager, "/language", {"lang": "en", "next": "/manage/"})
    return manager


# -- who may see what -----------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page_and_back(client, station):
    for path in ("/manage/", "/manage/s1", "/manage/s1/zones", "/manage/s1/audit"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=" + path), path
    r = client.post("/manage/s1/zones/hall/count", data={"count": "3", "reason": "x",
                                                          "csrf_token": token(client)})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_a_driver_gets_a_403_page(client, session, clock, station):
    _account(session, clock, "ann@example.com", "driver")
    log_in(client, "ann@example.com")
    for path in ("/manage/", "/manage/s1", "/manage/s1/chargers"):
        r = client.get(path)
        assert r.status_code == 403 and "此页面仅供站点管理员使用" in text(r), path
    r = post(client, "/manage/s1/chargers/F1", {"in_service": "0", "reason": "x"}, page="/stations")
    assert r.status_code == 403
    assert session.scalar(select(m.Charger.in_service).where(m.Charger.code == "F1")) is True


def test_another_managers_station_is_a_404_and_nothing_changes(manager, session, other_station):
    for path in ("/manage/s2", "/manage/s2/live", "/manage/s2/zones", "/manage/s2/rules", "/manage/s2/audit",
                 "/manage/s2/dead-letters", "/manage/s2/receipts", "/manage/nowhere"):
        r = manager.get(path)
        assert r.status_code == 404, path
    r = post(manager, "/manage/s2/chargers/F1", {"in_service": "0", "reason": "mine now"})
    assert r.status_code == 404 and "没有这个充电站" in text(r)
    assert all(c.in_service for c in other_station.chargers)
    assert audit_actions(session) == []
    assert "s2" not in text(manager.get("/manage/"))


def test_a_receipt_session_or_stay_of_another_station_is_a_404(manager, session, clock, other_station):
    stay = _stay(session, clock, station_code="s2")
    r = manager.get(f"/manage/s1/stays/{stay.id}")
    assert r.status_code == 404
    r = post(manager, f"/manage/s1/stays/{stay.id}/plate", {"plate": "沪B99999", "reason": "misread"})
    assert r.status_code == 404
    assert session.get(m.ParkingStay, stay.id).plate == "沪A12345"
    assert manager.get(f"/manage/s1/receipts/{2**31 - 1}").status_code == 404
    assert manager.get("/manage/s1/sessions/999").status_code == 404


def test_a_manager_without_next_lands_on_the_dashboard_and_a_driver_on_the_finder(client, session, clock, boss):
    assert log_in(client, "boss@example.com").headers["Location"] == "/manage/"
    assert client.get("/login").headers["Location"] == "/manage/"  # already logged in
    other = client.application.test_client()
    _account(session, clock, "ann@example.com", "driver")
    assert log_in(other, "ann@example.com").headers["Location"] == "/stations"
    third = client.application.test_client()
    assert log_in(third, "boss@example.com", next_path="/manage/s1/zones").headers["Location"] == "/manage/s1/zones"


# -- the live view --------------------------------------------------------------------------


def test_my_stations_lists_only_mine_with_what_needs_attention(manager, session, clock, other_station):
    html = text(manager.get("/manage/"))
    assert 'href="/manage/s1"' in html and 'href="/manage/s2"' not in html
    assert "一切正常" in html
    charging.record_status(session, station_code="s1", charger_code="F2", connector=1, status="Faulted",
                           error_code="GroundFailure", at=clock.now() - timedelta(minutes=20), now=clock.now())
    session.commit()
    assert "1 项需要处理" in text(manager.get("/manage/"))


def test_the_live_view_shows_states_time_in_state_zones_devices_sessions_and_attention(manager, session, clock):
    now = clock.now()
    charging.record_status(session, station_code="s1", charger_code="F2", connector=1, status="Faulted",
                           error_code="GroundFailure", at=now - timedelta(minutes=20), now=now)
    session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D2")).online = False
    session.scalar(select(m.Gate).where(m.Gate.code == "G-out")).online = False
    start = now - timedelta(hours=13)
    charging.record_transaction(session, station_code="s1", charger_code="F3", event="start", connector=1,
                                transaction_id=5, id_tag="T", meter_wh=0, at=start, now=now)
    session.commit()
    r = manager.get("/manage/s1")
    assert r.status_code == 200
    html = text(r)
    assert "故障" in html and "GroundFailure" in html and "20 分钟" in html  # F2 faulted for 20 min
    assert "充电会话过久未结束" in html and "13 小时 0 分钟" in html
    assert "门传感器离线" in html and "道闸离线" in html
    assert "人数不确定" in html  # the tea room, counted by the offline D2
    assert 'data-src="/manage/s1/live"' in html and "js/manage-live.js" in html
    assert "css/manage.css" in html
    fragment = manager.get("/manage/s1/live")
    assert fragment.status_code == 200
    body = text(fragment)
    assert 'data-live-fragment="s1"' in body and "<html" not in body and "GroundFailure" in body


def test_times_are_in_the_stations_time_zone(manager, session, clock):
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Charging",
                           at=datetime(2026, 11, 22, 5, 30, tzinfo=UTC), now=clock.now())
    session.commit()
    html = text(manager.get("/manage/s1"))
    assert "13:30" in html  # 05:30 UTC is 13:30 in Shanghai
    assert "Asia/Shanghai" in html


# -- chargers ----------------------------------------------------------------------------------


def test_taking_a_charger_out_of_service_and_back_is_audited_with_its_reason(manager, session):
    r = post(manager, "/manage/s1/chargers/F1", {"in_service": "0", "reason": "cable damaged"},
             page="/manage/s1/chargers")
    assert r.status_code == 302 and r.headers["Location"] == "/manage/s1/chargers"
    page = text(manager.get("/manage/s1/chargers"))
    assert "F1 已停用" in page
    f1 = session.scalar(select(m.Charger).where(m.Charger.code == "F1"))
    assert f1.in_service is False
    assert post(manager, "/manage/s1/chargers/F1", {"in_service": "1", "reason": "repaired"}).status_code == 302
    assert f1.in_service is True
    assert audit_actions(session) == ["charger.out_of_service", "charger.in_service"]
    audit = text(manager.get("/manage/s1/audit"))
    assert "cable damaged" in audit and "repaired" in audit and "充电桩停用" in audit and "Boss" in audit


def test_a_charger_change_without_a_reason_is_a_422_and_changes_nothing(manager, session):
    r = post(manager, "/manage/s1/chargers/F1", {"in_service": "0", "reason": "  "})
    assert r.status_code == 422
    assert "请说明原因" in text(r)
    assert session.scalar(select(m.Charger.in_service).where(m.Charger.code == "F1")) is True
    assert audit_actions(session) == []
    assert post(manager, "/manage/s1/chargers/NOPE", {"in_service": "0", "reason": "x"}).status_code == 404


# -- zones ------------------------------------------------------------------------------------


def test_setting_a_zone_count_is_audited_and_shown(manager, session):
    r = post(manager, "/manage/s1/zones/hall/count", {"count": "7", "reason": "counted by hand"})
    assert r.status_code == 302
    html = text(manager.get("/manage/s1/zones"))
    assert "7 / 20 人" in html and "区域 hall 现有 7 人。" in html
    entry = session.scalar(select(m.AuditEntry))
    assert entry.action == "zone.set_count" and entry.after == {"count": 7} and entry.reason == "counted by hand"


def test_a_negative_capacity_is_a_422_with_the_message_and_what_was_typed(manager, session):
    r = post(manager, "/manage/s1/zones/hall", {"name": "大厅改名", "name_en": "Hall", "capacity": "-3"})
    assert r.status_code == 422
    html = text(r)
    assert "0 到 100000 之间的整数" in html
    assert 'value="大厅改名"' in html and 'value="-3"' in html
    zone = session.scalar(select(m.Zone).where(m.Zone.code == "hall"))
    assert zone.capacity == 20 and zone.name == "Hall"
    assert audit_actions(session) == []


def test_a_zone_count_without_a_reason_or_not_a_number_is_refused(manager, session):
    assert post(manager, "/manage/s1/zones/hall/count", {"count": "5", "reason": ""}).status_code == 422
    assert post(manager, "/manage/s1/zones/hall/count", {"count": "five", "reason": "x"}).status_code == 422
    assert post(manager, "/manage/s1/zones/hall/count", {"count": str(10**30), "reason": "x"}).status_code == 422
    assert audit_actions(session) == []


def test_zones_are_added_and_updated_and_a_taken_code_is_a_409(manager, session):
    r = post(manager, "/manage/s1/zones", {"code": "nap", "name": "午睡区", "name_en": "Nap room", "capacity": "6"})
    assert r.status_code == 302
    r = post(manager, "/manage/s1/zones/nap", {"name": "午睡区", "name_en": "Nap room", "capacity": "9",
                                               "reason": "more beds"})
    assert r.status_code == 302
    assert session.scalar(select(m.Zone.capacity).where(m.Zone.code == "nap")) == 9
    r = post(manager, "/manage/s1/zones", {"code": "nap", "name": "又一个", "capacity": "1"})
    assert r.status_code == 409 and "已有使用该代码的区域" in text(r) and 'value="又一个"' in text(r)
    assert audit_actions(session) == ["zone.create", "zone.update"]
    assert post(manager, "/manage/s1/zones/nope", {"name": "x", "capacity": "1"}).status_code == 404


# -- rules and opening hours --------------------------------------------------------------------


def _rules_form(session, boss, **changes) -> dict:
    """The rules form as the page fills it, with some values changed."""
    from chargeapp.services import manage

    form = {k: "" if v is None else str(v) for k, v in manage.get_rules(session, boss, "s1").items()}
    form.update({k: str(v) for k, v in changes.items()})
    return form


def test_rules_are_saved_and_audited(manager, session, station, boss):
    r = post(manager, "/manage/s1/rules", _rules_form(session, boss, free_parking_minutes=150, reason="winter"))
    assert r.status_code == 302
    assert station.rules.free_parking_minutes == 150
    entry = session.scalar(select(m.AuditEntry))
    assert entry.action == "rules.update" and entry.after == {"free_parking_minutes": 150}


def test_a_rule_out_of_range_or_a_slot_not_dividing_a_day_is_a_422(manager, session, boss):
    r = post(manager, "/manage/s1/rules", _rules_form(session, boss, slot_minutes=7))
    assert r.status_code == 422 and "必须能整除一天" in text(r)
    r = post(manager, "/manage/s1/rules", _rules_form(session, boss, suspension_days=0))
    assert r.status_code == 422 and "1 到 3650 之间的整数" in text(r)
    assert audit_actions(session) == []


def test_opening_hours_are_saved_and_a_25_oclock_is_refused(manager, session, station):
    r = post(manager, "/manage/s1/hours", {"opens_at": "25:00", "closes_at": "22:00"})
    assert r.status_code == 422
    assert "请按“HH:MM”填写时间" in text(r) and 'value="25:00"' in text(r)
    r = post(manager, "/manage/s1/hours", {"opens_at": "07:00", "closes_at": ""})
    assert r.status_code == 422
    assert audit_actions(session) == []
    r = post(manager, "/manage/s1/hours", {"opens_at": "07:00", "closes_at": "23:00", "reason": "winter"})
    assert r.status_code == 302
    assert station.opens_at.hour == 7 and station.closes_at.hour == 23
    assert audit_actions(session) == ["hours.update"]


# -- maintenance windows ------------------------------------------------------------------------


def test_a_maintenance_window_is_added_in_station_time_and_deleted(manager, session):
    r = post(manager, "/manage/s1/maintenance", {"starts_at": "2026-11-23T02:00", "ends_at": "2026-11-23T04:30",
                                                 "reason": "transformer check"})
    assert r.status_code == 302
    window = session.scalar(select(m.MaintenanceWindow))
    assert window.starts_at == datetime(2026, 11, 22, 18, 0, tzinfo=UTC)  # 02:00 Shanghai
    html = text(manager.get("/manage/s1/maintenance"))
    assert "02:00" in html and "04:30" in html and "transformer check" in html
    r = post(manager, f"/manage/s1/maintenance/{window.id}/delete", {"reason": "postponed"})
    assert r.status_code == 302
    assert session.scalar(select(func.count(m.MaintenanceWindow.id))) == 0
    assert audit_actions(session) == ["maintenance.create", "maintenance.delete"]


def test_a_maintenance_window_ending_before_it_starts_or_without_a_reason_is_a_422(manager, session):
    r = post(manager, "/manage/s1/maintenance", {"starts_at": "2026-11-23T04:00", "ends_at": "2026-11-23T02:00",
                                                 "reason": "check"})
    assert r.status_code == 422 and "结束时间必须晚于开始时间" in text(r)
    assert 'value="2026-11-23T04:00"' in text(r)
    r = post(manager, "/manage/s1/maintenance", {"starts_at": "2026-11-23T02:00", "ends_at": "2026-11-23T04:00"})
    assert r.status_code == 422
    r = post(manager, "/manage/s1/maintenance", {"starts_at": "tomorrow", "ends_at": "2026-11-23T04:00",
                                                 "reason": "x"})
    assert r.status_code == 422
    r = post(manager, "/manage/s1/maintenance", {"starts_at": "2026-11-21T02:00", "ends_at": "2026-11-21T04:00",
                                                 "reason": "x"})
    assert r.status_code == 422
    assert session.scalar(select(func.count(m.MaintenanceWindow.id))) == 0
    assert post(manager, "/manage/s1/maintenance/999/delete", {}).status_code == 404


# -- tariffs ------------------------------------------------------------------------------------


def test_a_tariff_version_is_added_with_prices_in_yuan_and_the_rest_inherited(manager, session):
    r = post(manager, "/manage/s1/tariffs", {"effective_from": "2026-12-01T00:00", "peak_price": "1.2345",
                                             "parking_block_fen": "3.50", "reason": "new contract"})
    assert r.status_code == 302
    versions = session.scalars(select(m.TariffVersion).order_by(m.TariffVersion.effective_from)).all()
    new = versions[-1]
    assert new.peak_price == 12345 and new.parking_block_fen == 350
    assert new.flat_price == versions[0].flat_price and new.periods == versions[0].periods
    assert new.effective_from == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert audit_actions(session) == ["tariff.create"]
    assert "¥1.2345" in text(manager.get("/manage/s1/tariffs"))


def test_a_tariff_in_the_past_or_with_a_negative_price_or_bad_periods_is_refused(manager, session):
    before = session.scalar(select(func.count(m.TariffVersion.id)))
    r = post(manager, "/manage/s1/tariffs", {"effective_from": "2026-11-01T00:00", "peak_price": "1"})
    assert r.status_code == 422 and "新电价须从现在或之后生效" in text(r)
    r = post(manager, "/manage/s1/tariffs", {"effective_from": "2026-12-01T00:00", "peak_price": "-1"})
    assert r.status_code == 422 and 'value="-1"' in text(r)
    r = post(manager, "/manage/s1/tariffs", {"effective_from": "2026-12-01T00:00", "periods": "00:00-12:00 peak"})
    assert r.status_code == 422 and "电价不可用" in text(r)
    r = post(manager, "/manage/s1/tariffs", {"effective_from": "2026-12-01T00:00", "periods": "all day cheap"})
    assert r.status_code == 422
    assert session.scalar(select(func.count(m.TariffVersion.id))) == before
    assert audit_actions(session) == []


# -- fix-ups: receipts, sessions, plates ----------------------------------------------------------


def _stay(session, clock, station_code="s1", plate="沪A12345", minutes_in=300, minutes_out=None):
    now = clock.now()
    gates.record_gate_passage(session, station_code=station_code, gate_code="G-in", plate=plate, direction="in",
                              at=now - timedelta(minutes=minutes_in), now=now)
    if minutes_out is not None:
        gates.record_gate_passage(session, station_code=station_code, gate_code="G-out", plate=plate,
                                  direction="out", at=now - timedelta(minutes=minutes_out), now=now)
    session.commit()
    return session.scalar(select(m.ParkingStay).where(m.ParkingStay.plate == gates.normalise_plate(plate))
                          .order_by(m.ParkingStay.id.desc()))


def _charging_receipt(session, clock) -> m.Receipt:
    driver = make_driver(session, clock.now(), id_tag="TAG-R")
    now = clock.now()
    start, stop = now - timedelta(minutes=120), now - timedelta(minutes=90)
    charging.record_transaction(session, station_code="s1", charger_code="F2", event="start", connector=1,
                                transaction_id=31, id_tag="TAG-R", meter_wh=1000, at=start, now=now)
    charging.record_transaction(session, station_code="s1", charger_code="F2", event="stop", connector=1,
                                transaction_id=31, id_tag="TAG-R", meter_wh=21000, at=stop, now=now)
    receipts.settle_due(session, now)
    session.commit()
    receipt = session.scalar(select(m.Receipt).where(m.Receipt.driver_id == driver.id))
    assert receipt is not None and receipt.total_fen > 0
    return receipt


def test_waiving_a_fee_issues_a_correction_and_is_audited(manager, session, clock):
    receipt = _charging_receipt(session, clock)
    page = f"/manage/s1/receipts/{receipt.id}"
    assert manager.get(page).status_code == 200
    r = post(manager, f"{page}/waive", {"component": "service_fen", "reason": "charger was slow"}, page=page)
    assert r.status_code == 302
    correction = session.scalar(select(m.Receipt).where(m.Receipt.kind == "correction"))
    assert correction.corrects_id == receipt.id and correction.service_fen == -receipt.service_fen
    assert r.headers["Location"] == f"/manage/s1/receipts/{correction.id}"
    assert audit_actions(session) == ["receipt.waive_fee"]
    assert "charger was slow" in text(manager.get("/manage/s1/audit"))


def test_correcting_a_fee_in_yuan_and_refusals_of_bad_amounts(manager, session, clock):
    receipt = _charging_receipt(session, clock)
    page = f"/manage/s1/receipts/{receipt.id}"
    amounts = {"energy_fen": f"{receipt.energy_fen / 100:.2f}", "service_fen": f"{receipt.service_fen / 100:.2f}"}
    r = post(manager, f"{page}/correct", {**amounts, "idle_fen": "-2", "reason": "x"}, page=page)
    assert r.status_code == 422 and 'value="-2"' in text(r)
    r = post(manager, f"{page}/correct", {**amounts, "idle_fen": "0.00", "reason": "same"}, page=page)
    assert r.status_code == 409 and "无需更正" in text(r)
    r = post(manager, f"{page}/correct", {**amounts, "idle_fen": "3.00", "reason": ""}, page=page)
    assert r.status_code == 422
    assert audit_actions(session) == []
    r = post(manager, f"{page}/correct", {**amounts, "idle_fen": "3.00", "reason": "stayed plugged in"}, page=page)
    assert r.status_code == 302
    correction = session.scalar(select(m.Receipt).where(m.Receipt.kind == "correction"))
    assert correction.idle_fen == 300 - receipt.idle_fen and correction.energy_fen == 0
    assert audit_actions(session) == ["receipt.correct_fee"]


def test_closing_a_stuck_session_needs_a_reason_and_is_audited(manager, session, clock):
    now = clock.now()
    charging.record_transaction(session, station_code="s1", charger_code="F3", event="start", connector=1,
                                transaction_id=9, id_tag="T", meter_wh=0, at=now - timedelta(hours=14), now=now)
    session.commit()
    cs = session.scalar(select(m.ChargingSession))
    page = f"/manage/s1/sessions/{cs.id}"
    assert "关闭此会话" in text(manager.get(page))
    r = post(manager, f"{page}/close", {"reason": ""}, page=page)
    assert r.status_code == 422 and cs.closed_by is None
    r = post(manager, f"{page}/close", {"reason": "x", "at": "2026-11-22T20:00"}, page=page)  # the future
    assert r.status_code == 422 and cs.closed_by is None
    r = post(manager, f"{page}/close", {"reason": "stop message lost", "at": "2026-11-22T08:00"}, page=page)
    assert r.status_code == 302
    assert cs.closed_by == "manager" and cs.stopped_at == datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    assert audit_actions(session) == ["session.close"]
    r = post(manager, f"{page}/close", {"reason": "again"}, page=page)
    assert r.status_code == 409


def test_fixing_a_misread_plate_is_audited_and_an_empty_plate_is_refused(manager, session, clock):
    stay = _stay(session, clock, plate="沪A1234S")
    page = f"/manage/s1/stays/{stay.id}"
    assert "沪A1234S" in text(manager.get("/manage/s1/stays"))
    r = post(manager, f"{page}/plate", {"plate": "", "reason": "misread"}, page=page)
    assert r.status_code == 422
    r = post(manager, f"{page}/plate", {"plate": "沪A 12345", "reason": ""}, page=page)
    assert r.status_code == 422 and 'value="沪A 12345"' in text(r)
    assert stay.plate == "沪A1234S"
    r = post(manager, f"{page}/plate", {"plate": "沪A 12345", "reason": "5 read as S"}, page=page)
    assert r.status_code == 302
    assert stay.plate == "沪A12345" and "plate_fixed" in stay.flags
    entry = session.scalar(select(m.AuditEntry))
    assert entry.action == "stay.fix_plate" and entry.before == {"plate": "沪A1234S"}


# -- dead letters and the audit log ----------------------------------------------------------------


def test_dead_letters_are_listed_newest_first_and_paged(manager, session, clock):
    for i in range(55):
        session.add(m.DeadLetter(received_at=clock.now() - timedelta(minutes=i), topic=f"cs/s1/F1/status/{i}",
                                 payload=b'{"bad": \xff}', reason="invalid_payload", station_code="s1"))
    session.add(m.DeadLetter(received_at=clock.now(), topic="cs/s2/secret", payload=b"x", reason="unknown",
                             station_code="s2"))
    session.commit()
    html = text(manager.get("/manage/s1/dead-letters"))
    # newest (last stored) first: 54 down to 5 on the first page, 4 to 0 on the next
    assert "cs/s1/F1/status/54<" in html and "cs/s1/F1/status/4<" not in html and "cs/s2/secret" not in html
    older = re.search(r'href="(/manage/s1/dead-letters\?before=\d+)"', html).group(1)
    assert "cs/s1/F1/status/0<" in text(manager.get(older))
    assert manager.get("/manage/s1/dead-letters?before=abc").status_code == 200


def test_the_dead_letter_page_shows_the_retention_the_cap_and_what_the_cap_dropped(app, manager, english, session,
                                                                                  clock):
    from chargeapp.services.dead_letters import hour_of

    hour = hour_of(clock.now())
    for source, at, refused, dropped in [("stations/s1/chargers/F1", hour, 340, 240),
                                         ("stations/s1/chargers/F1", hour - timedelta(days=3), 105, 5),
                                         ("stations/s1/doors/D1", hour - timedelta(hours=2), 150, 50),
                                         ("stations/s1/gates/G-in", hour, 20, 0),  # under the cap: not listed
                                         ("stations/s1/chargers/F2", hour - timedelta(days=31), 900, 800),  # too old
                                         ("stations/s2/chargers/F1", hour, 500, 400)]:  # another station's
        session.add(m.DeadLetterCount(source=source, hour=at, station_code=source.split("/")[1], messages=refused,
                                      dropped=dropped))
    session.commit()
    html = text(english.get("/manage/s1/dead-letters"))
    assert "Each is kept for 30 days, then deleted." in html
    assert "At most 100 are kept per device an hour; the rest are only counted." in html
    assert "295 messages over the hourly limit in the last 30 days." in html
    rows = re.findall(r"<tr><th scope=\"row\"><code>([^<]+)</code></th><td>(\d+)</td><td>(\d+)</td><td>([^<]+)</td>",
                      html)
    assert rows == [("stations/s1/chargers/F1", "245", "445", "2026-11-22 14:00"),
                    ("stations/s1/doors/D1", "50", "150", "2026-11-22 12:00")]

    app.config.update(CHARGEAPP_DEAD_LETTER_RETENTION_DAYS=0, CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR=0)
    html = text(english.get("/manage/s1/dead-letters"))
    assert "They are kept until deleted by hand." in html and "there is no hourly limit" in html
    assert "1095 messages over the hourly limit." in html  # everything still in the table

    post(english, "/language", {"lang": "zh_Hans", "next": "/manage/"})
    app.config.update(CHARGEAPP_DEAD_LETTER_RETENTION_DAYS=30, CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR=100)
    html = text(manager.get("/manage/s1/dead-letters"))
    assert "30 天" in html and "100 条" in html and "未保存" in html


def test_no_drops_no_drop_table(manager, session, clock):
    html = text(manager.get("/manage/s1/dead-letters"))
    assert 'id="dead-letter-limits"' in html and 'id="dead-letter-drops"' not in html


def test_the_audit_log_is_paged(manager, session, clock, boss, station):
    from chargeapp.services.common import audit

    for i in range(60):
        audit(session, clock.now(), boss, "zone.update", "zone", 1, f"reason {i}", station_id=station.id)
    session.commit()
    html = text(manager.get("/manage/s1/audit"))
    assert "reason 59" in html and "reason 5<" not in html
    older = re.search(r'href="(/manage/s1/audit\?before=\d+)"', html).group(1)
    assert "reason 5<" in text(manager.get(older))


# -- languages and the pages' hygiene ----------------------------------------------------------------

PAGES = [
    ("/manage/", "我的站点", "My stations"),
    ("/manage/s1", "需要处理", "Needs attention"),
    ("/manage/s1/chargers", "停用", "Take out of service"),
    ("/manage/s1/zones", "添加区域", "Add a zone"),
    ("/manage/s1/rules", "营业时间", "Opening hours"),
    ("/manage/s1/maintenance", "添加维护时段", "Add a maintenance window"),
    ("/manage/s1/tariffs", "添加电价版本", "Add a tariff version"),
    ("/manage/s1/receipts", "账单", "Receipts"),
    ("/manage/s1/sessions", "进行中的充电会话", "Open charging sessions"),
    ("/manage/s1/stays", "停车记录", "Parking stays"),
    ("/manage/s1/dead-letters", "无法处理的设备消息", "Dead letters"),
    ("/manage/s1/audit", "审计日志", "Audit log"),
]


@pytest.mark.parametrize("path, zh, en", PAGES)
def test_every_manager_page_renders_in_chinese_by_default_and_in_english(manager, path, zh, en):
    r = manager.get(path)
    assert r.status_code == 200, path
    html = text(r)
    assert '<html lang="zh-Hans">' in html and zh in html
    assert r.headers["Cache-Control"] == "private, no-store"
    assert post(manager, "/language", {"lang": "en", "next": path}).status_code == 302
    html = text(manager.get(path))
    assert '<html lang="en">' in html and en in html


def test_a_refusal_is_in_english_when_english_is_chosen(english, session):
    r = post(english, "/manage/s1/zones/hall/count", {"count": "3", "reason": ""})
    assert r.status_code == 422 and "Say why: the reason is kept in the audit log." in text(r)
    r = post(english, "/manage/s1/hours", {"opens_at": "25:00", "closes_at": "22:00"})
    assert r.status_code == 422 and 'Write a time as "HH:MM", 00:00 to 23:59.' in text(r).replace("&#34;", '"')


def test_the_station_nav_links_to_the_reports(manager):
    html = text(manager.get("/manage/s1"))
    assert 'href="/manage/s1/reports"' in html


def test_manager_pages_have_no_inline_script_or_style(manager, session, clock):
    _stay(session, clock)
    for path, _, _ in PAGES + [("/manage/s1/live", "", ""), ("/manage/s1/stays/1", "", "")]:
        html = text(manager.get(path))
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert "<style" not in html and not re.search(r"\sstyle=", html), path
        assert not re.search(r"\son[a-z]+=", html), path


def test_every_manager_form_carries_the_csrf_token_and_a_post_without_it_is_refused(manager, session, clock):
    stay = _stay(session, clock)
    for path in ("/manage/s1/chargers", "/manage/s1/zones", "/manage/s1/rules", "/manage/s1/maintenance",
                 "/manage/s1/tariffs", f"/manage/s1/stays/{stay.id}"):
        html = text(manager.get(path))
        forms = re.findall(r"<form method=\"post\".*?</form>", html, re.S)
        assert forms, path
        assert all('name="csrf_token"' in f for f in forms), path
    r = manager.post("/manage/s1/zones/hall/count", data={"count": "3", "reason": "x"})
    assert r.status_code == 400
    assert audit_actions(session) == []


# -- no input is a 500 -------------------------------------------------------------------------------

JUNK = ["", " ", "-1", "1.5", "1e9", str(10**30), "x" * 5000, "a\x00b", "25:00", "2026-13-45T99:99", "<script>"]


def test_no_junk_in_any_form_field_is_a_500(manager, session, clock):
    stay = _stay(session, clock)
    receipt = _charging_receipt(session, clock)
    charging.record_transaction(session, station_code="s1", charger_code="F3", event="start", connector=1,
                                transaction_id=8, id_tag="T", meter_wh=0, at=clock.now() - timedelta(hours=1),
                                now=clock.now())
    session.commit()
    cs = session.scalar(select(m.ChargingSession).where(m.ChargingSession.transaction_id == 8))
    forms = {
        "/manage/s1/chargers/F1": ["in_service", "reason"],
        "/manage/s1/zones": ["code", "name", "name_en", "capacity", "reason"],
        "/manage/s1/zones/hall": ["name", "name_en", "capacity", "reason"],
        "/manage/s1/zones/hall/count": ["count", "reason"],
        "/manage/s1/hours": ["opens_at", "closes_at", "around_the_clock", "reason"],
        "/manage/s1/maintenance": ["starts_at", "ends_at", "reason"],
        "/manage/s1/tariffs": ["effective_from", "periods", "peak_price", "idle_grace_minutes",
                               "idle_fee_cap_fen", "reason"],
        f"/manage/s1/receipts/{receipt.id}/waive": ["component", "reason"],
        f"/manage/s1/receipts/{receipt.id}/correct": ["energy_fen", "service_fen", "idle_fen", "reason"],
        f"/manage/s1/sessions/{cs.id}/close": ["at", "reason"],
        f"/manage/s1/stays/{stay.id}/plate": ["plate", "reason"],
    }
    csrf = token(manager, "/manage/")
    for path, names in forms.items():
        for value in JUNK:
            data = {name: value for name in names}
            if "reason" in names and value.strip() == "":
                data["reason"] = "junk test"
            r = manager.post(path, data={**data, "csrf_token": csrf})
            assert r.status_code < 500, (path, value[:20], r.status_code)
            assert r.mimetype == "text/html", (path, value[:20])  # the page's own answer, not a JSON error
    for path in ("/manage/s1/receipts?q=" + "9" * 40, "/manage/s1/stays?plate=%25_%00",
                 "/manage/s1/audit?before=-1", "/manage/s1/maintenance?past=yes"):
        assert manager.get(path).status_code == 200, path


def test_unacknowledged_holds_and_dead_letters_need_attention_and_link_onwards(manager, session, clock, station):
    f1 = next(c for c in station.chargers if c.code == "F1")
    session.add(m.CommandOutbox(request_id="hold-1", station_id=station.id, charger_id=f1.id, name="reserve_now",
                                payload={}, status="sent", attempts=2, created_at=clock.now() - timedelta(minutes=5)))
    session.add(m.DeadLetter(received_at=clock.now() - timedelta(minutes=3), topic="cs/s1/F9/status", payload=b"?",
                             reason="unknown_charger", station_code="s1"))
    session.commit()
    html = text(manager.get("/manage/s1/live"))
    assert "保留指令未确认" in html and "无法处理的设备消息" in html
    assert 'href="/manage/s1/dead-letters"' in html


def test_the_detail_pages_render_in_english(english, session, clock):
    receipt = _charging_receipt(session, clock)
    stay = _stay(session, clock)
    cs = session.get(m.ChargingSession, receipt.session_id)
    for path, words in ((f"/manage/s1/receipts/{receipt.id}", ["Waive a fee", "Correct the amounts", "Service fee"]),
                        (f"/manage/s1/sessions/{cs.id}", ["Session #", "Closed by"]),
                        (f"/manage/s1/stays/{stay.id}", ["Fix a misread plate", "Save the plate"])):
        r = english.get(path)
        assert r.status_code == 200, path
        assert all(w in text(r) for w in words), path


@pytest.mark.parametrize("q", ["²", "١٢", "99999999999", "沪A00001", "%_"])
def test_the_receipt_search_takes_any_text_without_an_error(manager, q):
    r = manager.get("/manage/s1/receipts", query_string={"q": q})
    assert r.status_code == 200
