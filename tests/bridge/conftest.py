"""Brokers for the bridge's end-to-end tests: a private Mosquitto and the embedded amqtt, loopback only."""
from __future__ import annotations

from pathlib import Path

import pytest

from mqtt_bridge.measure import MOSQUITTO, Mosquitto, free_port
from tests.bridge.support import EmbeddedAmqtt


@pytest.fixture
def mosquitto(tmp_path):
    """Mosquitto on a free 127.0.0.1 port (anonymous, no persistence); stopped at teardown."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (Debian: apt-get install mosquitto)", pytrace=False)
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


@pytest.fixture
def amqtt_broker():
    """The embedded amqtt on a free 127.0.0.1 port; clients must give a username (see EmbeddedAmqtt)."""
    broker = EmbeddedAmqtt(free_port(), allow_anonymous=False).start()
    yield broker
    broker.stop()
