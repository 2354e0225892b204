"""Managers' use cases: the live view of a station, configuration (chargers in or
out of service, zones, rules, opening hours, maintenance windows, tariffs) and
fix-ups (waive or correct a fee, close a stuck session, fix a misread plate),
plus the dead-letter and audit lists.

Every function takes the acting ``user`` and checks scope itself: a manager sees
only their stations, an administrator sees all; anything out of scope is
reported exactly as if it did not exist (StationNotFound, ReceiptNotFound...), so
scope never reveals another station. Every change is written to the audit log
with who, why, before and after. Functions take a session and ``now`` (aware),
flush and never commit; outputs are plain dicts carrying the station's time
zone as ``tz`` for the edge to write instants in.

Decisions (see also the API module):

- Taking a charger out of service is a manager's act, so its bookings of the
  fault look-ahead are moved as for a fault (booking.rehome_after_fault); later
  ones move at hold time, since an out-of-service charger is never held. Setting
  the state it already has changes nothing and writes no audit entry.
- A new maintenance window disrupts the active bookings (booked, held, waiting)
  whose slot overlaps it, releasing holds; checked-in drivers are never cut off.
  A window must end after it starts and after ``now``. Deleting a window that
  has already ended is refused (it is history); bookings disrupted by a deleted
  window stay disrupted (their drivers were told and may book again).
- New opening hours apply to new bookings; existing bookings stand.
- A tariff version takes effect at ``now`` or later (tariffs.add_tariff_version
  refuses the past: last month's receipts never change); fields left out are
  inherited from the version it follows.
"""
from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from typing import Iterable, Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.errors import Conflict, InvalidRequest, NotFound
from chargeapp.services import booking as booking_service
from chargeapp.services import charging, dead_letters as dead_letter_bounds, doors, gates, lounge, receipts, tariffs
from chargeapp.services.common import (
    StationNotFound, audit, charger_by_code, enqueue_command, may_manage, rules_of,
    station_tz,
)
from chargeapp.services.lounge import ZoneNotFound
from chargeapp.services.receipts import ReasonRequired

# An open session this long is listed as stuck (a per-station rule later).
STUCK_SESSION_AFTER = timedelta(hours=12)
# A reserve_now the charger has not answered this long after it was queued.
HOLD_ACK_TIMEOUT = timedelta(minutes=2)
# Failed commands and dead letters this recent are listed.
RECENT = timedelta(hours=24)
# A device's messages that never arrived are listed for this long after the gap was found.
SEQUENCE_GAP_SHOWN = timedelta(hours=24)
PAGE_MAX = 200


class ZoneCodeTaken(Conflict):
    """This station already has a zone with that code."""

    code = "zone_code_taken"


class StayNotFound(NotFound):
    """No such parking stay."""

    code = "stay_not_found"


class MaintenanceWindowNotFound(NotFound):
    """No such maintenance window at this station."""

    code = "maintenance_window_not_found"


class InvalidMaintenanceWindow(InvalidRequest):
    """A maintenance window ends after it starts, and after now."""

    code = "invalid_maintenance_window"


class MaintenanceWindowOver(Conflict):
    """That maintenance window has ended: it is kept as history."""

    code = "maintenance_window_over"


class StayAnonymised(Conflict):
    """That stay's plate was anonymised after the retention period: it is no longer fixed."""

    code = "stay_anonymised"


class InvalidOpeningHours(InvalidRequest):
    """Opening hours are two different "HH:MM" times, or both null for around the clock."""

    code = "invalid_opening_hours"


class InvalidRules(InvalidRequest):
    """A station rule is out of range."""

    code = "invalid_rules"


# -- scope ----------------------------------------------------------------------------


def managed_station(session: Session, user: m.User, code: str) -> m.Station:
    """The station ``code`` if the user may manage it; StationNotFound otherwise (never revealed)."""
    station = session.scalar(select(m.Station).where(m.Station.code == code))
    if station is None or not may_manage(user, station.id):
        raise StationNotFound(f"No station '{code}'.")
    return station


def managed_stations(session: Session, user: m.User) -> list[m.Station]:
    """The stations the user may manage, by code."""
    q = select(m.Station).order_by(m.Station.code)
    if user.role != "admin":
        ids = [s.id for s in user.stations] if user.role == "manager" else []
        q = q.where(m.Station.id.in_(ids))
    return list(session.scalars(q))


# What a manager route names by id: the row's model, and how to say it does not exist (also for a row of
# another station: never revealed).
_BY_ID = {
    "receipt_id": (m.Receipt, lambda i: receipts.ReceiptNotFound(f"No receipt {i}.")),
    "session_id": (m.ChargingSession, lambda i: charging.ChargingSessionNotFound(f"No charging session {i}.")),
    "stay_id": (m.ParkingStay, lambda i: StayNotFound(f"No parking stay {i}.")),
}


def _managed(session: Session, user: m.User, kind: str, row_id: int):
    """The row ``kind`` (a key of _BY_ID) with id ``row_id`` and its station, if the user may manage it."""
    model, not_found = _BY_ID[kind]
    row = session.get(model, row_id)
    if row is None or not may_manage(user, row.station_id):
        raise not_found(row_id)
    return row, session.get(m.Station, row.station_id)


def check_scope(session: Session, user: m.User, targets: Mapping[str, object]) -> None:
    """The station (``code``) and the rows (``receipt_id``, ``session_id``, ``stay_id``) a route names, before
    its body is read: one the user may not manage is a NotFound, never a 422 about a body it may not send."""
    if "code" in targets:
        managed_station(session, user, str(targets["code"]))
    for kind in _BY_ID.keys() & targets.keys():
        _managed(session, user, kind, int(targets[kind]))


def _reason(reason: str | None, required: bool = True) -> str:
    text = (reason or "").strip()
    if required and not text:
        raise ReasonRequired("Say why: every change to money, sessions or plates is kept with its reason.")
    return text


def _hhmm(t: time | None) -> str | None:
    return t.strftime("%H:%M") if t is not None else None


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


# -- stations and the live view -------------------------------------------------------


def station_summary(station: m.Station) -> dict:
    chargers = station.chargers
    return {
        "code": station.code, "name": station.name, "name_en": station.name_en,
        "address": station.address, "district": station.district, "timezone": station.timezone,
        "opens_at": _hhmm(station.opens_at), "closes_at": _hhmm(station.closes_at),
        "is_demo": station.is_demo,
        "fast_total": sum(c.kind == "fast" for c in chargers),
        "slow_total": sum(c.kind == "slow" for c in chargers),
        "tz": station.timezone,
    }


def list_stations(session: Session, user: m.User) -> list[dict]:
    """The stations the user manages (all for an administrator), by code."""
    return [station_summary(s) for s in managed_stations(session, user)]


def _charger_view(row: dict, station: m.Station) -> dict:
    """A charger row of charging.station_live with its first connector's status on top."""
    connectors = [{**k, "tz": station.timezone} for k in row["connectors"]]
    first = connectors[0] if connectors else None
    return {**row, "connectors": connectors, "status": first["status"] if first else "Unavailable",
            "error_code": first["error_code"] if first else "NoError", "tz": station.timezone}


def station_view(session: Session, now: datetime, user: m.User, code: str) -> dict:
    """A station live: chargers with their status, zones, and what needs attention now."""
    station = managed_station(session, user, code)
    out = station_summary(station)
    out["chargers"] = [_charger_view(r, station) for r in charging.station_live(session, station)]
    out["zones"] = lounge.zone_view(session, station, now)
    out["attention"] = attention(session, now, station)
    out["dead_letters_24h"] = _recent_dead_letters(session, now, station)
    return out


def _recent_dead_letters(session: Session, now: datetime, station: m.Station) -> int:
    return session.scalar(select(func.count(m.DeadLetter.id)).where(
        m.DeadLetter.station_code == station.code, m.DeadLetter.received_at >= now - RECENT)) or 0


def _item(kind: str, target: str, message: str, since: datetime | None = None, params: dict | None = None,
          **data) -> dict:
    """An attention item: ``message`` in English; ``code`` (the kind) and ``params`` (station-local times as text)
    for rendering it in the reader's language (chargeapp.web.messages)."""
    return {"kind": kind, "target": target, "message": message, "since": since, "data": data,
            "code": kind, "params": params or {}}


def attention(session: Session, now: datetime, station: m.Station) -> list[dict]:
    """What a manager should look at now, most urgent kinds first.

    Faulted connectors (and Unavailable ones of chargers in service: taking one
    out of service is the manager's own act), offline chargers, door sensors and
    gates, sessions open longer than STUCK_SESSION_AFTER, devices with a sequence
    gap found in the last 24 h, reserve_now holds not answered within
    HOLD_ACK_TIMEOUT, commands that failed in the last 24 h, and dead letters of
    the last 24 h.
    """
    items: list[dict] = []
    for c in station.chargers:
        for k in c.connectors:
            if k.status == "Faulted" or (k.status == "Unavailable" and c.in_service):
                items.append(_item(f"charger_{k.status.lower()}", c.code,
                                   f"{c.code} connector {k.number} is {k.status} ({k.error_code}).",
                                   k.status_at, {"charger": c.code, "connector": k.number,
                                                 "error_code": k.error_code},
                                   connector=k.number, error_code=k.error_code))
        if not c.online:
            items.append(_item("charger_offline", c.code, f"{c.code} is offline.", params={"charger": c.code}))
    for s in session.scalars(select(m.DoorSensor).where(m.DoorSensor.station_id == station.id,
                                                        m.DoorSensor.online.is_(False)).order_by(m.DoorSensor.code)):
        items.append(_item("sensor_offline", s.code, f"Door sensor {s.code} is offline: its zones are uncertain.",
                           params={"sensor": s.code}))
    for g in session.scalars(select(m.Gate).where(m.Gate.station_id == station.id,
                                                  m.Gate.online.is_(False)).order_by(m.Gate.code)):
        items.append(_item("gate_offline", g.code, f"Gate {g.code} is offline: plates are not being read.",
                           params={"gate": g.code}))
    for d in doors.doors_left_open(session, station, now):
        minutes = int((now - d.open_since).total_seconds() // 60)
        items.append(_item("door_left_open", d.name or d.friendly_name,
                           f"Door {d.name or d.friendly_name} has been open for {minutes} min.",
                           params={"door": d.name or d.friendly_name, "minutes": minutes}))
    items.extend(_stuck_sessions(session, now, station))
    items.extend(_sequence_gaps(session, now, station))
    items.extend(_command_trouble(session, now, station))
    dead = _recent_dead_letters(session, now, station)
    if dead:
        items.append(_item("dead_letters", station.code, f"{dead} message(s) dead-lettered in the last 24 h.",
                           params={"count": dead}, count=dead))
    for item in items:
        item["tz"] = station.timezone
    return items


def _sequence_gaps(session: Session, now: datetime, station: m.Station) -> Iterable[dict]:
    """Devices of the station with messages that never arrived (a gap in their seq found in the last
    SEQUENCE_GAP_SHOWN): what those messages said is unknown; cumulative meter and door totals are
    right again from the next message, a status or transaction in the gap may be missing."""
    rows = session.execute(
        select(m.DeviceSequence.device, m.DeviceSequence.missing, m.DeviceSequence.gap_at)
        .where(m.DeviceSequence.missing > 0, m.DeviceSequence.gap_at >= now - SEQUENCE_GAP_SHOWN)
        .order_by(m.DeviceSequence.device)
    ).all()
    for device, missing, gap_at in rows:
        kind, _, where = device.partition(":")
        code, _, device_id = where.partition("/")
        if code != station.code:
            continue
        yield _item("messages_missing", device_id,
                    f"{device_id}: {missing} message(s) never arrived; meter and door totals are right again "
                    f"from its next message, a status change or transaction in the gap may be missing.",
                    gap_at, {"device": device_id, "missing": missing}, device_kind=kind, missing=missing)


def _stuck_sessions(session: Session, now: datetime, station: m.Station) -> Iterable[dict]:
    tz = station_tz(station)
    open_sessions = session.scalars(
        select(m.ChargingSession).where(m.ChargingSession.station_id == station.id,
                                        m.ChargingSession.closed_by.is_(None))
        .order_by(m.ChargingSession.id)
    ).all()
    for cs in open_sessions:
        begun = charging._begin(session, cs)  # its start, or its first meter reading for a placeholder
        if begun is not None and now - begun >= STUCK_SESSION_AFTER:
            hours = int((now - begun).total_seconds() // 3600)
            local_begun = f"{begun.astimezone(tz):%m-%d %H:%M}"
            yield _item("session_stuck", cs.charger.code,
                        f"Session {cs.id} on {cs.charger.code} open for {hours} h (since {local_begun}).",
                        begun, {"session": cs.id, "charger": cs.charger.code, "hours": hours, "since": local_begun},
                        session_id=cs.id, transaction_id=cs.transaction_id)


def _command_trouble(session: Session, now: datetime, station: m.Station) -> Iterable[dict]:
    codes = {c.id: c.code for c in station.chargers}
    unanswered = session.scalars(
        select(m.CommandOutbox).where(
            m.CommandOutbox.station_id == station.id, m.CommandOutbox.name == "reserve_now",
            m.CommandOutbox.status.in_(["pending", "sent"]),
            m.CommandOutbox.created_at <= now - HOLD_ACK_TIMEOUT,
        ).order_by(m.CommandOutbox.created_at)
    )
    for cmd in unanswered:
        code = codes.get(cmd.charger_id, str(cmd.charger_id))
        yield _item("hold_unacknowledged", code,
                    f"Hold for booking {cmd.booking_id} on {code} not acknowledged ({cmd.status}, "
                    f"{cmd.attempts} attempt(s)).", cmd.created_at,
                    {"booking": cmd.booking_id, "charger": code, "status": cmd.status, "attempts": cmd.attempts},
                    booking_id=cmd.booking_id, request_id=cmd.request_id)
    failed = session.scalars(
        select(m.CommandOutbox).where(
            m.CommandOutbox.station_id == station.id, m.CommandOutbox.status == "failed",
            m.CommandOutbox.created_at >= now - RECENT,
        ).order_by(m.CommandOutbox.created_at)
    )
    for cmd in failed:
        code = codes.get(cmd.charger_id, str(cmd.charger_id))
        yield _item("command_failed", code, f"{cmd.name} to {code} failed ({cmd.result or 'no answer'}).",
                    cmd.created_at, {"command": cmd.name, "charger": code, "result": cmd.result},
                    command=cmd.name, booking_id=cmd.booking_id, request_id=cmd.request_id)


# -- chargers -------------------------------------------------------------------------


def set_charger_in_service(session: Session, now: datetime, user: m.User, code: str, charger_code: str,
                           in_service: bool, reason: str) -> dict:
    """Take a charger out of service (change_availability Inoperative, its bookings moved) or back (Operative).

    Setting the state it already has is a no-op (no command, no audit entry).
    Returns the charger's live row with ``moved_booking_ids``.
    """
    station = managed_station(session, user, code)
    charger = charger_by_code(session, station, charger_code)
    why = _reason(reason)
    moved: list[int] = []
    if charger.in_service != bool(in_service):
        charger.in_service = bool(in_service)
        enqueue_command(session, charger, "change_availability",
                        {"connector": 1, "type": "Operative" if in_service else "Inoperative"}, now)
        session.flush()
        if not in_service:
            moved = [b.id for b in booking_service.rehome_after_fault(session, now, charger)]
        audit(session, now, user, "charger.in_service" if in_service else "charger.out_of_service", "charger",
              charger.id, why, before={"in_service": not in_service},
              after={"in_service": bool(in_service), "bookings_moved": moved}, station_id=station.id)
        session.flush()
    row = next(r for r in charging.station_live(session, station) if r["id"] == charger.id)
    return {**_charger_view(row, station), "moved_booking_ids": moved}


# -- zones, sensors, gates ------------------------------------------------------------


def _zone(session: Session, station: m.Station, zone_code: str) -> m.Zone:
    zone = session.scalar(select(m.Zone).where(m.Zone.station_id == station.id, m.Zone.code == zone_code))
    if zone is None:
        raise ZoneNotFound(f"No zone '{zone_code}' at {station.code}.")
    return zone


def _zone_row(session: Session, now: datetime, station: m.Station, zone: m.Zone) -> dict:
    return next(z for z in lounge.zone_view(session, station, now) if z["id"] == zone.id)


def _zone_config(zone: m.Zone) -> dict:
    return {"code": zone.code, "name": zone.name, "name_en": zone.name_en, "capacity": zone.capacity}


def list_zones(session: Session, now: datetime, user: m.User, code: str) -> list[dict]:
    """The station's zones with their count at ``now`` (people), capacity and uncertainty."""
    return lounge.zone_view(session, managed_station(session, user, code), now)


def add_zone(session: Session, now: datetime, user: m.User, code: str, *, zone_code: str, name: str,
             capacity: int, name_en: str | None = None, reason: str = "") -> dict:
    """Add a lounge zone (capacity in people, >= 0); ZoneCodeTaken if the code is in use at the station."""
    station = managed_station(session, user, code)
    if session.scalar(select(m.Zone.id).where(m.Zone.station_id == station.id, m.Zone.code == zone_code)):
        raise ZoneCodeTaken(f"{station.code} already has a zone '{zone_code}'.")
    zone = m.Zone(station_id=station.id, code=zone_code, name=name, name_en=name_en, capacity=capacity)
    session.add(zone)
    session.flush()
    audit(session, now, user, "zone.create", "zone", zone.id, _reason(reason, required=False),
          after=_zone_config(zone), station_id=station.id)
    session.flush()
    return _zone_row(session, now, station, zone)


def update_zone(session: Session, now: datetime, user: m.User, code: str, zone_code: str,
                reason: str = "", **changes) -> dict:
    """Rename a zone or change its capacity (``name``, ``name_en``, ``capacity``)."""
    station = managed_station(session, user, code)
    zone = _zone(session, station, zone_code)
    before = _zone_config(zone)
    for key in ("name", "name_en", "capacity"):
        if key in changes:
            setattr(zone, key, changes[key])
    after = _zone_config(zone)
    if after != before:
        audit(session, now, user, "zone.update", "zone", zone.id, _reason(reason, required=False),
              before=before, after=after, station_id=station.id)
    session.flush()
    return _zone_row(session, now, station, zone)


def set_zone_count(session: Session, now: datetime, user: m.User, code: str, zone_code: str, count: int,
                   reason: str) -> dict:
    """Set a zone's head count (people, >= 0) as a new baseline at ``now``; audited with the count it replaced."""
    station = managed_station(session, user, code)
    zone = _zone(session, station, zone_code)
    why = _reason(reason)
    shown = lounge.zone_count_at(session, zone, now)
    lounge.set_zone_count(session, zone_id=zone.id, count=count, now=now)
    audit(session, now, user, "zone.set_count", "zone", zone.id, why, before={"count": shown},
          after={"count": count}, station_id=station.id)
    session.flush()
    return _zone_row(session, now, station, zone)


def list_sensors(session: Session, user: m.User, code: str) -> list[dict]:
    """The station's door sensors with the zones they count into and out of, and their online flag."""
    station = managed_station(session, user, code)
    zones = {z.id: z.code for z in station.zones}
    return [{
        "code": s.code, "zone_in": zones.get(s.zone_in_id), "zone_out": zones.get(s.zone_out_id),
        "online": s.online, "boot": s.boot, "seq": s.seq, "in_total": s.in_total, "out_total": s.out_total,
    } for s in session.scalars(select(m.DoorSensor).where(m.DoorSensor.station_id == station.id)
                               .order_by(m.DoorSensor.code))]


def list_gates(session: Session, user: m.User, code: str) -> list[dict]:
    """The station's garage gates with their online flag."""
    station = managed_station(session, user, code)
    return [{"code": g.code, "name": g.name, "online": g.online}
            for g in session.scalars(select(m.Gate).where(m.Gate.station_id == station.id).order_by(m.Gate.code))]


# -- rules and opening hours ----------------------------------------------------------

# Ranges of the editable rules: (min, max) inclusive. Minutes, days and seconds are
# durations (> 0); walk-in chargers are a count (>= 0).
RULE_RANGES: dict[str, tuple[int, int]] = {
    "slot_minutes": (1, 24 * 60),
    "booking_horizon_minutes": (1, 14 * 24 * 60),
    "hold_lead_minutes": (1, 24 * 60),
    "checkin_before_minutes": (1, 24 * 60),
    "checkin_grace_minutes": (1, 24 * 60),
    "no_show_limit": (1, 1000),
    "no_show_window_days": (1, 3650),
    "suspension_days": (1, 3650),
    "walkin_reserved_fast": (0, 10000),
    "fault_lookahead_minutes": (1, 7 * 24 * 60),
    "free_parking_qualify_minutes": (1, 24 * 60),
    "free_parking_minutes": (1, 7 * 24 * 60),
    "parking_block_minutes": (1, 24 * 60),
    "receipt_settle_minutes": (1, 24 * 60),
    "skew_tolerance_seconds": (1, 24 * 3600),
    "plate_retention_days": (1, 3650),
    "max_report_days": (1, 3650),
}
RULE_FIELDS = tuple(RULE_RANGES) + ("lounge_reset_time",)


def _rules_dict(r: m.StationRules) -> dict:
    out = {k: getattr(r, k) for k in RULE_RANGES}
    out["lounge_reset_time"] = _hhmm(r.lounge_reset_time)
    return out


def get_rules(session: Session, user: m.User, code: str) -> dict:
    """The station's rules (stored, or the brief's defaults when none were stored)."""
    return _rules_dict(rules_of(managed_station(session, user, code)))


def update_rules(session: Session, now: datetime, user: m.User, code: str, reason: str = "", **changes) -> dict:
    """Change some of the station's rules; every value is range-checked (InvalidRules) before any is set.

    ``slot_minutes`` must divide a day so the grid repeats daily; ``lounge_reset_time``
    is a ``time`` (station wall time) or None for no nightly reset.
    """
    station = managed_station(session, user, code)
    unknown = set(changes) - set(RULE_FIELDS)
    if unknown:
        raise InvalidRules(f"Not a station rule: {', '.join(sorted(unknown))}.")
    for key, value in changes.items():
        if key == "lounge_reset_time":
            if value is not None and not isinstance(value, time):
                raise InvalidRules("lounge_reset_time is HH:MM or null.", field=key)
            continue
        lo, hi = RULE_RANGES[key]
        if type(value) is not int or not lo <= value <= hi:
            raise InvalidRules(f"{key} must be a whole number from {lo} to {hi}.", field=key)
    if "slot_minutes" in changes and (24 * 60) % changes["slot_minutes"]:
        raise InvalidRules("slot_minutes must divide a day (e.g. 15, 30, 60).", field="slot_minutes")
    rules = station.rules
    if rules is None:
        rules = rules_of(station)
        session.add(rules)
    before = _rules_dict(rules)
    for key, value in changes.items():
        setattr(rules, key, value)
    session.flush()
    after = _rules_dict(rules)
    if after != before:
        changed = [k for k in after if after[k] != before[k]]
        audit(session, now, user, "rules.update", "station", station.id, _reason(reason, required=False),
              before={k: before[k] for k in changed}, after={k: after[k] for k in changed}, station_id=station.id)
        session.flush()
    return after


def set_opening_hours(session: Session, now: datetime, user: m.User, code: str, opens_at: time | None,
                      closes_at: time | None, reason: str = "") -> dict:
    """Set daily opening hours in station wall time (closes_at <= opens_at: closes after midnight);
    both None means around the clock. Existing bookings stand; new ones must fit."""
    station = managed_station(session, user, code)
    if (opens_at is None) != (closes_at is None):
        raise InvalidOpeningHours("Give both opens_at and closes_at, or both null for around the clock.")
    if opens_at is not None and opens_at == closes_at:
        raise InvalidOpeningHours("opens_at and closes_at are equal: use null for both to open around the clock.")
    before = {"opens_at": _hhmm(station.opens_at), "closes_at": _hhmm(station.closes_at)}
    station.opens_at, station.closes_at = opens_at, closes_at
    after = {"opens_at": _hhmm(opens_at), "closes_at": _hhmm(closes_at)}
    if after != before:
        audit(session, now, user, "hours.update", "station", station.id, _reason(reason, required=False),
              before=before, after=after, station_id=station.id)
    session.flush()
    return after


# -- maintenance windows --------------------------------------------------------------


def _window_dict(w: m.MaintenanceWindow, station: m.Station) -> dict:
    return {"id": w.id, "starts_at": w.starts_at, "ends_at": w.ends_at, "reason": w.reason, "tz": station.timezone}


def list_maintenance(session: Session, now: datetime, user: m.User, code: str,
                     include_past: bool = False) -> list[dict]:
    """The station's maintenance windows by start: current and future ones, or all with ``include_past``."""
    station = managed_station(session, user, code)
    q = select(m.MaintenanceWindow).where(m.MaintenanceWindow.station_id == station.id)
    if not include_past:
        q = q.where(m.MaintenanceWindow.ends_at > now)
    return [_window_dict(w, station) for w in session.scalars(q.order_by(m.MaintenanceWindow.starts_at))]


def add_maintenance(session: Session, now: datetime, user: m.User, code: str, starts_at: datetime,
                    ends_at: datetime, reason: str) -> dict:
    """Add a maintenance window [starts_at, ends_at) (aware); no new bookings may overlap it.

    Active bookings (booked, held, waiting) overlapping it become disrupted, their
    holds are cancelled and their drivers told. Returns the window with
    ``disrupted_booking_ids``.
    """
    station = managed_station(session, user, code)
    why = _reason(reason)
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidMaintenanceWindow("Give starts_at and ends_at with their UTC offset.")
    if ends_at <= starts_at:
        raise InvalidMaintenanceWindow("ends_at must be after starts_at.", field="ends_at")
    if ends_at <= now:
        raise InvalidMaintenanceWindow("That window has already ended.", field="ends_at")
    window = m.MaintenanceWindow(station_id=station.id, starts_at=starts_at, ends_at=ends_at, reason=why)
    session.add(window)
    session.flush()
    disrupted = booking_service.disrupt_for_maintenance(session, now, station, window)
    audit(session, now, user, "maintenance.create", "maintenance_window", window.id, why,
          after={"starts_at": _iso(starts_at), "ends_at": _iso(ends_at), "disrupted_booking_ids": disrupted},
          station_id=station.id)
    session.flush()
    return {**_window_dict(window, station), "disrupted_booking_ids": disrupted}


def delete_maintenance(session: Session, now: datetime, user: m.User, code: str, window_id: int,
                       reason: str = "") -> None:
    """Remove a current or future maintenance window; one that has ended is history (MaintenanceWindowOver)."""
    station = managed_station(session, user, code)
    window = session.get(m.MaintenanceWindow, window_id)
    if window is None or window.station_id != station.id:
        raise MaintenanceWindowNotFound(f"No maintenance window {window_id} at {station.code}.")
    if window.ends_at <= now:
        raise MaintenanceWindowOver()
    audit(session, now, user, "maintenance.delete", "maintenance_window", window.id,
          _reason(reason, required=False) or window.reason,
          before={"starts_at": _iso(window.starts_at), "ends_at": _iso(window.ends_at), "reason": window.reason},
          station_id=station.id)
    session.delete(window)
    session.flush()


# -- tariffs --------------------------------------------------------------------------

TARIFF_FIELDS = ("effective_from", "periods", "peak_price", "flat_price", "valley_price", "service_fee",
                 "idle_grace_minutes", "idle_fee_per_minute_fen", "idle_fee_cap_fen", "parking_block_fen",
                 "parking_daily_cap_fen")


def _tariff_dict(t: m.TariffVersion, station: m.Station) -> dict:
    out = {k: getattr(t, k) for k in TARIFF_FIELDS}
    return {**out, "id": t.id, "currency": t.currency, "created_at": t.created_at, "tz": station.timezone}



def list_tariffs(session: Session, user: m.User, code: str) -> list[dict]:
    """Every tariff version of the station, oldest effective_from first (the price history)."""
    station = managed_station(session, user, code)
    return [_tariff_dict(t, station) for t in tariffs.tariff_versions(session, station)]


def add_tariff(session: Session, now: datetime, user: m.User, code: str, reason: str = "", **fields) -> dict:
    """Add a tariff version from ``effective_from`` (aware, not before ``now``; prices 1/10,000 CNY per kWh,
    fees fen; fields left out are inherited). Raises tariffs.TariffInThePast, TariffVersionExists, InvalidTariff."""
    station = managed_station(session, user, code)
    version = tariffs.add_tariff_version(session, now, station, **fields)
    session.flush()
    out = _tariff_dict(version, station)
    audit(session, now, user, "tariff.create", "tariff_version", version.id, _reason(reason, required=False),
          after={k: (_iso(v) if isinstance(v, datetime) else v) for k, v in out.items()
                 if k in TARIFF_FIELDS}, station_id=station.id)
    session.flush()
    return out


# -- fix-ups: receipts, sessions, plates ----------------------------------------------


def _receipt_dict(r: m.Receipt, station: m.Station) -> dict:
    return {
        "id": r.id, "kind": r.kind, "corrects_id": r.corrects_id, "session_id": r.session_id,
        "stay_id": r.stay_id, "energy_wh": r.energy_wh, "energy_fen": r.energy_fen,
        "service_fen": r.service_fen, "idle_fen": r.idle_fen, "parking_fen": r.parking_fen,
        "total_fen": r.total_fen, "currency": r.currency, "explanation": r.explanation,
        "explanation_lines": r.explanation_lines,
        "issued_at": r.issued_at, "superseded": r.superseded, "tz": station.timezone,
    }


def _managed_receipt(session: Session, user: m.User, receipt_id: int) -> tuple[m.Receipt, m.Station]:
    return _managed(session, user, "receipt_id", receipt_id)


def waive_fee(session: Session, now: datetime, user: m.User, receipt_id: int, reason: str,
              component: str | None = None) -> dict:
    """Waive a receipt's fee (one component, or all): receipts.waive_fee issues the correction and audits it."""
    _, station = _managed_receipt(session, user, receipt_id)
    correction = receipts.waive_fee(session, now, user, receipt_id, _reason(reason), component)
    session.flush()
    return _receipt_dict(correction, station)


def correct_fee(session: Session, now: datetime, user: m.User, receipt_id: int, reason: str,
                **component_fen: int) -> dict:
    """Correct some components of a receipt (fen, >= 0): receipts.correct_fee issues the correction and audits it."""
    _, station = _managed_receipt(session, user, receipt_id)
    correction = receipts.correct_fee(session, now, user, receipt_id, _reason(reason), **component_fen)
    session.flush()
    return _receipt_dict(correction, station)


def _session_dict(cs: m.ChargingSession, station: m.Station) -> dict:
    return {
        "id": cs.id, "charger": cs.charger.code, "transaction_id": cs.transaction_id,
        "started_at": cs.started_at, "stopped_at": cs.stopped_at, "closed_by": cs.closed_by,
        "flags": list(cs.flags or []), "tz": station.timezone,
    }


def close_session(session: Session, now: datetime, user: m.User, session_id: int, reason: str,
                  at: datetime | None = None) -> dict:
    """Close a stuck charging session at ``at`` (default ``now``; not before its start nor in the future); audited."""
    cs, station = _managed(session, user, "session_id", session_id)
    why = _reason(reason)
    before = {"stopped_at": _iso(cs.stopped_at), "closed_by": cs.closed_by}
    charging.close_stuck_session(session, session_id=cs.id, at=at or now, now=now)
    audit(session, now, user, "session.close", "charging_session", cs.id, why, before=before,
          after={"stopped_at": _iso(cs.stopped_at), "closed_by": cs.closed_by}, station_id=station.id)
    session.flush()
    return _session_dict(cs, station)


def _stay_dict(stay: m.ParkingStay, station: m.Station, rechecked: m.Receipt | None = None) -> dict:
    return {
        "id": stay.id, "plate": stay.plate, "entry_at": stay.entry_at, "exit_at": stay.exit_at,
        "flags": list(stay.flags or []), "settled_at": stay.settled_at, "tz": station.timezone,
        "correction_receipt_id": rechecked.id if isinstance(rechecked, m.Receipt) else None,
    }


def parking_receipt(session: Session, stay: m.ParkingStay) -> m.Receipt | None:
    """The parking receipt issued for a stay (the latest one), or None before settling."""
    return session.scalar(select(m.Receipt).where(m.Receipt.stay_id == stay.id, m.Receipt.kind == "parking")
                          .order_by(m.Receipt.id.desc()).limit(1))


def fix_plate(session: Session, now: datetime, user: m.User, stay_id: int, plate: str, reason: str) -> dict:
    """Fix a misread plate on a parking stay: normalised (gates.normalise_plate), flagged "plate_fixed",
    audited with before/after; if its parking receipt was issued, receipts.recheck issues any correction.

    The same plate again changes nothing (no audit entry); an anonymised stay is refused (StayAnonymised).
    """
    stay, station = _managed(session, user, "stay_id", stay_id)
    why = _reason(reason)
    if "anonymised" in (stay.flags or []):
        raise StayAnonymised()
    new_plate = gates.normalise_plate(plate)
    if new_plate == stay.plate:
        return _stay_dict(stay, station)
    old_plate = stay.plate
    stay.plate = new_plate
    if "plate_fixed" not in (stay.flags or []):
        stay.flags = [*(stay.flags or []), "plate_fixed"]  # reassigned so the JSON column is seen as changed
    session.flush()
    audit(session, now, user, "stay.fix_plate", "parking_stay", stay.id, why,
          before={"plate": old_plate}, after={"plate": new_plate}, station_id=station.id)
    receipt = parking_receipt(session, stay)
    rechecked = receipts.recheck(session, now, receipt) if receipt is not None else None
    session.flush()
    return _stay_dict(stay, station, rechecked)


# -- dead letters and the audit log ---------------------------------------------------


def _page(q, id_col, limit: int, before_id: int | None):
    limit = max(1, min(int(limit), PAGE_MAX))
    if before_id is not None:
        q = q.where(id_col < before_id)
    return q.order_by(id_col.desc()).limit(limit), limit


def _next(rows: list, limit: int) -> int | None:
    return rows[-1].id if len(rows) == limit else None


# -- a station's receipts, sessions and stays, for the dashboard's lists ----------------------------------


def open_sessions(session: Session, now: datetime, station: m.Station) -> list[dict]:
    """The station's open charging sessions, oldest first, with how long each has been open and whether
    that is longer than STUCK_SESSION_AFTER."""
    rows = session.scalars(
        select(m.ChargingSession).where(m.ChargingSession.station_id == station.id,
                                        m.ChargingSession.closed_by.is_(None))
        .order_by(m.ChargingSession.started_at, m.ChargingSession.id)
    ).all()
    return [{"id": cs.id, "charger": cs.charger.code, "transaction_id": cs.transaction_id,
             "started_at": cs.started_at,
             "open_seconds": (now - cs.started_at).total_seconds() if cs.started_at else None,
             "stuck": cs.started_at is not None and now - cs.started_at >= STUCK_SESSION_AFTER} for cs in rows]


def closed_sessions(session: Session, station: m.Station, limit: int = 50,
                    before_id: int | None = None) -> tuple[list[m.ChargingSession], int | None]:
    """The station's closed sessions, newest first: a page and the id to ask the next one before."""
    q, limit = _page(select(m.ChargingSession).where(m.ChargingSession.station_id == station.id,
                                                     m.ChargingSession.closed_by.is_not(None)),
                     m.ChargingSession.id, limit, before_id)
    rows = list(session.scalars(q))
    return rows, _next(rows, limit)


def station_receipts(session: Session, station: m.Station, wanted: str | None = None, limit: int = 50,
                     before_id: int | None = None) -> tuple[list[m.Receipt], int | None]:
    """The station's receipts, newest first; ``wanted`` a receipt number or a stay's plate."""
    q = select(m.Receipt).where(m.Receipt.station_id == station.id)
    if wanted:
        stays = select(m.ParkingStay.id).where(m.ParkingStay.station_id == station.id,
                                               m.ParkingStay.plate == wanted.upper().replace(" ", ""))
        match = [m.Receipt.stay_id.in_(stays)]
        if re.fullmatch(r"[0-9]{1,10}", wanted) and int(wanted) <= 2**31 - 1:
            match.append(m.Receipt.id == int(wanted))
        q = q.where(or_(*match))
    q, limit = _page(q, m.Receipt.id, limit, before_id)
    rows = list(session.scalars(q))
    return rows, _next(rows, limit)


def station_stays(session: Session, station: m.Station, plate: str | None = None, limit: int = 50,
                  before_id: int | None = None) -> tuple[list[m.ParkingStay], int | None]:
    """The station's parking stays, newest first; ``plate`` (part of one) narrows them."""
    q = select(m.ParkingStay).where(m.ParkingStay.station_id == station.id)
    if plate:
        q = q.where(m.ParkingStay.plate.contains(plate.upper().replace(" ", ""), autoescape=True))
    q, limit = _page(q, m.ParkingStay.id, limit, before_id)
    rows = list(session.scalars(q))
    return rows, _next(rows, limit)


def _of_station(session: Session, model, row_id: int, station: m.Station, not_found):
    row = session.get(model, row_id)
    if row is None or row.station_id != station.id:
        raise not_found
    return row


def station_receipt(session: Session, station: m.Station, receipt_id: int) -> m.Receipt:
    return _of_station(session, m.Receipt, receipt_id, station, receipts.ReceiptNotFound(f"No receipt {receipt_id}."))


def station_session(session: Session, station: m.Station, session_id: int) -> m.ChargingSession:
    return _of_station(session, m.ChargingSession, session_id, station,
                       charging.ChargingSessionNotFound(f"No charging session {session_id}."))


def station_stay(session: Session, station: m.Station, stay_id: int) -> m.ParkingStay:
    return _of_station(session, m.ParkingStay, stay_id, station, StayNotFound(f"No parking stay {stay_id}."))


def receipt_chain(session: Session, receipt: m.Receipt) -> list[m.Receipt]:
    """A receipt's original and its corrections, oldest first."""
    root = receipt
    while root.corrects_id is not None:
        root = session.get(m.Receipt, root.corrects_id)
    if root.kind == "charging":
        match = m.Receipt.session_id == root.session_id
    else:
        match = (m.Receipt.stay_id == root.stay_id) & m.Receipt.session_id.is_(None)
    return list(session.scalars(select(m.Receipt).where(match, m.Receipt.station_id == root.station_id)
                                .order_by(m.Receipt.id)))


def dead_letter_drops(session: Session, user: m.User, station_code: str, now: datetime,
                      retention: timedelta | None) -> dict:
    """What the hourly cap dropped (counted, not stored) for the station's devices within ``retention`` before
    ``now`` (None: all that is kept): the total and the devices that dropped most (services.dead_letters)."""
    station = managed_station(session, user, station_code)
    since = now - retention if retention else datetime(2000, 1, 1, tzinfo=now.tzinfo)
    return dead_letter_bounds.dropped(session, station.code, since)


def dead_letters(session: Session, user: m.User, station_code: str | None = None, limit: int = 50,
                 before_id: int | None = None) -> dict:
    """Dead-lettered messages, newest first, ``limit`` (1..200) per page before ``before_id``.

    A manager sees those of their stations; an administrator also those of no
    known station. The payload is shown as UTF-8 text, undecodable bytes replaced.
    """
    q = select(m.DeadLetter)
    if station_code is not None:
        q = q.where(m.DeadLetter.station_code == managed_station(session, user, station_code).code)
    elif user.role != "admin":
        q = q.where(m.DeadLetter.station_code.in_([s.code for s in managed_stations(session, user)]))
    q, limit = _page(q, m.DeadLetter.id, limit, before_id)
    rows = list(session.scalars(q))
    return {"items": [{
        "id": d.id, "received_at": d.received_at, "topic": d.topic, "reason": d.reason, "detail": d.detail,
        "station": d.station_code, "payload": bytes(d.payload or b"").decode("utf-8", errors="replace"),
        "payload_bytes": len(d.payload or b""),
    } for d in rows], "next_before": _next(rows, limit)}


def audit_log(session: Session, user: m.User, station_code: str | None = None, limit: int = 50,
              before_id: int | None = None) -> dict:
    """Audit entries, newest first, ``limit`` (1..200) per page before ``before_id``.

    A manager sees the entries of their stations; an administrator all, including network-wide ones.
    """
    q = select(m.AuditEntry)
    if station_code is not None:
        q = q.where(m.AuditEntry.station_id == managed_station(session, user, station_code).id)
    elif user.role != "admin":
        q = q.where(m.AuditEntry.station_id.in_([s.id for s in managed_stations(session, user)]))
    q, limit = _page(q, m.AuditEntry.id, limit, before_id)
    rows = list(session.scalars(q))
    users = {u.id: u for u in session.scalars(
        select(m.User).where(m.User.id.in_({e.user_id for e in rows if e.user_id is not None})))}
    stations = {s.id: s for s in session.scalars(
        select(m.Station).where(m.Station.id.in_({e.station_id for e in rows if e.station_id is not None})))}
    items = []
    for e in rows:
        st, who = stations.get(e.station_id), users.get(e.user_id)
        items.append({
            "id": e.id, "at": e.at, "user_id": e.user_id, "user_email": who.email if who else None,
            "user_name": who.name if who else None, "station": st.code if st else None,
            "action": e.action, "target_type": e.target_type, "target_id": e.target_id,
            "reason": e.reason, "before": e.before, "after": e.after,
            "tz": st.timezone if st else "UTC",
        })
    return {"items": items, "next_before": _next(rows, limit)}
