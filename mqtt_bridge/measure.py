"""Measure the bridge's sustained ingest against a bare paho subscriber on the same Mosquitto, in one run.

    python -m mqtt_bridge.measure --messages 20000

Starts a private Mosquitto on a free loopback port and a SQLite database in a
temporary directory with one station (chargers, door counters, gates). Both
subscribers first create their persistent sessions (subscribe, disconnect);
then N contract messages are published once, so the broker queues N for each.
Each subscriber is then timed draining its queue: (a) a bare paho client that
only counts and acknowledges, (b) the bridge applying every message to the
database (commit before ack). Prints both rates and their ratio.

Also the home of ``Mosquitto``, the throw-away broker the end-to-end tests use.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from chargeapp import telemetry as t

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
PUBLISH_WINDOW = 20_000


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listens(proc: subprocess.Popen, port: int) -> bool:
    """True once ``proc`` itself holds a socket listening on TCP ``port`` (Linux: /proc/net/tcp and its fds).

    Not "something accepts connections on the port": a port taken from ``free_port`` is free only when asked,
    and another test's broker started on it meanwhile would accept too; this test's clients would then talk
    to that broker (and, with the same client ids, take over its sessions) while its own broker exits with
    "Address already in use". Where /proc is not there, falls back to a connection.
    """
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False
    inodes = set()
    for table in tables:
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl local_address rem_address st ... inode: "0A" is LISTEN
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    try:
        fds = list(Path(f"/proc/{proc.pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


class Mosquitto:
    """A private Mosquitto on 127.0.0.1: anonymous, no persistence, queues without limit, config in ``workdir``."""

    def __init__(self, workdir: Path, port: int | None = None, *, max_inflight: int = 100, binary: str = MOSQUITTO,
                 extra_conf: str = ""):
        self.workdir = Path(workdir)
        self.extra_conf = extra_conf  # more configuration lines (e.g. "set_tcp_nodelay true\n")
        self._auto_port = port is None
        self.port = port or free_port()
        self.max_inflight = max_inflight
        self.binary = binary
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> "Mosquitto":
        """Start it and wait until it listens on its port; an auto-picked port lost to another process meanwhile
        is picked again (a port given by the caller, as for a restart on the same port, is not)."""
        for _attempt in range(5):
            if self._start(timeout):
                return self
            self.port = free_port()
        raise RuntimeError(f"mosquitto found no free port: {self.log_path.read_text()[-2000:]}")

    def _start(self, timeout: float) -> bool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence false\n"
            # Unacknowledged messages in flight per v3.1.1 client (v5 clients send their Receive Maximum).
            f"max_inflight_messages {self.max_inflight}\n"
            "max_queued_messages 0\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
            + self.extra_conf
        )
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                log = self.log_path.read_text()
                if "Address already in use" in log and self._auto_port:
                    return False
                raise RuntimeError(f"mosquitto exited: {log[-2000:]}")
            if listens(self.proc, self.port):
                return True
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None) is not None:
            self._log.close()


# --------------------------------------------------------------------------- the workload


def workload(station: str, chargers: list[str], sensors: list[str], gates: list[str], n: int,
             start: datetime, seed: int = 7, transaction_share: float = 0.0) -> list[tuple[str, bytes]]:
    """N contract messages of a busy station, in publish order, device timestamps from ``start`` 50 ms apart.

    Mostly meter samples of running transactions, with status changes, door
    counts and gate passages; every (device, boot, seq) distinct, every
    charger's transactions started before their samples and stopped at the end.
    ``transaction_share`` of the draws (taken from the meter samples) end a
    charger's transaction and start its next one (stop, Available, Preparing,
    start, Charging: five messages), so sessions also turn over mid-stream.
    """
    rnd = random.Random(seed)
    seq: dict[str, int] = {}
    energy = {c: 1_000_000 for c in chargers}
    tx = {c: 0 for c in chargers}
    totals = {s: [0, 0] for s in sensors}
    inside: list[str] = []
    out: list[tuple[str, bytes]] = []
    ts = start

    def header(device: str) -> dict:
        seq[device] = seq.get(device, 0) + 1
        return {"station": station, "device_id": device, "device_ts": ts, "boot": 1, "seq": seq[device]}

    def emit(message) -> None:
        out.append(t.format_message(message))

    for c in chargers:
        tx[c] += 1
        emit(t.StatusMessage(**header(c), connector=1, status="Charging"))
        emit(t.TransactionEvent(**header(c), event="start", connector=1, transaction_id=tx[c], meter_wh=energy[c],
                                id_tag=f"TAG-{c}"))
    while len(out) < n - 2 * len(chargers):
        ts += timedelta(milliseconds=50)
        roll = rnd.random()
        if roll < transaction_share:
            c = rnd.choice(chargers)
            emit(t.TransactionEvent(**header(c), event="stop", connector=1, transaction_id=tx[c], meter_wh=energy[c],
                                    reason="EVDisconnected"))
            emit(t.StatusMessage(**header(c), connector=1, status="Available"))
            emit(t.StatusMessage(**header(c), connector=1, status="Preparing"))
            tx[c] += 1
            emit(t.TransactionEvent(**header(c), event="start", connector=1, transaction_id=tx[c], meter_wh=energy[c],
                                    id_tag=f"TAG-{c}"))
            emit(t.StatusMessage(**header(c), connector=1, status="Charging"))
        elif roll < 0.70:
            c = rnd.choice(chargers)
            energy[c] += rnd.randint(50, 400)
            emit(t.MeterSample(**header(c), connector=1, transaction_id=tx[c], energy_wh=energy[c],
                               power_w=rnd.randint(20_000, 120_000), soc=rnd.randint(10, 90)))
        elif roll < 0.75:
            c = rnd.choice(chargers)
            emit(t.StatusMessage(**header(c), connector=1, status=rnd.choice(["Charging", "SuspendedEV"])))
        elif roll < 0.93:
            s = rnd.choice(sensors)
            totals[s][rnd.random() < 0.5] += 1
            emit(t.DoorCount(**header(s), in_total=totals[s][0], out_total=totals[s][1]))
        else:
            if inside and rnd.random() < 0.5:
                plate, direction = inside.pop(rnd.randrange(len(inside))), "out"
            else:
                plate, direction = f"沪A{rnd.randint(10000, 99999)}", "in"
                inside.append(plate)
            emit(t.GatePassage(**header(gates[0 if direction == "in" else -1]), plate=plate, direction=direction))
    for c in chargers:
        ts += timedelta(milliseconds=50)
        emit(t.TransactionEvent(**header(c), event="stop", connector=1, transaction_id=tx[c], meter_wh=energy[c],
                                reason="EVDisconnected"))
        emit(t.StatusMessage(**header(c), connector=1, status="Available"))
    return out


def publish_all(url_port: int, messages: list[tuple[str, bytes]], *, timeout: float = 120.0,
                client_id: str = "measure-publisher", username: str | None = "publisher") -> float:
    """Publish every (topic, payload) at QoS 1 (retained where the contract says) and wait for every PUBACK; seconds taken."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if username:
        c.username_pw_set(username)
    c.max_inflight_messages_set(200)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", url_port, keepalive=30)
    c.loop_start()
    started = time.monotonic()

    def acknowledged(info) -> None:
        info.wait_for_publish(timeout=max(0.1, timeout - (time.monotonic() - started)))
        if not info.is_published():
            raise TimeoutError("the broker did not acknowledge every publish in time")

    try:
        # Packet ids wrap at 65,535: at most PUBLISH_WINDOW unacknowledged publishes, or paho refuses a reused id.
        infos: deque = deque()
        for topic, payload in messages:
            if len(infos) >= PUBLISH_WINDOW:
                acknowledged(infos.popleft())
            infos.append(c.publish(topic, payload, qos=1, retain=t.parse_topic(topic).retained))
        for info in infos:
            acknowledged(info)
        return time.monotonic() - started
    finally:
        c.disconnect()
        c.loop_stop()


class BareSubscriber:
    """A paho client that only counts and acknowledges (the yardstick): persistent session, QoS 1, MQTT 5."""

    def __init__(self, port: int, client_id: str = "measure-bare"):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.port = port
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.done = threading.Event()
        self.expected = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        self.props = Properties(PacketTypes.CONNECT)
        self.props.SessionExpiryInterval = 3600
        self.props.ReceiveMaximum = 400
        self.client.on_message = self._on_message
        from paho.mqtt.subscribeoptions import SubscribeOptions

        options = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(s, options) for s in t.BRIDGE_SUBSCRIPTIONS])

    def _on_message(self, client, userdata, message) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.count += 1
        self.last = now
        if self.count >= self.expected:
            self.done.set()

    def connect(self, expected: int = 0) -> None:
        self.expected = expected
        self.client.connect("127.0.0.1", self.port, keepalive=30, clean_start=False, properties=self.props)
        self.client.loop_start()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# --------------------------------------------------------------------------- the run


@contextmanager
def station_database(workdir: Path, chargers: int, sensors: int, gates: int, database_url: str | None = None):
    """An app on a new database (SQLite in ``workdir`` unless ``database_url``, which must be empty) with one
    station of that many chargers, door sensors and gates; yields the app in its app context."""
    from sqlalchemy import inspect

    from chargeapp.app import create_app
    from chargeapp.db import db
    from chargeapp.services.registry import (
        ChargerSpec,
        SensorSpec,
        StationSpec,
        ZoneSpec,
        build_station,
    )

    url = database_url or f"sqlite:///{workdir}/measure.db"
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "CHARGEAPP_MQTT_URL": None})
    with app.app_context():
        if inspect(db.engine).get_table_names():
            raise SystemExit(f"{url} is not empty: the measurement needs an empty database")
        db.create_all()
        build_station(db.session, StationSpec(
            code="m1", name="Measure", latitude=31.2, longitude=121.5,
            chargers=[ChargerSpec(f"F{i}", "fast") for i in range(1, chargers + 1)],
            zones=[ZoneSpec("hall", "Hall", 500)],
            sensors=[SensorSpec(f"D{i}", "hall") for i in range(1, sensors + 1)],
            gates=[f"G{i}" for i in range(1, gates + 1)],
        ), datetime.now(timezone.utc))
        db.session.commit()
        yield app


def run(messages: int, batch_size: int, batch_ms: float, chargers: int = 20, sensors: int = 4, gates: int = 2,
        workdir: Path | None = None, profile: str | None = None, database_url: str | None = None,
        transaction_share: float = 0.0) -> dict:
    """Both measurements in one run; returns the figures (messages/s) and the settings used.

    ``db_applied_rows`` counts the messages the database holds as applied
    (``applied_messages``, one row per device message): with ``messages`` it
    shows that no QoS 1 message was lost on the way.
    """
    from mqtt_bridge.bridge import Bridge, BridgeOptions
    from mqtt_bridge.worker import WorkerOptions

    own_dir = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="bridge-measure-"))
    broker = Mosquitto(workdir / "broker").start()
    try:
        with station_database(workdir, chargers, sensors, gates, database_url) as app:
            options = BridgeOptions(
                mqtt_url=f"{broker.url}?client_id=measure-bridge&protocol=5", metrics_port=0,
                worker=WorkerOptions(batch_size=batch_size, batch_ms=batch_ms, periodic_seconds=0, outbox_seconds=0),
            )
            # 1. Both persistent sessions exist (subscribed) before anything is published.
            bare = BareSubscriber(broker.port)
            bare.connect()
            bridge = Bridge(app, options).start()
            if not bridge.client.wait_connected(15):
                raise RuntimeError("the bridge did not connect")
            time.sleep(0.5)  # SUBACKs
            bridge.stop()
            bare.disconnect()

            # 2. N messages, queued by the broker for both sessions.
            batch = workload("m1", [f"F{i}" for i in range(1, chargers + 1)], [f"D{i}" for i in range(1, sensors + 1)],
                             [f"G{i}" for i in range(1, gates + 1)], messages,
                             datetime.now(timezone.utc) - timedelta(hours=2), transaction_share=transaction_share)
            publish_seconds = publish_all(broker.port, batch)

            # 3a. The bare subscriber drains its queue.
            bare = BareSubscriber(broker.port)
            bare.connect(expected=len(batch))
            if not bare.done.wait(300):
                raise RuntimeError(f"bare subscriber got {bare.count} of {len(batch)}")
            bare.disconnect()
            bare_rate = (bare.count - 1) / (bare.last - bare.first)

            # 3b. The bridge drains its queue into the database.
            bridge = Bridge(app, options)
            stamps: dict[str, float] = {}
            submit = bridge.worker.submit

            def timed_submit(received):
                stamps.setdefault("first", time.monotonic())
                submit(received)

            bridge.client._on_received = timed_submit
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile()
                bridge.worker.run = _profiled(bridge.worker.run, profiler)
            bridge.start()
            deadline = time.monotonic() + 600
            mt = bridge.metrics
            while time.monotonic() < deadline:
                handled = (mt.value("chargeapp_bridge_batch_size_sum"))
                if handled >= len(batch):
                    stamps["last"] = bridge.worker.last_commit or time.monotonic()
                    break
                time.sleep(0.01)
            bridge.stop()
            if profiler is not None:
                profiler.dump_stats(profile)
            if "last" not in stamps:
                raise RuntimeError(f"the bridge handled {mt.value('chargeapp_bridge_batch_size_sum'):.0f} of {len(batch)}")
            bridge_rate = (len(batch) - 1) / (stamps["last"] - stamps["first"])
            with app.app_context():
                from sqlalchemy import func, select

                from chargeapp.db import db
                from chargeapp.db import models as m

                applied_rows = db.session.scalar(select(func.count()).select_from(m.AppliedMessage))
                db.session.remove()
            figures = {
                "messages": len(batch), "publish_seconds": round(publish_seconds, 2),
                "bare_received": bare.count, "db_applied_rows": applied_rows,
                "bare_per_second": round(bare_rate), "bridge_per_second": round(bridge_rate),
                "ratio": round(bridge_rate / bare_rate, 3),
                "applied": int(sum(mt.value("chargeapp_bridge_messages_applied_total", {"kind": k.value})
                                   for k in t.TopicKind)),
                "duplicates": int(mt.value("chargeapp_bridge_duplicates_total", {"retained": "false"})
                                  + mt.value("chargeapp_bridge_duplicates_total", {"retained": "true"})),
                "dead_letters": int(sum(mt.value("chargeapp_bridge_dead_letters_total", {"reason": r})
                                        for r in sorted(t.REASONS) + ["apply_failed"])),
                "batches": int(mt.value("chargeapp_bridge_batch_size_count")),
                "batch_size": batch_size, "batch_ms": batch_ms, "cpus": os.cpu_count(),
                "database": app.config["SQLALCHEMY_DATABASE_URI"].split(":", 1)[0],
            }
            return figures
    finally:
        broker.stop()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)


def _profiled(fn, profiler):
    def wrapper():
        profiler.enable()
        try:
            fn()
        finally:
            profiler.disable()
    return wrapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqtt_bridge.measure", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--batch-ms", type=float, default=50.0)
    parser.add_argument("--chargers", type=int, default=20)
    parser.add_argument("--transaction-share", type=float, default=0.0,
                        help="share of draws that end a transaction and start the next (five messages each)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the bridge's worker thread here")
    parser.add_argument("--database-url", help="an EMPTY database to measure on instead of a temporary SQLite file")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    figures = run(args.messages, args.batch_size, args.batch_ms, chargers=args.chargers, profile=args.profile,
                  database_url=args.database_url, transaction_share=args.transaction_share)
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
