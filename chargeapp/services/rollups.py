"""Daily per-connector rollups: what the reports need of a station-local day, summed once.

A ``connector_day_rollups`` row holds one connector's figures of one whole local day
(domain/usage.py's DayFigures: times by kind and by local hour, idle-time parts, energy, sessions
started and their lengths), computed by the same code the reports run on the raw
history, so a report summing rollups equals one reading the history
(tests/integration/test_report_rollups.py). The reports read a day's rollup only when it
is whole and clean (``dirty`` 0); every other day comes from the history.

When rows are written (docs/performance.md, "Reports"):

- ``run_due`` (the periodic work, under the bridge's lease) runs ``run`` at most every
  ``EVERY`` (the bridge's periodic work runs every few seconds; a pass looks at every
  connector): per station, days that ended at least ``SETTLE`` ago (so telemetry of the day still in flight has committed), at most
  ``NEW_DAYS_PER_RUN`` new days per station and ``DIRTY_PER_RUN`` dirty connector-days per run;
  a new station's first run starts at its first recorded status or session.
- ``roll_up`` for a chosen station and dates (``chargeapp rollup``, backfills).

Late telemetry: a status change or a session written for a day that is already rolled up
marks the rows it changes dirty (``dirty = dirty + 1``), from a ``before_flush`` listener,
so every writer (bridge, OCPP, manager close) is covered: a status change marks its
connector from its day to the day of the next recorded change (the state it sets lasts
until then), a session from the first to the last day of its old and new start and stop
(days in the station's time zone, looked up once per connector and session). A message
in order costs one indexed lookup (no rollup from its day on: nothing to mark).
Recomputing subtracts only the marks it saw, so a mark committed by another
transaction while the row was being recomputed keeps it dirty.
"""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Callable, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, event, func, inspect, select, update
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain import charger as ch
from chargeapp.domain import usage
from chargeapp.services import reports
from chargeapp.services.common import station_tz

UTC = timezone.utc
DAY = timedelta(days=1)
SETTLE = timedelta(hours=1)
EVERY = timedelta(minutes=5)
SCHEDULE = "rollups"  # a ``leases`` row whose expires_at is when the next pass is due
NEW_DAYS_PER_RUN = 31
DIRTY_PER_RUN = 2000

R = m.ConnectorDayRollup


# -- computing and writing ---------------------------------------------------------------


def _window(day: date, tz) -> tuple[date, datetime, datetime]:
    return day, usage.local_midnight(day, tz), usage.local_midnight(day + DAY, tz)


def last_complete_day(station: m.Station, now: datetime) -> date:
    """The last station-local day that ended at least SETTLE before ``now`` (aware)."""
    tz = station_tz(station)
    day = (ch.utc(now) - SETTLE).astimezone(tz).date()
    while usage.local_midnight(day, tz) > ch.utc(now) - SETTLE:
        day -= DAY
    return day - DAY


def compute(session: Session, station: m.Station, days_by_connector: dict[int, list[date]],
            now: datetime) -> int:
    """Compute and write the rollups of the given connectors' local days (whole days only); returns rows written.

    No commit. Existing rows are replaced, keeping marks made since they were read.
    """
    tz = station_tz(station)
    figures: dict[tuple[int, date], usage.DayFigures] = {}
    windows: dict[tuple[int, date], tuple[datetime, datetime]] = {}
    seen_marks: dict[tuple[int, date], int] = {}
    for cid, days in days_by_connector.items():
        days = sorted(set(days))
        if not days:
            continue
        for day, dirty in session.execute(select(R.day, R.dirty).where(R.connector_id == cid, R.day.in_(days))):
            seen_marks[(cid, day)] = dirty
        wins = [_window(d, tz) for d in days]
        for day, f in reports.connector_days(session, cid, wins, tz).items():
            figures[(cid, day)] = f
        for day, lo, hi in wins:
            windows[(cid, day)] = (lo, hi)
    if not figures:
        return 0
    sessions: dict[int, usage.SessionRecord] = {}
    for lo, hi in usage.merged_windows(windows.values()):
        for s in reports.sessions_between(session, station.id, lo, hi):
            sessions[s.id] = s
    start, end = min(lo for lo, _ in windows.values()), max(hi for _, hi in windows.values())
    usage.add_sessions(figures, windows, sessions.values(), tz, start, end)

    inserts, updates = [], []
    for (cid, day), f in figures.items():
        values = _values(f, now)
        if (cid, day) in seen_marks:
            updates.append({"k_connector": cid, "k_day": day, "k_seen": seen_marks[(cid, day)], **values})
        else:
            inserts.append({"connector_id": cid, "day": day, "station_id": station.id, "weekday": day.weekday(),
                            "dirty": 0, "revision": 1, **values})
    if inserts:
        session.execute(R.__table__.insert(), inserts)
    if updates:
        t = R.__table__
        session.execute(
            t.update()
            .where(t.c.connector_id == bindparam("k_connector"), t.c.day == bindparam("k_day"))
            .values(dirty=t.c.dirty - bindparam("k_seen"), revision=t.c.revision + 1),
            updates,
        )
    return len(figures)


def _values(f: usage.DayFigures, now: datetime) -> dict:
    values = {
        "known_us": f.known_us, "faulted_us": f.faulted_us, "unavailable_us": f.unavailable_us,
        "occupied_us": f.occupied_us, "charging_us": f.charging_us,
        "energy_wh": f.energy_wh, "sessions": f.sessions, "lengths_us": list(f.lengths_us),
        "computed_at": ch.utc(now), **f.idle._asdict(),
    }
    for kind in m.ROLLUP_HOURLY:
        for h, us in enumerate(f.hours[kind]):
            values[f"{kind}_h{h:02d}"] = us
    return values


def _first_day(session: Session, station: m.Station, connector_id: int) -> date | None:
    """The local day of the connector's first status change or session start; None if it has neither."""
    first_status = session.scalar(
        select(func.min(m.StatusChange.at)).where(m.StatusChange.connector_id == connector_id))
    first_session = session.scalar(select(func.min(m.ChargingSession.started_at)).where(
        m.ChargingSession.charger_id == session.get(m.Connector, connector_id).charger_id,
        m.ChargingSession.connector_id == connector_id))
    known = [t for t in (first_status, first_session) if t is not None]
    return min(known).astimezone(station_tz(station)).date() if known else None


def run_due(session: Session, now: datetime) -> dict:
    """``run`` if its last pass was EVERY or longer before ``now`` (or never); zero counts otherwise. No commit.

    Called under the periodic lease, so one worker at a time reads and moves the schedule row."""
    row = session.get(m.Lease, SCHEDULE)
    if row is not None and ch.utc(now) < row.expires_at < ch.utc(now) + EVERY * 2:
        return {"rollups_dirty": 0, "rollups_new": 0}  # (a due time far ahead is a clock that went back: run)
    if row is None:
        session.add(m.Lease(name=SCHEDULE, holder="periodic work", expires_at=ch.utc(now) + EVERY))
    else:
        row.expires_at = ch.utc(now) + EVERY
    return run(session, now)


def run(session: Session, now: datetime) -> dict:
    """The periodic rollup work at ``now`` (aware): dirty days first, then days not rolled up yet. No commit."""
    counts = {"rollups_dirty": 0, "rollups_new": 0}
    budget = DIRTY_PER_RUN
    for station in session.scalars(select(m.Station).order_by(m.Station.id)).all():
        last = last_complete_day(station, now)
        todo: dict[int, list[date]] = {}
        if budget > 0:
            for cid, day in session.execute(
                select(R.connector_id, R.day).where(R.station_id == station.id, R.dirty > 0, R.day <= last)
                .order_by(R.day).limit(budget)
            ):
                todo.setdefault(cid, []).append(day)
                budget -= 1
        counts["rollups_dirty"] += compute(session, station, todo, now)
        todo = {}
        for charger in station.chargers:
            for connector in charger.connectors:
                newest = session.scalar(select(func.max(R.day)).where(R.connector_id == connector.id))
                first = newest + DAY if newest is not None else _first_day(session, station, connector.id)
                if first is None or first > last:
                    continue
                todo[connector.id] = [first + DAY * i for i in range(min(NEW_DAYS_PER_RUN, (last - first).days + 1))]
        counts["rollups_new"] += compute(session, station, todo, now)
    return counts


def roll_up(session: Session, station: m.Station, first: date | None, last: date | None, now: datetime,
            progress: Callable[[int, int], None] | None = None, commit: Callable[[], None] | None = None) -> int:
    """(Re)compute the station's rollups of local days ``first``..``last`` (default: from its first status or
    session to the last complete day), a week at a time; ``progress(done, total)`` after each week,
    ``commit()`` too when given. Days after the last complete day are left out. Returns rows written."""
    newest = last_complete_day(station, now)
    last = min(last or newest, newest)
    if first is None:
        known = [d for d in (_first_day(session, station, k.id) for c in station.chargers for k in c.connectors) if d]
        if not known:
            return 0
        first = min(known)
    if first > last:
        return 0
    total_days = (last - first).days + 1
    connectors = [k.id for c in station.chargers for k in c.connectors]
    written, done = 0, 0
    day = first
    while day <= last:
        week = [day + DAY * i for i in range(min(7, (last - day).days + 1))]
        written += compute(session, station, {cid: week for cid in connectors}, now)
        if commit is not None:
            commit()
        done += len(week)
        if progress is not None:
            progress(done, total_days)
        day = week[-1] + DAY
    return written


# -- marking days dirty when late history is written --------------------------------------


def _connector_tz(session: Session, connector_id: int):
    """The time zone of the connector's station, remembered for the session's life."""
    known = session.info.setdefault("rollups_connector_tz", {})
    if connector_id not in known:
        name = session.scalar(select(m.Station.timezone).join(m.Charger, m.Charger.station_id == m.Station.id)
                              .join(m.Connector, m.Connector.charger_id == m.Charger.id)
                              .where(m.Connector.id == connector_id))
        known[connector_id] = ZoneInfo(name or "Asia/Shanghai")
    return known[connector_id]


def _mark(session: Session, connector_id: int, first: datetime, last: Callable[[], datetime | None]) -> None:
    """Mark the connector's rollups from ``first``'s local day to the day of ``last()`` (None: every later day) dirty.

    ``last`` is only asked when the connector has a rollup from that day on: a live message costs one lookup.
    """
    tz = _connector_tz(session, connector_id)
    d1 = ch.utc(first).astimezone(tz).date()
    if session.scalar(select(R.day).where(R.connector_id == connector_id, R.day >= d1).limit(1)) is None:
        return
    stmt = update(R).where(R.connector_id == connector_id, R.day >= d1)
    end = last()
    if end is not None:
        stmt = stmt.where(R.day <= ch.utc(end).astimezone(tz).date())
    session.execute(stmt.values(dirty=R.dirty + 1).execution_options(synchronize_session=False))


def _status_written(session: Session, change: m.StatusChange) -> None:
    """A status sets the connector's state from its instant until the next recorded change."""
    _mark(session, change.connector_id, change.at, lambda: session.scalar(select(func.min(m.StatusChange.at)).where(
        m.StatusChange.connector_id == change.connector_id, m.StatusChange.at > change.at)))


_SESSION_FIELDS = ("started_at", "stopped_at", "start_meter_wh", "stop_meter_wh", "connector_id", "charger_id")


def _session_written(session: Session, cs: m.ChargingSession, new: bool) -> None:
    """A session counts on its start day and, closed, apportions its energy up to its stop day: the days
    between the earliest and the latest of its old and new start and stop change."""
    state = inspect(cs)
    if not new and not any(state.attrs[k].history.has_changes() for k in _SESSION_FIELDS):
        return
    starts = _values_of(state, "started_at")
    if not any(t is not None for t in starts):
        return  # never started: no report counts it
    times = sorted((t for t in (*starts, *_values_of(state, "stopped_at")) if t is not None), key=ch.utc)
    for cid in {c for c in _values_of(state, "connector_id") if c is not None}:
        _mark(session, cid, times[0], lambda: times[-1])


def _values_of(state, key: str) -> list:
    h = state.attrs[key].history
    return [*h.added, *h.unchanged, *h.deleted] or [getattr(state.object, key)]


@event.listens_for(Session, "before_flush")
def _mark_late_history(session: Session, flush_context, instances) -> None:
    for obj in list(session.new):
        if isinstance(obj, m.StatusChange):
            _status_written(session, obj)
        elif isinstance(obj, m.ChargingSession):
            _session_written(session, obj, new=True)
    for obj in list(session.dirty):
        if isinstance(obj, m.ChargingSession):
            _session_written(session, obj, new=False)


def rolled_days(session: Session, station: m.Station) -> Iterable[tuple[int, date, int]]:
    """(connector id, day, dirty marks) of the station's rollups, for tests and operators."""
    return session.execute(select(R.connector_id, R.day, R.dirty).where(R.station_id == station.id)
                           .order_by(R.connector_id, R.day)).all()
