"""Charger telemetry: connector status history, transactions (charging sessions),
meter readings, and the queries the live view and the driver's history need.

Every ``record_*`` function is applied once per telemetry message by the MQTT
bridge, with the already validated device time ``at``, and is idempotent: the
same message applied twice (QoS 1 redelivery, retained status replayed on
reconnect) has one effect. Messages may arrive out of order; the results do not
depend on the order they arrive in. Functions take a session and never commit.

Decisions (docs/rules.md, "Charger telemetry"):

- Status history records *transitions*: a status is appended only when it
  differs (status or error code) from the state in effect at its ``at``, so a
  retained replay or a periodic repeat adds nothing. A status older than the
  connector's current one goes to history only.
- ``Connector.status_at`` is when the current state began (a repeat does not move it): the first report after
  the newest report of another state in the history, so it does not depend on the order reports arrive in.
- A session is open until a stop, a later start on the same connector, or the
  connector reporting Available after its start; ``closed_by`` says which. A
  close inferred from a start or an Available moves to an earlier one that
  arrives late; a stop or a manager's close is never moved by them. A stop that
  arrives after another close replaces it (the charger's own stop is the better
  record) and flags the session ``late_stop``.
- Rebooking is asked for once per outage: on the change from an in-service state
  to Faulted or Unavailable (Faulted -> Unavailable does not ask again).
- Halves that arrive first create the row (flags ``stop_without_start`` /
  ``meter_without_start``); the start fills it later and no flag is dropped.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, lazyload

from chargeapp.db import models as m
from chargeapp.domain.charger import ConnectorStatus, as_status, is_out_of_service
from chargeapp.domain.errors import Conflict, InvalidRequest, NotFound
from chargeapp.services import booking
from chargeapp.services import rollups  # noqa: F401  (its flush listener marks rolled-up report days dirty)
from chargeapp.services.common import ChargerNotFound, locked_row, station_by_code


class ConnectorNotFound(NotFound):
    """No such connector on this charger."""

    code = "connector_not_found"


class ChargingSessionNotFound(NotFound):
    """No such charging session."""

    code = "charging_session_not_found"


class InvalidTransactionEvent(InvalidRequest):
    """A transaction event is "start" or "stop"."""

    code = "invalid_transaction_event"


class SessionNotOpen(Conflict):
    """That charging session is already closed."""

    code = "session_not_open"


class InvalidCloseTime(InvalidRequest):
    """A session cannot be closed before it started, nor in the future."""

    code = "invalid_close_time"


# -- lookups ------------------------------------------------------------------


def _locked_charger(session: Session, station_code: str, charger_code: str) -> m.Charger:
    """The charger, with its row locked (PostgreSQL) so one charger's messages apply one at a time.

    Bridge workers share the load, so two messages of one charger (a start and its
    stop, or a redelivery) can be applied concurrently; the lock serialises them.
    """
    station = station_by_code(session, station_code)
    # Read again once locked (PostgreSQL): a copy loaded earlier in this transaction (the bridge pins a station's
    # chargers per batch) may predate another worker's commit, and writing from it would undo that commit (a
    # connector left at an older status; found by test_shared_subscription_kill). See common.locked_row.
    charger = locked_row(session, m.Charger, station.id, charger_code)
    if charger is None:
        raise ChargerNotFound(f"No charger '{charger_code}' at {station.code}.")
    return charger


def _connector(charger: m.Charger, number: int) -> m.Connector:
    for connector in charger.connectors:
        if connector.number == number:
            return connector
    raise ConnectorNotFound(f"No connector {number} on charger '{charger.code}'.", connector=number)


def _session_of(session: Session, charger: m.Charger, transaction_id: int) -> m.ChargingSession | None:
    # The charger is already in hand: do not join it (and its connectors) again per meter sample.
    return session.scalar(
        select(m.ChargingSession).options(lazyload(m.ChargingSession.charger), lazyload(m.ChargingSession.station))
        .where(
            m.ChargingSession.charger_id == charger.id,
            m.ChargingSession.transaction_id == transaction_id,
        )
    )


def _driver_for(session: Session, id_tag: str | None, reservation_id: int | None) -> int | None:
    """The driver of an id tag; when the tag is unknown, the driver of the booking the start consumed."""
    if id_tag:
        user_id = session.scalar(select(m.IdTag.user_id).where(m.IdTag.tag == id_tag))
        if user_id is not None:
            return user_id
    if reservation_id is not None:
        return session.scalar(select(m.Booking.driver_id).where(m.Booking.id == reservation_id))
    return None


def _add_flag(cs: m.ChargingSession, flag: str) -> None:
    # Reassign (not append) so the JSON column is seen as changed.
    if flag not in (cs.flags or []):
        cs.flags = [*(cs.flags or []), flag]


def _begin(session: Session, cs: m.ChargingSession) -> datetime | None:
    """When a session began: its start, or for a placeholder without start its first meter reading."""
    if cs.started_at is not None:
        return cs.started_at
    return session.scalar(select(func.min(m.MeterReading.at)).where(m.MeterReading.session_id == cs.id))


def _close(cs: m.ChargingSession, at: datetime, closed_by: str) -> None:
    cs.stopped_at = at
    cs.closed_by = closed_by


# Closes inferred from other messages; a stop or a manager's close is never moved by them.
_INFERRED_CLOSES = ("new_start", "available")


def _end_sessions_begun_before(session: Session, connector: m.Connector, at: datetime, closed_by: str,
                               keep: m.ChargingSession | None = None) -> int:
    """End at ``at`` the connector's sessions that began before ``at`` and are open (or were closed by a later
    inferred close: an earlier Available or start arriving late is the truer end); returns how many changed."""
    changed = 0
    candidates = session.scalars(
        select(m.ChargingSession)
        .where(
            # charger_id is implied by the connector, but only (charger_id, started_at) is indexed: without it
            # the database scans every session ever recorded (quadratic over a year of history).
            m.ChargingSession.charger_id == connector.charger_id,
            m.ChargingSession.connector_id == connector.id,
            (m.ChargingSession.closed_by.is_(None))
            | (m.ChargingSession.closed_by.in_(_INFERRED_CLOSES) & (m.ChargingSession.stopped_at > at)),
        )
        .order_by(m.ChargingSession.id)
    )
    for cs in list(candidates):
        if cs is keep:
            continue
        begun = _begin(session, cs)
        if begun is not None and begun < at:
            _close(cs, at, closed_by)
            changed += 1
    return changed


def _next_available_after(session: Session, connector: m.Connector, at: datetime) -> datetime | None:
    return session.scalar(
        select(func.min(m.StatusChange.at)).where(
            m.StatusChange.connector_id == connector.id,
            m.StatusChange.status == ConnectorStatus.AVAILABLE.value,
            m.StatusChange.at > at,
        )
    )


def _next_start_after(session: Session, connector: m.Connector, at: datetime,
                      exclude: m.ChargingSession) -> datetime | None:
    return session.scalar(
        select(func.min(m.ChargingSession.started_at)).where(
            m.ChargingSession.charger_id == connector.charger_id,  # the indexed column (see above)
            m.ChargingSession.connector_id == connector.id,
            m.ChargingSession.started_at > at,
            m.ChargingSession.id != exclude.id,
        )
    )


# -- status -----------------------------------------------------------------


def _state_at(session: Session, connector: m.Connector, at: datetime) -> m.StatusChange | None:
    """The history row in effect at ``at`` (the last one at or before it; same instant: the later row)."""
    return session.scalar(
        select(m.StatusChange)
        .where(m.StatusChange.connector_id == connector.id, m.StatusChange.at <= at)
        .order_by(m.StatusChange.at.desc(), m.StatusChange.id.desc())
        .limit(1)
    )


def record_status(session: Session, *, station_code: str, charger_code: str, connector: int, status: str,
                  error_code: str | None = "NoError", at: datetime, received_at: datetime | None = None,
                  device_ts: datetime | None = None, skewed: bool = False, now: datetime) -> bool:
    """Apply a connector status (OCPP 1.6 spelling) reported at device time ``at`` (aware); True if anything changed.

    History gets a row for every report but an exact duplicate (same status,
    error code and instant: a retained replay), repeats included: a repeat is what
    ends an older state that arrives late (Available 14:00, then Preparing 13:55
    arriving after Available 14:05 must not leave Preparing in force). Returns True
    when the report is a transition or moves the current state. The connector's
    current state moves only for ``at`` >= its newest report (``reported_at``). Becoming
    Faulted/Unavailable (from an in-service state) re-homes the charger's bookings;
    Available closes the connector's sessions begun before it (closed_by
    "available", stopped at ``at``).
    Raises StationNotFound, ChargerNotFound, ConnectorNotFound, InvalidStatusChange.
    """
    new_status = as_status(status).value
    error_code = error_code or "NoError"
    charger = _locked_charger(session, station_code, charger_code)
    conn = _connector(charger, connector)
    changed = False

    exact = session.scalar(
        select(m.StatusChange.id).where(
            m.StatusChange.connector_id == conn.id, m.StatusChange.at == at,
            m.StatusChange.status == new_status, m.StatusChange.error_code == error_code,
        )
    )
    if exact is None:
        previous = _state_at(session, conn, at)
        session.add(m.StatusChange(
            connector_id=conn.id, status=new_status, error_code=error_code, at=at,
            device_ts=device_ts, received_at=received_at, skewed=skewed,
        ))
        if previous is None or (previous.status, previous.error_code) != (new_status, error_code):
            changed = True

    became_out_of_service = False
    newest = conn.reported_at or conn.status_at
    if newest is None or at >= newest:
        conn.reported_at = at
        if conn.status_at is None or (conn.status, conn.error_code) != (new_status, error_code):
            was_out = is_out_of_service(conn.status) if conn.status_at is not None else False
            conn.status, conn.error_code, conn.status_at = new_status, error_code, at
            became_out_of_service = is_out_of_service(new_status) and not was_out
            changed = True
        elif exact is None and _move_status_at(session, conn):
            changed = True  # a repeat after other states that came late: the current state began later
    elif exact is None and _move_status_at(session, conn):
        changed = True  # a late report inside (or just before) the current state's run

    if new_status == ConnectorStatus.AVAILABLE.value:
        # Also for a late Available: it ends the sessions that began before it.
        if _end_sessions_begun_before(session, conn, at, "available"):
            changed = True

    session.flush()
    if became_out_of_service:
        booking.rehome_after_fault(session, now, charger)
    return changed


def _move_status_at(session: Session, connector: m.Connector) -> bool:
    """Set ``status_at`` to when the connector's current state began by the history (ordered by ``at``): the first
    report after the newest report of another state, whatever order they arrived in; True if it moved.

    With several bridge workers a charger's reports arrive out of order: Charging 14:00, then Charging 14:20 ahead
    of the Finishing/Available/Preparing between them, must end as "Charging since 14:20", not since 14:00.
    """
    session.flush()
    other = session.scalar(select(func.max(m.StatusChange.at)).where(
        m.StatusChange.connector_id == connector.id,
        (m.StatusChange.status != connector.status) | (m.StatusChange.error_code != connector.error_code),
    ))
    first = select(func.min(m.StatusChange.at)).where(m.StatusChange.connector_id == connector.id)
    since = session.scalar(first if other is None else first.where(m.StatusChange.at > other))
    if since is None or since == connector.status_at:
        return False
    connector.status_at = since
    return True


# -- transactions ---------------------------------------------------------------


def record_transaction(session: Session, *, station_code: str, charger_code: str, event: str, connector: int,
                       transaction_id: int, id_tag: str | None, meter_wh: int | None, at: datetime,
                       reservation_id: int | None = None, reason: str | None = None,
                       now: datetime) -> m.ChargingSession:
    """Apply a transaction start or stop at device time ``at`` (aware; meter in Wh); returns the session.

    One session per (charger, transaction_id); the same event twice is a no-op.
    A start closes the connector's other sessions begun before it
    (closed_by "new_start") and, when a later start or Available is already
    recorded, is itself closed by it. A stop without start creates the row
    flagged "stop_without_start". Both events then let the booking service check
    the driver in (a stop only while the session has no booking).
    Raises StationNotFound, ChargerNotFound, ConnectorNotFound, InvalidTransactionEvent.
    """
    if event not in ("start", "stop"):
        raise InvalidTransactionEvent(f"Unknown transaction event {event!r}.", event=str(event))
    charger = _locked_charger(session, station_code, charger_code)
    conn = _connector(charger, connector)
    cs = _session_of(session, charger, transaction_id)
    if event == "start":
        return _apply_start(session, charger, conn, cs, transaction_id, id_tag, meter_wh, at, reservation_id, now)
    return _apply_stop(session, charger, conn, cs, transaction_id, id_tag, meter_wh, at, reason, now)


def _new_session(charger: m.Charger, conn: m.Connector, transaction_id: int, flags: list[str]) -> m.ChargingSession:
    return m.ChargingSession(
        station_id=charger.station_id, charger_id=charger.id, connector_id=conn.id,
        transaction_id=transaction_id, flags=flags,
    )


def _apply_start(session, charger, conn, cs, transaction_id, id_tag, meter_wh, at, reservation_id, now):
    if cs is not None and cs.started_at is not None:
        return cs  # redelivered start
    if cs is None:
        cs = _new_session(charger, conn, transaction_id, [])
        session.add(cs)
    cs.started_at = at
    cs.start_meter_wh = meter_wh
    # The card that started the session is whose session it is (OCPP lets a stop carry
    # another card, e.g. a supervisor's), whichever of the two messages arrived first.
    cs.id_tag = id_tag or cs.id_tag
    if reservation_id is not None:
        cs.reservation_id = reservation_id
    cs.driver_id = _driver_for(session, cs.id_tag, reservation_id) or cs.driver_id
    if cs.stopped_at is not None and cs.stopped_at < at:
        _add_flag(cs, "stop_before_start")
    session.flush()

    _end_sessions_begun_before(session, conn, at, "new_start", keep=cs)
    if cs.closed_by is None:
        # A later start or Available may have been recorded before this (late) start.
        next_start = _next_start_after(session, conn, at, cs)
        next_available = _next_available_after(session, conn, at)
        ends = [(t, by) for t, by in ((next_start, "new_start"), (next_available, "available")) if t is not None]
        if ends:
            _close(cs, *min(ends))
    session.flush()
    booking.check_in_from_session(session, now, cs)
    return cs


def _apply_stop(session, charger, conn, cs, transaction_id, id_tag, meter_wh, at, reason, now):
    if cs is not None and cs.closed_by == "stop":
        return cs  # redelivered stop
    if cs is None:
        cs = _new_session(charger, conn, transaction_id, ["stop_without_start"])
        session.add(cs)
    elif cs.closed_by is not None:
        _add_flag(cs, "late_stop")  # it was closed by new_start/available/manager first
    if cs.started_at is None and "stop_without_start" not in (cs.flags or []):
        _add_flag(cs, "stop_without_start")  # a meter placeholder whose start never came
    _close(cs, at, "stop")
    cs.stop_meter_wh = meter_wh
    cs.stop_reason = reason
    cs.id_tag = cs.id_tag or id_tag
    if cs.driver_id is None:
        cs.driver_id = _driver_for(session, cs.id_tag, cs.reservation_id)
    if cs.started_at is not None and at < cs.started_at:
        _add_flag(cs, "stop_before_start")
    session.flush()
    has_booking = session.scalar(select(m.Booking.id).where(m.Booking.session_id == cs.id).limit(1))
    if has_booking is None:
        booking.check_in_from_session(session, now, cs)
    return cs


# -- meter ------------------------------------------------------------------------


def record_meter(session: Session, *, station_code: str, charger_code: str, connector: int, transaction_id: int,
                 energy_wh: int, power_w: int | None = None, soc: int | None = None, at: datetime,
                 now: datetime) -> m.MeterReading:
    """Store a meter sample (cumulative Wh, W, % SoC) of a transaction at device time ``at``; returns the reading.

    A second sample of the same session at the same instant is a no-op (the
    stored one is returned). An unknown transaction gets a placeholder session
    flagged "meter_without_start", filled by its start when that arrives.
    """
    charger = _locked_charger(session, station_code, charger_code)
    conn = _connector(charger, connector)
    cs = _session_of(session, charger, transaction_id)
    if cs is None:
        cs = _new_session(charger, conn, transaction_id, ["meter_without_start"])
        session.add(cs)
        session.flush()
    existing = session.scalar(
        select(m.MeterReading).where(m.MeterReading.session_id == cs.id, m.MeterReading.at == at)
    )
    if existing is not None:
        return existing
    reading = m.MeterReading(session_id=cs.id, at=at, energy_wh=energy_wh, power_w=power_w, soc=soc)
    session.add(reading)
    session.flush()
    return reading


# -- charger state and manager actions ---------------------------------------------


def set_charger_online(session: Session, *, station_code: str, charger_code: str, online: bool,
                       now: datetime) -> bool:
    """Record the charger's retained ``online`` flag (MQTT last will); True if it changed."""
    charger = _locked_charger(session, station_code, charger_code)
    if charger.online == bool(online):
        return False
    charger.online = bool(online)
    session.flush()
    return True


def close_stuck_session(session: Session, *, session_id: int, at: datetime, now: datetime) -> m.ChargingSession:
    """A manager closes an open session at ``at`` (aware, not before its start, not after ``now``); closed_by "manager".

    The caller writes the audit entry. Raises ChargingSessionNotFound, SessionNotOpen, InvalidCloseTime.
    """
    cs = session.get(m.ChargingSession, session_id)
    if cs is None:
        raise ChargingSessionNotFound(f"No charging session {session_id}.")
    if cs.closed_by is not None:
        raise SessionNotOpen(f"Session {session_id} was already closed ({cs.closed_by}).", closed_by=cs.closed_by)
    begun = _begin(session, cs)
    if at > now or (begun is not None and at < begun):
        raise InvalidCloseTime()
    _close(cs, at, "manager")
    session.flush()
    return cs


# -- queries -----------------------------------------------------------------------


def station_live(session: Session, station: m.Station) -> list[dict]:
    """Every charger of the station (by code) with its connectors' current status (status_at: UTC, when it began)."""
    chargers = session.scalars(
        select(m.Charger).where(m.Charger.station_id == station.id).order_by(m.Charger.code)
    )
    return [
        {
            "id": c.id, "code": c.code, "kind": c.kind, "level": c.level, "max_power_kw": c.max_power_kw,
            "online": c.online, "in_service": c.in_service,
            "connectors": [
                {"number": k.number, "status": k.status, "error_code": k.error_code, "status_at": k.status_at}
                for k in c.connectors
            ],
        }
        for c in chargers
    ]


def driver_sessions(session: Session, driver_id: int, limit: int = 20) -> list[m.ChargingSession]:
    """A driver's charging sessions, newest first (by start, or stop for a stop without start)."""
    began = func.coalesce(m.ChargingSession.started_at, m.ChargingSession.stopped_at)
    return list(session.scalars(
        select(m.ChargingSession)
        .where(m.ChargingSession.driver_id == driver_id)
        .order_by(began.desc(), m.ChargingSession.id.desc())
        .limit(limit)
    ))
