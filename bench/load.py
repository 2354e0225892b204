"""A closed-loop HTTP load generator: N keep-alive connections, each sending its next request when the last answered.

The connections are spread over a few processes (spawned, so the GIL of one
Python process does not cap the client), each connection on its own thread with
its own ``http.client`` connection. Every process starts at the same wall-clock
instant and stops at the same deadline; requests finished during the warm-up are
left out of the figures.

A scenario is a module-level function ``(conn, client, stop_at) -> None`` that
sends requests through ``Recorder.request`` until ``stop_at``.
"""
from __future__ import annotations

import http.client
import json
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Recorder:
    """Per-connection records: (kind, status, seconds, finished at wall time)."""

    host: str
    port: int
    count_from: float
    records: list = field(default_factory=list)
    conn: http.client.HTTPConnection | None = None

    def request(self, kind: str, method: str, path: str, body: dict | None = None,
                headers: dict | None = None) -> tuple[int, dict | None]:
        payload = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})} if payload is not None else dict(headers or {})
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            started = time.perf_counter()
            try:
                self.conn.request(method, path, body=payload, headers=hdrs)
                resp = self.conn.getresponse()
                data = resp.read()
                status = resp.status
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                # The server closed an idle keep-alive connection (or restarted a worker): reconnect once.
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    status, data = 599, b""
                    break
        elapsed = time.perf_counter() - started
        if time.time() >= self.count_from:
            self.records.append((kind, status, elapsed, time.time()))
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return status, parsed


def _thread(scenario, base: str, client: dict, count_from: float, stop_at: float, out: list) -> None:
    parts = urlsplit(base)
    rec = Recorder(parts.hostname, parts.port, count_from)
    try:
        scenario(rec, client, stop_at)
    finally:
        if rec.conn is not None:
            rec.conn.close()
        out.extend(rec.records)


def _process(scenario_ref: str, base: str, clients: list[dict], start_at: float, warmup: float, stop_at: float,
             queue) -> None:
    module, name = scenario_ref.split(":")
    import importlib

    scenario = getattr(importlib.import_module(module), name)
    out: list = []
    while time.time() < start_at:
        time.sleep(min(0.01, max(0.0, start_at - time.time())))
    threads = [threading.Thread(target=_thread, args=(scenario, base, c, start_at + warmup, stop_at, out))
               for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put(out)


def run(scenario_ref: str, base: str, clients: list[dict], *, seconds: float, warmup: float = 2.0,
        processes: int = 2) -> dict:
    """Run ``scenario_ref`` ("module:function") for every client dict, ``warmup`` + ``seconds`` long; the records."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    processes = max(1, min(processes, len(clients)))
    shares = [clients[i::processes] for i in range(processes)]
    start_at = time.time() + 1.5  # time for the spawned interpreters to import
    stop_at = start_at + warmup + seconds
    procs = [ctx.Process(target=_process, args=(scenario_ref, base, share, start_at, warmup, stop_at, queue),
                         daemon=True) for share in shares]
    for p in procs:
        p.start()
    records: list = []
    for _ in procs:
        records.extend(queue.get(timeout=seconds + warmup + 120))
    for p in procs:
        p.join(30)
    return {"records": records, "seconds": seconds, "connections": len(clients)}


def summarise(records: list, seconds: float, kinds: tuple[str, ...] | None = None) -> dict:
    """Requests per second, statuses, p50/p99/max latency (ms) of the records of ``kinds`` (all when None)."""
    from bench.common import ms, percentile

    chosen = [r for r in records if kinds is None or r[0] in kinds]
    latencies = [r[2] for r in chosen]
    statuses: dict[str, int] = {}
    for r in chosen:
        statuses[str(r[1])] = statuses.get(str(r[1]), 0) + 1
    return {
        "requests": len(chosen), "per_second": round(len(chosen) / seconds, 1) if seconds else None,
        "p50_ms": ms(percentile(latencies, 50)), "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies)) if latencies else None, "statuses": statuses,
    }


# --------------------------------------------------------------------------- scenarios


def static_scenario(rec: Recorder, client: dict, stop_at: float) -> None:
    """The yardstick: GET /bench/static (no database) in a loop."""
    while time.time() < stop_at:
        rec.request("static", "GET", "/bench/static")


def booking_scenario(rec: Recorder, client: dict, stop_at: float) -> None:
    """A driver books a slot (any fast charger) and cancels it, again and again; slots drawn from ``client["slots"]``."""
    import random

    rnd = random.Random(client["seed"])
    auth = {"Authorization": f"Bearer {client['token']}"}
    slots = client["slots"]
    while time.time() < stop_at:
        slot = rnd.choice(slots)
        status, body = rec.request("book", "POST", "/api/v1/bookings", {"station": client["station"], "slot_start": slot},
                                   auth)
        if status == 201 and body:
            rec.request("cancel", "POST", f"/api/v1/bookings/{body['id']}/cancel", None, auth)
        elif status == 409 and body and body.get("code") == "active_booking_exists":
            _cancel_active(rec, auth)


def _cancel_active(rec: Recorder, auth: dict) -> None:
    status, body = rec.request("list", "GET", "/api/v1/bookings?limit=5", None, auth)
    for b in body or []:
        if b.get("status") in ("booked", "held", "waiting"):
            rec.request("cancel", "POST", f"/api/v1/bookings/{b['id']}/cancel", None, auth)


def attack_scenario(rec: Recorder, client: dict, stop_at: float) -> None:
    """Double-booking attack: everyone wants the same slot (half name the charger, half take any); a winner cancels
    at once and tries again, so the slot is fought over for the whole run."""
    auth = {"Authorization": f"Bearer {client['token']}"}
    body = {"station": client["station"], "slot_start": client["slot"]}
    if client.get("charger"):
        body["charger"] = client["charger"]
    while time.time() < stop_at:
        status, got = rec.request("book", "POST", "/api/v1/bookings", body, auth)
        if status == 201 and got:
            rec.request("cancel", "POST", f"/api/v1/bookings/{got['id']}/cancel", None, auth)
        elif status == 409 and got and got.get("code") == "active_booking_exists":
            _cancel_active(rec, auth)
