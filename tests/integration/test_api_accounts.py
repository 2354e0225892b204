"""The driver's account over the API: profile, plates (the plate rule), password change, email format.

Runs on SQLite and, with CHARGEAPP_TEST_POSTGRES_URL, on PostgreSQL (conftest ``app``).
"""
from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import select

from chargeapp.db import models as m

pytestmark = pytest.mark.integration
PASSWORD = "correct-horse"


def register(client, email="a@example.com", **extra):
    r = client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, **extra})
    assert r.status_code == 201, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def test_the_profile_shows_name_email_plates_and_the_app_tag(client, station):
    h = register(client, name="Ann", plate="沪a·12345")
    r = client.get("/api/v1/me/profile", headers=h)
    assert r.status_code == 200
    assert r.json["email"] == "a@example.com" and r.json["name"] == "Ann"
    assert [p["plate"] for p in r.json["plates"]] == ["沪A12345"]
    assert r.json["id_tags"][0].startswith("APP-")


def test_a_driver_renames_themselves(client, station):
    h = register(client)
    r = client.patch("/api/v1/me/profile", headers=h, json={"name": "王师傅"})
    assert r.status_code == 200 and r.json["name"] == "王师傅"
    assert client.patch("/api/v1/me/profile", headers=h, json={"name": "x" * 101}).status_code == 422


def test_a_plate_is_added_normalised_and_removed_from_now_keeping_its_history(client, session, clock, station):
    h = register(client)
    r = client.post("/api/v1/me/plates", headers=h, json={"plate": "沪ａｄ 12345"})
    assert r.status_code == 201 and r.json["plate"] == "沪AD12345"
    clock.advance(hours=1)
    r = client.delete(f"/api/v1/me/plates/{quote('沪ad12345')}", headers=h)
    assert r.status_code == 204
    assert client.get("/api/v1/me/profile", headers=h).json["plates"] == []
    reg = session.scalars(select(m.PlateRegistration)).one()
    assert reg.plate == "沪AD12345" and reg.valid_to is not None  # kept: stays parked before still count


def test_a_plate_off_the_format_is_refused_naming_the_rule_with_an_example(client, station):
    h = register(client)
    for plate, code in [("ABC", "plate_province"), ("沪A1234", "plate_length"), ("沪A123456", "plate_new_energy"),
                        ("沪A1234警", "plate_special"), ("沪I12345", "plate_office_letter"),
                        ("沪A1234O", "plate_serial")]:
        r = client.post("/api/v1/me/plates", headers=h, json={"plate": plate})
        assert r.status_code == 422, plate
        assert r.json["code"] == code and "沪A" in r.json["message"], r.json


def test_registration_refuses_a_plate_off_the_format(client, station):
    r = client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": PASSWORD, "plate": "ABC"})
    assert r.status_code == 422 and r.json["code"] == "plate_province"
    assert "沪A12345" in r.json["message"]
    r = client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": PASSWORD,
                                                   "plate": "沪A12345D"})
    assert r.status_code == 201


def test_the_same_plate_twice_is_409_and_a_sixth_plate_is_refused(client, station):
    h = register(client, plate="沪A12345")
    r = client.post("/api/v1/me/plates", headers=h, json={"plate": "沪A 12345"})
    assert r.status_code == 409 and r.json["code"] == "plate_already_registered"
    for n in range(4):
        assert client.post("/api/v1/me/plates", headers=h, json={"plate": f"沪B1234{n}"}).status_code == 201
    r = client.post("/api/v1/me/plates", headers=h, json={"plate": "沪C12345"})
    assert r.status_code == 409 and r.json["code"] == "too_many_plates"


def test_removing_a_plate_that_is_not_mine_is_404(client, station):
    register(client, "b@example.com", plate="沪B12345")
    h = register(client)
    r = client.delete(f"/api/v1/me/plates/{quote('沪B12345')}", headers=h)
    assert r.status_code == 404 and r.json["code"] == "plate_not_registered"


def test_changing_the_password_needs_the_current_one_and_ends_the_old_tokens(client, station):
    h = register(client)
    r = client.post("/api/v1/me/password", headers=h, json={"current_password": "wrong-wrong",
                                                            "new_password": "new-password-1"})
    assert r.status_code == 422 and r.json["code"] == "current_password_wrong"
    r = client.post("/api/v1/me/password", headers=h, json={"current_password": PASSWORD, "new_password": "short"})
    assert r.status_code == 422
    r = client.post("/api/v1/me/password", headers=h, json={"current_password": PASSWORD,
                                                            "new_password": "new-password-1"})
    assert r.status_code == 200
    assert client.get("/api/v1/me/profile", headers=h).status_code == 401  # the old token ended
    fresh = {"Authorization": f"Bearer {r.json['token']}"}
    assert client.get("/api/v1/me/profile", headers=fresh).status_code == 200
    login = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "new-password-1"})
    assert login.status_code == 200


def test_the_account_routes_need_a_token(client, station):
    assert client.get("/api/v1/me/profile").status_code == 401
    assert client.post("/api/v1/me/plates", json={"plate": "沪A12345"}).status_code == 401
    assert client.post("/api/v1/me/password", json={}).status_code == 401


def test_an_email_without_a_domain_is_called_a_wrong_format_with_an_example(client, station):
    r = client.post("/api/v1/auth/register", json={"email": "a@b", "password": PASSWORD})
    assert r.status_code == 422
    message = r.json["errors"]["json"]["email"][0]
    assert "format is wrong" in message and "name@example.com" in message
