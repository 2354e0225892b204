"""A report's figures summed from its days: each connector-day from its rollup when the day is whole and
clean, from the history otherwise (today, a day cut by ``now``, days not rolled up, dirty days).

A range is the sum of its days (domain/usage.py says why), so both sources give exactly the same report
(tests/integration/test_report_rollups.py); docs/performance.md ("Reports") has the costs. One path serves
a station and a network alike: a station is a network of one.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy import Text, case, cast, func, null, or_, select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain import usage
from chargeapp.services.reports import history
from chargeapp.services.reports.dates import ReportRange

KINDS = ("known", "faulted", "unavailable", "occupied", "charging")


@dataclass
class Summed:
    """A range's figures summed from its connector-days (rolled up or read raw)."""

    time: dict[int, usage.StateTime]  # per charger, idle included
    energy: dict[int, int]
    sessions: dict[int, int]
    lengths: dict[int, list[int]]  # microseconds
    day_time: dict[date, usage.StateTime]  # the per-day and heat-map parts: empty unless asked for
    day_energy: dict[date, int]
    day_sessions: dict[date, int]
    day_fast_sessions: dict[date, int]  # sessions started on fast chargers (walk-ins but the booked ones)
    cells: list[list[usage.StateTime]]  # weekday x hour; ``known`` holds in-service time
    rolled_up: int = 0  # connector-days read from rollups
    raw: int = 0  # connector-days read from the history


def td(us) -> timedelta:
    """Microseconds (None: 0) as a timedelta."""
    return timedelta(microseconds=int(us or 0))


class Inconsistent(Exception):
    """The rollups changed between the report's statements (a rollup run committed meanwhile)."""


def summed_days(session: Session, station: m.Station, rng: ReportRange, use_rollups: bool = True,
                hours: bool = True, lengths: bool = True) -> Summed:
    """The station's figures of the range per charger and per day (and, with ``hours``, by weekday x hour):
    ``summed_days_many`` of a network of one."""
    return summed_days_many(session, [station], {station.id: rng}, use_rollups, per_day=True, hours=hours,
                            lengths=lengths)[station.id]


def summed_days_many(session: Session, stations: list, rngs: dict[int, ReportRange], use_rollups: bool = True,
                     per_day: bool = False, hours: bool = False, lengths: bool = True) -> dict[int, Summed]:
    """Per station id (an ``m.Station`` or a view with the same attributes), the figures of its range per
    charger; with ``per_day`` per day too, with ``hours`` also by weekday x hour; ``lengths`` False leaves the
    rolled-up days' session lengths out (the widest rollup read). Statements do not grow with the stations.
    Read again if a rollup run committed meanwhile; after three tries from the history alone."""
    for _ in range(3):
        try:
            return _summed_days_many_once(session, stations, rngs, use_rollups, per_day, hours, lengths)
        except Inconsistent:
            continue
    return _summed_days_many_once(session, stations, rngs, False, per_day, hours, lengths)


def _summed_days_many_once(session: Session, stations: list, rngs: dict[int, ReportRange], use_rollups: bool,
                           per_day: bool, hours: bool, lengths: bool) -> dict[int, Summed]:
    outs: dict[int, Summed] = {}
    charger_of: dict[int, int] = {}  # connector id -> charger id
    station_of: dict[int, int] = {}  # connector id -> station id
    days_of: dict[int, list] = {}
    full_of: dict[int, list[date]] = {}
    for s in stations:
        rng = rngs[s.id]
        days_of[s.id] = rng.days()
        full_of[s.id] = usage.whole_days(days_of[s.id], rng.tz)
        day_keys = [d for d, _, _ in days_of[s.id]] if per_day else []
        outs[s.id] = Summed(
            time={c.id: usage.StateTime() for c in s.chargers}, energy={c.id: 0 for c in s.chargers},
            sessions={c.id: 0 for c in s.chargers}, lengths={c.id: [] for c in s.chargers},
            day_time={d: usage.StateTime() for d in day_keys}, day_energy={d: 0 for d in day_keys},
            day_sessions={d: 0 for d in day_keys}, day_fast_sessions={d: 0 for d in day_keys},
            cells=[[usage.StateTime() for _ in range(24)] for _ in range(7)] if per_day else [])
        for c, k in history.connectors(s):
            charger_of[k.id], station_of[k.id] = c.id, s.id
    fast = {c.id for s in stations for c in s.chargers if c.kind == "fast"}

    # Whole clean days from the rollups, a grouped read per span of whole days.
    covered: dict[int, set[date]] = {}  # connector id -> its days read (its station's full_set: every whole day)
    edges: dict[int, list[tuple[date, usage.IdleParts]]] = {}
    mid_idle: dict[int, int] = {}
    full_set: dict[int, set[date]] = {}
    if use_rollups:
        spans: dict[tuple[date, date], list] = {}
        for s in stations:
            full = full_of[s.id]
            if full and s.chargers:
                full_set[s.id] = set(full)
                spans.setdefault((full[0], full[-1]), []).append(s)
        with _work_mem(session):
            for (first, last), group in spans.items():
                for chunk in history.chunks([s.id for s in group]):
                    read_rollups_many(session, chunk, first, last, charger_of, station_of, outs, covered, full_set,
                                      edges, mid_idle, per_day, hours, lengths)

    # The rest from the history: partial days, days not rolled up, dirty days.
    todo: dict[int, tuple[list, tzinfo]] = {}
    for s in stations:
        days, tz = days_of[s.id], rngs[s.id].tz
        rest = [d for d in days if d[0] not in full_set[s.id]] if s.id in full_set else days
        for c, k in history.connectors(s):
            read = covered.get(k.id)
            todo[k.id] = (days if read is None else rest if read is full_set.get(s.id)
                          else [d for d in days if d[0] not in read], tz)
    raw = history.connector_days_many(session, todo, hours=hours)
    windows_of: dict[int, dict[tuple[int, date], tuple[datetime, datetime]]] = {s.id: {} for s in stations}
    for cid, (days, _) in todo.items():
        windows = windows_of[station_of[cid]]
        for day, lo, hi in days:
            windows[(cid, day)] = (lo, hi)
    merged_of = {sid: usage.merged_windows(windows.values()) for sid, windows in windows_of.items()}
    by_window: dict[tuple[datetime, datetime], list[int]] = {}
    for sid, merged in merged_of.items():
        for lo_hi in merged:
            by_window.setdefault(lo_hi, []).append(sid)
    found: dict[tuple[int, datetime, datetime], list[usage.SessionRecord]] = {}
    for (lo, hi), sids in by_window.items():
        for chunk in history.chunks(sids):
            for sid, rows in history.stations_sessions(session, chunk, lo, hi).items():
                found[(sid, lo, hi)] = rows
    for s in stations:
        rng, out, windows = rngs[s.id], outs[s.id], windows_of[s.id]
        seen: dict[int, usage.SessionRecord] = {}
        for lo, hi in merged_of[s.id]:
            for row in found[(s.id, lo, hi)]:
                seen[row.id] = row
        figures = {key: raw[key] for key in windows}
        usage.add_sessions(figures, windows, seen.values(), rng.tz, rng.start, rng.end)
        for (cid, day), f in figures.items():
            _add_day(out, charger_of[cid], day, f, charger_of[cid] in fast, per_day)
        out.raw = len(figures)
        for c, k in history.connectors(s):
            parts = edges.get(k.id, []) + [(d, figures[(k.id, d)].idle) for d, _, _ in todo[k.id][0]]
            out.time[c.id].idle += td(usage.fold_sparse(rng.first, parts) + mid_idle.get(k.id, 0))
    return outs


def _add_day(out: Summed, charger_id: int, day: date, f: usage.DayFigures, fast: bool, per_day: bool = True) -> None:
    """The day's figures into the charger's and (``per_day``) the day's and the heat map's."""
    for t in (out.time[charger_id], out.day_time[day]) if per_day else (out.time[charger_id],):
        for k in KINDS:
            setattr(t, k, getattr(t, k) + td(getattr(f, f"{k}_us")))
    out.energy[charger_id] += f.energy_wh
    out.sessions[charger_id] += f.sessions
    out.lengths[charger_id] += f.lengths_us
    if not per_day:
        return
    out.day_energy[day] += f.energy_wh
    out.day_sessions[day] += f.sessions
    out.day_fast_sessions[day] += f.sessions if fast else 0
    row = out.cells[day.weekday()]
    for h in range(24):
        cell = row[h]
        cell.known += td(f.hours["in_service"][h])
        cell.occupied += td(f.hours["occupied"][h])
        cell.charging += td(f.hours["charging"][h])


# PostgreSQL groups a year of a network's session lengths (100 MB of text for 10,600 connectors) in a hash
# table: with the default 4 MB it spills to disk (6.3 s), with 64 MB it does not (2.1 s).
_ROLLUP_WORK_MEM = "64MB"


@contextmanager
def _work_mem(session: Session):
    """On PostgreSQL, the rollup statements run with ``_ROLLUP_WORK_MEM`` of sort and hash memory (set for the
    transaction, then set back); elsewhere nothing."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    before = session.scalar(select(func.current_setting("work_mem")))
    session.execute(select(func.set_config("work_mem", _ROLLUP_WORK_MEM, True)))
    try:
        yield
    finally:
        session.execute(select(func.set_config("work_mem", before, True)))


def read_rollups_many(session: Session, station_ids: list[int], first: date, last: date, charger_of: dict[int, int],
                      station_of: dict[int, int], outs: dict[int, Summed], covered: dict[int, set[date]],
                      full_set: dict[int, set[date]], edges: dict, mid_idle: dict[int, int], per_day: bool = False,
                      hours: bool = False, lengths: bool = True) -> None:
    """Sum the clean rollups of the stations whose whole days are ``first``..``last`` into ``outs``; note the
    connector-days read in ``covered``, the rows whose idle runs cross midnight in ``edges``.

    One grouped statement per connector: the sums, and the session lengths of its rows joined into one JSON text
    (a row per connector, not per connector-day: fetching a year's 3.6 million rows took 30 s at 10,600 ports);
    with ``per_day`` one grouped per station and day, with ``hours`` one per station and weekday; then only the
    rows whose idle time crosses midnight, and the days of connectors with some days not read (dirty, not rolled
    up). The later statements are checked against counts and revision sums of the same rows taken by the first;
    a rollup run committing in between makes the report read again.
    """
    r = m.ConnectorDayRollup
    where = (r.station_id.in_(station_ids), r.day >= first, r.day <= last, r.dirty == 0)
    kinds = [func.sum(getattr(r, f"{k}_us")) for k in KINDS]
    edge = or_(r.lead > 0, r.trail)
    whole = (last - first).days + 1
    day_lengths = func.aggregate_strings(case((r.sessions > 0, cast(r.lengths_us, Text))), ",") if lengths else null()
    rows = session.execute(
        select(r.connector_id, func.count(), func.sum(r.revision), *kinds, func.sum(r.energy_wh),
               func.sum(r.sessions), func.sum(r.mid_idle_us), func.sum(case((edge, 1), else_=0)),
               func.sum(case((edge, r.revision), else_=0)), day_lengths)
        .where(*where).group_by(r.connector_id)
    ).all()
    expected = {"edges": [0, 0], "partial": [0, 0]}
    own = [0, 0]  # rows and revisions of the stations' own connectors
    partial: list[int] = []
    for cid, n, revisions, *sums, n_edges, edge_revisions, lengths_text in rows:
        expected["edges"][0] += int(n_edges)
        expected["edges"][1] += int(edge_revisions)
        if cid not in charger_of:
            continue
        own[0] += int(n)
        own[1] += int(revisions)
        out, charger_id = outs[station_of[cid]], charger_of[cid]
        t = out.time[charger_id]
        for k, v in zip(KINDS, sums):
            setattr(t, k, getattr(t, k) + td(v))
        out.energy[charger_id] += int(sums[5] or 0)
        out.sessions[charger_id] += int(sums[6] or 0)
        out.rolled_up += int(n)
        mid_idle[cid] = mid_idle.get(cid, 0) + int(sums[7] or 0)
        if lengths_text:
            out.lengths[charger_id] += [us for day in json.loads(f"[{lengths_text}]") for us in day]
        if n == whole:
            covered[cid] = full_set[station_of[cid]]
        else:
            partial.append(cid)
            covered[cid] = set()
            expected["partial"][0] += int(n)
            expected["partial"][1] += int(revisions)

    found = {"edges": [0, 0], "partial": [0, 0]}
    # The stations' own connectors (as ``charger_of``): a row of a connector now elsewhere is left out.
    connector = (m.Connector, m.Connector.id == r.connector_id)
    charger = (m.Charger, (m.Charger.id == m.Connector.charger_id) & (m.Charger.station_id == r.station_id))
    check = (func.count(), func.sum(r.revision))
    if per_day:
        expected["days"], found["days"] = own, [0, 0]
        fast_sessions = func.sum(case((m.Charger.kind == "fast", r.sessions), else_=0))
        for station_id, day, n, revisions, *sums in session.execute(
            select(r.station_id, r.day, *check, *kinds, func.sum(r.energy_wh), func.sum(r.sessions), fast_sessions)
            .join(*connector).join(*charger).where(*where).group_by(r.station_id, r.day)
        ):
            found["days"][0] += int(n)
            found["days"][1] += int(revisions or 0)
            out = outs[station_id]
            t = out.day_time[day]
            for k, v in zip(KINDS, sums):
                setattr(t, k, getattr(t, k) + td(v))
            out.day_energy[day] += int(sums[5] or 0)
            out.day_sessions[day] += int(sums[6] or 0)
            out.day_fast_sessions[day] += int(sums[7] or 0)
    if hours:
        expected["hours"], found["hours"] = own, [0, 0]
        hourly = [func.sum(getattr(r, f"{k}_h{h:02d}")) for k in m.ROLLUP_HOURLY for h in range(24)]
        for station_id, weekday, n, revisions, *sums in session.execute(
            select(r.station_id, r.weekday, *check, *hourly)
            .join(*connector).join(*charger).where(*where).group_by(r.station_id, r.weekday)
        ):
            found["hours"][0] += int(n)
            found["hours"][1] += int(revisions or 0)
            cells = outs[station_id].cells[weekday]
            for h in range(24):
                cells[h].known += td(sums[h])
                cells[h].occupied += td(sums[24 + h])
                cells[h].charging += td(sums[48 + h])

    idle_cols = [getattr(r, name) for name in usage.IdleParts._fields]
    for cid, day, revision, *parts in session.execute(select(r.connector_id, r.day, r.revision, *idle_cols)
                                                      .where(*where, edge)):
        found["edges"][0] += 1
        found["edges"][1] += revision
        if cid in charger_of:
            edges.setdefault(cid, []).append((day, usage.IdleParts(*parts)._replace(mid_idle_us=0)))  # in mid_idle
    for chunk in history.chunks(partial):
        for cid, day, revision in session.execute(select(r.connector_id, r.day, r.revision)
                                                  .where(*where, r.connector_id.in_(chunk))):
            found["partial"][0] += 1
            found["partial"][1] += revision
            covered[cid].add(day)
    if found != expected:
        raise Inconsistent()
