"""The station utilization report over a year of history for 33 chargers, against a bare read of the same rows.

**History** is made through the real write path, with a progress bar: charger
telemetry through the services the bridge calls (``charging.record_status``,
``record_transaction``; one commit per 500 messages, as the bridge batches),
bookings through ``booking.book_slot`` and ``cancel_booking``, check-ins by the
driver's own session start (``check_in_from_session``). Per charger and day:
``sessions_per_day`` sessions on average (Poisson), each Preparing, start,
Charging, SuspendedEV or Finishing, stop, Available (6 messages); one booking a
day on average, of which about 60 % check in, 25 % are cancelled in time and
15 % are no-shows; a fault of 1-3 hours on 2 % of charger-days. No meter samples
(the report never reads ``meter_readings``; a session's energy comes from its
start and stop registers), no door or gate traffic (not in this report).
After each day the production rollup job (``rollups.run``, what the periodic
work runs under the bridge's lease) runs at one hour past the station's
midnight, so every rollup comes from it, as in production.

**Report**: ``reports.utilization`` for the whole generated range (one year in
full mode), median of ``repeats`` calls on a fresh session after one warm-up
call, reading the rollups (``report_*``) and, same data, the history only
(``history_report_*``: the report before rollups); then ``station_report`` (the
report page: utilization, heat map, trend and lounge) both ways. Each pair is
checked equal. **Baseline**: the bare rows the history-only report needs
(status changes of the station's connectors in the range, its sessions and
bookings), read with three plain SELECTs and fetched, same range, same run.
"""
from __future__ import annotations

import random
import statistics
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import Databases, Progress, Result, bench_app, create_schema, ms, say

UTC = timezone.utc
TZ = ZoneInfo("Asia/Shanghai")
STATION = "r1"
COMMIT_EVERY = 500


def _setup(session, chargers: int, drivers: int, now: datetime):
    from chargeapp.services.registry import ChargerSpec, StationSpec, TariffSpec, ZoneSpec, build_station, create_user

    fast = chargers * 2 // 3
    station = build_station(session, StationSpec(
        code=STATION, name="Reports", latitude=31.2, longitude=121.5,
        chargers=[ChargerSpec(f"F{i:02d}", "fast") for i in range(1, fast + 1)]
        + [ChargerSpec(f"S{i:02d}", "slow", max_power_kw=7) for i in range(1, chargers - fast + 1)],
        zones=[ZoneSpec("hall", "Hall", 60)],
        tariff=TariffSpec(effective_from=datetime(2020, 1, 1, tzinfo=UTC)),
    ), now)
    users = [create_user(session, email=f"r{i}@example.com", password_hash="x", now=now, name=f"R {i}",
                         id_tags=(f"RT-{i}",)) for i in range(drivers)]
    session.commit()
    return station, [(u.id, f"RT-{i}") for i, u in enumerate(users)]


def _day_plan(rnd: random.Random, day: date, chargers: list[tuple[str, str]], sessions_per_day: float,
              tx: dict, energy: dict, bookings: list) -> list[tuple]:
    """The day's messages of every charger, as (at, charger, call, kwargs), and its bookings appended to ``bookings``."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=TZ).astimezone(UTC)
    out: list[tuple] = []
    for code, kind in chargers:
        t = start + timedelta(minutes=rnd.uniform(0, 120))
        end_of_day = start + timedelta(days=1)
        booked = None
        if kind == "fast" and rnd.random() < 1.0:
            slot = start + timedelta(minutes=30 * rnd.randrange(16, 44))  # 08:00-22:00 local
            booked = (slot, rnd.random())
            bookings.append((code, slot, booked[1]))
        sessions = _poisson(rnd, sessions_per_day)
        if booked and booked[1] < 0.60:
            sessions = max(sessions, 1)
        plans = []
        for _ in range(sessions):
            length = timedelta(minutes=rnd.uniform(20, 70) if kind == "fast" else rnd.uniform(90, 300))
            plans.append(length)
        gap_total = (end_of_day - t) - sum(plans, timedelta())
        gaps = [rnd.random() for _ in range(len(plans) + 1)]
        scale = max(timedelta(), gap_total) / (sum(gaps) or 1)
        show_at = booked[0] + timedelta(minutes=2) if booked and booked[1] < 0.60 else None
        for i, length in enumerate(plans):
            t += gaps[i] * scale
            id_tag = None
            if show_at is not None and (t >= show_at - timedelta(minutes=5) or i == len(plans) - 1):
                t, id_tag, show_at = max(t, show_at), "BOOKED", None  # the booking's driver turns up at the slot
            if t + length + timedelta(minutes=10) >= end_of_day:
                break
            tx[code] += 1
            wh = int(length.total_seconds() / 3600 * (60_000 if kind == "fast" else 7_000) * rnd.uniform(0.5, 1.0))
            n = tx[code]
            out += [
                (t, code, "status", {"status": "Preparing"}),
                (t + timedelta(seconds=20), code, "start", {"transaction_id": n, "meter_wh": energy[code],
                                                           "id_tag": id_tag or f"WALK-{code}"}),
                (t + timedelta(seconds=40), code, "status", {"status": "Charging"}),
                (t + length, code, "status", {"status": rnd.choice(["SuspendedEV", "Finishing"])}),
                (t + length + timedelta(seconds=60), code, "stop", {"transaction_id": n, "meter_wh": energy[code] + wh}),
                (t + length + timedelta(minutes=rnd.uniform(2, 10)), code, "status", {"status": "Available"}),
            ]
            energy[code] += wh
            t += length + timedelta(minutes=10)
        if rnd.random() < 0.02:
            f = start + timedelta(hours=rnd.uniform(0, 20))
            out += [(f, code, "status", {"status": "Faulted", "error_code": "GroundFailure"}),
                    (f + timedelta(hours=rnd.uniform(1, 3)), code, "status", {"status": "Available"})]
    out.sort(key=lambda m: m[0])
    return out


def _poisson(rnd: random.Random, lam: float) -> int:
    n, p, limit = 0, 1.0, pow(2.718281828459045, -lam)
    while True:
        p *= rnd.random()
        if p <= limit:
            return n
        n += 1


def generate(url: str, days: int, chargers: int, sessions_per_day: float, seed: int = 3) -> dict:
    """Make ``days`` days of history ending yesterday (station time); returns what was made."""
    from chargeapp.db import db
    from chargeapp.domain.errors import DomainError
    from chargeapp.services import booking, charging, rollups

    create_schema(url)
    app = bench_app(url)
    rnd = random.Random(seed)
    today = datetime.now(TZ).date()
    first = today - timedelta(days=days)
    made = {"messages": 0, "bookings": 0, "booking_refusals": 0, "days": days, "first": first.isoformat(),
            "last": (today - timedelta(days=1)).isoformat()}
    with app.app_context():
        session = db.session
        station, drivers = _setup(session, chargers, 1000, datetime.combine(first, datetime.min.time(), tzinfo=UTC)
                                  - timedelta(days=1))
        codes = [(c.code, c.kind) for c in station.chargers]
        tx = {c: 0 for c, _ in codes}
        energy = {c: 5_000_000 for c, _ in codes}
        next_driver = 0
        estimate = int(days * len(codes) * sessions_per_day * 6)
        bar = Progress(estimate, "history (service calls)")
        pending = 0
        for d in range(days):
            day = first + timedelta(days=d)
            day_bookings: list = []
            plan = _day_plan(rnd, day, codes, sessions_per_day, tx, energy, day_bookings)
            booked_tags: dict[str, str] = {}
            for code, slot, fate in day_bookings:
                driver_id, tag = drivers[next_driver % len(drivers)]
                next_driver += 1
                try:
                    b, _ = booking.book_slot(session, slot - timedelta(hours=3), driver_id, STATION, slot, code)
                except DomainError:
                    made["booking_refusals"] += 1
                    continue
                made["bookings"] += 1
                if fate < 0.60:
                    booked_tags[code] = tag
                elif fate < 0.85:
                    booking.cancel_booking(session, slot - timedelta(hours=1), driver_id, b.id)
                else:
                    booking.cancel_booking(session, slot + timedelta(minutes=20), driver_id, b.id)
                session.commit()
            for at, code, call, kw in plan:
                if call == "status":
                    charging.record_status(session, station_code=STATION, charger_code=code, connector=1, at=at,
                                           received_at=at, device_ts=at, now=at, **kw)
                else:
                    if kw.get("id_tag") == "BOOKED":
                        kw = {**kw, "id_tag": booked_tags.get(code, f"WALK-{code}")}
                    charging.record_transaction(session, station_code=STATION, charger_code=code, event=call,
                                                connector=1, id_tag=kw.get("id_tag"), at=at, now=at,
                                                transaction_id=kw["transaction_id"], meter_wh=kw["meter_wh"],
                                                reason="EVDisconnected" if call == "stop" else None)
                pending += 1
                if pending >= COMMIT_EVERY:
                    session.commit()
                    bar.update(pending)
                    made["messages"] += pending
                    pending = 0
            # The periodic booking work of the day (holds, no-shows of bookings nobody cancelled), and the
            # rollup job once the day has settled (an hour after midnight, as the periodic work would).
            midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=TZ)
            booking.tick(session, midnight)
            made["rollups"] = made.get("rollups", 0) + sum(rollups.run(session, midnight + rollups.SETTLE).values())
        session.commit()
        bar.update(pending)
        made["messages"] += pending
        bar.close()
        session.remove() if hasattr(session, "remove") else db.session.remove()
        db.engine.dispose()
    return made


def _counts(url: str) -> dict:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        out = {t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar())
               for t in ("status_changes", "charging_sessions", "bookings", "connector_day_rollups")}
        out["no_shows"] = int(conn.execute(text("SELECT count(*) FROM bookings WHERE status = 'no_show'")).scalar())
        out["checked_in"] = int(conn.execute(text("SELECT count(*) FROM bookings WHERE session_id IS NOT NULL")).scalar())
    engine.dispose()
    return out


def _bare_read(session, station, rng) -> int:
    """The rows the report needs, read with plain SELECTs: the baseline."""
    from sqlalchemy import select

    from chargeapp.db import models as m

    connector_ids = [k.id for c in station.chargers for k in c.connectors]
    sc, cs, b = m.StatusChange.__table__, m.ChargingSession.__table__, m.Booking.__table__
    n = len(session.execute(select(sc.c.connector_id, sc.c.at, sc.c.status).where(
        sc.c.connector_id.in_(connector_ids), sc.c.at >= rng.start, sc.c.at < rng.end)).all())
    n += len(session.execute(select(cs.c.id, cs.c.charger_id, cs.c.started_at, cs.c.stopped_at, cs.c.start_meter_wh,
                                    cs.c.stop_meter_wh).where(cs.c.station_id == station.id,
                                                              cs.c.started_at < rng.end)).all())
    n += len(session.execute(select(b.c.charger_id, b.c.status, b.c.held_at).where(
        b.c.station_id == station.id, b.c.slot_start >= rng.start, b.c.slot_start < rng.end)).all())
    return n


def _timed(app, fn, repeats: int) -> tuple[list[float], object]:
    from chargeapp.db import db
    from chargeapp.services.common import station_by_code

    times, value = [], None
    for i in range(repeats + 1):
        with app.app_context():
            station = station_by_code(db.session, STATION)
            started = time.perf_counter()
            value = fn(db.session, station)
            elapsed = time.perf_counter() - started
            db.session.remove()
        if i:  # the first is the warm-up
            times.append(elapsed)
    return times, value


def run(backend: str, dbs: Databases, workdir: Path, sizes: dict) -> list[Result]:
    from chargeapp.services import reports

    days, chargers, spd, repeats = sizes["days"], sizes["chargers"], sizes["sessions_per_day"], sizes["repeats"]
    url = dbs.fresh(backend, "reports")
    say(f"  history: {days} days x {chargers} chargers, ~{spd} sessions a day each, through the services")
    t0 = time.perf_counter()
    made = generate(url, days, chargers, spd)
    gen_seconds = time.perf_counter() - t0
    counts = _counts(url)
    first, last = date.fromisoformat(made["first"]), date.fromisoformat(made["last"])
    app = bench_app(url)

    def report(session, station):
        return reports.utilization(session, station, first, last)

    def history_report(session, station):
        return reports.utilization(session, station, first, last, rollups=False)

    def page(session, station):
        return reports.station_report(session, station, first, last)

    def history_page(session, station):
        return reports.station_report(session, station, first, last, rollups=False)

    def bare(session, station):
        return _bare_read(session, station, reports.report_range(station, first, last))

    report_times, value = _timed(app, report, repeats)
    history_times, history_value = _timed(app, history_report, repeats)
    page_times, page_value = _timed(app, page, repeats)
    history_page_times, history_page_value = _timed(app, history_page, repeats)
    bare_times, rows = _timed(app, bare, repeats)
    with app.app_context():
        from chargeapp.db import db

        db.session.remove()
        db.engine.dispose()
    r = Result("reports", backend, target="station utilization report, 1 year x 33 chargers: <= 250 ms")
    med, base = statistics.median(report_times), statistics.median(bare_times)
    total = value["total"]
    r.figures = {"report_median_ms": ms(med), "report_min_ms": ms(min(report_times)),
                 "report_max_ms": ms(max(report_times)),
                 "history_report_median_ms": ms(statistics.median(history_times)),
                 "station_report_median_ms": ms(statistics.median(page_times)),
                 "history_station_report_median_ms": ms(statistics.median(history_page_times)),
                 "equal_to_history": value == history_value and page_value == history_page_value,
                 "report_sessions": total["sessions"], "report_no_shows": total["no_shows"],
                 "report_occupied_share": total["occupied_share"], "report_energy_kwh": round(total["energy_wh"] / 1000)}
    r.baseline = {"bare_read_median_ms": ms(base), "rows": rows}
    r.ratio = round(med / base, 2) if base else None
    r.met = days >= 365 and med <= 0.250 and r.figures["equal_to_history"]
    r.sizes = {"days": days, "chargers": chargers, "sessions_per_charger_day": spd, "repeats": repeats,
               "range": f"{first} .. {last}", **counts, "service_calls": made["messages"],
               "bookings_made": made["bookings"], "booking_refusals": made["booking_refusals"],
               "rollup_rows_by_the_job": made.get("rollups", 0),
               "generation_seconds": round(gen_seconds, 1),
               "generation_calls_per_s": round(made["messages"] / gen_seconds) if gen_seconds else None}
    r.notes.append("timed in-process (reports.utilization on a fresh session), without HTTP")
    r.notes.append("the network report (10,600 ports over 380 stations, target 3 s) is not generated here")
    if days < 365:
        r.notes.append(f"only {days} days of history: the one-year target is not judged")
    return [r]
