"""Small helpers every service shares: lookups, rule objects from the database,
notifications, the command outbox and the audit log."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, scoped_session

from chargeapp.db import models as m
from chargeapp.domain.booking import BookingRules, OpeningHours
from chargeapp.domain.errors import NotFound
from chargeapp.domain.intervals import Interval


class StationNotFound(NotFound):
    """No such station."""

    code = "station_not_found"


class ChargerNotFound(NotFound):
    """No such charger at this station."""

    code = "charger_not_found"


_STATION_IDS = "chargeapp.station_ids"
_STATION_BY_CODE = select(m.Station).where(m.Station.code == bindparam("code"))


def station_by_code(session: Session, code: str) -> m.Station:
    """The station with this code, or StationNotFound.

    The session remembers each code's id, so a station already in its identity
    map (the bridge pins a batch's stations) is answered without a query: every
    telemetry message looks its station up, and the lookup was a sixth of a
    meter sample's cost. The row is still the session's (expired after a
    commit, reloaded on access); a code whose station went away, or now names
    another station, is looked up again.
    """
    ids = session.info.setdefault(_STATION_IDS, {})
    station_id = ids.get(code)
    if station_id is not None:
        station = session.get(m.Station, station_id)
        if station is not None and station.code == code:
            return station
        ids.pop(code, None)
    station = session.scalar(_STATION_BY_CODE, {"code": code})
    if station is None:
        raise StationNotFound(f"No station '{code}'.")
    ids[code] = station.id
    return station


def commit_and_keep(session: Session) -> None:
    """Commit without expiring what the session holds: for a request that answers with the rows it just wrote.

    A plain commit expires every loaded object, so serialising the answer reloads
    the booking (and its charger's connectors) in a second transaction, on SQLite
    a second turn of the one write lock for a POST, only to read back what was
    just written. Kept, the answer shows the rows as this transaction committed
    them. The session's next commit or rollback expires as usual; do not use it
    where the session lives on and must see other transactions' changes (the
    bridge's), only where it ends with the request. Services do not commit (chargeapp/web/transaction.py):
    this is for the web edge (``transaction(keep=True)``) and ``booking.book_slot``, the one exception.
    """
    target = session() if isinstance(session, scoped_session) else session
    expire, target.expire_on_commit = target.expire_on_commit, False
    try:
        target.commit()
    finally:
        target.expire_on_commit = expire


_ROW_IDS = "chargeapp.row_ids"
_LOCKED_ROWS = "chargeapp.locked_rows"


def locked_row(session: Session, model, station_id: int, code: str):
    """The row of ``model`` with this code at the station, current and locked for the rest of the transaction;
    None if there is none.

    PostgreSQL (read committed): the row is locked (``FOR UPDATE``) and read again, since a copy in the
    identity map (the bridge pins a batch's devices) may predate another worker's commit, and writing from it
    would undo that commit; once per transaction, since the lock is then held until its end (a rolled-back
    SAVEPOINT releases the locks taken after it, so it forgets them all). SQLite: every writing transaction
    begins IMMEDIATE (chargeapp/app.py), holding the database's one write lock from its start, so a row read
    in it is current and stays so, and the rows of earlier transactions were expired at their end: no lock
    statement and no re-read. Either way the id of a (station, code) is remembered in the session (checked on
    use), as ``station_by_code`` does.
    """
    ids = session.info.setdefault(_ROW_IDS, {})
    key = (model.__tablename__, station_id, code)
    row_id = ids.get(key)
    postgres = session.get_bind().dialect.name == "postgresql"
    if row_id is not None:
        locked = session.info.setdefault(_LOCKED_ROWS, set())
        if not postgres or (model.__tablename__, row_id) in locked:
            row = session.get(model, row_id)
        elif session.scalar(select(model.id).where(model.id == row_id).with_for_update()) is not None:
            row = session.get(model, row_id, populate_existing=True)
            locked.add((model.__tablename__, row_id))
        else:
            row = None
        if row is not None and row.station_id == station_id and row.code == code:
            return row
        ids.pop(key, None)
    query = select(model.id).where(model.station_id == station_id, model.code == code)
    row_id = session.scalar(query.with_for_update() if postgres else query)
    if row_id is None:
        return None
    ids[key] = row_id
    if postgres:
        session.info.setdefault(_LOCKED_ROWS, set()).add((model.__tablename__, row_id))
        return session.get(model, row_id, populate_existing=True)
    return session.get(model, row_id)


@event.listens_for(Session, "after_soft_rollback")
def _forget_locks_on_rollback(session: Session, previous_transaction) -> None:
    session.info.pop(_LOCKED_ROWS, None)  # a SAVEPOINT rolled back released the locks taken in it: all forgotten


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_LOCKED_ROWS, None)


def charger_by_code(session: Session, station: m.Station, code: str) -> m.Charger:
    """The charger ``code`` of the station, or ChargerNotFound."""
    charger = session.scalar(
        select(m.Charger).where(m.Charger.station_id == station.id, m.Charger.code == code)
    )
    if charger is None:
        raise ChargerNotFound(f"No charger '{code}' at {station.code}.")
    return charger


def may_manage(user: m.User, station_id: int) -> bool:
    """Managers are scoped to their stations; an administrator sees all; a driver none."""
    return user.role == "admin" or (user.role == "manager" and any(s.id == station_id for s in user.stations))


def station_tz(station: m.Station) -> ZoneInfo:
    return ZoneInfo(station.timezone)


def rules_of(station: m.Station) -> m.StationRules:
    """The station's rules row (defaults when none was stored yet)."""
    return station.rules or m.StationRules(station_id=station.id, **_column_defaults(m.StationRules))


def _column_defaults(model) -> dict:
    out = {}
    for col in model.__table__.columns:
        if col.default is not None and not callable(col.default.arg):
            out[col.key] = col.default.arg
    out.pop("station_id", None)
    return out


def booking_rules(station: m.Station) -> BookingRules:
    """The pure BookingRules of a station, from its stored rules."""
    r = rules_of(station)
    return BookingRules(
        slot=timedelta(minutes=r.slot_minutes),
        horizon=timedelta(minutes=r.booking_horizon_minutes),
        hold_lead=timedelta(minutes=r.hold_lead_minutes),
        checkin_before=timedelta(minutes=r.checkin_before_minutes),
        checkin_grace=timedelta(minutes=r.checkin_grace_minutes),
        no_show_limit=r.no_show_limit,
        no_show_window=timedelta(days=r.no_show_window_days),
        suspension=timedelta(days=r.suspension_days),
        walkin_reserved_fast=r.walkin_reserved_fast,
        fault_lookahead=timedelta(minutes=r.fault_lookahead_minutes),
    )


def opening_hours(station: m.Station) -> OpeningHours:
    return OpeningHours(station.opens_at, station.closes_at)


def maintenance_windows(session: Session, station: m.Station, start: datetime, end: datetime) -> list[Interval]:
    """Maintenance windows of the station overlapping [start, end)."""
    rows = session.scalars(
        select(m.MaintenanceWindow).where(
            m.MaintenanceWindow.station_id == station.id,
            m.MaintenanceWindow.starts_at < end,
            m.MaintenanceWindow.ends_at > start,
        )
    )
    return [Interval(w.starts_at, w.ends_at) for w in rows]


def notify(session: Session, user_id: int, kind: str, message: str, now: datetime,
           booking: m.Booking | None = None, *, code: str | None = None, params: dict | None = None,
           **data) -> m.Notification:
    """Tell a driver something in the app (a row in their notification list).

    ``message`` is the English sentence kept for the API's ``message`` field; ``code`` and
    ``params`` (station-local times as text, money in fen) are what the pages and the API
    render in the reader's language (chargeapp.web.messages).
    """
    n = m.Notification(user_id=user_id, kind=kind, message=message, created_at=now,
                       booking_id=booking.id if booking is not None else None, data=data,
                       code=code, params=params)
    session.add(n)
    return n


def new_request_id() -> str:
    return uuid.uuid4().hex


def enqueue_command(session: Session, charger: m.Charger, name: str, payload: dict, now: datetime,
                    booking: m.Booking | None = None) -> m.CommandOutbox:
    """Put a command for a charger in the outbox; the MQTT bridge alone sends it."""
    request_id = new_request_id()
    cmd = m.CommandOutbox(
        request_id=request_id, station_id=charger.station_id, charger_id=charger.id, name=name,
        payload={**payload, "request_id": request_id}, created_at=now,
        booking_id=booking.id if booking is not None else None,
    )
    session.add(cmd)
    return cmd


def audit(session: Session, now: datetime, user: m.User | None, action: str, target_type: str,
          target_id: int | None, reason: str, before: dict | None = None, after: dict | None = None,
          station_id: int | None = None) -> m.AuditEntry:
    """Record who changed what and why."""
    entry = m.AuditEntry(at=now, user_id=user.id if user else None, action=action,
                         target_type=target_type, target_id=target_id, reason=reason,
                         before=before, after=after, station_id=station_id)
    session.add(entry)
    return entry


def local_hhmm(at: datetime, tz: ZoneInfo) -> str:
    """``HH:MM`` in the station's time zone."""
    return at.astimezone(tz).strftime("%H:%M")
