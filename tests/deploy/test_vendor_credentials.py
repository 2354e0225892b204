"""`chargeapp mqtt-credentials` for vendor devices (Shelly Gen2 contacts, people counters): the ACL lines it writes,
and a real Mosquitto letting a vendor login publish exactly its devices' topics and the bridge read them."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from chargeapp import telemetry as t
from chargeapp.mqtt_credentials import mqtt_credentials_command
from chargeapp.services import registry
from tests.deploy.conftest import run_credentials
from tests.deploy.support import Mosquitto, connect
from tests.deploy.test_mqtt_credentials import acl_blocks

SHELLY = "shellyplusi4-a8032ab636ec"
SHELLY_2 = "site/b1/shellyplus1-08b61fcf1e44"
COUNTER = "counters/PC-0042/lines"


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path}/test.db"


@pytest.fixture
def vendor_registry(app, session, station, clock):
    from tests.factories import make_station

    make_station(session, clock.now(), code="s2")
    registry.map_door_contact(session, station_code="s1", address=f"{SHELLY}/input:0", adapter="shelly_gen2")
    registry.map_door_contact(session, station_code="s1", address=f"{SHELLY}/input:1", adapter="shelly_gen2")
    registry.map_door_contact(session, station_code="s2", address=f"{SHELLY_2}/input:0", adapter="shelly_gen2")
    registry.map_door_contact(session, station_code="s1", address="s1 lounge door")
    registry.map_counting_line(session, station_code="s1", sensor_code="D1", topic=COUNTER, line="L1")
    registry.map_counting_line(session, station_code="s1", sensor_code="D2", topic=COUNTER, line="L2")
    session.commit()


def test_a_vendor_login_gets_exactly_its_stations_vendor_topics_and_the_bridge_reads_them(app, vendor_registry, tmp_path):
    out = run_credentials(app, tmp_path / "c", "--bridge-user", "bridge-1", "--monitor-user", "ops",
                          "--vendor-user", "vendor-s1=s1", "--vendor-user", f"shelly-s2=s2,{SHELLY_2}",
                          "--zigbee2mqtt-user", "z2m-s1=s1")
    blocks = acl_blocks(out.acl.read_text())
    assert blocks["vendor-s1"] == [f"topic write {SHELLY}/status/input:0", f"topic write {SHELLY}/events/rpc",
                                   f"topic write {SHELLY}/status/input:1", f"topic write {COUNTER}"]
    assert blocks["shelly-s2"] == [f"topic write {SHELLY_2}/status/input:0", f"topic write {SHELLY_2}/events/rpc"]
    assert blocks["z2m-s1"] == [f"topic write {t.zigbee_topic('s1 lounge door')}"]  # not the Shelly addresses
    vendor_reads = {f"topic read {topic}" for topic in (f"{SHELLY}/status/input:0", f"{SHELLY}/events/rpc",
                                                        f"{SHELLY}/status/input:1", COUNTER,
                                                        f"{SHELLY_2}/status/input:0", f"{SHELLY_2}/events/rpc")}
    assert vendor_reads <= set(blocks["bridge-1"]) and vendor_reads <= set(blocks["ops"])
    assert "1 vendor" not in out.output and "2 vendor" in out.output


@pytest.mark.parametrize("spec, message", [("v=s9", "no station"), ("v=s2,nope", "no Shelly Gen2 contact"),
                                           ("v", "USER=STATION")])
def test_a_vendor_login_for_nothing_is_refused(app, vendor_registry, tmp_path, spec, message):
    with app.app_context():
        result = CliRunner().invoke(mqtt_credentials_command, ["--out", str(tmp_path / "x"), "--vendor-user", spec])
    assert result.exit_code != 0 and message in result.output


def test_mosquitto_lets_a_vendor_login_publish_its_devices_topics_only(app, vendor_registry, mosquitto_binary,
                                                                       tmp_path):
    creds = run_credentials(app, tmp_path / "c", "--bridge-user", "bridge-1", "--vendor-user",
                            f"shelly-s1=s1,{SHELLY}")
    broker = Mosquitto(tmp_path / "broker", creds.passwd, creds.acl).start()
    try:
        watcher = connect(broker, "bridge-1", creds.passwords["bridge-1"])
        assert watcher.subscribe(f"{SHELLY}/status/input:0", f"{SHELLY}/events/rpc", COUNTER,
                                 f"{SHELLY_2}/status/input:0") == [1, 1, 1, 1]
        shelly = connect(broker, "shelly-s1", creds.passwords["shelly-s1"])
        shelly.publish(f"{SHELLY_2}/status/input:0", b"forged")  # another station's Shelly
        shelly.publish(COUNTER, b"forged")  # the station's counter, not this device
        shelly.publish(t.door_count_topic("s1", "D1"), b"forged")
        shelly.publish(f"{SHELLY}/status/input:0", b'{"id":0,"state":true}')
        assert watcher.wait_message(lambda msg: msg.topic == f"{SHELLY}/status/input:0")
        assert [msg for msg in watcher.received if msg.payload == b"forged"] == []
        shelly.close(), watcher.close()
    finally:
        broker.stop()
