"""Booking use cases against a real (file) database."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.domain import booking as rules
from chargeapp.services import booking as svc
from tests.factories import make_driver

pytestmark = pytest.mark.integration

UTC = timezone.utc
SLOT = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)  # 15:00 Shanghai; the clock is at 14:00


def book(session, clock, driver, charger=None, slot=SLOT, key=None, station="s1"):
    booking, _ = svc.book_slot(session, clock.now(), driver.id, station, slot, charger, key)
    return booking


def set_status(session, station, code, status):
    charger = next(c for c in station.chargers if c.code == code)
    charger.connectors[0].status = status
    session.flush()
    return charger


def start_session(session, station, code, driver, at, tx=1, stop=None):
    charger = next(c for c in station.chargers if c.code == code)
    cs = m.ChargingSession(station_id=station.id, charger_id=charger.id, connector_id=charger.connectors[0].id,
                           transaction_id=tx, id_tag=f"tag-{driver.id}", driver_id=driver.id,
                           started_at=at, start_meter_wh=0, stopped_at=stop)
    session.add(cs)
    session.flush()
    return cs


def kinds(session, driver):
    return [n.kind for n in session.scalars(
        select(m.Notification).where(m.Notification.user_id == driver.id).order_by(m.Notification.id))]


def test_any_charger_booking_gets_a_concrete_charger(session, clock, station, driver):
    b = book(session, clock, driver)
    assert b.charger.code == "F1" and b.status == "booked"
    assert b.slot_end - b.slot_start == timedelta(minutes=30)


def test_second_active_booking_of_a_driver_is_refused(session, clock, station, driver):
    book(session, clock, driver)
    with pytest.raises(rules.ActiveBookingExists):
        book(session, clock, driver, slot=SLOT + timedelta(hours=1))


def test_named_charger_already_booked_is_refused(session, clock, station, driver):
    other = make_driver(session, clock.now())
    book(session, clock, other, "F2")
    with pytest.raises(rules.SlotUnavailable):
        book(session, clock, driver, "F2")


def test_slot_is_full_when_every_fast_charger_is_booked(session, clock, station):
    for _ in range(3):
        book(session, clock, make_driver(session, clock.now()))
    with pytest.raises(rules.SlotUnavailable):
        book(session, clock, make_driver(session, clock.now()))


def test_idempotency_key_replay_returns_the_first_booking(session, clock, station, driver):
    first = book(session, clock, driver, key="k1")
    again, created = svc.book_slot(session, clock.now(), driver.id, "s1", SLOT, None, "k1")
    assert again.id == first.id and not created
    with pytest.raises(rules.IdempotencyKeyReused):
        svc.book_slot(session, clock.now(), driver.id, "s1", SLOT + timedelta(minutes=30), None, "k1")


def test_cancel_before_the_slot_is_free_and_idempotent(session, clock, station, driver):
    b = book(session, clock, driver)
    svc.cancel_booking(session, clock.now(), driver.id, b.id)
    assert svc.cancel_booking(session, clock.now(), driver.id, b.id).status == "cancelled"
    assert b.no_show_at is None
    book(session, clock, driver, slot=SLOT + timedelta(hours=1))  # can book again


def test_cancel_after_the_slot_started_is_a_no_show(session, clock, station, driver):
    b = book(session, clock, driver)
    session.commit()
    clock.set(SLOT + timedelta(minutes=1))
    svc.cancel_booking(session, clock.now(), driver.id, b.id)
    assert b.status == "no_show" and b.no_show_at == clock.now()


def test_another_drivers_booking_is_not_found(session, clock, station, driver):
    b = book(session, clock, driver)
    other = make_driver(session, clock.now())
    with pytest.raises(rules.BookingNotFound):
        svc.cancel_booking(session, clock.now(), other.id, b.id)


def test_hold_is_placed_10_minutes_before_with_a_reserve_now_command(session, clock, station, driver):
    b = book(session, clock, driver)
    session.commit()
    clock.set(SLOT - timedelta(minutes=10, seconds=1))
    svc.tick(session, clock.now())
    assert b.status == "booked"
    clock.set(SLOT - timedelta(minutes=10))
    svc.tick(session, clock.now())
    assert b.status == "held" and b.held_at == clock.now()
    cmd = session.scalar(select(m.CommandOutbox).where(m.CommandOutbox.booking_id == b.id))
    assert cmd.name == "reserve_now" and cmd.payload["reservation_id"] == b.id
    assert cmd.payload["expiry"] == "2026-11-22T15:10:00+08:00"
    assert "held" in kinds(session, driver)


def test_busy_charger_at_hold_time_moves_the_booking(session, clock, station, driver):
    b = book(session, clock, driver, "F1")
    set_status(session, station, "F1", "Charging")  # previous driver still plugged in
    clock.set(SLOT - timedelta(minutes=10))
    svc.tick(session, clock.now())
    assert b.status == "held" and b.charger.code == "F2"
    assert kinds(session, driver)[-1] == "moved"


def test_no_free_charger_waits_then_holds_the_first_that_frees_and_records_the_delay(session, clock, station, driver):
    b = book(session, clock, driver, "F1")
    for code in ("F1", "F2", "F3"):
        set_status(session, station, code, "Charging")
    clock.set(SLOT - timedelta(minutes=10))
    svc.tick(session, clock.now())
    assert b.status == "waiting" and b.charger_id is None
    clock.set(SLOT + timedelta(minutes=7))
    set_status(session, station, "F3", "Available")
    svc.tick(session, clock.now())
    assert b.status == "held" and b.charger.code == "F3" and b.delay_seconds == 7 * 60
    assert kinds(session, driver)[-2:] == ["delayed", "held"] or kinds(session, driver)[-1] == "held"
    # Grace runs from the hold: not a no-show at slot + 10:01.
    clock.set(SLOT + timedelta(minutes=10, seconds=1))
    svc.tick(session, clock.now())
    assert b.status == "held"


def test_no_show_at_plus_10_01_releases_the_hold(session, clock, station, driver):
    b = book(session, clock, driver)
    clock.set(SLOT - timedelta(minutes=10))
    svc.tick(session, clock.now())
    clock.set(SLOT + timedelta(minutes=10))
    svc.tick(session, clock.now())
    assert b.status == "held"
    clock.set(SLOT + timedelta(minutes=10, seconds=1))
    svc.tick(session, clock.now())
    assert b.status == "no_show"
    names = [c.name for c in session.scalars(select(m.CommandOutbox).where(m.CommandOutbox.booking_id == b.id))]
    assert names == ["reserve_now", "cancel_reservation"]


def test_check_in_on_another_free_charger_releases_the_original_hold(session, clock, station, driver):
    b = book(session, clock, driver, "F1")
    clock.set(SLOT - timedelta(minutes=10))
    svc.tick(session, clock.now())
    cs = start_session(session, station, "F2", driver, SLOT - timedelta(minutes=2))
    assert svc.check_in_from_session(session, clock.now(), cs) is b
    assert b.status == "checked_in" and b.charger.code == "F2"
    assert [c.name for c in session.scalars(select(m.CommandOutbox))] == ["reserve_now", "cancel_reservation"]


def test_session_started_earlier_and_still_running_checks_in(session, clock, station, driver):
    b = book(session, clock, driver)
    cs = start_session(session, station, "F1", driver, SLOT - timedelta(minutes=40))
    assert svc.check_in_from_session(session, clock.now(), cs) is b


def test_session_that_ended_before_the_window_does_not_check_in(session, clock, station, driver):
    b = book(session, clock, driver)
    cs = start_session(session, station, "F1", driver, SLOT - timedelta(minutes=40),
                       stop=SLOT - timedelta(minutes=11))
    assert svc.check_in_from_session(session, clock.now(), cs) is None and b.status == "booked"


def test_late_start_message_inside_the_window_reverses_the_no_show(session, clock, station, driver):
    b = book(session, clock, driver)
    clock.set(SLOT + timedelta(minutes=11))
    svc.tick(session, clock.now())
    svc.tick(session, clock.now())
    assert b.status == "no_show"
    clock.set(SLOT + timedelta(minutes=14))
    cs = start_session(session, station, "F1", driver, SLOT + timedelta(minutes=9))
    svc.check_in_from_session(session, clock.now(), cs)
    assert b.status == "checked_in" and b.no_show_at is None
    assert kinds(session, driver)[-1] == "no_show_reversed"


def test_three_no_shows_suspend_booking_and_existing_bookings_stand(session, clock, station, driver):
    for i in range(3):
        slot = SLOT + timedelta(days=i)
        clock.set(slot - timedelta(hours=2))
        b = book(session, clock, driver, slot=slot)
        clock.set(slot + timedelta(minutes=11))
        svc.tick(session, clock.now())
        session.commit()
    assert driver.suspended_until == clock.now() + timedelta(days=7)
    assert "suspended" in kinds(session, driver)
    with pytest.raises(rules.DriverSuspended):
        book(session, clock, driver, slot=SLOT + timedelta(days=3))
    assert b.status == "no_show"


def test_fault_moves_the_bookings_of_the_next_two_hours(session, clock, station, driver):
    later = make_driver(session, clock.now())
    b1 = book(session, clock, driver, "F1")
    b2 = book(session, clock, later, "F1", slot=SLOT + timedelta(hours=3))
    f1 = set_status(session, station, "F1", "Faulted")
    moved = svc.rehome_after_fault(session, clock.now(), f1)
    assert moved == [b1] and b1.charger.code == "F2" and b2.charger.code == "F1"
    assert kinds(session, driver)[-1] == "moved"


def test_fault_with_every_other_charger_booked_disrupts_and_tells_the_driver(session, clock, station, driver):
    b = book(session, clock, driver, "F1")
    for code in ("F2", "F3"):
        book(session, clock, make_driver(session, clock.now()), code)
    f1 = set_status(session, station, "F1", "Unavailable")
    svc.rehome_after_fault(session, clock.now(), f1)
    assert b.status == "disrupted" and kinds(session, driver)[-1] == "disrupted"
    book(session, clock, driver, slot=SLOT + timedelta(hours=1))  # free to book again


def test_free_slots_count_down_as_bookings_are_made(session, clock, station, driver):
    day = datetime(2026, 11, 22).date()
    before = {s["slot_start"]: s["free"] for s in svc.free_slots(session, station, day, clock.now())}
    assert before[SLOT] == 3 and min(before) == datetime(2026, 11, 22, 6, 30, tzinfo=UTC)
    book(session, clock, driver)
    after = {s["slot_start"]: s["free"] for s in svc.free_slots(session, station, day, clock.now())}
    assert after[SLOT] == 2


@pytest.mark.slow
@pytest.mark.parametrize("named", [True, False])
def test_racing_threads_never_double_book(app, session, clock, station, named):
    drivers = [make_driver(session, clock.now()) for _ in range(12)]
    ids = [d.id for d in drivers]
    session.commit()  # and hold no transaction (SQLite: no write lock) while the threads race
    results, barrier = [], threading.Barrier(len(ids))

    def attempt(driver_id):
        with app.app_context():
            barrier.wait()
            try:
                svc.book_slot(db.session, clock.now(), driver_id, "s1", SLOT, "F1" if named else None)
                results.append("ok")
            except rules.SlotUnavailable:
                results.append("full")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results.count("ok") == (1 if named else 3) and results.count("full") == len(ids) - results.count("ok")
    rows = session.execute(select(m.Booking.charger_id).where(m.Booking.slot_start == SLOT)).all()
    assert len(rows) == len(set(rows))


def test_charger_refusing_the_hold_moves_the_booking(session, clock, station, driver):
    b = book(session, clock, driver, "F1")
    clock.set(SLOT - timedelta(minutes=10))
    svc.tick(session, clock.now())
    svc.hold_refused(session, clock.now(), b.id, "Occupied")
    assert b.status == "held" and b.charger.code == "F2"
    names = [(c.name, c.charger_id) for c in session.scalars(select(m.CommandOutbox).order_by(m.CommandOutbox.id))]
    assert [n for n, _ in names] == ["reserve_now", "reserve_now"]


def test_cancelling_twice_after_the_slot_started_is_one_no_show_not_an_error(session, clock, station, driver):
    """Found by the state machine: the second cancel of a late-cancelled booking raised 'not cancellable'."""
    b = book(session, clock, driver)
    session.commit()
    late = SLOT + timedelta(minutes=2)
    first = svc.cancel_booking(session, late, driver.id, b.id)
    session.commit()
    again = svc.cancel_booking(session, late + timedelta(seconds=5), driver.id, b.id)
    assert (first.status, again.status, again.no_show_at) == ("no_show", "no_show", late)
    assert session.scalar(select(func.count()).select_from(m.Notification)
                          .where(m.Notification.kind == "no_show")) == 1
