"""`chargeapp mqtt-credentials` (files, re-runs, rotation) and the shipped Mosquitto configuration, without a broker.

What Mosquitto does with these files is proved in test_mosquitto_acl.py.
"""
from __future__ import annotations

import base64
import re
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from chargeapp import telemetry as t
from chargeapp.db import models as m
from chargeapp.mqtt_credentials import (
    hash_password, mqtt_credentials_command, read_passwd, verify_password,
)
from tests.deploy.conftest import BRIDGE_USERS, MONITOR_USER, ZIGBEE_USER, run_credentials
from tests.deploy.support import SHIPPED_CONF, example_topic, shipped_settings

pytestmark = pytest.mark.integration

DEVICES = ["s1.F1", "s1.F2", "s1.F3", "s1.S01", "s1.S02", "s1.D1", "s1.D2", "s1.G-in", "s1.G-out"]


def acl_blocks(text: str) -> dict[str, list[str]]:
    """user -> its 'topic ...' lines; lines before the first user under the key None."""
    blocks: dict = {None: []}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("user "):
            current = line[5:]
            assert current not in blocks, f"user {current} twice"
            blocks[current] = []
        else:
            blocks[current].append(line)
    return blocks


# --------------------------------------------------------------------------- hashes


def test_hash_is_the_format_mosquitto_passwd_writes(tmp_path):
    # A vector made with `mosquitto_passwd -b` (Mosquitto 2.0.11): same salt, same password, same line.
    salt = base64.b64decode("bc4zgE9xRVIvzHHd")
    assert hash_password("s3cret", salt=salt) == (
        "$7$101$bc4zgE9xRVIvzHHd$7ycVDCQSHuNyAR1MtkRCiE7MTe9t7UCXfDOoinC/zQr8e0tquF4TaJUwuqBYpGMogRflrGLmswFn29PrfbxIKg=="
    )
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", hash_password("x"))
    assert verify_password("x", hash_password("x")) is True
    assert verify_password("y", hash_password("x")) is False
    assert verify_password("x", "$6$abc$def") is None


def test_hash_made_by_this_hosts_mosquitto_passwd_verifies(tmp_path):
    tool = Path("/usr/bin/mosquitto_passwd")
    if not tool.exists():
        pytest.fail("mosquitto_passwd is not installed", pytrace=False)
    pw = tmp_path / "pw"
    subprocess.run([str(tool), "-c", "-b", str(pw), "alice", "correct horse"], check=True, timeout=10)
    hashed = read_passwd(pw)["alice"]
    assert verify_password("correct horse", hashed) is True
    assert verify_password("wrong horse", hashed) is False


# --------------------------------------------------------------------------- files


def test_files_one_user_per_device_and_bridge_worker(credentials):
    users = list(read_passwd(credentials.passwd))
    assert users == [*BRIDGE_USERS, MONITOR_USER, ZIGBEE_USER, *DEVICES]
    assert set(credentials.passwords) == set(users)  # all generated, so all in the secrets file
    assert len(set(credentials.passwords.values())) == len(users)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{24}", p) for p in credentials.passwords.values())
    for user, hashed in read_passwd(credentials.passwd).items():
        assert verify_password(credentials.passwords[user], hashed) is True
    assert "users: 13 (5 charger, 2 door_sensor, 2 gate, 2 bridge, 1 monitor, 1 zigbee2mqtt)" in credentials.output
    assert "password" not in credentials.output.lower().split("passwords:")[0]  # no secrets on stdout
    for p in credentials.passwords.values():
        assert p not in credentials.output


def test_file_modes_secrets_private(credentials):
    assert stat.S_IMODE(credentials.secrets_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.passwd.stat().st_mode) == 0o640
    assert stat.S_IMODE(credentials.acl.stat().st_mode) == 0o640
    assert not list(credentials.dir.glob(".*"))  # no temporary files left behind


def test_acl_each_device_exactly_its_own_topics(credentials):
    text = credentials.acl.read_text()
    assert "pattern" not in [line.split(" ")[0] for line in text.splitlines()]
    rules = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert "%c" not in rules and "%u" not in rules
    blocks = acl_blocks(text)
    assert blocks.pop(None) == []  # nothing for anonymous clients
    assert blocks["s1.F1"] == [
        "topic write stations/s1/chargers/F1/status/+",
        f"topic write {t.charger_online_topic('s1', 'F1')}",
        f"topic write {t.transaction_topic('s1', 'F1')}",
        f"topic write {t.meter_topic('s1', 'F1')}",
        f"topic write {t.command_results_topic('s1', 'F1')}",
        f"topic read {t.command_subscription('s1', 'F1')}",
    ]
    assert blocks["s1.D2"] == [f"topic write {t.door_count_topic('s1', 'D2')}",
                               f"topic write {t.door_online_topic('s1', 'D2')}"]
    assert blocks["s1.G-in"] == [f"topic write {t.gate_passage_topic('s1', 'G-in')}",
                                 f"topic write {t.gate_online_topic('s1', 'G-in')}"]
    for user in BRIDGE_USERS:
        assert blocks[user] == ["topic write stations/+/chargers/+/commands/+",
                                "topic read stations/#", "topic read zigbee2mqtt/#"]
    assert blocks[ZIGBEE_USER] == ["topic write zigbee2mqtt/#", "topic read zigbee2mqtt/#"]
    assert blocks[MONITOR_USER] == ["topic read stations/#", "topic read zigbee2mqtt/#"]
    # Only bridge users may write a command topic; every device's write filters are its own contract topics.
    for user, lines in blocks.items():
        for line in lines:
            access, topic = line.split(" ")[1:]
            if user in BRIDGE_USERS or user in (ZIGBEE_USER, MONITOR_USER):
                continue
            ref = t.parse_topic(example_topic(topic))
            assert f"{ref.station}.{ref.device_id}" == user
            assert (ref.kind is t.TopicKind.COMMAND) == (access == "read")


def test_rerun_keeps_every_password_and_file(app, credentials):
    before = {p: p.read_bytes() for p in (credentials.passwd, credentials.acl, credentials.secrets_file)}
    again = run_credentials(app, credentials.dir, "--bridge-user", BRIDGE_USERS[0], "--bridge-user", BRIDGE_USERS[1],
                            "--monitor-user", MONITOR_USER, "--zigbee2mqtt-user", ZIGBEE_USER)
    assert {p: p.read_bytes() for p in before} == before
    assert "0 new, 13 kept, 0 rotated" in again.output


def test_new_device_added_removed_device_dropped_others_kept(app, session, station, credentials):
    gate = session.query(m.Gate).filter_by(code="G-out").one()
    session.delete(gate)
    session.add(m.Charger(station_id=station.id, code="F9", kind="fast", mqtt_username="s1.F9"))
    session.commit()
    again = run_credentials(app, credentials.dir, "--bridge-user", BRIDGE_USERS[0], "--bridge-user", BRIDGE_USERS[1])
    old, new = read_passwd(credentials.passwd), again.passwords
    assert "s1.F9" in new and "s1.G-out" not in read_passwd(again.passwd) and "s1.G-out" not in new
    assert ZIGBEE_USER not in read_passwd(again.passwd)  # not asked for this time
    for user in ["s1.F1", "s1.D1", "s1.G-in", *BRIDGE_USERS]:
        assert new[user] == credentials.passwords[user]
        assert read_passwd(again.passwd)[user] == old[user]
    assert "1 new" in again.output and "users removed (monitor, s1.G-out, z2m)" in again.output
    assert "user s1.F9" in again.acl.read_text() and "s1.G-out" not in again.acl.read_text()


def test_rotate_all_and_rotate_one(app, credentials):
    args = ["--bridge-user", BRIDGE_USERS[0], "--bridge-user", BRIDGE_USERS[1], "--monitor-user", MONITOR_USER,
            "--zigbee2mqtt-user", ZIGBEE_USER]
    one = run_credentials(app, credentials.dir, *args, "--rotate-user", "s1.F2")
    changed = {u for u in credentials.passwords if one.passwords[u] != credentials.passwords[u]}
    assert changed == {"s1.F2"}
    assert verify_password(one.passwords["s1.F2"], read_passwd(one.passwd)["s1.F2"])
    every = run_credentials(app, credentials.dir, *args, "--rotate")
    assert all(every.passwords[u] != one.passwords[u] for u in one.passwords)
    assert "13 rotated" in every.output


def test_password_for_given_password_not_in_secrets_file(app, credentials):
    out = run_credentials(app, credentials.dir, "--bridge-user", "bridge-1", "--password-for", "bridge-1=env:BRIDGE_PW",
                          env={"BRIDGE_PW": "from-the-environment"})
    assert verify_password("from-the-environment", read_passwd(out.passwd)["bridge-1"])
    assert "bridge-1" not in out.passwords
    assert "from-the-environment" not in out.secrets_file.read_text() + out.output
    assert "1 given" in out.output
    # The same password again: the hash line is kept as it is.
    line = read_passwd(out.passwd)["bridge-1"]
    run_credentials(app, credentials.dir, "--bridge-user", "bridge-1", "--password-for", "bridge-1=from-the-environment")
    assert read_passwd(out.passwd)["bridge-1"] == line


def test_password_pattern_for_demo_devices_never_touches_bridge_users(app, station, tmp_path):
    out = run_credentials(app, tmp_path / "demo", "--password-for", "*=env:SIM_PW", env={"SIM_PW": "sim-device-pass"})
    hashes = read_passwd(out.passwd)
    assert all(verify_password("sim-device-pass", hashes[u]) for u in DEVICES)
    assert verify_password("sim-device-pass", hashes["bridge"]) is False
    assert set(out.passwords) == {"bridge"}


@pytest.mark.parametrize("args, message", [
    (["--bridge-user", "s1.F1"], "used twice"),
    (["--bridge-user", "has space"], "letters, digits"),
    (["--bridge-user", "a:b"], "letters, digits"),
    (["--password-for", "nobody=x"], "no user 'nobody'"),
    (["--password-for", "bridge"], "USER=PASSWORD"),
    (["--password-for", "bridge=env:CHARGEAPP_UNSET_VARIABLE_X"], "is not set"),
    (["--rotate-user", "nobody"], "no user 'nobody'"),
    (["--file-group", "no-such-group-x"], "no group"),
])
def test_bad_arguments_refused_and_nothing_written(app, station, tmp_path, args, message):
    with app.app_context():
        result = CliRunner().invoke(mqtt_credentials_command, ["--out", str(tmp_path / "x"), *args])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "x" / "passwd").exists()


def test_device_without_username_gets_no_access(app, session, station, tmp_path):
    session.add(m.Gate(station_id=station.id, code="G-side", mqtt_username=None))
    session.commit()
    with app.app_context():
        result = CliRunner().invoke(mqtt_credentials_command, ["--out", str(tmp_path / "c")])
    assert result.exit_code == 0
    assert "gate s1/G-side has no mqtt_username" in result.output
    assert "G-side" not in (tmp_path / "c" / "acl").read_text()


def test_file_group_applied(app, station, tmp_path):
    import grp
    import os

    group = grp.getgrgid(os.getgid()).gr_name
    out = run_credentials(app, tmp_path / "g", "--file-group", group)
    assert out.passwd.stat().st_gid == out.acl.stat().st_gid == out.dir.stat().st_gid == os.getgid()
    assert stat.S_IMODE(out.dir.stat().st_mode) & 0o050 == 0o050  # the broker's group may enter the directory
    numeric = run_credentials(app, tmp_path / "n", "--file-group", str(os.getgid()))
    assert numeric.passwd.stat().st_gid == os.getgid()


# --------------------------------------------------------------------------- the shipped configuration


def test_shipped_config_has_the_settings_the_network_depends_on():
    settings = shipped_settings()
    first = {}
    for key, value in settings:
        first.setdefault(key, value)
    assert first["allow_anonymous"] == "false"
    assert first["per_listener_settings"] == "false"
    assert first["password_file"] == "/etc/mosquitto/chargeapp/passwd"
    assert first["acl_file"] == "/etc/mosquitto/chargeapp/acl"
    assert first["persistence"] == "true"
    assert 1 <= int(first["autosave_interval"]) <= 60 and first["autosave_on_changes"] == "false"
    assert re.fullmatch(r"\d+[hdwmy]", first["persistent_client_expiration"])
    assert first["set_tcp_nodelay"] == "true"
    assert int(first["max_inflight_messages"]) >= 2 * 200  # two of the bridge's largest batches
    assert int(first["max_queued_messages"]) >= 100_000  # far past Mosquitto's default of 1000
    assert first["max_queued_bytes"] == "0"
    assert int(first["max_packet_size"]) > t.MAX_PAYLOAD_BYTES  # oversized payloads reach the bridge's dead letters
    assert all("%c" not in value for _, value in settings)


def test_every_listener_block_uses_username_as_client_id_including_the_commented_tls_one():
    lines = [line.strip() for line in SHIPPED_CONF.read_text().splitlines()]
    for commented in (False, True):
        prefix = "#" if commented else ""
        starts = [i for i, line in enumerate(lines) if line.startswith(f"{prefix}listener ")]
        assert starts, f"no {'commented ' if commented else ''}listener"
        for i in starts:
            block = []
            for line in lines[i + 1:]:
                if line.startswith(f"{prefix}listener ") or (commented and not line.startswith("#")):
                    break
                block.append(line)
            assert f"{prefix}use_username_as_clientid true" in block, lines[i]


def test_zigbee2mqtt_gateway_scoped_to_one_station_gets_exactly_its_door_contacts(app, session, station, clock, tmp_path):
    from tests.factories import make_station

    other = make_station(session, clock.now(), code="s2")
    session.add_all([m.DoorContact(station_id=station.id, friendly_name="s1 lounge door"),
                     m.DoorContact(station_id=station.id, friendly_name="s1-tea-door"),
                     m.DoorContact(station_id=other.id, friendly_name="s2-lounge-door")])
    session.commit()
    out = run_credentials(app, tmp_path / "z", "--zigbee2mqtt-user", "z2m-s1=s1", "--zigbee2mqtt-user", "z2m-all")
    blocks = acl_blocks(out.acl.read_text())
    assert blocks["z2m-s1"] == [f"topic write {t.zigbee_topic('s1 lounge door')}",
                                f"topic write {t.zigbee_topic('s1-tea-door')}"]
    assert blocks["z2m-all"] == ["topic write zigbee2mqtt/#", "topic read zigbee2mqtt/#"]
    with app.app_context():
        result = CliRunner().invoke(mqtt_credentials_command, ["--out", str(tmp_path / "y"), "--zigbee2mqtt-user", "z=nope"])
    assert result.exit_code != 0 and "no station 'nope'" in result.output


def test_ocpp_gateway_user_gets_exactly_what_each_ocpp_charger_would(app, runner, station, tmp_path):
    """The gateway speaks for the chargers with OCPP credentials: their topics, in the charger's own terms, and
    nothing of the chargers that speak MQTT themselves. Before any is registered it gets nothing, and says so."""
    from chargeapp.db import db
    from chargeapp.mqtt_credentials import charger_account

    out = run_credentials(app, tmp_path / "none", "--ocpp-gateway-user", "ocpp-gw")
    assert acl_blocks(out.acl.read_text())["ocpp-gw"] == []
    assert "warning: no charger has OCPP credentials" in out.output
    for charger in ("S01", "F1"):
        result = runner.invoke(args=["ocpp-password", "s1", charger])
        assert result.exit_code == 0, result.output
        assert "--ocpp-gateway-user" in result.output  # it tells the operator the broker needs the new topics
    db.session.remove()
    out = run_credentials(app, tmp_path / "two", "--ocpp-gateway-user", "ocpp-gw")
    expected = [f"topic write {topic}" for c in ("F1", "S01") for topic in charger_account("x", "s1", c).write] + [
        f"topic read {topic}" for c in ("F1", "S01") for topic in charger_account("x", "s1", c).read]
    blocks = acl_blocks(out.acl.read_text())
    assert blocks["ocpp-gw"] == expected
    assert "stations/s1/chargers/F2" not in "\n".join(blocks["ocpp-gw"])
    assert "users: 11 (5 charger, 2 door_sensor, 2 gate, 1 bridge, 1 ocpp_gateway)" in out.output
    assert "warning: no charger has OCPP credentials" not in out.output
    assert "ocpp-gw" in out.passwords  # generated like any other login, for CHARGEAPP_MQTT_URL of the gateway
