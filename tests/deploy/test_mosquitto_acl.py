"""The broker's access rules, proved against a real Mosquitto running deploy/mosquitto/mosquitto.conf
with the files `chargeapp mqtt-credentials` generated for the ``station`` fixture's registry.

Under MQTT 3.1.1 a publish the ACL denies still gets a success PUBACK, so every
"cannot publish" check looks at what a subscriber RECEIVES. To make "nothing
arrived" mean "refused" rather than "not yet", each denied publish is followed by
an allowed one from the same connection (a marker): MQTT keeps one connection's
QoS 1 messages in order, so once the marker arrives anything sent before it would
have arrived too. Every wait is bounded (support.WAIT seconds).
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from chargeapp import telemetry as t
from chargeapp.db import models as m
from chargeapp.mqtt_credentials import read_passwd
from tests.deploy.conftest import BRIDGE_USERS, MONITOR_USER, ZIGBEE_USER, run_credentials
from tests.deploy.support import WAIT, Mosquitto, connect, example_topic, refused, wait_for

pytestmark = pytest.mark.e2e

PROTOCOLS = ["3.1.1", "5"]
CHARGERS = ["F1", "F2", "F3", "S01", "S02"]
DOORS = ["D1", "D2"]
GATES = ["G-in", "G-out"]


@pytest.fixture
def database_url(tmp_path):
    """The broker does not care which database the registry came from: SQLite only (the command runs on
    PostgreSQL too in test_mqtt_credentials.py)."""
    return f"sqlite:///{tmp_path}/test.db"


def own_topics(user: str) -> list[str]:
    """The concrete topics a device of the s1 fixture station may publish to (from the contract)."""
    station, device = user.split(".", 1)
    if device in CHARGERS:
        return [t.status_topic(station, device, 1), t.status_topic(station, device, 2), t.transaction_topic(station, device),
                t.meter_topic(station, device), t.charger_online_topic(station, device),
                t.command_results_topic(station, device)]
    if device in DOORS:
        return [t.door_count_topic(station, device), t.door_online_topic(station, device)]
    return [t.gate_passage_topic(station, device), t.gate_online_topic(station, device)]


def device_users(credentials) -> list[str]:
    return [row["username"] for row in credentials.devices]


def bridge(broker, credentials, *, protocol="5", user=BRIDGE_USERS[0]):
    c = connect(broker, user, credentials.passwords[user], protocol=protocol)
    assert c.rc == 0, c.rc
    granted = c.subscribe(*t.BRIDGE_SUBSCRIPTIONS)
    assert all(g == 1 for g in granted), granted
    return c


# --------------------------------------------------------------------------- who may connect


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_anonymous_unknown_and_wrong_password_clients_are_refused(broker, credentials, protocol):
    other = credentials.passwords["s1.F2"]
    for username, password in [(None, None), ("s1.F1", None), ("s1.F1", ""), ("s1.F1", "wrong-password"),
                               ("s1.F1", other), ("s1.F9", "anything"), ("", ""),
                               ("bridge", credentials.passwords[BRIDGE_USERS[0]])]:
        rc = refused(broker, username, password, protocol=protocol)
        assert rc != 0, (username, password)
    # Positive control: the right password connects.
    ok = connect(broker, "s1.F1", credentials.passwords["s1.F1"], protocol=protocol)
    assert ok.rc == 0
    ok.close()


def test_every_generated_device_password_connects(broker, credentials):
    for user in device_users(credentials) + list(BRIDGE_USERS) + [MONITOR_USER, ZIGBEE_USER]:
        c = connect(broker, user, credentials.passwords[user])
        assert c.rc == 0, user
        c.close()


# --------------------------------------------------------------------------- who may publish what


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_device_cannot_publish_on_any_other_devices_topics(broker, credentials, protocol):
    watcher = bridge(broker, credentials)
    users = device_users(credentials)
    for user in users:
        device = connect(broker, user, credentials.passwords[user], protocol=protocol)
        assert device.rc == 0
        others = [topic for other in users if other != user for topic in own_topics(other)]
        for topic in others:
            device.publish(topic, f"spoofed by {user}".encode())
        marker = own_topics(user)[-1]  # the device's online topic: allowed
        device.publish(marker, f"marker {user}".encode())
        assert watcher.wait_message(lambda msg: msg.payload == f"marker {user}".encode()), f"{user}'s own publish lost"
        device.close()
    spoofed = [(msg.topic, msg.payload) for msg in watcher.received if msg.payload.startswith(b"spoofed")]
    assert spoofed == []
    watcher.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_charger_a_cannot_publish_as_charger_b_but_b_can(broker, credentials, protocol):
    watcher = bridge(broker, credentials)
    a = connect(broker, "s1.F1", credentials.passwords["s1.F1"], protocol=protocol)
    b = connect(broker, "s1.F2", credentials.passwords["s1.F2"], protocol=protocol)
    for topic in own_topics("s1.F2"):
        a.publish(topic, b"from A")
    a.publish(t.meter_topic("s1", "F1"), b"A marker")
    for topic in own_topics("s1.F2"):
        b.publish(topic, b"from B")
    assert watcher.wait_message(lambda msg: msg.payload == b"A marker")
    assert wait_for(lambda: sum(msg.payload == b"from B" for msg in (watcher.drain() or watcher.received))
                    == len(own_topics("s1.F2")))
    received = [(msg.topic, msg.payload) for msg in watcher.received if msg.topic in own_topics("s1.F2")]
    assert sorted(received) == sorted((topic, b"from B") for topic in own_topics("s1.F2"))
    a.close(), b.close(), watcher.close()


def test_only_the_bridge_users_can_publish_commands(broker, credentials):
    target = "s1.F1"
    charger = connect(broker, target, credentials.passwords[target], clean=True)
    assert charger.subscribe(t.command_subscription("s1", "F1")) == [1]
    command = t.command_topic("s1", "F1", "remote_start")
    charger.publish(command, b"forged by the charger itself")
    for user in device_users(credentials) + [MONITOR_USER, ZIGBEE_USER]:
        if user == target:
            continue  # a second login as the charger would replace its connection (one session per username)
        c = connect(broker, user, credentials.passwords[user])
        c.publish(command, f"forged by {user}".encode())
        c.close()
    for user in BRIDGE_USERS:
        c = connect(broker, user, credentials.passwords[user], protocol="5")
        c.publish(command, f"from {user}".encode())
        c.close()
    assert wait_for(lambda: len(charger.topics()) >= len(BRIDGE_USERS))
    assert [msg.payload for msg in charger.received] == [f"from {u}".encode() for u in BRIDGE_USERS]
    charger.close()


def test_the_bridge_cannot_publish_device_telemetry(broker, credentials):
    watcher = bridge(broker, credentials, user=BRIDGE_USERS[1])
    forger = connect(broker, BRIDGE_USERS[0], credentials.passwords[BRIDGE_USERS[0]], protocol="5")
    for topic in own_topics("s1.F1") + own_topics("s1.D1") + own_topics("s1.G-in") + [t.zigbee_topic("door-1")]:
        forger.publish(topic, b"forged by the bridge")
    device = connect(broker, "s1.F1", credentials.passwords["s1.F1"])
    device.publish(t.meter_topic("s1", "F1"), b"marker")
    assert watcher.wait_message(lambda msg: msg.payload == b"marker")
    assert [msg for msg in watcher.received if msg.payload.startswith(b"forged")] == []
    forger.close(), device.close(), watcher.close()


def test_monitor_user_reads_everything_and_writes_nothing(broker, credentials):
    monitor = connect(broker, MONITOR_USER, credentials.passwords[MONITOR_USER])
    monitor.subscribe(f"{t.STATION_ROOT}/#")
    for topic in own_topics("s1.F1") + own_topics("s1.D1"):
        monitor.publish(topic, b"forged by the monitor")
    device = connect(broker, "s1.F1", credentials.passwords["s1.F1"])
    device.publish(t.meter_topic("s1", "F1"), b"marker")
    assert monitor.wait_message(lambda msg: msg.payload == b"marker")
    assert [msg for msg in monitor.received if msg.payload.startswith(b"forged")] == []
    device.close(), monitor.close()


def test_station_zigbee2mqtt_gateway_publishes_only_its_stations_door_contacts(app, session, station, clock,
                                                                               mosquitto_binary, tmp_path):
    from tests.factories import make_station

    other = make_station(session, clock.now(), code="s2")
    session.add_all([m.DoorContact(station_id=station.id, friendly_name="s1 lounge door"),
                     m.DoorContact(station_id=other.id, friendly_name="s2-lounge-door")])
    session.commit()
    creds = run_credentials(app, tmp_path / "z", "--bridge-user", "bridge-1", "--zigbee2mqtt-user", "z2m-s1=s1")
    broker = Mosquitto(tmp_path / "zbroker", creds.passwd, creds.acl).start()
    try:
        watcher = bridge(broker, creds)
        z2m = connect(broker, "z2m-s1", creds.passwords["z2m-s1"])
        z2m.publish(t.zigbee_topic("s2-lounge-door"), b"forged")
        z2m.publish(t.zigbee_topic("unknown-sensor"), b"forged")
        z2m.publish(t.door_online_topic("s1", "D1"), b"forged")
        z2m.publish(t.zigbee_topic("s1 lounge door"), b'{"contact": true}')
        assert watcher.wait_message(lambda msg: msg.topic == t.zigbee_topic("s1 lounge door"))
        assert [msg for msg in watcher.received if msg.payload == b"forged"] == []
        z2m.close(), watcher.close()
    finally:
        broker.stop()


def test_ocpp_gateway_speaks_for_its_ocpp_chargers_only(app, runner, station, mosquitto_binary, tmp_path):
    """F1 has OCPP credentials, F2 speaks MQTT itself: the gateway's login publishes F1's telemetry and gets F1's
    commands, and can neither forge F2's status nor read F2's commands."""
    from chargeapp.db import db

    result = runner.invoke(args=["ocpp-password", "s1", "F1"])
    assert result.exit_code == 0, result.output
    db.session.remove()
    creds = run_credentials(app, tmp_path / "o", "--bridge-user", "bridge-1", "--ocpp-gateway-user", "ocpp-gw")
    broker = Mosquitto(tmp_path / "obroker", creds.passwd, creds.acl).start()
    try:
        watcher = bridge(broker, creds, user="bridge-1")
        gateway = connect(broker, "ocpp-gw", creds.passwords["ocpp-gw"])
        assert gateway.rc == 0, gateway.rc
        gateway.subscribe(t.command_subscription("s1", "F2"), t.command_subscription("s1", "F1"))
        gateway.publish(t.status_topic("s1", "F2", 1), b"forged by the gateway")
        for topic in own_topics("s1.F1"):
            gateway.publish(topic, b"from the gateway")
        wanted = set(own_topics("s1.F1"))
        assert watcher.wait_message(lambda msg: msg.topic == t.command_results_topic("s1", "F1"))
        assert {msg.topic for msg in watcher.received if msg.payload == b"from the gateway"} == wanted
        assert [msg for msg in watcher.received if msg.payload == b"forged by the gateway"] == []
        f2_command = example_topic(t.command_subscription("s1", "F2"))
        f1_command = example_topic(t.command_subscription("s1", "F1"))
        watcher.publish(f2_command, b"{}")
        watcher.publish(f1_command, b"{}")  # the marker: one connection's QoS 1 messages stay in order
        assert gateway.wait_message(lambda msg: msg.topic == f1_command)
        assert [msg.topic for msg in gateway.received] == [f1_command]
        gateway.close(), watcher.close()
    finally:
        broker.stop()


def test_zigbee2mqtt_gateway_publishes_its_tree_only(broker, credentials):
    watcher = bridge(broker, credentials)
    z2m = connect(broker, ZIGBEE_USER, credentials.passwords[ZIGBEE_USER])
    for topic in own_topics("s1.D1"):
        z2m.publish(topic, b"forged by z2m")
    z2m.publish(t.zigbee_topic("lounge-door-1"), b'{"contact": false}')
    assert watcher.wait_message(lambda msg: msg.topic == t.zigbee_topic("lounge-door-1"))
    assert [msg for msg in watcher.received if msg.payload == b"forged by z2m"] == []
    z2m.close(), watcher.close()


# --------------------------------------------------------------------------- who may read what


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_device_cannot_read_other_devices_topics(broker, credentials, protocol):
    users = device_users(credentials)
    readers = {}
    for user in users:
        c = connect(broker, user, credentials.passwords[user], protocol=protocol)
        # Subscribing is not refused outright; what matters is that nothing is delivered.
        c.subscribe("#", "stations/+/chargers/+/commands/+", *own_topics("s1.F2"), f"{t.ZIGBEE_ROOT}/+")
        readers[user] = c
    # Retained states published before, and live messages after, the subscriptions.
    f2 = readers["s1.F2"]
    for topic in own_topics("s1.F2"):
        f2.publish(topic, b"F2 data", retain=True)
    for user in users:
        for topic in own_topics(user):
            readers[user].publish(topic, f"{user} data".encode())
    late = connect(broker, "s1.F3", credentials.passwords["s1.F3"], client_id="late-reader", protocol=protocol)
    readers["s1.F3"].close()
    readers["s1.F3"] = late
    late.subscribe("#", *own_topics("s1.F2"))
    # Each charger's own command, from the bridge, is the marker it may read.
    cmd = connect(broker, BRIDGE_USERS[0], credentials.passwords[BRIDGE_USERS[0]], protocol="5")
    for charger in CHARGERS:
        cmd.publish(t.command_topic("s1", charger, "remote_stop"), f"command for {charger}".encode())
    for charger in CHARGERS:
        reader = readers[f"s1.{charger}"]
        assert reader.wait_message(lambda msg: msg.payload == f"command for {charger}".encode()), charger
    wait_for(lambda: False, 0.3)  # doors and gates read nothing, so no marker: a grace period instead
    for user, reader in readers.items():
        reader.drain()
        charger = user.split(".")[1]
        expected = [(t.command_topic("s1", charger, "remote_stop"), f"command for {charger}".encode())] if charger in CHARGERS else []
        # Set: under MQTT 5 a message matching two of a client's subscriptions is delivered once per subscription.
        assert sorted({(msg.topic, msg.payload) for msg in reader.received}) == expected, user
        reader.close()
    cmd.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_bridge_receives_every_device_topic(broker, credentials, protocol):
    users = device_users(credentials)
    watchers = [bridge(broker, credentials, protocol=protocol, user=BRIDGE_USERS[0])]
    if protocol == "5":
        # Shared subscriptions (several bridge workers): the group as a whole gets every message once.
        watchers = []
        for user in BRIDGE_USERS:
            c = connect(broker, user, credentials.passwords[user], protocol="5")
            assert all(g == 1 for g in c.subscribe(*t.shared_subscriptions("bridge")))
            watchers.append(c)
    expected = []
    for user in users:
        c = connect(broker, user, credentials.passwords[user], protocol=protocol)
        for topic in own_topics(user):
            c.publish(topic, user.encode())
            expected.append((topic, user.encode()))
        c.close()
    z2m = connect(broker, ZIGBEE_USER, credentials.passwords[ZIGBEE_USER])
    z2m.publish(t.zigbee_topic("lounge-door-1"), b"z2m")
    expected.append((t.zigbee_topic("lounge-door-1"), b"z2m"))
    z2m.close()

    def got():
        return sorted((msg.topic, msg.payload) for w in watchers for msg in (w.drain() or w.received))

    assert wait_for(lambda: len(got()) >= len(expected)), f"{len(got())} of {len(expected)}"
    wait_for(lambda: False, 0.2)
    assert got() == sorted(expected)  # all of them, each once
    if protocol == "5":
        assert all(w.received for w in watchers), "the share group did not split the messages"
    for w in watchers:
        w.close()


# --------------------------------------------------------------------------- client ids and sessions


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_client_id_spoofing_neither_evicts_nor_impersonates(broker, credentials, protocol):
    watcher = bridge(broker, credentials)
    a_online = t.charger_online_topic("s1", "F1")
    a = connect(broker, "s1.F1", credentials.passwords["s1.F1"], client_id="s1.F1", protocol=protocol,
                will=(a_online, b"false", True))
    a.publish(a_online, b"true", retain=True)
    # B logs in with its own credentials but A's client id (and with A's username as client id, and a random one).
    spoofers = []
    for client_id in ("s1.F1", "chargeapp-bridge", "F1"):
        b = connect(broker, "s1.F2", credentials.passwords["s1.F2"], client_id=client_id, protocol=protocol)
        assert b.rc == 0
        for topic in own_topics("s1.F1"):
            b.publish(topic, b"false" if topic == a_online else b"spoofed")
        b.publish(t.meter_topic("s1", "F2"), f"B marker {client_id}".encode())
        assert watcher.wait_message(lambda msg: msg.payload == f"B marker {client_id}".encode())
        spoofers.append(b)
    # A was not disconnected, its will did not fire, and nothing arrived as A but A's own "true".
    a.publish(t.meter_topic("s1", "F1"), b"A still here")
    assert watcher.wait_message(lambda msg: msg.payload == b"A still here")
    assert a.connected and a.disconnects == []
    from_a = [(msg.topic, msg.payload) for msg in watcher.received if msg.topic in own_topics("s1.F1")]
    assert from_a == [(a_online, b"true"), (t.meter_topic("s1", "F1"), b"A still here")]
    # The broker knows B by its username, whatever client id it sent.
    assert broker.log().count("as s1.F2 (") == 3 and "as F1 (" not in broker.log()
    for b in spoofers:
        b.close()
    a.close(), watcher.close()


def test_no_takeover_of_another_devices_persistent_session(broker, credentials):
    command = t.command_topic("s1", "F1", "reserve_now")
    a = connect(broker, "s1.F1", credentials.passwords["s1.F1"], client_id="s1.F1", clean=False)
    a.subscribe(t.command_subscription("s1", "F1"))
    a.close()
    cmd = connect(broker, BRIDGE_USERS[0], credentials.passwords[BRIDGE_USERS[0]], protocol="5")
    cmd.publish(command, b"queued for A")
    # B resumes "A's session" by client id: it must get a session of its own, and none of A's messages.
    b = connect(broker, "s1.F2", credentials.passwords["s1.F2"], client_id="s1.F1", clean=False)
    assert b.paho.is_connected()
    b.subscribe(t.command_subscription("s1", "F2"))
    cmd.publish(t.command_topic("s1", "F2", "reserve_now"), b"for B")
    assert b.wait_message(lambda msg: msg.payload == b"for B")
    assert [msg.payload for msg in b.received] == [b"for B"]
    b.close()
    # A comes back and finds its queued command.
    a = connect(broker, "s1.F1", credentials.passwords["s1.F1"], client_id="s1.F1", clean=False)
    assert a.wait_message(lambda msg: msg.payload == b"queued for A")
    a.close(), cmd.close()


def test_control_without_username_as_client_id_the_spoof_evicts_the_device(mosquitto_binary, credentials, tmp_path):
    """Negative control: the same spoof against the shipped configuration minus use_username_as_clientid
    evicts the device and fires its last will, so the test above proves that setting."""
    broker = Mosquitto(tmp_path / "control", credentials.passwd, credentials.acl,
                       drop=("use_username_as_clientid",)).start()
    try:
        watcher = bridge(broker, credentials)
        a_online = t.charger_online_topic("s1", "F1")
        a = connect(broker, "s1.F1", credentials.passwords["s1.F1"], client_id="s1.F1", will=(a_online, b"false", True))
        a.publish(a_online, b"true", retain=True)
        b = connect(broker, "s1.F2", credentials.passwords["s1.F2"], client_id="s1.F1")
        assert b.rc == 0
        assert wait_for(lambda: bool(a.disconnects)), "A was not evicted"
        assert watcher.wait_message(lambda msg: msg.topic == a_online and msg.payload == b"false")
        b.close(), a.close(), watcher.close()
    finally:
        broker.stop()


def test_last_will_only_on_the_devices_own_online_topic(broker, credentials):
    watcher = bridge(broker, credentials)
    # A will on another device's online topic: Mosquitto 2.0.11 accepts the connection but checks the will
    # against the ACL when it fires, so it is never delivered (a later version may refuse at connect).
    forged = connect(broker, "s1.F1", credentials.passwords["s1.F1"], will=(t.charger_online_topic("s1", "F2"), b"false", True))
    if forged.rc == 0:
        forged.drop()
    honest = connect(broker, "s1.F3", credentials.passwords["s1.F3"], will=(t.charger_online_topic("s1", "F3"), b"false", True))
    assert honest.rc == 0
    honest.drop()
    assert watcher.wait_message(lambda msg: msg.topic == t.charger_online_topic("s1", "F3") and msg.payload == b"false")
    wait_for(lambda: False, 0.2)
    assert [msg for msg in watcher.received if msg.topic == t.charger_online_topic("s1", "F2")] == []
    watcher.close()


# --------------------------------------------------------------------------- operations


def test_rerun_and_reload_admits_new_devices_and_drops_removed_ones(app, session, station, broker, credentials):
    gate = session.query(m.Gate).filter_by(code="G-out").one()
    session.delete(gate)
    session.add(m.Charger(station_id=station.id, code="F9", kind="fast", mqtt_username="s1.F9"))
    session.commit()
    assert refused(broker, "s1.F9", "unknown yet") != 0
    again = run_credentials(app, credentials.dir, "--bridge-user", BRIDGE_USERS[0], "--bridge-user", BRIDGE_USERS[1],
                            "--monitor-user", MONITOR_USER, "--zigbee2mqtt-user", ZIGBEE_USER)
    old_client = connect(broker, "s1.F1", credentials.passwords["s1.F1"])  # connected across the reload
    broker.reload()
    new = None

    def new_device_connects():
        nonlocal new
        c = connect(broker, "s1.F9", again.passwords["s1.F9"])
        if c.rc == 0:
            new = c
            return True
        c.close()
        return False

    assert wait_for(new_device_connects, WAIT, interval=0.1), "the new device was not admitted after SIGHUP"
    watcher = bridge(broker, again)
    new.publish(t.meter_topic("s1", "F9"), b"new charger")
    assert watcher.wait_message(lambda msg: msg.payload == b"new charger")
    assert refused(broker, "s1.G-out", credentials.passwords["s1.G-out"]) != 0
    assert old_client.connected
    kept = connect(broker, "s1.F2", credentials.passwords["s1.F2"])  # an existing device's password still works
    assert kept.rc == 0
    for c in (kept, new, old_client, watcher):
        c.close()
    assert "s1.F9" in read_passwd(again.passwd)


def test_tls_listener_as_shipped_when_uncommented(mosquitto_binary, credentials, tmp_path):
    """The commented TLS block, uncommented with a throw-away certificate, starts and enforces the same rules."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is not installed", pytrace=False)
    from tests.deploy.support import SHIPPED_CONF, free_port

    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(certs / "key.pem"), "-out", str(certs / "cert.pem")],
                   check=True, capture_output=True, timeout=30)
    tls_port = free_port()
    lines = SHIPPED_CONF.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#listener "))
    block = []
    for line in lines[start:]:
        if not line.startswith("#") or line.startswith("# "):
            break
        key, _, value = line[1:].partition(" ")
        value = {"listener": f"{tls_port} 127.0.0.1", "certfile": str(certs / "cert.pem"),
                 "keyfile": str(certs / "key.pem"), "cafile": str(certs / "cert.pem")}.get(key, value)
        block.append(f"{key} {value}")
    assert block[0].startswith("listener ") and any(b.startswith("certfile") for b in block)
    broker = Mosquitto(tmp_path / "tls", credentials.passwd, credentials.acl)
    broker.conf.write_text(broker.conf.read_text() + "\n".join(block) + "\n")
    broker.start()
    try:
        import ssl

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        def tls_connect(username, password):
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv311)
            c.tls_set(ca_certs=str(certs / "cert.pem"), cert_reqs=ssl.CERT_REQUIRED)
            result = {}
            c.on_connect = lambda client, u, f, rc, p: result.setdefault("rc", rc.value)
            if username:
                c.username_pw_set(username, password)
            c.connect("127.0.0.1", tls_port, keepalive=30)
            c.loop_start()
            wait_for(lambda: "rc" in result, WAIT)
            c.disconnect()
            c.loop_stop()
            return result.get("rc")

        assert tls_connect("s1.F1", credentials.passwords["s1.F1"]) == 0
        assert tls_connect(None, None) not in (0, None)
        assert tls_connect("s1.F1", "wrong") not in (0, None)
    finally:
        broker.stop()
