"""One scripted day at station s1, end to end: devices -> Mosquitto -> bridge -> database -> HTTP API.

The devices are one paho client that publishes contract messages (built with
``chargeapp.telemetry`` through ``tests.bridge.wire``) and receives the chargers'
commands; a private Mosquitto on loopback carries them; the real bridge runs
in-process (as in ``tests/bridge/test_e2e_mosquitto.py``), applies them and runs
the periodic work and the command outbox; drivers read the results through the
HTTP API with their own tokens. Time is the test's FixedClock, moved forward by
the script; every device ``ts`` is the scripted time at which it is sent.

The day (2026-11-22, Asia/Shanghai), and the figures asserted, worked out by hand
from docs/rules.md and the station's default tariff (registry.TariffSpec: flat
11:00-18:00 at 6655, service 8000, both per kWh in 1/10,000 CNY; parking 500 fen
per started 30 min, daily cap 6000 fen; 15 min of Charging earns 120 min free):

- 14:00 A books 15:00 (any fast charger: F1), B books 15:30 on F2, C just parks.
- 14:05-14:35 lounge: D1 (street door into the hall) reports cumulative totals
  1/0, 3/0, 3/1 (seq 1-3 of boot 1: its first reading is seq 1, so it counts),
  seq 3 is delivered twice, then D1 reboots (boot 2, seq 1: 1/0). Hall = 1 + 2 - 1
  + 0 + 1 = 3. D2 (into the tea room, out of the hall) reports 1/0: hall 2, tea 1.
- 14:30 C's car in; 14:40 A's car in, with a truncated JSON on G-in's passage
  topic and a passage from an unregistered gate G-9 just before it: both are
  dead letters (not_json, unknown_device); A's passage still applies.
- 14:50 the bridge's periodic work holds F1 for A: reserve_now (reservation_id =
  A's booking, A's app id tag, expiry 15:10) reaches the charger, which answers
  Accepted and reports Reserved; A's booking is "held".
- 14:54 Preparing, 14:55 start (A's tag, the reservation) and Charging: A is
  checked in. Meter 15:00/15:05/15:10; 15:15 stop and Finishing; 15:20 Available.
  30,000 Wh, all in the flat band: energy 6655 x 30,000 / 100,000 = 1996.5 fen ->
  1997 (half-up; half-even or a float would give 1996); service 8000 x 30,000 /
  100,000 = 2400 fen; idle 15:15-15:20 = 5 min, inside the 10 min grace: 0.
  Total 4397 fen.
- 15:20 F2 is held for B (reserve_now, Accepted, Reserved). B's window closes at
  15:40:00 inclusive: still held at 15:40:00, a no-show at 15:40:01 with a
  cancel_reservation to F2. B's notifications: booked, held, no_show.
- 16:30 A's car out. Stay 14:40-16:30 = 110 min with 20 min of Charging
  (14:55-15:15): qualified, free until 16:40, 0 blocks: 0 fen. The receipt waits
  for the 10 min settling delay: none at 16:39:59, issued at 16:40:00.
- 19:30 C's car out. Stay 14:30-19:30, no charging: blocks from entry, 300 min /
  30 = 10 started blocks (the one starting at 19:30 is not started) x 500 = 5000
  fen, under the 6000 daily cap (not capped). Issued at 19:40.
"""
from __future__ import annotations

import queue
import threading
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from chargeapp import telemetry as t
from chargeapp.db import models as m
from tests.bridge.conftest import mosquitto  # noqa: F401  (fixture: a private Mosquitto on 127.0.0.1)
from tests.bridge.support import read_count, wait_for
from tests.bridge.test_e2e_mosquitto import handled, run_in_thread
from tests.bridge.wire import charger, gate, sensor
from tests.integration.test_api_driver import register

pytestmark = pytest.mark.e2e

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
WAIT = 30.0  # seconds: the bound of every wait (a condition wait ends when it holds; 5 s failed at load 13 on 2 cores)

PLATE_A, PLATE_B, PLATE_C = "沪A10001", "沪B20002", "沪C30003"
TX = 4711
METER_START = 5_120_000  # Wh, F1's cumulative register at the start
ENERGY_WH = 30_000
ENERGY_FEN = 1997  # 6655 * 30,000 / 100,000 = 1996.5 -> half-up
SERVICE_FEN = 2400  # 8000 * 30,000 / 100,000
C_BLOCKS, C_PARKING_FEN = 10, 5000  # 14:30-19:30 unqualified: 10 started blocks x 500, under the 6000 cap


def local(hh: int, mm: int, ss: int = 0) -> datetime:
    """A wall time of the scripted day in Shanghai, as a UTC instant."""
    return datetime(2026, 11, 22, hh, mm, ss, tzinfo=SHANGHAI).astimezone(UTC)


def iso(hh: int, mm: int, ss: int = 0) -> str:
    """How the API writes that time (station time, with its offset)."""
    return datetime(2026, 11, 22, hh, mm, ss, tzinfo=SHANGHAI).isoformat()


def poll(fetch, ok, what: str, timeout: float = WAIT):
    """``fetch()`` until ``ok(value)`` holds, within ``timeout``; the value, or a failure showing the last one."""
    last = []

    def check() -> bool:
        last[:] = [fetch()]
        return ok(last[0])

    try:
        wait_for(check, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last[0]!r}") from None
    return last[0]


class Http:
    """The Flask test client, ending the database session after every request as a server's request teardown would.

    The ``app`` fixture keeps an application context pushed, so test-client requests
    share its session instead of getting their own; left open, a read's transaction
    (BEGIN IMMEDIATE on SQLite) would hold the write lock the bridge is waiting for.
    """

    def __init__(self, client, session):
        self.client, self.session = client, session

    def _call(self, method: str, path: str, **kwargs):
        try:
            return self.client.open(path, method=method, **kwargs)
        finally:
            self.session.remove()

    def get(self, path: str, **kwargs):
        return self._call("GET", path, **kwargs)

    def post(self, path: str, **kwargs):
        return self._call("POST", path, **kwargs)


class Devices:
    """The station's devices on one paho connection: publish their messages, receive the chargers' commands."""

    def __init__(self, port: int, chargers=("F1", "F2", "F3")):
        self.commands: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-day-devices")
        self.client.on_connect = lambda c, u, flags, rc, props: c.subscribe(
            [(t.command_subscription("s1", code), t.QOS) for code in chargers])
        self.client.on_subscribe = lambda c, u, mid, codes, props: subscribed.set()
        self.client.on_message = lambda c, u, msg: self.commands.put((msg.topic, bytes(msg.payload)))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(WAIT), "the devices did not subscribe to their command topics"

    def publish(self, items) -> int:
        """Publish messages or raw (topic, payload) pairs at QoS 1, retained as the contract says; wait for PUBACKs."""
        infos = []
        for item in items:
            topic, payload = item if isinstance(item, tuple) else t.format_message(item)
            infos.append(self.client.publish(topic, payload, qos=t.QOS, retain=t.parse_topic(topic).retained))
        for info in infos:
            info.wait_for_publish(WAIT)
            assert info.is_published(), "the broker did not acknowledge a publish"
        return len(infos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Day:
    """The script's hands: move the clock, send and wait until applied, tick, take commands, read the API."""

    def __init__(self, clock, bridge, devices: Devices, client):
        self.clock, self.bridge, self.devices, self.client = clock, bridge, devices, client
        self.sent = 0

    def at(self, hh: int, mm: int, ss: int = 0) -> datetime:
        now = local(hh, mm, ss)
        assert now >= self.clock.now(), "the script only moves forward"
        self.clock.set(now)
        return now

    def send(self, *items) -> None:
        """Publish, then wait until the bridge has committed every message sent so far."""
        self.sent += self.devices.publish(items)
        wait_for(lambda: handled(self.bridge) >= self.sent, WAIT, f"the bridge to handle {self.sent} messages")

    def periodic_runs(self) -> float:
        return self.bridge.metrics.value("chargeapp_bridge_periodic_runs_total", {"result": "ran"})

    def tick(self) -> None:
        """Wait for two periodic runs: at least one of them started after the clock last moved."""
        start = self.periodic_runs()
        wait_for(lambda: self.periodic_runs() >= start + 2, WAIT, "two periodic runs")

    def command(self, charger_code: str, kind: type) -> t.Command:
        """The next command a charger received (bounded wait), parsed as the charger would."""
        try:
            topic, payload = self.devices.commands.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no {kind.__name__} reached {charger_code} within {WAIT} s") from None
        command = t.parse_message(topic, payload, self.clock.now())
        assert isinstance(command, kind) and command.charger == charger_code, (topic, payload)
        return command

    def get(self, path: str, who: dict | None = None):
        r = self.client.get(path, headers=who)
        assert r.status_code == 200, (path, r.status_code, r.json)
        return r.json

    def answered(self, request_id: str) -> None:
        wait_for(lambda: read_count(self.bridge.worker.app, "SELECT count(*) FROM command_outbox WHERE request_id = "
                                    f"'{request_id}' AND status = 'answered' AND result = 'Accepted'") == 1,
                 WAIT, f"the answer to {request_id} to be recorded")

    def zones(self) -> dict[str, int]:
        return {z["code"]: z["count"] for z in self.get("/api/v1/stations/s1")["zones"]}


def test_a_scripted_day_of_bookings_charging_parking_and_the_lounge(app, session, clock, station, client,
                                                                     mosquitto):  # noqa: F811
    assert clock.now() == local(14, 0)
    # -- 14:00: three drivers, two bookings ----------------------------------------------------------
    client = Http(client, session)
    a, b, c = (register(client, f"{who}@example.com", plate=plate)
               for who, plate in (("a", PLATE_A), ("b", PLATE_B), ("c", PLATE_C)))
    tag_a = client.get("/api/v1/auth/me", headers=a).json["id_tags"][0]
    r = client.post("/api/v1/bookings", headers=a, json={"station": "s1", "slot_start": iso(15, 0)})
    assert r.status_code == 201, r.json
    booking_a = r.json
    assert (booking_a["charger"], booking_a["status"], booking_a["checkin_deadline"]) == ("F1", "booked", iso(15, 10))
    r = client.post("/api/v1/bookings", headers=b, json={"station": "s1", "slot_start": iso(15, 30), "charger": "F2"})
    assert r.status_code == 201, r.json
    booking_b = r.json
    assert (booking_b["charger"], booking_b["status"], booking_b["checkin_deadline"]) == ("F2", "booked", iso(15, 40))

    f1, f2, f3 = charger("F1"), charger("F2"), charger("F3")
    d1, d2, g_in, g_out = sensor("D1"), sensor("D2"), gate("G-in"), gate("G-out")
    devices = Devices(mosquitto.port)
    bridge = run_in_thread(app, mosquitto, "e2e-day", periodic_seconds=0.1, outbox_seconds=0.05)
    day = Day(clock, bridge, devices, client)
    try:
        day.send(*(d.online(True) for d in (f1, f2, f3, d1, d2, g_in, g_out)))

        # -- 14:05-14:35: the lounge, and C's car in ------------------------------------------------------
        day.send(d1.count(1, 0, ts=day.at(14, 5)))
        day.send(d1.count(3, 0, ts=day.at(14, 10)))
        twice = t.format_message(d1.count(3, 1, ts=day.at(14, 20)))
        day.send(twice, twice)  # the same message delivered twice: applied once
        d1.reboot()
        day.send(d1.count(1, 0, ts=day.at(14, 25)))  # boot 2 counts from zero: 1 more in
        assert day.zones() == {"hall": 3, "tea": 0}
        day.send(g_in.passage(PLATE_C, "in", ts=day.at(14, 30)))
        day.send(d2.count(1, 0, ts=day.at(14, 35)))  # one person from the hall into the tea room
        assert day.zones() == {"hall": 2, "tea": 1}

        # -- 14:40: A's car in, between bad input ------------------------------------------------------
        now = day.at(14, 40)
        day.send((t.gate_passage_topic("s1", "G-in"), b'{"ts": "2026-11-22T14:40:00+08:00", "plate": '),
                 gate("G-9").passage(PLATE_A, "in", ts=now),
                 g_in.passage(PLATE_A, "in", ts=now))
        [park_a] = day.get("/api/v1/me/parking", a)
        assert (park_a["plate"], park_a["entry_at"], park_a["qualified"]) == (PLATE_A, iso(14, 40), False)

        # -- 14:50: the periodic work holds F1 for A --------------------------------------------------------
        now = day.at(14, 50)
        reserve = day.command("F1", t.ReserveNow)
        assert (reserve.reservation_id, reserve.connector, reserve.id_tag, reserve.expiry) == (
            booking_a["id"], 1, tag_a, local(15, 10))
        day.send(f1.result(reserve.request_id, "reserve_now", "Accepted", ts=now), f1.status("Reserved", ts=now))
        day.answered(reserve.request_id)
        held = day.get(f"/api/v1/bookings/{booking_a['id']}", a)
        assert (held["status"], held["charger"], held["held_at"]) == ("held", "F1", iso(14, 50))

        # -- 14:54-15:20: A charges 20 min on F1 ------------------------------------------------------------
        day.send(f1.status("Preparing", ts=day.at(14, 54)))
        now = day.at(14, 55)
        day.send(f1.start(TX, meter_wh=METER_START, id_tag=tag_a, reservation_id=booking_a["id"], ts=now),
                 f1.status("Charging", ts=now))
        checked = day.get(f"/api/v1/bookings/{booking_a['id']}", a)
        assert (checked["status"], checked["charger"], checked["checked_in_at"]) == ("checked_in", "F1", iso(14, 55))
        for minute, wh in ((0, 7_500), (5, 15_000), (10, 22_500)):
            day.send(f1.meter(TX, METER_START + wh, power_w=90_000, soc=40 + minute, ts=day.at(15, minute)))
        now = day.at(15, 15)
        day.send(f1.stop(TX, meter_wh=METER_START + ENERGY_WH, ts=now), f1.status("Finishing", ts=now))
        [park_a] = day.get("/api/v1/me/parking", a)
        assert (park_a["charging_seconds"], park_a["qualified"], park_a["free_until"]) == (1200, True, iso(16, 40))
        day.tick()
        assert day.get("/api/v1/me/receipts", a) == []  # a fast charger's receipt waits for Available
        now = day.at(15, 20)
        day.send(f1.status("Available", ts=now))

        # -- 15:20: A's charging receipt; F2 held for B --------------------------------------------------
        [receipt] = poll(lambda: day.get("/api/v1/me/receipts", a), lambda rows: rows, "A's charging receipt")
        assert receipt["kind"] == "charging" and receipt["issued_at"] == iso(15, 20)
        assert (receipt["energy_wh"], receipt["energy_fen"], receipt["service_fen"], receipt["idle_fen"],
                receipt["parking_fen"], receipt["total_fen"]) == (
            ENERGY_WH, ENERGY_FEN, SERVICE_FEN, 0, 0, ENERGY_FEN + SERVICE_FEN)
        assert receipt["details"]["wh_by_band"] == {"peak": 0, "flat": ENERGY_WH, "valley": 0}
        idle = receipt["details"]["idle"]
        assert (idle["status"], idle["idle_seconds"], idle["billed_minutes"]) == ("billed", 300, 0)
        assert receipt["explanation"] == (
            "Charger F1 from 14:55 to 15:15: 30.000 kWh. Energy: 30.000 kWh flat at 0.6655 CNY/kWh: 19.97 CNY. "
            "Service: 30.000 kWh at 0.8000 CNY/kWh: 24.00 CNY. Idle 5 min from 15:15 until 15:20 (10 min free): "
            "no idle fee. Total 43.97 CNY.")
        [session_a] = day.get("/api/v1/me/sessions", a)
        assert (session_a["charger"], session_a["transaction_id"], session_a["energy_wh"], session_a["closed_by"]) == (
            "F1", TX, ENERGY_WH, "stop")

        reserve_b = day.command("F2", t.ReserveNow)
        assert (reserve_b.reservation_id, reserve_b.expiry) == (booking_b["id"], local(15, 40))
        day.send(f2.result(reserve_b.request_id, "reserve_now", "Accepted", ts=now), f2.status("Reserved", ts=now))
        day.answered(reserve_b.request_id)
        assert day.get(f"/api/v1/bookings/{booking_b['id']}", b)["status"] == "held"

        # -- 15:40: B never comes -------------------------------------------------------------------------
        day.at(15, 40)
        day.tick()
        assert day.get(f"/api/v1/bookings/{booking_b['id']}", b)["status"] == "held"  # the deadline is inclusive
        now = day.at(15, 40, 1)
        no_show = poll(lambda: day.get(f"/api/v1/bookings/{booking_b['id']}", b), lambda x: x["status"] == "no_show",
                       "B's no-show")
        assert no_show["no_show_at"] == iso(15, 40, 1)
        cancel = day.command("F2", t.CancelReservation)
        assert cancel.reservation_id == booking_b["id"]
        day.send(f2.result(cancel.request_id, "cancel_reservation", "Accepted", ts=now), f2.status("Available", ts=now))
        day.answered(cancel.request_id)
        assert [n["kind"] for n in day.get("/api/v1/me/notifications", b)] == ["no_show", "held", "booked"]
        assert [n["kind"] for n in day.get("/api/v1/me/notifications", a)] == ["checked_in", "held", "booked"]

        # -- 16:30: A leaves; the parking receipt after the settling delay -------------------------------
        day.send(g_out.passage(PLATE_A, "out", ts=day.at(16, 30)))
        assert day.get("/api/v1/me/parking", a) == []
        day.at(16, 39, 59)
        day.tick()
        assert [x["kind"] for x in day.get("/api/v1/me/receipts", a)] == ["charging"]
        day.at(16, 40)
        parking_a = poll(lambda: day.get("/api/v1/me/receipts", a), lambda rows: len(rows) == 2,
                         "A's parking receipt")[0]
        assert (parking_a["kind"], parking_a["issued_at"], parking_a["parking_fen"], parking_a["total_fen"]) == (
            "parking", iso(16, 40), 0, 0)
        details = parking_a["details"]
        assert (details["charging_seconds"], details["qualified"], details["blocks"], details["exit_at"]) == (
            1200, True, 0, local(16, 30).isoformat())
        assert parking_a["explanation"] == (
            "Charged 20 min (15 min needed): first 120 min free, until 16:40. Left within the free time: 0.00 CNY.")

        # -- 19:30: C leaves after 5 hours without charging -----------------------------------------------
        day.send(g_out.passage(PLATE_C, "out", ts=day.at(19, 30)))
        day.at(19, 40)
        [parking_c] = poll(lambda: day.get("/api/v1/me/receipts", c), lambda rows: rows, "C's parking receipt")
        assert (parking_c["kind"], parking_c["parking_fen"], parking_c["total_fen"]) == (
            "parking", C_PARKING_FEN, C_PARKING_FEN)
        assert parking_c["details"]["days"] == [
            {"day": "2026-11-22", "blocks": C_BLOCKS, "fen": C_PARKING_FEN, "capped": False}]
        assert parking_c["explanation"] == (
            "Charged 0 min (15 min needed): no free parking. 10 blocks of 30 min from entry at 14:30: 50.00 CNY.")
        assert day.get("/api/v1/me/receipts", b) == []

        # -- the end of the day, as the API shows it ---------------------------------------------------
        detail = day.get("/api/v1/stations/s1")
        assert {ch["code"]: ch["status"] for ch in detail["chargers"]} == {
            "F1": "Available", "F2": "Available", "F3": "Available", "S01": "Available", "S02": "Available"}
        assert {z["code"]: (z["count"], z["uncertain"]) for z in detail["zones"]} == {
            "hall": (2, False), "tea": (1, False)}
        assert [x["status"] for x in day.get("/api/v1/bookings", a)] == ["checked_in"]
        assert [x["status"] for x in day.get("/api/v1/bookings", b)] == ["no_show"]
    finally:
        bridge.stop()
        devices.close()

    metric = bridge.metrics.value
    assert metric("chargeapp_bridge_duplicates_total", {"retained": "false"}) == 1
    assert metric("chargeapp_bridge_dead_letters_total", {"reason": "not_json"}) == 1
    assert metric("chargeapp_bridge_dead_letters_total", {"reason": "unknown_device"}) == 1
    letters = sorted((d.reason, d.topic) for d in session.scalars(select(m.DeadLetter)))
    assert letters == [("not_json", t.gate_passage_topic("s1", "G-in")),
                       ("unknown_device", t.gate_passage_topic("s1", "G-9"))]
    assert session.scalar(select(func.sum(m.DeviceSequence.missing))) == 0
    assert sorted(session.execute(select(m.CommandOutbox.name, m.CommandOutbox.status, m.CommandOutbox.attempts))) == [
        ("cancel_reservation", "answered", 1), ("reserve_now", "answered", 1), ("reserve_now", "answered", 1)]
    assert session.scalar(select(func.count()).select_from(m.ParkingStay)) == 2  # A and C; G-9's passage left none
