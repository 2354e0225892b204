"""The periodic pass (receipts.settle_due) prices again only what may have changed: a pass over unchanged receipts
reprices none of them in a constant number of statements, and every kind of late input still gives its correction
at the next pass. Times are Shanghai wall time on 22 Nov 2026; the clock is at 14:00."""
from __future__ import annotations

import random
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event, func, insert, select

from chargeapp.db import models as m
from chargeapp.domain.errors import DomainError
from chargeapp.services import charging, gates, receipts
from chargeapp.services.registry import create_user
from tests.conftest import T0
from tests.integration.test_receipts import LONG_AGO, PLATE, charged, charging_session, local, statuses, stay

pytestmark = pytest.mark.integration

STEP = timedelta(seconds=5)  # the bridge's periodic work runs every few seconds
_users = iter(range(1, 10_000))


def new_driver(session, *plates, valid_from=LONG_AGO):
    user = create_user(session, email=f"recheck{next(_users)}@example.com", password_hash="x", now=LONG_AGO)
    for plate in plates:
        session.add(m.PlateRegistration(user_id=user.id, plate=plate, valid_from=valid_from))
    session.flush()
    return user


@pytest.fixture
def priced(monkeypatch):
    """How often receipts were priced: ``_reprice`` (rechecks), ``_price_session`` and ``_price_stay`` (all)."""
    calls = Counter()
    for name in ("_reprice", "_price_session", "_price_stay"):
        def spy(*args, _real=getattr(receipts, name), _name=name, **kw):
            calls[_name] += 1
            return _real(*args, **kw)
        monkeypatch.setattr(receipts, name, spy)
    return calls


@contextmanager
def statements(session):
    """The SQL statements sent (an executemany is one; SQLite's BEGIN IMMEDIATE is left out)."""
    engine, sent = session.get_bind(), []

    def count(conn, cursor, statement, *_):
        if not statement.startswith("BEGIN"):
            sent.append(statement[:60])

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def corrections(session, original):
    return list(session.scalars(select(m.Receipt).where(m.Receipt.kind == "correction",
                                                        (m.Receipt.session_id == original.session_id)
                                                        if original.kind == "charging"
                                                        else (m.Receipt.stay_id == original.stay_id))
                                .order_by(m.Receipt.id)))


def original_of(session, *, cs=None, stay_row=None):
    if cs is not None:
        return session.scalar(select(m.Receipt).where(m.Receipt.kind == "charging", m.Receipt.session_id == cs.id))
    return session.scalar(select(m.Receipt).where(m.Receipt.kind == "parking", m.Receipt.stay_id == stay_row.id))


def a_day(session, station, n):
    """``n`` closed sessions (fast and slow chargers, with meter readings, Charging then Available) and ``n // 2``
    stays of drivers who charged in some of them; returns (sessions, stays)."""
    codes = ["F1", "F2", "F3", "S01", "S02"]
    sessions, stays = [], []
    for i in range(n):
        code = codes[i % len(codes)]
        start = local(0, 5) + timedelta(minutes=50 * (i // len(codes)))
        plate = f"沪C{i:05d}"
        driver = new_driver(session, plate)
        statuses(session, station, code, (start, "Charging"), (start + timedelta(minutes=30), "SuspendedEV"),
                 (start + timedelta(minutes=35), "Finishing"), (start + timedelta(minutes=47), "Available"))
        cs = charging_session(session, station, driver, start, start + timedelta(minutes=35), code=code,
                              start_wh=1000 * i, stop_wh=1000 * i + 20_000,
                              readings=[(start + timedelta(minutes=k * 5), 1000 * i + 3000 * k) for k in range(1, 7)])
        sessions.append(cs)
        if i % 2 == 0:
            stays.append(stay(session, station, start - timedelta(minutes=3), start + timedelta(minutes=70),
                              plate=plate))
    return sessions, stays


# -- unchanged receipts ------------------------------------------------------------------------------


def test_a_pass_over_unchanged_receipts_reprices_none_of_them_in_a_few_statements(session, station, priced):
    a_day(session, station, 40)
    first = receipts.settle_due(session, T0)
    assert (first["charging_receipts"], first["parking_receipts"], first["errors"]) == (40, 20, 0)
    assert (priced["_price_session"], priced["_price_stay"], priced["_reprice"]) == (40, 20, 0)
    session.commit()
    receipts.settle_due(session, T0 + STEP)  # the first recheck also places the cursor (periodic_cursors)
    session.commit()

    priced.clear()
    with statements(session) as sent:
        again = receipts.settle_due(session, T0 + 2 * STEP)
    assert (again["rechecked"], again["corrections"], again["charging_receipts"], again["parking_receipts"]) == (
        60, 0, 0, 0)
    assert sum(priced.values()) == 0
    assert len(sent) <= 9, sent  # the cursor, receipts, 1 charging + 3 parking digests, checks, closed, exited
    session.commit()

    # The same statements for ten times fewer receipts: the cost is the digests' queries, not one pricing each.
    session.execute(m.Receipt.__table__.update().where(m.Receipt.id % 10 != 0).values(issued_at=T0 - timedelta(days=2)))
    with statements(session) as few:
        receipts.settle_due(session, T0 + 3 * STEP)
    assert len(few) == len(sent)


def test_a_receipt_issued_outside_the_pass_is_repriced_once_then_left_alone(session, station, owner, priced):
    charged(session, station, owner, local(10, 10), 20)
    cs = session.scalar(select(m.ChargingSession))
    receipts.issue_charging_receipt(session, T0, cs)  # e.g. a manager's page: no digest recorded
    assert receipts.settle_due(session, T0)["rechecked"] == 1 and priced["_reprice"] == 1
    assert receipts.settle_due(session, T0 + STEP)["rechecked"] == 1 and priced["_reprice"] == 1


@pytest.fixture
def owner(session):
    return new_driver(session, PLATE)


# -- each kind of late input gives its correction at the next pass --------------------------------------


def settled(session, now=T0):
    counts = receipts.settle_due(session, now)
    session.commit()
    return counts


def test_a_late_meter_sample_written_by_the_bridge_core_path_corrects_the_energy(session, station, owner, priced):
    statuses(session, station, "F1", (local(10, 40), "Charging"), (local(11, 20), "Available"))
    cs = charging_session(session, station, owner, local(10, 40), local(11, 20), stop_wh=20000)
    settled(session)
    original = original_of(session, cs=cs)
    assert original.energy_fen == 1741
    assert settled(session, T0 + STEP)["corrections"] == 0 and priced["_reprice"] == 0
    # As mqtt_bridge.handler._record_meter writes it: a Core insert, no ORM object, no flush events.
    session.execute(insert(m.MeterReading.__table__), {"session_id": cs.id, "at": local(11), "energy_wh": 18000,
                                                       "power_w": 40000, "soc": None})
    session.commit()
    counts = settled(session, T0 + 2 * STEP)
    assert (counts["corrections"], priced["_reprice"]) == (1, 1)
    (correction,) = corrections(session, original)
    assert correction.energy_fen == 2069 - 1741 and correction.corrects_id == original.id
    assert settled(session, T0 + 3 * STEP)["corrections"] == 0 and priced["_reprice"] == 1  # not again


def test_a_late_available_corrects_the_idle_fee(session, station, owner, priced):
    statuses(session, station, "F1", (local(9), "Charging"), (local(9, 30), "SuspendedEV"),
             (local(9, 40), "Finishing"), (local(10, 20), "Available"))
    cs = charging_session(session, station, owner, local(9), local(9, 40), stop_wh=10000)
    settled(session)
    original = original_of(session, cs=cs)
    assert original.idle_fen == 2000
    settled(session, T0 + STEP)
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Available",
                           at=local(9, 55), now=T0)
    session.commit()
    assert settled(session, T0 + 2 * STEP)["corrections"] == 1
    (correction,) = corrections(session, original)
    assert correction.idle_fen == -1250
    settled(session, T0 + 3 * STEP)
    assert priced["_reprice"] == 1


def test_a_late_charging_status_moving_the_end_of_charging_corrects_the_idle_fee(session, station, owner):
    statuses(session, station, "F1", (local(9), "Charging"), (local(9, 30), "SuspendedEV"),
             (local(9, 40), "Finishing"), (local(9, 55), "Available"))
    cs = charging_session(session, station, owner, local(9), local(9, 40), stop_wh=10000)
    settled(session)
    original = original_of(session, cs=cs)
    assert original.idle_fen == 750  # idle 09:30-09:55: 15 billed minutes
    statuses(session, station, "F1", (local(9, 35), "Charging"), (local(9, 38), "SuspendedEV"))
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].idle_fen == -400  # idle 09:38-09:55: 7 billed minutes


def test_a_late_stop_with_its_meter_corrects_a_session_closed_by_available(session, station, owner, priced):
    charging.record_transaction(session, station_code="s1", charger_code="S01", event="start", connector=1,
                                transaction_id=7, id_tag=None, meter_wh=0, at=local(9), now=local(9))
    cs = session.scalar(select(m.ChargingSession).where(m.ChargingSession.transaction_id == 7))
    cs.driver_id = owner.id
    for minute, wh in ((10, 2000), (20, 4000)):
        charging.record_meter(session, station_code="s1", charger_code="S01", connector=1, transaction_id=7,
                              energy_wh=wh, at=local(9, minute), now=local(9, minute))
    charging.record_status(session, station_code="s1", charger_code="S01", connector=1, status="Available",
                           at=local(9, 40), now=local(9, 40))  # the stop was lost: Available closes it
    session.commit()
    settled(session)
    original = original_of(session, cs=cs)
    assert (cs.closed_by, original.energy_wh) == ("available", 4000)
    charging.record_transaction(session, station_code="s1", charger_code="S01", event="stop", connector=1,
                                transaction_id=7, id_tag=None, meter_wh=5500, at=local(9, 30), now=T0)
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].energy_wh == 1500
    assert settled(session, T0 + 2 * STEP)["corrections"] == 0 and priced["_reprice"] == 1


def test_a_late_start_of_the_next_session_ends_this_one_earlier(session, station, owner):
    charging.record_transaction(session, station_code="s1", charger_code="S01", event="start", connector=1,
                                transaction_id=8, id_tag=None, meter_wh=0, at=local(9), now=local(9))
    cs = session.scalar(select(m.ChargingSession).where(m.ChargingSession.transaction_id == 8))
    cs.driver_id = owner.id
    for minute, wh in ((10, 2000), (20, 4000), (30, 6000)):
        charging.record_meter(session, station_code="s1", charger_code="S01", connector=1, transaction_id=8,
                              energy_wh=wh, at=local(9, minute), now=local(9, minute))
    charging.record_status(session, station_code="s1", charger_code="S01", connector=1, status="Available",
                           at=local(9, 40), now=local(9, 40))
    session.commit()
    settled(session)
    original = original_of(session, cs=cs)
    assert original.energy_wh == 6000
    # The next driver's start, 09:25, arrives late: this session ended then (closed_by new_start).
    charging.record_transaction(session, station_code="s1", charger_code="S01", event="start", connector=1,
                                transaction_id=9, id_tag=None, meter_wh=6000, at=local(9, 25), now=T0)
    session.commit()
    assert cs.closed_by == "new_start" and cs.stopped_at == local(9, 25)
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].energy_wh == -2000  # the 09:30 reading is no longer in it


def test_a_late_gate_passage_corrects_the_stay(session, station, owner, priced):
    for direction, at in (("in", local(10)), ("out", local(13))):
        gates.record_gate_passage(session, station_code="s1", gate_code=f"G-{direction}", plate=PLATE,
                                  direction=direction, at=at, now=at)
    session.commit()
    settled(session)
    s = session.scalar(select(m.ParkingStay))
    original = original_of(session, stay_row=s)
    assert original.parking_fen == 3000
    # The real exit, 11:00, delayed past the receipt: the 13:00 out becomes a stay of its own.
    gates.record_gate_passage(session, station_code="s1", gate_code="G-out", plate=PLATE, direction="out",
                              at=local(11), now=T0)
    session.commit()
    counts = settled(session, T0 + STEP)
    assert (counts["corrections"], counts["stays_without_entry"]) == (1, 1)
    assert corrections(session, original)[0].parking_fen == -2000
    assert settled(session, T0 + 2 * STEP)["corrections"] == 0 and priced["_reprice"] == 1


def test_a_plate_registration_recorded_late_makes_a_drivers_charging_count(session, station, priced):
    stranger = new_driver(session)  # the plate is not (yet) registered to anyone
    charged(session, station, stranger, local(10, 10), 20)
    s = stay(session, station, local(10), local(13))
    settled(session)
    original = original_of(session, stay_row=s)
    assert (original.parking_fen, original.driver_id) == (3000, None)
    session.add(m.PlateRegistration(user_id=stranger.id, plate=PLATE, valid_from=local(9)))
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].parking_fen == -2000


def test_a_registration_ended_before_the_charging_takes_it_out(session, station, owner):
    charged(session, station, owner, local(10, 10), 20)
    s = stay(session, station, local(10), local(13))
    settled(session)
    original = original_of(session, stay_row=s)
    assert original.parking_fen == 1000
    reg = session.scalar(select(m.PlateRegistration).where(m.PlateRegistration.user_id == owner.id))
    reg.valid_to = local(10, 5)  # the car had changed hands before the charging
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].parking_fen == 2000


def test_a_late_charging_status_inside_a_stay_makes_it_qualify(session, station, owner, priced):
    charged(session, station, owner, local(10, 10), 14, stop_after=30)  # SuspendedEV 10:24, stop 10:54
    s = stay(session, station, local(10), local(13))
    settled(session)
    original = original_of(session, stay_row=s)
    assert original.parking_fen == 3000
    assert settled(session, T0 + STEP)["corrections"] == 0
    reprices = priced["_reprice"]
    # The charger was offline: it resumed charging 10:30-10:31, reported after the receipt.
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Charging",
                           at=local(10, 30), now=T0)
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="SuspendedEV",
                           at=local(10, 31), now=T0)
    session.commit()
    assert settled(session, T0 + 2 * STEP)["corrections"] == 2
    assert corrections(session, original)[0].parking_fen == -2000
    # The session's own receipt too: charging now ends 10:31, so 24 min idle until Available 10:55, not 31.
    charging_receipt = original_of(session, cs=session.scalar(select(m.ChargingSession)))
    assert corrections(session, charging_receipt)[0].idle_fen == 700 - 1050
    assert priced["_reprice"] == reprices + 2
    assert settled(session, T0 + 3 * STEP)["corrections"] == 0 and priced["_reprice"] == reprices + 2


def test_a_late_status_before_the_entry_changes_the_state_the_stay_begins_in(session, station, owner):
    # Charging 09:50-09:52, SuspendedEV, Charging 10:06-10:20: 14 min inside the 10:00 stay.
    statuses(session, station, "F1", (local(9, 50), "Charging"), (local(9, 52), "SuspendedEV"),
             (local(10, 6), "Charging"), (local(10, 20), "SuspendedEV"), (local(10, 40), "Available"))
    charging_session(session, station, owner, local(9, 50), local(10, 30), stop_wh=9000)
    s = stay(session, station, local(10), local(13))
    settled(session)
    original = original_of(session, stay_row=s)
    assert original.parking_fen == 3000
    statuses(session, station, "F1", (local(9, 58), "Charging"))  # nothing new inside the stay, but it began so
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].parking_fen == -2000


def test_a_status_change_committed_late_with_a_lower_id_is_seen(session, station, owner):
    """On PostgreSQL ids come from a sequence: a transaction that took its id first may commit after one that took
    the next id, whose row a pass already saw. The count of the span sees it."""
    for row_id, at, value in ((1_000_000, local(9), "Charging"), (1_000_002, local(9, 30), "SuspendedEV"),
                              (1_000_003, local(9, 55), "Available")):
        session.add(m.StatusChange(id=row_id, connector_id=station.chargers[0].connectors[0].id, at=at, status=value))
    cs = charging_session(session, station, owner, local(9), local(9, 40), stop_wh=10000)
    settled(session)
    original = original_of(session, cs=cs)
    assert original.idle_fen == 750
    session.add(m.StatusChange(id=1_000_001, connector_id=station.chargers[0].connectors[0].id, at=local(9, 38),
                               status="Charging"))
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].idle_fen == 250 - 750  # charging until the stop 09:40: 15 min idle


def test_a_late_start_of_another_session_during_this_one_ends_its_idle_time(session, station, owner):
    statuses(session, station, "F1", (local(9), "Charging"), (local(9, 20), "SuspendedEV"),
             (local(10, 30), "Available"))
    cs = charging_session(session, station, owner, local(9), local(9, 40), stop_wh=10000)
    settled(session)
    original = original_of(session, cs=cs)
    assert original.idle_fen == 3000  # 70 min idle: capped
    # The next car's start, 09:25, arrives late (this session's stop, 09:40, stands: a stop is never moved).
    charging_session(session, station, None, local(9, 25), local(10, 20), stop_wh=20000)
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].idle_fen == -3000  # 5 min idle until 09:25


def test_a_session_given_to_another_registered_driver_is_seen(session, station, owner):
    later_owner = new_driver(session, PLATE, valid_from=local(10, 20))
    charged(session, station, later_owner, local(10, 10), 20)  # counts 10:20-10:30 only: 10 min
    s = stay(session, station, local(10), local(13))
    settled(session)
    original = original_of(session, stay_row=s)
    assert original.parking_fen == 3000
    # A data fix outside the services: the session was the first owner's, registered all along (20 min).
    session.execute(m.ChargingSession.__table__.update().values(driver_id=owner.id))
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1
    assert corrections(session, original)[0].parking_fen == -2000


def test_a_late_charging_status_of_another_drivers_session_reprices_only_its_own_receipts(session, station, owner,
                                                                                         priced):
    charged(session, station, owner, local(10, 10), 20)
    stay(session, station, local(10), local(13))
    other = new_driver(session, "沪E11111")
    charged(session, station, other, local(11), 20, code="F2")
    settled(session)
    statuses(session, station, "F2", (local(11, 10), "Charging"))  # a repeat inside the other session only
    session.commit()
    before = priced["_reprice"]
    settled(session, T0 + STEP)
    assert priced["_reprice"] == before + 1


def test_a_change_of_the_stations_parking_rules_is_an_input_too(session, station, owner):
    charged(session, station, owner, local(10, 10), 14)
    s = stay(session, station, local(10), local(13))
    settled(session)
    original = original_of(session, stay_row=s)
    assert original.parking_fen == 3000
    station.rules.free_parking_qualify_minutes = 10
    session.commit()
    assert settled(session, T0 + STEP)["corrections"] == 1  # as when every receipt was repriced every pass
    assert corrections(session, original)[0].parking_fen == -2000


def test_a_reopened_stay_is_left_alone_until_it_can_be_priced(session, station, owner, priced):
    s = stay(session, station, local(10), local(13))
    settled(session)
    original = original_of(session, stay_row=s)
    s.exit_at = None  # as when a late in puts its out on a new stay
    session.commit()
    settled(session, T0 + STEP)
    assert priced["_reprice"] == 1
    settled(session, T0 + 2 * STEP)
    assert priced["_reprice"] == 1  # nothing new: not looked at again
    s.exit_at = local(12)
    session.commit()
    assert settled(session, T0 + 3 * STEP)["corrections"] == 1
    assert corrections(session, original)[0].parking_fen == -1000


def test_the_pass_finds_what_is_due_by_partial_indexes_not_by_reading_every_session_and_stay_ever(
        session, station, owner):
    """A year of a station's sessions were read in every pass (`SCAN charging_sessions`) to find the few still
    without a receipt; now both searches use the indexes of the unreceipted sessions and unsettled stays."""
    charged(session, station, owner, local(10, 10), 20)
    stay(session, station, local(10), local(13))
    engine, sent = session.get_bind(), []

    def keep(conn, cursor, statement, parameters, *_):
        if "receipted_at IS NULL" in statement or "settled_at IS NULL" in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        counts = settled(session)
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert (counts["charging_receipts"], counts["parking_receipts"]) == (1, 1)
    session.expire_all()
    assert [cs.receipted_at for cs in session.scalars(select(m.ChargingSession))] == [T0]
    searches = {"charging_sessions": "ix_charging_sessions_unreceipted", "parking_stays": "ix_parking_stays_unsettled"}
    found = {}
    conn = session.connection()
    for statement, parameters in sent:
        table = next(t for t in searches if statement.lstrip().startswith(f"SELECT {t}.id"))
        if engine.dialect.name == "sqlite":
            plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
            assert f"SCAN {table}" not in plan, plan
        else:  # PostgreSQL scans tiny tables whatever the indexes: asked not to, it must be able to use the index
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " | ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
        assert searches[table] in plan, plan
        found[table] = plan
    session.rollback()
    assert set(found) == set(searches)


def test_the_prune_of_old_digests_uses_its_index_not_a_read_of_the_whole_table(session, station, owner):
    """After every pass that priced something, digests older than the window are dropped: ~53,000 rows for a
    network's day, read whole each time without ``ix_receipt_checks_checked_at``."""
    charged(session, station, owner, local(10, 10), 20)
    engine, sent = session.get_bind(), []

    def keep(conn, cursor, statement, parameters, *_):
        if statement.lstrip().startswith("DELETE FROM receipt_checks"):
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        assert settled(session)["charging_receipts"] == 1
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert len(sent) == 1
    statement, parameters = sent[0]
    conn = session.connection()
    if engine.dialect.name == "sqlite":
        plan = " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
        assert "SCAN receipt_checks" not in plan, plan
    else:
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = " | ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    assert "ix_receipt_checks_checked_at" in plan, plan
    session.rollback()


# -- the waiting ones --------------------------------------------------------------------------------


def test_stays_inside_their_settling_delay_cost_a_pass_no_statement_until_due(session, station, priced):
    settled(session)  # the cursor and nothing else
    with statements(session) as none_settling:
        settled(session, T0 + STEP)
    for i in range(5):  # gate out 1-5 minutes ago: inside the station's 10 minutes
        stay(session, station, local(12), local(13, 55 + i), plate=f"沪E0000{i}")
    session.commit()
    with statements(session) as five_settling:
        counts = settled(session, T0 + 2 * STEP)
    assert (counts["parking_waiting"], counts["parking_receipts"], sum(priced.values())) == (5, 0, 0)
    assert len(five_settling) == len(none_settling) + 1, five_settling  # + the station's rules, once
    counts = settled(session, local(14, 5))  # 13:55 + 10 minutes: the first is due, the others still settle
    assert (counts["parking_receipts"], counts["parking_waiting"]) == (1, 4)



def test_a_session_waiting_for_available_is_priced_again_only_when_something_arrives(session, station, owner,
                                                                                    priced):
    statuses(session, station, "F1", (local(13), "Charging"), (local(13, 30), "Finishing"))
    cs = charging_session(session, station, owner, local(13), local(13, 30), stop_wh=10000)
    assert settled(session)["charging_waiting"] == 1 and priced["_price_session"] == 1
    for k in range(1, 4):
        assert settled(session, T0 + k * STEP)["charging_waiting"] == 1
    assert priced["_price_session"] == 1
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Available",
                           at=local(13, 52), now=T0)
    session.commit()
    assert settled(session, T0 + 5 * STEP)["charging_receipts"] == 1 and priced["_price_session"] == 2
    assert original_of(session, cs=cs).idle_fen == 600  # 22 min idle, 12 billed
    settled(session, T0 + 6 * STEP)
    assert priced["_price_session"] == 2 and priced["_reprice"] == 0


def test_a_session_waiting_for_available_is_issued_without_it_when_the_wait_is_over(session, station, owner,
                                                                                   priced):
    statuses(session, station, "F1", (local(13), "Charging"), (local(13, 30), "Finishing"))
    cs = charging_session(session, station, owner, local(13), local(13, 30), stop_wh=10000)
    assert settled(session)["charging_waiting"] == 1
    assert settled(session, local(15, 29, 59))["charging_waiting"] == 1 and priced["_price_session"] == 1
    assert settled(session, local(15, 30))["charging_receipts"] == 1 and priced["_price_session"] == 2
    original = original_of(session, cs=cs)
    assert original.details["idle"]["status"] == "not_reported"
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Available",
                           at=local(13, 45), now=local(15, 31))
    session.commit()
    assert settled(session, local(15, 31))["corrections"] == 1
    assert corrections(session, original)[0].idle_fen == 250


def test_checks_older_than_the_window_are_dropped(session, station, owner):
    charged(session, station, owner, local(10, 10), 20)
    settled(session)
    assert session.scalar(select(func.count()).select_from(m.ReceiptCheck)) == 1
    charged(session, station, owner, local(12), 20, code="F2")
    settled(session, T0 + timedelta(hours=25))  # writes the new session's check, drops the old one
    assert session.scalar(select(func.count()).select_from(m.ReceiptCheck)) == 1


# -- a window larger than a pass: looked at in turns --------------------------------------------------


def test_a_window_larger_than_a_pass_is_looked_at_in_turns_and_every_late_input_is_corrected_within_a_round(
        session, station, priced):
    sessions, stays = a_day(session, station, 10)
    assert settled(session)["charging_receipts"] == 10
    window = 10 + len(stays)  # 15 originals
    per_pass, passes = 4, -(-window // 4)  # a round: 4 passes
    receipts.settle_due(session, T0 + STEP, recheck_per_pass=per_pass)
    session.commit()
    # A late Available on two fast chargers (less idle time): the first receipt, three passes behind the cursor,
    # and the eighth, just ahead of it.
    late = [sessions[0].id, sessions[7].id]
    for cs in (sessions[0], sessions[7]):
        statuses(session, station, cs.charger.code, (cs.started_at + timedelta(minutes=40), "Available"))
    session.commit()
    priced.clear()
    looked, fixed = [], 0
    for k in range(passes):
        session.remove()  # each pass in its own session, as separate runs of `chargeapp tick` would be
        counts = receipts.settle_due(session, T0 + (k + 2) * STEP, recheck_per_pass=per_pass)
        session.commit()
        looked.append(counts["rechecked"])
        fixed += counts["corrections"]
    assert looked == [per_pass] * passes  # bounded per pass, going round
    assert fixed == 2 and priced["_reprice"] == 2  # both corrected within one round, nothing else repriced
    assert all(len(corrections(session, original_of(session, cs=session.get(m.ChargingSession, cs_id)))) == 1
               for cs_id in late)
    # Another round finds nothing more to correct.
    for k in range(passes):
        assert receipts.settle_due(session, T0 + (k + 10) * STEP, recheck_per_pass=per_pass)["corrections"] == 0
        session.commit()


def test_the_turn_goes_on_from_the_last_receipt_looked_at_and_takes_new_ones_first(session, station):
    a_day(session, station, 6)  # 9 originals
    settled(session)
    ids = list(session.scalars(select(m.Receipt.id).where(m.Receipt.kind.in_(receipts.ORIGINAL_KINDS))
                               .order_by(m.Receipt.id)))
    turns = []
    for k in range(3):
        turns.append([row.id for row in receipts._recheck_turn(session, T0 + (k + 1) * STEP, 4)])
        session.commit()
    assert turns == [ids[0:4], ids[4:8], [ids[8], *ids[0:3]]]
    assert session.get(m.PeriodicCursor, receipts.RECHECK_CURSOR).position == ids[2]
    # A receipt issued since is looked at in the next turn, before the older ones it goes round to.
    charged(session, station, new_driver(session, "沪D00001"), local(13), 20, code="F2")
    settled(session, T0 + 4 * STEP)
    new = session.scalar(select(func.max(m.Receipt.id)))
    assert [row.id for row in receipts._recheck_turn(session, T0 + 5 * STEP, 4)][:3] == [ids[3], *ids[4:6]]
    assert new in [row.id for row in receipts._recheck_turn(session, T0 + 6 * STEP, 4)]


# -- nothing is missed ---------------------------------------------------------------------------------


@pytest.mark.parametrize("per_pass", [receipts.RECHECK_PER_PASS, 7], ids=["whole-window", "7-per-pass"])
def test_after_every_pass_repricing_everything_would_change_nothing(session, station, per_pass):
    """Late inputs of every kind, in random rounds, around a morning of sessions and stays: after each pass (with
    7 receipts looked at per pass: after each round of passes over the whole window), ``recheck`` of every receipt
    of the window (what every pass did before unchanged ones were skipped) writes no correction: nothing the pass
    skipped had changed."""
    rnd = random.Random(20261122)
    codes = ["F1", "F2", "F3", "S01", "S02"]
    plates = [f"沪F{i:04d}" for i in range(8)]
    drivers = [new_driver(session, plate, valid_from=local(6)) for plate in plates]
    tags = {}
    for i, driver in enumerate(drivers):
        tags[driver.id] = f"TAG-R{i}"
        session.add(m.IdTag(tag=tags[driver.id], user_id=driver.id))
    tx = iter(range(100, 10_000))

    def start(code, at, driver, meter=0):
        number = next(tx)
        charging.record_transaction(session, station_code="s1", charger_code=code, event="start", connector=1,
                                    transaction_id=number, id_tag=tags[driver.id], meter_wh=meter, at=at, now=at)
        return number

    def status(code, at, value):
        charging.record_status(session, station_code="s1", charger_code=code, connector=1, status=value, at=at, now=T0)

    # The morning: on each charger, sessions of 40 min every hour; half stopped, half closed by Available (stop lost).
    for k, code in enumerate(codes):
        for hour in range(8, 13):
            begin = local(hour, 5 * k)
            driver = drivers[(hour + k) % len(drivers)]
            status(code, begin, "Preparing")
            number = start(code, begin + timedelta(minutes=1), driver, meter=1000 * hour)
            status(code, begin + timedelta(minutes=2), "Charging")
            for n in range(1, 5):
                session.execute(insert(m.MeterReading.__table__), {
                    "session_id": session.scalar(select(m.ChargingSession.id).where(
                        m.ChargingSession.transaction_id == number)),
                    "at": begin + timedelta(minutes=1 + 8 * n), "energy_wh": 1000 * hour + 2500 * n})
            status(code, begin + timedelta(minutes=30), "SuspendedEV")
            if (hour + k) % 2:
                charging.record_transaction(session, station_code="s1", charger_code=code, event="stop", connector=1,
                                            transaction_id=number, id_tag=None, meter_wh=1000 * hour + 11_000,
                                            at=begin + timedelta(minutes=40), now=T0)
                status(code, begin + timedelta(minutes=41), "Finishing")
            status(code, begin + timedelta(minutes=50), "Available")
    for i, plate in enumerate(plates):
        for direction, at in (("in", local(8 + i % 3, 7 * i)), ("out", local(11 + i % 3, 3 * i))):
            gates.record_gate_passage(session, station_code="s1", gate_code=f"G-{direction}", plate=plate,
                                      direction=direction, at=at, now=at)
    session.commit()
    first = receipts.settle_due(session, T0)
    session.commit()
    assert first["charging_receipts"] == 25 and first["parking_receipts"] == 8, first

    def late_input():
        kind = rnd.choice(("status", "status", "status", "meter", "meter", "stop", "start", "gate", "plate",
                           "unplate", "close"))
        sessions = list(session.scalars(select(m.ChargingSession).order_by(m.ChargingSession.id)))
        cs = rnd.choice(sessions)
        code = cs.charger.code
        around = (cs.started_at or cs.stopped_at) + timedelta(seconds=rnd.randrange(-600, 4200, 30))
        if kind == "status":
            status(code, around, rnd.choice(("Available", "Charging", "Charging", "SuspendedEV", "Finishing")))
        elif kind == "meter":
            session.execute(insert(m.MeterReading.__table__), {
                "session_id": cs.id, "at": around, "energy_wh": rnd.randrange(0, 30_000)})
        elif kind == "stop":
            charging.record_transaction(session, station_code="s1", charger_code=code, event="stop", connector=1,
                                        transaction_id=cs.transaction_id, id_tag=None, at=around, now=T0,
                                        meter_wh=rnd.choice((None, rnd.randrange(0, 30_000))))
        elif kind == "start":
            start(code, around, rnd.choice(drivers), meter=rnd.randrange(0, 20_000))
        elif kind == "close":
            session.execute(m.ChargingSession.__table__.update().where(m.ChargingSession.id == cs.id)
                            .values(stopped_at=around))  # any writer at all, even one outside the services
        elif kind == "gate":
            direction = rnd.choice(("in", "out"))
            gates.record_gate_passage(session, station_code="s1", gate_code=f"G-{direction}", plate=rnd.choice(plates),
                                      direction=direction, at=local(rnd.randrange(7, 14), rnd.randrange(60)), now=T0)
        elif kind == "plate":
            session.add(m.PlateRegistration(user_id=rnd.choice(drivers).id, plate=rnd.choice(plates),
                                            valid_from=local(rnd.randrange(6, 13), rnd.randrange(60))))
        else:
            regs = list(session.scalars(select(m.PlateRegistration).where(m.PlateRegistration.plate.in_(plates))
                                        .order_by(m.PlateRegistration.id)))
            rnd.choice(regs).valid_to = local(rnd.randrange(7, 14), rnd.randrange(60))
        session.flush()

    now = T0
    total = Counter()
    for round_ in range(25):
        for _ in range(rnd.randrange(1, 5)):
            try:
                late_input()
            except DomainError:
                session.rollback()
        session.commit()
        originals = session.scalar(select(func.count(m.Receipt.id)).where(
            m.Receipt.kind.in_(receipts.ORIGINAL_KINDS), m.Receipt.issued_at >= now - receipts.RECHECK_WINDOW))
        for _ in range(-(-(originals + 1) // per_pass)):  # (+1: a receipt the first pass issues)
            now += timedelta(seconds=5)
            total.update(receipts.settle_due(session, now, recheck_per_pass=per_pass))
            session.commit()
        window = list(session.scalars(select(m.Receipt).where(m.Receipt.kind.in_(receipts.ORIGINAL_KINDS))
                                      .order_by(m.Receipt.id)))
        for original in window:
            try:
                missed = receipts.recheck(session, now, original)
            except DomainError:
                continue
            assert missed is None, (round_, original.kind, missed.explanation)
        session.rollback()
    assert total["corrections"] >= 15, total
