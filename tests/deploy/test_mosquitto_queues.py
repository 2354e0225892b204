"""The shipped queue and in-flight limits, against a real Mosquitto: a burst to an offline bridge session
is kept whole (Mosquitto's default would drop all but 1,000 after acknowledging them), and a bridge that
acknowledges only after its batch commits gets a whole batch in flight."""
from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from chargeapp import telemetry as t
from tests.deploy.conftest import BRIDGE_USERS
from tests.deploy.support import Mosquitto, connect, shipped_settings, wait_for

pytestmark = pytest.mark.e2e

BURST = 5000


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path}/test.db"


def burst_to_offline_bridge(broker, credentials, expect: int = BURST) -> tuple[int, int]:
    """(acknowledged by the broker, delivered to the bridge's session when it comes back); waits for
    ``expect`` deliveries (at most 10 s), then half a second for any more."""
    user = BRIDGE_USERS[0]
    bridge = connect(broker, user, credentials.passwords[user], protocol="5", clean=False)
    bridge.subscribe(*t.BRIDGE_SUBSCRIPTIONS)
    bridge.close()
    charger = connect(broker, "s1.F1", credentials.passwords["s1.F1"])
    topic = t.meter_topic("s1", "F1")
    infos = [charger.paho.publish(topic, b'{"seq": %d}' % i, qos=1) for i in range(BURST)]
    for info in infos:
        info.wait_for_publish(10)
    acked = sum(info.is_published() for info in infos)
    charger.close()
    bridge = connect(broker, user, credentials.passwords[user], protocol="5", clean=False)
    wait_for(lambda: bridge.messages.qsize() >= expect, 10)
    wait_for(lambda: False, 0.5)
    delivered = len(bridge.topics())
    bridge.close()
    return acked, delivered


def test_a_burst_to_an_offline_bridge_is_kept_whole(broker, credentials):
    assert burst_to_offline_bridge(broker, credentials) == (BURST, BURST)


def test_control_mosquittos_default_queue_drops_acknowledged_messages(mosquitto_binary, credentials, tmp_path):
    broker = Mosquitto(tmp_path / "default-queue", credentials.passwd, credentials.acl,
                       overrides={"max_queued_messages": "1000"}).start()
    try:
        acked, delivered = burst_to_offline_bridge(broker, credentials, expect=1000)
    finally:
        broker.stop()
    assert acked == BURST and delivered == 1000


def test_a_non_acknowledging_311_subscriber_gets_the_shipped_in_flight_window(broker, credentials):
    """The bridge acknowledges after commit: the broker must let a whole batch (and the next) be in flight."""
    window = int(dict(shipped_settings())["max_inflight_messages"])
    got = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311, manual_ack=True)
    client.username_pw_set(BRIDGE_USERS[1], credentials.passwords[BRIDGE_USERS[1]])
    client.on_message = lambda c, u, msg: got.append(msg.mid)
    client.on_subscribe = lambda *a: done.set()
    client.connect("127.0.0.1", broker.port, keepalive=30)
    client.loop_start()
    try:
        client.subscribe(t.meter_topic("s1", "F1"), qos=1)
        assert done.wait(15)
        charger = connect(broker, "s1.F1", credentials.passwords["s1.F1"])
        infos = [charger.paho.publish(t.meter_topic("s1", "F1"), b"{}", qos=1) for _ in range(window + 100)]
        for info in infos:
            info.wait_for_publish(10)
        assert wait_for(lambda: len(got) >= window, 15)
        wait_for(lambda: False, 0.3)
        assert len(got) == window  # and no more until acknowledged
        charger.close()
    finally:
        client.disconnect()
        client.loop_stop()
