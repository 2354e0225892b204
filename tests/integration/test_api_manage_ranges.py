"""Numbers beyond what a database column holds are a 4xx, on every backend."""
import pytest

from chargeapp.services.registry import create_user
from chargeapp.web.security import issue_token

pytestmark = pytest.mark.integration


def test_a_huge_id_in_a_url_is_404(client, station):
    r = client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": "long-enough"})
    h = {"Authorization": f"Bearer {r.json['token']}"}
    assert client.get(f"/api/v1/bookings/{2**31}", headers=h).status_code == 404
    assert client.get(f"/api/v1/bookings/{10**30}", headers=h).status_code == 404


def test_a_number_too_large_for_its_column_is_422(client, session, clock, station):
    manager = create_user(session, email="m@example.com", password_hash="x", now=clock.now(), role="manager",
                          stations=(station,))
    session.commit()
    h = {"Authorization": f"Bearer {issue_token(manager)}"}
    r = client.patch("/api/v1/manage/stations/s1/zones/hall", headers=h, json={"capacity": 10**30})
    assert r.status_code == 422, r.json
