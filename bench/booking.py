"""The booking API through gunicorn, and the double-booking attack.

Both run against one gunicorn (the production gunicorn.conf.py: gthread, cores + 1
workers x 16 threads) serving ``bench.webapp:app`` on a fresh database:

1. **Yardstick**: 16 keep-alive connections GET ``/bench/static`` (the same
   app, no database) for the measured time.
2. **Booking API**: 16 connections, each a driver booking a random slot of the
   next day (any fast charger) and cancelling it, in a loop. Throughput is
   requests per second (a POST booking and a POST cancel are one each), latency
   over both.
3. **Double booking**: 8 drivers fight over one slot of a station with two fast
   chargers for 15 s (four name charger F1, four take any); a winner cancels at
   once, so the slot is contended the whole time. A thread checks the database
   for overlapping bookings on one charger every 100 ms during the attack, and
   once at the end.
"""
from __future__ import annotations

import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench import load
from bench.common import Databases, Result, bench_app, create_schema, say, start_web

UTC = timezone.utc
HOLDING = ("booked", "held", "checked_in")

OVERLAPS = """
SELECT count(*) FROM bookings a JOIN bookings b
  ON a.charger_id = b.charger_id AND a.id < b.id AND a.slot_start < b.slot_end AND b.slot_start < a.slot_end
WHERE a.status IN ('booked', 'held', 'checked_in') AND b.status IN ('booked', 'held', 'checked_in')
"""


def _setup(url: str, drivers: int, attackers: int, fast: int) -> dict:
    """Two stations (b1: ``fast`` fast chargers; hot: two), drivers with bearer tokens; returns what the clients need."""
    from chargeapp.db import db
    from chargeapp.services.registry import ChargerSpec, StationSpec, ZoneSpec, build_station, create_user
    from chargeapp.web.security import issue_token

    create_schema(url)
    app = bench_app(url)
    now = datetime.now(UTC)
    with app.app_context():
        for code, n in (("b1", fast), ("hot", 2)):
            build_station(db.session, StationSpec(
                code=code, name=f"Bench {code}", latitude=31.2, longitude=121.5,
                chargers=[ChargerSpec(f"F{i}", "fast") for i in range(1, n + 1)] + [ChargerSpec("S1", "slow")],
                zones=[ZoneSpec("hall", "Hall", 50)],
            ), now)
        users = [create_user(db.session, email=f"bench{i}@example.com", password_hash=secrets.token_hex(16), now=now,
                             name=f"Bench {i}", id_tags=(f"BENCH-{i}",)) for i in range(drivers + attackers)]
        db.session.commit()
        with app.test_request_context():
            tokens = [issue_token(u) for u in users]
        db.session.remove()
        db.engine.dispose()
    # Slots of the next day, on the :00/:30 grid, from an hour ahead: inside the 24 h horizon all run long.
    first = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    first += timedelta(minutes=(30 - first.minute % 30) % 30)
    slots = [(first + timedelta(minutes=30 * i)).isoformat() for i in range(40)]
    return {"tokens": tokens, "slots": slots, "hot_slot": slots[4]}


def _overlaps(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(OVERLAPS)).scalar())
    finally:
        engine.dispose()


class _OverlapWatch:
    """Counts overlapping holding bookings on one charger in the database every ``interval`` seconds."""

    def __init__(self, url: str, interval: float = 0.1):
        from sqlalchemy import create_engine

        self.engine = create_engine(url)
        self.interval = interval
        self.checks = 0
        self.worst = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from sqlalchemy import text

        while not self._stop.is_set():
            try:
                with self.engine.connect() as conn:
                    self.worst = max(self.worst, int(conn.execute(text(OVERLAPS)).scalar()))
                self.checks += 1
            except Exception:  # noqa: BLE001 (a locked SQLite read is retried next time)
                self.errors += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.engine.dispose()


def run(backend: str, dbs: Databases, workdir: Path, sizes: dict) -> list[Result]:
    """The booking API against its yardstick, then the double-booking attack; two Results."""
    connections, attackers = sizes["connections"], sizes["attackers"]
    url = dbs.fresh(backend, "booking")
    setup = _setup(url, connections, attackers, sizes["fast_chargers"])
    web, base = start_web(workdir, url, name=f"web-booking-{backend}")
    api = Result("booking_api", backend, target=(
        "booking req/s >= 0.25 x no-database req/s; p99 <= "
        + ("50 ms (PostgreSQL)" if backend == "postgresql" else "100 ms (SQLite)")))
    attack = Result("double_booking", backend, target="0 overlapping bookings")
    try:
        seconds, warmup = sizes["seconds"], sizes["warmup"]
        say(f"  yardstick: GET /bench/static, {connections} connections, {seconds} s")
        static = load.run("bench.load:static_scenario", base, [{} for _ in range(connections)],
                          seconds=seconds, warmup=warmup, processes=sizes["client_processes"])
        yard = load.summarise(static["records"], seconds)
        clients = [{"token": setup["tokens"][i], "station": "b1", "slots": setup["slots"], "seed": i}
                   for i in range(connections)]
        say(f"  booking API: POST bookings + cancel, {connections} connections, {seconds} s")
        booked = load.run("bench.load:booking_scenario", base, clients, seconds=seconds, warmup=warmup,
                          processes=sizes["client_processes"])
        both = load.summarise(booked["records"], seconds, ("book", "cancel"))
        api.figures = {
            **both,
            "book": load.summarise(booked["records"], seconds, ("book",)),
            "cancel": load.summarise(booked["records"], seconds, ("cancel",)),
        }
        api.baseline = yard
        if yard["per_second"] and both["per_second"]:
            api.ratio = round(both["per_second"] / yard["per_second"], 3)
        limit = 50 if backend == "postgresql" else 100
        # 409 (every charger of the drawn slot taken) is an answer; anything else but 2xx is a failure.
        errors = sum(n for s, n in both["statuses"].items() if not s.startswith("2") and s != "409")
        api.met = bool(api.ratio is not None and api.ratio >= 0.25 and both["p99_ms"] is not None
                       and both["p99_ms"] <= limit and errors == 0)
        api.sizes = {"connections": connections, "seconds": seconds, "warmup_s": warmup,
                     "fast_chargers": sizes["fast_chargers"], "slots": len(setup["slots"]),
                     "client_processes": sizes["client_processes"]}
        if errors:
            api.notes.append(f"{errors} failed requests (neither 2xx nor 409) during the booking run")

        attack_clients = [{"token": setup["tokens"][connections + i], "station": "hot", "slot": setup["hot_slot"],
                           "charger": "F1" if i % 2 == 0 else None} for i in range(attackers)]
        say(f"  double booking: {attackers} clients on one slot, {sizes['attack_seconds']} s")
        with _OverlapWatch(url) as watch:
            fought = load.run("bench.load:attack_scenario", base, attack_clients, seconds=sizes["attack_seconds"],
                              warmup=0.0, processes=sizes["client_processes"])
        final = _overlaps(url)
        books = load.summarise(fought["records"], sizes["attack_seconds"], ("book",))
        attack.figures = {
            "overlapping_bookings_at_end": final, "worst_overlap_seen_while_running": watch.worst,
            "database_checks_while_running": watch.checks, "booking_attempts": books["requests"],
            "won": books["statuses"].get("201", 0), "refused_409": books["statuses"].get("409", 0),
            "other_statuses": {s: n for s, n in books["statuses"].items() if s not in ("201", "409")},
            "attempt_p50_ms": books["p50_ms"], "attempt_p99_ms": books["p99_ms"],
        }
        attack.baseline = {"allowed_overlaps": 0}
        attack.met = final == 0 and watch.worst == 0 and books["statuses"].get("201", 0) > 0
        attack.sizes = {"clients": attackers, "seconds": sizes["attack_seconds"], "fast_chargers_at_station": 2}
        attack.notes.append("every winner cancels at once and tries again, so the slot is fought over the whole run")
    finally:
        web.stop()
    return [api, attack]
