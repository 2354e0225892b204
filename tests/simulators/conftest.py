"""End-to-end fixtures for the simulators: a real Mosquitto on a free loopback port, and a watching client."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mqtt_bridge.measure import MOSQUITTO, Mosquitto


@pytest.fixture
def mosquitto(tmp_path):
    """A throw-away Mosquitto (anonymous, no persistence) on a free loopback port; yields the port. The bridge
    tests' broker: ready when it listens itself, not when anything accepts on the port (see measure.listens)."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (apt-get install mosquitto)", pytrace=False)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    try:
        yield broker.port
    finally:
        broker.stop()


class Watcher:
    """A paho subscriber that records (topic, payload, retain) of everything under ``stations/#``."""

    def __init__(self, port: int, topic: str = "stations/#", client_id: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"watch-{time.monotonic_ns()}",
                                  protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()
        subscribed.wait(15)

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate, timeout: float = 15.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = [m for m in self.snapshot() if predicate(m)]
            if found:
                return found
            time.sleep(0.05)
        return []

    def until(self, check, timeout: float = 15.0) -> list[tuple[str, bytes, bool]]:
        """The snapshot once ``check(snapshot)`` holds, or the last one after ``timeout`` (the caller asserts on it)."""
        end = time.monotonic() + timeout
        while True:
            snap = self.snapshot()
            if check(snap) or time.monotonic() >= end:
                return snap
            time.sleep(0.05)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def watcher_factory():
    made = []

    def make(port: int, **kw) -> Watcher:
        w = Watcher(port, **kw)
        made.append(w)
        return w
    yield make
    for w in made:
        w.close()
