"""The systemd units and the compose file: valid, and every command they run parses with the CLI as it is."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from chargeapp.mqtt_credentials import mqtt_credentials_command
from mqtt_bridge.cli import bridge_command
from mqtt_bridge.client import parse_mqtt_url
from simulators.cli import simulate_command
from tests.deploy.support import ROOT

pytestmark = pytest.mark.integration

DEPLOY = ROOT / "deploy"
UNITS = sorted((DEPLOY / "systemd").glob("*.service")) + sorted((DEPLOY / "systemd").glob("*.timer"))
COMMANDS = {"bridge": bridge_command, "simulate": simulate_command, "mqtt-credentials": mqtt_credentials_command}


def unit_settings(path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def parses(argv: list[str]) -> None:
    """argv after 'chargeapp' must parse with the real click command (options and values checked, nothing run)."""
    name, *args = argv
    command = COMMANDS[name]
    with command.make_context(name, list(args)) as ctx:
        assert ctx.params is not None


def test_systemd_units_verify():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not installed", pytrace=False)
    done = subprocess.run([tool, "verify", *map(str, UNITS)], capture_output=True, text=True, timeout=60)
    # On a host without the application installed, only its paths may be missing.
    problems = [line for line in done.stderr.splitlines()
                if line.strip() and "/opt/chargeapp" not in line and "/etc/chargeapp" not in line]
    assert problems == [], done.stderr


def test_units_run_existing_commands_and_files():
    web = unit_settings(DEPLOY / "systemd" / "chargeapp-web.service")
    assert web["ExecStart"] == ["/opt/chargeapp/.venv/bin/gunicorn -c /opt/chargeapp/gunicorn.conf.py wsgi:app"]
    assert (ROOT / "gunicorn.conf.py").exists() and (ROOT / "wsgi.py").exists()
    assert web["Type"] == ["notify"] and web["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for unit in ("chargeapp-bridge@.service", "chargeapp-simulate.service"):
        settings = unit_settings(DEPLOY / "systemd" / unit)
        argv = shlex.split(settings["ExecStart"][0].replace("%i", "1"))
        assert argv[0] == "/opt/chargeapp/.venv/bin/chargeapp"
        parses(argv[1:])
    bridge = unit_settings(DEPLOY / "systemd" / "chargeapp-bridge@.service")
    assert "--client-id bridge-%i" in bridge["ExecStart"][0]
    assert "/etc/chargeapp/bridge-%i.env" in bridge["EnvironmentFile"]
    timer = unit_settings(DEPLOY / "systemd" / "chargeapp-pg-backup.timer")
    assert timer["Persistent"] == ["true"]


def test_compose_file_is_consistent():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "mosquitto", "migrate", "mqtt-credentials", "web"} <= set(services)
    mosquitto_mounts = services["mosquitto"]["volumes"]
    assert "./mosquitto/mosquitto.conf:/etc/mosquitto/mosquitto.conf:ro" in mosquitto_mounts
    assert (DEPLOY / "mosquitto" / "mosquitto.conf").exists()
    assert "mosquitto-auth:/etc/mosquitto/chargeapp:ro" in mosquitto_mounts  # where the shipped config looks
    # Every chargeapp command in the file parses.
    credentials = services["mqtt-credentials"]["command"]
    assert credentials[0] == "chargeapp"
    parses(credentials[1:])
    bridge_users = {a.split("=", 1)[1] for a in credentials if a.startswith("--bridge-user=")}
    bridges = {name: s for name, s in services.items() if name.startswith("bridge-")}
    assert set(bridges) == bridge_users and len(bridges) >= 2
    for name, service in bridges.items():
        parses(service["command"][1:])
        client_id = service["command"][service["command"].index("--client-id") + 1]
        url = re.sub(r"\$\{[^}]*\}", "pw", service["environment"]["CHARGEAPP_MQTT_URL"])
        settings = parse_mqtt_url(url)
        assert settings.username == client_id == name  # one broker user (and session) per worker
        assert settings.protocol == "5"  # named: no start-up probe
    for name in ("web", "migrate", "bridge-1"):
        env = services[name]["environment"]
        assert env["CHARGEAPP_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["CHARGEAPP_RATELIMIT_STORAGE_URL"].startswith("redis://")
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["web"]["environment"]["CHARGEAPP_TRUSTED_PROXIES"] == "1"  # behind the host's nginx
    example = (DEPLOY / "compose.env.example").read_text()
    for var in set(re.findall(r"\$\{(\w+):\?", (DEPLOY / "compose.yaml").read_text())):
        assert f"{var}=" in example, var


def test_env_example_trusts_exactly_the_nginx_hop():
    lines = (DEPLOY / "chargeapp.env.example").read_text().splitlines()
    assert "CHARGEAPP_TRUSTED_PROXIES=1" in lines
    assert any(line.startswith("CHARGEAPP_RATELIMIT_STORAGE_URL=redis://") for line in lines)


def test_the_guides_mqtt_credentials_commands_parse():
    text = (ROOT / "docs" / "deploy.md").read_text().replace("\\\n", " ")
    commands = [line.strip() for line in text.splitlines() if "chargeapp-admin mqtt-credentials" in line]
    assert len(commands) >= 2
    for line in commands:
        argv = shlex.split(line[line.index("chargeapp-admin mqtt-credentials"):])
        parses(argv[1:])
    assert "--file-group mosquitto" in text  # Mosquitto reads the files after dropping root
    assert "protocol=5" in text
