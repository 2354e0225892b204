"""Daily rollups (services/rollups.py): a report summed from rollups equals the one read from the history.

The central test builds a varied history through the services the bridge calls (sessions
crossing midnight, faults, unavailability, bookings checked in, late and reordered
messages), rolls it up with the periodic work, writes late telemetry into rolled-up days
(so they are dirty) and more days that are not rolled up, and compares
``station_report`` with rollups against the history-only report over many ranges, in
zones with and without clock changes, on every backend the ``app`` fixture runs.
"""
from __future__ import annotations

import random
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from chargeapp.db import models as m
from chargeapp.domain.errors import DomainError
from chargeapp.services import booking, charging, periodic, reports, rollups
from chargeapp.services.reports.days import summed_days
from tests.factories import make_driver, make_station

pytestmark = pytest.mark.integration
UTC = timezone.utc
DAY = timedelta(days=1)


def local(day: date, hour: float, tz: ZoneInfo) -> datetime:
    """Local ``hour`` of ``day`` as a UTC instant (wall-clock hours, so a clock change shifts it)."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC) + timedelta(hours=hour)


def plan(rnd: random.Random, station: m.Station, tz: ZoneInfo, first: date, days: int) -> list[tuple]:
    """Messages (at, charger, call, kwargs) of every charger from the evening before ``first`` for ``days`` days."""
    out: list[tuple] = []
    end = local(first + DAY * days, 0, tz)
    for n, charger in enumerate(station.chargers):
        t = local(first, -6 + n, tz)
        tx, meter = 0, 10_000
        while t < end:
            kind = rnd.random()
            if kind < 0.65:  # a session, sometimes over midnight or a day long
                tx += 1
                length = timedelta(minutes=rnd.choice([1, 25, 70, 200, 600, 1700, 2900]))
                charge = length * rnd.uniform(0.2, 0.95)
                wh = rnd.choice([0, 1, 777, 12_345, 40_001])
                tag = f"WALK-{charger.code}"
                out += [(t, charger.code, "status", {"status": "Preparing"}),
                        (t + timedelta(seconds=30), charger.code, "start", {"transaction_id": tx, "meter_wh": meter,
                                                                           "id_tag": tag}),
                        (t + timedelta(seconds=45), charger.code, "status", {"status": "Charging"})]
                if rnd.random() < 0.3:  # a pause in the middle
                    out += [(t + charge / 2, charger.code, "status", {"status": "SuspendedEVSE"}),
                            (t + charge / 2 + timedelta(minutes=7), charger.code, "status", {"status": "Charging"})]
                out += [(t + charge, charger.code, "status", {"status": rnd.choice(["SuspendedEV", "Finishing"])}),
                        (t + length, charger.code, "stop", {"transaction_id": tx, "meter_wh": meter + wh}),
                        (t + length + timedelta(seconds=rnd.choice([0, 1, 90, 3600])), charger.code, "status",
                         {"status": "Available"})]
                meter += wh
                t += length + timedelta(minutes=rnd.choice([5, 40, 300, 900]))
            elif kind < 0.8:  # out of service for a while
                state = rnd.choice(["Faulted", "Unavailable"])
                length = timedelta(minutes=rnd.choice([30, 300, 1500]))
                out += [(t, charger.code, "status", {"status": state}),
                        (t + length, charger.code, "status", {"status": "Available"})]
                t += length + timedelta(minutes=20)
            else:  # a repeat of the state, or nothing
                if rnd.random() < 0.5:
                    out.append((t, charger.code, "status", {"status": "Available"}))
                t += timedelta(minutes=rnd.choice([13, 333, 1111]))
    return sorted(out, key=lambda msg: msg[0])


def apply(session, station: m.Station, messages) -> None:
    """Messages of one station through the services, in order; one commit at the end."""
    for at, code, call, kw in messages:
        if call == "status":
            charging.record_status(session, station_code=station.code, charger_code=code, connector=1, at=at,
                                   received_at=at, device_ts=at, now=at, **kw)
        elif call == "book":
            try:
                booking.book_slot(session, at, kw["driver"], station.code, kw["slot"], code)
            except DomainError:
                pass
        elif call == "cancel":
            b = session.scalar(select(m.Booking).where(m.Booking.driver_id == kw["driver"],
                                                       m.Booking.slot_start == kw["slot"]))
            if b is not None:
                booking.cancel_booking(session, at, kw["driver"], b.id)
        else:
            charging.record_transaction(session, station_code=station.code, charger_code=code, event=call,
                                        connector=1, id_tag=kw.get("id_tag"), at=at, now=at,
                                        transaction_id=kw["transaction_id"], meter_wh=kw["meter_wh"],
                                        reason="EVDisconnected" if call == "stop" else None)
    session.commit()


def booked_sessions(session, station: m.Station, tz: ZoneInfo, first: date, days: int) -> list[tuple]:
    """A booking on a quiet extra fast charger every other day, its driver starting there at the slot (checked in)."""
    out = []
    for d in range(0, days, 2):
        day = first + DAY * d
        slot = local(day, 10, tz)
        driver = make_driver(session, slot - DAY, id_tag=f"BK-{day.isoformat()}")
        out += [(slot - timedelta(hours=3), "F9", "book", {"driver": driver.id, "slot": slot}),
                (slot + timedelta(minutes=2), "F9", "status", {"status": "Preparing"}),
                (slot + timedelta(minutes=3), "F9", "start", {"transaction_id": d + 1, "meter_wh": 1000 * d,
                                                             "id_tag": f"BK-{day.isoformat()}"}),
                (slot + timedelta(minutes=4), "F9", "status", {"status": "Charging"}),
                (slot + timedelta(minutes=50), "F9", "stop", {"transaction_id": d + 1, "meter_wh": 1000 * d + 900}),
                (slot + timedelta(minutes=52), "F9", "status", {"status": "Available"})]
    session.commit()
    return out


def assert_same_reports(session, station: m.Station, first: date, last: date, now: datetime) -> dict:
    """station_report with rollups equals the history-only one for many ranges; returns what the widest read."""
    ranges = [(first, last), (first - DAY * 2, last + DAY), (first + DAY * 3, last - DAY * 4),
              (first + DAY * 5, first + DAY * 5), (first + DAY, first + DAY * 9), (last - DAY * 2, last + DAY * 2)]
    rnd = random.Random(first.toordinal())
    for _ in range(6):
        a = first + DAY * rnd.randrange(0, (last - first).days)
        ranges.append((a, a + DAY * rnd.randrange(0, 12)))
    for a, b in ranges:
        for measure in reports.MEASURES:
            rolled = reports.station_report(session, station, a, b, measure, now=now)
            raw = reports.station_report(session, station, a, b, measure, now=now, rollups=False)
            assert rolled == raw, f"{a}..{b} {measure}"
        assert reports.utilization(session, station, a, b, now) == raw["utilization"]
        assert reports.daily_trend(session, station, a, b, now) == raw["trend"]
    rng = reports.report_range(station, first, last, now)
    return summed_days(session, station, rng)


def dirty_rows(session) -> int:
    return session.scalar(select(func.count()).select_from(m.ConnectorDayRollup).where(m.ConnectorDayRollup.dirty > 0))


@pytest.mark.parametrize("tz_name, first", [
    ("Europe/Berlin", date(2026, 3, 20)),  # clocks go forward on 29 March
    ("America/New_York", date(2026, 10, 24)),  # clocks go back on 1 November
    ("Asia/Kolkata", date(2026, 6, 1)),  # UTC+05:30
    ("Asia/Shanghai", date(2026, 11, 1)),
])
def test_reports_from_rollups_equal_reports_from_the_history(session, clock, tz_name, first):
    tz = ZoneInfo(tz_name)
    days = 20
    station = make_station(session, local(first, -48, tz), code="ru", timezone=tz_name, fast=4, slow=2)
    charger = m.Charger(station_id=station.id, code="F9", kind="fast", level="B1", max_power_kw=60)
    session.add(charger)
    session.flush()
    session.add(m.Connector(charger_id=charger.id, number=1))
    session.commit()
    session.refresh(station)
    rnd = random.Random(tz_name)
    messages = sorted(plan(rnd, station, tz, first, days) + booked_sessions(session, station, tz, first, days),
                      key=lambda msg: msg[0])
    late = {i for i, msg in enumerate(messages) if msg[1] != "F9" and rnd.random() < 0.08}

    cut1 = local(first + DAY * 12, 9.5, tz)
    cut2 = local(first + DAY * 17, 15.25, tz)
    apply(session, station, [msg for i, msg in enumerate(messages) if msg[0] < cut1 and i not in late])
    counts = periodic.run_once(session, cut1)  # the production job, as the bridge runs it
    session.commit()
    connectors = len([k for c in station.chargers for k in c.connectors])
    assert counts["rollups_new"] >= connectors * 12
    assert max(d for _, d, _ in rollups.rolled_days(session, station)) == first + DAY * 11  # cut1 is day 12

    # Half the late messages come now, into rolled-up days; then the next days as they happen.
    held = sorted((i for i in late if messages[i][0] < cut1), key=lambda i: messages[i][0])
    apply(session, station, [messages[i] for i in held[::2]])
    assert dirty_rows(session) > 0
    apply(session, station, [msg for i, msg in enumerate(messages) if cut1 <= msg[0] < cut2 and i not in late])
    summed = assert_same_reports(session, station, first, first + DAY * 17, cut2)
    assert summed.rolled_up > 0 and summed.raw > 0  # both sources were read

    # The job cleans the dirty days and rolls the new ones; the other half of the late messages dirties again.
    rollups.run(session, cut2)
    session.commit()
    assert dirty_rows(session) == 0
    assert_same_reports(session, station, first, first + DAY * 17, cut2)
    apply(session, station, [messages[i] for i in held[1::2]]
          + [msg for i, msg in enumerate(messages) if msg[0] >= cut2 and i not in late and msg[0] < cut2 + DAY])
    assert_same_reports(session, station, first, first + DAY * 18, cut2 + DAY)
    rollups.run(session, cut2 + DAY)
    session.commit()
    summed = assert_same_reports(session, station, first, first + DAY * 18, cut2 + DAY)
    # every whole day from the rollups, only today (day 18, cut at now) from the history
    assert (summed.rolled_up, summed.raw) == (connectors * 18, connectors)


def test_a_late_status_marks_the_days_until_the_next_change_dirty(session, clock):
    tz = ZoneInfo("Asia/Shanghai")
    station = make_station(session, clock.now(), fast=1, slow=0)
    day = date(2026, 11, 10)
    apply(session, station, [(local(day, 8, tz), "F1", "status", {"status": "Available"}),
                             (local(day + DAY * 4, 8, tz), "F1", "status", {"status": "Charging"})])
    rollups.run(session, local(day + DAY * 8, 12, tz))
    session.commit()
    rows = {d: dirty for _, d, dirty in rollups.rolled_days(session, station)}
    assert min(rows) == day and max(rows) == day + DAY * 7 and not any(rows.values())
    # messages in order, just after midnight (the day before in UTC), leave the rolled-up days alone
    apply(session, station, [(local(day + DAY * 8, 0.25, tz), "F1", "status", {"status": "Preparing"}),
                             (local(day + DAY * 8, 0.5, tz), "F1", "start", {"transaction_id": 7, "meter_wh": 0}),
                             (local(day + DAY * 8, 1, tz), "F1", "stop", {"transaction_id": 7, "meter_wh": 10})])
    assert not any(n for _, _, n in rollups.rolled_days(session, station))
    apply(session, station, [(local(day + DAY, 23, tz), "F1", "status", {"status": "Faulted"})])
    rows = {d: dirty for _, d, dirty in rollups.rolled_days(session, station)}
    dirty = {d for d, n in rows.items() if n}
    # the day of the late status to the day of the next change (its state lasts until then), no further
    assert dirty == {day + DAY * i for i in range(1, 5)}
    rng = reports.report_range(station, day, day + DAY * 6)
    assert reports.station_report(session, station, day, day + DAY * 6) == \
        reports.station_report(session, station, day, day + DAY * 6, rollups=False)
    assert summed_days(session, station, rng).raw == len(dirty)
    rollups.run(session, local(day + DAY * 8, 12, tz))
    session.commit()
    assert not any(n for _, _, n in rollups.rolled_days(session, station))
    assert summed_days(session, station, rng).raw == 0


def test_a_session_closed_days_later_marks_its_days_dirty(session, clock):
    tz = ZoneInfo("Asia/Shanghai")
    station = make_station(session, clock.now(), fast=1, slow=0)
    day = date(2026, 11, 10)
    apply(session, station, [(local(day, 20, tz), "F1", "start", {"transaction_id": 1, "meter_wh": 0}),
                             (local(day, 20.1, tz), "F1", "status", {"status": "Charging"})])
    rollups.run(session, local(day + DAY * 3, 12, tz))
    session.commit()
    assert reports.utilization(session, station, day, day + DAY)["total"]["energy_wh"] == 0
    # The stop (with its meter) comes from the device's buffer after the days were rolled up.
    apply(session, station, [(local(day + DAY, 20, tz), "F1", "stop", {"transaction_id": 1, "meter_wh": 24_000})])
    assert {d for _, d, n in rollups.rolled_days(session, station) if n} >= {day, day + DAY}
    report = reports.utilization(session, station, day, day + DAY)
    assert report == reports.utilization(session, station, day, day + DAY, rollups=False)
    assert report["total"]["energy_wh"] == 24_000
    rollups.run(session, local(day + DAY * 3, 12, tz))
    session.commit()
    trend = reports.daily_trend(session, station, day, day + DAY)
    assert [d["energy_wh"] for d in trend] == [4_000, 20_000]  # spread evenly over its 24 hours


def test_the_periodic_work_rolls_up_every_five_minutes(session, clock):
    tz = ZoneInfo("Asia/Shanghai")
    station = make_station(session, clock.now(), fast=1, slow=0)
    day = date(2026, 11, 10)
    apply(session, station, [(local(day, 8, tz), "F1", "status", {"status": "Available"})])
    now = local(day + DAY * 2, 3, tz)
    assert periodic.run_once(session, now)["rollups_new"] == 2
    apply(session, station, [(local(day, 9, tz), "F1", "status", {"status": "Faulted"})])  # late: both days dirty
    assert periodic.run_once(session, now + timedelta(seconds=5))["rollups_dirty"] == 0  # not due yet
    assert periodic.run_once(session, now + timedelta(minutes=5))["rollups_dirty"] == 2
    assert not any(n for _, _, n in rollups.rolled_days(session, station))


def test_a_day_is_rolled_up_only_an_hour_after_it_ended(session, clock):
    tz = ZoneInfo("Asia/Shanghai")
    station = make_station(session, clock.now(), fast=1, slow=0)
    day = date(2026, 11, 10)
    apply(session, station, [(local(day, 8, tz), "F1", "status", {"status": "Available"})])
    rollups.run(session, local(day + DAY, 0.5, tz))
    assert list(rollups.rolled_days(session, station)) == []
    rollups.run(session, local(day + DAY, 1, tz))
    assert [d for _, d, _ in rollups.rolled_days(session, station)] == [day]


def test_rollup_command_backfills_with_progress(runner, session, clock):
    tz = ZoneInfo("Asia/Shanghai")
    station = make_station(session, clock.now(), fast=2, slow=0)
    start = clock.now().astimezone(tz).date() - DAY * 20
    apply(session, station, [(local(start, 8, tz), "F1", "status", {"status": "Charging"}),
                             (local(start + DAY * 3, 8, tz), "F2", "status", {"status": "Faulted"})])
    r = runner.invoke(args=["rollup", "--station", station.code])
    assert r.exit_code == 0, r.output
    assert "s1: 40 connector-days rolled up" in r.output  # 2 connectors x 20 whole days up to yesterday
    r = runner.invoke(args=["rollup", "--station", station.code, "--from", (start + DAY).isoformat(),
                            "--to", (start + DAY * 2).isoformat()])
    assert r.exit_code == 0 and "s1: 4 connector-days rolled up" in r.output
    r = runner.invoke(args=["rollup", "--from", "2026-11-05", "--to", "2026-11-01"])
    assert r.exit_code == 2
    last = clock.now().astimezone(tz).date() - DAY
    assert reports.station_report(session, station, start, last) == \
        reports.station_report(session, station, start, last, rollups=False)
