"""The API against its own OpenAPI document: schemathesis generates requests for every
operation (as a driver and as a manager) and no response may be a server error; every
operation that needs a token refuses a request without one."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from chargeapp.services.registry import create_user
from chargeapp.web.security import issue_token

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def tokens(app, session, clock, station, driver):
    manager = create_user(session, email="mgr@example.com", password_hash="x", now=clock.now(), role="manager",
                          stations=(station,))
    session.commit()
    return {"driver": issue_token(driver), "manager": issue_token(manager)}


@pytest.mark.parametrize("role, examples", [("manager", 12), ("driver", 6)])
def test_no_operation_answers_with_a_server_error(app, session, tokens, role, examples):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def call(case):
            response = case.call(headers={"Authorization": f"Bearer {tokens[role]}"})
            session.rollback()  # the test shares the app context's session with the request
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        call()
    assert operations >= 20
    assert not failures, "\n".join(failures[:10])


def test_every_operation_that_declares_a_token_refuses_a_request_without_one(app, client, station):
    doc = client.get("/api/v1/openapi.json").json
    checked = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "patch", "put", "delete") or not op.get("security"):
                continue
            url = path.replace("{code}", "s1")
            for name in ("booking_id", "receipt_id", "session_id", "stay_id", "window_id", "zone", "charger", "id"):
                url = url.replace("{" + name + "}", "1")
            r = client.open(url, method=method.upper(), json={} if method != "get" else None)
            assert r.status_code == 401, f"{method.upper()} {path} answered {r.status_code} without a token"
            checked += 1
    assert checked >= 10
