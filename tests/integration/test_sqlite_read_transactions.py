"""SQLite: GET and HEAD requests read in a deferred transaction, every other transaction takes the write lock.

A read must not wait for (or hold up) the bridge's and the other requests' writes
(WAL readers do not block), writers still begin IMMEDIATE, and a GET that writes
fails at once, loudly, instead of sometimes with 'database is locked'.
(chargeapp/app.py: ``_sqlite_begin``; the concurrency of bookings is
tests/deploy/test_booking_race_gunicorn.py.) SQLite only: PostgreSQL has no such lock.
"""
from __future__ import annotations

import sqlite3

import pytest
from flask import request
from sqlalchemy import delete, event, insert, text, update

from chargeapp.app import WriteInReadOnlyRequest, create_app
from chargeapp.clock import FixedClock
from chargeapp.db import db
from chargeapp.db import models as m
from tests.conftest import T0
from tests.factories import make_station

pytestmark = pytest.mark.integration


def _write_by(kind: str) -> None:
    """One write of each way the code base writes: an ORM flush, Core insert, update and delete, raw SQL."""
    session = db.session
    if kind == "orm":
        session.add(m.DeadLetter(received_at=T0, topic="t/x", payload=b"x", reason="bad_topic", detail="",
                                 station_code=None))
        session.flush()
    elif kind == "core_insert":
        session.execute(insert(m.AppliedMessage.__table__), {"device": "charger:s1/F9", "boot": 1, "seq": 1,
                                                             "applied_at": T0})
    elif kind == "core_update":
        session.execute(update(m.Station).where(m.Station.code == "s1").values(name="Renamed"))
    elif kind == "core_delete":
        session.execute(delete(m.AppliedMessage.__table__))
    elif kind == "raw":
        session.execute(text("UPDATE stations SET name = 'Renamed'"))
    else:
        raise AssertionError(kind)


WRITES = ("orm", "core_insert", "core_update", "core_delete", "raw")


@pytest.fixture
def sqlite_app(tmp_path):
    app = create_app({
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/reads.db",
        "CHARGEAPP_CLOCK": FixedClock(T0),
        "CHARGEAPP_ARGON2": (1, 1024, 1),
        "RATELIMIT_STORAGE_URI": "memory://",
    })

    @app.route("/api/test/write/<kind>", methods=["GET", "HEAD", "POST"])
    def write(kind):
        _write_by(kind)
        db.session.commit()
        return {"method": request.method}

    with app.app_context():
        db.create_all()
        make_station(db.session, T0)
        db.session.commit()
        db.session.remove()
    yield app  # no app context around the requests: each has its own, as under gunicorn
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def begins(sqlite_app):
    """The BEGIN statements the app's engine sends, in order."""
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith(("BEGIN", "PRAGMA query_only")):
            seen.append(statement)

    with sqlite_app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def writer_holding_the_lock(sqlite_app, tmp_path):
    """Another connection (the bridge, a booking) inside a write transaction with an uncommitted change."""
    conn = sqlite3.connect(tmp_path / "reads.db", isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE stations SET name = 'Uncommitted' WHERE code = 's1'")
    yield conn
    conn.rollback()
    conn.close()


def test_gets_answer_while_another_connection_holds_the_write_lock(sqlite_app, writer_holding_the_lock):
    """Before, each of these waited for the lock (busy_timeout 15 s) and then answered 503."""
    client = sqlite_app.test_client()
    station = client.get("/api/v1/stations/s1")
    assert station.status_code == 200 and station.json["name"] != "Uncommitted"  # the last committed state
    assert client.get("/api/v1/stations").status_code == 200
    assert client.get("/api/v1/stations/s1/slots", query_string={"date": "2026-11-23"}).status_code == 200
    assert client.get("/board/s1").status_code == 200
    assert client.head("/api/v1/stations/s1").status_code == 200
    # The writer still holds its lock and commits afterwards as usual.
    writer_holding_the_lock.execute("COMMIT")
    writer_holding_the_lock.execute("BEGIN")
    assert client.get("/api/v1/stations/s1").json["name"] == "Uncommitted"


def test_the_board_stream_polls_without_the_write_lock(sqlite_app, writer_holding_the_lock):
    sqlite_app.config.update(CHARGEAPP_BOARD_STREAM_SECONDS=0.2, CHARGEAPP_BOARD_POLL_SECONDS=0.05)
    r = sqlite_app.test_client().get("/board/s1/events")
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "event: snapshot" in body and "event: bye" in body


def test_reads_begin_deferred_and_writes_begin_immediate(sqlite_app, begins):
    client = sqlite_app.test_client()
    client.get("/api/v1/stations/s1")
    assert begins == ["PRAGMA query_only=ON", "BEGIN"]
    begins.clear()
    r = client.post("/api/v1/auth/register", json={"email": "a@example.com", "password": "correct-horse"})
    assert r.status_code == 201
    # Every transaction of a POST (the response is dumped after the commit, in a new one) takes the lock.
    assert begins[0] == "PRAGMA query_only=OFF" and set(begins[1:]) == {"BEGIN IMMEDIATE"}
    begins.clear()
    with sqlite_app.app_context():  # the bridge, the CLI, periodic work: no request, a writer
        db.session.execute(text("SELECT 1"))
        db.session.remove()
    assert begins == ["BEGIN IMMEDIATE"]


@pytest.mark.parametrize("kind", WRITES)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_write_in_a_read_only_request_fails_loudly(sqlite_app, kind, method):
    client = sqlite_app.test_client()
    with pytest.raises(WriteInReadOnlyRequest, match="request tried to write"):
        client.open(f"/api/test/write/{kind}", method=method)
    # Nothing was written, and the pooled connection is a writer again for the next POST.
    with sqlite_app.app_context():
        assert db.session.scalar(text("SELECT count(*) FROM dead_letters")) == 0
        assert db.session.scalar(text("SELECT name FROM stations")) != "Renamed"
        db.session.remove()
    assert client.post(f"/api/test/write/{kind}").json == {"method": "POST"}


def test_a_write_in_a_get_answers_500_not_the_503_of_a_busy_database(sqlite_app):
    sqlite_app.config["PROPAGATE_EXCEPTIONS"] = False
    r = sqlite_app.test_client().get("/api/test/write/orm")
    assert r.status_code == 500


def test_a_booking_and_its_cancel_each_take_one_write_turn(sqlite_app, begins):
    """The answer is the booking as its transaction committed it: no second BEGIN IMMEDIATE to read it back.

    Each turn of the write lock is a wait for every other writer (16 bookings at a time in the benchmark); the
    reload after the commit had been a second turn per POST.
    """
    client = sqlite_app.test_client()
    r = client.post("/api/v1/auth/register", json={"email": "b@example.com", "password": "correct-horse"})
    auth = {"Authorization": f"Bearer {r.json['token']}"}
    begins.clear()
    booked = client.post("/api/v1/bookings", json={"station": "s1", "slot_start": "2026-11-22T15:00:00+08:00"},
                         headers=auth)
    assert booked.status_code == 201
    assert [b for b in begins if b.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    assert booked.json["station"] == "s1" and booked.json["charger"] and booked.json["status"] == "booked"
    begins.clear()
    cancelled = client.post(f"/api/v1/bookings/{booked.json['id']}/cancel", headers=auth)
    assert cancelled.status_code == 200 and cancelled.json["status"] == "cancelled"
    assert [b for b in begins if b.startswith("BEGIN")] == ["BEGIN IMMEDIATE"]
    # What was answered is what is stored.
    mine = client.get("/api/v1/bookings", headers=auth).json
    assert [(b["id"], b["status"], b["charger"], b["slot_start"]) for b in mine] == [
        (booked.json["id"], "cancelled", booked.json["charger"], booked.json["slot_start"])]
    assert mine[0]["cancelled_at"] == cancelled.json["cancelled_at"]
