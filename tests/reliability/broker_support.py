"""Helpers of the broker and bridge fault tests (issue 7): the shipped Mosquitto with generated users, the bridge
in a thread, a fleet of devices each logged in as itself, a TCP link that can go silent, and database reads.

Everything runs on 127.0.0.1 against a real Mosquitto started by the test; every wait is bounded.
"""
from __future__ import annotations

import select
import socket
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from chargeapp import telemetry as t
from mqtt_bridge.bridge import Bridge, BridgeOptions
from mqtt_bridge.worker import WorkerOptions
from tests.bridge.support import read_count, wait_for  # noqa: F401  (re-exported for the tests)
from tests.deploy.conftest import BRIDGE_USERS, MONITOR_USER, ZIGBEE_USER, run_credentials
from tests.deploy.support import MOSQUITTO
from tests.deploy.support import Mosquitto as ShippedMosquitto

__all__ = ["BRIDGE_USERS", "ShippedMosquitto", "read_count", "wait_for"]


@pytest.fixture
def database_url(tmp_path):
    """SQLite only: these tests are about the broker and the bridge (the database faults have their own tests)."""
    return f"sqlite:///{tmp_path}/test.db"


@pytest.fixture
def credentials(app, station, tmp_path):
    """Passwords and ACL generated from the station fixture's registry, as `chargeapp mqtt-credentials` writes them."""
    args = ([a for u in BRIDGE_USERS for a in ("--bridge-user", u)] + ["--monitor-user", MONITOR_USER]
            + ["--zigbee2mqtt-user", ZIGBEE_USER])
    return run_credentials(app, tmp_path / "creds", *args)


@pytest.fixture
def shipped_broker(credentials, tmp_path):
    """Mosquitto with deploy/mosquitto/mosquitto.conf (ports and paths swapped only) on a free loopback port."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (Debian: apt-get install mosquitto)", pytrace=False)
    broker = ShippedMosquitto(tmp_path / "broker", credentials.passwd, credentials.acl).start()
    yield broker
    broker.stop()


@pytest.fixture
def plain_mosquitto(tmp_path):
    """A private Mosquitto without ACL (anonymous, no persistence), like a broker in front of a gateway that speaks
    for many devices: whatever a client publishes reaches the bridge."""
    from mqtt_bridge.measure import Mosquitto

    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (Debian: apt-get install mosquitto)", pytrace=False)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


def start_bridge(app, port: int, user: str | None = None, password: str | None = None, **worker) -> Bridge:
    """The bridge in this process (the app's fixed clock), MQTT 5, its own persistent session; waits until subscribed."""
    auth = f"{user}:{password}@" if user else "bridge@"
    client_id = "" if user else "&client_id=reliability-bridge"
    options = BridgeOptions(mqtt_url=f"mqtt://{auth}127.0.0.1:{port}?protocol=5{client_id}", metrics_port=0,
                            worker=WorkerOptions(**{"periodic_seconds": 0, "outbox_seconds": 0, **worker}))
    bridge = Bridge(app, options).start()
    if not bridge.client.wait_subscribed(15):
        bridge.stop()
        raise AssertionError("the bridge did not subscribe within 15 s")
    return bridge


def handled(bridge: Bridge) -> int:
    """Messages the bridge has committed (applied, duplicate, ignored or dead-lettered)."""
    return int(bridge.metrics.value("chargeapp_bridge_batch_size_sum"))


def metric(bridge: Bridge, name: str, **labels) -> float:
    return bridge.metrics.value(f"chargeapp_bridge_{name}", labels or None)


def wait_until_idle(bridge: Bridge, timeout: float, quiet: float = 1.0) -> None:
    """Wait until the bridge has handled nothing new for ``quiet`` seconds and its queue is empty."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_handled = handled(bridge)
        if now_handled != last or bridge.worker.queue.qsize():
            last, since = now_handled, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.05)
    raise AssertionError(f"the bridge was still busy after {timeout} s ({handled(bridge)} handled)")


def username_of(topic: str) -> str:
    ref = t.parse_topic(topic)
    return f"{ref.station}.{ref.device_id}"


class Fleet:
    """One paho client per device, logged in as the device (``station.device``), as the contract says: MQTT 3.1.1,
    persistent session, 30 s keepalive, last will ``false`` retained on its online topic. paho keeps what it could
    not send (or got no PUBACK for) and sends it again after it reconnects, as a device's MQTT stack does."""

    def __init__(self, port: int, passwords: dict[str, str], usernames, *, keepalive: int = t.KEEPALIVE_SECONDS):
        self.clients: dict[str, mqtt.Client] = {}
        self.infos: list = []
        for username in sorted(set(usernames)):
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=username, protocol=mqtt.MQTTv311,
                            clean_session=False, reconnect_on_failure=True)
            c.username_pw_set(username, passwords[username])
            c.max_inflight_messages_set(100)
            c.max_queued_messages_set(0)
            c.reconnect_delay_set(1, 2)
            c.connect("127.0.0.1", port, keepalive=keepalive)
            c.loop_start()
            self.clients[username] = c
        if not wait_for_all(lambda: all(c.is_connected() for c in self.clients.values()), 10):
            self.close()
            raise AssertionError("not every device connected within 10 s")

    def publish(self, topic: str, payload: bytes) -> None:
        client = self.clients[username_of(topic)]
        self.infos.append(client.publish(topic, payload, qos=1, retain=t.parse_topic(topic).retained))

    def publish_paced(self, messages, rate: float, on_count: dict | None = None) -> None:
        """Publish in order at about ``rate`` messages per second; ``on_count[n]()`` runs after the n-th."""
        started = time.monotonic()
        for n, (topic, payload) in enumerate(messages, 1):
            self.publish(topic, payload)
            if on_count and n in on_count:
                on_count[n]()
            ahead = started + n / rate - time.monotonic()
            if ahead > 0.002:
                time.sleep(ahead)

    def acknowledged(self) -> int:
        # Not is_published(): it raises for a publish made while disconnected (rc NO_CONN), although paho keeps
        # that message and sends it after the reconnect; _published is set by its PUBACK either way.
        return sum(1 for info in self.infos if info._published)

    def wait_acknowledged(self, timeout: float) -> bool:
        """True once the broker acknowledged every publish so far (paho resends unacknowledged ones on reconnect)."""
        return wait_for_all(lambda: self.acknowledged() == len(self.infos), timeout)

    def close(self) -> None:
        for c in self.clients.values():
            try:
                c.disconnect()
            finally:
                c.loop_stop()


def wait_for_all(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def per_device(messages) -> dict[str, list[int]]:
    """The seqs each device (the bridge's device key) published, from the wire messages."""
    from mqtt_bridge.handler import device_key

    seqs: dict[str, list[int]] = defaultdict(list)
    for topic, payload in messages:
        msg = t.parse_message(topic, payload, _FAR_FUTURE)
        if hasattr(msg, "seq"):
            seqs[device_key(msg.device)].append(msg.seq)
    return seqs


_FAR_FUTURE = datetime(2100, 1, 1, tzinfo=timezone.utc)  # parse without judging skew


class SilentLink:
    """A TCP relay between a device and the broker that can go silent: ``cut()`` stops relaying in both directions
    but keeps both sockets open, as when a charger loses power or its cable: no DISCONNECT, no FIN, no RST.
    Only the broker's keepalive check can tell that the device is gone."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self.port = self._listener.getsockname()[1]
        self._silent = threading.Event()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="silent-link", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                device, _ = self._listener.accept()
            except OSError:
                return
            broker = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [device, broker]
            threading.Thread(target=self._relay, args=(device, broker), daemon=True).start()

    def _relay(self, a: socket.socket, b: socket.socket) -> None:
        while not self._silent.is_set() and not self._closed.is_set():
            try:
                ready, _, _ = select.select([a, b], [], [], 0.02)
                for s in ready:
                    if self._silent.is_set():
                        return
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
            except OSError:
                return

    def cut(self) -> None:
        self._silent.set()

    def close(self) -> None:
        self._closed.set()
        self._silent.set()
        for s in [self._listener, *self._sockets]:
            try:
                s.close()
            except OSError:
                pass
