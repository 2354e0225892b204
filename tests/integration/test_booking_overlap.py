"""A change of the station's grid (slot length, opening hours) and the bookings already made
(issue 14, item 1): existing bookings keep their times, slots overlapping them are not offered
and cannot be booked, and the database itself refuses two bookings holding one charger at
overlapping times, on SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from chargeapp.db import models as m
from chargeapp.domain import booking as rules
from chargeapp.services import booking as svc
from chargeapp.services import manage
from chargeapp.services.registry import create_user
from chargeapp.web.security import issue_token
from tests.factories import make_driver

pytestmark = pytest.mark.integration

UTC = timezone.utc
# The clock is at 14:00 Shanghai (06:00Z); these are 15:00, 15:30 and 16:00 Shanghai.
AT_1500 = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
AT_1530 = AT_1500 + timedelta(minutes=30)
AT_1600 = AT_1500 + timedelta(hours=1)


@pytest.fixture
def manager(session, clock, station):
    u = create_user(session, email="boss@example.com", password_hash="x" * 20, now=clock.now(), name="boss",
                    role="manager", stations=(station,))
    session.commit()
    return u


def set_slot_minutes(session, clock, manager, minutes):
    manage.update_rules(session, clock.now(), manager, "s1", slot_minutes=minutes)
    session.commit()


def book(session, clock, driver, charger=None, slot=AT_1500):
    booking, _ = svc.book_slot(session, clock.now(), driver.id, "s1", slot, charger)
    return booking


def slot_row(session, station, clock, start):
    rows = svc.free_slots(session, station, start.astimezone(ZoneInfo("Asia/Shanghai")).date(), clock.now())
    return next(r for r in rows if r["slot_start"] == start)


def booking_row(station, driver, charger_code, start, end, status="booked"):
    charger = next(c for c in station.chargers if c.code == charger_code)
    return {"driver_id": driver.id, "station_id": station.id, "charger_id": charger.id,
            "booked_charger_id": charger.id, "slot_start": start, "slot_end": end, "status": status,
            "created_at": start - timedelta(hours=1)}


# -- the probe, through HTTP ------------------------------------------------------------


def test_after_the_slot_length_grows_a_slot_overlapping_an_old_booking_is_409_on_that_charger(
        client, session, clock, station, manager):
    """The outside probe: X books F1 15:30-16:00 on 30-minute slots, the manager sets 60, Y asks for F1
    15:00-16:00. Y gets 409; asking for any charger Y gets another; the listing does not offer F1."""
    def driver_headers(email):
        r = client.post("/api/v1/auth/register", json={"email": email, "password": "correct-horse"})
        return {"Authorization": f"Bearer {r.json['token']}"}

    x, y = driver_headers("x@example.com"), driver_headers("y@example.com")
    r = client.post("/api/v1/bookings", headers=x,
                    json={"station": "s1", "slot_start": "2026-11-22T15:30:00+08:00", "charger": "F1"})
    assert r.status_code == 201 and r.json["charger"] == "F1"

    boss = {"Authorization": f"Bearer {issue_token(manager)}"}
    r = client.patch("/api/v1/manage/stations/s1/rules", headers=boss, json={"slot_minutes": 60})
    assert r.status_code == 200 and r.json["slot_minutes"] == 60

    slots = client.get("/api/v1/stations/s1/slots?date=2026-11-22").json
    at_1500 = next(s for s in slots if s["slot_start"] == "2026-11-22T15:00:00+08:00")
    assert at_1500["slot_end"] == "2026-11-22T16:00:00+08:00"
    assert (at_1500["free"], at_1500["chargers"]) == (2, ["F2", "F3"])

    r = client.post("/api/v1/bookings", headers=y,
                    json={"station": "s1", "slot_start": "2026-11-22T15:00:00+08:00", "charger": "F1"})
    assert r.status_code == 409 and r.json["code"] == "slot_unavailable"

    r = client.post("/api/v1/bookings", headers=y, json={"station": "s1", "slot_start": "2026-11-22T15:00:00+08:00"})
    assert r.status_code == 201 and r.json["charger"] == "F2"
    assert r.json["slot_end"] == "2026-11-22T16:00:00+08:00"


# -- the database refuses, whoever writes ------------------------------------------------


def test_the_database_refuses_an_overlapping_booking_inserted_past_the_service(session, clock, station):
    a, b, c = (make_driver(session, clock.now()) for _ in range(3))
    session.execute(insert(m.Booking), [booking_row(station, a, "F1", AT_1530, AT_1600)])
    session.commit()
    with pytest.raises(IntegrityError, match=m.BOOKING_OVERLAP):
        session.execute(insert(m.Booking), [booking_row(station, b, "F1", AT_1500, AT_1600)])
        session.flush()
    session.rollback()
    # Touching is not overlapping, another charger is another charger, and a cancelled booking holds nothing.
    session.execute(insert(m.Booking), [
        booking_row(station, b, "F1", AT_1500, AT_1530),
        booking_row(station, c, "F2", AT_1500, AT_1600),
        booking_row(station, c, "F1", AT_1500, AT_1600, status="cancelled"),
    ])
    session.commit()
    assert session.query(m.Booking).count() == 4


def test_the_database_refuses_an_update_that_makes_two_bookings_overlap(session, clock, station):
    a, b = make_driver(session, clock.now()), make_driver(session, clock.now())
    f1 = next(c for c in station.chargers if c.code == "F1")
    session.execute(insert(m.Booking), [booking_row(station, a, "F1", AT_1530, AT_1600),
                                        booking_row(station, b, "F2", AT_1500, AT_1600, status="cancelled")])
    session.commit()
    moved = session.scalar(select(m.Booking.id).where(m.Booking.driver_id == b.id))
    session.execute(update(m.Booking).where(m.Booking.id == moved).values(charger_id=f1.id))
    session.commit()  # a cancelled booking may name any charger
    with pytest.raises(IntegrityError, match=m.BOOKING_OVERLAP):
        session.execute(update(m.Booking).where(m.Booking.id == moved).values(status="booked"))
        session.flush()
    session.rollback()
    # A booking's own row never overlaps itself.
    session.execute(update(m.Booking).where(m.Booking.driver_id == a.id).values(status="held"))
    session.commit()


def test_a_booking_the_database_refuses_is_the_409_a_lost_race_gets(session, clock, station, monkeypatch):
    """The service's own look-up can miss a booking committed a moment earlier (a race, or an app older than the
    grid change); the database's refusal is answered as the slot race's: a named charger is unavailable, and
    "any charger" tries the next one."""
    x, y, z = (make_driver(session, clock.now()) for _ in range(3))
    book(session, clock, x, "F1", slot=AT_1530)
    manage.update_rules(session, clock.now(), create_user(
        session, email="root@example.com", password_hash="x" * 20, now=clock.now(), name="root", role="admin"),
        "s1", slot_minutes=60)
    session.commit()
    real = svc._taken_ids
    misses = {"left": 1}

    def blind_once(*args, **kwargs):  # sees nothing the first time it is asked, as a racing request would
        if misses["left"]:
            misses["left"] -= 1
            return set()
        return real(*args, **kwargs)

    monkeypatch.setattr(svc, "_taken_ids", blind_once)
    with pytest.raises(rules.SlotUnavailable):
        book(session, clock, y, "F1")
    misses["left"] = 1
    assert book(session, clock, z).charger.code == "F2"


# -- what a grid change does to existing bookings ----------------------------------------


def test_a_booking_keeps_its_times_and_windows_when_the_slot_length_grows(session, clock, station, driver, manager):
    """15:30-16:00 booked on 30-minute slots, then slots of 60: held at 15:20, check-in until 15:40, a
    no-show at 15:40:01, as before the change; 15:00-16:00 is offered without F1, 16:00-17:00 with it."""
    b = book(session, clock, driver, "F1", slot=AT_1530)
    set_slot_minutes(session, clock, manager, 60)
    assert (b.slot_start, b.slot_end) == (AT_1530, AT_1600)
    assert slot_row(session, station, clock, AT_1500)["chargers"] == ["F2", "F3"]
    assert slot_row(session, station, clock, AT_1600)["chargers"] == ["F1", "F2", "F3"]
    assert rules.checkin_window(b.slot_start, svc.booking_rules(station)) == (
        AT_1530 - timedelta(minutes=10), AT_1530 + timedelta(minutes=10))

    clock.set(AT_1530 - timedelta(minutes=10))
    svc.tick(session, clock.now())
    assert (b.status, b.charger.code) == ("held", "F1")
    clock.set(AT_1530 + timedelta(minutes=10))
    svc.tick(session, clock.now())
    assert b.status == "held"
    clock.set(AT_1530 + timedelta(minutes=10, seconds=1))
    svc.tick(session, clock.now())
    assert b.status == "no_show"


def test_a_longer_booking_blocks_the_shorter_slots_it_covers_when_the_slot_length_shrinks(
        session, clock, station, driver, manager):
    set_slot_minutes(session, clock, manager, 60)
    b = book(session, clock, driver, "F1")
    assert b.slot_end == AT_1600
    set_slot_minutes(session, clock, manager, 30)
    assert slot_row(session, station, clock, AT_1530)["chargers"] == ["F2", "F3"]
    other = make_driver(session, clock.now())
    session.commit()  # (the refused request rolls its transaction back)
    with pytest.raises(rules.SlotUnavailable):
        book(session, clock, other, "F1", slot=AT_1530)
    assert book(session, clock, other, slot=AT_1530).charger.code == "F2"


def test_a_hold_does_not_move_a_booking_onto_a_charger_an_overlapping_booking_holds(
        session, clock, station, manager):
    """15:00-16:00 on F1 (60-minute slots), then 30-minute slots and 15:30 booked on F2; F1 is busy at 14:50:
    the hold moves the long booking to F3, not to F2, which is free now but booked from 15:30."""
    set_slot_minutes(session, clock, manager, 60)
    long_one = book(session, clock, make_driver(session, clock.now()), "F1")
    set_slot_minutes(session, clock, manager, 30)
    book(session, clock, make_driver(session, clock.now()), "F2", slot=AT_1530)
    next(c for c in station.chargers if c.code == "F1").connectors[0].status = "Charging"
    clock.set(AT_1500 - timedelta(minutes=10))
    svc.tick(session, clock.now())
    session.commit()
    assert (long_one.status, long_one.charger.code) == ("held", "F3")


def test_checking_in_on_a_charger_an_overlapping_booking_holds_leaves_the_charger_to_that_booking(
        session, clock, station, manager):
    x, y = make_driver(session, clock.now()), make_driver(session, clock.now())
    set_slot_minutes(session, clock, manager, 60)
    mine = book(session, clock, x, "F2")  # 15:00-16:00
    set_slot_minutes(session, clock, manager, 30)
    theirs = book(session, clock, y, "F1", slot=AT_1530)
    f1 = next(c for c in station.chargers if c.code == "F1")
    cs = m.ChargingSession(station_id=station.id, charger_id=f1.id, connector_id=f1.connectors[0].id,
                           transaction_id=1, driver_id=x.id, started_at=AT_1500, start_meter_wh=0)
    session.add(cs)
    session.flush()
    assert svc.check_in_from_session(session, AT_1500, cs) is mine
    session.commit()
    assert (mine.status, mine.charger, theirs.charger.code) == ("checked_in", None, "F1")


def test_bookings_stand_when_opening_hours_shrink_and_new_ones_must_fit(session, clock, station, driver, manager):
    b = book(session, clock, driver, slot=AT_1500)
    manage.set_opening_hours(session, clock.now(), manager, "s1", time(16, 0), time(22, 0))
    session.commit()
    with pytest.raises(rules.StationClosed):
        book(session, clock, make_driver(session, clock.now()), slot=AT_1530)
    clock.set(AT_1500 - timedelta(minutes=10))
    svc.tick(session, clock.now())
    assert (b.status, b.charger.code) == ("held", "F1")
