"""The demo's past week: the simulated stations lived through the days before the demo starts.

The first report a manager opens should not be all zeros. ``seed_history`` runs
the station simulators (``simulators.Simulation``, the same devices, drivers and
incidents as the live demo) over the days before the demo's start in virtual
time, and writes what they did through the write path live hardware takes:

- every message a device publishes is applied by the bridge's handler
  (``mqtt_bridge.handler.apply_message``, with its sequence bookkeeping,
  de-duplication, skew checks and dead letters), in batches of a few simulated
  minutes, one transaction each, as the bridge's worker does;
- the drivers' bookings and cancellations go through the booking service
  (``services.booking``), as the API would call it for them;
- the chargers get their commands (reserve_now, cancel_reservation) from the
  command outbox through the bridge's ``OutboxSender``, and answer them;
- the periodic work (holds, no-shows, receipts, the reports' daily rollups)
  runs at the end of every batch (``services.periodic.run_once``).

So sessions, receipts, free-parking grants, lounge counts and rollups come out
of the same code as in the live demo. Only the broker is skipped: messages go
from the simulation to the handler in the order the broker would deliver them
(a device's messages queued during a network outage arrive after it reconnects,
its last will when it drops).

Decisions:

- Speed: a week of three stations at the live demo's sampling is ~330,000
  messages, minutes of work on SQLite. The history's chargers meter every
  5 minutes while charging (the OCPP MeterValueSampleInterval; live: 30 s fast,
  60 s slow) and the door counters repeat their totals every 10 minutes (live:
  60 s). The messages are the same kind, fewer of them: energy comes from the
  transactions' meter readings, and a receipt interpolates between samples.
- Idempotent: a database where any device of these stations has already
  reported (a ``device_sequences`` row) gets no history; a second start of
  ``seed_history`` on the same database adds nothing.
- The end: at ``end`` every simulated device shuts down cleanly (offline, its
  boot counter and transaction ids saved to the simulators' state file), so the
  live simulators go on with boot + 1 and new transaction ids; a car still
  plugged in then is ended by its charger's next Available. Bookings made during
  the history for slots from ``end`` on are cancelled by their drivers (the
  live simulators' drivers make their own).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.errors import DomainError

log = logging.getLogger(__name__)

DEFAULT_DAYS = 7
BATCH = timedelta(minutes=5)  # one transaction, the bookings' periodic work and one outbox pass per 5 simulated minutes
PERIODIC_EVERY = timedelta(hours=1)  # the whole periodic work (receipts, rollups too)
METER_INTERVAL_SECONDS = 300.0
DOOR_HEARTBEAT_SECONDS = 600.0


@dataclass
class HistoryResult:
    """What ``seed_history`` did: the simulated span, messages applied (by outcome), bookings, wall seconds."""

    start: datetime
    end: datetime
    skipped: bool = False
    messages: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    bookings: int = 0
    bookings_refused: int = 0
    cancelled_at_end: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds by part: simulate, apply, periodic, ...

    def timed(self, part: str, began: float) -> None:
        self.timings[part] = self.timings.get(part, 0.0) + time.process_time() - began


# ----------------------------------------------------------------------------- the broker, replaced


class DeliveryQueue:
    """A simulation ``Sink`` that delivers as a broker would: in publish order, a device's messages held while its
    link is down and delivered when it reconnects (after its online flag), its last will when it drops abruptly."""

    def __init__(self):
        self._ready: list[tuple[datetime, str, bytes, bool]] = []
        self._held: dict[str, list[tuple[str, bytes, bool]]] = {}

    def _deliver(self, device, topic: str, payload: bytes, retain: bool) -> None:
        self._ready.append((device.now, topic, payload, retain))

    def connect(self, device) -> None:
        from chargeapp import telemetry as t

        self._deliver(device, device.online_topic, t.online_payload(True), True)
        for topic, payload, retain in self._held.pop(device.key, []):
            self._deliver(device, topic, payload, retain)

    def disconnect(self, device, *, abrupt: bool) -> None:
        will = device.last_will  # abrupt: the broker publishes it; orderly: the device says it itself
        self._deliver(device, will.topic, will.payload, will.retain)

    def publish(self, device, topic: str, payload: bytes, retain: bool) -> None:
        if device.link_up:
            self._deliver(device, topic, payload, retain)
        else:
            self._held.setdefault(device.key, []).append((topic, payload, retain))

    def take(self) -> list[tuple[datetime, str, bytes, bool]]:
        """Everything delivered since the last call, in delivery order."""
        ready, self._ready = self._ready, []
        return ready


class DeferredCalls:
    """The simulation's ``api_executor``: API calls wait until the batch's messages are committed (the booking
    service commits or rolls back its own transaction), then ``run`` makes them in order."""

    def __init__(self):
        self._calls: list[tuple[Future, Callable, tuple]] = []

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        self._calls.append((future, fn, args))
        return future

    def run(self) -> int:
        calls, self._calls = self._calls, []
        for future, fn, args in calls:
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - the simulation sees a failed call as a refused booking
                future.set_exception(exc)
        return len(calls)


class ServiceBookings:
    """The simulators' ``BookingClient`` in-process: a driver books and cancels through the booking service, at the
    simulation's time, as the API would for the driver's account."""

    def __init__(self, session: Session, clock: Callable[[], datetime]):
        self.session = session
        self.clock = clock
        self.counts: dict[str, int] = {}
        self._users: dict[str, int | None] = {}

    def _count(self, key: str) -> None:
        self.counts[key] = self.counts.get(key, 0) + 1

    def _driver_id(self, driver) -> int | None:
        if driver.email not in self._users:
            self._users[driver.email] = self.session.scalar(select(m.User.id).where(m.User.email == driver.email))
        return self._users[driver.email]

    def book(self, driver, station: str, slot_start: datetime):
        from chargeapp.services import booking
        from simulators.bookings import Ticket

        driver_id = self._driver_id(driver)
        if driver_id is None:
            self._count("book_no_account")
            return None
        try:
            b, _ = booking.book_slot(self.session, self.clock(), driver_id, station, slot_start, None,
                                     f"sim-{driver.email}-{slot_start.isoformat()}"[:100])
        except DomainError as exc:
            self.session.rollback()
            self._count(f"book_refused_{exc.code}")
            return None
        self._count("booked")
        return Ticket(b.id, slot_start, b.charger.code if b.charger else None, b.status)

    def cancel(self, driver, booking_id: int) -> bool:
        from chargeapp.services import booking

        driver_id = self._driver_id(driver)
        try:
            booking.cancel_booking(self.session, self.clock(), driver_id, booking_id)
            self.session.commit()
        except DomainError:
            self.session.rollback()
            self._count("cancel_failed")
            return False
        self._count("cancelled")
        return True


# ----------------------------------------------------------------------------- seeding


def history_present(session: Session, stations: Iterable[str]) -> bool:
    """Whether any device of these stations has reported already (then there is a history, or live data)."""
    keys = [m.DeviceSequence.device.like(f"%:{code}/%") for code in stations]
    return session.scalar(select(m.DeviceSequence.device).where(or_(*keys)).limit(1)) is not None


def _sample_less_often(sim) -> None:
    from simulators.devices import Charger, DoorCounter

    for device in sim.devices.values():
        if isinstance(device, Charger):
            ratio = METER_INTERVAL_SECONDS / device.meter_interval_charging
            device.meter_interval_charging = METER_INTERVAL_SECONDS
            device.meter_interval_idle = METER_INTERVAL_SECONDS
            device.evse_pause_probability = min(1.0, device.evse_pause_probability * ratio)  # per sample
        elif isinstance(device, DoorCounter):
            device.HEARTBEAT = DOOR_HEARTBEAT_SECONDS


def seed_history(session: Session, stations: list[str], *, end: datetime, days: int = DEFAULT_DAYS, seed: object = 1,
                 incidents: float = 1.0, state_path=None,
                 progress: Callable[[datetime, HistoryResult], None] | None = None) -> HistoryResult:
    """Live ``days`` days of the demo stations up to ``end`` (aware) into the database; commits as it goes.

    Skipped (``result.skipped``) when these stations' devices have reported before. ``state_path`` is where
    the simulated devices' state is saved at the end (the live simulators' ``--state``). ``progress`` is
    called after each simulated hour with the simulated time and the result so far.
    """
    from chargeapp.services import booking, periodic
    from mqtt_bridge.client import Received
    from mqtt_bridge.handler import ApplyContext, RegistryCache, apply_message
    from mqtt_bridge.outbox import OutboxSender, OutboxSettings
    from simulators.behaviour import Behaviour
    from simulators.layouts import layout_for
    from simulators.simulation import Simulation
    from simulators.state import StateStore

    start = end - timedelta(days=days)
    result = HistoryResult(start=start, end=end)
    began = time.perf_counter()
    if days <= 0 or history_present(session, stations):
        result.skipped = days > 0
        return result
    session.commit()  # whatever the caller left open: each batch below is its own transaction

    queue = DeliveryQueue()
    calls = DeferredCalls()
    state = StateStore(state_path)
    holder: dict = {}
    bookings = ServiceBookings(session, lambda: holder["sim"].now)
    sim = Simulation([layout_for(code) for code in stations], start=start, seed=f"{seed}:history", sink=queue,
                     bookings=bookings, behaviour=Behaviour(incidents=max(incidents, 0.0)), state=state)
    holder["sim"] = sim
    sim.api_executor = calls
    _sample_less_often(sim)

    def to_charger(topic: str, payload: bytes, qos: int = 1, expiry_seconds: int | None = None) -> bool:
        sim.deliver(topic, payload)
        return True

    outbox = OutboxSender(to_charger, settings=OutboxSettings(min_wall_seconds=0.0))
    registry = RegistryCache(max_age=float("inf"))
    at = start

    # One context for the whole history: its device sequences and pinned rows stay valid from batch to batch,
    # as nothing else writes these stations' devices meanwhile (the bridge's worker makes one per batch because
    # other workers may).
    ctx = ApplyContext(registry)
    next_periodic = [start]

    def apply(now: datetime, final: bool = False) -> None:
        t0 = time.process_time()
        for received_at, topic, payload, retain in queue.take():
            outcome = apply_message(session, Received(topic, payload, 1, retain, received_at), now, context=ctx)
            result.messages += 1
            result.outcomes[outcome.status] = result.outcomes.get(outcome.status, 0) + 1
        result.timed("apply", t0)
        if not final:
            t0 = time.process_time()
            if now >= next_periodic[0]:
                next_periodic[0] = now + PERIODIC_EVERY
                periodic.run_once(session, now)
            else:
                booking.tick(session, now)  # holds 10 minutes before a slot, no-shows: on time
            result.timed("periodic", t0)
            t0 = time.process_time()
            outbox.run_once(session, now)
            result.timed("outbox", t0)
        t0 = time.process_time()
        session.commit()
        result.timed("commit", t0)

    # The one writer of these rows for the whole run: what it holds in memory stays true across its commits,
    # so they need not expire (each batch would reload every charger and connector it touches).
    real = session() if callable(session) else session
    expire, real.expire_on_commit = real.expire_on_commit, False
    try:
        _run(sim, at, end, apply, calls, progress, result)
    finally:
        real.expire_on_commit = expire
    result.cancelled_at_end = _cancel_bookings_from(session, stations, end)
    sim.shutdown()  # every device says offline; boot counters and transaction ids saved for the live run
    apply(end, final=True)
    result.bookings = bookings.counts.get("booked", 0)
    result.bookings_refused = sum(v for k, v in bookings.counts.items() if k.startswith("book_refused"))
    result.seconds = time.perf_counter() - began
    if progress is not None:
        progress(end, result)
    return result


def _run(sim, at: datetime, end: datetime, apply, calls: DeferredCalls, progress, result: HistoryResult) -> None:
    next_report = at + timedelta(hours=1)
    sim.start()
    while at < end:
        at = min(at + BATCH, end)
        t0 = time.process_time()
        sim.run_until(at)
        result.timed("simulate", t0)
        apply(at)
        t0 = time.process_time()
        if calls.run():  # bookings and cancellations, each its own transaction, then the drivers act on the answers
            sim.collect_api_results()
        result.timed("bookings", t0)
        if progress is not None and at >= next_report:
            next_report += timedelta(hours=1)
            progress(at, result)


def _cancel_bookings_from(session: Session, stations: list[str], end: datetime) -> int:
    """The history's drivers cancel their bookings for slots from ``end`` on: the live run has drivers of its own."""
    from chargeapp.services import booking

    rows = session.scalars(
        select(m.Booking).join(m.Station, m.Booking.station_id == m.Station.id)
        .where(m.Station.code.in_(stations), m.Booking.slot_start >= end, m.Booking.status.in_(booking.ACTIVE_VALUES))
    ).all()
    for b in rows:
        booking.cancel_booking(session, end, b.driver_id, b.id)
    session.commit()
    return len(rows)
