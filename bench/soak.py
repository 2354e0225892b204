"""A soak run: ``python -m bench.soak [--minutes 30] [--rate 8] [--speed 60]``.

Starts ``chargeapp demo --no-history`` (its embedded broker, gunicorn, the bridge and the
simulated hardware of every demo station, on SQLite, the clock at ``--speed``,
simulated faults off so every gap in a device's sequence is a lost message), and
puts an API load on it for ``--minutes``: drivers registering and logging in,
the finder, station pages, slot lists, and booking then cancelling the next free
slot, at ``--rate`` requests a second in all (open loop: a request is sent on
schedule whether the last one answered or not, up to ``--clients`` in flight).

Reported (JSON on stdout, and ``--json FILE``):

- memory: the resident memory of each process (the demo with its broker, the web
  workers, the bridge, the simulators) per minute, first and last minute;
- errors: HTTP 5xx and connection failures, other statuses by code; ERROR and
  Traceback lines in every process's log;
- lost messages: the bridge's sequence gaps never filled (missing - filled), and
  received = applied (ignored included) + duplicates + dead-lettered (nothing
  dropped in the bridge), compared after the simulators stopped and the queue drained.

docs/reliability.md has the latest figures and the command that produced them.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import ROOT, RssSampler, free_port, metric, say, wait_http

STATIONS = ("yangpu-liaoyuan", "hongkou-quyang")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo.extend(int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split())
        except OSError:
            pass
    return out


def _group(root: int, pattern: str):
    """The pids under ``root`` whose command line matches ``pattern`` (looked up at each sample)."""
    rx = re.compile(pattern)
    return lambda: [p for p in _tree(root) if p != root and rx.search(_cmdline(p))]


class Drivers:
    """The API load: each call is one request of a driver's day, chosen in turn."""

    def __init__(self, base: str, drivers: int):
        self.base = base
        self.tokens: list[str] = []
        self.statuses: Counter = Counter()
        self.failures: Counter = Counter()
        self.latencies: list[float] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._n = 0
        self.drivers = drivers

    def _conn(self):
        host, port = self.base.removeprefix("http://").split(":")
        if getattr(self._local, "conn", None) is None:
            self._local.conn = http.client.HTTPConnection(host, int(port), timeout=30)
        return self._local.conn

    def request(self, kind: str, method: str, path: str, body: dict | None = None, token: str | None = None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        for attempt in (1, 2):
            reused = getattr(self._local, "conn", None) is not None
            try:
                conn = self._conn()
                conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                             headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                # The server closed an idle keep-alive connection as we reused it: send again on a new one,
                # as HTTP clients do. On a new connection it is a failure.
                self._local.conn = None
                if reused and attempt == 1:
                    continue
                return self._failed(kind, exc)
            except Exception as exc:  # noqa: BLE001 (any failure to get an answer is counted, by kind)
                self._local.conn = None
                return self._failed(kind, exc)
        with self._lock:
            self.statuses[(kind, status)] += 1
            self.latencies.append(time.perf_counter() - started)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    def _failed(self, kind: str, exc: BaseException):
        with self._lock:
            self.failures[f"{kind}: {type(exc).__name__}"] += 1
        return None, None

    def setup(self) -> None:
        for i in range(self.drivers):
            email = f"soak-{os.getpid()}-{i}@example.com"
            status, body = self.request("register", "POST", "/api/v1/auth/register",
                                        {"email": email, "password": "soak-driver-pass", "plate": f"沪A{10000 + i}"})
            if status == 201:
                self.tokens.append(body["token"])
        if not self.tokens:
            raise RuntimeError("no driver could register")

    def one(self) -> None:
        with self._lock:
            self._n += 1
            n = self._n
        token = self.tokens[n % len(self.tokens)]
        station = STATIONS[n % len(STATIONS)]
        step = n % 6
        if step == 0:
            self.request("finder", "GET", "/api/v1/stations")
        elif step == 1:
            self.request("station", "GET", f"/api/v1/stations/{station}")
        elif step == 2:
            self.request("login", "POST", "/api/v1/auth/login",
                         {"email": f"soak-{os.getpid()}-{n % len(self.tokens)}@example.com",
                          "password": "soak-driver-pass"})
        elif step == 3:
            self.request("notifications", "GET", "/api/v1/me/notifications", token=token)
        else:  # book the next free slot, then cancel it
            status, info = self.request("station", "GET", f"/api/v1/stations/{station}")
            slot = (info or {}).get("next_free_slot") if status == 200 else None
            if not slot:
                return
            status, booking = self.request("book", "POST", "/api/v1/bookings",
                                           {"station": station, "slot_start": slot}, token=token)
            if status == 201:
                self.request("cancel", "POST", f"/api/v1/bookings/{booking['id']}/cancel", token=token)


def _log_problems(path: Path) -> dict:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    errors = [ln for ln in lines if " ERROR " in ln or "Traceback" in ln or ln.startswith("ERROR")]
    return {"error_lines": len(errors), "first": errors[:5]}


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def run(minutes: float, rate: float, speed: float, clients: int, workdir: Path) -> dict:
    port, metrics_port = free_port(), free_port()
    log_path = workdir / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEAPP_")}
    cmd = [sys.executable, "-m", "chargeapp.cli", "demo", "--port", str(port), "--metrics-port", str(metrics_port),
           "--speed", f"{speed:g}", "--incidents", "0", "--no-history", "--data-dir", str(workdir / "demo")]
    say(f"soak: starting the demo (x{speed:g}) on port {port}; log {log_path}")
    with open(log_path, "wb") as log:
        demo = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    result: dict = {"minutes": minutes, "rate_per_s": rate, "speed": speed}
    # Stopped from outside (SIGTERM, a timeout): still stop the demo's process group below.
    signal.signal(signal.SIGTERM, _interrupted)
    paused: list[int] = []
    try:
        wait_http(f"{base}/healthz", 180)
        wait_http(f"http://127.0.0.1:{metrics_port}/healthz", 60)
        sampler = RssSampler({
            "demo+broker": lambda: [demo.pid],
            "web worker": _group(demo.pid, r"gunicorn|flask"),
            "bridge": _group(demo.pid, r"-m mqtt_bridge"),
            "simulators": _group(demo.pid, r"-m simulators"),
        }, interval=5.0).start()
        drivers = Drivers(base, drivers=20)
        drivers.setup()
        say(f"soak: {len(drivers.tokens)} drivers; {rate:g} requests/s for {minutes:g} min")
        started = time.monotonic()
        deadline = started + minutes * 60
        sent = 0
        with ThreadPoolExecutor(clients) as pool:
            while time.monotonic() < deadline:
                due = started + sent / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(drivers.one)
                sent += 1
                if sent % max(1, int(rate * 60)) == 0:
                    say(f"soak: {int((time.monotonic() - started) // 60)} min, {sent} calls, "
                        f"{sum(drivers.failures.values())} failures, "
                        f"{sum(n for (k, s), n in drivers.statuses.items() if s >= 500)} 5xx")
        # Pause the simulated devices (SIGSTOP: a device that exited would stop the whole demo), then let the
        # bridge drain what they sent last: received and applied are compared once nothing more arrives.
        paused.extend(_group(demo.pid, r"-m simulators")())
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        queue_empty, last = False, None
        for _ in range(120):
            now = (metric(metrics_port, "chargeapp_bridge_messages_received_total"),
                   metric(metrics_port, "chargeapp_bridge_queue_depth"))
            if now == last and now[1] == 0:
                queue_empty = True
                break
            last = now
            time.sleep(2)
        sampler.stop()
        names = ("messages_received_total", "messages_applied_total", "duplicates_total", "messages_ignored_total",
                 "dead_letters_total", "seq_missing_messages_total", "seq_filled_messages_total", "db_errors_total")
        m = {n: metric(metrics_port, f"chargeapp_bridge_{n}") for n in names}
        # An ignored message (valid, nothing to apply) is counted as applied too (mqtt_bridge/metrics.py).
        accounted = m["messages_applied_total"] + m["duplicates_total"] + m["dead_letters_total"]
        lat = sorted(drivers.latencies)
        result.update({
            "calls": sent,
            "http_5xx": sum(n for (k, s), n in drivers.statuses.items() if s >= 500),
            "connection_failures": dict(drivers.failures),
            "statuses": {f"{k} {s}": n for (k, s), n in sorted(drivers.statuses.items())},
            "latency_ms": {"p50": round(lat[len(lat) // 2] * 1000, 1), "p99": round(lat[int(len(lat) * 0.99)] * 1000, 1),
                           "max": round(lat[-1] * 1000, 1)} if lat else {},
            "bridge": m,
            "lost_messages": m["seq_missing_messages_total"] - m["seq_filled_messages_total"],
            "received_not_accounted": m["messages_received_total"] - accounted,
            "queue_drained": queue_empty,
            "memory": {name: sampler.summary(name) for name in sampler.groups},
        })
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGINT)
            try:
                demo.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait(10)
        result["demo_exit_code"] = demo.returncode
        result["logs"] = {p.name: _log_problems(p) for p in [log_path, *sorted((workdir / "demo").glob("**/*.log"))]}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=8.0, help="API calls a second (each 1-3 requests)")
    parser.add_argument("--speed", type=float, default=60.0, help="the demo clock's speed")
    parser.add_argument("--clients", type=int, default=16, help="calls in flight at most")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, database)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="chargeapp-soak-"))
    result = run(args.minutes, args.rate, args.speed, args.clients, workdir)
    text = json.dumps(result, indent=2, ensure_ascii=False, default=str)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    else:
        say(f"soak: kept {workdir}")
    bad = (result.get("http_5xx") or result.get("connection_failures") or result.get("lost_messages")
           or result.get("received_not_accounted") or not result.get("queue_drained"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
