"""``chargeapp demo``: the whole system on the embedded defaults, in one command.

It starts, in order: a fresh SQLite database (migrated, seeded with the demo
stations and accounts, and an account for every simulated driver), an embedded
MQTT broker (amqtt, MQTT 3.1.1, loopback) unless ``CHARGEAPP_MQTT_URL`` names a
broker, the web service (gunicorn, or Flask's server), the MQTT bridge
(``python -m mqtt_bridge``, which also runs the periodic work) and the station
simulators (``python -m simulators``).

Every part reads the same accelerated clock from ``CHARGEAPP_CLOCK_START``
(``<start>@<epoch>``) and ``CHARGEAPP_CLOCK_SPEED``, so device timestamps,
bookings, holds and receipts agree. Children run in their own process groups;
Ctrl-C (or SIGTERM) stops the simulators, then the bridge, then the web
service, then the broker: each is asked to stop, waited for, and killed if it
does not stop in time.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from chargeapp.config import DEFAULT_DB_PATH

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 10.0
HISTORY_DAYS = 7
BUSIEST_STATION = "yangpu-liaoyuan"  # the most chargers and lounge zones: the board worth opening first


# ----------------------------------------------------------------------------- helpers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float, alive=lambda: True) -> bool:
    """Poll ``url`` until it answers 200, ``timeout`` passes, or ``alive()`` turns false."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and alive():
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


_message_counter = None


def _message_counter_class():
    """An amqtt plugin counting the PUBLISH messages the embedded broker receives (built on first use:
    importing amqtt is kept out of every ``chargeapp`` command's start-up)."""
    global _message_counter
    if _message_counter is None:
        from amqtt.plugins.base import BasePlugin

        class MessageCounter(BasePlugin):
            received = 0

            async def on_broker_message_received(self, *, client_id, message) -> None:
                type(self).received += 1

        _message_counter = MessageCounter
    return _message_counter


def __getattr__(name: str):
    # amqtt loads plugins by dotted path: "chargeapp.demo.MessageCounter".
    if name == "MessageCounter":
        return _message_counter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class EmbeddedBroker:
    """amqtt on a loopback port, in a thread with its own event loop (MQTT 3.1.1, anonymous)."""

    def __init__(self, host: str, port: int, log_file: Path | None = None):
        self.host = host
        self.port = port
        self.log_file = log_file
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}?protocol=3.1.1"

    @property
    def received(self) -> int:
        """PUBLISH messages received so far (from every client)."""
        return _message_counter_class().received

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
                "chargeapp.demo.MessageCounter": {},
            },
        }

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop

            async def boot():
                self._broker = Broker(config)
                await self._broker.start()
            try:
                loop.run_until_complete(boot())
            except BaseException as e:  # reported to the starting thread
                self._error = e
                self._ready.set()
                return
            self._ready.set()
            loop.run_forever()
            loop.close()

        # amqtt logs every slow acknowledgement with a traceback: keep that in a file, off the console.
        for name in ("amqtt", "transitions"):
            logger = logging.getLogger(name)
            logger.setLevel(logging.WARNING)
            logger.propagate = False
            logger.disabled = False
            if self.log_file is not None:
                handler = logging.FileHandler(self.log_file, encoding="utf-8")
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
                logger.addHandler(handler)
            else:
                logger.addHandler(logging.NullHandler())
        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise click.ClickException(f"the embedded MQTT broker did not start on {self.host}:{self.port}: "
                                       f"{self._error or 'timeout'}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is None or self._broker is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(timeout)
        except Exception as e:  # noqa: BLE001 - shutting down whatever happens
            log.warning("embedded broker shutdown: %s", e)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)


@dataclass
class Child:
    """A child process in its own process group, its output prefixed and echoed."""

    name: str
    argv: list[str]
    stop_signal: int = signal.SIGINT
    proc: subprocess.Popen | None = None
    reader: threading.Thread | None = None
    expected_exit: bool = False
    lines: list[str] = field(default_factory=list)

    def start(self, env: dict, out, lock: threading.Lock) -> Child:
        self.proc = subprocess.Popen(
            self.argv, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, text=True, encoding="utf-8", errors="replace",
            bufsize=1,
        )

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                line = line.rstrip("\n")
                self.lines = (self.lines + [line])[-50:]
                with lock:
                    out.write(f"[{self.name}] {line}\n")
                    out.flush()
        self.reader = threading.Thread(target=pump, name=f"out-{self.name}", daemon=True)
        self.reader.start()
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Ask the whole process group to stop, wait, then kill it; returns the exit code."""
        if self.proc is None:
            return None
        self.expected_exit = True
        pgid = self.proc.pid  # start_new_session: the child leads its own group
        if self.proc.poll() is None:
            _signal_group(pgid, self.stop_signal)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s: killing it", self.name, timeout)
                _signal_group(pgid, signal.SIGKILL)
                self.proc.wait(5)
        _signal_group(pgid, signal.SIGKILL)  # anything the child left behind in its group
        if self.reader is not None:
            self.reader.join(2)
        return self.proc.returncode


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# ----------------------------------------------------------------------------- the database


def prepare_database(db_url: str, now: datetime, stations: list[str]) -> dict:
    """Migrate (flask db upgrade) and seed the demo database as of ``now``, and give every simulated driver an
    account."""
    from flask_migrate import upgrade
    from sqlalchemy import select

    from chargeapp.db import db
    from chargeapp.db import models as m
    from chargeapp.seed import seed_demo
    from chargeapp.services.auth import password_hasher
    from chargeapp.services.registry import create_user
    from simulators.layouts import layout_for
    from simulators.population import SIM_DRIVER_PASSWORD, roster

    app = _app(db_url)
    with app.app_context():
        upgrade()
        hasher = password_hasher(*app.config["CHARGEAPP_ARGON2"])
        created = seed_demo(db.session, now, hasher)
        # One hash for every simulated driver: they share a password, and Argon2 is slow on purpose.
        shared_hash = hasher.hash(SIM_DRIVER_PASSWORD)
        known = set(db.session.scalars(select(m.User.email)).all())
        drivers = 0
        for d in roster([layout_for(code) for code in stations]):
            if d.email in known:
                continue
            create_user(db.session, email=d.email, password_hash=shared_hash, now=now, name=d.name,
                        id_tags=(d.id_tag,), plates=(d.plate,), is_demo=True)
            drivers += 1
        db.session.commit()
        db.engine.dispose()
    created["simulated_drivers"] = drivers
    return created


def _app(db_url: str):
    from chargeapp.app import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": db_url})


def seed_history(db_url: str, stations: list[str], end: datetime, *, days: int, seed: int, incidents: float,
                 state_file: Path, say) -> object:
    """The week before ``end`` through the simulators' write path (``chargeapp.demo_history``), with a progress
    line; returns its ``HistoryResult``."""
    from chargeapp.db import db
    from chargeapp.demo_history import seed_history as seed

    tty = sys.stdout.isatty()
    last = [0.0]

    def progress(at: datetime, r) -> None:
        if time.monotonic() - last[0] < (0.2 if tty else 5.0) and at < end:
            return
        last[0] = time.monotonic()
        done = (at - r.start) / (r.end - r.start)
        line = (f"demo: history {done:4.0%}  {at.astimezone(SHANGHAI):%Y-%m-%d %H:%M}  "
                f"{r.messages} messages applied")
        if tty:
            sys.stdout.write("\r\x1b[2K" + line + ("\n" if at >= end else ""))
            sys.stdout.flush()
        else:
            say(line)

    app = _app(db_url)
    with app.app_context():
        try:
            return seed(db.session, stations, end=end, days=days, seed=seed, incidents=incidents,
                        state_path=state_file, progress=progress)
        finally:
            db.session.remove()
            db.engine.dispose()


# ----------------------------------------------------------------------------- the command


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface of the web service.")
@click.option("--port", type=click.IntRange(0, 65535), default=5000, show_default=True,
              help="Port of the web service (0: a free one).")
@click.option("--mqtt-port", type=click.IntRange(0, 65535), default=0,
              help="Port of the embedded broker on 127.0.0.1 (default: a free one). Ignored when "
                   "CHARGEAPP_MQTT_URL names a broker.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=0,
              help="Port of the bridge's /metrics and /healthz (default: a free one).")
@click.option("--speed", type=click.FloatRange(min=1.0), default=60.0, show_default=True,
              help="Simulated seconds per wall-clock second (60: a day in 24 minutes).")
@click.option("--start", default=None, metavar="TIME",
              help="Simulated start, ISO 8601 (no offset: Shanghai time). Default: now, to the minute.")
@click.option("--seed", type=int, default=1, show_default=True, help="Simulators' random seed.")
@click.option("--station", "stations", multiple=True, metavar="CODE",
              help="Simulate only these demo stations (repeatable). Default: all of them.")
@click.option("--duration", default=None, metavar="DURATION",
              help="Stop by itself after this much simulated time (e.g. 6h, 1d). Default: until Ctrl-C.")
@click.option("--incidents", type=float, default=1.0, show_default=True,
              help="Multiplies the simulated fault, outage and reboot rates (0: none).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo database and device state live (default: var/demo under CHARGEAPP_DATA_DIR's "
                   "parent). The demo database is recreated on every start.")
@click.option("--server", type=click.Choice(["gunicorn", "flask"]), default="gunicorn", show_default=True,
              help="Web server for the service.")
@click.option("--no-simulators", is_flag=True, help="Start everything but the simulators.")
@click.option("--history-days", type=click.IntRange(0, 31), default=HISTORY_DAYS, show_default=True,
              help="Days of history seeded before the start through the simulators (reports have something to show).")
@click.option("--no-history", is_flag=True, help="Start on an empty history (--history-days 0).")
@click.option("--access-log", is_flag=True, help="Let the web service log every request (gunicorn's access log).")
@click.option("-v", "--verbose", is_flag=True, help="Let the bridge and the simulators log more.")
def demo_command(host, port, mqtt_port, metrics_port, speed, start, seed, stations, duration, incidents, data_dir,
                 server, no_simulators, history_days, no_history, access_log, verbose):
    """Run the whole system on the embedded defaults: database, broker, web service, bridge and simulators.

    One accelerated clock for every part. Ctrl-C stops everything.
    """
    from simulators.cli import parse_duration, parse_start
    from simulators.layouts import DEMO_STATIONS
    from simulators.population import SIM_DRIVER_PASSWORD, SIM_EMAIL_DOMAIN

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    unknown = [s for s in stations if s not in DEMO_STATIONS]
    if unknown:
        raise click.BadParameter(f"not a demo station: {', '.join(unknown)} (known: {', '.join(DEMO_STATIONS)})",
                                 param_hint="--station")
    stations = list(stations or DEMO_STATIONS)
    try:
        run_for = parse_duration(duration) if duration else None
        begin = parse_start(start) if start else datetime.now(SHANGHAI).replace(second=0, microsecond=0)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    data_dir = (data_dir or DEFAULT_DB_PATH.parent / "demo").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    db_file = data_dir / "chargeapp-demo.db"
    state_file = data_dir / "simulators-state.json"
    for stale in (db_file, Path(f"{db_file}-wal"), Path(f"{db_file}-shm"), state_file, data_dir / "broker.log"):
        stale.unlink(missing_ok=True)
    if port == 0:
        port = free_port(host)
    metrics_port = metrics_port or free_port()

    db_url = f"sqlite:///{db_file}"
    out = sys.stdout
    lock = threading.Lock()

    def say(text: str = "") -> None:
        with lock:
            out.write(text + "\n")
            out.flush()

    history_days = 0 if no_history else history_days
    say(f"demo: preparing {db_file} (migrations, demo stations, simulated drivers) ...")
    created = prepare_database(db_url, begin - timedelta(days=history_days), stations)
    history = None
    if history_days:
        say(f"demo: seeding the last {history_days} days of {', '.join(stations)} through the simulators "
            f"(--no-history skips this) ...")
        history = seed_history(db_url, stations, begin, days=history_days, seed=seed, incidents=incidents,
                               state_file=state_file, say=say)
        say(f"demo: history seeded in {history.seconds:.1f} s: {history.messages} messages, "
            f"{history.bookings} bookings" + (" (already there: skipped)" if history.skipped else ""))

    # One clock for every process, fixed only now, so the live run starts where the history ends: the start,
    # the wall-clock instant it corresponds to, and the speed.
    epoch = time.time()
    clock_start = f"{begin.isoformat()}@{epoch:.6f}"

    external = os.environ.get("CHARGEAPP_MQTT_URL") or None
    broker = None
    if external:
        mqtt_url = external
    else:
        broker = EmbeddedBroker("127.0.0.1", mqtt_port or free_port(), data_dir / "broker.log").start()
        mqtt_url = broker.url

    env = {
        **os.environ,
        "CHARGEAPP_DATABASE_URL": db_url,
        "CHARGEAPP_DATA_DIR": str(data_dir),
        "CHARGEAPP_MQTT_URL": mqtt_url,
        "CHARGEAPP_CLOCK_START": clock_start,
        "CHARGEAPP_CLOCK_SPEED": f"{speed:g}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    base_url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{port}"
    if server == "gunicorn":
        web_argv = [sys.executable, "-m", "gunicorn", "--bind", f"{host}:{port}", "--workers", "2", "--threads", "4",
                    "--graceful-timeout", "5", "--log-level", "warning", "chargeapp.app:create_app()"]
        if not access_log:
            env["CHARGEAPP_WEB_ACCESS_LOG"] = ""  # gunicorn.conf.py: no access log
        web_stop = signal.SIGTERM  # gunicorn: graceful stop
    else:
        web_argv = [sys.executable, "-m", "flask", "--app", "chargeapp.app:create_app", "run", "--host", host,
                    "--port", str(port), "--no-reload", "--no-debugger", "--with-threads"]
        web_stop = signal.SIGINT
    children = [Child("web", web_argv, web_stop)]
    children.append(Child("bridge", [sys.executable, "-m", "mqtt_bridge", "--metrics-port", str(metrics_port),
                                     "--log-level", "INFO" if verbose else "WARNING"]))
    if not no_simulators:
        sim_argv = [sys.executable, "-m", "simulators", "--broker", mqtt_url, "--api-url", base_url,
                    "--seed", str(seed), "--state", str(state_file), "--incidents", f"{incidents:g}",
                    "--progress-interval", "30"]
        for code in stations:
            sim_argv += ["--station", code]
        if verbose:
            sim_argv.append("-v")
        children.append(Child("sim", sim_argv))

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    failed: list[str] = []
    started: list[Child] = []
    try:
        web = children[0].start(env, out, lock)
        started.append(web)
        up = wait_for_http(f"{base_url}/healthz", 60, lambda: web.alive() and not stop.is_set())
        if stop.is_set():
            return
        if not up:
            failed.append("web")
            raise click.ClickException(f"the web service did not come up on {base_url}")
        bridge = children[1].start(env, out, lock)
        started.append(bridge)
        # The simulated devices start once the bridge is connected and subscribed: on a first start the broker holds
        # no session for it, so whatever a device published before that was lost (sequence gaps in a soak run).
        if not wait_for_http(f"http://127.0.0.1:{metrics_port}/healthz", 60,
                             lambda: bridge.alive() and not stop.is_set()):
            if stop.is_set():
                return
            failed.append("bridge")
            raise click.ClickException("the bridge did not become healthy (connected, subscribed) within 60 s")
        for child in children[2:]:
            started.append(child.start(env, out, lock))
        say("")
        say("chargeapp demo is running")
        say(f"  web service     {base_url}/    (API docs {base_url}/api/v1/docs, "
            f"stations {base_url}/api/v1/stations)")
        board = BUSIEST_STATION if BUSIEST_STATION in stations else stations[0]
        say(f"  lounge board    {base_url}/board/{board}    manager dashboard {base_url}/manage/")
        if history is not None:
            say(f"  history         {history.start.astimezone(SHANGHAI):%Y-%m-%d %H:%M} to "
                f"{history.end.astimezone(SHANGHAI):%Y-%m-%d %H:%M} (simulated, in the reports)")
        say(f"  MQTT broker     {mqtt_url}    "
            + (f"(embedded amqtt, log {broker.log_file})" if broker else "(from CHARGEAPP_MQTT_URL)"))
        say(f"  bridge metrics  http://127.0.0.1:{metrics_port}/metrics")
        say(f"  clock           starts {begin.isoformat()} at x{speed:g} "
            f"(a day in {24 * 60 / speed:.0f} min); shared as CHARGEAPP_CLOCK_START={clock_start}")
        say(f"  stations        {', '.join(stations)}; {created['simulated_drivers']} simulated driver accounts")
        say(f"  database        {db_file}")
        from chargeapp.seed import DEMO_ADMIN, DEMO_DRIVER, DEMO_MANAGER

        for role, (email, password) in (("manager", DEMO_MANAGER), ("admin", DEMO_ADMIN), ("driver", DEMO_DRIVER)):
            say(f"  login {role:8s}  {email} / {password}")
        say(f"  simulated drivers  <station>.<nnn>@{SIM_EMAIL_DOMAIN} / {SIM_DRIVER_PASSWORD}"
            f" (e.g. {stations[0]}.001@{SIM_EMAIL_DOMAIN})")
        say("  processes       " + ", ".join(f"{c.name} pid {c.pid}" for c in started))
        say("Press Ctrl-C to stop.")
        say("")
        deadline = time.monotonic() + run_for.total_seconds() / speed if run_for else None
        last_status = time.monotonic()
        while not stop.wait(0.5):
            dead = [c for c in started if not c.alive()]
            if dead:
                for c in dead:
                    failed.append(c.name)
                    say(f"demo: {c.name} exited with code {c.proc.returncode}; stopping everything")
                break
            if deadline is not None and time.monotonic() >= deadline:
                say(f"demo: {run_for} of simulated time done")
                break
            if time.monotonic() - last_status >= 30:
                last_status = time.monotonic()
                simulated = begin + timedelta(seconds=(time.time() - epoch) * speed)
                received = f"; broker received {broker.received} messages" if broker else ""
                say(f"demo: simulated time {simulated.astimezone(SHANGHAI):%Y-%m-%d %H:%M}{received}")
    finally:
        # Stop in reverse dependency order: devices first, the database writers next, the broker last.
        for child in reversed(started):
            code = child.stop()
            say(f"demo: {child.name} (pid {child.pid}) stopped, exit code {code}")
        if broker is not None:
            say(f"demo: broker received {broker.received} messages; stopping it")
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed:
        raise click.ClickException(f"stopped because {', '.join(failed)} failed")
    say("demo: stopped")


if __name__ == "__main__":  # pragma: no cover
    # Run the imported module, not this __main__ copy: amqtt loads the plugin from chargeapp.demo.
    from chargeapp.demo import demo_command as _demo

    _demo(prog_name="python -m chargeapp.demo")
