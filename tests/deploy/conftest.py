"""Fixtures for the deployment tests: the credentials `chargeapp mqtt-credentials` writes for the
``station`` fixture's registry, and a real Mosquitto running the shipped configuration with them."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from chargeapp.mqtt_credentials import mqtt_credentials_command
from tests.deploy.support import MOSQUITTO, Mosquitto

BRIDGE_USERS = ("bridge-1", "bridge-2")
MONITOR_USER = "monitor"
ZIGBEE_USER = "z2m"


@dataclass
class Credentials:
    dir: Path
    passwd: Path
    acl: Path
    secrets_file: Path
    passwords: dict[str, str]
    output: str

    @property
    def devices(self) -> list[dict[str, str]]:
        with self.secrets_file.open(newline="") as f:
            return [row for row in csv.DictReader(f) if row["kind"] in ("charger", "door_sensor", "gate")]


def run_credentials(app, out: Path, *args: str, env: dict[str, str] | None = None) -> Credentials:
    """Invoke the command in the app's context (it reads the registry through db.session)."""
    with app.app_context():
        result = CliRunner().invoke(mqtt_credentials_command, ["--out", str(out), *args], env=env,
                                    catch_exceptions=False)
    assert result.exit_code == 0, result.output
    secrets_file = out / "device-secrets.csv"
    with secrets_file.open(newline="") as f:
        passwords = {row["username"]: row["password"] for row in csv.DictReader(f)}
    return Credentials(out, out / "passwd", out / "acl", secrets_file, passwords, result.output)


@pytest.fixture
def credentials(app, station, tmp_path) -> Credentials:
    args = ([a for u in BRIDGE_USERS for a in ("--bridge-user", u)] + ["--monitor-user", MONITOR_USER]
            + ["--zigbee2mqtt-user", ZIGBEE_USER])
    return run_credentials(app, tmp_path / "creds", *args)


@pytest.fixture
def mosquitto_binary() -> str:
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (Debian: apt-get install mosquitto)", pytrace=False)
    return MOSQUITTO


@pytest.fixture
def broker(mosquitto_binary, credentials, tmp_path):
    """Mosquitto with the shipped configuration and the generated files, on a free 127.0.0.1 port."""
    b = Mosquitto(tmp_path / "broker", credentials.passwd, credentials.acl).start()
    yield b
    b.stop()
