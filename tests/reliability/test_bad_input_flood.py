"""Issue 7: 10,000 malformed, oversized, wrong-topic and unknown-device messages mixed into valid traffic,
through a real Mosquitto: the bridge stays up, dead-letters and counts each one, and applies every valid one.

The broker here is a private Mosquitto without ACL (anonymous, like a broker in front of a gateway that
speaks for many devices). With the shipped ACL, wrong-topic and unknown-device publishes never reach the
bridge at all (tests/deploy/test_mosquitto_acl.py); the bridge must survive them anyway.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from chargeapp import telemetry as t
from chargeapp.db import models as m
from mqtt_bridge.measure import workload
from tests.conftest import T0
from tests.reliability.broker_support import (  # noqa: F401  (fixtures)
    database_url,
    handled,
    metric,
    plain_mosquitto,
    start_bridge,
    wait_until_idle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BAD = 10_000
VALID = 1_000
TS = "2026-11-22T13:30:00+08:00"


def publish_raw(port: int, messages, timeout: float) -> None:
    """Publish every (topic, payload) at QoS 1, whatever the topic (retained where the contract says), and wait
    for every PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    def retained(topic: str) -> bool:
        try:
            return t.parse_topic(topic).retained
        except t.BadMessage:
            return False

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood", protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    try:
        infos = [c.publish(topic, payload, qos=1, retain=retained(topic)) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout)
            assert info.is_published(), "the broker did not acknowledge every publish in time"
    finally:
        c.disconnect()
        c.loop_stop()


def _meter(seq: int, **change) -> dict:
    body = {"connector": 1, "transaction_id": 1, "energy_wh": 1000, "power_w": 1, "ts": TS, "boot": 1, "seq": seq}
    body.update(change)
    return body


def bad_messages(rnd: random.Random) -> list[tuple[str, bytes, str]]:
    """(topic, payload, the dead-letter reason the bridge must give), 2,500 of each family."""
    out: list[tuple[str, bytes, str]] = []
    chargers, sensors = ["F1", "F2", "F3", "S01", "S02"], ["D1", "D2"]
    for i in range(2500):  # malformed payloads on real devices' topics
        c = rnd.choice(chargers)
        kind = i % 5
        if kind == 0:
            out.append((t.meter_topic("s1", c), b'{"connector": 1, "energy_wh": ' + str(i).encode(), "not_json"))
        elif kind == 1:
            out.append((t.status_topic("s1", c, 1), json.dumps([i, "Charging"]).encode(), "not_object"))
        elif kind == 2:
            out.append((t.meter_topic("s1", c), json.dumps(_meter(10_000 + i, energy_wh=-i - 1)).encode(), "bad_shape"))
        elif kind == 3:
            out.append((t.door_count_topic("s1", rnd.choice(sensors)),
                        json.dumps({"in_total": "many", "out_total": 1, "ts": TS, "boot": 1, "seq": 10_000 + i}).encode(),
                        "bad_shape"))
        else:
            out.append((t.gate_passage_topic("s1", "G-in"),
                        f'{{"plate": "沪A{i:05d}", "direction": "in", "ts": "{TS}", "boot": 1, "seq": {10_000 + i}}}'
                        .encode("gbk"), "bad_encoding"))
    for i in range(2500):  # oversized: over the contract's 8 KiB (under the broker's packet limit, so it arrives)
        padding = "x" * (8 * 1024 + rnd.randint(1, 4096))
        out.append((t.meter_topic("s1", rnd.choice(chargers)), json.dumps(_meter(20_000 + i, pad=padding)).encode(),
                    "too_large"))
    wrong = ["stations/s1/chargers/F1/status/01", "stations/s1/chargers/F1/status/x", "stations/s1/chargers/F1/status/",
             "stations/s1/chargers/F1 2/meter", "stations/s1/chargers/" + "F" * 65 + "/meter",
             "stations/s\u00e9/doors/D1/count", "stations/s1/chargers/F1/status/99999999999"]
    for i in range(2500):  # topics the bridge's filters match but the contract does not have
        out.append((wrong[i % len(wrong)], json.dumps(_meter(30_000 + i)).encode(), "bad_topic"))
    unknown = [t.meter_topic("s1", "F99"), t.status_topic("s1", "S77", 1), t.door_count_topic("s1", "D9"),
               t.gate_passage_topic("s1", "G-side"), t.meter_topic("s9", "F1"), t.charger_online_topic("s1", "F42"),
               t.zigbee_topic("unmapped_door")]
    for i in range(2500):  # devices (and a station) the registry does not know, with valid payloads
        topic = unknown[i % len(unknown)]
        payload = b"true" if topic.endswith("/online") else (
            b'{"contact": false}' if topic.startswith("zigbee2mqtt/") else json.dumps(_meter(40_000 + i)).encode())
        out.append((topic, payload, "unknown_device"))
    return out


def test_ten_thousand_bad_messages_are_dead_lettered_and_counted_and_valid_traffic_fully_applied(
        app, session, station, plain_mosquitto):
    rnd = random.Random(7)
    valid = workload("s1", ["F1", "F2", "F3", "S01", "S02"], ["D1", "D2"], ["G-in", "G-out"], VALID,
                     T0 - timedelta(minutes=30))
    bad = bad_messages(rnd)
    assert len(bad) == BAD
    # Mixed: the valid messages keep their order, the bad ones fall at random places between them.
    slots = sorted(rnd.sample(range(BAD + VALID), BAD))
    stream, bad_iter, valid_iter = [], iter(bad), iter(valid)
    taken = set(slots)
    for i in range(BAD + VALID):
        stream.append(next(bad_iter)[:2] if i in taken else next(valid_iter))
    # No hourly cap: this test looks at every dead letter as stored (the cap: tests/bridge/test_dead_letter_bounds.py).
    app.config["CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR"] = 0
    bridge = start_bridge(app, plain_mosquitto.port)
    try:
        publish_raw(plain_mosquitto.port, stream, timeout=60)
        wait_until_idle(bridge, timeout=90)
        health = bridge.health()
    finally:
        bridge.stop()

    assert health["ok"] and health["worker_alive"], health
    assert handled(bridge) == BAD + VALID
    expected = Counter(reason for _, _, reason in bad)
    stored = Counter(dict(session.execute(select(m.DeadLetter.reason, func.count()).group_by(m.DeadLetter.reason)).all()))
    assert stored == expected
    assert {reason: metric(bridge, "dead_letters_total", reason=reason) for reason in expected} == dict(expected)
    assert metric(bridge, "dead_letters_total", reason="apply_failed") == 0
    # Each one kept as it came (topic and payload), for a manager to look at.
    kept = Counter((row.topic, bytes(row.payload)) for row in session.execute(select(m.DeadLetter.topic, m.DeadLetter.payload)))
    assert kept == Counter((topic[:1000], payload) for topic, payload, _ in bad)

    # Every valid message applied, once; no valid device got a false gap from the bad ones.
    assert session.scalar(select(func.count()).select_from(m.AppliedMessage)) == VALID
    assert session.scalar(select(func.sum(m.DeviceSequence.missing))) == 0
    meters = sum(1 for topic, _ in valid if t.parse_topic(topic).kind is t.TopicKind.METER)
    assert session.scalar(select(func.count()).select_from(m.MeterReading)) == meters
    assert metric(bridge, "seq_gaps_total") == 0
    print(f"\n{BAD} bad + {VALID} valid handled; dead letters by reason: {dict(sorted(expected.items()))}")
