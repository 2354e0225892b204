"""How a station lives through a day: drivers come and go, hardware misbehaves.

Ride-hailing drivers charge off-peak: arrivals follow an hourly profile with a
lunch peak (11-14) and a late-evening peak (20-23), few in the rush hours. A
visit is a chain of scheduled steps: gate in, find a charger (the one held for
the driver's booking, or any free one; otherwise queue with some patience),
plug in, present the id tag, walk up to the lounge (door counters, maybe the
tea room or upstairs), come back (on time, early, or late, leaving the car
plugged in after it is full), stop, unplug, gate out. Some drivers book ahead
through the API; some of those are late, do not come or cancel.

Incidents: charger faults (short or long), on-site maintenance (Unavailable),
charger and door-counter reboots (door totals restart, and a counter's clock
may read wrong until it syncs), network outages of one device or the whole
station (messages queue and arrive late; the broker publishes last wills).

Every random choice comes from ``random.Random`` streams derived from the run's
seed and the station, so a seed reproduces a run.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from simulators.bookings import BookingClient, Ticket
from simulators.devices import Charger, Connector, Device, DoorCounter, Gate
from simulators.ev import Battery
from simulators.layouts import DoorLayout, StationLayout
from simulators.population import SimDriver

if TYPE_CHECKING:
    from simulators.simulation import Simulation

log = logging.getLogger(__name__)

# Relative arrival rate per station-local hour: off-peak charging by ride-hailing drivers.
HOURLY_PROFILE: tuple[float, ...] = (
    5, 4, 3, 2, 2, 3, 4, 3, 3, 5, 7, 11,   # 00-11
    13, 12, 9, 6, 5, 3, 3, 5, 9, 11, 11, 8,  # 12-23
)

FAULT_CODES = {
    "fast": ("HighTemperature", "GroundFailure", "PowerSwitchFailure", "EVCommunicationError",
             "InternalError", "OverCurrentFailure", "ConnectorLockFailure"),
    "slow": ("GroundFailure", "OverCurrentFailure", "ConnectorLockFailure", "PowerMeterFailure",
             "InternalError", "ReaderFailure"),
}
HOUR = 3600.0
MINUTE = 60.0


@dataclass(frozen=True)
class Behaviour:
    """The knobs of a simulated station (rates per charger per day, shares of visits, incident rates)."""

    fast_visits_per_charger_day: float = 14.0
    slow_visits_per_charger_day: float = 2.5
    lounge_only_share: float = 0.08        # extra visitors who only use the lounge
    booking_share: float = 0.3             # of fast-charging drivers, when bookings are possible
    late_share: float = 0.15
    no_show_share: float = 0.07
    cancel_share: float = 0.08
    lounge_share: float = 0.7              # charging drivers who walk up to the lounge
    tea_share: float = 0.5
    upstairs_share: float = 0.3
    idle_share: float = 0.2                # fast drivers back long after the car is full
    early_share: float = 0.1               # fast drivers who leave before the car is full
    local_stop_share_fast: float = 0.85    # stop with the card, else unplug on the car side
    local_stop_share_slow: float = 0.5
    patience_minutes: tuple[float, float] = (8.0, 25.0)
    fault_mtbf_hours_fast: float = 96.0
    fault_mtbf_hours_slow: float = 300.0
    long_fault_share: float = 0.3
    maintenance_mtbf_hours: float = 168.0  # per station
    charger_reboot_mtbf_hours: float = 240.0
    offline_mtbf_hours: float = 150.0      # per device
    station_outage_mtbf_hours: float = 120.0
    door_reboot_mtbf_hours: float = 36.0
    clock_fault_share: float = 0.15        # rebooted counters/gates whose clock reads wrong until NTP sync
    plate_misread_rate: float = 0.01
    door_miss_rate: float = 0.005
    incidents: float = 1.0                 # multiplies every incident rate; 0 switches incidents off
    warm_start: bool = True                # cars pull in during the first minutes, as if the run joined a busy day


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson-distributed count with mean ``lam`` (Knuth below 30, normal approximation above)."""
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def slot_of(at: datetime, tz) -> datetime:
    """The :00/:30 slot (station-local, aware) nearest to ``at``."""
    local = at.astimezone(tz)
    base = local.replace(minute=0, second=0, microsecond=0)
    minutes = local.minute + local.second / 60
    slot = base + timedelta(minutes=30 * round(minutes / 30))
    return slot


class Visit:
    """One driver's visit to a station: a chain of scheduled steps."""

    def __init__(self, life: StationLife, driver: SimDriver, kind: str, rng: random.Random):
        self.life = life
        self.driver = driver
        self.kind = kind  # "fast", "slow" or "lounge"
        self.rng = rng
        self.ticket: Ticket | None = None
        self.battery: Battery | None = None
        self.charger: Charger | None = None
        self.claimed: Charger | None = None
        self.attempts = 0
        self.patience = None
        self.in_garage = False
        self.zone: str | None = None
        self.done = False

    # -- arrival and finding a charger -------------------------------------------------

    def arrive(self) -> None:
        life = self.life
        model = self.driver.profile.vehicle
        if self.kind == "fast":
            self.battery = Battery(model, self.rng.uniform(8, 40), self.rng.uniform(80, 95))
        elif self.kind == "slow":
            self.battery = Battery(model, self.rng.uniform(20, 60), self.rng.uniform(90, 100))
        life.count(f"arrivals_{self.kind}")
        if self.kind == "lounge" and self.rng.random() < 0.5:
            # Came on foot or parked in the street: straight to the lounge.
            self.lounge_trip(self.rng.uniform(15, 90) * MINUTE, then=self.finish)
            return
        life.gate_pass(self.driver, "in")
        self.in_garage = True
        if self.kind == "lounge":
            self.after(self.rng.uniform(1, 3) * MINUTE,
                       self.lounge_trip, self.rng.uniform(15, 90) * MINUTE, self.drive_out)
            return
        self.after(self.rng.uniform(1, 3) * MINUTE, self.look_for_charger)

    def after(self, seconds: float, action, *args):
        return self.life.sim.scheduler.after(seconds, action, *args)

    def look_for_charger(self) -> None:
        if self.done:
            return
        charger = self.life.find_charger(self.kind, self.driver.id_tag)
        if charger is None:
            self.wait()
            return
        self.life.dequeue(self)
        self.claimed = charger
        self.life.claims[charger.key] = self
        self.after(self.rng.uniform(20, 60), self.plug)

    def wait(self) -> None:
        if self.life.enqueue(self) and self.patience is None:
            low, high = self.life.behaviour.patience_minutes
            minutes = self.rng.uniform(low, high)
            if self.ticket is not None:  # a driver with a booking waits for the hold until grace ends
                grace_end = self.ticket.slot_start + timedelta(minutes=12)
                minutes = max(minutes, (grace_end - self.life.now).total_seconds() / MINUTE)
            self.patience = self.after(minutes * MINUTE, self.give_up)

    def give_up(self) -> None:
        self.patience = None
        if self.done or self.charger is not None or self.claimed is not None:
            return
        self.life.dequeue(self)
        self.life.count(f"gave_up_{self.kind}")
        if self.kind == "fast" and self.rng.random() < 0.4 and self.life.find_charger("slow", self.driver.id_tag):
            self.kind = "slow"
            self.battery = Battery(self.driver.profile.vehicle, self.battery.soc, self.rng.uniform(80, 95))
            self.look_for_charger()
            return
        self.drive_out()

    def plug(self) -> None:
        charger, self.claimed = self.claimed, None
        self.life.claims.pop(charger.key, None)
        if self.done:
            return
        self.attempts += 1
        if not charger.plug_in(self.battery, self.driver.id_tag):
            # Taken, reserved or broken while we parked: look again (a few times at most).
            self.life.count("plug_refused")
            if self.attempts < 4:
                self.look_for_charger()
            else:
                self.drive_out()
            return
        self.charger = charger
        if charger.connector.transaction is not None:  # a remote start was waiting for the cable
            self.started()
            return
        self.after(self.rng.uniform(10, 40), self.present_tag)

    def present_tag(self) -> None:
        charger = self.charger
        if charger.authorize(self.driver.id_tag):
            self.started()
            return
        self.life.count("start_refused")
        self.after(self.rng.uniform(10, 30), self.unplug_and_retry)

    def unplug_and_retry(self) -> None:
        charger, self.charger = self.charger, None
        charger.unplug()
        if self.attempts < 4:
            self.look_for_charger()
        else:
            self.drive_out()

    # -- while the car charges -----------------------------------------------------------

    def started(self) -> None:
        if self.patience is not None:
            self.patience.cancel()
            self.patience = None
        self.life.count(f"sessions_{self.kind}")
        b = self.life.behaviour
        charger = self.charger
        full_in = self.battery.seconds_to_target(charger.layout.kind, charger.layout.max_power_kw)
        if self.kind == "fast":
            r = self.rng.random()
            if r < b.early_share:
                stay = full_in * self.rng.uniform(0.5, 0.9)
            elif r < b.early_share + b.idle_share:
                stay = full_in + self.rng.uniform(15, 60) * MINUTE
            else:
                stay = full_in + self.rng.uniform(-3, 10) * MINUTE
            stay = max(stay, 8 * MINUTE)
        else:
            stay = self.rng.uniform(90, 300) * MINUTE
        if self.rng.random() < b.lounge_share and self.life.layout.entrance is not None and stay > 15 * MINUTE:
            walk = self.rng.uniform(1, 3) * MINUTE
            self.after(walk, self.lounge_trip, stay - 2 * walk, self.back_to_car)
        else:
            self.after(stay, self.back_to_car)

    def lounge_trip(self, duration: float, then) -> None:
        """Spend ``duration`` seconds in the lounge (entrance in, maybe inner rooms, entrance out), then ``then()``."""
        life = self.life
        entrance = life.layout.entrance
        if entrance is None or not life.open_now():
            self.after(duration, then)
            return
        life.door_pass(entrance, "in")
        self.zone = entrance.zone_in
        leave_at = life.now + timedelta(seconds=duration)
        plan: list[tuple[DoorLayout, float]] = []
        for door in life.layout.inner_doors(entrance.zone_in):
            share = life.behaviour.tea_share if "tea" in door.code else life.behaviour.upstairs_share
            if self.rng.random() < share:
                stay = self.rng.uniform(5, 15) if "tea" in door.code else self.rng.uniform(15, 60)
                plan.append((door, stay * MINUTE))
        self._room_hop(plan, leave_at, entrance, then)

    def _room_hop(self, plan, leave_at: datetime, entrance: DoorLayout, then) -> None:
        life = self.life
        left = (leave_at - life.now).total_seconds()
        if plan:
            door, stay = plan[0]
            gap = self.rng.uniform(2, 8) * MINUTE
            if gap + stay + 2 * MINUTE < left:
                def go_in():
                    life.door_pass(door, "in")
                    self.zone = door.zone_in

                def come_out():
                    life.door_pass(door, "out")
                    self.zone = door.zone_out
                    self._room_hop(plan[1:], leave_at, entrance, then)
                self.after(gap, go_in)
                self.after(gap + stay, come_out)
                return
        self.after(max(left, 0.0), self._leave_lounge, entrance, then)

    def _leave_lounge(self, entrance: DoorLayout, then) -> None:
        self.life.door_pass(entrance, "out")
        self.zone = None
        self.after(self.rng.uniform(1, 3) * MINUTE, then)

    def back_to_car(self) -> None:
        charger = self.charger
        c: Connector = charger.connector
        b = self.life.behaviour
        if c.transaction is not None and c.transaction.id_tag == self.driver.id_tag:
            share = b.local_stop_share_fast if charger.fast else b.local_stop_share_slow
            if self.rng.random() < share and charger.stop(self.driver.id_tag):
                self.after(self.rng.uniform(20, 60), self.unplug)
                return
        self.unplug()

    def unplug(self) -> None:
        charger, self.charger = self.charger, None
        if charger is not None:
            charger.unplug()
        self.drive_out()

    def drive_out(self) -> None:
        if self.in_garage:
            self.after(self.rng.uniform(1, 3) * MINUTE, self._exit_gate)
        else:
            self.finish()

    def _exit_gate(self) -> None:
        self.life.gate_pass(self.driver, "out")
        self.in_garage = False
        self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.life.dequeue(self)
        if self.patience is not None:
            self.patience.cancel()
        self.life.release(self.driver)


class StationLife:
    """The behaviour of one station: arrivals, bookings, queues and incidents over its devices."""

    PLANNING_HORIZON_HOURS = 3

    def __init__(self, sim: Simulation, layout: StationLayout, chargers: list[Charger], doors: list[DoorCounter],
                 gates: list[Gate], drivers: list[SimDriver], behaviour: Behaviour, seed: object,
                 bookings: BookingClient | None):
        self.sim = sim
        self.layout = layout
        self.chargers = chargers
        self.doors = {d.device_id: d for d in doors}
        self.gates = gates
        self.drivers = drivers
        self.behaviour = behaviour
        self.bookings = bookings
        self.rng = random.Random(f"{seed}:{layout.code}:visits")
        self.incident_rng = random.Random(f"{seed}:{layout.code}:incidents")
        self.queues: dict[str, list[Visit]] = {"fast": [], "slow": []}
        self.claims: dict[str, Visit] = {}
        self.lounge: dict[str, int] = {}
        self._outages: dict[str, int] = {}
        for charger in chargers:
            charger.listeners.append(self._on_status)

    # -- helpers ---------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.sim.scheduler.now

    def count(self, key: str, n: int = 1) -> None:
        self.sim.ctx.count(key, n)

    def open_now(self) -> bool:
        return self.layout.is_open(self.now.astimezone(self.layout.tz).time())

    def devices(self) -> list[Device]:
        return [*self.chargers, *self.doors.values(), *self.gates]

    def gate_pass(self, driver: SimDriver, direction: str) -> None:
        layout = self.layout.entry_gate if direction == "in" else self.layout.exit_gate
        if layout is None:
            return
        gate = next(g for g in self.gates if g.device_id == layout.code)
        gate.passage(driver.plate, direction)

    def door_pass(self, door: DoorLayout, direction: str) -> None:
        self.doors[door.code].passage(direction)
        into, out_of = (door.zone_in, door.zone_out) if direction == "in" else (door.zone_out, door.zone_in)
        if into:
            self.lounge[into] = self.lounge.get(into, 0) + 1
        if out_of:
            self.lounge[out_of] = max(0, self.lounge.get(out_of, 0) - 1)

    def find_charger(self, kind: str, id_tag: str) -> Charger | None:
        """The charger a driver would go to: the one held for them, else a random free one of that kind."""
        candidates = [c for c in self.chargers if c.layout.kind == kind and c.key not in self.claims]
        held = [c for c in candidates if c.reserved_for(id_tag) and c.accepts(id_tag)]
        if held:
            return held[0]
        free = [c for c in candidates if c.accepts(id_tag) and c.connector.reservation is None]
        return self.rng.choice(free) if free else None

    def enqueue(self, visit: Visit) -> bool:
        queue = self.queues.get(visit.kind)
        if queue is None:
            return False
        if visit not in queue:
            queue.append(visit)
            self.count(f"queued_{visit.kind}")
        return True

    def dequeue(self, visit: Visit) -> None:
        queue = self.queues.get(visit.kind)
        if queue and visit in queue:
            queue.remove(visit)

    def _on_status(self, charger: Charger, connector: Connector, before: str) -> None:
        if connector.status not in ("Available", "Reserved"):
            return
        queue = self.queues[charger.layout.kind]
        # Let waiting drivers notice a freed or newly held charger (a little later: they are walking over).
        for visit in list(queue):
            if charger.key in self.claims:
                break
            if charger.accepts(visit.driver.id_tag) and (connector.reservation is None
                                                         or charger.reserved_for(visit.driver.id_tag)):
                queue.remove(visit)
                visit.claimed = charger
                self.claims[charger.key] = visit
                visit.after(visit.rng.uniform(30, 90), visit.plug)
                break

    def pick_driver(self) -> SimDriver | None:
        free = [d for d in self.drivers if not d.busy]
        if not free:
            self.count("visits_without_driver")
            return None
        driver = self.rng.choice(free)
        driver.busy = True
        return driver

    def release(self, driver: SimDriver) -> None:
        driver.busy = False
        driver.booking_id = None

    # -- the day's arrivals -------------------------------------------------------------

    def start(self) -> None:
        sched = self.sim.scheduler
        for device in self.devices():
            sched.after(device.rng.uniform(0, 3), device.power_on)
        hour = self.now.replace(minute=0, second=0, microsecond=0)
        for h in range(self.PLANNING_HORIZON_HOURS + 1):
            self._plan_hour(hour + timedelta(hours=h))
        sched.at(hour + timedelta(hours=1), self._next_hour, hour + timedelta(hours=1 + self.PLANNING_HORIZON_HOURS))
        if self.behaviour.warm_start:
            self._warm_start()
        self._schedule_incidents()

    def _warm_start(self) -> None:
        """A run starts on a station in use: about as many cars as the hour's profile suggests arrive in its first minutes."""
        if not self.open_now():
            return
        local_hour = self.now.astimezone(self.layout.tz).hour
        busy = HOURLY_PROFILE[local_hour] / max(HOURLY_PROFILE)
        for charger in self.chargers:
            share = 0.2 + 0.6 * busy if charger.fast else 0.3 + 0.3 * busy
            if self.rng.random() < share:
                at = self.now + timedelta(seconds=self.rng.uniform(5, 600))
                self.sim.scheduler.at(at, self._arrive, charger.layout.kind, random.Random(self.rng.getrandbits(64)))

    def _next_hour(self, plan_hour: datetime) -> None:
        self._plan_hour(plan_hour)
        self.sim.scheduler.at(self.now + timedelta(hours=1), self._next_hour, plan_hour + timedelta(hours=1))

    def _rate(self, local_hour: int) -> float:
        weights = [w if self.layout.is_open(datetime(2000, 1, 1, h).time()) else 0.0
                   for h, w in enumerate(HOURLY_PROFILE)]
        total = sum(weights) or 1.0
        return weights[local_hour] / total

    def _plan_hour(self, hour_start: datetime) -> None:
        """Draw the arrivals of one hour and schedule them (or their bookings, made ahead)."""
        b = self.behaviour
        local_hour = hour_start.astimezone(self.layout.tz).hour
        share = self._rate(local_hour)
        n_fast = len(self.layout.chargers_of("fast"))
        n_slow = len(self.layout.chargers_of("slow"))
        expected = {
            "fast": n_fast * b.fast_visits_per_charger_day * share,
            "slow": n_slow * b.slow_visits_per_charger_day * share,
        }
        expected["lounge"] = (expected["fast"] + expected["slow"]) * b.lounge_only_share if self.doors else 0.0
        arrivals = []
        for kind in ("fast", "slow", "lounge"):
            for _ in range(poisson(self.rng, expected[kind])):
                at = hour_start + timedelta(seconds=self.rng.uniform(0, HOUR))
                if at >= self.now:
                    arrivals.append((at, kind, self.rng.getrandbits(64)))
        arrivals.sort(key=lambda a: a[0])
        for at, kind, stream in arrivals:
            visit_rng = random.Random(stream)
            books = (kind == "fast" and self.bookings is not None and visit_rng.random() < b.booking_share)
            if books:
                lead = visit_rng.uniform(20, 180) * MINUTE
                self.sim.scheduler.at(max(self.now, at - timedelta(seconds=lead)), self._book, at, visit_rng)
            else:
                self.sim.scheduler.at(at, self._arrive, kind, visit_rng)

    def _arrive(self, kind: str, rng: random.Random) -> None:
        if not self.open_now() and kind == "lounge":
            return
        driver = self.pick_driver()
        if driver is None:
            return
        Visit(self, driver, kind, rng).arrive()

    # -- bookings ----------------------------------------------------------------------

    def _book(self, planned_arrival: datetime, rng: random.Random) -> None:
        slot = slot_of(planned_arrival, self.layout.tz)
        if (slot - self.now).total_seconds() < 15 * MINUTE:
            self.sim.scheduler.at(planned_arrival, self._arrive, "fast", rng)
            return
        driver = self.pick_driver()
        if driver is None:
            return
        self.sim.call_api(self.bookings.book, (driver, self.layout.code, slot),
                          lambda ticket: self._booked(driver, planned_arrival, rng, ticket))

    def _booked(self, driver: SimDriver, planned_arrival: datetime, rng: random.Random, ticket: Ticket | None) -> None:
        """The service answered a booking: plan how this driver keeps it (on time, late, no-show, cancel)."""
        if ticket is None:
            self.count("bookings_refused")
            self.release(driver)
            self.sim.scheduler.at(planned_arrival, self._arrive, "fast", rng)
            return
        self.count("bookings")
        driver.booking_id = ticket.booking_id
        visit = Visit(self, driver, "fast", rng)
        visit.ticket = ticket
        b = self.behaviour
        r = rng.random()
        slot_start = ticket.slot_start
        if r < b.no_show_share:
            self.count("bookings_no_show_planned")
            self.sim.scheduler.at(slot_start + timedelta(minutes=30), visit.finish)
        elif r < b.no_show_share + b.cancel_share:
            lead = (slot_start - self.now).total_seconds()
            cancel_at = self.now + timedelta(seconds=rng.uniform(0.1, 0.9) * max(lead - 5 * MINUTE, 60))
            self.sim.scheduler.at(cancel_at, self._cancel, visit, rng.random() < 0.4)
        elif r < b.no_show_share + b.cancel_share + b.late_share:
            self.count("bookings_late_planned")
            self.sim.scheduler.at(slot_start + timedelta(minutes=rng.uniform(5, 25)), visit.arrive)
        else:
            self.sim.scheduler.at(slot_start + timedelta(minutes=rng.uniform(-12, 6)), visit.arrive)

    def _cancel(self, visit: Visit, comes_anyway: bool) -> None:
        self.sim.call_api(self.bookings.cancel, (visit.driver, visit.ticket.booking_id), lambda ok: None)
        self.count("bookings_cancelled")
        visit.ticket = None
        visit.driver.booking_id = None
        if comes_anyway:
            self.sim.scheduler.at(self.now + timedelta(minutes=visit.rng.uniform(10, 60)), visit.arrive)
        else:
            visit.finish()

    # -- incidents ---------------------------------------------------------------------

    def _every(self, mtbf_hours: float, action, *args) -> None:
        """Run ``action(*args)`` at exponentially distributed intervals with mean ``mtbf_hours`` / incidents."""
        factor = self.behaviour.incidents
        if factor <= 0 or mtbf_hours <= 0:
            return
        delay = self.incident_rng.expovariate(factor / (mtbf_hours * HOUR))

        def fire():
            action(*args)
            self._every(mtbf_hours, action, *args)
        self.sim.scheduler.after(delay, fire)

    def _schedule_incidents(self) -> None:
        b = self.behaviour
        for charger in self.chargers:
            self._every(b.fault_mtbf_hours_fast if charger.fast else b.fault_mtbf_hours_slow, self._fault, charger)
            self._every(b.charger_reboot_mtbf_hours, self._reboot_charger, charger)
        for device in self.devices():
            self._every(b.offline_mtbf_hours, self._offline, [device], 1, 15)
        for door in self.doors.values():
            self._every(b.door_reboot_mtbf_hours, self._reboot_with_clock, door)
        for gate in self.gates:
            self._every(b.door_reboot_mtbf_hours * 4, self._reboot_with_clock, gate)
        self._every(b.station_outage_mtbf_hours, self._offline, self.devices(), 2, 8)
        self._every(b.maintenance_mtbf_hours, self._maintenance)

    def _fault(self, charger: Charger) -> None:
        if not charger.powered or charger.connector.fault:
            return
        rng = self.incident_rng
        code = rng.choice(FAULT_CODES[charger.layout.kind])
        minutes = rng.uniform(60, 360) if rng.random() < self.behaviour.long_fault_share else rng.uniform(2, 15)
        charger.set_fault(code)
        self.sim.scheduler.after(minutes * MINUTE, charger.set_fault, None)

    def _reboot_charger(self, charger: Charger) -> None:
        if charger.connector.occupied or not charger.powered:
            return  # firmware updates wait for an idle charger
        charger.reboot(self.incident_rng.uniform(60, 180))

    def _reboot_with_clock(self, device: Device) -> None:
        if not device.powered:
            return
        rng = self.incident_rng
        downtime = rng.uniform(30, 180)
        device.reboot(downtime)
        if rng.random() < self.behaviour.clock_fault_share:
            # The real-time clock lost its battery: it reads 2000-01-01-ish until NTP syncs.
            device.clock_offset = datetime(2000, 1, 1, tzinfo=self.now.tzinfo) - self.now
            self.sim.scheduler.after(downtime + rng.uniform(20, 90), self._clock_synced, device)

    @staticmethod
    def _clock_synced(device: Device) -> None:
        device.clock_offset = timedelta(0)

    def _offline(self, devices: list[Device], low_minutes: float, high_minutes: float) -> None:
        minutes = self.incident_rng.uniform(low_minutes, high_minutes)
        for device in devices:
            self._outages[device.key] = self._outages.get(device.key, 0) + 1
            device.set_network(False)
        self.sim.scheduler.after(minutes * MINUTE, self._back_online, devices)
        self.count("network_outages")

    def _back_online(self, devices: list[Device]) -> None:
        for device in devices:
            self._outages[device.key] -= 1
            if self._outages[device.key] == 0:
                device.set_network(True)

    def _maintenance(self) -> None:
        idle = [c for c in self.chargers if c.powered and c.connector.status == "Available"
                and c.key not in self.claims]
        if not idle:
            return
        charger = self.incident_rng.choice(idle)
        if charger.set_local_inoperative(True):
            self.count("maintenance")
            self.sim.scheduler.after(self.incident_rng.uniform(60, 180) * MINUTE, charger.set_local_inoperative, False)
