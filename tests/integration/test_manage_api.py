"""The managers' API end to end over HTTP (Flask test client, real database)."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
from flask import g
from sqlalchemy import func, select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.domain.booking import StationInMaintenance
from chargeapp.extensions import api
from chargeapp.services import booking as booking_service
from chargeapp.services import manage, receipts
from chargeapp.services.registry import create_user
from chargeapp.web.api import manage as manage_api
from chargeapp.web.security import issue_token
from tests.factories import make_driver, make_station

pytestmark = pytest.mark.integration

UTC = timezone.utc
SLOT = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)  # 15:00 Shanghai; the clock is at 14:00
BASE = "/api/v1/manage"


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def api_app(app):
    if "manage" not in app.blueprints:
        api.register_blueprint(manage_api.blp)
    return app


@pytest.fixture
def other_station(session, clock):
    st = make_station(session, clock.now(), code="s2")
    session.commit()
    return st


def _user(session, clock, email, role, stations=()):
    u = create_user(session, email=email, password_hash="x" * 20, now=clock.now(), name=email.split("@")[0],
                    role=role, stations=tuple(stations))
    session.commit()
    return u


@pytest.fixture
def manager(session, clock, station):
    return _user(session, clock, "boss@example.com", "manager", (station,))


@pytest.fixture
def admin(session, clock):
    return _user(session, clock, "root@example.com", "admin")


@pytest.fixture
def other_manager(session, clock, other_station):
    return _user(session, clock, "boss2@example.com", "manager", (other_station,))


class Client:
    """Requests as one user. The test and the request share the app context, so the cached user in
    ``g`` is dropped before each request, and the session is rolled back after it as the request
    teardown would (a refused request leaves nothing behind)."""

    def __init__(self, client, user=None):
        self.client = client
        self.headers = {"Authorization": f"Bearer {issue_token(user)}"} if user is not None else {}

    def __call__(self, method, path, json=None, query=None):
        g.pop("user", None)
        resp = self.client.open(BASE + path, method=method, json=json, query_string=query, headers=self.headers)
        db.session.rollback()
        return resp

    def get(self, path, **kw):
        return self("GET", path, **kw)

    def post(self, path, json=None, **kw):
        return self("POST", path, json=json, **kw)

    def patch(self, path, json=None, **kw):
        return self("PATCH", path, json=json, **kw)

    def delete(self, path, **kw):
        return self("DELETE", path, **kw)


@pytest.fixture
def as_manager(api_app, client, manager):
    return Client(client, manager)


@pytest.fixture
def as_admin(api_app, client, admin):
    return Client(client, admin)


def charger(station, code):
    return next(c for c in station.chargers if c.code == code)


def audits(session, action=None):
    q = select(m.AuditEntry).order_by(m.AuditEntry.id)
    if action:
        q = q.where(m.AuditEntry.action == action)
    return session.scalars(q).all()


def count(session, model):
    return session.scalar(select(func.count()).select_from(model))


def open_session(session, station, code, at, driver=None, tx=1):
    c = charger(station, code)
    cs = m.ChargingSession(station_id=station.id, charger_id=c.id, connector_id=c.connectors[0].id,
                           transaction_id=tx, driver_id=driver.id if driver else None, started_at=at,
                           start_meter_wh=0)
    session.add(cs)
    session.commit()
    return cs


def stay_with_receipt(session, station, plate, now, receipt=True):
    stay = m.ParkingStay(station_id=station.id, plate=plate, entry_at=now - timedelta(hours=3),
                         exit_at=now - timedelta(hours=1), settled_at=now - timedelta(minutes=50) if receipt else None)
    session.add(stay)
    session.flush()
    r = None
    if receipt:
        r = m.Receipt(kind="parking", station_id=station.id, stay_id=stay.id, parking_fen=2000, total_fen=2000,
                      issued_at=now - timedelta(minutes=50), details={}, explanation="4 blocks")
        session.add(r)
    session.commit()
    return stay, r


# -- who may call what ----------------------------------------------------------------

ROUTES = [
    ("GET", "/stations"),
    ("GET", "/stations/s1"),
    ("PATCH", "/stations/s1/chargers/F1"),
    ("GET", "/stations/s1/zones"),
    ("POST", "/stations/s1/zones"),
    ("PATCH", "/stations/s1/zones/hall"),
    ("POST", "/stations/s1/zones/hall/count"),
    ("GET", "/stations/s1/sensors"),
    ("GET", "/stations/s1/gates"),
    ("GET", "/stations/s1/rules"),
    ("PATCH", "/stations/s1/rules"),
    ("PATCH", "/stations/s1/hours"),
    ("GET", "/stations/s1/maintenance"),
    ("POST", "/stations/s1/maintenance"),
    ("DELETE", "/stations/s1/maintenance/1"),
    ("GET", "/stations/s1/tariffs"),
    ("POST", "/stations/s1/tariffs"),
    ("POST", "/receipts/1/waive"),
    ("POST", "/receipts/1/correct"),
    ("POST", "/sessions/1/close"),
    ("POST", "/stays/1/plate"),
    ("GET", "/dead-letters"),
    ("GET", "/audit"),
]


@pytest.mark.parametrize("method,path", ROUTES, ids=[f"{m_} {p}" for m_, p in ROUTES])
def test_a_driver_token_is_refused_on_every_manage_route(api_app, client, session, station, driver, method, path):
    resp = Client(client, driver)(method, path, json={"in_service": False, "reason": "x"})
    assert resp.status_code == 403
    assert resp.get_json()["code"] == "manager_only"
    assert count(session, m.AuditEntry) == 0


@pytest.mark.parametrize("method,path", ROUTES[:3], ids=[p for _, p in ROUTES[:3]])
def test_no_token_is_401(api_app, client, station, method, path):
    assert Client(client)(method, path, json={}).status_code == 401


def _snapshot(session, st):
    session.expire_all()
    return {
        "audit": count(session, m.AuditEntry), "commands": count(session, m.CommandOutbox),
        "windows": count(session, m.MaintenanceWindow), "tariffs": count(session, m.TariffVersion),
        "zones": [(z.code, z.name, z.capacity, z.baseline_count) for z in st.zones],
        "chargers": [(c.code, c.in_service) for c in st.chargers],
        "rules": manage._rules_dict(st.rules), "hours": (st.opens_at, st.closes_at),
        "sessions": [(s.id, s.closed_by) for s in session.scalars(select(m.ChargingSession))],
        "stays": [(s.id, s.plate) for s in session.scalars(select(m.ParkingStay))],
        "receipts": count(session, m.Receipt), "notifications": count(session, m.Notification),
    }


def test_another_stations_manager_gets_404_and_nothing_changes(session, clock, station, other_station, manager,
                                                                as_manager):
    now = clock.now()
    cs = open_session(session, other_station, "F1", now - timedelta(hours=13))
    stay, receipt = stay_with_receipt(session, other_station, "沪B00001", now)
    window = m.MaintenanceWindow(station_id=other_station.id, starts_at=now + timedelta(hours=1),
                                 ends_at=now + timedelta(hours=2), reason="pumps")
    session.add(window)
    session.commit()
    before = _snapshot(session, other_station)
    future, later = (now + timedelta(days=2)).isoformat(), (now + timedelta(days=3)).isoformat()
    calls = [
        ("GET", "/stations/s2", None),
        ("PATCH", "/stations/s2/chargers/F1", {"in_service": False, "reason": "broken"}),
        ("GET", "/stations/s2/zones", None),
        ("POST", "/stations/s2/zones", {"code": "roof", "name": "Roof", "capacity": 5}),
        ("PATCH", "/stations/s2/zones/hall", {"capacity": 1}),
        ("POST", "/stations/s2/zones/hall/count", {"count": 3, "reason": "head count"}),
        ("GET", "/stations/s2/sensors", None),
        ("GET", "/stations/s2/gates", None),
        ("GET", "/stations/s2/rules", None),
        ("PATCH", "/stations/s2/rules", {"slot_minutes": 60}),
        ("PATCH", "/stations/s2/hours", {"opens_at": "08:00", "closes_at": "20:00"}),
        ("GET", "/stations/s2/maintenance", None),
        ("POST", "/stations/s2/maintenance", {"starts_at": future, "ends_at": later, "reason": "x"}),
        ("DELETE", f"/stations/s2/maintenance/{window.id}", None),
        ("GET", "/stations/s2/tariffs", None),
        ("POST", "/stations/s2/tariffs", {"effective_from": future, "peak_price": 1}),
        ("POST", f"/receipts/{receipt.id}/waive", {"reason": "goodwill"}),
        ("POST", f"/receipts/{receipt.id}/correct", {"reason": "meter", "parking_fen": 0}),
        ("POST", f"/sessions/{cs.id}/close", {"reason": "stuck"}),
        ("POST", f"/stays/{stay.id}/plate", {"plate": "沪B00002", "reason": "misread"}),
        ("GET", "/dead-letters", {"station": "s2"}),
        ("GET", "/audit", {"station": "s2"}),
    ]
    for method, path, body in calls:
        if method == "GET":
            resp = as_manager.get(path, query=body)
        else:
            resp = as_manager(method, path, json=body)
        assert resp.status_code == 404, (method, path, resp.get_json())
        assert "Station s2" not in resp.get_data(as_text=True)
    # An unknown station reads exactly the same.
    assert as_manager.get("/stations/nowhere").get_json()["code"] == as_manager.get("/stations/s2").get_json()["code"]
    assert _snapshot(session, other_station) == before


def test_another_stations_manager_with_a_bad_body_gets_404_not_the_field_errors(
        session, clock, station, other_station, as_manager):
    """Scope is checked before the body is read (issue 14.8): a 422 would confirm that s2, or the row, exists."""
    now = clock.now()
    cs = open_session(session, other_station, "F1", now - timedelta(hours=1))
    stay, receipt = stay_with_receipt(session, other_station, "沪B00001", now)
    session.commit()
    bad = {"colour": "red", "reason": 7}
    paths = [("PATCH", "/stations/s2/chargers/F1"), ("POST", "/stations/s2/zones"),
             ("PATCH", "/stations/s2/zones/hall"), ("POST", "/stations/s2/zones/hall/count"),
             ("PATCH", "/stations/s2/rules"), ("PATCH", "/stations/s2/hours"), ("POST", "/stations/s2/maintenance"),
             ("POST", "/stations/s2/tariffs"), ("POST", f"/receipts/{receipt.id}/waive"),
             ("POST", f"/receipts/{receipt.id}/correct"), ("POST", f"/sessions/{cs.id}/close"),
             ("POST", f"/stays/{stay.id}/plate"), ("POST", "/receipts/99999/waive")]
    for method, path in paths:
        resp = as_manager(method, path, json=bad)
        assert resp.status_code == 404, (method, path, resp.get_json())
        assert "errors" not in resp.get_json()
    # The manager's own station still answers the field errors.
    assert as_manager("PATCH", "/stations/s1/chargers/F1", json=bad).status_code == 422


def test_an_admin_sees_every_station(station, other_station, as_admin, as_manager):
    assert [s["code"] for s in as_admin.get("/stations").get_json()] == ["s1", "s2"]
    assert [s["code"] for s in as_manager.get("/stations").get_json()] == ["s1"]
    assert as_admin.get("/stations/s2").status_code == 200


# -- bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("path,body,field", [
    ("/stations/s1/chargers/F1", {"in_service": False, "reason": "x", "colour": "red"}, "colour"),
    ("/stations/s1/chargers/F1", {"in_service": False, "reason": "x", "id": 3}, "id"),
    ("/stations/s1/chargers/F1", {"in_service": False, "reason": "x", "station_id": 2}, "station_id"),
    ("/stations/s1/chargers/F1", {"in_service": False, "reason": "x", "online": True}, "online"),
    ("/stations/s1/chargers/F1", {"in_service": False}, "reason"),
    ("/stations/s1/chargers/F1", {"in_service": False, "reason": "   "}, "reason"),
    ("/stations/s1/zones/hall", {"code": "lobby"}, "code"),
    ("/stations/s1/zones/hall", {"capacity": -1}, "capacity"),
    ("/stations/s1/rules", {"station_id": 1, "slot_minutes": 30}, "station_id"),
    ("/stations/s1/rules", {"slot_minutes": 0}, "slot_minutes"),
    ("/stations/s1/rules", {"slot_minutes": 7}, "slot_minutes"),
    ("/stations/s1/rules", {"walkin_reserved_fast": -1}, "walkin_reserved_fast"),
    ("/stations/s1/rules", {"lounge_reset_time": "25:00"}, "lounge_reset_time"),
    ("/stations/s1/rules", {"hold_lead_minutes": "10"}, "hold_lead_minutes"),
    ("/stations/s1/rules", {"free_parking_minutes": 120, "created_at": "2026-01-01T00:00:00Z"}, "created_at"),
    ("/stations/s1/hours", {"opens_at": "08:00", "closes_at": None}, "closes_at"),
    ("/stations/s1/hours", {"opens_at": "8:00", "closes_at": "20:00"}, "opens_at"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_unknown_read_only_and_out_of_range_fields_are_422_per_field(session, as_manager, path, body, field):
    before = _snapshot(session, session.scalar(select(m.Station).where(m.Station.code == "s1")))
    resp = as_manager.patch(path, json=body)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["errors"]["json"]
    assert _snapshot(session, session.scalar(select(m.Station).where(m.Station.code == "s1"))) == before


def test_read_only_field_says_so(as_manager):
    resp = as_manager.patch("/stations/s1/chargers/F1", json={"in_service": False, "reason": "x", "id": 3})
    assert resp.get_json()["errors"]["json"]["id"] == ["Read-only: set by the server."]


# -- live view ------------------------------------------------------------------------


def test_live_view_lists_what_needs_attention(session, clock, station, driver, as_manager):
    now = clock.now()
    charger(station, "F2").connectors[0].status = "Faulted"
    charger(station, "F2").connectors[0].error_code = "GroundFailure"
    charger(station, "F3").online = False
    session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D1")).online = False
    session.scalar(select(m.Gate).where(m.Gate.code == "G-in")).online = False
    session.add(m.DeadLetter(received_at=now - timedelta(hours=1), topic="stations/s1/x", payload=b"{",
                             reason="bad_json", station_code="s1"))
    session.add(m.CommandOutbox(request_id="r1", station_id=station.id, charger_id=charger(station, "F1").id,
                                name="reserve_now", payload={}, status="sent", created_at=now - timedelta(minutes=3)))
    session.add(m.CommandOutbox(request_id="r2", station_id=station.id, charger_id=charger(station, "F1").id,
                                name="reserve_now", payload={}, status="pending",
                                created_at=now - timedelta(seconds=30)))
    session.commit()
    open_session(session, station, "S01", now - timedelta(hours=13), driver)
    open_session(session, station, "S02", now - timedelta(hours=2), driver, tx=2)

    resp = as_manager.get("/stations/s1")
    assert resp.status_code == 200
    body = resp.get_json()
    assert {c["code"]: c["status"] for c in body["chargers"]}["F2"] == "Faulted"
    assert [z["code"] for z in body["zones"]] == ["hall", "tea"]
    assert next(z for z in body["zones"] if z["code"] == "hall")["uncertain"] is True
    kinds = [(a["kind"], a["target"]) for a in body["attention"]]
    assert ("charger_faulted", "F2") in kinds
    assert ("charger_offline", "F3") in kinds
    assert ("sensor_offline", "D1") in kinds
    assert ("gate_offline", "G-in") in kinds
    assert ("session_stuck", "S01") in kinds and ("session_stuck", "S02") not in kinds
    assert [k for k in kinds if k[0] == "hold_unacknowledged"] == [("hold_unacknowledged", "F1")]
    assert ("dead_letters", "s1") in kinds
    assert body["dead_letters_24h"] == 1
    stuck = next(a for a in body["attention"] if a["kind"] == "session_stuck")
    assert stuck["since"].endswith("+08:00")


def test_sensors_and_gates_show_online_flags(session, station, as_manager):
    session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D2")).online = False
    session.commit()
    sensors = as_manager.get("/stations/s1/sensors").get_json()
    assert sensors == [
        {"code": "D1", "zone_in": "hall", "zone_out": None, "online": True, "boot": None, "seq": None,
         "in_total": None, "out_total": None},
        {"code": "D2", "zone_in": "tea", "zone_out": "hall", "online": False, "boot": None, "seq": None,
         "in_total": None, "out_total": None},
    ]
    assert as_manager.get("/stations/s1/gates").get_json() == [
        {"code": "G-in", "name": "G-in", "online": True}, {"code": "G-out", "name": "G-out", "online": True}]


# -- chargers -------------------------------------------------------------------------


def test_taking_a_charger_out_of_service_commands_it_moves_its_bookings_and_is_audited(
        session, clock, station, driver, manager, as_manager):
    booking, _ = booking_service.book_slot(session, clock.now(), driver.id, "s1", SLOT, "F1")
    f1 = charger(station, "F1")
    resp = as_manager.patch("/stations/s1/chargers/F1", json={"in_service": False, "reason": "cable cut"})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["in_service"] is False and body["moved_booking_ids"] == [booking.id]

    cmd = session.scalars(select(m.CommandOutbox).where(m.CommandOutbox.name == "change_availability")).one()
    assert cmd.charger_id == f1.id and cmd.payload["connector"] == 1 and cmd.payload["type"] == "Inoperative"
    assert cmd.payload["request_id"] == cmd.request_id
    session.refresh(booking)
    assert booking.charger.code == "F2" and booking.status == "booked"
    kinds = session.scalars(select(m.Notification.kind).where(m.Notification.booking_id == booking.id)).all()
    assert kinds[-1] == "moved"
    entry = audits(session, "charger.out_of_service")[0]
    assert (entry.user_id, entry.reason, entry.target_id, entry.station_id) == (
        manager.id, "cable cut", f1.id, station.id)
    assert entry.before == {"in_service": True} and entry.after["bookings_moved"] == [booking.id]

    # New bookings avoid it; putting it back sends Operative.
    assert as_manager.patch("/stations/s1/chargers/F1", json={"in_service": True, "reason": "fixed"}).status_code == 200
    types = [c.payload["type"] for c in session.scalars(
        select(m.CommandOutbox).where(m.CommandOutbox.name == "change_availability").order_by(m.CommandOutbox.id))]
    assert types == ["Inoperative", "Operative"]
    assert [a.action for a in audits(session)] == ["charger.out_of_service", "charger.in_service"]


def test_setting_the_state_a_charger_already_has_changes_nothing(session, as_manager):
    resp = as_manager.patch("/stations/s1/chargers/F1", json={"in_service": True, "reason": "just checking"})
    assert resp.status_code == 200 and resp.get_json()["moved_booking_ids"] == []
    assert count(session, m.CommandOutbox) == 0 and count(session, m.AuditEntry) == 0


def test_unknown_charger_is_404(as_manager):
    assert as_manager.patch("/stations/s1/chargers/F9", json={"in_service": False, "reason": "x"}).status_code == 404


# -- zones ----------------------------------------------------------------------------


def test_zones_list_create_rename_and_set_count(session, clock, station, manager, as_manager):
    zones = as_manager.get("/stations/s1/zones").get_json()
    assert [(z["code"], z["capacity"], z["count"]) for z in zones] == [("hall", 20, 0), ("tea", 8, 0)]

    resp = as_manager.post("/stations/s1/zones", json={"code": "roof", "name": "Roof terrace", "capacity": 12})
    assert resp.status_code == 201 and resp.get_json()["free"] == 12
    assert as_manager.post("/stations/s1/zones", json={"code": "roof", "name": "x", "capacity": 1}).status_code == 409

    resp = as_manager.patch("/stations/s1/zones/roof", json={"name": "Roof", "capacity": 10})
    assert resp.status_code == 200 and (resp.get_json()["name"], resp.get_json()["capacity"]) == ("Roof", 10)
    assert as_manager.patch("/stations/s1/zones/nope", json={"capacity": 3}).status_code == 404
    assert as_manager.patch("/stations/s1/zones/roof", json={}).status_code == 422

    resp = as_manager.post("/stations/s1/zones/hall/count", json={"count": 7, "reason": "head count at 14:00"})
    assert resp.status_code == 200 and (resp.get_json()["count"], resp.get_json()["free"]) == (7, 13)
    change = session.scalars(select(m.OccupancyChange).where(m.OccupancyChange.source == "set")).one()
    assert change.count_after == 7 and change.at == clock.now()
    assert as_manager.post("/stations/s1/zones/hall/count", json={"count": -1, "reason": "x"}).status_code == 422
    assert as_manager.post("/stations/s1/zones/hall/count", json={"count": 2}).status_code == 422

    entry = audits(session, "zone.set_count")[0]
    assert (entry.reason, entry.before, entry.after, entry.user_id) == ("head count at 14:00", {"count": 0},
                                                                        {"count": 7}, manager.id)
    assert [a.action for a in audits(session)] == ["zone.create", "zone.update", "zone.set_count"]


# -- rules and hours ------------------------------------------------------------------


def test_rules_read_and_change(session, station, as_manager):
    rules = as_manager.get("/stations/s1/rules").get_json()
    assert rules["slot_minutes"] == 30 and rules["lounge_reset_time"] == "04:00" and rules["walkin_reserved_fast"] == 0

    resp = as_manager.patch("/stations/s1/rules", json={"walkin_reserved_fast": 1, "lounge_reset_time": None,
                                                        "checkin_grace_minutes": 15, "reason": "busy evenings"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert (body["walkin_reserved_fast"], body["lounge_reset_time"], body["checkin_grace_minutes"]) == (1, None, 15)
    session.refresh(station.rules)
    assert station.rules.lounge_reset_time is None and station.rules.checkin_grace_minutes == 15
    entry = audits(session, "rules.update")[0]
    assert entry.before == {"walkin_reserved_fast": 0, "lounge_reset_time": "04:00", "checkin_grace_minutes": 10}
    assert entry.reason == "busy evenings"

    resp = as_manager.patch("/stations/s1/rules", json={"lounge_reset_time": "03:30"})
    assert resp.get_json()["lounge_reset_time"] == "03:30"
    assert as_manager.patch("/stations/s1/rules", json={}).status_code == 422


def test_opening_hours(session, station, as_manager):
    resp = as_manager.patch("/stations/s1/hours", json={"opens_at": "07:00", "closes_at": "01:00"})
    assert resp.status_code == 200 and resp.get_json() == {"opens_at": "07:00", "closes_at": "01:00"}
    session.refresh(station)
    assert (station.opens_at, station.closes_at) == (time(7), time(1))
    resp = as_manager.patch("/stations/s1/hours", json={"opens_at": None, "closes_at": None, "reason": "24 h now"})
    assert resp.get_json() == {"opens_at": None, "closes_at": None}
    assert as_manager.patch("/stations/s1/hours", json={"opens_at": "07:00", "closes_at": "07:00"}).status_code == 422
    assert as_manager.patch("/stations/s1/hours", json={"opens_at": "07:00"}).status_code == 422
    assert [(a.action, a.after) for a in audits(session)] == [
        ("hours.update", {"opens_at": "07:00", "closes_at": "01:00"}),
        ("hours.update", {"opens_at": None, "closes_at": None}),
    ]


# -- maintenance ----------------------------------------------------------------------


def test_maintenance_window_disrupts_overlapping_bookings_and_tells_the_drivers(
        session, clock, station, driver, manager, as_manager):
    other = make_driver(session, clock.now())
    session.commit()
    hit, _ = booking_service.book_slot(session, clock.now(), driver.id, "s1", SLOT)
    spared, _ = booking_service.book_slot(session, clock.now(), other.id, "s1", SLOT + timedelta(hours=2))
    resp = as_manager.post("/stations/s1/maintenance", json={
        "starts_at": "2026-11-22T15:15:00+08:00", "ends_at": "2026-11-22T16:00:00+08:00",
        "reason": "transformer check"})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["disrupted_booking_ids"] == [hit.id]
    assert (body["starts_at"], body["ends_at"]) == ("2026-11-22T15:15:00+08:00", "2026-11-22T16:00:00+08:00")

    session.refresh(hit)
    session.refresh(spared)
    assert hit.status == "disrupted" and hit.disrupted_at == clock.now() and hit.charger_id is None
    assert spared.status == "booked"
    note = session.scalars(select(m.Notification).where(m.Notification.booking_id == hit.id)
                           .order_by(m.Notification.id.desc())).first()
    assert note.kind == "disrupted" and note.user_id == driver.id and "maintenance" in note.message
    entry = audits(session, "maintenance.create")[0]
    assert entry.reason == "transformer check" and entry.after["disrupted_booking_ids"] == [hit.id]
    # The window now refuses new bookings in it.
    with pytest.raises(StationInMaintenance):
        booking_service.book_slot(session, clock.now(), driver.id, "s1", SLOT)
    session.rollback()

    listed = as_manager.get("/stations/s1/maintenance").get_json()
    assert [w["id"] for w in listed] == [body["id"]]
    assert as_manager.delete(f"/stations/s1/maintenance/{body['id']}").status_code == 204
    assert as_manager.get("/stations/s1/maintenance").get_json() == []
    assert as_manager.delete(f"/stations/s1/maintenance/{body['id']}").status_code == 404
    assert [a.action for a in audits(session)] == ["maintenance.create", "maintenance.delete"]


def test_a_held_booking_in_a_new_window_has_its_hold_cancelled(session, clock, station, driver, as_manager):
    b, _ = booking_service.book_slot(session, clock.now(), driver.id, "s1", SLOT)
    clock.set(SLOT - timedelta(minutes=10))
    booking_service.tick(session, clock.now())
    session.commit()
    assert b.status == "held"
    resp = as_manager.post("/stations/s1/maintenance", json={
        "starts_at": SLOT.isoformat(), "ends_at": (SLOT + timedelta(hours=1)).isoformat(), "reason": "flood"})
    assert resp.status_code == 201
    names = session.scalars(select(m.CommandOutbox.name).where(m.CommandOutbox.booking_id == b.id)
                            .order_by(m.CommandOutbox.id)).all()
    assert names == ["reserve_now", "cancel_reservation"]


@pytest.mark.parametrize("body", [
    {"starts_at": "2026-11-22T16:00:00+08:00", "ends_at": "2026-11-22T15:00:00+08:00", "reason": "x"},
    {"starts_at": "2026-11-22T16:00:00+08:00", "ends_at": "2026-11-22T16:00:00+08:00", "reason": "x"},
    {"starts_at": "2026-11-22T16:00:00", "ends_at": "2026-11-22T17:00:00", "reason": "x"},
    {"starts_at": "2026-11-22T16:00:00+08:00", "ends_at": "2026-11-22T17:00:00+08:00"},
    {"starts_at": "2026-11-20T16:00:00+08:00", "ends_at": "2026-11-20T17:00:00+08:00", "reason": "already over"},
])
def test_bad_maintenance_windows_are_422(session, as_manager, body):
    assert as_manager.post("/stations/s1/maintenance", json=body).status_code == 422
    assert count(session, m.MaintenanceWindow) == 0


def test_an_ended_maintenance_window_cannot_be_deleted(session, clock, station, as_manager):
    w = m.MaintenanceWindow(station_id=station.id, starts_at=clock.now() - timedelta(hours=3),
                            ends_at=clock.now() - timedelta(hours=1), reason="done")
    session.add(w)
    session.commit()
    assert as_manager.delete(f"/stations/s1/maintenance/{w.id}").status_code == 409
    assert as_manager.get("/stations/s1/maintenance", query={"include_past": "true"}).get_json()[0]["id"] == w.id


# -- tariffs --------------------------------------------------------------------------


def test_tariffs_list_and_add_a_future_version(session, clock, station, manager, as_manager):
    listed = as_manager.get("/stations/s1/tariffs").get_json()
    assert len(listed) == 1 and listed[0]["peak_price"] == 10755
    resp = as_manager.post("/stations/s1/tariffs", json={
        "effective_from": "2026-12-01T00:00:00+08:00", "peak_price": 11000, "service_fee": 7000,
        "reason": "December prices"})
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert (body["peak_price"], body["service_fee"], body["flat_price"]) == (11000, 7000, 6655)
    assert body["effective_from"] == "2026-12-01T00:00:00+08:00"
    assert len(as_manager.get("/stations/s1/tariffs").get_json()) == 2
    entry = audits(session, "tariff.create")[0]
    assert entry.user_id == manager.id and entry.reason == "December prices" and entry.after["peak_price"] == 11000


def test_a_tariff_effective_in_the_past_is_refused(session, as_manager):
    resp = as_manager.post("/stations/s1/tariffs", json={"effective_from": "2026-11-01T00:00:00+08:00",
                                                         "peak_price": 1})
    assert resp.status_code == 422 and resp.get_json()["code"] == "tariff_in_the_past"
    assert count(session, m.TariffVersion) == 1 and count(session, m.AuditEntry) == 0


@pytest.mark.parametrize("body,field", [
    ({"effective_from": "2026-12-01T00:00:00+08:00", "peak_price": -5}, "peak_price"),
    ({"effective_from": "2026-12-01T00:00:00+08:00", "id": 9}, "id"),
    ({"effective_from": "2026-12-01T00:00:00+08:00", "created_at": "2026-12-01T00:00:00+08:00"}, "created_at"),
    ({"effective_from": "2026-12-01T00:00:00+08:00", "vat": 13}, "vat"),
    ({"effective_from": "2026-12-01T00:00:00", "peak_price": 1}, "effective_from"),
    ({"effective_from": "2026-12-01T00:00:00+08:00", "periods": [{"start": "00:00", "end": "24:00", "band": "x"}]},
     "periods"),
])
def test_bad_tariff_bodies_are_422(session, as_manager, body, field):
    resp = as_manager.post("/stations/s1/tariffs", json=body)
    assert resp.status_code == 422 and field in resp.get_json()["errors"]["json"]
    assert count(session, m.TariffVersion) == 1


def test_tariff_periods_that_do_not_cover_the_day_are_422(session, as_manager):
    resp = as_manager.post("/stations/s1/tariffs", json={
        "effective_from": "2026-12-01T00:00:00+08:00",
        "periods": [{"start": "00:00", "end": "12:00", "band": "valley"}]})
    assert resp.status_code == 422


# -- fix-ups --------------------------------------------------------------------------


def test_closing_a_stuck_session_is_audited(session, clock, station, driver, manager, as_manager):
    now = clock.now()
    cs = open_session(session, station, "F1", now - timedelta(hours=14), driver)
    at = now - timedelta(hours=13)
    resp = as_manager.post(f"/sessions/{cs.id}/close", json={"reason": "charger lost the stop", "at": at.isoformat()})
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["closed_by"] == "manager"
    session.refresh(cs)
    assert (cs.stopped_at, cs.closed_by) == (at, "manager")
    entry = audits(session, "session.close")[0]
    assert (entry.user_id, entry.reason, entry.target_id) == (manager.id, "charger lost the stop", cs.id)
    assert entry.before == {"stopped_at": None, "closed_by": None}
    assert entry.after == {"stopped_at": at.isoformat(), "closed_by": "manager"}
    assert as_manager.post(f"/sessions/{cs.id}/close", json={"reason": "again"}).status_code == 409
    assert as_manager.post("/sessions/9999/close", json={"reason": "x"}).status_code == 404


def test_closing_a_session_before_it_started_is_422(session, clock, station, as_manager):
    cs = open_session(session, station, "F1", clock.now() - timedelta(hours=1))
    resp = as_manager.post(f"/sessions/{cs.id}/close",
                           json={"reason": "x", "at": (clock.now() - timedelta(hours=2)).isoformat()})
    assert resp.status_code == 422
    assert count(session, m.AuditEntry) == 0


def test_fix_plate_updates_the_stay_flags_it_and_audits_before_and_after(session, clock, station, manager):
    stay, _ = stay_with_receipt(session, station, "沪A1234S", clock.now(), receipt=False)
    out = manage.fix_plate(session, clock.now(), manager, stay.id, "沪a·12345", "gate camera read 5 as S")
    assert out["plate"] == "沪A12345" and out["correction_receipt_id"] is None
    assert stay.plate == "沪A12345" and "plate_fixed" in stay.flags
    entry = audits(session, "stay.fix_plate")[0]
    assert (entry.before, entry.after) == ({"plate": "沪A1234S"}, {"plate": "沪A12345"})
    assert (entry.user_id, entry.reason, entry.target_type, entry.target_id) == (
        manager.id, "gate camera read 5 as S", "parking_stay", stay.id)
    # The same plate again changes nothing.
    manage.fix_plate(session, clock.now(), manager, stay.id, "沪A12345", "again")
    assert len(audits(session, "stay.fix_plate")) == 1 and stay.flags.count("plate_fixed") == 1
    # A plate anonymised after the retention period is not written back.
    stay.flags = [*stay.flags, "anonymised"]
    with pytest.raises(manage.StayAnonymised):
        manage.fix_plate(session, clock.now(), manager, stay.id, "沪A99999", "late fix")


def test_fix_plate_over_http_and_scope(session, clock, station, as_manager):
    stay, _ = stay_with_receipt(session, station, "沪A1234S", clock.now(), receipt=False)
    resp = as_manager.post(f"/stays/{stay.id}/plate", json={"plate": "沪A12345", "reason": "misread"})
    assert resp.status_code == 200 and resp.get_json()["flags"] == ["plate_fixed"]
    assert as_manager.post(f"/stays/{stay.id}/plate", json={"plate": "  ", "reason": "x"}).status_code == 422
    assert as_manager.post(f"/stays/{stay.id}/plate", json={"plate": "沪A1"}).status_code == 422
    assert as_manager.post("/stays/999/plate", json={"plate": "沪A1", "reason": "x"}).status_code == 404


def test_fix_plate_rechecks_the_issued_parking_receipt(session, clock, station, manager, monkeypatch):
    stay, receipt = stay_with_receipt(session, station, "沪A1234S", clock.now())
    seen = []
    real = receipts.recheck

    def spy(s, now, r):
        seen.append(r.id)
        return real(s, now, r)

    monkeypatch.setattr(receipts, "recheck", spy)
    manage.fix_plate(session, clock.now(), manager, stay.id, "沪A12345", "misread")
    assert seen == [receipt.id]


def test_waive_and_correct_a_receipt_issue_corrections_audited_once_each(session, clock, station, manager,
                                                                         as_manager):
    _, receipt = stay_with_receipt(session, station, "沪A12345", clock.now())
    resp = as_manager.post(f"/receipts/{receipt.id}/waive",
                           json={"reason": "barrier was stuck", "component": "parking"})
    assert resp.status_code == 200, resp.get_json()
    waived = resp.get_json()
    assert (waived["kind"], waived["corrects_id"], waived["parking_fen"]) == ("correction", receipt.id, -2000)
    resp = as_manager.post(f"/receipts/{receipt.id}/correct", json={"reason": "recount", "parking_fen": 500})
    assert resp.status_code == 200, resp.get_json()
    corrected = resp.get_json()
    assert (corrected["corrects_id"], corrected["parking_fen"]) == (waived["id"], 500)
    assert [(a.action, a.reason, a.user_id) for a in audits(session)] == [
        ("receipt.waive_fee", "barrier was stuck", manager.id), ("receipt.correct_fee", "recount", manager.id)]
    resp = as_manager.post(f"/receipts/{receipt.id}/waive", json={"reason": "x", "component": "idle"})
    assert resp.status_code == 422 and resp.get_json()["code"] == "invalid_fee_component"
    assert as_manager.post("/receipts/999/waive", json={"reason": "x"}).status_code == 404


@pytest.mark.parametrize("path,body,field", [
    ("waive", {"component": "parking"}, "reason"),
    ("waive", {"reason": "x", "component": "tips"}, "component"),
    ("correct", {"reason": "x"}, "_schema"),
    ("correct", {"reason": "x", "parking_fen": -1}, "parking_fen"),
    ("correct", {"reason": "x", "total_fen": 0}, "total_fen"),
])
def test_bad_receipt_bodies_are_422(session, clock, station, as_manager, path, body, field):
    _, receipt = stay_with_receipt(session, station, "沪A12345", clock.now())
    resp = as_manager.post(f"/receipts/{receipt.id}/{path}", json=body)
    assert resp.status_code == 422 and field in resp.get_json()["errors"]["json"]
    assert count(session, m.Receipt) == 1


# -- dead letters and audit -----------------------------------------------------------


def test_dead_letters_are_paged_scoped_and_shown_as_text(session, clock, station, other_station, as_manager, as_admin):
    now = clock.now()
    for i in range(3):
        session.add(m.DeadLetter(received_at=now - timedelta(minutes=i), topic=f"stations/s1/t{i}",
                                 payload="沪A".encode("gbk") + b"\xff", reason="bad_encoding", station_code="s1"))
    session.add(m.DeadLetter(received_at=now, topic="stations/s2/t", payload=b"{}", reason="bad_shape",
                             station_code="s2"))
    session.add(m.DeadLetter(received_at=now, topic="junk", payload=b"", reason="bad_topic"))
    session.commit()

    page = as_manager.get("/dead-letters", query={"limit": 2}).get_json()
    assert [d["topic"] for d in page["items"]] == ["stations/s1/t2", "stations/s1/t1"]
    assert "\ufffd" in page["items"][0]["payload"] and page["items"][0]["payload_bytes"] == 4
    rest = as_manager.get("/dead-letters", query={"limit": 2, "before": page["next_before"]}).get_json()
    assert [d["topic"] for d in rest["items"]] == ["stations/s1/t0"] and rest["next_before"] is None
    assert len(as_admin.get("/dead-letters").get_json()["items"]) == 5
    assert [d["station"] for d in as_admin.get("/dead-letters", query={"station": "s2"}).get_json()["items"]] == ["s2"]
    assert as_manager.get("/dead-letters", query={"limit": 201}).status_code == 422
    assert as_manager.get("/dead-letters", query={"limit": 0}).status_code == 422


def test_audit_log_is_scoped_to_my_stations(session, clock, station, other_station, manager, other_manager,
                                           as_manager, api_app, client):
    as_manager.patch("/stations/s1/chargers/F1", json={"in_service": False, "reason": "broken"})
    Client(client, other_manager).patch("/stations/s2/chargers/F2", json={"in_service": False, "reason": "flooded"})
    mine = as_manager.get("/audit").get_json()["items"]
    assert [(e["station"], e["reason"], e["user_email"]) for e in mine] == [("s1", "broken", "boss@example.com")]
    assert mine[0]["at"].endswith("+08:00")
    assert as_manager.get("/audit", query={"station": "s1", "limit": 200}).get_json()["items"][0]["action"] == \
        "charger.out_of_service"
    assert as_manager.get("/audit", query={"limit": 500}).status_code == 422


@pytest.mark.parametrize("path", ["/dead-letters", "/audit"])
@pytest.mark.parametrize("limit", ["1000000000", "0", "x"])
def test_a_huge_or_bad_page_size_of_a_manager_list_is_422_with_a_message(as_manager, path, limit):
    resp = as_manager.get(path, query={"station": "s1", "limit": limit})
    assert resp.status_code == 422, resp.get_json()
    assert "limit" in resp.get_data(as_text=True)
