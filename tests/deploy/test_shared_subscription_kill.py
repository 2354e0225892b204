"""Issue 5: three bridge workers in one MQTT 5 share group, one killed with SIGKILL mid-run, on the shipped broker.

Everything as deployed, on loopback: Mosquitto with deploy/mosquitto/mosquitto.conf and the files
`chargeapp mqtt-credentials` writes (a user per device, bridge-1..3), three `chargeapp bridge --group chargeapp`
processes as the systemd units start them (own broker user each, protocol 5, periodic work every 5 s), and 200
simulated devices each logged in with its own password: 160 chargers (statuses, transactions, meter samples) and 40
door counters (cumulative totals), 100 messages each with boot 1 and seq 1..100, 20,000 in all. Devices publish in
rounds (every device's next message, in a shuffled order), so the broker's round robin deals one device's messages
to all three workers, and the workers apply them in whatever order their batches commit.

When a third of the messages are applied, the worker holding the periodic lease is killed with SIGKILL (no commit,
no acknowledgement, no lease release) and restarted 2 s later, as the unit's Restart=always/RestartSec=2 does. It
must be restarted: Mosquitto 2.0 keeps dealing the dead worker's share of the group to its persistent session, so
without a restart those messages wait there (late, not lost) and never drain. The restarted worker resumes its
session and gets its unacknowledged messages again.

Then: applied_messages holds exactly the (device, boot, seq) published, once each; every connector shows its
charger's last status; every transaction's session has the published start, stop, meters and readings; every door
counter holds its last totals and its zone the published in - out; no dead letters, no counted gap left. The lease
row, sampled every 50 ms, changes holder only after the old holder's lease ran out, and the surviving workers'
metrics show the periodic work ran in one worker and was skipped by the others. SQLite, and PostgreSQL when
CHARGEAPP_TEST_POSTGRES_URL is set.
"""
from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.pool import NullPool

from chargeapp import telemetry as t
from chargeapp.db import models as m
from chargeapp.services import lounge
from chargeapp.services.registry import ChargerSpec, SensorSpec, StationSpec, ZoneSpec, build_station
from tests.deploy.conftest import run_credentials
from tests.deploy.support import MOSQUITTO, ROOT, Mosquitto, connect, free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UTC = timezone.utc
STATIONS = ("k1", "k2")
CHARGERS_PER_STATION = 80
SENSORS_PER_STATION = 20
MESSAGES_PER_DEVICE = 100  # 200 devices x 100 = 20,000 messages
WORKERS = ("bridge-1", "bridge-2", "bridge-3")
PERIODIC_SECONDS = 5.0  # the default; the lease lives 3 intervals (Worker._lease_ttl)
LEASE_TTL = timedelta(seconds=3 * PERIODIC_SECONDS)
KILL_AT = 1 / 3  # share of the messages applied when the lease holder is killed
RESTART_AFTER = 2.0  # seconds: RestartSec of deploy/systemd/chargeapp-bridge@.service
START_TIMEOUT = 30.0
PUBLISH_TIMEOUT = 60.0
DRAIN_TIMEOUT = 240.0  # a bound for a loaded CI machine; the run itself takes far less (see docs/bridge.md)
SEED = 5


# --------------------------------------------------------------------------- the devices and what they publish


@dataclass
class Script:
    """One device's messages in publishing order, and what applying all of them must leave behind."""

    username: str
    device: t.DeviceRef
    messages: list = field(default_factory=list)
    last_status: tuple[str, datetime] | None = None  # chargers: (status, ts) of the newest status
    sessions: dict[int, dict] = field(default_factory=dict)  # chargers: transaction id -> expected figures
    totals: tuple[int, int] | None = None  # door counters: the last (in_total, out_total)


class _Numbered:
    """boot 1, seq +1 per message, device time +1 s per message."""

    def __init__(self, station: str, code: str, start: datetime):
        self.station, self.code, self.seq, self.start = station, code, 0, start

    def header(self) -> dict:
        self.seq += 1
        return {"station": self.station, "device_id": self.code, "boot": 1, "seq": self.seq,
                "device_ts": self.start + timedelta(seconds=self.seq)}


def charger_script(station: str, code: str, start: datetime, rng: random.Random) -> Script:
    """Sessions of Preparing, start, Charging, meter samples, stop, Finishing, Available; the last one may stay open
    (the charger still Charging) or the charger ends Faulted."""
    s = Script(f"{station}.{code}", t.DeviceRef(t.DeviceKind.CHARGER, station, code))
    dev = _Numbered(station, code, start)
    register = rng.randrange(1_000_000, 9_000_000)  # the connector's cumulative import register, Wh
    tx = rng.randrange(1, 1_000) * 1_000

    def status(value: str) -> None:
        msg = t.StatusMessage(**dev.header(), connector=1, status=value)
        s.messages.append(msg)
        s.last_status = (value, msg.device_ts)

    while True:
        left = MESSAGES_PER_DEVICE - len(s.messages)
        if left < 3:
            for value in ("Faulted", "Available")[:left]:
                status(value)
            return s
        tx += 1
        session = s.sessions[tx] = {"readings": 0, "last_energy": None, "stopped_at": None, "stop_meter_wh": None,
                                    "closed_by": None}
        meters = rng.randint(15, 30) if left >= 6 + 30 else left - 3
        status("Preparing")
        msg = t.TransactionEvent(**dev.header(), event="start", connector=1, transaction_id=tx, meter_wh=register,
                                 id_tag=f"TAG-{code}")
        s.messages.append(msg)
        session.update(started_at=msg.device_ts, start_meter_wh=register)
        status("Charging")
        for _ in range(meters):
            register += rng.randrange(100, 2_000)
            s.messages.append(t.MeterSample(**dev.header(), connector=1, transaction_id=tx, energy_wh=register,
                                            power_w=rng.randrange(7_000, 120_000), soc=rng.randrange(5, 100)))
            session["readings"] += 1
            session["last_energy"] = register
        if MESSAGES_PER_DEVICE - len(s.messages) < 3:
            continue  # no room for stop, Finishing, Available: the session stays open
        register += rng.randrange(0, 500)
        msg = t.TransactionEvent(**dev.header(), event="stop", connector=1, transaction_id=tx, meter_wh=register,
                                 id_tag=f"TAG-{code}", reason="EVDisconnected")
        s.messages.append(msg)
        session.update(stopped_at=msg.device_ts, stop_meter_wh=register, closed_by="stop")
        status("Finishing")
        status("Available")


def door_script(station: str, code: str, start: datetime, rng: random.Random) -> Script:
    """Cumulative totals since boot 1 (seq 1 included), out never above in."""
    s = Script(f"{station}.{code}", t.DeviceRef(t.DeviceKind.DOOR_SENSOR, station, code))
    dev = _Numbered(station, code, start)
    in_total = out_total = 0
    for _ in range(MESSAGES_PER_DEVICE):
        in_total += rng.randrange(0, 4)
        out_total += rng.randrange(0, min(3, in_total - out_total) + 1)
        s.messages.append(t.DoorCount(**dev.header(), in_total=in_total, out_total=out_total))
    s.totals = (in_total, out_total)
    return s


def charger_code(i: int) -> str:
    return f"C{i:03d}"


def sensor_code(i: int) -> str:
    return f"D{i:02d}"


def network_specs() -> list[StationSpec]:
    """Two stations of 80 chargers and 20 door counters; each counter counts into a zone of its own. No nightly
    reset, so a zone's count is every door change since the start."""
    return [
        StationSpec(
            code=code, name=f"Station {code}", latitude=31.27, longitude=121.52,
            chargers=[ChargerSpec(charger_code(i)) for i in range(1, CHARGERS_PER_STATION + 1)],
            zones=[ZoneSpec(f"z-{sensor_code(i)}", f"Zone {i}", 10_000) for i in range(1, SENSORS_PER_STATION + 1)],
            sensors=[SensorSpec(sensor_code(i), f"z-{sensor_code(i)}") for i in range(1, SENSORS_PER_STATION + 1)],
            rules={"lounge_reset_time": None},
        )
        for code in STATIONS
    ]


def scripts(start: datetime) -> list[Script]:
    rng = random.Random(SEED)
    out = []
    for station in STATIONS:
        out += [charger_script(station, charger_code(i), start, rng) for i in range(1, CHARGERS_PER_STATION + 1)]
        out += [door_script(station, sensor_code(i), start, rng) for i in range(1, SENSORS_PER_STATION + 1)]
    return out


# --------------------------------------------------------------------------- processes


def _env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEAPP_")}
    env.update({"CHARGEAPP_DATABASE_URL": database_url, **extra})
    return env


@dataclass
class Worker:
    """One `chargeapp bridge` process of the share group, as chargeapp-bridge@N runs it."""

    user: str
    password: str
    database_url: str
    broker_port: int
    log_path: Path
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    starts: int = 0

    def start(self) -> None:
        env = _env(self.database_url,
                   CHARGEAPP_MQTT_URL=f"mqtt://{self.user}:{self.password}@127.0.0.1:{self.broker_port}?protocol=5")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "chargeapp.cli", "bridge", "--group", "chargeapp", "--client-id", self.user,
                 "--metrics-port", str(self.metrics_port), "--periodic-seconds", str(PERIODIC_SECONDS)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.starts += 1

    def healthy(self) -> bool:
        assert self.proc.poll() is None, self.log()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def metric(self, name: str, **labels: str) -> float:
        """One sample of this worker's /metrics (0 when absent)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
        found = re.search(r"^" + pattern + r"$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Reader:
    """Reads while the workers write: SQLite through a read-only connection (the app's engines begin every
    transaction with BEGIN IMMEDIATE, which would take the writers' lock), PostgreSQL through a plain engine."""

    def __init__(self, database_url: str):
        self.sqlite_path = database_url[len("sqlite:///"):] if database_url.startswith("sqlite:///") else None
        self.engine = None if self.sqlite_path else create_engine(database_url, poolclass=NullPool)

    def rows(self, sql: str) -> list[tuple]:
        if self.sqlite_path is None:
            with self.engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql))]
        conn = sqlite3.connect(f"file:{self.sqlite_path}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def applied(self) -> int:
        return self.rows("SELECT count(*) FROM applied_messages")[0][0]

    def lease(self) -> tuple[str, datetime] | None:
        rows = self.rows("SELECT holder, expires_at FROM leases WHERE name = 'periodic'")
        if not rows:
            return None
        holder, expires = rows[0]
        if isinstance(expires, str):
            expires = datetime.fromisoformat(expires)
        return holder, expires.replace(tzinfo=UTC)  # stored as naive UTC (chargeapp.db.UTCDateTime)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


class LeaseWatch:
    """Samples the periodic lease row every 50 ms: (holder, expires_at) each time it changes."""

    def __init__(self, reader: Reader):
        self.reader = reader
        self.samples: list[tuple[str, datetime]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                row = self.reader.lease()
            except Exception as exc:  # a busy moment: the next sample will do
                self.errors.append(type(exc).__name__)
                continue
            if row is not None and (not self.samples or self.samples[-1] != row):
                self.samples.append(row)

    def holder(self) -> str | None:
        return self.samples[-1][0] if self.samples else None

    def start(self) -> "LeaseWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def publish_rounds(devices: dict[str, object], plan: list[Script], rng: random.Random) -> list:
    """Every device's next message, round after round, devices shuffled per round; QoS 1, not waiting for acks."""
    infos = []
    for r in range(MESSAGES_PER_DEVICE):
        order = list(plan)
        rng.shuffle(order)
        for s in order:
            topic, payload = t.format_message(s.messages[r])
            infos.append(devices[s.username].paho.publish(topic, payload, qos=1, retain=t.parse_topic(topic).retained))
    return infos


# --------------------------------------------------------------------------- the test


@pytest.fixture
def network(app, session, clock):
    for spec in network_specs():
        build_station(session, spec, clock.now())
    session.commit()
    return app


def test_three_workers_one_killed_mid_run_apply_20000_messages_from_200_devices_once_each(network, session,
                                                                                         tmp_path):
    app = network
    if not Path(MOSQUITTO).exists():
        pytest.fail(f"no Mosquitto at {MOSQUITTO}: apt-get install mosquitto (this test needs the real broker)")
    database_url = app.config["SQLALCHEMY_DATABASE_URI"]
    credentials = run_credentials(app, tmp_path / "creds", *[a for u in WORKERS for a in ("--bridge-user", u)])
    session.remove()  # nothing of the test's may hold SQLite's write lock while the workers run
    broker = Mosquitto(tmp_path / "broker", credentials.passwd, credentials.acl).start()
    reader = Reader(database_url)
    # Device clocks are real time: the workers run on the system clock.
    plan = scripts(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10))
    published = {(f"{s.device.kind.value}:{s.device.station}/{s.device.device_id}", 1, msg.seq)
                 for s in plan for msg in s.messages}
    total = len(published)
    assert total == 20_000 and len(plan) == 200

    workers = [Worker(u, credentials.passwords[u], database_url, broker.port, tmp_path / f"{u}.log") for u in WORKERS]
    watch = LeaseWatch(reader)
    devices: dict[str, object] = {}
    figures: dict[str, object] = {}
    try:
        for w in workers:
            w.start()
        assert wait_for(lambda: all(w.healthy() for w in workers), START_TIMEOUT, interval=0.1), (
            [w.log()[-2000:] for w in workers])
        for s in plan:
            devices[s.username] = connect(broker, s.username, credentials.passwords[s.username],
                                          client_id=s.username)
            assert devices[s.username].rc == 0, s.username
        watch.start()

        started = time.monotonic()
        infos = publish_rounds(devices, plan, random.Random(SEED))
        deadline = time.monotonic() + PUBLISH_TIMEOUT
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        assert all(info.is_published() for info in infos), "the broker did not acknowledge every publish"
        figures["published_s"] = round(time.monotonic() - started, 1)  # every PUBACK in

        # Kill the worker that holds the periodic lease once a third of the messages are applied.
        assert wait_for(lambda: reader.applied() >= total * KILL_AT, DRAIN_TIMEOUT, interval=0.1), (
            reader.applied(), [w.log()[-2000:] for w in workers])
        holder = watch.holder() or ""
        victim = next((w for w in workers if f":{w.proc.pid}:" in holder), workers[0])
        victim.kill9()
        killed_at = time.monotonic()
        figures.update(kill_s=round(killed_at - started, 1), applied_at_kill=reader.applied(),
                       killed=victim.user, killed_held_lease=f":{victim.proc.pid}:" in holder)
        assert figures["applied_at_kill"] < total, "the run ended before the kill: publish more"

        time.sleep(RESTART_AFTER)
        victim.start()
        assert wait_for(victim.healthy, START_TIMEOUT, interval=0.1), victim.log()[-3000:]
        assert "session resumed" in victim.log(), victim.log()[-3000:]

        assert wait_for(lambda: reader.applied() >= total, DRAIN_TIMEOUT, interval=0.2), (
            reader.applied(), [w.log()[-2000:] for w in workers])
        figures["drained_s"] = round(time.monotonic() - started, 1)
        if figures["killed_held_lease"]:  # its lease runs out LEASE_TTL after its last renewal; then one takes it
            wait_for(lambda: holder not in (watch.holder(), None), 2 * LEASE_TTL.total_seconds(), interval=0.2)

        figures["periodic"] = {w.user: {r: int(w.metric("chargeapp_bridge_periodic_runs_total", result=r))
                                        for r in ("ran", "skipped", "error")} for w in workers}
        figures["duplicates"] = int(sum(w.metric("chargeapp_bridge_duplicates_total", retained=r)
                                        for w in workers for r in ("true", "false")))
        figures["acks_dropped"] = int(sum(w.metric("chargeapp_bridge_acks_dropped_total") for w in workers))
    finally:
        watch.stop()
        for c in devices.values():
            c.close()
        codes = {w.user: w.stop() for w in workers}
        broker.stop()
        reader.close()
    assert all(code == 0 for code in codes.values()), (codes, [w.log()[-3000:] for w in workers])
    assert "not authorised" not in broker.log()
    print(f"\nshared subscription, {len(WORKERS)} workers, {total} messages from {len(plan)} devices "
          f"on {app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]}: {figures}")

    check_applied_once(session, published)
    check_chargers(session, [s for s in plan if s.device.kind is t.DeviceKind.CHARGER], figures)
    check_door_counters(session, [s for s in plan if s.device.kind is t.DeviceKind.DOOR_SENSOR])
    check_one_lease_holder_at_a_time(watch.samples, workers, victim, figures)
    print(f"figures: {figures}")


# --------------------------------------------------------------------------- what must hold


def check_applied_once(session, published: set[tuple[str, int, int]]) -> None:
    rows = session.execute(select(m.AppliedMessage.device, m.AppliedMessage.boot, m.AppliedMessage.seq)).all()
    applied = Counter(tuple(r) for r in rows)
    twice = [k for k, n in applied.items() if n > 1]
    assert not twice, f"applied more than once: {twice[:10]}"
    lost = published - set(applied)
    assert not lost, f"{len(lost)} lost, e.g. {sorted(lost)[:10]}"
    assert set(applied) == published, f"applied but never published: {sorted(set(applied) - published)[:10]}"
    assert session.scalar(select(func.count()).select_from(m.DeadLetter)) == 0, (
        session.execute(select(m.DeadLetter.reason, m.DeadLetter.detail).limit(5)).all())
    sequences = session.execute(
        select(m.DeviceSequence.boot, m.DeviceSequence.last_seq, m.DeviceSequence.missing)).all()
    assert len(sequences) == 200 and set(sequences) == {(1, MESSAGES_PER_DEVICE, 0)}, Counter(sequences)


def applied_out_of_order(session) -> int:
    """Devices with a message applied (committed id order) before one of its lower seqs: the workers shared them."""
    by_device = defaultdict(list)
    for device, seq in session.execute(select(m.AppliedMessage.device, m.AppliedMessage.seq)
                                       .order_by(m.AppliedMessage.id)):
        by_device[device].append(seq)
    return sum(1 for seqs in by_device.values() if seqs != sorted(seqs))


def check_chargers(session, plan: list[Script], figures: dict) -> None:
    rows = session.execute(
        select(m.Station.code, m.Charger.code, m.Connector.status, m.Connector.status_at)
        .join(m.Charger, m.Charger.station_id == m.Station.id).join(m.Connector, m.Connector.charger_id == m.Charger.id)
    ).all()
    current = {(st, ch): (status, at) for st, ch, status, at in rows}
    wrong = [(s.username, current[(s.device.station, s.device.device_id)], s.last_status) for s in plan
             if current[(s.device.station, s.device.device_id)] != s.last_status]
    assert not wrong, f"{len(wrong)} connectors not at their charger's last status, e.g. {wrong[:5]}"
    statuses = sum(1 for s in plan for msg in s.messages if isinstance(msg, t.StatusMessage))
    assert session.scalar(select(func.count()).select_from(m.StatusChange)) == statuses  # one history row each

    got = {}
    per_session = session.execute(
        select(m.MeterReading.session_id, func.count(), func.max(m.MeterReading.energy_wh))
        .group_by(m.MeterReading.session_id)).all()
    readings = {sid: n for sid, n, _ in per_session}
    last_energy = {sid: wh for sid, _, wh in per_session}
    flags = Counter()
    for cs, station, charger in session.execute(
        select(m.ChargingSession, m.Station.code, m.Charger.code)
        .join(m.Charger, m.ChargingSession.charger_id == m.Charger.id)
        .join(m.Station, m.Charger.station_id == m.Station.id)
    ):
        got[(station, charger, cs.transaction_id)] = {
            "started_at": cs.started_at, "start_meter_wh": cs.start_meter_wh, "stopped_at": cs.stopped_at,
            "stop_meter_wh": cs.stop_meter_wh, "closed_by": cs.closed_by, "readings": readings.get(cs.id, 0),
            "last_energy": last_energy.get(cs.id)}
        flags.update(cs.flags or [])
    expected = {(s.device.station, s.device.device_id, tx): want for s in plan for tx, want in s.sessions.items()}
    assert set(got) == set(expected), (sorted(set(got) ^ set(expected))[:10])
    wrong = [(k, got[k], v) for k, v in expected.items() if got[k] != v]
    assert not wrong, f"{len(wrong)} of {len(expected)} sessions differ from what was published, e.g. {wrong[:3]}"
    meters = sum(1 for s in plan for msg in s.messages if isinstance(msg, t.MeterSample))
    assert session.scalar(select(func.count()).select_from(m.MeterReading)) == meters
    # Flags record how messages arrived (a meter before its start, a stop after a later start closed the
    # session): they differ from run to run and are reported, not asserted.
    figures.update(sessions=len(expected), open_sessions=sum(1 for v in expected.values() if v["closed_by"] is None),
                   session_flags=dict(flags), devices_applied_out_of_order=applied_out_of_order(session))
    assert figures["devices_applied_out_of_order"] > 0, "every device's messages applied in order: no sharing shown"


def check_door_counters(session, plan: list[Script]) -> None:
    now = datetime.now(UTC)
    sensors = {(st, code): (sensor, zone) for sensor, st, code, zone in session.execute(
        select(m.DoorSensor, m.Station.code, m.DoorSensor.code, m.Zone)
        .join(m.Station, m.DoorSensor.station_id == m.Station.id).join(m.Zone, m.DoorSensor.zone_in_id == m.Zone.id))}
    wrong = []
    for s in plan:
        sensor, zone = sensors[(s.device.station, s.device.device_id)]
        in_total, out_total = s.totals
        got = ((sensor.boot, sensor.seq, sensor.in_total, sensor.out_total), lounge.zone_count_at(session, zone, now))
        want = ((1, MESSAGES_PER_DEVICE, in_total, out_total), in_total - out_total)
        if got != want:
            wrong.append((s.username, got, want))
    assert not wrong, f"{len(wrong)} of {len(plan)} door counters wrong ((boot, seq, in, out), zone count): {wrong[:5]}"


def check_one_lease_holder_at_a_time(samples: list[tuple[str, datetime]], workers: list[Worker], victim: Worker,
                                     figures: dict) -> None:
    """A new holder appears only once the previous holder's lease (last expiry seen) has run out: it took the
    lease at its own expiry minus the TTL. The killed holder never released it, so its successor waited."""
    assert samples, "the periodic lease was never taken"
    holders = [h for i, (h, _) in enumerate(samples) if i == 0 or samples[i - 1][0] != h]
    overlaps = []
    for i in range(1, len(samples)):
        (old, old_expiry), (new, new_expiry) = samples[i - 1], samples[i]
        if new != old and new_expiry - LEASE_TTL < old_expiry:
            overlaps.append((old, old_expiry, new, new_expiry))
    assert not overlaps, f"the lease changed hands before it expired: {overlaps}"
    figures["lease_holders"] = [h.split(":", 1)[1] for h in holders]
    if figures["killed_held_lease"]:
        assert len(holders) >= 2, "the killed holder's lease never passed to another worker"
    # "error" is a run rolled back (on PostgreSQL a deadlock with a batch: receipts lock sessions in stop order);
    # the work is retried at the next interval, so errors are reported, not failed on.
    runs = figures["periodic"]
    assert sum(r["ran"] for r in runs.values()) > 0, runs
    assert sum(r["skipped"] for r in runs.values()) > 0, f"no worker was ever refused the lease: {runs}"
