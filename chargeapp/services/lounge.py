"""Lounge occupancy: door-counter readings to zone changes, the manager's count,
the live zone view and hourly occupancy for reports.

The raw changes are kept (``OccupancyChange``: source "door" rows move counts,
"set" rows record the manager's baselines, a "baseline" row a sensor's first totals
that were not counted); every count shown is derived from
them with the pure rules in ``chargeapp.domain.occupancy``, so a late reading
simply takes its place in time. Functions take a session and never commit.

Decisions (docs/rules.md, "Lounge occupancy"):

- A reading applies the passages since the sensor's stored state; a redelivered
  or older reading, or one from an older boot, applies nothing; a new boot's
  totals all count (they start from zero at the reboot).
- A count is "at ``now``": door changes stamped after ``now`` wait until then.
- The nightly reset is not stored: it is derived from the station's
  ``lounge_reset_time`` (station time zone) whenever a count is computed.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain import occupancy as occ
from chargeapp.domain.errors import InvalidRequest, NotFound
from chargeapp.services.common import locked_row, rules_of, station_by_code, station_tz

UTC = timezone.utc
HOUR = timedelta(hours=1)


class SensorNotFound(NotFound):
    """No such door sensor at this station."""

    code = "sensor_not_found"


class ZoneNotFound(NotFound):
    """No such lounge zone."""

    code = "zone_not_found"


class InvalidZoneCount(InvalidRequest):
    """A zone's count is a whole number of people, zero or more."""

    code = "invalid_zone_count"


class InvalidDoorCount(InvalidRequest):
    """Door counter totals, boot and seq are non-negative integers."""

    code = "invalid_door_count"


def _locked_sensor(session: Session, station_code: str, sensor_code: str) -> m.DoorSensor:
    """The sensor, its row locked (PostgreSQL): its stored totals are read, compared and replaced."""
    station = station_by_code(session, station_code)
    # Read afresh once locked (PostgreSQL): a batch may have loaded this row before another bridge worker's
    # commit, and the identity map would hand back those stale totals (common.locked_row).
    sensor = locked_row(session, m.DoorSensor, station.id, sensor_code)
    if sensor is None:
        raise SensorNotFound(f"No door sensor '{sensor_code}' at {station.code}.")
    return sensor


def record_door_count(session: Session, *, station_code: str, sensor_code: str, boot: int, seq: int,
                      in_total: int, out_total: int, at: datetime, now: datetime) -> int:
    """Apply a cumulative door reading at device time ``at``; returns the passages (people) it added.

    One OccupancyChange (source "door") per zone whose net count moves; a door
    between two zones moves people out of one into the other. A redelivered or
    older reading, or one from an older boot, adds 0; the first reading ever of a
    sensor is a baseline (0) unless it is seq 1 of its boot. A baseline is kept
    (source "baseline": ``delta`` its in_total, ``count_after`` its out_total, never
    counted) until seq 1 of its boot comes late, as it does when bridge workers share
    a sensor's messages: then the boot began in view and its totals up to the
    baseline count after all (seq 1's at its time, the rest at the baseline's).
    Raises StationNotFound, SensorNotFound, InvalidDoorCount.
    """
    sensor = _locked_sensor(session, station_code, sensor_code)
    try:
        reading = occ.CounterReading(boot=boot, seq=seq, in_total=in_total, out_total=out_total, at=at)
    except ValueError as exc:
        raise InvalidDoorCount(str(exc)) from None
    state = None
    if sensor.boot is not None:
        state = occ.CounterState(sensor.boot, sensor.seq, sensor.in_total, sensor.out_total)
    result = occ.passages_since(state, reading)
    if result is None:
        if state is not None and reading.boot == state.boot and reading.seq == 1:
            return _count_up_to_baseline(session, sensor, reading)
        return 0
    new_state, passages = result
    if state is None and reading.seq != 1:
        session.add(m.OccupancyChange(zone_id=sensor.zone_in_id, at=at, delta=in_total, count_after=out_total,
                                      source="baseline", sensor_id=sensor.id))
    elif state is not None and new_state.boot != state.boot:
        _forget_baseline(session, sensor)  # a new boot counts from zero: an older boot's seq 1 changes nothing
    sensor.boot, sensor.seq = new_state.boot, new_state.seq
    sensor.in_total, sensor.out_total = new_state.in_total, new_state.out_total
    _add_door_changes(session, sensor, passages, at)
    session.flush()
    return passages.entered + passages.left


def _add_door_changes(session: Session, sensor: m.DoorSensor, passages: occ.Passages, at: datetime) -> None:
    for zone_id, delta in occ.zone_deltas(passages, sensor.zone_in_id, sensor.zone_out_id).items():
        session.add(m.OccupancyChange(zone_id=zone_id, at=at, delta=delta, source="door", sensor_id=sensor.id))


def _baseline(session: Session, sensor: m.DoorSensor) -> m.OccupancyChange | None:
    return session.scalar(select(m.OccupancyChange).where(
        m.OccupancyChange.sensor_id == sensor.id, m.OccupancyChange.source == "baseline").limit(1))


def _forget_baseline(session: Session, sensor: m.DoorSensor) -> None:
    baseline = _baseline(session, sensor)
    if baseline is not None:
        session.delete(baseline)


def _count_up_to_baseline(session: Session, sensor: m.DoorSensor, first: occ.CounterReading) -> int:
    """Seq 1 of the baseline's boot arrived late: count its totals at its time and the rest up to the baseline at
    the baseline's time, once (the baseline row goes). Without a baseline (seq 1 already counted) nothing."""
    baseline = _baseline(session, sensor)
    if baseline is None:
        return 0
    up_to_first = occ.Passages(first.in_total, first.out_total)
    rest = occ.Passages(max(baseline.delta - first.in_total, 0), max((baseline.count_after or 0) - first.out_total, 0))
    _add_door_changes(session, sensor, up_to_first, first.at)
    _add_door_changes(session, sensor, rest, baseline.at)
    session.delete(baseline)
    session.flush()
    return up_to_first.entered + up_to_first.left + rest.entered + rest.left


def set_sensor_online(session: Session, *, station_code: str, sensor_code: str, online: bool,
                      now: datetime) -> bool:
    """Record the sensor's retained ``online`` flag; True if it changed. Its zones are uncertain while offline."""
    sensor = _locked_sensor(session, station_code, sensor_code)
    if sensor.online == bool(online):
        return False
    sensor.online = bool(online)
    session.flush()
    return True


def set_zone_count(session: Session, *, zone_id: int, count: int, now: datetime) -> m.Zone:
    """The manager's head count (people, >= 0) as the zone's baseline at ``now``; door changes stamped earlier no longer move it.

    Kept in history as an OccupancyChange source "set" (delta 0, count_after = count).
    Raises ZoneNotFound, InvalidZoneCount. The caller writes the audit entry.
    """
    if type(count) is not int or count < 0:
        raise InvalidZoneCount(f"A zone count must be a whole number >= 0, got {count!r}.", count=str(count))
    zone = session.get(m.Zone, zone_id)
    if zone is None:
        raise ZoneNotFound(f"No zone {zone_id}.")
    zone.baseline_count, zone.baseline_at = count, now
    session.add(m.OccupancyChange(zone_id=zone.id, at=now, delta=0, source="set", count_after=count))
    session.flush()
    return zone


def _sensors_by_zone(session: Session, station: m.Station) -> dict[int, list[m.DoorSensor]]:
    by_zone: dict[int, list[m.DoorSensor]] = {}
    for s in session.scalars(select(m.DoorSensor).where(m.DoorSensor.station_id == station.id)):
        by_zone.setdefault(s.zone_in_id, []).append(s)
        if s.zone_out_id is not None:
            by_zone.setdefault(s.zone_out_id, []).append(s)
    return by_zone


def _door_changes(session: Session, zone_id: int, after: datetime | None, until: datetime) -> list[occ.ZoneChange]:
    """Door changes of a zone stamped in (after, until]."""
    q = select(m.OccupancyChange.at, m.OccupancyChange.delta).where(
        m.OccupancyChange.zone_id == zone_id, m.OccupancyChange.source == "door", m.OccupancyChange.at <= until,
    )
    if after is not None:
        q = q.where(m.OccupancyChange.at > after)
    return [occ.ZoneChange(at, delta) for at, delta in session.execute(q)]


def zone_count_at(session: Session, zone: m.Zone, now: datetime) -> int:
    """Head count of a zone at ``now`` (aware): effective baseline (manager's set or nightly reset) plus later door changes, floored at 0."""
    station = zone.station
    manual = None
    if zone.baseline_at is not None and zone.baseline_count is not None:
        manual = occ.Baseline(zone.baseline_at, zone.baseline_count)
    baseline = occ.effective_baseline(manual, now, rules_of(station).lounge_reset_time, station_tz(station))
    changes = _door_changes(session, zone.id, baseline.at if baseline else None, now)
    return occ.zone_count(baseline, changes)


def zone_view(session: Session, station: m.Station, now: datetime) -> list[dict]:
    """Each zone of the station (by id) at ``now``: count and free places (people), capacity, and uncertain while any sensor counting into or out of it is offline."""
    sensors = _sensors_by_zone(session, station)
    out = []
    for zone in session.scalars(select(m.Zone).where(m.Zone.station_id == station.id).order_by(m.Zone.id)):
        shown = occ.zone_occupancy(
            zone_count_at(session, zone, now), zone.capacity, [s.online for s in sensors.get(zone.id, [])]
        )
        out.append({
            "id": zone.id, "code": zone.code, "name": zone.name, "name_en": zone.name_en,
            "capacity": zone.capacity, "count": shown.count, "free": shown.free, "uncertain": shown.uncertain,
        })
    return out


# -- hourly occupancy (reports) ------------------------------------------------------


class HourOccupancy(NamedTuple):
    """One local hour of a zone: its start (aware, in the report's tz), peak head count and time-weighted average."""

    hour: datetime
    peak: int
    average: float


def _resets_between(start: datetime, end: datetime, reset_at, tz: tzinfo) -> list[datetime]:
    """Nightly reset instants in (start, end] (the domain's latest_reset, evaluated once per local day)."""
    if reset_at is None:
        return []
    out = set()
    day = start.astimezone(tz).date()
    last = end.astimezone(tz).date()
    while day <= last:
        end_of_day = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=tz) - timedelta(microseconds=1)
        reset = occ.latest_reset(min(end_of_day.astimezone(UTC), end), reset_at, tz)
        if reset is not None and start < reset <= end:
            out.add(reset.astimezone(UTC))
        day += timedelta(days=1)
    return sorted(out)


def _local_hour_floor(at: datetime, tz: tzinfo) -> datetime:
    local = at.astimezone(tz)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def hourly_occupancy(session: Session, zone: m.Zone, start: datetime, end: datetime,
                     tz: tzinfo) -> list[HourOccupancy]:
    """Peak and time-weighted average head count of a zone per local hour (``tz``) within [start, end) (aware).

    The count over time follows zone_view's rules: baselines (manager's sets and the
    nightly reset in the station's tz) restart it, door changes move it, floored at
    0. An hour cut by ``start``/``end`` is averaged over the part inside; the
    average is rounded to 2 decimals. Pass an ``end`` no later than now.
    """
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return []
    station = zone.station
    stz = station_tz(station)
    reset_at = rules_of(station).lounge_reset_time

    # Where the count stands at ``start``.
    last_set = session.execute(
        select(m.OccupancyChange.at, m.OccupancyChange.count_after)
        .where(m.OccupancyChange.zone_id == zone.id, m.OccupancyChange.source == "set", m.OccupancyChange.at <= start)
        .order_by(m.OccupancyChange.at.desc(), m.OccupancyChange.id.desc()).limit(1)
    ).first()
    manual = occ.Baseline(last_set.at, last_set.count_after) if last_set else None
    baseline = occ.effective_baseline(manual, start, reset_at, stz)
    count = occ.zone_count(baseline, _door_changes(session, zone.id, baseline.at if baseline else None, start))

    # Everything after it, in the order zone_count uses: at one instant door changes
    # (increases first), then the reset, then a manager's set (which wins a tie).
    events: list[tuple[datetime, int, int, int]] = []  # (at, rank, sort key, value)
    for at, delta in session.execute(
        select(m.OccupancyChange.at, m.OccupancyChange.delta).where(
            m.OccupancyChange.zone_id == zone.id, m.OccupancyChange.source == "door",
            m.OccupancyChange.at > start, m.OccupancyChange.at < end,
        )
    ):
        events.append((at, 0, -delta, delta))
    for reset in _resets_between(start, end, reset_at, stz):
        if reset < end:
            events.append((reset, 1, 0, 0))
    for at, count_after in session.execute(
        select(m.OccupancyChange.at, m.OccupancyChange.count_after).where(
            m.OccupancyChange.zone_id == zone.id, m.OccupancyChange.source == "set",
            m.OccupancyChange.at > start, m.OccupancyChange.at < end,
        ).order_by(m.OccupancyChange.id)
    ):
        events.append((at, 2, 0, count_after or 0))
    events.sort(key=lambda e: (e[0], e[1], e[2]))

    hours: list[HourOccupancy] = []
    hour = _local_hour_floor(start, tz)
    i = 0
    while hour < end:
        lo, hi = max(hour, start), min(hour + HOUR, end)
        peak, weighted, cursor = None, 0, lo
        while i < len(events) and events[i][0] < hi:
            at, rank, _, value = events[i]
            if at > lo and peak is None:
                peak = count  # the count at the hour's start, once its own instant's events are in
            weighted += count * _us(at - cursor)
            cursor = at
            count = max(0, count + value) if rank == 0 else value
            if peak is not None:
                peak = max(peak, count)
            i += 1
        peak = count if peak is None else peak
        weighted += count * _us(hi - cursor)
        hours.append(HourOccupancy(hour.astimezone(tz), peak, round(weighted / _us(hi - lo), 2)))
        hour += HOUR
    return hours


def _us(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)
