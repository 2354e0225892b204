"""The driver API over HTTP: auth, finder, slots, bookings, ownership, bad input."""
from __future__ import annotations


import pytest


pytestmark = pytest.mark.integration

SLOT = "2026-11-22T15:00:00+08:00"


def register(client, email="a@example.com", password="correct-horse", **extra):
    r = client.post("/api/v1/auth/register", json={"email": email, "password": password, **extra})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def test_register_login_and_me(client, station):
    register(client, "Ann@Example.com", plate="沪A12345")
    r = client.post("/api/v1/auth/login", json={"email": "ann@example.com", "password": "correct-horse"})
    assert r.status_code == 200
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {r.json['token']}"})
    assert me.json["email"] == "ann@example.com" and me.json["role"] == "driver"
    assert me.json["id_tags"][0].startswith("APP-")


def test_wrong_password_is_401_with_a_message(client, station):
    register(client)
    r = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "nope-nope"})
    assert r.status_code == 401 and r.json["code"] == "invalid_credentials"


def test_sixth_bad_login_in_a_minute_is_429(client, station):
    register(client)
    codes = [client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "wrong-pass"}).status_code
             for _ in range(6)]
    assert codes == [401] * 5 + [429]


def test_successful_logins_do_not_count_towards_the_limit(client, station):
    """Drivers behind one address (a fleet's depot, a family) logging in are never throttled."""
    register(client)
    good = [client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "correct-horse"}).status_code
            for _ in range(8)]
    assert good == [200] * 8
    bad = [client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "wrong-pass"}).status_code
           for _ in range(6)]
    assert bad == [401] * 5 + [429]


def test_duplicate_email_is_409(client, station):
    register(client)
    r = client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": "another-pass"})
    assert r.status_code == 409


def test_unknown_and_read_only_fields_are_422_per_field(client, station):
    h = register(client)
    r = client.post("/api/v1/bookings", headers=h,
                    json={"station": "s1", "slot_start": SLOT, "driver_id": 99, "status": "checked_in"})
    assert r.status_code == 422
    assert set(r.json["errors"]["json"]) == {"driver_id", "status"}


@pytest.mark.parametrize("slot, code", [
    ("2026-11-22T15:00:00", 422),            # no offset
    ("not a time", 422),
    ("2026-11-22T15:10:00+08:00", 422),      # off the grid
    ("2026-11-22T13:00:00+08:00", 422),      # in the past
    ("2026-11-24T15:00:00+08:00", 422),      # beyond 24 h
])
def test_bad_times_are_4xx_with_a_message(client, station, slot, code):
    h = register(client)
    r = client.post("/api/v1/bookings", headers=h, json={"station": "s1", "slot_start": slot})
    assert r.status_code == code and r.json["message"]


def test_booking_without_a_token_is_401(client, station):
    r = client.post("/api/v1/bookings", json={"station": "s1", "slot_start": SLOT})
    assert r.status_code == 401


def test_book_see_and_cancel_with_times_in_station_time(client, station):
    h = register(client)
    r = client.post("/api/v1/bookings", headers=h, json={"station": "s1", "slot_start": SLOT})
    assert r.status_code == 201, r.json
    b = r.json
    assert b["charger"] == "F1" and b["level"] == "B1" and b["status"] == "booked"
    assert b["slot_start"] == SLOT and b["checkin_deadline"] == "2026-11-22T15:10:00+08:00"
    assert client.get(f"/api/v1/bookings/{b['id']}", headers=h).json["id"] == b["id"]
    r = client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=h)
    assert r.status_code == 200 and r.json["status"] == "cancelled"
    kinds = [n["kind"] for n in client.get("/api/v1/me/notifications", headers=h).json]
    assert kinds == ["cancelled", "booked"]


def test_another_drivers_booking_is_404_and_unchanged(client, station):
    h1, h2 = register(client, "one@example.com"), register(client, "two@example.com")
    b = client.post("/api/v1/bookings", headers=h1, json={"station": "s1", "slot_start": SLOT}).json
    assert client.get(f"/api/v1/bookings/{b['id']}", headers=h2).status_code == 404
    assert client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=h2).status_code == 404
    assert client.get(f"/api/v1/bookings/{b['id']}", headers=h1).json["status"] == "booked"


def test_idempotency_key_retry_returns_the_first_result_and_another_body_is_422(client, station):
    h = register(client)
    hk = {**h, "Idempotency-Key": "abc-1"}
    first = client.post("/api/v1/bookings", headers=hk, json={"station": "s1", "slot_start": SLOT})
    again = client.post("/api/v1/bookings", headers=hk, json={"station": "s1", "slot_start": SLOT})
    assert first.status_code == again.status_code == 201 and first.json == again.json
    other = client.post("/api/v1/bookings", headers=hk,
                        json={"station": "s1", "slot_start": "2026-11-22T15:30:00+08:00"})
    assert other.status_code == 422 and other.json["code"] == "idempotency_key_reused"


def test_slot_taken_is_409(client, station):
    h1, h2 = register(client, "one@example.com"), register(client, "two@example.com")
    client.post("/api/v1/bookings", headers=h1, json={"station": "s1", "slot_start": SLOT, "charger": "F2"})
    r = client.post("/api/v1/bookings", headers=h2, json={"station": "s1", "slot_start": SLOT, "charger": "F2"})
    assert r.status_code == 409 and r.json["code"] == "slot_unavailable"


def test_unknown_station_is_404(client, station):
    assert client.get("/api/v1/stations/nowhere").status_code == 404
    h = register(client)
    r = client.post("/api/v1/bookings", headers=h, json={"station": "nowhere", "slot_start": SLOT})
    assert r.status_code == 404


def test_finder_nearest_first_with_live_availability(client, session, clock, station):
    from tests.factories import make_station

    make_station(session, clock.now(), code="far", fast=1)
    far = session.query(type(station)).filter_by(code="far").one()
    far.latitude, far.longitude = 31.40, 121.60
    session.commit()
    rows = client.get("/api/v1/stations?lat=31.27&lon=121.52").json
    assert [r["code"] for r in rows] == ["s1", "far"]
    assert rows[0]["fast_free"] == 3 and rows[0]["slow_total"] == 2 and rows[0]["lounge_capacity"] == 28
    assert rows[0]["next_free_slot"] == "2026-11-22T14:30:00+08:00"
    assert rows[0]["distance_m"] < rows[1]["distance_m"]
    assert client.get("/api/v1/stations?lat=31.27").status_code == 422


def test_station_detail_and_slots(client, station):
    d = client.get("/api/v1/stations/s1").json
    assert [c["code"] for c in d["chargers"]][:3] == ["F1", "F2", "F3"]
    assert {z["code"] for z in d["zones"]} == {"hall", "tea"}
    slots = client.get("/api/v1/stations/s1/slots?date=2026-11-22").json
    assert slots[0]["slot_start"] == "2026-11-22T14:30:00+08:00" and slots[0]["free"] == 3
    assert client.get("/api/v1/stations/s1/slots?date=yesterday").status_code == 422


def test_openapi_document_is_served(client):
    doc = client.get("/api/v1/openapi.json").json
    assert "/api/v1/bookings" in doc["paths"] and doc["info"]["title"] == "chargeapp"


def test_password_hashes_are_argon2id(app, session, client, station):
    from chargeapp.db import models as m
    from chargeapp.services.auth import password_hasher

    register(client)
    h = session.query(m.User).one().password_hash
    assert h.startswith("$argon2id$")
    prod = password_hasher(*app.config["CHARGEAPP_ARGON2"] if False else (2, 19456, 1)).hash("x")
    assert "m=19456,t=2,p=1" in prod


def test_production_settings_meet_owasp_argon2_minimum():
    from chargeapp.config import Settings

    s = Settings()
    assert s.argon2_memory_kib >= 19456 and s.argon2_time_cost >= 2


def test_my_sessions_receipts_and_parking_status_through_the_api(client, session, clock, station):
    """A driver charges 20 min at F1 while parked: sessions, receipt and 'free until' show up."""
    from datetime import datetime, timezone

    from chargeapp.services import charging, gates, receipts

    h = register(client, plate="沪A88888")
    tag = client.get("/api/v1/auth/me", headers=h).json["id_tags"][0]
    t = lambda hh, mm: datetime(2026, 11, 22, hh, mm, tzinfo=timezone.utc)  # noqa: E731 (UTC; +8 local)
    gates.record_gate_passage(session, station_code="s1", gate_code="G-in", plate="沪A88888", direction="in",
                              at=t(6, 0), now=t(6, 0))
    charging.record_transaction(session, station_code="s1", charger_code="F1", event="start", connector=1,
                                transaction_id=1, id_tag=tag, meter_wh=1000, at=t(6, 5), now=t(6, 5))
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Charging",
                           at=t(6, 5), now=t(6, 5))
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Finishing",
                           at=t(6, 25), now=t(6, 25))
    charging.record_transaction(session, station_code="s1", charger_code="F1", event="stop", connector=1,
                                transaction_id=1, id_tag=tag, meter_wh=21000, at=t(6, 26), now=t(6, 26))
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Available",
                           at=t(6, 27), now=t(6, 27))
    session.commit()
    clock.set(t(6, 40))
    park = client.get("/api/v1/me/parking", headers=h).json
    assert park[0]["qualified"] and park[0]["free_until"] == "2026-11-22T16:00:00+08:00"
    assert park[0]["fee_fen_if_left_now"] == 0
    sessions = client.get("/api/v1/me/sessions", headers=h).json
    assert sessions[0]["charger"] == "F1" and sessions[0]["energy_wh"] == 20000
    receipts.settle_due(session, clock.now())
    session.commit()
    rec = client.get("/api/v1/me/receipts", headers=h).json
    assert rec[0]["kind"] == "charging" and rec[0]["energy_wh"] == 20000 and rec[0]["total_fen"] > 0
    assert rec[0]["issued_at"].endswith("+08:00")


@pytest.mark.parametrize("path", ["/api/v1/bookings", "/api/v1/me/notifications", "/api/v1/me/sessions",
                                  "/api/v1/me/receipts"])
@pytest.mark.parametrize("limit", ["1000000000", "201", "0", "-5", "many"])
def test_a_huge_or_bad_page_size_is_422_with_a_message_not_a_slow_answer(client, station, path, limit):
    auth = register(client)
    r = client.get(path, query_string={"limit": limit}, headers=auth)
    assert r.status_code == 422, r.get_data(as_text=True)
    assert "limit" in r.get_data(as_text=True)
