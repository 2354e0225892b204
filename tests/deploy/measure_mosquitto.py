"""Measure the shipped Mosquitto configuration on this host (not a test; prints figures for docs/deploy.md).

    python -m tests.deploy.measure_mosquitto [--queued 200000] [--retained 30000]

1. queue: a burst to an offline persistent bridge session, shipped limits vs
   Mosquitto's default max_queued_messages 1000 (how many arrive);
2. memory: broker RSS per queued message (a realistic meter payload);
3. save: how long the broker stalls while it writes its database (a round trip
   timed across SIGUSR1), with the retained states of a city network, and with
   a queued backlog on top;
4. kill -9: messages lost when the broker dies between two autosaves.

Everything runs on 127.0.0.1 with a temporary directory; every wait is bounded.
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path

from chargeapp import telemetry as t
from chargeapp.mqtt_credentials import (
    bridge_account, build_credentials, charger_account, render_acl, render_passwd,
)
from tests.deploy.support import Mosquitto, connect, wait_for

STATION = "m1"
METER = json.dumps({"connector": 1, "transaction_id": 77, "energy_wh": 1241230, "power_w": 58200, "soc": 46,
                    "ts": "2026-11-22T14:30:05+08:00", "boot": 7, "seq": 1071}).encode()


def credentials(workdir: Path, chargers: int = 2):
    accounts = [bridge_account("bridge"), bridge_account("bridge-2")] + [charger_account(f"{STATION}.C{i}", STATION, f"C{i}") for i in range(chargers)]
    hashes, plain, _ = build_credentials(accounts, {}, {}, given=[], rotate_all=False, rotate=set())
    (workdir / "passwd").write_text(render_passwd(accounts, hashes))
    (workdir / "acl").write_text(render_acl(accounts))
    return plain


def publish_many(client, topics, payload: bytes, *, retain: bool = False, chunk: int = 20_000) -> None:
    """Publish one message per topic at QoS 1, waiting for the PUBACKs chunk by chunk (paho's packet ids wrap at 65,535)."""
    topics = list(topics)
    for i in range(0, len(topics), chunk):
        infos = [client.paho.publish(topic, payload, qos=1, retain=retain) for topic in topics[i:i + chunk]]
        for info in infos:
            info.wait_for_publish(120)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def burst_to_offline_bridge(workdir: Path, plain, n: int, overrides=None, *, measure_rss=False) -> dict:
    broker = Mosquitto(workdir, workdir.parent / "passwd", workdir.parent / "acl", overrides=overrides).start()
    try:
        bridge = connect(broker, "bridge", plain["bridge"], protocol="5", clean=False)
        bridge.subscribe(t.meter_topic(STATION, "C0"))
        bridge.close()
        charger = connect(broker, f"{STATION}.C0", plain[f"{STATION}.C0"])
        before = rss_kib(broker.proc.pid)
        publish_many(charger, [t.meter_topic(STATION, "C0")] * n, METER)
        after = rss_kib(broker.proc.pid)
        charger.close()
        bridge = connect(broker, "bridge", plain["bridge"], protocol="5", clean=False)
        wait_for(lambda: bridge.messages.qsize() >= n, 10 + n / 5000)
        time.sleep(0.5)
        got = len(bridge.topics())
        bridge.close()
        out = {"published_and_acked": n, "delivered": got}
        if measure_rss:
            out["rss_kib_per_1000_queued"] = round((after - before) / n * 1000)
        return out
    finally:
        broker.stop()


def save_stall(workdir: Path, plain, retained: int, queued: int) -> dict:
    """Command round trips back to back for 3 s with a database save (SIGUSR1) in the middle: the longest one is the stall."""
    broker = Mosquitto(workdir, workdir.parent / "passwd", workdir.parent / "acl").start()
    try:
        bridge = connect(broker, "bridge", plain["bridge"], protocol="5", clean=False)
        bridge.subscribe(t.meter_topic(STATION, "C0"))
        bridge.close()
        c0 = connect(broker, f"{STATION}.C0", plain[f"{STATION}.C0"])
        publish_many(c0, [t.status_topic(STATION, "C0", i + 1) for i in range(retained)], METER, retain=True)
        publish_many(c0, [t.meter_topic(STATION, "C0")] * queued, METER)
        c0.subscribe(t.command_subscription(STATION, "C0"))
        # A second bridge user: connecting as "bridge" again would replace (and, clean, wipe) the session above.
        commander = connect(broker, "bridge-2", plain["bridge-2"], protocol="5", clean=True)
        topic = t.command_topic(STATION, "C0", "remote_stop")

        def round_trips(seconds: float, save_at: float | None) -> list[float]:
            out = []
            start = time.monotonic()
            saved = False
            while time.monotonic() - start < seconds:
                if save_at is not None and not saved and time.monotonic() - start >= save_at:
                    broker.proc.send_signal(signal.SIGUSR1)
                    saved = True
                before = c0.messages.qsize()
                t0 = time.perf_counter()
                commander.paho.publish(topic, b"{}", qos=1)
                if not wait_for(lambda: c0.messages.qsize() > before, 30, interval=0.0002):
                    raise RuntimeError("command not delivered within 30 s")
                out.append((time.perf_counter() - t0) * 1000)
            c0.drain()
            return out

        idle = round_trips(1.0, None)
        during = round_trips(3.0, 1.0)
        size = broker.db_file.stat().st_size if broker.db_file.exists() else 0
        commander.close()
        c0.close()
        return {"retained": retained, "queued": queued, "db_file_mb": round(size / 1e6, 1),
                "round_trip_ms_p50": round(statistics.median(idle), 2),
                "round_trip_ms_max_without_save": round(max(idle), 1),
                "round_trip_ms_max_with_a_save": round(max(during), 1)}
    finally:
        broker.stop()


def kill9_loss(workdir: Path, plain, rate: int, seconds: float) -> dict:
    """A steady stream to an offline bridge session, broker killed with -9, restarted: how much of it survived."""
    broker = Mosquitto(workdir, workdir.parent / "passwd", workdir.parent / "acl").start()
    bridge = connect(broker, "bridge", plain["bridge"], protocol="5", clean=False)
    bridge.subscribe(t.meter_topic(STATION, "C0"))
    bridge.close()
    time.sleep(0.2)
    broker.proc.send_signal(signal.SIGUSR1)  # the session and subscription are on disk
    time.sleep(0.5)
    charger = connect(broker, f"{STATION}.C0", plain[f"{STATION}.C0"])
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        charger.publish(t.meter_topic(STATION, "C0"), METER)
        sent += 1
        time.sleep(max(0.0, start + sent / rate - time.monotonic()))
    broker.kill9()
    charger.paho.loop_stop()
    broker.start()
    try:
        bridge = connect(broker, "bridge", plain["bridge"], protocol="5", clean=False)
        time.sleep(2)
        got = len(bridge.topics())
        bridge.close()
        return {"rate_per_s": rate, "stream_s": seconds, "acked_by_broker": sent, "survived": got, "lost": sent - got}
    finally:
        broker.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queued", type=int, default=200_000)
    p.add_argument("--retained", type=int, default=30_000)
    p.add_argument("--skip-kill", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        plain = credentials(root)
        print("queue, 5,000-message burst, shipped:", burst_to_offline_bridge(root / "q1", plain, 5000))
        print("queue, 5,000-message burst, default 1000:",
              burst_to_offline_bridge(root / "q2", plain, 5000, {"max_queued_messages": "1000"}))
        print(f"memory, {a.queued:,} queued:", burst_to_offline_bridge(root / "q3", plain, a.queued, measure_rss=True))
        print("save stall, retained only:", save_stall(root / "s1", plain, a.retained, 0))
        print("save stall, retained + queued:", save_stall(root / "s2", plain, a.retained, a.queued))
        if not a.skip_kill:
            print("kill -9, autosave 10 s:", kill9_loss(root / "k1", plain, rate=200, seconds=14))


if __name__ == "__main__":
    main()
