"""What an outside probe broke at the HTTP edge (issue 14): deep JSON, lone surrogates, huge bodies, and a login
limit that locked out everyone behind one address."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.integration

DEEP = "[" * 100_000 + "]" * 100_000
JSON = {"Content-Type": "application/json"}


def _write_routes(app):
    """Every API route that takes a body, with its path variables filled in."""
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<int:{name}>", "1").replace(f"<{name}>", "s1")
        for method in sorted(rule.methods & {"POST", "PATCH", "PUT"}):
            yield method, path


def test_every_json_route_refuses_a_deep_body_with_400(app, client, station):
    routes = list(_write_routes(app))
    assert len(routes) >= 15
    for method, path in routes:
        r = client.open(path, method=method, data=DEEP, headers=JSON)
        assert r.status_code == 400, (method, path, r.status_code)
        assert "nested deeper" in r.json["message"]


def test_every_json_route_names_the_field_with_a_lone_surrogate(app, client, station):
    for method, path in _write_routes(app):
        r = client.open(path, method=method, data='{"email": "a@b.io", "password": "\\ud800abcdefgh"}', headers=JSON)
        assert r.status_code == 422, (method, path, r.status_code)
        assert r.json["errors"] == {"json": {"password": [r.json["message"]]}}
        assert "surrogate" in r.json["message"]


@pytest.mark.parametrize("body, errors", [
    ('{"station": "\\udfff", "slot_start": "2026-11-22T15:00:00+08:00"}', {"station": ...}),
    ('{"station": "s1", "notes": ["ok", {"x": "\\ud800"}]}', {"notes": {1: {"x": ...}}}),
])
def test_a_lone_surrogate_deep_in_a_booking_is_named(client, station, body, errors):
    r = client.post("/api/v1/bookings", data=body, headers=JSON)
    assert r.status_code == 422
    got = r.json["errors"]["json"]
    assert got.keys() == errors.keys()  # JSON keys are strings; the path is the body's own


def test_a_paired_surrogate_is_text(client, station):
    r = client.post("/api/v1/auth/register", data='{"email": "e@b.io", "password": "\\ud83d\\ude00abcdefgh"}',
                    headers=JSON)
    assert r.status_code == 201
    assert client.post("/api/v1/auth/login", json={"email": "e@b.io", "password": "😀abcdefgh"}).status_code == 200


def test_a_body_over_the_limit_is_413_json(app, client, station):
    r = client.post("/api/v1/auth/login", data=b'{"email": "' + b"a" * (1024 * 1024) + b'"}', headers=JSON)
    assert r.status_code == 413 and r.json["code"] == "request_entity_too_large"
    app.config["MAX_CONTENT_LENGTH"] = 4096
    r = client.post("/api/v1/bookings", data=b"[" + b"1," * 4000 + b"1]", headers=JSON)
    assert r.status_code == 413


def test_a_small_body_still_works(client, station):
    r = client.post("/api/v1/auth/register", json={"email": "ok@b.io", "password": "correct-horse"})
    assert r.status_code == 201


# -- the login limit ---------------------------------------------------------------------


def _register(client, email):
    assert client.post("/api/v1/auth/register", json={"email": email, "password": "correct-horse"}).status_code == 201


def _login(client, email, password):
    return client.post("/api/v1/auth/login", json={"email": email, "password": password}).status_code


def test_wrong_passwords_for_one_account_never_block_another_behind_the_same_address(client, station):
    _register(client, "x@example.com")
    _register(client, "y@example.com")
    assert [_login(client, "x@example.com", "guess-guess") for _ in range(6)] == [401] * 5 + [429]
    assert _login(client, "x@example.com", "correct-horse") == 429  # the guessed-at account waits a minute
    assert _login(client, "y@example.com", "correct-horse") == 200  # same address, another account
    assert _login(client, "Y@Example.com ", "guess-guess") == 401


def test_an_account_is_the_same_bucket_on_the_page_and_the_api(client, station):
    _register(client, "x@example.com")
    for _ in range(3):
        assert _login(client, "x@example.com", "guess-guess") == 401
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    for _ in range(2):
        page = client.post("/login", data={"email": "X@example.com", "password": "guess-guess", "csrf_token": token})
        assert page.status_code == 401
    assert _login(client, "x@example.com", "guess-guess") == 429


def test_the_address_bound_is_far_higher_and_counts_every_account(app, client, station):
    app.config["CHARGEAPP_LOGIN_ADDRESS_RATE_LIMIT"] = "12 per minute"
    _register(client, "z@example.com")
    codes = [_login(client, f"nobody{i}@example.com", "guess-guess") for i in range(13)]
    assert codes == [401] * 12 + [429]
    assert _login(client, "z@example.com", "correct-horse") == 429  # this address has tried too many accounts
    assert client.post("/api/v1/auth/login", json={"email": "z@example.com", "password": "correct-horse"},
                       environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 200


# -- NULs and dates out of range (found by probing after the list) -----------------


@pytest.mark.parametrize("method, path, body, location, field", [
    ("POST", "/api/v1/bookings", {"station": "s1\u0000", "slot_start": "2026-11-22T15:00:00+08:00"}, "json", "station"),
    ("POST", "/api/v1/auth/register", {"email": "n@b.io", "password": "correct-horse", "name": "\u0000"}, "json",
     "name"),
    ("POST", "/api/v1/auth/login", {"email": "a@b.io\u0000", "password": "x"}, "json", "email"),
    ("GET", "/api/v1/stations?district=%00", None, "query", "district"),
])
def test_a_nul_anywhere_is_a_422_naming_the_field_not_a_database_error(client, station, method, path, body,
                                                                       location, field):
    r = client.open(path, method=method, json=body)
    assert r.status_code == 422, r.json
    assert r.json["errors"] == {location: {field: [r.json["message"]]}} and "NUL" in r.json["message"]


def test_a_nul_in_a_path_is_a_404(client, station):
    for path in ("/api/v1/stations/%00", "/api/v1/stations/s1%00", "/board/%00", "/stations/s1%00"):
        assert client.get(path).status_code == 404, path


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/v1/bookings", {"station": "s1", "slot_start": "0001-01-01T00:00:00+14:00"}),
    ("POST", "/api/v1/bookings", {"station": "s1", "slot_start": "9999-12-31T23:30:00-12:00"}),
    ("GET", "/api/v1/stations/s1/slots?date=9999-12-31", None),
    ("GET", "/api/v1/stations/s1/slots?date=0001-01-01", None),
])
def test_dates_far_out_of_range_are_a_422_saying_so(client, station, method, path, body):
    token = client.post("/api/v1/auth/register", json={"email": "d@b.io", "password": "correct-horse"}).json["token"]
    r = client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422, r.json
    assert "2000-01-01 to 2099-12-31" in str(r.json["errors"])
