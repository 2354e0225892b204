"""Issue 14 item 7: a publish the broker refuses leaves a trace. Against a real Mosquitto 2.0.11 running
deploy/mosquitto/mosquitto.conf with the ACL `chargeapp mqtt-credentials` generated:

- the shipped log level logs "Denied PUBLISH" (only ``log_type debug`` does: the negative control drops it);
- an MQTT 5 device gets PUBACK reason 0x87 (Not authorized) for a refused QoS 1 publish, a 3.1.1 one a plain
  PUBACK (it cannot tell);
- $SYS has no denial counter (a denied publish counts as received like an allowed one);
- ``chargeapp broker-denials`` counts the denials of that log by client and topic, and keeps cumulative
  Prometheus counters in a textfile across runs.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from chargeapp import telemetry as t
from chargeapp.broker_denials import BY_CLIENT, LAST_RUN, TOTAL, broker_denials_command, count_denials, read_textfile
from tests.deploy.conftest import BRIDGE_USERS, MONITOR_USER
from tests.deploy.support import ROOT, WAIT, Mosquitto, connect, shipped_settings, wait_for

pytestmark = pytest.mark.e2e

F1_OWN, F2_OWN = t.meter_topic("s1", "F1"), t.meter_topic("s1", "F2")
NOT_AUTHORIZED, SUCCESS, NO_SUBSCRIBERS = 0x87, 0x00, 0x10


@pytest.fixture
def database_url(tmp_path):
    """The broker does not care which database the registry came from: SQLite only."""
    return f"sqlite:///{tmp_path}/test.db"


def device(broker, credentials, user="s1.F1", protocol="3.1.1"):
    """A device connection that records the reason code of every PUBACK by message id."""
    c = connect(broker, user, credentials.passwords[user], protocol=protocol)
    assert c.rc == 0
    c.acks = {}
    done = threading.Condition()

    def on_publish(client, userdata, mid, reason_code, properties):
        with done:
            c.acks[mid] = reason_code.value
            done.notify_all()

    c.paho.on_publish = on_publish
    return c


def publish(c, topic: str, payload: bytes = b"{}") -> int:
    """Publish at QoS 1 and return the PUBACK's reason code."""
    info = c.paho.publish(topic, payload, qos=1)
    info.wait_for_publish(WAIT)
    assert info.is_published(), f"no PUBACK for {topic} within {WAIT} s"
    assert wait_for(lambda: info.mid in c.acks)
    return c.acks[info.mid]


def denied_lines(broker) -> list[str]:
    return [line for line in broker.log().splitlines() if "Denied PUBLISH" in line]


def test_the_shipped_configuration_logs_at_debug_level():
    assert ("log_type", "debug") in shipped_settings()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_the_shipped_broker_logs_every_refused_publish_with_client_and_topic(broker, credentials, protocol):
    watcher = connect(broker, BRIDGE_USERS[0], credentials.passwords[BRIDGE_USERS[0]], protocol="5")
    watcher.subscribe(*t.BRIDGE_SUBSCRIPTIONS)
    f1 = device(broker, credentials, protocol=protocol)
    publish(f1, F2_OWN, b"spoofed")
    publish(f1, t.command_topic("s1", "F1", "remote_stop"), b"spoofed")  # commands: the bridge's alone
    publish(f1, F1_OWN, b"marker")
    assert watcher.wait_message(lambda msg: msg.payload == b"marker")
    assert wait_for(lambda: len(denied_lines(broker)) == 2), broker.log()
    lines = denied_lines(broker)
    assert f"Denied PUBLISH from s1.F1 (d0, q1, r0, m1, '{F2_OWN}', ... (7 bytes))" in lines[0]
    assert "'stations/s1/chargers/F1/commands/remote_stop'" in lines[1]
    assert not any(F1_OWN in line for line in lines)  # the allowed one is not a denial
    assert not any(msg.payload == b"spoofed" for msg in watcher.received)
    f1.close()
    watcher.close()


def test_negative_control_without_log_type_debug_nothing_logs_a_refused_publish(mosquitto_binary, credentials,
                                                                                 tmp_path):
    b = Mosquitto(tmp_path / "quiet", credentials.passwd, credentials.acl, drop=("log_type debug",)).start()
    try:
        f1 = device(b, credentials)
        publish(f1, F2_OWN)
        publish(f1, F1_OWN)
        f1.close()
        assert "New client connected" in b.log()  # it does log at the other levels
        assert denied_lines(b) == [] and "F2" not in b.log()
    finally:
        b.stop()


def test_an_mqtt5_device_gets_not_authorized_and_a_311_device_a_plain_puback(broker, credentials):
    watcher = connect(broker, BRIDGE_USERS[0], credentials.passwords[BRIDGE_USERS[0]], protocol="5")
    watcher.subscribe(*t.BRIDGE_SUBSCRIPTIONS)
    v5 = device(broker, credentials, protocol="5")
    assert publish(v5, F2_OWN) == NOT_AUTHORIZED
    assert publish(v5, t.command_topic("s1", "F1", "remote_stop")) == NOT_AUTHORIZED
    assert publish(v5, F1_OWN) == SUCCESS  # the bridge subscribes: delivered
    v5.close()
    v311 = device(broker, credentials, user="s1.F2", protocol="3.1.1")
    assert publish(v311, F1_OWN) == SUCCESS  # refused all the same, but MQTT 3.1.1's PUBACK has no reason
    v311.close()
    assert len(denied_lines(broker)) == 3
    watcher.close()


def test_sys_topics_count_a_refused_publish_as_received_like_any_other(mosquitto_binary, credentials, tmp_path):
    """So $SYS cannot give a denial count: the log is the only source. (The shipped ACL lets nobody read $SYS;
    this broker's copy of it lets everyone, and publishes $SYS every second.)"""
    acl = tmp_path / "acl-with-sys"
    acl.write_text(credentials.acl.read_text() + "\npattern read $SYS/#\n")
    b = Mosquitto(tmp_path / "sys", credentials.passwd, acl, overrides={"sys_interval": "1"}).start()
    try:
        values: dict[str, str] = {}
        monitor = connect(b, MONITOR_USER, credentials.passwords[MONITOR_USER], protocol="5")
        monitor.paho.on_message = lambda client, userdata, msg: values.__setitem__(msg.topic, msg.payload.decode())
        monitor.subscribe("$SYS/#")
        received = "$SYS/broker/publish/messages/received"
        assert wait_for(lambda: received in values, timeout=5)

        def after(topic: str, n: int) -> dict[str, str]:
            start = int(values[received])
            c = device(b, credentials)
            for _ in range(n):
                publish(c, topic)
            c.close()
            assert wait_for(lambda: int(values[received]) >= start + n, timeout=5)
            return dict(values)

        denied = after(F2_OWN, 20)
        allowed = after(F1_OWN, 20)
        assert int(allowed[received]) - int(denied[received]) == 20  # each counted alike
        assert not [topic for topic in values if "denied" in topic.lower() or "acl" in topic.lower()
                    or "auth" in topic.lower()]
        monitor.close()
    finally:
        b.stop()


def test_debug_logging_costs_four_lines_per_delivered_message(broker, credentials):
    """The figure in deploy/mosquitto/mosquitto.conf: PUBLISH in, PUBACK out, PUBLISH to the bridge, its PUBACK."""
    watcher = connect(broker, BRIDGE_USERS[0], credentials.passwords[BRIDGE_USERS[0]], protocol="5")
    watcher.subscribe(*t.BRIDGE_SUBSCRIPTIONS)
    f1 = device(broker, credentials)
    before = len(broker.log().splitlines())
    for i in range(50):
        publish(f1, F1_OWN, b"%d" % i)
    assert wait_for(lambda: len(watcher.topics()) >= 50)
    assert wait_for(lambda: len(broker.log().splitlines()) >= before + 200)
    lines = broker.log().splitlines()[before:]
    per_message = [line for line in lines if "PUBLISH" in line or "PUBACK" in line]
    assert len(per_message) == 200, "\n".join(lines[:20])
    f1.close()
    watcher.close()


# --------------------------------------------------------------------------- chargeapp broker-denials


def test_broker_denials_counts_a_real_brokers_log_by_client_and_topic_and_keeps_prometheus_counters(
        broker, credentials, tmp_path):
    f1, f2 = device(broker, credentials), device(broker, credentials, user="s1.F2", protocol="5")
    for _ in range(3):
        publish(f1, F2_OWN)
    publish(f1, t.transaction_topic("s1", "F2"))
    publish(f2, F1_OWN)
    publish(f1, F1_OWN)
    assert wait_for(lambda: len(denied_lines(broker)) == 5)
    f1.close()
    f2.close()
    log = Path(broker.log_path)

    r = CliRunner().invoke(broker_denials_command, [str(log), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"total": 5, "denials": [
        {"client": "s1.F1", "topic": F2_OWN, "count": 3},
        {"client": "s1.F1", "topic": t.transaction_topic("s1", "F2"), "count": 1},
        {"client": "s1.F2", "topic": F1_OWN, "count": 1}]}
    plain = CliRunner().invoke(broker_denials_command, input=log.read_text(), catch_exceptions=False).output
    assert f"       3  s1.F1  {F2_OWN}" in plain and "5 denied publish(es) from 2 client(s)" in plain

    # As the timer runs it: each run reads the lines since the last (journalctl's cursor), adds to the file.
    prom = tmp_path / "textfile" / "chargeapp_broker_denials.prom"
    r = CliRunner().invoke(broker_denials_command, ["--quiet", "--textfile", str(prom)], input=log.read_text(),
                           catch_exceptions=False)
    assert r.output == ""
    assert read_textfile(prom) == (5, {"s1.F1": 4, "s1.F2": 1})
    f2 = device(broker, credentials, user="s1.F2")
    publish(f2, F1_OWN)
    f2.close()
    assert wait_for(lambda: len(denied_lines(broker)) == 6)
    CliRunner().invoke(broker_denials_command, ["--quiet", "--textfile", str(prom), "-"],
                       input="\n".join(denied_lines(broker)[-1:]) + "\n", catch_exceptions=False)
    assert read_textfile(prom) == (6, {"s1.F1": 4, "s1.F2": 2})
    text = prom.read_text()
    assert f"# TYPE {TOTAL} counter\n{TOTAL} 6\n" in text
    assert f'{BY_CLIENT}{{client="s1.F2"}} 2' in text and f"# TYPE {LAST_RUN} gauge" in text

    # A run over nothing still writes the counters (the total exists from the first run, at 0 if need be).
    CliRunner().invoke(broker_denials_command, ["--quiet", "--textfile", str(prom)], input="", catch_exceptions=False)
    assert read_textfile(prom) == (6, {"s1.F1": 4, "s1.F2": 2})


def test_denial_lines_parse_whatever_the_prefix_and_topic():
    lines = [
        "1796691424: Denied PUBLISH from s1.F1 (d0, q1, r0, m1, 'stations/s1/chargers/F2/meter', ... (6 bytes))",
        "2026-12-01T10:00:00: Denied PUBLISH from s1.F1 (d1, q1, r1, m65535, 'a/it's, ... (odd)/x', ... (0 bytes))",
        "Dec 01 10:00:00 host mosquitto[811]: Denied PUBLISH from z2m (d0, q0, r0, m0, 'zigbee2mqtt/door 1', ... (12 bytes))",
        "Received PUBLISH from s1.F1 (d0, q1, r0, m2, 'stations/s1/chargers/F1/meter', ... (2 bytes))",
        "Denied PUBLISH from broken line",
        "",
    ]
    assert count_denials(lines) == {("s1.F1", "stations/s1/chargers/F2/meter"): 1,
                                    ("s1.F1", "a/it's, ... (odd)/x"): 1, ("z2m", "zigbee2mqtt/door 1"): 1}


def test_broker_denials_unit_and_timer_run_the_command_as_it_is():
    import shlex

    service = (ROOT / "deploy" / "systemd" / "chargeapp-broker-denials.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    pipeline = shlex.split(exec_start.partition("=")[2])[-1]
    journal, command = pipeline.split(" | ")
    assert "journalctl -u mosquitto -o cat" in journal and "--cursor-file=/var/lib/chargeapp-broker-denials/" in journal
    argv = shlex.split(command)
    assert argv[:2] == ["/opt/chargeapp/.venv/bin/chargeapp", "broker-denials"]
    with broker_denials_command.make_context("broker-denials", argv[2:]) as ctx:
        assert ctx.params["quiet"] and str(ctx.params["textfile"]).startswith("/var/lib/prometheus/node-exporter/")
    assert "StateDirectory=chargeapp-broker-denials" in service
    dropin = (ROOT / "deploy" / "systemd" / "mosquitto.service.d" / "chargeapp.conf").read_text()
    assert "LogRateLimitIntervalSec=0" in dropin
