"""Vendor devices end to end: a paho client publishes a vendor's own payloads to a private Mosquitto, and the real
bridge (subscribed to the registry's vendor topics) changes door state and occupancy, or dead-letters what its
adapter does not recognise. One test per adapter: Shelly Gen2, the people counter, and zigbee2mqtt (now one
adapter among three)."""
from __future__ import annotations

import json
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.services import lounge, registry
from tests.bridge.support import read_count, wait_for
from tests.bridge.test_e2e_mosquitto import handled, run_in_thread
from tests.conftest import T0

pytestmark = pytest.mark.e2e

SHELLY = "shellyplusi4-a8032ab636ec"
COUNTER = "site/liaoyuan/people-counter/PC-0042"


def publish(port: int, messages: list[tuple[str, bytes]], client_id: str) -> None:
    """Publish at QoS 1 as a vendor device would (its own topics, not the contract's) and wait for every PUBACK."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        for topic, payload in messages:
            info = c.publish(topic, payload, qos=1)
            info.wait_for_publish(timeout=10)
            assert info.is_published(), f"the broker did not acknowledge {topic}"
    finally:
        c.disconnect()
        c.loop_stop()


def test_a_shelly_gen2_input_opens_the_mapped_door_and_an_unknown_format_is_dead_lettered(app, session, station,
                                                                                          mosquitto):
    registry.map_door_contact(session, station_code="s1", address=f"{SHELLY}/input:0", adapter="shelly_gen2",
                              name="Lounge door")
    session.commit()
    bridge = run_in_thread(app, mosquitto, "e2e-shelly")
    assert f"{SHELLY}/status/input:0" in bridge.client.subscriptions
    opened = {"src": SHELLY, "dst": f"{SHELLY}/events", "method": "NotifyStatus",
              "params": {"ts": 1795329600.43, "input:0": {"id": 0, "state": False}}}
    messages = [
        (f"{SHELLY}/status/input:0", b'{"id":0,"state":true}'),  # closed
        (f"{SHELLY}/events/rpc", json.dumps(opened).encode()),  # opened
        (f"{SHELLY}/status/input:0", b'{"id":0,"state":null}'),  # a button input: not a door's format
    ]
    try:
        publish(mosquitto.port, messages, "shelly-device")
        wait_for(lambda: handled(bridge) >= len(messages), 10, "the bridge to handle the Shelly's messages")
    finally:
        bridge.stop()
    session.expire_all()
    door = session.scalar(select(m.DoorContact))
    assert door.is_open is True and door.open_since is not None
    letter = session.scalar(select(m.DeadLetter))
    assert (letter.reason, letter.topic, letter.station_code) == ("unknown_format", f"{SHELLY}/status/input:0", "s1")
    assert bridge.metrics.value("chargeapp_bridge_dead_letters_total", {"reason": "unknown_format"}) == 1
    assert bridge.metrics.value("chargeapp_bridge_messages_applied_total", {"kind": "shelly_gen2"}) == 2


def test_a_people_counters_line_totals_change_the_zones_occupancy_and_an_unknown_format_is_dead_lettered(
        app, session, station, mosquitto):
    registry.map_counting_line(session, station_code="s1", sensor_code="D1", topic=COUNTER, line="entrance")
    session.commit()
    bridge = run_in_thread(app, mosquitto, "e2e-counter")
    assert COUNTER in bridge.client.subscriptions
    base = T0 - timedelta(minutes=20)

    def report(minutes, in_total, out_total) -> tuple[str, bytes]:
        body = {"device_id": "PC-0042", "time": (base + timedelta(minutes=minutes)).isoformat(),
                "lines": [{"line": "entrance", "in": in_total, "out": out_total},
                          {"line": "staff", "in": 40, "out": 40}]}
        return COUNTER, json.dumps(body).encode()

    messages = [
        report(0, 5120, 5100),  # baseline: nobody moves
        report(1, 5126, 5101),  # 6 in, 1 out
        report(1, 5126, 5101),  # the same report again (QoS 1 may deliver twice): stale
        report(6, 2, 0),  # totals fell: the counter rebooted, 2 more in
        (COUNTER, b'{"device_id":"PC-0042","time":"2026-11-22T14:00:00+08:00","occupancy":7}'),
    ]
    try:
        publish(mosquitto.port, messages, "people-counter")
        wait_for(lambda: handled(bridge) >= len(messages), 10, "the bridge to handle the counter's reports")
        wait_for(lambda: read_count(app, "SELECT count(*) FROM dead_letters") == 1, 15, "the dead letter")
    finally:
        bridge.stop()
    session.expire_all()
    hall = next(z for z in lounge.zone_view(session, station, T0) if z["code"] == "hall")
    assert hall["count"] == 6 - 1 + 2
    sensor = session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D1"))
    assert (sensor.boot, sensor.seq, sensor.in_total, sensor.out_total) == (2, 1, 2, 0)
    letter = session.scalar(select(m.DeadLetter))
    assert (letter.reason, letter.topic, letter.station_code) == ("unknown_format", COUNTER, "s1")
    assert bridge.metrics.value("chargeapp_bridge_messages_ignored_total", {"why": "stale"}) == 1


def test_a_zigbee2mqtt_contact_mapped_inverted_reads_through_its_adapter_and_an_unmapped_name_is_unknown(
        app, session, station, mosquitto):
    registry.map_door_contact(session, station_code="s1", address="tea_door", inverted=True)
    session.commit()
    bridge = run_in_thread(app, mosquitto, "e2e-zigbee")
    messages = [("zigbee2mqtt/tea_door", b'{"contact": true, "battery": 88, "linkquality": 140}'),  # inverted: open
                ("zigbee2mqtt/garage_door", b'{"contact": false}'),
                ("zigbee2mqtt/tea_door", b'{"temperature": 21.5, "humidity": 40}')]
    try:
        publish(mosquitto.port, messages, "zigbee2mqtt-gateway")
        wait_for(lambda: handled(bridge) >= len(messages), 10, "the bridge to handle the zigbee2mqtt messages")
    finally:
        bridge.stop()
    session.expire_all()
    door = session.scalar(select(m.DoorContact))
    assert (door.is_open, door.battery, door.linkquality) == (True, 88, 140)
    assert session.execute(select(m.DeadLetter.reason, m.DeadLetter.topic).order_by(m.DeadLetter.id)).all() == [
        ("unknown_device", "zigbee2mqtt/garage_door"), ("unknown_format", "zigbee2mqtt/tea_door")]
