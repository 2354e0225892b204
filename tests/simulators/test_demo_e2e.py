"""``chargeapp demo`` as a user runs it: everything comes up, data flows, Ctrl-C stops every process."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mqtt_bridge.measure import free_port
from tests.simulators.conftest import Watcher

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purposes once its parent (the demo) has exited and init reaped it.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, json.loads(r.read())


def test_the_demo_starts_everything_on_one_clock_and_ctrl_c_stops_every_process(tmp_path):
    web_port, mqtt_port, metrics_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEAPP_")}
    env["PYTHONPATH"] = str(ROOT)
    demo = subprocess.Popen(
        [sys.executable, "-m", "chargeapp.demo", "--port", str(web_port), "--mqtt-port", str(mqtt_port),
         "--metrics-port", str(metrics_port), "--speed", "120", "--station", "hongkou-quyang",
         "--data-dir", str(tmp_path / "demo"), "--seed", "2", "--start", "2026-11-23T12:00:00+08:00",
         "--no-history"],  # the live run; the seeded week is tests/integration/test_demo_history.py
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))
            if "Press Ctrl-C" in line:
                ready.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    pids: list[int] = []
    try:
        assert ready.wait(30), "\n".join(lines[-40:])
        text = "\n".join(lines)
        pids = [int(p) for p in re.findall(r"\bpid (\d+)", text)]
        assert len(pids) == 3, text  # web, bridge, simulators
        assert re.search(r"CHARGEAPP_CLOCK_START=\S+@\d+\.\d+", text)

        base = f"http://127.0.0.1:{web_port}"
        assert _get(f"{base}/healthz") == (200, {"status": "ok"})
        status, stations = _get(f"{base}/api/v1/stations")
        assert status == 200 and {s["code"] for s in stations} >= {"yangpu-liaoyuan", "hongkou-quyang"}

        watcher = Watcher(mqtt_port)
        try:
            live = watcher.wait_for(lambda m: not m[2] and not m[0].endswith("/online"), timeout=20)
            assert live, watcher.snapshot()[:5]
            seen_live = len([m for m in watcher.snapshot() if not m[2]])
        finally:
            watcher.close()
        late = Watcher(mqtt_port, topic="stations/+/+/+/online")  # subscribes after the devices connected
        try:
            retained = late.wait_for(lambda m: m[2] and m[0].endswith("/online"), timeout=15)
            assert retained and all(m[1] == b"true" for m in retained)
        finally:
            late.close()
        # Simulator -> broker -> bridge -> database -> API: cars plugged in during the first simulated minutes show up.
        busy, deadline = [], time.monotonic() + 30
        while not busy and time.monotonic() < deadline:
            status, detail = _get(f"{base}/api/v1/stations/hongkou-quyang")
            assert status == 200 and len(detail["chargers"]) == 8
            busy = [c["code"] for c in detail["chargers"]
                    if c["status"] in ("Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing")]
            time.sleep(0.5)
        assert busy, detail

        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert demo.wait(20) == 0, "\n".join(lines[-30:])
        reader.join(5)
        text = "\n".join(lines)
        received = int(re.search(r"broker received (\d+) messages", text).group(1))
        assert received >= max(seen_live, 20)  # the embedded broker counts every publish it received
        for name in ("sim", "bridge", "web"):
            assert re.search(rf"demo: {name} \(pid \d+\) stopped, exit code 0", text), text[-2000:]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(_gone(p) for p in pids):
            time.sleep(0.1)
        assert all(_gone(p) for p in pids)
        for p in pids:  # nothing left in the children's process groups (gunicorn workers included)
            with pytest.raises(ProcessLookupError):
                os.killpg(p, 0)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(5)
        for p in pids:
            try:
                os.killpg(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
