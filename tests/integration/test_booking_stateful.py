"""A Hypothesis state machine over the booking service: book, cancel, check in,
faults, time passing and a manager changing the slot length, against a real
(in-memory SQLite) database.

Invariants after every step: no two bookings hold one charger at overlapping
times (bookings made before a change of slot length keep theirs), no driver has
two active bookings, cancelling is idempotent, and every no-show is counted once
(its time never moves). A step that meets the database's own refusal (an
IntegrityError out of a service) fails the run: the service must not try it."""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import select

from chargeapp.app import create_app
from chargeapp.clock import FixedClock
from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.domain.booking import SlotUnavailable
from chargeapp.domain.errors import DomainError
from chargeapp.services import booking as svc
from chargeapp.services import manage
from chargeapp.services.registry import create_user
from tests.factories import make_driver, make_station

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
CHARGERS = ["F1", "F2", "F3"]


class BookingMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.clock = FixedClock(T0)
        self.app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "CHARGEAPP_CLOCK": self.clock,
                               "TESTING": True})
        self.ctx = self.app.app_context()
        self.ctx.push()
        db.create_all()
        self.s = db.session
        self.station = make_station(self.s, T0)
        self.drivers = [make_driver(self.s, T0).id for _ in range(4)]
        self.manager = create_user(self.s, email="boss@example.com", password_hash="x" * 20, now=T0, name="boss",
                                   role="manager", stations=(self.station,))
        self.s.commit()
        self.no_show_at: dict[int, datetime] = {}
        self.tx = 0

    def teardown(self):
        db.session.remove()
        db.engine.dispose()
        self.ctx.pop()

    def _now(self):
        return self.clock.now()

    def _slot(self, offset: int) -> datetime:
        """A quarter hour from the next whole hour: on or off the grid, whatever the slot length is now."""
        first = self._now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return first + timedelta(minutes=15 * offset)

    @rule(driver=st.integers(0, 3), offset=st.integers(0, 11), charger=st.sampled_from([None, *CHARGERS]))
    def book(self, driver, offset, charger):
        slot = self._slot(offset)
        free = self._chargers_free(slot, slot + svc.booking_rules(self.station).slot)
        try:
            svc.book_slot(self.s, self._now(), self.drivers[driver], "s1", slot, charger)
        except SlotUnavailable:
            self.s.rollback()
            # Refused for want of a charger: there was none free at every moment of the slot.
            assert charger not in free if charger else not free, (slot, charger, free)
        except DomainError:
            self.s.rollback()

    def _chargers_free(self, start: datetime, end: datetime) -> set[str]:
        """The fast chargers with no booking holding them at any moment of [start, end) (every one is bookable)."""
        busy = self.s.scalars(select(m.Charger.code).join(m.Booking, m.Booking.charger_id == m.Charger.id).where(
            m.Booking.status.in_(m.CHARGER_HOLDING_STATUSES), m.Booking.slot_start < end, m.Booking.slot_end > start))
        return set(CHARGERS) - set(busy)

    @rule(driver=st.integers(0, 3))
    def cancel_latest(self, driver):
        mine = svc.driver_bookings(self.s, self.drivers[driver], 1)
        if not mine:
            return
        b = mine[0]
        try:
            first = svc.cancel_booking(self.s, self._now(), self.drivers[driver], b.id).status
            self.s.commit()
        except DomainError:
            self.s.rollback()
            return
        again = svc.cancel_booking(self.s, self._now(), self.drivers[driver], b.id).status
        self.s.commit()
        assert again == first  # cancelling twice is harmless

    @rule(driver=st.integers(0, 3), charger=st.sampled_from(CHARGERS), minutes_ago=st.integers(0, 30))
    def start_charging(self, driver, charger, minutes_ago):
        c = next(c for c in self.station.chargers if c.code == charger)
        self.tx += 1
        cs = m.ChargingSession(station_id=self.station.id, charger_id=c.id, connector_id=c.connectors[0].id,
                               transaction_id=self.tx, driver_id=self.drivers[driver],
                               started_at=self._now() - timedelta(minutes=minutes_ago), start_meter_wh=0)
        self.s.add(cs)
        self.s.flush()
        svc.check_in_from_session(self.s, self._now(), cs)
        self.s.commit()

    @rule(charger=st.sampled_from(CHARGERS), status=st.sampled_from(["Faulted", "Unavailable", "Available", "Charging"]))
    def charger_status(self, charger, status):
        c = next(c for c in self.station.chargers if c.code == charger)
        was = c.connectors[0].status
        c.connectors[0].status = status
        self.s.flush()
        if status in ("Faulted", "Unavailable") and was not in ("Faulted", "Unavailable"):
            svc.rehome_after_fault(self.s, self._now(), c)
        self.s.commit()

    @rule(minutes=st.sampled_from([1, 5, 9, 10, 11, 20, 45]))
    def time_passes(self, minutes):
        self.clock.advance(minutes=minutes)
        svc.tick(self.s, self._now())
        self.s.commit()

    @rule(minutes=st.sampled_from([15, 30, 60]))
    def manager_changes_the_slot_length(self, minutes):
        manage.update_rules(self.s, self._now(), self.manager, "s1", slot_minutes=minutes)
        self.s.commit()

    @invariant()
    def no_two_bookings_hold_a_charger_at_overlapping_times(self):
        rows = self.s.execute(select(m.Booking.charger_id, m.Booking.slot_start, m.Booking.slot_end, m.Booking.id).where(
            m.Booking.status.in_(m.CHARGER_HOLDING_STATUSES), m.Booking.charger_id.is_not(None))
            .order_by(m.Booking.charger_id, m.Booking.slot_start)).all()
        for before, after in zip(rows, rows[1:]):
            if before.charger_id == after.charger_id:
                assert after.slot_start >= before.slot_end, (before, after)

    @invariant()
    def no_charger_double_booked(self):
        rows = self.s.execute(select(m.Booking.charger_id, m.Booking.slot_start).where(
            m.Booking.status.in_(m.CHARGER_HOLDING_STATUSES), m.Booking.charger_id.is_not(None))).all()
        assert not [k for k, n in Counter(rows).items() if n > 1]

    @invariant()
    def one_active_booking_per_driver(self):
        rows = self.s.scalars(select(m.Booking.driver_id).where(
            m.Booking.status.in_(m.ACTIVE_BOOKING_STATUSES))).all()
        assert not [k for k, n in Counter(rows).items() if n > 1]

    @invariant()
    def every_no_show_counted_once(self):
        for b in self.s.scalars(select(m.Booking).where(m.Booking.status == "no_show")):
            assert b.no_show_at is not None
            assert self.no_show_at.setdefault(b.id, b.no_show_at) == b.no_show_at

    @invariant()
    def held_bookings_have_a_charger(self):
        for b in self.s.scalars(select(m.Booking).where(m.Booking.status == "held")):
            assert b.charger_id is not None


TestBookingMachine = BookingMachine.TestCase
TestBookingMachine.settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
