"""The network report (reports.network_utilization): every station's part equals its own ``utilization``.

Stations in four time zones (two of them through a clock change) get a varied history through the
services the bridge calls (tests/integration/test_report_rollups.py builds it), bookings checked in,
cancelled in time and late (no-shows), receipts from the periodic work, and rollups from the
production job; late messages make rolled-up days dirty and the last days are not rolled up yet.
The network report, reading every station's rollups with grouped statements, must give for each
station exactly what the per-station report gives, over many ranges and at every stage, on every
backend the ``app`` fixture runs; and its statement count must not grow with the stations.
"""
from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, func, select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.services import booking, periodic, reports, rollups
from chargeapp.services.reports.days import summed_days, summed_days_many
from chargeapp.services.reports.network import station_views
from tests.factories import make_driver, make_station
from tests.integration.test_report_rollups import apply, local, plan

pytestmark = pytest.mark.integration
UTC = timezone.utc
DAY = timedelta(days=1)
FIRST = date(2026, 10, 20)  # Berlin's clocks go back on 25 October, New York's on 1 November
DAYS = 16
ZONES = ("Asia/Shanghai", "Europe/Berlin", "America/New_York", "Asia/Kolkata")


def add_booking_charger(session, station: m.Station) -> None:
    """A quiet fast charger F9 that only booked drivers use."""
    charger = m.Charger(station_id=station.id, code="F9", kind="fast", level="B1", max_power_kw=60)
    session.add(charger)
    session.flush()
    session.add(m.Connector(charger_id=charger.id, number=1))


def bookings(session, station: m.Station, tz: ZoneInfo, first: date, days: int) -> list[tuple]:
    """A booking on F9 each day: checked in by its driver's session, cancelled in time, or cancelled late (a no-show)."""
    out = []
    for d in range(days):
        day = first + DAY * d
        slot = local(day, 10 + d % 5, tz)
        tag = f"NB-{station.code}-{day.isoformat()}"
        driver = make_driver(session, slot - DAY * 2, id_tag=tag)
        out.append((slot - timedelta(hours=3), "F9", "book", {"driver": driver.id, "slot": slot}))
        fate = d % 3
        if fate == 0:
            tx = 1000 + d
            out += [(slot + timedelta(minutes=2), "F9", "status", {"status": "Preparing"}),
                    (slot + timedelta(minutes=3), "F9", "start", {"transaction_id": tx, "meter_wh": 1000 * d,
                                                                 "id_tag": tag}),
                    (slot + timedelta(minutes=4), "F9", "status", {"status": "Charging"}),
                    (slot + timedelta(minutes=50), "F9", "stop", {"transaction_id": tx, "meter_wh": 1000 * d + 900}),
                    (slot + timedelta(minutes=52), "F9", "status", {"status": "Available"})]
        else:
            out.append((slot + (timedelta(minutes=-60) if fate == 1 else timedelta(minutes=20)), "F9", "cancel",
                        {"driver": driver.id, "slot": slot}))
    session.commit()
    return out


def assert_network_equals_stations(session, stations: list[m.Station], first: date, last: date,
                                   now: datetime) -> None:
    ranges = [(first, last), (first - DAY * 2, last + DAY), (first + DAY * 3, last - DAY * 4),
              (first + DAY * 5, first + DAY * 5), (last, last), (last + DAY * 3, last + DAY * 5),
              (first + DAY, first + DAY * 9)]
    rnd = random.Random(last.toordinal())
    for _ in range(4):
        a = first + DAY * rnd.randrange(0, (last - first).days)
        ranges.append((a, a + DAY * rnd.randrange(0, 12)))
    for a, b in ranges:
        net = reports.network_utilization(session, stations, a, b, now=now)
        assert [p["station"] for p in net["stations"]] == [s.code for s in stations]
        for station, part in zip(stations, net["stations"]):
            assert part == reports.utilization(session, station, a, b, now), f"{station.code} {a}..{b}"
        assert reports.network_utilization(session, stations, a, b, now=now, rollups=False) == net, f"{a}..{b}"
        total, rows = net["total"], [p["total"] for p in net["stations"]]
        assert total["scope"] == "network"
        for key in ("energy_wh", "sessions", "bookings", "cancellations", "no_shows", "walk_ins", "total_fen",
                    "free_parking_grants"):
            assert total[key] == sum(r[key] for r in rows), key
        for key in ("in_service_min", "occupied_min", "charging_min", "idle_min", "unknown_min"):
            assert total[key] == pytest.approx(sum(r[key] for r in rows), abs=0.01 * len(rows)), key


@pytest.fixture
def network(session):
    """Four stations in four zones with a booking charger each, one with no history, one with no chargers."""
    stations, tzs = [], []
    for i, tz_name in enumerate(ZONES):
        tz = ZoneInfo(tz_name)
        st = make_station(session, local(FIRST, -48, tz), code=f"n{i}", timezone=tz_name, fast=2 + i % 2, slow=1)
        add_booking_charger(session, st)
        stations.append(st)
        tzs.append(tz)
    quiet = make_station(session, local(FIRST, -48, tzs[0]), code="n8", fast=1, slow=1)
    empty = make_station(session, local(FIRST, -48, tzs[0]), code="n9", fast=0, slow=0)
    session.commit()
    for st in stations:
        session.refresh(st)
    return stations, tzs, [quiet, empty]


def test_every_stations_part_equals_its_own_report_rolled_up_dirty_and_not_rolled_up(session, clock, network):
    stations, tzs, others = network
    rnd = random.Random(7)
    streams = []
    for st, tz in zip(stations, tzs):
        messages = sorted(plan(rnd, st, tz, FIRST, DAYS) + bookings(session, st, tz, FIRST, DAYS),
                          key=lambda msg: msg[0])
        late = {i for i, msg in enumerate(messages) if msg[1] != "F9" and rnd.random() < 0.08}
        streams.append((st, messages, late))
    everyone = [*stations, *others]
    cut1 = datetime(2026, 10, 29, 3, 0, tzinfo=UTC)  # day 9 is over in Asia, not in New York
    cut2 = datetime(2026, 11, 2, 15, 30, tzinfo=UTC)

    for st, messages, late in streams:
        apply(session, st, [msg for i, msg in enumerate(messages) if msg[0] < cut1 and i not in late])
    periodic.run_once(session, cut1)  # the production job: no-shows, receipts, rollups
    session.commit()
    newest = {st.code: max(d for _, d, _ in rollups.rolled_days(session, st)) for st in stations}
    assert len(set(newest.values())) > 1  # the stations' whole days end on different dates

    # Half the late messages into rolled-up days (dirty), then the next days (not rolled up).
    for st, messages, late in streams:
        held = sorted((i for i in late if messages[i][0] < cut1), key=lambda i: messages[i][0])
        apply(session, st, [messages[i] for i in held[::2]])
        apply(session, st, [msg for i, msg in enumerate(messages) if cut1 <= msg[0] < cut2 and i not in late])
    assert session.scalar(select(func.count()).select_from(m.ConnectorDayRollup)
                          .where(m.ConnectorDayRollup.dirty > 0)) > 0
    booking.tick(session, cut2)
    session.commit()
    last = FIRST + DAY * (DAYS - 1)
    assert_network_equals_stations(session, everyone, FIRST, last, cut2)
    rngs = {s.id: reports.report_range(s, FIRST, last, cut2) for s in everyone}
    summed = summed_days_many(session, station_views(session, everyone), rngs)
    assert sum(s.rolled_up for s in summed.values()) > 0 and sum(s.raw for s in summed.values()) > 0
    for st in everyone:  # as many connector-days from each source as the station's own report reads
        own = summed_days(session, st, rngs[st.id], hours=False)
        assert (summed[st.id].rolled_up, summed[st.id].raw) == (own.rolled_up, own.raw)

    # The job cleans and rolls up; the rest of the late messages dirty again; the last day comes.
    rollups.run(session, cut2)
    session.commit()
    assert_network_equals_stations(session, everyone, FIRST, last, cut2)
    end = local(last + DAY, 6, tzs[0])
    for st, messages, late in streams:
        held = sorted((i for i in late if messages[i][0] < cut1), key=lambda i: messages[i][0])
        apply(session, st, [messages[i] for i in held[1::2]]
              + [msg for i, msg in enumerate(messages) if cut2 <= msg[0] < end and i not in late])
    periodic.run_once(session, end)
    session.commit()
    assert_network_equals_stations(session, everyone, FIRST, last, end)
    net = reports.network_utilization(session, everyone, FIRST, last, now=end)
    assert net["total"]["no_shows"] > 0 and net["total"]["sessions"] > 0 and net["total"]["total_fen"] > 0
    assert net["total"]["median_session_min"] is not None


def test_statements_do_not_grow_with_the_stations(session, clock):
    """Two stations or eight in one zone: the same statements (grouped reads, not a report per station)."""
    tz = ZoneInfo("Asia/Shanghai")
    day = date(2026, 11, 10)
    stations = []
    for i in range(8):
        st = make_station(session, clock.now(), code=f"c{i}", fast=2, slow=1)
        session.commit()
        apply(session, st, [(local(day - DAY, 8, tz), "F1", "status", {"status": "Available"}),
                            (local(day, 9, tz), "F1", "status", {"status": "Charging"}),
                            (local(day + DAY * 2, 9, tz), "F2", "status", {"status": "Faulted"})])
        stations.append(st)
    rollups.run(session, local(day + DAY * 3, 2, tz))
    session.commit()
    apply(session, stations[0], [(local(day, 12, tz), "F2", "status", {"status": "Unavailable"})])  # dirty

    def statements(group) -> int:
        session.expire_all()
        codes = [s.code for s in group]
        group = session.scalars(select(m.Station).where(m.Station.code.in_(codes)).order_by(m.Station.code)).all()
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            reports.network_utilization(session, group, day - DAY, day + DAY * 4, now=local(day + DAY * 4, 9, tz))
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    small, large = statements(stations[:2]), statements(stations)
    # chargers, rollups 3, history 6, sessions, bookings 3; on PostgreSQL 3 more setting work_mem and back
    assert small == large == 14 + (3 if db.engine.dialect.name == "postgresql" else 0)
    for st in stations:
        assert reports.network_utilization(session, [st], day - DAY, day + DAY * 4)["stations"][0] == \
            reports.utilization(session, st, day - DAY, day + DAY * 4)


def test_ranges_are_checked_with_or_without_stations(session, clock, station):
    with pytest.raises(reports.InvalidReportRange, match="before it starts"):
        reports.network_utilization(session, [station], date(2026, 11, 10), date(2026, 11, 9))
    with pytest.raises(reports.ReportRangeTooLong):
        reports.network_utilization(session, [], date(2025, 1, 1), date(2026, 11, 9))
    station.rules.max_report_days = 7
    with pytest.raises(reports.ReportRangeTooLong, match="at most 7 days"):
        reports.network_utilization(session, [station], date(2026, 11, 1), date(2026, 11, 9))
    empty = reports.network_utilization(session, [], date(2026, 11, 1), date(2026, 11, 9))
    assert empty["stations"] == [] and empty["total"]["sessions"] == 0
    assert empty["total"]["occupied_share"] is None and empty["total"]["unknown_min"] == 0


def test_a_run_starting_at_a_midnight_inside_the_range_does_not_start_the_range(session, clock):
    """The rollup of the day holds a run from its start, the day before none to its end: idle time counts the
    car's after-charging time only for a run already there when the range starts (here, none)."""
    tz = ZoneInfo("Asia/Shanghai")
    station = make_station(session, clock.now(), fast=1, slow=0)
    day = date(2026, 11, 10)
    apply(session, station, [(local(day, 8, tz), "F1", "status", {"status": "Available"}),
                             (local(day + DAY * 2, 0, tz), "F1", "status", {"status": "SuspendedEV"}),
                             (local(day + DAY * 2, 5, tz), "F1", "status", {"status": "Available"})])
    rollups.run(session, local(day + DAY * 6, 2, tz))
    session.commit()
    for first in (day, day + DAY * 2):
        own = reports.utilization(session, station, first, day + DAY * 4)
        assert reports.network_utilization(session, [station], first, day + DAY * 4)["stations"] == [own]
        assert own["total"]["idle_min"] == (300 if first == day + DAY * 2 else 0)


def test_a_rollup_rewritten_between_the_reads_makes_the_report_read_again(session, clock):
    """The rows read after the grouped statement must be those it summed: a recomputed row in between (a rollup
    run committing, PostgreSQL read committed) is noticed by its revision and the report reads again."""
    tz = ZoneInfo("Asia/Shanghai")
    station = make_station(session, clock.now(), fast=1, slow=0)
    day = date(2026, 11, 10)
    apply(session, station, [(local(day, 8, tz), "F1", "status", {"status": "Available"}),
                             (local(day + DAY, 22, tz), "F1", "status", {"status": "Charging"}),
                             (local(day + DAY * 2, 3, tz), "F1", "status", {"status": "Finishing"}),
                             (local(day + DAY * 2, 5, tz), "F1", "status", {"status": "Available"})])
    rollups.run(session, local(day + DAY * 6, 2, tz))
    session.commit()
    grouped = []

    def rewrite(conn, cursor, statement, parameters, context, executemany):
        if "count(*)" in statement and "GROUP BY connector_day_rollups.connector_id" in statement:
            grouped.append(statement)
            if len(grouped) == 1:  # as a rollup run would, between the two reads
                conn.exec_driver_sql("UPDATE connector_day_rollups SET revision = revision + 1 WHERE lead > 0")

    event.listen(db.engine, "after_cursor_execute", rewrite)
    try:
        net = reports.network_utilization(session, [station], day, day + DAY * 4)
    finally:
        event.remove(db.engine, "after_cursor_execute", rewrite)
    assert len(grouped) == 2
    assert net["stations"] == [reports.utilization(session, station, day, day + DAY * 4)]
    assert net["total"]["idle_min"] == 120  # Finishing after charging, over midnight
