"""The deployment as a whole on one machine: Mosquitto with the shipped configuration and generated
credentials, two `chargeapp bridge` workers started as the systemd units start them (own broker user each,
one share group, protocol=5), a charger logging in with its generated password: its status reaches the
database, and so do messages published while one worker is down (once it is back: see below)."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from chargeapp import telemetry as t
from tests.deploy.conftest import BRIDGE_USERS
from tests.deploy.support import ROOT, connect, wait_for

pytestmark = pytest.mark.e2e

START_TIMEOUT = 20.0


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path}/test.db"


def connector_status(db_path, charger: str) -> str | None:
    with sqlite3.connect(db_path, timeout=5) as conn:
        row = conn.execute("SELECT c.status FROM connectors c JOIN chargers ch ON ch.id = c.charger_id "
                           "WHERE ch.code = ? AND c.number = 1", (charger,)).fetchone()
    return row[0] if row else None


def applied_seqs(db_path) -> list[int]:
    """The seq of every message the bridge recorded as applied (one row per device, boot and seq)."""
    with sqlite3.connect(db_path, timeout=5) as conn:
        return sorted(r[0] for r in conn.execute("SELECT seq FROM applied_messages"))


def start_worker(n: int, broker, credentials, db_path, tmp_path) -> subprocess.Popen:
    user = BRIDGE_USERS[n - 1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEAPP_")}
    env.update({
        "CHARGEAPP_DATABASE_URL": f"sqlite:///{db_path}",
        "CHARGEAPP_MQTT_URL": f"mqtt://{user}:{credentials.passwords[user]}@127.0.0.1:{broker.port}?protocol=5",
    })
    log = open(tmp_path / f"bridge-{n}.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "chargeapp.cli", "bridge", "--group", "chargeapp", "--client-id", user,
             "--metrics-port", "0", "--periodic-seconds", "0"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def status(charger: str, value: str, seq: int) -> tuple[str, bytes]:
    return t.format_message(t.StatusMessage(station="s1", device_id=charger, device_ts=datetime.now(timezone.utc),
                                            boot=1, seq=seq, connector=1, status=value))


@pytest.fixture
def two_workers(broker, credentials, tmp_path, app):
    """Two bridge workers on the station fixture's SQLite database; yields (workers, db path, restart_1)."""
    db_path = tmp_path / "test.db"
    workers = [start_worker(n, broker, credentials, db_path, tmp_path) for n in (1, 2)]

    def connected(user: str, times: int = 1) -> bool:
        for n, w in enumerate(workers, 1):
            assert w.poll() is None, (tmp_path / f"bridge-{n}.log").read_text()
        return broker.log().count(f" as {user} (p5") >= times

    def restart_first():
        stop(workers[0])
        yield
        workers[0] = start_worker(1, broker, credentials, db_path, tmp_path)
        assert wait_for(lambda: connected(BRIDGE_USERS[0], 2), START_TIMEOUT, interval=0.1), broker.log()

    try:
        assert wait_for(lambda: all(connected(u) for u in BRIDGE_USERS), START_TIMEOUT, interval=0.1), broker.log()
        yield workers, db_path, restart_first
    finally:
        for w in workers:
            stop(w)
    assert "not authorised" not in broker.log()


def run_scenario(broker, credentials, db_path, restart_first) -> None:
    """Status seq 1 with both workers up; seq 2-5 while worker 1 is stopped; worker 1 back."""
    charger = connect(broker, "s1.F1", credentials.passwords["s1.F1"])
    topic, payload = status("F1", "Charging", 1)
    charger.publish(topic, payload, retain=True)
    assert wait_for(lambda: connector_status(db_path, "F1") == "Charging", START_TIMEOUT, interval=0.1)
    # One worker stops (as `systemctl restart chargeapp-bridge@1` does). Mosquitto 2.0 keeps dealing the stopped
    # worker's share of the group to its persistent session, so some messages wait for it (nothing is lost).
    restart = restart_first()
    next(restart)
    for seq, value in ((2, "Finishing"), (3, "Available"), (4, "Preparing"), (5, "Available")):
        topic, payload = status("F1", value, seq)
        charger.publish(topic, payload, retain=True)
    next(restart, None)  # worker 1 back with its own session (its username), evicting nobody
    assert wait_for(lambda: applied_seqs(db_path) == [1, 2, 3, 4, 5], START_TIMEOUT, interval=0.1), applied_seqs(db_path)
    charger.close()


def test_bridge_workers_apply_every_message_through_the_shipped_broker(broker, credentials, two_workers):
    workers, db_path, restart_first = two_workers
    run_scenario(broker, credentials, db_path, restart_first)
    assert all(w.poll() is None for w in workers)


def test_after_a_worker_restart_the_connector_shows_the_chargers_latest_status(broker, credentials, two_workers):
    """Deterministic: repeats the outage until the running worker got the newest message and the stopped one the
    one before (Mosquitto deals round robin), then checks the connector's status once all are applied."""
    workers, db_path, restart_first = two_workers
    charger = connect(broker, "s1.F1", credentials.passwords["s1.F1"])
    seq = 0
    for _attempt in range(8):
        seq += 1  # both workers up: one message, so the round robin's parity changes from attempt to attempt
        topic, payload = status("F1", "Charging", seq)
        charger.publish(topic, payload, retain=True)
        assert wait_for(lambda: seq in applied_seqs(db_path), START_TIMEOUT, interval=0.05)
        restart = restart_first()
        next(restart)
        for value in ("Finishing", "Available", "Preparing", "Available"):
            seq += 1
            topic, payload = status("F1", value, seq)
            charger.publish(topic, payload, retain=True)
        wait_for(lambda: seq in applied_seqs(db_path), 2.0, interval=0.05)
        newest_applied_first = seq in applied_seqs(db_path) and seq - 1 not in applied_seqs(db_path)
        next(restart, None)
        assert wait_for(lambda: applied_seqs(db_path) == list(range(1, seq + 1)), START_TIMEOUT, interval=0.1)
        if newest_applied_first:
            break  # the case that once went wrong happened, and every attempt ended right
    charger.close()
    assert connector_status(db_path, "F1") == "Available"
