"""Where the bridge's resident memory goes, in-process: ``python -m bench.memory_probe``.

The memory benchmark (``bench/live.py``) sees a process from outside (VmRSS);
this looks from inside, every ``--every`` messages or seconds:

- ``RssAnon`` (anonymous resident memory, what a leak grows),
- glibc's ``mallinfo2``: bytes in use and free in malloc's heap (SQLite, the C
  extensions, Python objects over 512 bytes),
- Python's small-object allocator: arenas allocated (1 MiB each, returned to
  the system only when empty) and bytes in its blocks (``sys._debugmallocstats``),
- the number of objects the cyclic GC tracks.

Modes:

``bridge``  the whole ``Bridge`` (paho client, worker, periodic work and outbox)
            against a private Mosquitto, fed the benchmark's mix at ``--rate``
            for ``--seconds``; ``--periodic-seconds 0`` turns the periodic work off.
``jobs``    the worker applying the mix in-process (no broker), 750 messages at
            a time, each followed by one periodic job (``--job tick``,
            ``receipts``, ``rollups``, ``none``); for ``receipts`` the number
            of charging sessions, and with ``--pass-peak`` the pass's own peak
            of Python allocations (tracemalloc; Python's allocator statistics
            are not available while it traces).

Linux and glibc only (``/proc/self/status``, ``mallinfo2``).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import re
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

UTC = timezone.utc


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                               "uordblks", "fordblks", "keepcost")]


def _libc():
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return libc


def rss_anon_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pymalloc() -> tuple[int, float]:
    """(arenas allocated now, MiB in allocated blocks) from ``sys._debugmallocstats`` (it writes to fd 2)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode(errors="replace")
    arenas = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    blocks = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    return (int(arenas.group(1).replace(",", "")) if arenas else -1,
            int(blocks.group(1).replace(",", "")) / 2**20 if blocks else float("nan"))


class Sampler:
    HEADER = f"{'at':>8} {'rss_anon':>9} {'malloc_used':>11} {'malloc_free':>11} {'py_arenas':>9} {'py_blocks':>9} {'gc_objects':>10}"

    def __init__(self):
        self.libc = _libc()
        print(self.HEADER + "   (MiB; at = messages or seconds)", flush=True)

    def row(self, at, extra: str = "") -> None:
        mi = self.libc.mallinfo2()
        arenas, blocks = pymalloc()
        print(f"{at:>8} {rss_anon_mib():9.1f} {mi.uordblks / 2**20:11.1f} {mi.fordblks / 2**20:11.1f} {arenas:9d} "
              f"{blocks:9.1f} {len(gc.get_objects()):10d} {extra}", flush=True)


def _mix(n: int, start: datetime):
    """The ingest and memory benchmarks' mix (``bench.ingest.TRANSACTION_SHARE`` of the draws turn a session over)."""
    from bench.ingest import TRANSACTION_SHARE
    from mqtt_bridge.measure import workload

    return workload("m1", [f"F{i}" for i in range(1, 21)], [f"D{i}" for i in range(1, 5)], ["G1", "G2"], n, start,
                    transaction_share=TRANSACTION_SHARE)


class _Now:
    def now(self) -> datetime:
        return datetime.now(UTC)


def run_jobs(messages: int, job: str, every: int, pass_peak: bool = False) -> None:
    import tracemalloc

    from sqlalchemy import func, select

    from chargeapp.db import db
    from chargeapp.db import models as m
    from chargeapp.runtime import freeze_startup_objects
    from chargeapp.services import booking, receipts, rollups
    from mqtt_bridge.client import Received
    from mqtt_bridge.measure import station_database
    from mqtt_bridge.worker import Worker

    jobs = {"none": None, "tick": booking.tick, "receipts": receipts.settle_due, "rollups": rollups.run_due}
    with tempfile.TemporaryDirectory() as work, station_database(Path(work), 20, 4, 2) as app:
        stream = _mix(messages, datetime.now(UTC) - timedelta(hours=1))
        clock = _Now()
        worker = Worker(app, clock=clock, ack=lambda r: True)
        freeze_startup_objects()
        sampler = Sampler()
        traced = pass_peak and job == "receipts"
        if traced:
            tracemalloc.start()
        with app.app_context():
            session = db.session
            next_row = 0
            for i in range(0, messages, 750):
                chunk = stream[i:i + 750]
                for j in range(0, len(chunk), 200):
                    worker.process([Received(t, p, 1, False, clock.now(), mid=1) for t, p in chunk[j:j + 200]])
                peak = 0.0
                if jobs[job] is not None:
                    if traced:
                        tracemalloc.reset_peak()
                        before = tracemalloc.get_traced_memory()[0]
                    jobs[job](session, clock.now())
                    if traced:
                        peak = (tracemalloc.get_traced_memory()[1] - before) / 2**20
                    session.commit()
                done = i + len(chunk)
                if done >= next_row or done == messages:
                    next_row += every
                    gc.collect()
                    extra = ""
                    if job == "receipts":
                        sessions = session.scalar(select(func.count()).select_from(m.ChargingSession))
                        extra = f"{sessions} sessions" + (f", pass peak {peak:.2f} MiB" if traced else "")
                    sampler.row(done, extra)
            db.session.remove()


def run_bridge(rate: float, seconds: float, periodic_seconds: float, every: float) -> None:
    import paho.mqtt.client as mqtt

    from chargeapp import telemetry
    from chargeapp.runtime import freeze_startup_objects
    from mqtt_bridge.bridge import Bridge, BridgeOptions
    from mqtt_bridge.measure import Mosquitto, station_database
    from mqtt_bridge.worker import WorkerOptions

    with tempfile.TemporaryDirectory() as work, station_database(Path(work), 20, 4, 2) as app:
        broker = Mosquitto(Path(work) / "broker", max_inflight=400).start()
        pub = bridge = None
        try:
            stream = _mix(int(rate * seconds) + 100, datetime.now(UTC) - timedelta(hours=3))
            bridge = Bridge(app, BridgeOptions(
                mqtt_url=f"{broker.url}?client_id=probe-bridge&protocol=5", metrics_port=0,
                worker=WorkerOptions(periodic_seconds=periodic_seconds, outbox_seconds=periodic_seconds / 10)))
            freeze_startup_objects()
            bridge.start()
            time.sleep(2)
            pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="probe-publisher", protocol=mqtt.MQTTv5)
            pub.max_inflight_messages_set(1000)
            pub.connect("127.0.0.1", broker.port)
            pub.loop_start()
            sampler = Sampler()
            started, sent, next_row = time.perf_counter(), 0, 0.0
            while sent < len(stream):
                elapsed = time.perf_counter() - started
                due = min(len(stream), int(elapsed * rate))
                while sent < due:
                    topic, payload = stream[sent]
                    pub.publish(topic, payload, qos=1, retain=telemetry.parse_topic(topic).retained)
                    sent += 1
                if elapsed >= next_row:
                    sampler.row(f"{elapsed:.0f}s", f"sent {sent}")
                    next_row += every
                time.sleep(0.01)
        finally:
            if pub is not None:
                pub.loop_stop()
                pub.disconnect()
            if bridge is not None:
                bridge.stop()
            broker.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory_probe", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bridge", help="the whole bridge against a private Mosquitto")
    b.add_argument("--rate", type=float, default=150.0)
    b.add_argument("--seconds", type=float, default=330.0)
    b.add_argument("--periodic-seconds", type=float, default=5.0, help="0: no periodic work, no outbox")
    b.add_argument("--every", type=float, default=30.0, help="seconds between rows")
    j = sub.add_parser("jobs", help="the worker in-process, with one periodic job after every 750 messages")
    j.add_argument("--job", choices=("none", "tick", "receipts", "rollups"), default="receipts")
    j.add_argument("--messages", type=int, default=60_000)
    j.add_argument("--every", type=int, default=7_500, help="messages between rows")
    j.add_argument("--pass-peak", action="store_true", help="receipts: trace the pass's peak (no arena figures)")
    args = parser.parse_args(argv)
    if args.mode == "bridge":
        run_bridge(args.rate, args.seconds, args.periodic_seconds, args.every)
    else:
        run_jobs(args.messages, args.job, args.every, args.pass_peak)
    return 0


if __name__ == "__main__":
    sys.exit(main())
