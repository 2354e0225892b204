"""``chargeapp simulate``: options, the dry run, broker URLs."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

from chargeapp import telemetry as t
from simulators.cli import parse_duration, parse_start, simulate_command
from simulators.mqtt import BrokerSettings

pytestmark = pytest.mark.unit


def test_a_dry_run_prints_contract_messages_as_json_lines_and_is_reproducible():
    args = ["--dry-run", "--station", "hongkou-quyang", "--seed", "9", "--start", "2026-11-22T11:00:00+08:00",
            "--duration", "2h", "--progress-interval", "0"]
    first = CliRunner().invoke(simulate_command, args)
    second = CliRunner().invoke(simulate_command, args)
    assert first.exit_code == 0, first.output
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(lines) > 100
    for line in lines:
        payload = json.dumps(line["payload"], ensure_ascii=False).encode()
        t.parse_message(line["topic"], payload, datetime.fromisoformat(line["at"]) + timedelta(seconds=1))
    assert first.stdout == second.stdout


def test_simulate_needs_a_broker_unless_dry_run(monkeypatch):
    monkeypatch.delenv("CHARGEAPP_MQTT_URL", raising=False)
    result = CliRunner().invoke(simulate_command, ["--duration", "1m"])
    assert result.exit_code == 2 and "No broker" in result.output
    result = CliRunner().invoke(simulate_command, ["--dry-run"])
    assert result.exit_code == 2 and "--duration" in result.output
    result = CliRunner().invoke(simulate_command, ["--dry-run", "--duration", "1m", "--station", "nowhere"])
    assert result.exit_code == 2 and "no simulator layout" in result.output


def test_durations_and_start_times():
    assert parse_duration("90") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("1d") == timedelta(days=1)
    with pytest.raises(ValueError):
        parse_duration("soon")
    assert parse_start("2026-11-22T06:00").utcoffset() == timedelta(hours=8)  # Shanghai when no offset
    assert parse_start("2026-11-22T06:00Z").utcoffset() == timedelta(0)


def test_broker_urls():
    plain = BrokerSettings.from_url("mqtt://127.0.0.1:1884?protocol=3.1.1")
    assert (plain.host, plain.port, plain.tls, plain.protocol) == ("127.0.0.1", 1884, False, "3.1.1")
    tls = BrokerSettings.from_url("mqtts://user:pw@broker.example?protocol=5&ca=/etc/ca.pem")
    assert (tls.port, tls.tls, tls.protocol, tls.ca_certs) == (8883, True, "5", "/etc/ca.pem")
    assert BrokerSettings.from_url("mqtt://h").protocol == "3.1.1"
    shared = BrokerSettings.from_url("mqtts://h?protocol=auto&client_id=bridge-1&insecure=1&cert=c.pem&key=k.pem")
    assert (shared.protocol, shared.tls_insecure, shared.certfile, shared.keyfile) == ("3.1.1", True, "c.pem", "k.pem")
    with pytest.raises(ValueError):
        BrokerSettings.from_url("http://h")
    with pytest.raises(ValueError):
        BrokerSettings.from_url("mqtt://h?protocol=4")


def test_the_simulators_import_only_the_telemetry_contract_the_config_and_the_clock():
    import subprocess
    import sys

    code = ("import sys, simulators.cli, simulators.mqtt, simulators.runner, simulators.bookings\n"
            "print(sorted(m for m in sys.modules if m.startswith('chargeapp') or m.split('.')[0] in "
            "('flask', 'sqlalchemy', 'marshmallow', 'mqtt_bridge', 'requests')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['chargeapp', 'chargeapp.clock', 'chargeapp.config', 'chargeapp.telemetry']"
