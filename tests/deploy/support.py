"""A real Mosquitto run with the shipped configuration, and small paho-mqtt 2 clients for the tests.

``derive_config`` keeps every line of deploy/mosquitto/mosquitto.conf and swaps
only what must differ on a test host: the listener (a free 127.0.0.1 port),
the password, ACL and persistence paths (a temporary directory), and the user
Mosquitto runs as. Everything else (anonymous access, ACL, client-id rules,
queues, in-flight limit, persistence) is exactly what production runs.
"""
from __future__ import annotations

import getpass
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from mqtt_bridge.measure import listens

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
MOSQUITTO = os.environ.get("CHARGEAPP_MOSQUITTO", "/usr/sbin/mosquitto")
WAIT = 30.0  # seconds: the bound of every wait in these tests (each ends when its condition holds; 5 s was too short at load 13 on 2 cores)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = WAIT, interval: float = 0.02) -> bool:
    """True as soon as predicate() is true, False after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --------------------------------------------------------------------------- configuration

# Lines replaced for a test host; each must be present in the shipped file.
_SWAPPED = ("listener", "password_file", "acl_file", "persistence_location", "log_dest")


def shipped_settings(text: str | None = None) -> list[tuple[str, str]]:
    """(key, value) of every non-comment line of the shipped configuration, in order."""
    text = SHIPPED_CONF.read_text() if text is None else text
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.append((key, value.strip()))
    return out


def derive_config(*, port: int, passwd: Path, acl: Path, persistence_dir: Path, log_file: Path,
                  overrides: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> str:
    """The shipped configuration with the listener on 127.0.0.1:port and the files in temporary places.

    ``overrides`` replaces the value of global keys (measurements only); ``drop``
    removes keys, or single lines given as "key value" (negative controls only: show what a setting protects
    against).
    """
    overrides = dict(overrides or {})
    settings = shipped_settings()
    keys = {k for k, _ in settings}
    missing = [k for k in _SWAPPED if k not in keys]
    if missing:
        raise AssertionError(f"deploy/mosquitto/mosquitto.conf lacks {missing}")
    if sum(1 for k, _ in settings if k == "listener") != 1:
        raise AssertionError("the shipped configuration should have exactly one active listener")
    lines = []
    for key, value in settings:
        if key in drop or f"{key} {value}" in drop:
            continue
        if key == "listener":
            value = f"{port} 127.0.0.1"
        elif key == "password_file":
            value = str(passwd)
        elif key == "acl_file":
            value = str(acl)
        elif key == "persistence_location":
            value = f"{persistence_dir}/"
        elif key == "log_dest":
            value = f"file {log_file}"  # flushed per line, so a test can read it while the broker runs
        elif key in overrides:
            value = overrides.pop(key)
        lines.append(f"{key} {value}")
    # Global keys not in the shipped file go before the first listener.
    extra = [f"{k} {v}" for k, v in overrides.items()]
    first_listener = next(i for i, line in enumerate(lines) if line.startswith("listener "))
    lines[first_listener:first_listener] = extra
    # Started as root, Mosquitto would switch to the 'mosquitto' user, which cannot read test files.
    lines.insert(0, f"user {getpass.getuser()}")
    return "\n".join(lines) + "\n"


class Mosquitto:
    """Mosquitto with the derived configuration on a free loopback port; start() waits until it listens."""

    def __init__(self, workdir: Path, passwd: Path, acl: Path, *, overrides: dict[str, str] | None = None,
                 drop: tuple[str, ...] = (), port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence_dir = self.workdir / "data"
        self.persistence_dir.mkdir(exist_ok=True)
        self.conf = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.conf.write_text(derive_config(port=self.port, passwd=passwd, acl=acl, persistence_dir=self.persistence_dir,
                                           log_file=self.log_path, overrides=overrides, drop=drop))
        self.proc: subprocess.Popen | None = None

    @property
    def db_file(self) -> Path:
        return self.persistence_dir / "mosquitto.db"

    def start(self, timeout: float = WAIT) -> "Mosquitto":
        log = open(self.workdir / "stdout.log", "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()

        def listening() -> bool:  # this broker, not whatever took the port since free_port() (see listens)
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.proc.returncode}:\n{self.log()}")
            return listens(self.proc, self.port)

        if not wait_for(listening, timeout):
            self.stop()
            raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s:\n{self.log()}")
        return self

    def log(self) -> str:
        """The broker's log so far (and anything it printed before it could open the log file)."""
        return "".join(p.read_text(errors="replace") for p in (self.workdir / "stdout.log", self.log_path) if p.exists())

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads the password and ACL files."""
        self.proc.send_signal(signal.SIGHUP)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT)


# --------------------------------------------------------------------------- clients


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool


@dataclass
class Client:
    """A paho-mqtt 2 client with its connect result and every message it received."""

    paho: mqtt.Client
    rc: int | None = None  # CONNACK reason code value (0 = accepted)
    messages: "queue.Queue[Received]" = field(default_factory=queue.Queue)
    received: list[Received] = field(default_factory=list)
    disconnects: list[int] = field(default_factory=list)
    _connack: threading.Event = field(default_factory=threading.Event)
    _suback: threading.Event = field(default_factory=threading.Event)
    granted: list[int] = field(default_factory=list)

    def topics(self) -> list[str]:
        self.drain()
        return [m.topic for m in self.received]

    def drain(self) -> None:
        while True:
            try:
                self.received.append(self.messages.get_nowait())
            except queue.Empty:
                return

    def wait_message(self, predicate, timeout: float = WAIT) -> Received | None:
        """The first received message (past or future) that satisfies predicate, within timeout."""
        def found():
            self.drain()
            return next((m for m in self.received if predicate(m)), None)

        hit = None

        def check():
            nonlocal hit
            hit = found()
            return hit is not None

        wait_for(check, timeout)
        return hit

    def subscribe(self, *filters: str, qos: int = 1) -> list[int]:
        """Subscribe and wait for the SUBACK; the granted QoS / reason code values (128 or more = refused)."""
        self._suback.clear()
        self.paho.subscribe([(f, qos) for f in filters])
        if not self._suback.wait(WAIT):
            raise AssertionError(f"no SUBACK for {filters} within {WAIT} s")
        return list(self.granted)

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish and wait until the broker acknowledged it (a denied publish is acknowledged too, under 3.1.1)."""
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT)
        if not info.is_published():
            raise AssertionError(f"publish to {topic} not acknowledged within {WAIT} s")

    @property
    def connected(self) -> bool:
        return self.paho.is_connected()

    def close(self) -> None:
        try:
            self.paho.disconnect()
        finally:
            self.paho.loop_stop()

    def drop(self) -> None:
        """Lose the connection without DISCONNECT (the broker then publishes the last will)."""
        sock = self.paho.socket()
        self.paho.loop_stop()
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def connect(broker: Mosquitto, username: str | None, password: str | None, *, client_id: str = "",
            protocol: str = "3.1.1", clean: bool = True, will: tuple[str, bytes, bool] | None = None,
            wait: bool = True) -> Client:
    """A connected (or refused: see ``rc``) client; never retries, every wait bounded."""
    v5 = protocol == "5"
    paho = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                       protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                       clean_session=None if v5 else clean, reconnect_on_failure=False)
    c = Client(paho)
    if username is not None:
        paho.username_pw_set(username, password)
    if will is not None:
        topic, payload, retain = will
        paho.will_set(topic, payload, qos=1, retain=retain)

    def on_connect(client, userdata, flags, reason_code, properties):
        c.rc = reason_code.value
        c._connack.set()

    def on_message(client, userdata, msg):
        c.messages.put(Received(msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on_subscribe(client, userdata, mid, reason_code_list, properties):
        c.granted = [rc.value for rc in reason_code_list]
        c._suback.set()

    def on_disconnect(client, userdata, flags, reason_code, properties):
        c.disconnects.append(reason_code.value)
        c._connack.set()

    paho.on_connect, paho.on_message, paho.on_subscribe, paho.on_disconnect = (
        on_connect, on_message, on_subscribe, on_disconnect)
    connect_kwargs = {"clean_start": clean} if v5 else {}
    if v5 and not clean:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        connect_kwargs["properties"] = props
    paho.connect("127.0.0.1", broker.port, keepalive=30, **connect_kwargs)
    paho.loop_start()
    if wait and not c._connack.wait(WAIT):
        c.close()
        raise AssertionError(f"no CONNACK for {username!r} within {WAIT} s")
    return c


def refused(broker: Mosquitto, username: str | None, password: str | None, **kw) -> int:
    """Connect, expect a refusal; the CONNACK code (or -1 when the broker just closed the socket)."""
    c = connect(broker, username, password, **kw)
    try:
        wait_for(lambda: c.rc is not None or c.disconnects, WAIT)
        return c.rc if c.rc is not None else -1
    finally:
        c.close()


def example_topic(topic_filter: str) -> str:
    """A concrete contract topic a filter of the generated ACL matches (connector 1, command remote_start)."""
    return topic_filter.replace("/commands/+", "/commands/remote_start").replace("+", "1")


def new_postgres_database(tag: str) -> tuple[str, object]:
    """A new, empty database of one test on the test server (CHARGEAPP_TEST_POSTGRES_URL);
    (its URL, a function that drops it)."""
    import uuid

    from sqlalchemy import create_engine, make_url, text

    from tests.conftest import POSTGRES_URL

    url = make_url(POSTGRES_URL)
    name = f"{url.database}_{tag}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url.set(database=name).render_as_string(hide_password=False), drop
