"""Issue 7, broker faults against a real Mosquitto with the shipped configuration and generated users:
the broker killed with -9 in the middle of a 5,000-message burst and restarted, and devices that die
without disconnecting.

"Nothing lost" (issue 7): every message a device published and the broker acknowledged is applied once,
or its loss is detected: a per-device sequence gap (device_sequences.missing, seq_missing_messages_total).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from chargeapp import telemetry as t
from chargeapp.db import models as m
from mqtt_bridge.measure import workload
from tests.bridge.support import REPO
from tests.conftest import T0
from tests.reliability.broker_support import (  # noqa: F401  (fixtures)
    BRIDGE_USERS,
    Fleet,
    SilentLink,
    credentials,
    database_url,
    handled,
    metric,
    per_device,
    shipped_broker,
    start_bridge,
    username_of,
    wait_for_all,
    wait_until_idle,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BURST = 5000
CHARGERS = ["F1", "F2", "F3", "S01", "S02"]
SENSORS = ["D1", "D2"]
GATES = ["G-in", "G-out"]


def final_messages(messages) -> list[tuple[str, bytes]]:
    """One more message per device after the burst (the issue's "next message"): it shows any gap at the
    burst's tail, and its cumulative door totals make the lounge count right again."""
    last: dict[str, object] = {}
    for topic, payload in messages:
        msg = t.parse_message(topic, payload, T0 + timedelta(days=1))
        last[username_of(topic)] = msg
    out = []
    ts = T0 - timedelta(minutes=1)
    for msg in last.values():
        head = {"station": msg.station, "device_id": msg.device_id, "device_ts": ts, "boot": msg.boot,
                "seq": msg.seq + 1}
        if isinstance(msg, t.DoorCount):
            out.append(t.format_message(t.DoorCount(**head, in_total=msg.in_total, out_total=msg.out_total)))
        elif isinstance(msg, t.GatePassage):
            out.append(t.format_message(t.GatePassage(**head, plate="沪B00000", direction=msg.direction)))
        else:
            out.append(t.format_message(t.StatusMessage(**head, connector=1, status="Available")))
    return out


@pytest.mark.parametrize("persistence", ["saved_before_the_kill", "lost_with_the_kill"])
def test_broker_killed_mid_burst_loses_nothing_undetected_and_applies_nothing_twice(
        app, session, station, credentials, shipped_broker, persistence):
    broker = shipped_broker
    user = BRIDGE_USERS[0]
    messages = workload("s1", CHARGERS, SENSORS, GATES, BURST, T0 - timedelta(minutes=30))
    assert len(messages) == BURST
    finals = final_messages(messages)
    bridge = start_bridge(app, broker.port, user, credentials.passwords[user], batch_size=200)
    fleet = None
    try:
        fleet = Fleet(broker.port, credentials.passwords, {username_of(topic) for topic, _ in messages})

        def save() -> None:
            # What autosave_interval does every 10 s: here on cue, so the test need not wait for it.
            broker.proc.send_signal(signal.SIGUSR1)

        def kill_and_restart() -> None:
            broker.kill9()
            if persistence == "lost_with_the_kill":
                broker.db_file.unlink(missing_ok=True)  # killed before its first save, or its disk lost
            broker.start()

        cues = {3000: kill_and_restart}
        if persistence == "saved_before_the_kill":
            save()
            assert wait_for_all(lambda: broker.db_file.exists(), 15), "the broker saved nothing on SIGUSR1"
            cues[2000] = save  # the bridge lags behind: the save holds messages it applies before the kill
        fleet.publish_paced(messages, rate=1500, on_count=cues)
        assert fleet.wait_acknowledged(30), f"{fleet.acknowledged()} of {len(fleet.infos)} acknowledged"
        assert bridge.client.wait_subscribed(15), "the bridge did not resubscribe after the broker restart"
        for topic, payload in finals:
            fleet.publish(topic, payload)
        assert fleet.wait_acknowledged(10)
        wait_until_idle(bridge, timeout=90, quiet=2.0)
        health = bridge.health()
    finally:
        if fleet is not None:
            fleet.close()
        bridge.stop()

    published = per_device(messages + finals)
    applied = {device: sorted(seq for (seq,) in session.execute(
        select(m.AppliedMessage.seq).where(m.AppliedMessage.device == device))) for device in published}
    sequences = {row.device: row for row in session.scalars(select(m.DeviceSequence))}
    lost = {device: len(seqs) - len(applied[device]) for device, seqs in published.items()}
    print(f"\n{persistence}: {sum(map(len, applied.values()))} applied, {sum(lost.values())} lost and counted, "
          f"{metric(bridge, 'duplicates_total', retained='false') + metric(bridge, 'duplicates_total', retained='true'):.0f}"
          f" duplicates dropped, {handled(bridge)} handled, sessions {metric(bridge, 'sessions_total', present='true'):.0f}"
          f" resumed / {metric(bridge, 'sessions_total', present='false'):.0f} new")

    # Every device's last message arrived, every seq it published was applied once or is counted missing.
    for device, seqs in published.items():
        assert set(applied[device]) <= set(seqs)
        assert len(applied[device]) == len(set(applied[device]))  # the unique key holds (no seq applied twice)
        row = sequences[device]
        assert (row.boot, row.last_seq) == (1, max(seqs)), device
        assert row.missing == lost[device], (device, row.missing, lost[device])
    assert metric(bridge, "seq_missing_messages_total") - metric(bridge, "seq_filled_messages_total") == sum(
        lost.values())
    if sum(lost.values()):
        assert metric(bridge, "seq_gaps_total") > 0
    # (Gaps may be counted and filled again with nothing lost: after the restart a device's resent messages can
    # arrive before the older ones the broker had saved for the bridge.)

    # No effect applied twice: one meter row per applied meter message, one session per transaction.
    meter_applied = 0
    for topic, payload in messages:
        msg = t.parse_message(topic, payload, T0 + timedelta(days=1))
        if isinstance(msg, t.MeterSample) and msg.seq in applied[f"charger:s1/{msg.device_id}"]:
            meter_applied += 1
    assert session.scalar(select(func.count()).select_from(m.MeterReading)) == meter_applied
    assert session.scalar(select(func.count()).select_from(m.ChargingSession)) == len(CHARGERS)
    assert session.scalar(select(func.count()).select_from(m.DeadLetter)) == 0
    # Cumulative door totals: whatever was lost, the zone deltas add up to the final totals.
    final = {}
    for topic, payload in messages:
        msg = t.parse_message(topic, payload, T0 + timedelta(days=1))
        if isinstance(msg, t.DoorCount):
            final[msg.device_id] = (msg.in_total, msg.out_total)
    deltas = dict(session.execute(
        select(m.Zone.code, func.sum(m.OccupancyChange.delta)).join(m.OccupancyChange)
        .where(m.OccupancyChange.source == "door").group_by(m.Zone.code)).all())
    (d1_in, d1_out), (d2_in, d2_out) = final["D1"], final["D2"]
    assert deltas == {"hall": d1_in - d1_out - d2_in + d2_out, "tea": d2_in - d2_out}

    # The bridge reported what it could: a new session is a possible gap; the restart was noticed.
    assert health["ok"], health
    if persistence == "lost_with_the_kill":
        assert metric(bridge, "sessions_total", present="false") == 2  # the first start, and after the kill
        assert health["session_present"] is False
    else:
        assert metric(bridge, "sessions_total", present="true") == 1
        assert metric(bridge, "duplicates_total", retained="false") > 0  # the saved queue came back: applied once


# --------------------------------------------------------------------------- devices that die without disconnecting

DEVICE_SCRIPT = """
import sys, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from chargeapp import telemetry as t
port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]
station, device = user.split(".", 1)
online = t.charger_online_topic(station, device)
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv311, clean_session=False)
c.username_pw_set(user, password)
c.will_set(online, t.online_payload(False), qos=1, retain=True)
c.connect("127.0.0.1", port, keepalive=t.KEEPALIVE_SECONDS)
c.loop_start()
c.publish(online, t.online_payload(True), qos=1, retain=True).wait_for_publish(5)
print("online", flush=True)
time.sleep(600)
"""


def charger_online(app, code: str):
    from tests.bridge.support import read_count

    return read_count(app, f"SELECT online FROM chargers WHERE code = '{code}'")


def offline_items(session, station, code: str) -> list[dict]:
    from chargeapp.services import manage

    session.expire_all()
    try:
        return [i for i in manage.attention(session, T0, station)
                if i["kind"] == "charger_offline" and i["target"] == code]
    finally:
        session.rollback()  # end the read: an open SQLite read transaction would block the bridge's commits


def test_a_device_killed_without_disconnecting_is_shown_offline_within_1_5_keepalives(
        app, session, station, credentials, shipped_broker):
    """A charger's process killed with -9: no DISCONNECT, its socket closed by the kernel. The broker fires the
    charger's last will (online false, retained) and the bridge records it for the managers' live view."""
    assert t.KEEPALIVE_SECONDS == 30  # the contract's keepalive, which the simulators and this device use
    user = BRIDGE_USERS[0]
    bridge = start_bridge(app, shipped_broker.port, user, credentials.passwords[user])
    device = subprocess.Popen(
        [sys.executable, "-c", DEVICE_SCRIPT, str(shipped_broker.port), "s1.F2", credentials.passwords["s1.F2"]],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert device.stdout.readline().strip() == b"online"
        assert wait_for_all(lambda: charger_online(app, "F2") == 1, 10), "the bridge never recorded F2 online"
        assert offline_items(session, station, "F2") == []
        device.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        device.wait(5)
        bound = 1.5 * t.KEEPALIVE_SECONDS
        assert wait_for_all(lambda: charger_online(app, "F2") == 0, bound), f"F2 not offline within {bound} s"
        took = time.monotonic() - killed
    finally:
        if device.poll() is None:
            device.kill()
            device.wait(5)
        device.stdout.close()
        bridge.stop()
    print(f"\nkilled device shown offline after {took:.3f} s (bound {bound:.0f} s)")
    assert [i["message"] for i in offline_items(session, station, "F2")] == ["F2 is offline."]


# Mosquitto 2.0's keepalive__check runs when 5 whole seconds have passed since the last one (so every 6 s) and
# disconnects when now - last packet > 1.5 keepalives in whole seconds: up to 1 + 6 + 1 s late (docs/reliability.md).
MOSQUITTO_2_0_KEEPALIVE_SLACK = 8


def test_a_device_gone_silent_is_shown_offline_when_mosquitto_checks_its_keepalive(
        app, session, station, credentials, shipped_broker):
    """A charger whose link goes silent (power cut, cable pulled: no DISCONNECT, no FIN) is found only by the
    broker's keepalive check. MQTT says 1.5 keepalives after its last packet; Mosquitto 2.0.11 checks every
    6 s in whole seconds, so it takes up to 8 s more (measured and documented in docs/reliability.md). A
    2 s keepalive keeps the test short; the device sends a packet just before the cut (the worst case)."""
    keepalive = 2
    user = BRIDGE_USERS[0]
    bridge = start_bridge(app, shipped_broker.port, user, credentials.passwords[user])
    link = SilentLink(shipped_broker.port)
    online = t.charger_online_topic("s1", "F3")
    device = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="s1.F3", protocol=mqtt.MQTTv311)
    device.username_pw_set("s1.F3", credentials.passwords["s1.F3"])
    device.will_set(online, t.online_payload(False), qos=1, retain=True)
    try:
        device.connect("127.0.0.1", link.port, keepalive=keepalive)
        device.loop_start()
        device.publish(online, t.online_payload(True), qos=1, retain=True).wait_for_publish(5)
        assert wait_for_all(lambda: charger_online(app, "F3") == 1, 10), "the bridge never recorded F3 online"
        device.publish(online, t.online_payload(True), qos=1, retain=True).wait_for_publish(5)
        link.cut()
        cut = time.monotonic()
        device.loop_stop()  # the device is dead: it sends nothing more
        bound = 1.5 * keepalive + MOSQUITTO_2_0_KEEPALIVE_SLACK
        assert wait_for_all(lambda: charger_online(app, "F3") == 0, bound + 2), f"F3 not offline within {bound} s"
        took = time.monotonic() - cut
    finally:
        device.loop_stop()
        link.close()
        bridge.stop()
    print(f"\nsilent device (keepalive {keepalive} s) shown offline after {took:.3f} s: "
          f"{took / keepalive:.2f} keepalives (MQTT: 1.5; Mosquitto 2.0.11: up to 1.5 + {MOSQUITTO_2_0_KEEPALIVE_SLACK} s)")
    assert took <= bound
    assert [i["message"] for i in offline_items(session, station, "F3")] == ["F3 is offline."]
