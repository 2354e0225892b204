"""Simulated station devices: chargers (OCPP 1.6 semantics), lounge door counters, garage plate readers.

A device publishes through a ``Sink`` (memory for tests, MQTT for real runs) and
stamps every message as the contract says: ``ts`` from its own clock (the
shared simulated clock, in the station's time zone, whole seconds), ``boot``
(persisted, +1 per power-on) and ``seq`` (+1 per message across all its topics,
back to 1 after a reboot). Every payload goes through
``chargeapp.telemetry.format_message``, which validates it exactly as the
bridge's parser will.

Two kinds of outage are modelled separately because the service sees them
differently: a *network* outage (the device runs on, its messages queue and
arrive late with their device time; the broker publishes its last will), and a
*power* cycle (a reboot: new boot, seq from 1, door totals from 0).
"""
from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from chargeapp import telemetry as t
from simulators.ev import Battery, charging_power_w
from simulators.layouts import ChargerLayout, DoorLayout, GateLayout, StationLayout
from simulators.scheduler import Event, Scheduler
from simulators.state import DeviceState

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where devices' messages go: a broker connection per device, or memory in tests."""

    def connect(self, device: Device) -> None:
        """The device's link came up: publish ``true`` retained on its online topic (after a will or at boot)."""

    def disconnect(self, device: Device, *, abrupt: bool) -> None:
        """The link went down: ``abrupt`` (power or network lost) lets the broker publish the last will;
        otherwise the device says ``false`` itself and disconnects cleanly."""

    def publish(self, device: Device, topic: str, payload: bytes, retain: bool) -> None:
        """Send one message at QoS 1; while the link is down it queues and goes out on reconnect."""


@dataclass
class Context:
    """What every device shares: the scheduler, the sink and a counter of what was published."""

    scheduler: Scheduler
    sink: Sink
    counts: dict[str, int]

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


class Device:
    """A station device: identity, boot/seq stamping, power and network state, command queue."""

    kind: t.DeviceKind

    def __init__(self, station: StationLayout, device_id: str, ctx: Context, state: DeviceState, rng: random.Random):
        self.station = station
        self.device_id = device_id
        self.ctx = ctx
        self.state = state
        self.rng = rng
        self.boot = state.boot
        self.seq = 0
        self.powered = False
        self.network_ok = True
        self.link_up = False
        self.clock_offset = timedelta(0)
        self._timers: list[Event] = []
        self._pending: list[t.Command] = []

    # -- identity -------------------------------------------------------------

    @property
    def key(self) -> str:
        """``station.device``: the device's MQTT username and client id."""
        return f"{self.station.code}.{self.device_id}"

    @property
    def online_topic(self) -> str:
        return t.online_topic(self.kind, self.station.code, self.device_id)

    @property
    def last_will(self) -> t.LastWill:
        return t.last_will(self.kind, self.station.code, self.device_id)

    @property
    def now(self) -> datetime:
        return self.ctx.scheduler.now

    def device_time(self) -> datetime:
        """The device's clock: simulated time in the station's zone, whole seconds (plus any clock fault)."""
        return (self.now + self.clock_offset).astimezone(self.station.tz).replace(microsecond=0)

    # -- timers ---------------------------------------------------------------

    def after(self, seconds: float | timedelta, action: Callable, *args) -> Event:
        """Schedule an action that a power cut cancels."""
        event = self.ctx.scheduler.after(seconds, action, *args)
        self._timers = [e for e in self._timers if not e.cancelled and e.at >= self.now]
        self._timers.append(event)
        return event

    def _cancel_timers(self) -> None:
        for e in self._timers:
            e.cancel()
        self._timers.clear()

    # -- power and network ----------------------------------------------------

    def power_on(self) -> None:
        """Boot: boot+1 (persisted), seq from 1, link up if the network is, then the device's boot messages."""
        if self.powered:
            return
        self.state.boot += 1
        self.boot = self.state.boot
        self.seq = 0
        self.powered = True
        self.ctx.count("boots")
        self._update_link(abrupt=True)
        self.on_boot()
        self._drain()

    def power_off(self, *, abrupt: bool = True) -> None:
        """Power cut (abrupt: the broker publishes the will) or orderly shutdown (says offline itself)."""
        if not self.powered:
            return
        self.on_power_off()
        self._cancel_timers()
        self.powered = False
        self._update_link(abrupt=abrupt)

    def reboot(self, downtime: float) -> None:
        """Power-cycle: off now (link lost abruptly), on again ``downtime`` seconds later."""
        if not self.powered:
            return
        self.power_off(abrupt=True)
        self.ctx.scheduler.after(downtime, self.power_on)

    def set_network(self, ok: bool) -> None:
        """Network lost (the device runs on, queuing its messages) or back."""
        if self.network_ok == ok:
            return
        self.network_ok = ok
        self._update_link(abrupt=True)
        self._drain()

    def _update_link(self, *, abrupt: bool) -> None:
        up = self.powered and self.network_ok
        if up and not self.link_up:
            self.link_up = True
            self.ctx.sink.connect(self)
        elif not up and self.link_up:
            self.link_up = False
            self.ctx.sink.disconnect(self, abrupt=abrupt)

    def on_boot(self) -> None:
        """Publish what a freshly booted device publishes."""

    def on_power_off(self) -> None:
        """Forget what a power cut loses."""

    # -- publishing -----------------------------------------------------------

    def emit(self, message_type: type, **fields) -> t.DeviceMessage | None:
        """Stamp (ts, boot, seq+1), validate and publish one message; None if the device is off."""
        if not self.powered:
            return None
        self.seq += 1
        message = message_type(
            station=self.station.code, device_id=self.device_id, device_ts=self.device_time(),
            boot=self.boot, seq=self.seq, **fields,
        )
        topic, payload = t.format_message(message)
        self.ctx.sink.publish(self, topic, payload, message.topic_ref.retained)
        self.ctx.count("messages")
        self.ctx.count(message.topic_kind.value)
        return message

    # -- commands -------------------------------------------------------------

    def receive(self, command: t.Command) -> None:
        """A command from the broker; held until the device is up (the broker's persistent session does the same)."""
        if self.powered and self.link_up:
            self.handle(command)
        else:
            self._pending.append(command)

    def _drain(self) -> None:
        while self._pending and self.powered and self.link_up:
            self.handle(self._pending.pop(0))

    def handle(self, command: t.Command) -> None:
        log.warning("%s ignores command %s", self.key, command.name)


# =============================================================================== chargers


@dataclass
class Reservation:
    reservation_id: int
    id_tag: str
    parent_id_tag: str | None
    expiry: datetime
    timer: Event | None = None


@dataclass
class Transaction:
    transaction_id: int
    id_tag: str
    reservation_id: int | None
    meter_start: int


@dataclass
class PendingRemoteStart:
    id_tag: str
    timer: Event


class Connector:
    """One connector's physical and OCPP state; ``status`` is derived, never set."""

    def __init__(self, number: int, energy_wh: float):
        self.number = number
        self.energy_wh = energy_wh
        self.vehicle: Battery | None = None
        self.finishing = False
        self.transaction: Transaction | None = None
        self.reservation: Reservation | None = None
        self.pending_remote: PendingRemoteStart | None = None
        self.inoperative = False
        self.inoperative_when_free = False
        self.fault: str | None = None
        self.evse_suspended = False
        self.power_w = 0.0
        self.last_update: datetime | None = None
        self.meter_timer: Event | None = None
        self.published: tuple[str, str] | None = None

    @property
    def status(self) -> str:
        """The OCPP 1.6 ChargePointStatus this connector is in."""
        if self.fault:
            return "Faulted"
        if self.transaction is not None:
            if self.evse_suspended:
                return "SuspendedEVSE"
            if self.vehicle is None or self.vehicle.full:
                return "SuspendedEV"
            return "Charging"
        if self.inoperative:
            return "Unavailable"
        if self.vehicle is not None:
            return "Finishing" if self.finishing else "Preparing"
        if self.pending_remote is not None:
            return "Preparing"
        if self.reservation is not None:
            return "Reserved"
        return "Available"

    @property
    def error_code(self) -> str:
        return self.fault or "NoError"

    @property
    def occupied(self) -> bool:
        """A car is at the connector, or a start is under way."""
        return self.vehicle is not None or self.transaction is not None or self.pending_remote is not None


StatusListener = Callable[["Charger", Connector, str], None]


class Charger(Device):
    """A charger with OCPP 1.6 connector states, transactions, meter samples and the five commands.

    Drivers use ``plug_in``, ``authorize`` (an RFID card or app tag), ``stop``
    and ``unplug``; the service uses the commands; incidents use ``set_fault``,
    ``set_local_inoperative``, ``reboot`` and ``set_network``.
    """

    kind = t.DeviceKind.CHARGER
    REMOTE_START_TIMEOUT = 60.0  # seconds to plug in after a remote start (OCPP ConnectionTimeOut)
    REQUEST_MEMORY = 256

    def __init__(self, station: StationLayout, layout: ChargerLayout, ctx: Context, state: DeviceState,
                 rng: random.Random):
        super().__init__(station, layout.code, ctx, state, rng)
        self.layout = layout
        self.fast = layout.kind == "fast"
        self.connectors: dict[int, Connector] = {}
        for n in range(1, layout.connectors + 1):
            if str(n) not in state.meter_wh:
                # A meter that has been in service for a while (Wh).
                state.meter_wh[str(n)] = float(rng.randint(2_000_000, 40_000_000) if self.fast
                                               else rng.randint(200_000, 5_000_000))
            self.connectors[n] = Connector(n, state.meter_wh[str(n)])
        self.listeners: list[StatusListener] = []
        self._answers: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.meter_interval_charging = 30.0 if self.fast else 60.0
        self.meter_interval_idle = 60.0
        self.evse_pause_probability = 0.0015 if self.fast else 0.0002  # per meter sample while Charging

    @property
    def connector(self) -> Connector:
        """Connector 1 (every demo charger has one)."""
        return self.connectors[1]

    # -- what drivers can see -------------------------------------------------

    def accepts(self, id_tag: str, number: int = 1) -> bool:
        """Would this connector let the holder of ``id_tag`` plug in and charge now?"""
        c = self.connectors[number]
        if not self.powered or c.fault or c.inoperative or c.occupied:
            return False
        return c.reservation is None or self._matches(c.reservation, id_tag)

    def reserved_for(self, id_tag: str, number: int = 1) -> bool:
        """True if the connector holds a reservation for ``id_tag``."""
        r = self.connectors[number].reservation
        return r is not None and self._matches(r, id_tag) and not self.connectors[number].fault

    @staticmethod
    def _matches(r: Reservation, id_tag: str) -> bool:
        return id_tag == r.id_tag or (r.parent_id_tag is not None and id_tag == r.parent_id_tag)

    # -- a driver at the charger -------------------------------------------------

    def plug_in(self, battery: Battery, id_tag: str, number: int = 1) -> bool:
        """A car is plugged in (Preparing); False (nothing changes) if the connector does not accept this driver."""
        c = self.connectors[number]
        remote = c.pending_remote
        if remote is not None and remote.id_tag == id_tag and not c.fault and c.vehicle is None:
            remote.timer.cancel()
            c.pending_remote = None
            c.vehicle, c.finishing = battery, False
            self._start(c, id_tag)
            return True
        if not self.accepts(id_tag, number):
            return False
        c.vehicle, c.finishing = battery, False
        self._refresh(c)
        return True

    def authorize(self, id_tag: str, number: int = 1) -> bool:
        """The driver presents a tag at a plugged-in connector: the transaction starts; False if refused."""
        c = self.connectors[number]
        if not self.powered or c.fault or c.inoperative or c.vehicle is None or c.transaction is not None:
            return False
        if c.finishing:
            return False
        if c.reservation is not None and not self._matches(c.reservation, id_tag):
            return False
        self._start(c, id_tag)
        return True

    def stop(self, id_tag: str, number: int = 1, reason: str = "Local") -> bool:
        """The driver ends their transaction at the charger (card or screen); the car stays plugged (Finishing)."""
        c = self.connectors[number]
        if not self.powered or c.transaction is None:
            return False
        self._stop(c, reason)
        return True

    def unplug(self, number: int = 1) -> None:
        """The car is unplugged (a running transaction ends with EVDisconnected)."""
        c = self.connectors[number]
        if c.transaction is not None and self.powered:
            self._advance(c)
            c.vehicle = None  # the cable is out before the charger ends the transaction: straight to Available
            self._stop(c, "EVDisconnected", advance=False)
        c.vehicle, c.finishing = None, False
        if c.inoperative_when_free:
            c.inoperative, c.inoperative_when_free = True, False
        self._refresh(c)

    # -- incidents ------------------------------------------------------------------

    def set_fault(self, error_code: str | None, number: int = 1) -> None:
        """Enter Faulted with an OCPP error code (a running transaction stops: reason Other), or recover (None)."""
        c = self.connectors[number]
        if error_code is None:
            if c.fault is None:
                return
            c.fault = None
        else:
            self._advance(c)
            c.fault = error_code
            self.ctx.count("faults")
            if c.reservation is not None:
                self._drop_reservation(c, refresh=False)  # a faulted connector cannot honour a hold; the service moves it
            if c.pending_remote is not None:
                c.pending_remote.timer.cancel()
                c.pending_remote = None
            if c.transaction is not None:
                self._stop(c, "Other", advance=False)
        self._refresh(c)

    def set_local_inoperative(self, inoperative: bool, number: int = 1) -> bool:
        """A technician takes the connector out of service on site (Unavailable) or back; False while busy."""
        c = self.connectors[number]
        if inoperative and (c.occupied or c.reservation is not None):
            return False
        c.inoperative = inoperative
        c.inoperative_when_free = False
        self._refresh(c)
        return True

    def on_boot(self) -> None:
        for c in self.connectors.values():
            c.published = None
            if c.transaction is not None:
                # Power was lost mid-session: the transaction ended at the power cut.
                self._stop(c, "PowerLoss", advance=False)
            if c.reservation is not None and c.reservation.expiry <= self.now:
                self._drop_reservation(c)
            self._refresh(c, force=True)

    def on_power_off(self) -> None:
        for c in self.connectors.values():
            self._advance(c)
            if c.meter_timer is not None:
                c.meter_timer.cancel()
                c.meter_timer = None
            c.evse_suspended = False
            if c.pending_remote is not None:
                c.pending_remote.timer.cancel()
                c.pending_remote = None

    # -- commands -------------------------------------------------------------------

    def handle(self, command: t.Command) -> None:
        """Answer a command on command_results (a retried request_id gets the first answer again), then act."""
        seen = self._answers.get(command.request_id)
        if seen is not None and seen[0] == command.name:
            self.emit(t.CommandResult, request_id=command.request_id, command=command.name, status=seen[1])
            self.ctx.count("commands_repeated")
            return
        handler = {
            "reserve_now": self._reserve_now, "cancel_reservation": self._cancel_reservation,
            "remote_start": self._remote_start, "remote_stop": self._remote_stop,
            "change_availability": self._change_availability,
        }[command.name]
        status, apply = handler(command)
        self._answers[command.request_id] = (command.name, status)
        while len(self._answers) > self.REQUEST_MEMORY:
            self._answers.popitem(last=False)
        self.emit(t.CommandResult, request_id=command.request_id, command=command.name, status=status)
        self.ctx.count(f"command_{command.name}_{status}")
        if apply is not None:
            apply()

    def _connector_for(self, number: int) -> Connector | None:
        if number == 0:  # OCPP: "any connector" for a reservation
            return next((c for c in self.connectors.values() if c.status == "Available"),
                        self.connectors.get(1))
        return self.connectors.get(number)

    def _reserve_now(self, cmd: t.ReserveNow):
        c = self._connector_for(cmd.connector)
        if c is None or cmd.expiry <= self.now:
            return "Rejected", None
        if c.fault:
            return "Faulted", None
        if c.inoperative:
            return "Unavailable", None
        if c.occupied or (c.reservation is not None and c.reservation.reservation_id != cmd.reservation_id):
            return "Occupied", None
        for other in self.connectors.values():  # one reservation id lives on one connector
            if other is not c and other.reservation is not None and other.reservation.reservation_id == cmd.reservation_id:
                return "Rejected", None

        def apply():
            if c.reservation is not None:
                self._drop_reservation(c, refresh=False)
            r = Reservation(cmd.reservation_id, cmd.id_tag, cmd.parent_id_tag, cmd.expiry)
            r.timer = self.after(cmd.expiry - self.now, self._expire, c, r)
            c.reservation = r
            self._refresh(c)
        return "Accepted", apply

    def _expire(self, c: Connector, r: Reservation) -> None:
        if c.reservation is r:
            c.reservation = None
            self.ctx.count("reservations_expired")
            self._refresh(c)

    def _drop_reservation(self, c: Connector, refresh: bool = True) -> None:
        if c.reservation is not None and c.reservation.timer is not None:
            c.reservation.timer.cancel()
        c.reservation = None
        if refresh:
            self._refresh(c)

    def _cancel_reservation(self, cmd: t.CancelReservation):
        c = next((c for c in self.connectors.values()
                  if c.reservation is not None and c.reservation.reservation_id == cmd.reservation_id), None)
        if c is None:
            return "Rejected", None
        return "Accepted", lambda: self._drop_reservation(c)

    def _remote_start(self, cmd: t.RemoteStart):
        c = self.connectors.get(cmd.connector)
        if c is None or c.fault or c.inoperative or c.transaction is not None or c.pending_remote is not None:
            return "Rejected", None
        if c.finishing or (c.reservation is not None and not self._matches(c.reservation, cmd.id_tag)):
            return "Rejected", None
        if c.vehicle is not None:
            return "Accepted", lambda: self._start(c, cmd.id_tag)

        def apply():
            timer = self.after(self.REMOTE_START_TIMEOUT, self._remote_timeout, c)
            c.pending_remote = PendingRemoteStart(cmd.id_tag, timer)
            self._refresh(c)
        return "Accepted", apply

    def _remote_timeout(self, c: Connector) -> None:
        if c.pending_remote is not None:
            c.pending_remote = None
            self._refresh(c)

    def _remote_stop(self, cmd: t.RemoteStop):
        c = next((c for c in self.connectors.values()
                  if c.transaction is not None and c.transaction.transaction_id == cmd.transaction_id), None)
        if c is None:
            return "Rejected", None
        return "Accepted", lambda: self._stop(c, "Remote")

    def _change_availability(self, cmd: t.ChangeAvailability):
        if cmd.connector == 0:
            targets = list(self.connectors.values())
        elif cmd.connector in self.connectors:
            targets = [self.connectors[cmd.connector]]
        else:
            return "Rejected", None
        inoperative = cmd.type == "Inoperative"
        busy = inoperative and any(c.transaction is not None for c in targets)

        def apply():
            for c in targets:
                if inoperative and c.transaction is not None:
                    c.inoperative_when_free = True  # OCPP: Scheduled until the transaction ends
                    continue
                c.inoperative, c.inoperative_when_free = inoperative, False
                if inoperative and c.reservation is not None:
                    self._drop_reservation(c, refresh=False)
                if inoperative and c.pending_remote is not None:
                    c.pending_remote.timer.cancel()
                    c.pending_remote = None
                self._refresh(c)
        return ("Scheduled" if busy else "Accepted"), apply

    # -- transactions and metering -------------------------------------------------

    def _start(self, c: Connector, id_tag: str) -> None:
        reservation_id = None
        if c.reservation is not None and self._matches(c.reservation, id_tag):
            reservation_id = c.reservation.reservation_id
            self._drop_reservation(c, refresh=False)
        tx_id = self.state.next_transaction_id
        self.state.next_transaction_id += 1
        c.transaction = Transaction(tx_id, id_tag, reservation_id, int(c.energy_wh))
        c.finishing = False
        c.evse_suspended = False
        c.last_update = self.now
        self.emit(t.TransactionEvent, event="start", connector=c.number, transaction_id=tx_id, id_tag=id_tag,
                  reservation_id=reservation_id, meter_wh=int(c.energy_wh))
        self.ctx.count("transactions")
        c.power_w = self._draw(c)
        self._refresh(c)
        self._schedule_meter(c)

    def _stop(self, c: Connector, reason: str, advance: bool = True) -> None:
        tx = c.transaction
        if tx is None:
            return
        if advance:
            self._advance(c)
        if c.meter_timer is not None:
            c.meter_timer.cancel()
            c.meter_timer = None
        c.transaction = None
        c.evse_suspended = False
        c.power_w = 0.0
        c.finishing = c.vehicle is not None
        if c.inoperative_when_free:
            c.inoperative, c.inoperative_when_free = True, False
        self.emit(t.TransactionEvent, event="stop", connector=c.number, transaction_id=tx.transaction_id,
                  id_tag=tx.id_tag, meter_wh=int(c.energy_wh), reason=reason)
        self._refresh(c)

    def _draw(self, c: Connector) -> float:
        """The power (W) the car draws right now (0 when paused, full or unplugged)."""
        if c.transaction is None or c.vehicle is None or c.evse_suspended or c.fault or c.vehicle.full:
            return 0.0
        return charging_power_w(c.vehicle.model, self.layout.kind, self.layout.max_power_kw, c.vehicle.soc)

    def _advance(self, c: Connector) -> None:
        """Integrate the energy delivered since the last update into the register."""
        if c.last_update is None:
            c.last_update = self.now
            return
        seconds = (self.now - c.last_update).total_seconds()
        c.last_update = self.now
        if seconds <= 0 or c.transaction is None or c.vehicle is None or c.evse_suspended or c.fault:
            return
        c.energy_wh += c.vehicle.charge(self.layout.kind, self.layout.max_power_kw, seconds)
        self.state.meter_wh[str(c.number)] = c.energy_wh

    def _schedule_meter(self, c: Connector) -> None:
        interval = self.meter_interval_charging if c.status == "Charging" else self.meter_interval_idle
        c.meter_timer = self.after(interval, self._meter_tick, c)

    def _meter_tick(self, c: Connector) -> None:
        c.meter_timer = None
        if c.transaction is None or not self.powered:
            return
        self._advance(c)
        if c.evse_suspended and self.rng.random() < 0.5:
            c.evse_suspended = False  # the charger resumes after cooling down / load shedding
        elif c.status == "Charging" and self.rng.random() < self.evse_pause_probability:
            c.evse_suspended = True
        draw = self._draw(c)
        c.power_w = draw
        reported = int(round(draw * self.rng.uniform(0.97, 1.01))) if draw else 0
        soc = int(round(c.vehicle.soc)) if (self.fast and c.vehicle is not None) else None
        self.emit(t.MeterSample, connector=c.number, transaction_id=c.transaction.transaction_id,
                  energy_wh=int(c.energy_wh), power_w=reported, soc=soc)
        self._refresh(c)
        self._schedule_meter(c)

    # -- status -----------------------------------------------------------------------

    def _refresh(self, c: Connector, force: bool = False) -> None:
        """Publish the connector's status if it changed (retained); tell listeners."""
        now_state = (c.status, c.error_code)
        if not force and now_state == c.published:
            return
        before = c.published[0] if c.published else None
        c.published = now_state
        if self.powered:
            self.emit(t.StatusMessage, connector=c.number, status=now_state[0], error_code=now_state[1])
        for listener in self.listeners:
            listener(self, c, before or "")


# =============================================================================== lounge doors


class DoorCounter(Device):
    """A directional people counter: cumulative totals since boot, sent on every passage and at least every 60 s."""

    kind = t.DeviceKind.DOOR_SENSOR
    HEARTBEAT = 60.0

    def __init__(self, station: StationLayout, layout: DoorLayout, ctx: Context, state: DeviceState,
                 rng: random.Random, miss_rate: float = 0.0):
        super().__init__(station, layout.code, ctx, state, rng)
        self.layout = layout
        self.miss_rate = miss_rate
        self.in_total = 0
        self.out_total = 0
        self._heartbeat: Event | None = None

    def on_boot(self) -> None:
        self.in_total = 0
        self.out_total = 0
        self._publish()

    def passage(self, direction: str) -> bool:
        """Someone walks through ``in`` or ``out``; False if the counter missed it (off, or a missed beam)."""
        if not self.powered:
            self.ctx.count("door_passages_lost")
            return False
        if self.miss_rate and self.rng.random() < self.miss_rate:
            self.ctx.count("door_passages_missed")
            return False
        if direction == "in":
            self.in_total += 1
        else:
            self.out_total += 1
        self._publish()
        return True

    def _publish(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        self.emit(t.DoorCount, in_total=self.in_total, out_total=self.out_total)
        self._heartbeat = self.after(self.HEARTBEAT, self._publish)


# =============================================================================== garage gates


class Gate(Device):
    """A plate reader at the garage entrance or exit."""

    kind = t.DeviceKind.GATE

    def __init__(self, station: StationLayout, layout: GateLayout, ctx: Context, state: DeviceState,
                 rng: random.Random, misread_rate: float = 0.0):
        super().__init__(station, layout.code, ctx, state, rng)
        self.layout = layout
        self.misread_rate = misread_rate

    def passage(self, plate: str, direction: str) -> bool:
        """A car passes; the plate is published as read (now and then misread); False while the reader is off."""
        if not self.powered:
            self.ctx.count("gate_passages_lost")
            return False
        read = plate
        if self.misread_rate and self.rng.random() < self.misread_rate:
            read = misread(plate, self.rng)
            self.ctx.count("plates_misread")
        self.emit(t.GatePassage, plate=read, direction=direction)
        return True


_LOOKALIKE = {"0": "D", "D": "0", "8": "B", "B": "8", "1": "7", "7": "1", "5": "S", "S": "5", "2": "Z", "Z": "2"}


def misread(plate: str, rng: random.Random) -> str:
    """A plausible misread of a plate: one look-alike character swapped (0/D, 8/B, 1/7, 5/S, 2/Z)."""
    positions = [i for i, ch in enumerate(plate) if ch in _LOOKALIKE and i >= 2]
    if not positions:
        return plate
    i = rng.choice(positions)
    return plate[:i] + _LOOKALIKE[plate[i]] + plate[i + 1:]
