"""What every benchmark shares: results, sizes, databases, the processes under test, RSS, a progress bar.

Nothing here asserts a timing: a benchmark measures, puts its figure next to a
baseline measured in the same run, and says whether the issue's target is met.
"""
from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    """One benchmark on one backend: its figures, the baseline of the same run, the ratio, the target and whether it is met."""

    name: str
    backend: str
    figures: dict = field(default_factory=dict)
    baseline: dict = field(default_factory=dict)
    ratio: float | None = None
    target: str = ""
    met: bool | None = None  # None: no target applies, or it could not be judged
    sizes: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0..100) by nearest rank; None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


# --------------------------------------------------------------------------- the machine


def machine() -> dict:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import sqlite3

    info = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": _version([shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"], r"mosquitto version (\S+)"),
        "postgresql": _version([_pg_bin("postgres"), "--version"], r"(\d+\.\d+)"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    return info


def _version(cmd: list[str], pattern: str) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(pattern, out.stdout + out.stderr)
    return found.group(1) if found else None


def _pg_bin(name: str) -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: [
        int(x) if x.isdigit() else x for x in p.parts[-3].split(".")])
    return str(candidates[-1]) if candidates else name


# --------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on stderr (a plain line per 10 % when stderr is not a terminal)."""

    def __init__(self, total: int, label: str, stream=None):
        self.total = max(1, total)
        self.label = label
        self.done = 0
        self.started = time.monotonic()
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_tenth = -1

    def update(self, n: int = 1) -> None:
        self.done += n
        frac = min(1.0, self.done / self.total)
        if self.tty:
            bar = "#" * int(frac * 30)
            rate = self.done / max(1e-9, time.monotonic() - self.started)
            self.stream.write(f"\r  {self.label} [{bar:<30}] {self.done:,}/{self.total:,} {rate:,.0f}/s")
            self.stream.flush()
        elif int(frac * 10) > self._last_tenth:
            self._last_tenth = int(frac * 10)
            self.stream.write(f"  {self.label}: {self.done:,}/{self.total:,} ({frac:.0%})\n")
            self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- ports and waiting


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s: {last}")


# --------------------------------------------------------------------------- databases


class Databases:
    """Empty databases for the benchmarks: a SQLite file in the work directory, or a new database on a PostgreSQL server."""

    def __init__(self, workdir: Path, postgres_url: str | None = None):
        self.workdir = workdir
        self.postgres_url = postgres_url
        self._created: list[str] = []

    def fresh(self, backend: str, name: str) -> str:
        if backend == "sqlite":
            path = self.workdir / f"{name}-{secrets.token_hex(3)}.db"
            return f"sqlite:///{path}"
        if not self.postgres_url:
            raise RuntimeError("PostgreSQL needs --postgres-url or --start-postgres")
        from sqlalchemy import create_engine, make_url, text

        url = make_url(self.postgres_url)
        dbname = f"bench_{name}_{secrets.token_hex(3)}"
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{dbname}"'))
        admin.dispose()
        self._created.append(dbname)
        return url.set(database=dbname).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if not self._created or not self.postgres_url:
            return
        from sqlalchemy import create_engine, make_url, text

        admin = create_engine(make_url(self.postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self._created:
                try:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                except Exception:  # noqa: BLE001 (best effort clean-up)
                    pass
        admin.dispose()
        self._created.clear()


class ThrowawayPostgres:
    """A PostgreSQL cluster of our own on a free loopback port, started with .ci/pg-start (fsync off, as in CI)."""

    def __init__(self, workdir: Path):
        # A directory of its own under /tmp: the postgres user must reach it (the work directory is private).
        import tempfile

        self.dir = Path(tempfile.mkdtemp(prefix="chargeapp-bench-pg-"))
        self.url: str | None = None

    def start(self) -> str:
        env = {**os.environ, "PGDIR_TEST": str(self.dir), "PGPORT_TEST": str(free_port())}
        out = subprocess.run(["bash", str(ROOT / ".ci" / "pg-start")], env=env, capture_output=True, text=True,
                             timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f".ci/pg-start failed: {out.stderr[-2000:]}")
        self.url = out.stdout.strip().splitlines()[-1]
        return self.url

    def stop(self) -> None:
        if self.url is None:
            return
        subprocess.run(["runuser", "-u", "postgres", "--", _pg_bin("pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "fast", "stop"], capture_output=True, timeout=60)
        self.url = None
        shutil.rmtree(self.dir, ignore_errors=True)


def create_schema(url: str) -> None:
    """The app's tables in an empty database (as the tests and mqtt_bridge.measure do)."""
    from chargeapp.app import create_app
    from chargeapp.db import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "CHARGEAPP_MQTT_URL": None})
    with app.app_context():
        db.create_all()
        db.session.remove()
        db.engine.dispose()


def bench_app(url: str, **overrides):
    """The app on ``url`` for the harness's own set-up and checks (real clock)."""
    from chargeapp.app import create_app

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "CHARGEAPP_MQTT_URL": None, "SECRET_KEY": BENCH_SECRET,
                       "CHARGEAPP_ARGON2": (1, 1024, 1), **overrides})


# --------------------------------------------------------------------------- processes under test


def rss_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a process in KiB, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class RssSampler:
    """Samples the resident memory of named processes every ``interval`` seconds on a thread.

    ``groups`` maps a name to a function returning the pids to sample now (gunicorn
    workers change when one is restarted), so each sample is per pid, and a group's
    figure is the largest pid's (one worker's peak, not the sum).
    """

    def __init__(self, groups: dict, interval: float = 0.5):
        self.groups = groups
        self.interval = interval
        self.samples: dict[str, list[tuple[float, int]]] = {name: [] for name in groups}
        self.hwm: dict[str, int] = {name: 0 for name in groups}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.started = time.monotonic()

    def start(self) -> "RssSampler":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def sample(self) -> None:
        now = time.monotonic() - self.started
        for name, pids in self.groups.items():
            biggest = 0
            for pid in pids():
                got = rss_kib(pid)
                if got is None:
                    continue
                biggest = max(biggest, got[0])
                self.hwm[name] = max(self.hwm[name], got[1])
            if biggest:
                self.samples[name].append((now, biggest))

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def summary(self, name: str) -> dict:
        """Peak (sampled and kernel high-water mark), first and last minute's mean, in MiB."""
        pts = self.samples[name]
        if not pts:
            return {}
        end = pts[-1][0]
        span = min(60.0, max(1.0, end / 4))
        first = [v for t, v in pts if t <= pts[0][0] + span]
        last = [v for t, v in pts if t >= end - span]
        mib = lambda kib: round(kib / 1024, 1)  # noqa: E731
        minutes: dict[int, list[int]] = {}
        for t, v in pts:
            minutes.setdefault(int((t - pts[0][0]) // 60), []).append(v)
        return {
            "peak_mib": mib(max(v for _, v in pts)), "hwm_mib": mib(self.hwm[name]),
            "first_mib": mib(sum(first) / len(first)), "last_mib": mib(sum(last) / len(last)),
            "window_s": round(span, 1), "samples": len(pts), "seconds": round(end, 1),
            # whether it levels off or keeps growing: the mean of each minute
            "per_minute_mib": [mib(sum(vs) / len(vs)) for _, vs in sorted(minutes.items())],
        }


class Proc:
    """A child process with its output in a log file; ``stop`` sends SIGTERM, then SIGKILL after ``grace``."""

    def __init__(self, name: str, cmd: list[str], env: dict, log_path: Path, cwd: Path = ROOT):
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, grace: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


def app_env(url: str, **extra: str) -> dict:
    """The environment of a web or bridge process: ours without CHARGEAPP_*, then the database and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEAPP_")}
    env.update({"CHARGEAPP_DATABASE_URL": url, "CHARGEAPP_SECRET_KEY": BENCH_SECRET, "PYTHONUNBUFFERED": "1"})
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


BENCH_SECRET = "bench-" + secrets.token_hex(16)


def start_web(workdir: Path, url: str, *, name: str = "web", **extra_env: str) -> tuple[Proc, str]:
    """gunicorn with the production gunicorn.conf.py serving bench.webapp:app (the app plus /bench/static); (proc, base URL)."""
    port = free_port()
    env = app_env(url, CHARGEAPP_BIND=f"127.0.0.1:{port}", **extra_env)
    proc = Proc(name, [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "bench.webapp:app"], env,
                workdir / f"{name}.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/bench/static", 90, proc.proc)
        # Every worker imported the app (they answer in turn; a few requests reach each).
        deadline = time.monotonic() + 30
        expected = int(extra_env.get("CHARGEAPP_WEB_WORKERS") or 0)
        while expected and len(children(proc.pid)) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        for _ in range(20):
            urllib.request.urlopen(base + "/bench/static", timeout=5).read()
    except Exception:
        proc.stop()
        raise RuntimeError(f"gunicorn did not start: {proc.tail()}") from None
    return proc, base


def start_bridge(workdir: Path, url: str, mqtt_url: str, *, name: str = "bridge", args: tuple[str, ...] = ()) -> tuple[Proc, int]:
    """The real bridge process (``python -m mqtt_bridge``) with its defaults; (proc, metrics port)."""
    port = free_port()
    env = app_env(url)
    proc = Proc(name, [PYTHON, "-m", "mqtt_bridge", "--mqtt-url", mqtt_url, "--metrics-port", str(port),
                       "--log-level", "WARNING", *args], env, workdir / f"{name}.log")
    return proc, port


def bridge_healthy(port: int, timeout: float = 60.0, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"the bridge exited: {proc.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the bridge was not healthy within {timeout} s: {proc.tail() if proc else ''}")


def metric(port: int, name: str) -> float:
    """The sum of a Prometheus metric's samples (every label set) from the bridge's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def dump(results: list[Result], path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": meta, "results": [r.as_dict() for r in results]}, indent=2, default=str))
