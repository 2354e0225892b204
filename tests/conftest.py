"""Fixtures: an app on a fresh database per test, a fixed clock, a session, and a
demo-like station.

Every test that uses the ``app`` fixture runs on a SQLite file and, when
CHARGEAPP_TEST_POSTGRES_URL names a PostgreSQL server database, on PostgreSQL
too (one database per xdist worker, created on demand, emptied per test).
"""
from __future__ import annotations

import os
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, make_url, text

from chargeapp.app import create_app
from chargeapp.clock import FixedClock
from chargeapp.db import db
from chargeapp.db import models  # noqa: F401  (registers the tables)
from tests.factories import make_driver, make_station

UTC = timezone.utc
# 2026-11-22 14:00 in Shanghai
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


POSTGRES_URL = os.environ.get("CHARGEAPP_TEST_POSTGRES_URL")
BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(scope="session")
def postgres_database(request):
    """A PostgreSQL database of this test process's own, dropped at the end: each xdist worker, and each of
    several pytest runs sharing one server (developers, agents), empties only its own between tests."""
    worker = getattr(request.config, "workerinput", {}).get("workerid", "main")
    url = make_url(POSTGRES_URL)
    name = f"{url.database}_{worker}_{os.getpid()}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar() is None:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=BACKENDS)
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.fixture
def app(database_url, clock):
    app = create_app({
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
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
