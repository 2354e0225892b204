"""The simulation core: stations' devices and behaviour on one scheduler, publishing through a sink.

No broker, no wall clock: ``run_until`` advances simulated time, ``deliver``
feeds in a command as received from the broker. The real-time runner and the
MQTT adapter drive it for real runs; tests drive it directly with a
``MemorySink``.
"""
from __future__ import annotations

import logging
import queue
import random
from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from datetime import datetime
from typing import Any

from chargeapp import telemetry as t
from simulators.behaviour import Behaviour, StationLife
from simulators.bookings import BookingClient
from simulators.devices import Charger, Context, Device, DoorCounter, Gate, Sink
from simulators.layouts import StationLayout
from simulators.population import SimDriver, station_roster
from simulators.scheduler import Scheduler
from simulators.state import StateStore

log = logging.getLogger(__name__)


class Simulation:
    """Every simulated device of the given stations and the drivers who use them."""

    def __init__(self, stations: Iterable[StationLayout], *, start: datetime, seed: object, sink: Sink,
                 bookings: BookingClient | None = None, behaviour: Behaviour | None = None,
                 state: StateStore | None = None):
        self.scheduler = Scheduler(start)
        self.ctx = Context(self.scheduler, sink, counts={})
        self.seed = seed
        self.behaviour = behaviour or Behaviour()
        self.state = state or StateStore(None)
        self.devices: dict[str, Device] = {}
        self.lives: dict[str, StationLife] = {}
        self.drivers: list[SimDriver] = []
        self.api_executor: Executor | None = None
        self._api_done: queue.SimpleQueue = queue.SimpleQueue()
        for layout in stations:
            self._add_station(layout, bookings)
        self.started = False

    def _rng(self, *parts: str) -> random.Random:
        return random.Random(":".join([str(self.seed), *parts]))

    def _add_station(self, layout: StationLayout, bookings: BookingClient | None) -> None:
        b = self.behaviour
        chargers, doors, gates = [], [], []
        for c in layout.chargers:
            key = f"{layout.code}.{c.code}"
            chargers.append(Charger(layout, c, self.ctx, self.state.device(key), self._rng(key)))
        for d in layout.doors:
            key = f"{layout.code}.{d.code}"
            doors.append(DoorCounter(layout, d, self.ctx, self.state.device(key), self._rng(key), b.door_miss_rate))
        for g in layout.gates:
            key = f"{layout.code}.{g.code}"
            gates.append(Gate(layout, g, self.ctx, self.state.device(key), self._rng(key), b.plate_misread_rate))
        for device in [*chargers, *doors, *gates]:
            self.devices[device.key] = device
        drivers = [SimDriver(p, p.id_tag) for p in station_roster(layout)]
        self.drivers.extend(drivers)
        self.lives[layout.code] = StationLife(self, layout, chargers, doors, gates, drivers, b, self.seed, bookings)

    # -- driving it ------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.scheduler.now

    @property
    def counts(self) -> dict[str, int]:
        return self.ctx.counts

    def start(self) -> None:
        """Power the devices on (a few seconds apart) and plan the first hours of arrivals and incidents."""
        if self.started:
            return
        self.started = True
        for life in self.lives.values():
            life.start()

    def run_until(self, until: datetime) -> int:
        """Run everything due up to ``until`` (simulated); returns how many steps ran."""
        if not self.started:
            self.start()
        return self.scheduler.run_until(until)

    def next_time(self) -> datetime | None:
        return self.scheduler.next_time()

    def deliver(self, topic: str, payload: bytes) -> bool:
        """A command as received from the broker, at the current simulated time; False if it is not for one of ours."""
        try:
            command = t.parse_message(topic, payload, self.scheduler.now)
        except t.BadMessage as e:
            self.ctx.count("bad_commands")
            log.warning("ignoring a bad command on %s: %s", topic, e)
            return False
        if not isinstance(command, t.Command):
            return False
        device = self.devices.get(f"{command.station}.{command.charger}")
        if not isinstance(device, Charger):
            self.ctx.count("commands_for_unknown_chargers")
            return False
        self.ctx.count("commands")
        device.receive(command)
        return True

    def call_api(self, call: Callable[..., Any], args: tuple, then: Callable[[Any], None]) -> None:
        """Call the service's API and hand the result (None on an exception) to ``then`` on the simulation's thread.

        Without an executor (tests, virtual runs) the call is made at once. With
        one (real-time runs) it runs on a worker thread, so a slow web service
        never stalls the devices; ``then`` runs when ``collect_api_results`` sees it,
        at the simulated time the answer came back.
        """
        if self.api_executor is None:
            then(self._result_of(call, args))
            return
        future = self.api_executor.submit(call, *args)
        future.add_done_callback(lambda f: self._api_done.put((then, f)))

    @staticmethod
    def _result_of(call, args):
        try:
            return call(*args)
        except Exception:  # an API failure is a booking that did not happen, never a stopped simulation
            log.exception("API call %s failed", getattr(call, "__name__", call))
            return None

    def collect_api_results(self) -> int:
        """Run the continuations of API calls that have finished; returns how many ran."""
        done = 0
        while True:
            try:
                then, future = self._api_done.get_nowait()
            except queue.Empty:
                return done
            try:
                result = future.result()
            except Exception:
                log.exception("API call failed")
                result = None
            then(result)
            done += 1

    def shutdown(self) -> None:
        """Orderly stop: every device says offline and disconnects; device state is saved."""
        for device in self.devices.values():
            if device.powered:
                device.power_off(abrupt=False)
        self.state.save()

    # -- looking at it -----------------------------------------------------------------

    def charger(self, station: str, code: str) -> Charger:
        device = self.devices[f"{station}.{code}"]
        assert isinstance(device, Charger)
        return device

    def gauges(self) -> dict[str, int]:
        """What is going on right now: charging connectors, queued drivers, people in lounges, devices down."""
        chargers = [d for d in self.devices.values() if isinstance(d, Charger)]
        return {
            "charging": sum(1 for c in chargers for k in c.connectors.values() if k.status == "Charging"),
            "plugged": sum(1 for c in chargers for k in c.connectors.values() if k.vehicle is not None),
            "reserved": sum(1 for c in chargers for k in c.connectors.values() if k.status == "Reserved"),
            "faulted": sum(1 for c in chargers for k in c.connectors.values() if k.status == "Faulted"),
            "waiting": sum(len(q) for life in self.lives.values() for q in life.queues.values()),
            "lounge": sum(n for life in self.lives.values() for n in life.lounge.values()),
            "down": sum(1 for d in self.devices.values() if not d.link_up),
        }
