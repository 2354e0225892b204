"""The command line and the migration history."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import select

from chargeapp.app import create_app
from chargeapp.db import db
from chargeapp.db import models as m

pytestmark = pytest.mark.integration


def test_db_upgrade_builds_the_schema_of_the_models_from_nothing(tmp_path, clock):
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/fresh.db", "CHARGEAPP_CLOCK": clock})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], f"models and migrations disagree: {diff}"
        db.engine.dispose()


def test_every_migration_goes_down_and_up_again_on_a_database_with_receipts(database_url, clock):
    """An operator who rolls a release back runs ``flask db downgrade``: on SQLite a batch migration copies the table
    and drops the old one, which foreign keys refused as soon as a receipt referred to a session (env.py turns
    them off while migrating and checks every reference before the commit). Down to the first revision and up
    again, step by step, on both databases: the rows survive and the schema is the models' again."""
    from datetime import timedelta

    from alembic.script import ScriptDirectory
    from flask_migrate import downgrade
    from sqlalchemy import text

    from chargeapp.app import MIGRATIONS_DIR
    from chargeapp.services import receipts
    from tests.factories import make_station
    from tests.integration.test_receipts import charged, new_driver, stay

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CHARGEAPP_CLOCK": clock})
    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade()
        if db.engine.dialect.name == "postgresql":  # connections opened for a migration run without the limit
            with db.engine.connect() as conn:
                assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "0"
        session = db.session
        station = make_station(session, clock.now())
        driver = new_driver(session)
        charged(session, station, driver, clock.now() - timedelta(hours=3), 20)
        stay(session, station, clock.now() - timedelta(hours=3), clock.now() - timedelta(hours=2))
        session.commit()
        counts = receipts.settle_due(session, clock.now() - timedelta(minutes=1))
        session.commit()
        assert (counts["charging_receipts"], counts["parking_receipts"]) == (1, 1)
        session.remove()

        script = ScriptDirectory(MIGRATIONS_DIR)
        newest_first = [r.revision for r in script.walk_revisions()]
        for revision in newest_first[1:]:
            downgrade(revision=revision)
        for revision in reversed(newest_first[:-1]):
            upgrade(revision=revision)
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
            assert diff == [], f"models and migrations disagree after the round trip: {diff}"
            assert overlap_guards(conn)  # (compare_metadata does not see them)
            assert conn.execute(text("SELECT count(*) FROM receipts")).scalar() == 2
            stamped = conn.execute(text("SELECT count(*) FROM charging_sessions WHERE receipted_at IS NOT NULL")).scalar()
            assert stamped == 1  # the upgrade stamped it again from its receipt
            assert conn.execute(text("SELECT count(*) FROM parking_stays WHERE settled_at IS NOT NULL")).scalar() == 1
            if conn.dialect.name == "sqlite":
                assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # on again for the app
        db.engine.dispose()


def overlap_guards(conn) -> list[str]:
    """The database's refusal of bookings overlapping on a charger as its catalog shows it: SQLite's triggers,
    PostgreSQL's exclusion constraint (compare_metadata sees neither)."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'bookings' ORDER BY name").scalars()
    else:
        rows = conn.exec_driver_sql("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                    "WHERE conrelid = 'bookings'::regclass AND contype = 'x' ORDER BY conname").scalars()
    return [" ".join(sql.split()) for sql in rows]


def _fresh_schema():
    if db.engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    else:
        db.metadata.drop_all(db.engine)


def test_the_migrations_build_the_models_refusal_of_overlapping_bookings(database_url, clock):
    """The models (create_all, which the tests use) and the migrations (production) make the same triggers or
    exclusion constraint, and the migrated database refuses an overlapping booking. A later SQLite batch
    migration of ``bookings`` copies the table and loses its triggers: this test notices."""
    from sqlalchemy import insert
    from sqlalchemy.exc import IntegrityError

    from tests.factories import make_driver, make_station
    from tests.integration.test_booking_overlap import AT_1500, AT_1530, AT_1600, booking_row

    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CHARGEAPP_CLOCK": clock})
    with app.app_context():
        _fresh_schema()
        db.create_all()
        with db.engine.connect() as conn:
            from_models = overlap_guards(conn)
        _fresh_schema()
        upgrade()
        with db.engine.connect() as conn:
            assert overlap_guards(conn) == from_models
        assert len(from_models) == (2 if db.engine.dialect.name == "sqlite" else 1)
        session = db.session
        station = make_station(session, clock.now())
        a, b = make_driver(session, clock.now()), make_driver(session, clock.now())
        session.execute(insert(m.Booking), [booking_row(station, a, "F1", AT_1530, AT_1600)])
        session.commit()
        with pytest.raises(IntegrityError, match=m.BOOKING_OVERLAP):
            session.execute(insert(m.Booking), [booking_row(station, b, "F1", AT_1500, AT_1600)])
            session.flush()
        session.rollback()
        session.remove()
        db.engine.dispose()


def test_the_overlap_migration_clears_the_charger_of_overlapping_history_and_stops_at_overlapping_bookings(
        database_url, clock):
    """Rows from before the refusal may overlap already. Checked-in ones are history: the later one of a pair
    loses its charger, as check-in does when another booking holds it. Bookings still ahead are not for a
    migration to choose between: it stops, names them, and the database stays at the revision it was."""
    from datetime import timedelta

    from flask_migrate import downgrade
    from sqlalchemy import insert, text

    from tests.factories import make_driver, make_station
    from tests.integration.test_booking_overlap import AT_1500, AT_1530, AT_1600, booking_row

    before = "90a8c308c831"  # the revision before the overlap guard (ddd776fabd23)
    app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CHARGEAPP_CLOCK": clock})
    with app.app_context():
        _fresh_schema()
        upgrade(revision=before)
        session = db.session
        station = make_station(session, clock.now())
        a, b, c = (make_driver(session, clock.now()) for _ in range(3))
        past = timedelta(days=-2)
        session.execute(insert(m.Booking), [
            booking_row(station, a, "F1", AT_1530 + past, AT_1600 + past, status="checked_in"),
            booking_row(station, b, "F1", AT_1500 + past, AT_1600 + past, status="checked_in"),
            booking_row(station, c, "F1", AT_1600 + past, AT_1600 + past + timedelta(hours=1), status="checked_in"),
        ])
        session.commit()
        upgrade()
        chargers = session.execute(select(m.Booking.driver_id, m.Booking.charger_id)).all()
        f1 = station.chargers[0].id
        assert sorted(chargers, key=str) == sorted([(a.id, f1), (b.id, None), (c.id, f1)], key=str)
        session.remove()  # (no transaction open while migrating)

        downgrade(revision=before)
        session.execute(insert(m.Booking), [booking_row(station, a, "F2", AT_1530, AT_1600),
                                            booking_row(station, b, "F2", AT_1500, AT_1600)])
        session.commit()
        ids = sorted(session.scalars(select(m.Booking.id).where(m.Booking.slot_start >= AT_1500)))
        session.remove()
        with pytest.raises(SystemExit) as exited:  # flask db upgrade logs the message and exits 1
            upgrade()
        assert f"1 pair(s) of bookings hold one charger at overlapping times (booking ids): [{tuple(ids)}]" in str(
            exited.value.__context__)
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == before
        db.engine.dispose()


def test_an_app_that_is_done_with_is_freed_with_its_engine(database_url, clock):
    """Nothing global keeps an app alive: on PostgreSQL its connect listener (in the dialect's dispatch, which
    SQLAlchemy's lru_caches keep) held the app, so a process that creates apps (the test suite, a worker per test)
    kept every one with its engine and an open server connection: 6 million objects and 5 s garbage collections."""
    import gc
    import weakref

    from sqlalchemy import text

    def use_one() -> weakref.ref:
        app = create_app({"SQLALCHEMY_DATABASE_URI": database_url, "CHARGEAPP_CLOCK": clock})
        with app.app_context():
            db.session.execute(text("SELECT 1"))
            db.session.remove()
            engine = weakref.ref(db.engine)
        return weakref.ref(app), engine

    apps = [use_one() for _ in range(3)]
    gc.collect()
    gc.collect()  # the first collection's finalizers (the pool's connections) free the engines' last cycles
    alive = [i for i, (app, engine) in enumerate(apps[:2]) if app() is not None or engine() is not None]
    assert alive == []  # (the newest stays the current app of the module-level Api until another one is made)


def test_a_sqlite_migration_that_would_leave_a_dangling_reference_is_rolled_back_whole(tmp_path, clock):
    """Foreign keys are off while migrating SQLite; the check before the commit stands in for them: a reference to
    nothing (here planted by hand) refuses the run, and the database stays at the revision it was."""
    import sqlite3

    from flask_migrate import downgrade
    from sqlalchemy import text

    path = tmp_path / "dangling.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "CHARGEAPP_CLOCK": clock})
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        raw = sqlite3.connect(path)  # foreign keys off: a connection of this test's own, not the app's
        raw.execute("INSERT INTO id_tags (tag, user_id) VALUES ('TAG-1', 999)")  # user 999 does not exist
        raw.commit()
        raw.close()
        with pytest.raises(SystemExit) as exited:  # flask db downgrade logs the message and exits 1
            downgrade(revision="-2")
        refused = str(exited.value.__context__)
        assert "1 row(s) referring to nothing, so it was rolled back" in refused
        assert "('id_tags', 1, 'users', 0)" in refused
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
            tables = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
            assert "periodic_cursors" in tables  # the downgrade that drops it was rolled back with the rest
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        db.engine.dispose()


def test_the_upgrade_stamps_sessions_and_stays_that_have_their_receipt_already(session, station, clock):
    """d7a3f0b81c62 adds charging_sessions.receipted_at: rows from before it get their receipt's issue time, so
    the periodic pass's index of sessions still due starts with only those (and stays likewise). Its statements,
    on rows as they were before it."""
    import importlib.util
    from datetime import timedelta
    from pathlib import Path

    from sqlalchemy import text

    from chargeapp.services import receipts
    from tests.integration.test_receipts import charged, new_driver, stay

    path = next(Path(m.__file__).parents[1].glob("migrations/versions/d7a3f0b81c62_*.py"))
    spec = importlib.util.spec_from_file_location("d7a3f0b81c62", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)

    driver = new_driver(session)
    charged(session, station, driver, clock.now() - timedelta(hours=3), 20)
    charged(session, station, driver, clock.now() - timedelta(minutes=5), 20, code="F2")  # no receipt yet
    stay(session, station, clock.now() - timedelta(hours=3), clock.now() - timedelta(hours=2))
    session.commit()
    receipts.settle_due(session, clock.now() - timedelta(minutes=1))
    session.commit()
    session.execute(m.ChargingSession.__table__.update().values(receipted_at=None))  # as before the migration
    session.execute(m.ParkingStay.__table__.update().values(settled_at=None))
    for statement in migration.BACKFILL:
        session.execute(text(statement))
    session.commit()
    session.expire_all()
    issued = {session_id: at for session_id, at in session.execute(
        select(m.Receipt.session_id, m.Receipt.issued_at).where(m.Receipt.kind == "charging"))}
    stamped = {cs.id: cs.receipted_at for cs in session.scalars(select(m.ChargingSession))}
    assert len(stamped) == 2 and len(issued) == 1 and stamped == {**dict.fromkeys(stamped), **issued}
    [parking] = session.scalars(select(m.Receipt).where(m.Receipt.kind == "parking"))
    assert session.get(m.ParkingStay, parking.stay_id).settled_at == parking.issued_at


def _run_python(args: list[str], tmp_path) -> str:
    """Run Python in a fresh process on a database of its own; its standard output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEAPP_")}
    env["CHARGEAPP_DATABASE_URL"] = f"sqlite:///{tmp_path}/fresh.db"
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_web_app_loads_no_bridge_gateway_simulator_or_demo(tmp_path):
    """A gunicorn worker is create_app(): the process commands are the command line's (flask.commands entry points),
    so the web app imports neither them nor paho, websockets, ocpp or amqtt."""
    code = ("import sys\n"
            "from chargeapp.app import create_app\n"
            "create_app()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('paho', 'websockets', 'ocpp', 'amqtt', "
            "'mqtt_bridge', 'ocpp_gateway', 'simulators') or m.startswith(('chargeapp.demo.', 'chargeapp.cli.')) "
            "or m in ('chargeapp.demo', 'chargeapp.cli')))")
    assert _run_python(["-c", code], tmp_path).strip() == "[]"


def test_the_command_line_lists_the_app_commands_and_the_process_commands(tmp_path):
    """The process commands come from the installed entry points (after editing them: pip install -e .)."""
    out = _run_python(["-m", "chargeapp.cli", "--help"], tmp_path)
    listed = {line.split()[0] for line in out.partition("Commands:")[2].splitlines() if line.strip()}
    assert {"bridge", "simulate", "demo", "ocpp-gateway", "ocpp-password", "mqtt-credentials", "map-device", "tick",
            "rollup", "report", "seed", "create-manager", "db"} <= listed, out


def test_seed_demo_is_idempotent_and_marks_demo_data(runner, session):
    first = runner.invoke(args=["seed", "--demo"])
    assert first.exit_code == 0, first.output
    assert "demo login: driver@demo.chargeapp" in first.output
    again = runner.invoke(args=["seed", "--demo"])
    assert again.exit_code == 0 and "none (already there)" in again.output
    stations = session.scalars(select(m.Station)).all()
    assert {s.code for s in stations} == {"yangpu-liaoyuan", "yangpu-bus-depot", "hongkou-quyang"}
    assert all(s.is_demo for s in stations)
    liaoyuan = next(s for s in stations if s.code == "yangpu-liaoyuan")
    assert [c.code for c in liaoyuan.chargers if c.kind == "fast"] == ["F1", "F2", "F3", "F4", "F5"]
    assert sum(c.kind == "slow" for c in liaoyuan.chargers) == 28
    assert {z.code for z in liaoyuan.zones} == {"hall", "tea", "upstairs"}


def test_seed_without_demo_flag_is_a_usage_error(runner):
    assert runner.invoke(args=["seed"]).exit_code == 2


def test_create_manager_scoped_to_a_station(runner, session, station):
    r = runner.invoke(args=["create-manager", "--email", "m@example.com", "--password", "long-enough",
                            "--station", "s1"])
    assert r.exit_code == 0, r.output
    user = session.scalar(select(m.User).where(m.User.email == "m@example.com"))
    assert user.role == "manager" and [s.code for s in user.stations] == ["s1"]


def test_tick_prints_what_it_did(runner, station):
    r = runner.invoke(args=["tick"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["no_show"] == 0


def test_tick_takes_the_bridges_lease_and_gives_it_back_and_does_nothing_while_a_bridge_holds_it(
        runner, session, station, clock):
    from datetime import timedelta

    from chargeapp.services.lease import PERIODIC_LEASE, acquire_lease

    r = runner.invoke(args=["tick"])
    assert r.exit_code == 0 and r.output.startswith("{"), r.output
    session.expire_all()
    lease = session.get(m.Lease, PERIODIC_LEASE)
    assert lease.holder.startswith("tick@") and lease.expires_at == clock.now()  # given back: a bridge takes over now

    assert acquire_lease(session, PERIODIC_LEASE, "bridge-1", clock.now(), timedelta(seconds=30))
    session.commit()
    session.remove()
    r = runner.invoke(args=["tick"])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("skipped: bridge-1 is running the periodic work"), r.output
    assert session.get(m.Lease, PERIODIC_LEASE).holder == "bridge-1"  # not taken over


def test_report_command_prints_json_and_csv(runner, station):
    r = runner.invoke(args=["report", "--station", "s1", "--start", "2026-11-01", "--end", "2026-11-21"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["station"] == "s1"
    r = runner.invoke(args=["report", "--station", "s1", "--start", "2026-11-01", "--end", "2026-11-21",
                            "--format", "csv"])
    assert r.exit_code == 0, r.output
    assert "F1" in r.output and "scope" in r.output


def test_report_command_refuses_a_range_that_is_too_long(runner, station):
    r = runner.invoke(args=["report", "--station", "s1", "--start", "2020-01-01", "--end", "2026-11-21"])
    assert r.exit_code == 1 and "400 days" in r.output and "Traceback" not in r.output
