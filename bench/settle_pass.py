"""A receipts pass (``receipts.settle_due``) over ~1,000 unchanged receipts on SQLite: the pass before digests
(every receipt of the last 24 h repriced; the code of commit 68e0680, taken with ``git show``) against the
current one, on the same database. A one-off before/after measurement (docs/performance.md, Memory):

    python -m bench.settle_pass                  # SESSIONS=700 STAYS=300 by default
    SESSIONS=40000 STAYS=13000 CHARGERS=2000 BEFORE=77b2c90 python -m bench.settle_pass   # a network's day

BEFORE names the commit of the "before" code; CHARGERS the station's chargers (sessions of 45 minutes are spread
over 22 hours on them: keep several per charger at most, or they overlap). Also reports the peak of Python's
allocations in one pass (tracemalloc) and, when the window is larger than a pass, a whole round of passes.
"""
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone

from sqlalchemy import event, func, insert, select

from chargeapp.app import create_app
from chargeapp.clock import FixedClock
from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.services import receipts
from chargeapp.services.registry import ChargerSpec, StationSpec, TariffSpec, build_station, create_user

WORK = tempfile.mkdtemp(prefix="settle-pass-")
OLD = os.path.join(WORK, "old_receipts.py")
with open(OLD, "w") as f:
    f.write(subprocess.run(["git", "show", f"{os.environ.get('BEFORE', '68e0680')}:chargeapp/services/receipts.py"],
                           check=True, text=True,
                           capture_output=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout)
spec = importlib.util.spec_from_file_location("old_receipts", OLD)
old = importlib.util.module_from_spec(spec)
sys.modules["old_receipts"] = old
spec.loader.exec_module(old)

UTC = timezone.utc
NOW = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
N_SESSIONS, N_STAYS = int(os.environ.get("SESSIONS", 700)), int(os.environ.get("STAYS", 300))
N_CHARGERS = int(os.environ.get("CHARGERS", 20))
path = os.path.join(WORK, "recheck.db")
if os.path.exists(path):
    os.remove(path)
app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "CHARGEAPP_CLOCK": FixedClock(NOW)})
with app.app_context():
    db.create_all()
    s = db.session
    station = build_station(s, StationSpec(
        code="m1", name="M1", latitude=31.2, longitude=121.5,
        chargers=[ChargerSpec(f"F{i:02d}", "fast", "B1") for i in range(N_CHARGERS * 3 // 4)]
        + [ChargerSpec(f"S{i:02d}", "slow", "B2", 7) for i in range(N_CHARGERS - N_CHARGERS * 3 // 4)],
        gates=["G-in", "G-out"],
        tariff=TariffSpec(effective_from=datetime(2020, 1, 1, tzinfo=UTC))), NOW - timedelta(days=2))
    connectors = [(c.id, c.connectors[0].id) for c in station.chargers]
    drivers = []
    for i in range(N_STAYS):
        u = create_user(s, email=f"m{i}@example.com", password_hash="x", now=NOW - timedelta(days=2))
        s.add(m.PlateRegistration(user_id=u.id, plate=f"沪M{i:05d}", valid_from=NOW - timedelta(days=2)))
        drivers.append(u.id)
    s.flush()
    # Sessions over the last 23 h, 45 min each, one reading a minute, a status history like a charger's.
    day0 = NOW - timedelta(hours=23)
    per_connector = N_SESSIONS // len(connectors) + 1
    gap = timedelta(hours=22) / per_connector
    statuses, readings, n = [], [], 0
    for k, (charger_id, connector_id) in enumerate(connectors):
        for j in range(per_connector):
            if n == N_SESSIONS:
                break
            start = day0 + j * gap + timedelta(minutes=k % 60)  # (all in the past however many chargers)
            cs = m.ChargingSession(station_id=station.id, charger_id=charger_id, connector_id=connector_id,
                                   transaction_id=n + 1, driver_id=drivers[n % len(drivers)], started_at=start,
                                   start_meter_wh=0, stopped_at=start + timedelta(minutes=45),
                                   stop_meter_wh=45 * 700, closed_by="stop", flags=[])
            s.add(cs)
            s.flush()
            readings += [{"session_id": cs.id, "at": start + timedelta(minutes=t), "energy_wh": 700 * t,
                          "power_w": 40000, "soc": None} for t in range(1, 45)]
            for minutes, value in ((-1, "Preparing"), (0, "Charging"), (35, "SuspendedEV"), (45, "Finishing"),
                                   (52, "Available")):
                statuses.append({"connector_id": connector_id, "status": value, "error_code": "NoError",
                                 "at": start + timedelta(minutes=minutes), "skewed": False})
            n += 1
    s.execute(insert(m.MeterReading.__table__), readings)
    s.execute(insert(m.StatusChange.__table__), statuses)
    for i in range(N_STAYS):
        entry = day0 + timedelta(minutes=(i * 4) % (22 * 60))
        s.add(m.ParkingStay(station_id=station.id, plate=f"沪M{i:05d}", entry_at=entry,
                            exit_at=entry + timedelta(minutes=90), flags=[]))
    s.commit()
    first = receipts.settle_due(s, NOW)
    s.commit()
    total = s.scalar(select(func.count(m.Receipt.id)))
    print(f"{total} receipts ({first['charging_receipts']} charging, {first['parking_receipts']} parking), "
          f"{len(readings)} meter readings, {len(statuses)} status changes; SQLite {path}")

    step = iter(range(1, 1_000_000))

    def timed(label, fn, runs=5):
        sent = []
        listener = lambda *a: sent.append(1)
        times = []
        for r in range(runs):
            sent.clear()
            event.listen(db.engine, "before_cursor_execute", listener)
            t = time.perf_counter()
            counts = fn(s, NOW + timedelta(seconds=5 * next(step)))
            times.append(time.perf_counter() - t)
            event.remove(db.engine, "before_cursor_execute", listener)
            s.commit()
        s.expunge_all()
        tracemalloc.start()
        fn(s, NOW + timedelta(seconds=5 * next(step)))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        s.commit()
        print(f"{label}: median {statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f}, "
              f"max {max(times) * 1000:.0f}) over {runs} passes, {len(sent)} statements; "
              f"rechecked {counts['rechecked']}, corrections {counts['corrections']}; "
              f"peak of Python allocations in a pass {peak / 2**20:.1f} MiB")

    timed("before", old.settle_due, runs=int(os.environ.get("BEFORE_RUNS", 3)))
    timed("after", receipts.settle_due)
    window = s.scalar(select(func.count(m.Receipt.id)).where(m.Receipt.kind.in_(receipts.ORIGINAL_KINDS)))
    per_round = -(-window // receipts.RECHECK_PER_PASS)
    if per_round > 1:
        t = time.perf_counter()
        for _ in range(per_round):
            receipts.settle_due(s, NOW + timedelta(seconds=5 * next(step)))
            s.commit()
        print(f"after, a round of {per_round} passes over the {window} receipts: "
              f"{(time.perf_counter() - t) * 1000:.0f} ms in all")
    # One late status change: the pass reprices the receipts it touches, only those.
    connector_id = connectors[0][1]
    s.add(m.StatusChange(connector_id=connector_id, status="Charging", at=day0 + timedelta(minutes=20)))
    s.commit()
    timed("after, one late status change (the first pass to look at them reprices its receipts)", receipts.settle_due,
          runs=1)
