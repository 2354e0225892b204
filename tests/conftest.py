"""Fixtures: an app on a fresh database per test (SQLite file by default; set
CHARGEAPP_TEST_DATABASE_URL to a PostgreSQL database to run the same tests there),
a fixed clock, a session, and a demo-like station."""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from chargeapp.app import create_app
from chargeapp.clock import FixedClock
from chargeapp.db import db
from chargeapp.db import models  # noqa: F401  (registers the tables)
from tests.factories import make_driver, make_station

UTC = timezone.utc
# 2026-11-22 14:00 in Shanghai
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


def _database_url(tmp_path) -> str:
    pg = os.environ.get("CHARGEAPP_TEST_DATABASE_URL")
    return pg or f"sqlite:///{tmp_path}/test.db"


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.fixture
def app(tmp_path, clock):
    app = create_app({
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": _database_url(tmp_path),
        "CHARGEAPP_CLOCK": clock,
        # Cheap hashes in tests only; production uses the OWASP parameters (see config).
        "CHARGEAPP_ARGON2": (1, 1024, 1),
        "RATELIMIT_ENABLED": True,
        "RATELIMIT_STORAGE_URI": "memory://",
    })
    from chargeapp.extensions import limiter

    limiter.reset()  # rate-limit counters are per test
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        db.create_all()
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def session(app):
    return db.session


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def station(session, clock):
    st = make_station(session, clock.now())
    session.commit()
    return st


@pytest.fixture
def driver(session, clock):
    d = make_driver(session, clock.now(), plate="沪A12345")
    session.commit()
    return d
