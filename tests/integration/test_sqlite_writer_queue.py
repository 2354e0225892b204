"""SQLite writers take turns (chargeapp/db/sqlite_writers.py): threads of a process on a mutex, processes on a
file lock, each turn given back when its transaction ends however it ends."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import text

from chargeapp.app import create_app
from chargeapp.db import db
from chargeapp.db.sqlite_writers import QueuedWriterConnection

pytestmark = pytest.mark.integration


@pytest.fixture
def sqlite_app(tmp_path):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/q.db"})
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER)"))
            conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
        yield app
        db.session.remove()
        db.engine.dispose()


def _lock_file_free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_the_apps_sqlite_connections_queue_their_writes(sqlite_app):
    with db.engine.connect() as conn:
        assert isinstance(conn.connection.dbapi_connection, QueuedWriterConnection)


def test_threads_writing_at_once_all_get_their_turn_and_none_is_lost(sqlite_app):
    """Read-then-write transactions from 8 threads: every increment lands, none fails 'database is locked'."""
    errors = []

    def work():
        with sqlite_app.app_context():
            try:
                for _ in range(25):
                    value = db.session.execute(text("SELECT value FROM counter WHERE id = 1")).scalar()
                    db.session.execute(text("UPDATE counter SET value = :v WHERE id = 1"), {"v": value + 1})
                    db.session.commit()
            except Exception as exc:  # pragma: no cover - the assertion below shows it
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == []
    assert db.session.execute(text("SELECT value FROM counter")).scalar() == 200


@pytest.mark.parametrize("end", ["commit", "rollback", "close"])
def test_a_transaction_gives_its_turn_back_however_it_ends(sqlite_app, end):
    lock_path = db.engine.url.database + "-writers"
    conn = db.engine.connect()
    raw = conn.connection.dbapi_connection
    conn.execute(text("UPDATE counter SET value = value + 1"))  # begins IMMEDIATE: takes the turn
    assert raw.holds_write_turn and not _lock_file_free(lock_path)
    if end == "commit":
        conn.commit()
    elif end == "rollback":
        conn.rollback()
    conn.close()
    assert not raw.holds_write_turn and _lock_file_free(lock_path)
    with db.engine.begin() as other:  # the next writer of this process is not kept waiting
        other.execute(text("UPDATE counter SET value = 5"))


def test_a_writer_of_another_process_is_waited_for_then_followed(sqlite_app, tmp_path):
    """Another process holds the writers' file lock: a writer here waits (and gives up after its limit with
    SQLite's own 'database is locked'), and writes as soon as the other lets go."""
    lock_path = db.engine.url.database + "-writers"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX);"
         " print('held', flush=True); sys.stdin.readline()", lock_path],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        raw = QueuedWriterConnection(db.engine.url.database, check_same_thread=False)
        import sqlite3

        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            raw.acquire_write(timeout=0.3)
        assert not raw.holds_write_turn
        raw.close()

        done = threading.Event()

        def write():
            with sqlite_app.app_context():
                db.session.execute(text("UPDATE counter SET value = 42"))
                db.session.commit()
                db.session.remove()
                done.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.5)  # waiting for the other process
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert done.wait(10)
        writer.join(10)
    finally:
        holder.kill()
        holder.wait()
    assert db.session.execute(text("SELECT value FROM counter")).scalar() == 42
