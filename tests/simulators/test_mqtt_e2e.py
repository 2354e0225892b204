"""The simulators against a real Mosquitto: online and last will, parsable messages, a command round trip."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from chargeapp import telemetry as t
from chargeapp.clock import AcceleratedClock
from simulators.layouts import DEMO_LAYOUTS
from simulators.mqtt import BrokerSettings, MqttNetwork
from simulators.simulation import Simulation
from tests.simulators.helpers import QUIET

pytestmark = [pytest.mark.e2e]
ROOT = Path(__file__).resolve().parents[2]
STATION = "hongkou-quyang"  # 8 chargers, a door counter and a gate: 10 clients
DEVICES = [f"chargers/{c.code}" for c in DEMO_LAYOUTS[STATION].chargers] + ["doors/door-room", "gates/gate"]


def online_topics() -> list[str]:
    return [f"stations/{STATION}/{d}/online" for d in DEVICES]


def retained_of(snapshot) -> dict[str, bytes]:
    """Topic -> payload of the retained messages a subscription was sent."""
    return {topic: payload for topic, payload, retain in snapshot if retain}


def test_a_simulator_process_says_online_publishes_parsable_messages_and_leaves_its_wills_when_killed(
        mosquitto, watcher_factory, tmp_path):
    live = watcher_factory(mosquitto)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CHARGEAPP_CLOCK_START", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators", "--broker", f"mqtt://127.0.0.1:{mosquitto}?protocol=3.1.1",
         "--station", STATION, "--speed", "120", "--seed", "3", "--start", "2026-11-22T12:00:00+08:00",
         "--state", str(tmp_path / "state.json"), "--progress-interval", "0"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            seen = {m[0] for m in live.snapshot() if m[1] == b"true"}
            if set(online_topics()) <= seen and len(live.snapshot()) > 40:
                break
            time.sleep(0.1)
        # A late subscriber sees every device's retained online = true.
        late = watcher_factory(mosquitto, topic=f"stations/{STATION}/+/+/online")
        online = {topic: b"true" for topic in online_topics()}
        retained = retained_of(late.until(lambda snap: retained_of(snap) == online))
        assert retained == online
    finally:
        proc.send_signal(signal.SIGKILL)  # no orderly shutdown: every socket just closes
        proc.wait(10)
    received = datetime.now(UTC) + timedelta(days=3650)  # device clocks run ahead at x120: do not judge skew
    messages = [m for m in live.snapshot() if not m[0].endswith("/online")]
    assert len(messages) > 20
    kinds = set()
    for topic, payload, _ in messages:
        kinds.add(type(t.parse_message(topic, payload, received)).__name__)
    assert {"StatusMessage", "DoorCount"} <= kinds

    after = watcher_factory(mosquitto, topic=f"stations/{STATION}/+/+/online")
    offline = {topic: b"false" for topic in online_topics()}
    assert retained_of(after.until(lambda snap: retained_of(snap) == offline)) == offline
    assert retained


def test_a_device_losing_its_network_leaves_its_will_and_delivers_the_queued_messages_late(mosquitto, watcher_factory):
    watcher = watcher_factory(mosquitto)
    start = datetime(2026, 11, 22, 12, 0, tzinfo=timezone(timedelta(hours=8)))
    clock = AcceleratedClock(start, 60.0, time.time())
    holder = {}
    network = MqttNetwork(BrokerSettings.from_url(f"mqtt://127.0.0.1:{mosquitto}"),
                          lambda topic, payload: holder["sim"].deliver(topic, payload))
    sim = Simulation([DEMO_LAYOUTS[STATION]], start=clock.now(), seed=1, sink=network, behaviour=QUIET)
    holder["sim"] = sim

    def pump(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sim.run_until(clock.now())
            network.poll(0.05)

    def pump_until(predicate, seconds: float = 15.0) -> list:
        """Keep the devices running until the watcher has seen a message matching ``predicate`` (a command reaches
        the simulated charger only while its network is polled); the matching messages, [] after ``seconds``."""
        end = time.monotonic() + seconds
        while True:
            found = [m for m in watcher.snapshot() if predicate(m)]
            if found or time.monotonic() >= end:
                return found
            pump(0.1)

    try:
        pump(1.0)
        door = sim.devices[f"{STATION}.door-room"]
        door_online = f"stations/{STATION}/doors/door-room/online"
        door.set_network(False)
        assert pump_until(lambda m: m[0] == door_online and m[1] == b"false")
        door.passage("in")
        queued_at = door.device_time()
        pump(0.5)
        count_topic = f"stations/{STATION}/doors/door-room/count"
        assert not [m for m in watcher.snapshot() if m[0] == count_topic and b'"in_total":1' in m[1]]
        door.set_network(True)
        late = pump_until(lambda m: m[0] == count_topic and b'"in_total":1' in m[1])
        assert late and json.loads(late[0][1])["ts"] == queued_at.isoformat()
        snap = watcher.snapshot()
        went_down = snap.index((door_online, b"false", False))
        came_back = snap.index((door_online, b"true", False), went_down)
        assert came_back < snap.index(late[0])  # online first, then the backlog

        # A command from the service: reserve_now on F1 is answered and the connector shows Reserved.
        command_topic, payload = t.format_command(t.ReserveNow(
            station=STATION, charger="F1", request_id="req-1", reservation_id=77, connector=1,
            id_tag="D-E2E", expiry=clock.now() + timedelta(minutes=30)))
        watcher.publish(command_topic, payload)
        answers = pump_until(lambda m: m[0].endswith("F1/command_results"))
        assert answers and json.loads(answers[0][1])["status"] == "Accepted"
        assert pump_until(lambda m: m[0].endswith("F1/status/1") and b'"Reserved"' in m[1])
    finally:
        sim.shutdown()
        network.drain(2)
        network.close()
    assert watcher.wait_for(lambda m: m[0].endswith("F1/online") and m[1] == b"false")
