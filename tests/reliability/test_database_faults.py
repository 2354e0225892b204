"""PostgreSQL down for 30 s, and hung for 20 s, under a running bridge and a running web service (issue 7).

Each test starts its own PostgreSQL cluster (initdb on a free loopback port, as
the unprivileged ``postgres`` user when run as root), a private Mosquitto that
logs every packet, the real bridge (``python -m mqtt_bridge``, a subprocess) and
the real web service (gunicorn with gunicorn.conf.py, two workers), both on one
migrated, seeded database. Then:

- *down*: ``pg_ctl stop -m immediate`` (no shutdown checkpoint, connections cut,
  like a crash), 30 s, ``pg_ctl start``;
- *hung*: SIGSTOP to the postmaster and every backend (connections stay open,
  the kernel still accepts what is sent, nothing answers), 20 s, SIGCONT.

During the fault devices keep publishing through the broker. Checked: the bridge
and gunicorn processes never exit; the bridge acknowledges (PUBACK, read from
Mosquitto's debug log) nothing it has not committed; its /healthz says so; the
web service answers 503 with a message within a bounded time, never a 500 or a
hang; after the fault the backlog drains (every (device, seq) applied once) and
both say healthy again. Loopback only; every wait bounded; everything stopped.
"""
from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from chargeapp import telemetry as t
from chargeapp.app import REPLY_MARGIN
from mqtt_bridge.measure import MOSQUITTO, Mosquitto, free_port, publish_all, workload
from tests.deploy.test_gunicorn import running_gunicorn

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)) \
    if Path("/usr/lib/postgresql").is_dir() else []
DOWN_SECONDS = 30.0  # the figures
HANG_SECONDS = 20.0
BRIDGE_ID = "fault-bridge"
STATION = "yangpu-liaoyuan"  # the demo station `seed --demo` creates
CHARGERS, SENSORS, GATES = ["F1", "F2", "F3", "S01", "S02"], ["door-hall", "door-tea"], ["gate-in", "gate-out"]
# The web service's answer while the database is unreachable: at most the checkout ping (2 s) and one
# connect attempt (CHARGEAPP_DB_CONNECT_TIMEOUT, 5 s), plus slack for a loaded CI machine.
WEB_BOUND = 12.0
# The bridge: after the fault it retries at least every 5 s (WorkerOptions.retry_max_seconds).
DRAIN_BOUND = 30.0


# --------------------------------------------------------------------------- a PostgreSQL cluster of the test's own


class PgCluster:
    """A throw-away cluster on 127.0.0.1:<free port> that the test stops, kills and freezes."""

    def __init__(self) -> None:
        self.bin = PG_BINS[-1]
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="chargeapp-pgfault-", dir="/tmp"))
        self.data = self.dir / "data"
        self._as_postgres = os.geteuid() == 0  # initdb refuses root: run the server as 'postgres'
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self.stopped_pids: list[int] = []

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"{tool} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def start(self) -> float:
        """pg_ctl start -w; seconds it took (crash recovery included after an immediate stop)."""
        started = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", "-o",
                  f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.dir} -c fsync=off "
                  "-c max_connections=100", "start", timeout=90)
        return time.monotonic() - started

    def stop_immediate(self) -> None:
        """Like a crash: no checkpoint, every connection cut at once."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def _pids(self) -> list[int]:
        """The postmaster first, then every process it started (backends, checkpointer, ...)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == postmaster:
                children.append(int(stat.parent.name))
        return [postmaster, *children]

    def hang(self) -> int:
        """SIGSTOP the postmaster (so it starts nothing new), then its children; how many processes."""
        self.stopped_pids = self._pids()
        for pid in self.stopped_pids:
            os.kill(pid, signal.SIGSTOP)
        return len(self.stopped_pids)

    def resume(self) -> None:
        for pid in reversed(self.stopped_pids):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stopped_pids = []

    def create_database(self, name: str) -> str:
        engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                               isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        self.resume()
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop_immediate()
            except AssertionError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def pg():
    if not PG_BINS:
        pytest.fail("PostgreSQL server binaries are not installed (Debian: apt-get install postgresql)", pytrace=False)
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


# --------------------------------------------------------------------------- the bridge and the broker


class BridgeProcess:
    """``python -m mqtt_bridge`` against the database and the broker, its /healthz and /metrics on a free port."""

    def __init__(self, database_url: str, broker: Mosquitto, log_path: Path):
        self.metrics_port = free_port()
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEAPP_")}
        env.update({"PYTHONPATH": str(REPO), "CHARGEAPP_DATABASE_URL": database_url,
                    "CHARGEAPP_MQTT_URL": f"{broker.url}?client_id={BRIDGE_ID}&protocol=5"})
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mqtt_bridge", "--metrics-port", str(self.metrics_port), "--batch-size", "50",
                 "--periodic-seconds", "1"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        assert wait(lambda: b"subscribed to" in log_path.read_bytes() or self.proc.poll() is not None, 30)
        self.assert_alive()

    def assert_alive(self) -> None:
        assert self.proc.poll() is None, f"the bridge exited {self.proc.returncode}:\n{self.log()[-4000:]}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def health(self) -> tuple[int, dict, float]:
        status, body, elapsed = http("GET", f"http://127.0.0.1:{self.metrics_port}/healthz", timeout=5)
        return status, body, elapsed

    def metric(self, name: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text_ = r.read().decode()
        return sum(float(line.split()[-1]) for line in text_.splitlines() if line.startswith(name + " ")
                   or line.startswith(name + "{"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def pubacks_from_bridge(broker: Mosquitto) -> int:
    """PUBACKs the bridge sent, as Mosquitto logged them (log_type debug): the bridge's own acknowledgements."""
    return broker.log_path.read_text(errors="replace").count(f"Received PUBACK from {BRIDGE_ID} ")


@pytest.fixture
def broker(tmp_path):
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed (Debian: apt-get install mosquitto)", pytrace=False)
    # Anonymous, no persistence, unlimited queues, and every packet in the log.
    b = Mosquitto(tmp_path / "mosquitto", extra_conf="log_type debug\n").start()
    yield b
    b.stop()


# --------------------------------------------------------------------------- helpers


def wait(predicate, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def http(method: str, url: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict, float]:
    """(status, JSON body or {}, seconds); a timeout or refused connection is status -1."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, method=method, data=data, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except OSError as e:
        return -1, {"error": repr(e)}, time.monotonic() - started
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"raw": raw[:200].decode(errors="replace")}
    return status, parsed, time.monotonic() - started


def count(database_url: str, sql: str) -> int | None:
    """A committed count, or None while the database does not answer (bounded: 3 s to connect, 5 s to answer)."""
    engine = create_engine(database_url, connect_args={"connect_timeout": 3, "options": "-c statement_timeout=5000"},
                           pool_pre_ping=False)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    except Exception:  # noqa: BLE001 (down or hung: the caller waits)
        return None
    finally:
        engine.dispose()


WEB_PROBES = (("GET", "/healthz", None), ("GET", "/api/v1/stations", None),
              ("POST", "/api/v1/auth/login", {"email": "driver@demo.chargeapp", "password": "wrong-password"}))


def probe_web(base: str) -> list[tuple[str, int, dict, float]]:
    """The probes at once (one thread each): (path, status, body, seconds)."""
    out: list = [None] * len(WEB_PROBES)

    def one(i, method, path, body):
        out[i] = (path, *http(method, base + path, body, timeout=60))

    threads = [threading.Thread(target=one, args=(i, *p)) for i, p in enumerate(WEB_PROBES)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(70)
    return out


def assert_web_unavailable(results, bound: float) -> float:
    """Every probe a 503 with a message, each within ``bound`` seconds; the slowest."""
    for path, status, body, elapsed in results:
        assert status == 503, (path, status, body, elapsed)
        assert body.get("code") == "database_unavailable" and body.get("message"), (path, body)
        assert elapsed < bound, (path, elapsed)
    return max(r[3] for r in results)


ONLINE = {t.TopicKind.CHARGER_ONLINE, t.TopicKind.DOOR_ONLINE, t.TopicKind.GATE_ONLINE}


def messages(n: int) -> list[tuple[str, bytes]]:
    # Device clocks on the real time: the bridge process uses the system clock.
    return workload(STATION, CHARGERS, SENSORS, GATES, n, datetime.now(timezone.utc) - timedelta(minutes=30))


def assert_every_message_applied_once(database_url: str, sent: list[tuple[str, bytes]]) -> None:
    kinds = Counter(t.parse_topic(topic).kind for topic, _ in sent)
    device_messages = sum(n for kind, n in kinds.items() if kind not in ONLINE)  # online is state, not in sequence
    assert count(database_url, "SELECT count(*) FROM applied_messages") == device_messages
    assert count(database_url, "SELECT count(*) FROM (SELECT DISTINCT device, boot, seq FROM applied_messages) d") \
        == device_messages
    assert count(database_url, "SELECT count(*) FROM meter_readings") == kinds[t.TopicKind.METER]
    assert count(database_url, "SELECT count(*) FROM dead_letters") == 0
    assert count(database_url, "SELECT coalesce(sum(missing), 0) FROM device_sequences") == 0


def retry_gaps(bridge_log: str) -> list[float]:
    """The waits the bridge announced between its retries of a failed batch (seconds)."""
    return [float(x) for x in re.findall(r"rolled back, retrying in ([0-9.]+) s", bridge_log)]


class QueryInTransaction(threading.Thread):
    """An app of the test's own holding a transaction open; ``go`` runs one more query in it (during the hang).

    The checkout ping does not help here (the connection is already checked out):
    only the client's reply limit (statement_timeout + 5 s, here 2 + 5) ends the wait.
    """

    STATEMENT_TIMEOUT = 2.0

    def __init__(self, database_url: str):
        super().__init__(daemon=True)
        self.database_url = database_url
        self.ready, self.go = threading.Event(), threading.Event()
        self.result: tuple[str, str, float] | None = None

    def run(self) -> None:
        from chargeapp.app import create_app
        from chargeapp.config import Settings
        from chargeapp.db import db

        timeouts = {**Settings().flask_config()["CHARGEAPP_DB_TIMEOUTS"], "statement": self.STATEMENT_TIMEOUT}
        app = create_app({"SQLALCHEMY_DATABASE_URI": self.database_url, "CHARGEAPP_DB_TIMEOUTS": timeouts})
        with app.app_context():
            db.session.execute(text("SELECT 1"))  # BEGIN: the connection stays with this session
            self.ready.set()
            self.go.wait(60)
            started = time.monotonic()
            try:
                db.session.execute(text("SELECT 2"))
                self.result = ("answered", "", time.monotonic() - started)
            except Exception as exc:  # noqa: BLE001 (the test asserts its type)
                self.result = (type(exc).__name__, str(exc).splitlines()[0], time.monotonic() - started)
            finally:
                db.session.remove()
                db.engine.dispose()


# --------------------------------------------------------------------------- the tests


def run_fault(pg: PgCluster, broker: Mosquitto, tmp_path, *, fault: str, seconds: float) -> dict:
    """The common script of both tests; returns the figures for the report."""
    database_url = pg.create_database("chargeapp_fault")
    sent = messages(600)
    before, during, after = sent[:200], sent[200:500], sent[500:]
    figures: dict = {"fault": fault, "seconds": seconds}
    with running_gunicorn(tmp_path, workers=2, threads=4, CHARGEAPP_DATABASE_URL=database_url) as (base, web_log):
        bridge = BridgeProcess(database_url, broker, tmp_path / "bridge.log")
        try:
            applied = "SELECT count(*) FROM applied_messages"
            publish_all(broker.port, before, timeout=30)
            assert wait(lambda: count(database_url, applied) == len(before), 30), bridge.log()[-3000:]
            assert wait(lambda: pubacks_from_bridge(broker) == len(before), 10)
            assert bridge.health()[0] == 200

            in_transaction = QueryInTransaction(database_url)
            in_transaction.start()
            assert in_transaction.ready.wait(30)

            # ---- the fault
            fault_started = time.monotonic()
            if fault == "down":
                pg.stop_immediate()
            else:
                figures["stopped_processes"] = pg.hang()
            in_transaction.go.set()
            publish_all(broker.port, during, timeout=30)  # the broker accepts them (PUBACK to the devices)
            web = probe_web(base)
            figures["web_503_slowest_s"] = round(assert_web_unavailable(web, WEB_BOUND), 2)
            # Half way and at the end of the fault: still alive, still nothing acknowledged.
            time.sleep(max(0.0, seconds / 2 - (time.monotonic() - fault_started)))
            bridge.assert_alive()
            assert pubacks_from_bridge(broker) == len(before)
            figures["web_503_slowest_s"] = max(figures["web_503_slowest_s"],
                                               round(assert_web_unavailable(probe_web(base), WEB_BOUND), 2))
            in_transaction.join(15)
            kind, message, waited = in_transaction.result
            figures["query_in_transaction"] = f"{kind} after {waited:.2f} s"
            assert kind == "OperationalError", in_transaction.result
            if fault == "hang":  # the reply limit; when down, the cut connection fails at once
                limit = QueryInTransaction.STATEMENT_TIMEOUT + REPLY_MARGIN
                assert limit - 0.5 < waited < limit + 5, in_transaction.result
                assert f"did not answer within {limit:g} s" in message, message
            # A batch or housekeeping transaction caught mid-query waits for the reply limit (13 s by default)
            # before the bridge calls the database failed; it must do so within the fault.
            assert wait(lambda: bridge.health()[0] == 503, max(1.0, seconds - 2 - (time.monotonic() - fault_started))), \
                bridge.health()
            figures["bridge_unhealthy_by_s"] = round(time.monotonic() - fault_started, 1)
            status, health, health_s = bridge.health()
            assert (status, health["database_ok"], health["worker_alive"]) == (503, False, True), health
            assert health_s < 5
            figures["bridge_healthz_s"] = round(health_s, 3)
            figures["bridge_db_errors"] = int(bridge.metric("chargeapp_bridge_db_errors_total"))
            assert figures["bridge_db_errors"] >= 1
            bridge.assert_alive()
            assert pubacks_from_bridge(broker) == len(before), "the bridge acknowledged a message it had not applied"
            assert count(database_url, applied) is None  # still no database, or the check above proved nothing
            time.sleep(max(0.0, seconds - (time.monotonic() - fault_started)))

            # ---- back
            recovered_at = time.monotonic()
            if fault == "down":
                figures["pg_restart_s"] = round(pg.start(), 2)
            else:
                pg.resume()
            publish_all(broker.port, after, timeout=30)
            total = len(before) + len(during) + len(after)
            device_total = sum(1 for topic, _ in sent if t.parse_topic(topic).kind not in ONLINE)
            assert wait(lambda: count(database_url, applied) == device_total, DRAIN_BOUND), bridge.log()[-4000:]
            figures["drain_s"] = round(time.monotonic() - recovered_at, 2)
            assert wait(lambda: pubacks_from_bridge(broker) == total, 10)
            assert wait(lambda: bridge.health()[0] == 200, 15), bridge.health()
            assert wait(lambda: http("GET", base + "/healthz", timeout=10)[0] == 200, 30)
            figures["web_recovered_s"] = round(time.monotonic() - recovered_at, 2)
            assert http("GET", base + "/api/v1/stations")[0] == 200
            assert http("POST", base + "/api/v1/auth/login",
                        {"email": "driver@demo.chargeapp", "password": "wrong-password"})[0] == 401
            bridge.assert_alive()
            gaps = retry_gaps(bridge.log())
            figures["bridge_retries"] = len(gaps)
            figures["bridge_longest_retry_wait_s"] = max(gaps) if gaps else None
            assert gaps and max(gaps) <= 5.0
        finally:
            rc = bridge.stop()
        assert rc == 0, bridge.log()[-3000:]
        assert_every_message_applied_once(database_url, sent)
        web_text = web_log.read_text(errors="replace")
        assert '" 500 ' not in web_text, "the web service answered 500"
        assert "WORKER TIMEOUT" not in web_text
        assert web_text.count("Booting worker with pid") == 2, "a gunicorn worker died and was replaced"
    figures["published"] = len(sent)
    figures["total_s"] = round(time.monotonic() - fault_started, 1)
    print(f"\n{fault}: {json.dumps(figures)}")
    return figures


def test_postgres_down_30_s_nothing_acknowledged_unapplied_web_503_then_the_backlog_drains(pg, broker, tmp_path):
    run_fault(pg, broker, tmp_path, fault="down", seconds=DOWN_SECONDS)


def test_postgres_hung_20_s_bounded_waits_nothing_acknowledged_unapplied_then_the_backlog_drains(pg, broker, tmp_path):
    run_fault(pg, broker, tmp_path, fault="hang", seconds=HANG_SECONDS)
