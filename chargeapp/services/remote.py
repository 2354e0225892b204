"""Start and stop charging from the app, for drivers without a card.

A request only puts a ``remote_start`` or ``remote_stop`` command in the outbox
(``services.common.enqueue_command``); the MQTT bridge alone sends it, and the
charger's own transaction messages then record the session as for a card. The
checks here keep a driver from starting on a charger someone else is using or
that is held for someone else's booking, and from stopping anyone's session but
their own. The driver's charger page uses them (web/pages/driver.py); an API route
for the same would call them too. Functions flush; the caller commits.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.booking import BookingStatus
from chargeapp.domain.errors import Conflict, InvalidRequest
from chargeapp.services.charging import ChargingSessionNotFound, SessionNotOpen
from chargeapp.services.common import charger_by_code, enqueue_command, station_by_code

# A second tap within this time returns the first command instead of sending another.
REPEAT_WINDOW = timedelta(seconds=60)
STARTABLE = ("Available", "Preparing")


class ChargerOffline(Conflict):
    """The charger is offline: start with your card or use another charger."""

    code = "charger_offline"


class ChargerOutOfService(Conflict):
    """The charger is out of service: please use another one."""

    code = "charger_out_of_service"


class ChargerBusy(Conflict):
    """The charger is in use: please use another one."""

    code = "charger_busy"


class ChargerHeldForBooking(Conflict):
    """The charger is held for another driver's booking: please use another one."""

    code = "charger_held_for_booking"


class NoIdTag(InvalidRequest):
    """Your account has no charging tag yet: ask the station staff."""

    code = "no_id_tag"


def _held_booking(session: Session, charger: m.Charger) -> m.Booking | None:
    return session.scalar(select(m.Booking).where(
        m.Booking.charger_id == charger.id, m.Booking.status == BookingStatus.HELD.value))


def _app_tag(session: Session, user: m.User) -> str:
    tags = session.scalars(select(m.IdTag.tag).where(m.IdTag.user_id == user.id).order_by(m.IdTag.tag)).all()
    if not tags:
        raise NoIdTag()
    app_tags = [t for t in tags if t.startswith("APP-")]
    return (app_tags or tags)[0]


def start_state(session: Session, user: m.User | None, charger: m.Charger) -> str | None:
    """Why ``user`` cannot start on ``charger`` now (an error code), or None when they can."""
    if not charger.in_service:
        return ChargerOutOfService.code
    if not charger.online:
        return ChargerOffline.code
    status = charger.connectors[0].status if charger.connectors else "Unavailable"
    held = _held_booking(session, charger)
    if held is not None and (user is None or held.driver_id != user.id):
        return ChargerHeldForBooking.code
    if status not in STARTABLE and not (status == "Reserved" and held is not None):
        return ChargerBusy.code
    return None


def request_remote_start(session: Session, now: datetime, user: m.User, station_code: str,
                         charger_code: str) -> m.CommandOutbox:
    """Queue ``remote_start`` on connector 1 with the driver's app tag; flushes, the caller commits.

    Refused when the charger is out of service, offline, in use, or held for another
    driver's booking. A repeat within a minute returns the pending command.
    """
    station = station_by_code(session, station_code)
    charger = charger_by_code(session, station, charger_code)
    reason = start_state(session, user, charger)
    errors = {c.code: c for c in (ChargerOutOfService, ChargerOffline, ChargerHeldForBooking, ChargerBusy)}
    if reason is not None:
        raise errors[reason]()
    tag = _app_tag(session, user)
    recent = session.scalar(select(m.CommandOutbox).where(
        m.CommandOutbox.charger_id == charger.id, m.CommandOutbox.name == "remote_start",
        m.CommandOutbox.created_at >= now - REPEAT_WINDOW,
        m.CommandOutbox.status.in_(["pending", "sent"]),
    ).order_by(m.CommandOutbox.id.desc()))
    if recent is not None and recent.payload.get("id_tag") == tag:
        return recent
    held = _held_booking(session, charger)
    cmd = enqueue_command(session, charger, "remote_start", {"connector": 1, "id_tag": tag}, now,
                          held if held is not None and held.driver_id == user.id else None)
    session.flush()
    return cmd


def request_remote_stop(session: Session, now: datetime, user: m.User, session_id: int) -> m.CommandOutbox:
    """Queue ``remote_stop`` of the driver's own open session; another driver's session is not found."""
    cs = session.get(m.ChargingSession, session_id)
    if cs is None or cs.driver_id != user.id:
        raise ChargingSessionNotFound()
    if cs.closed_by is not None or cs.stopped_at is not None or cs.started_at is None:
        raise SessionNotOpen()
    recent = session.scalar(select(m.CommandOutbox).where(
        m.CommandOutbox.charger_id == cs.charger_id, m.CommandOutbox.name == "remote_stop",
        m.CommandOutbox.created_at >= now - REPEAT_WINDOW,
        m.CommandOutbox.status.in_(["pending", "sent"]),
    ).order_by(m.CommandOutbox.id.desc()))
    if recent is not None and recent.payload.get("transaction_id") == cs.transaction_id:
        return recent
    cmd = enqueue_command(session, cs.charger, "remote_stop", {"transaction_id": cs.transaction_id}, now)
    session.flush()
    return cmd


def open_session_on(session: Session, user: m.User, charger: m.Charger) -> m.ChargingSession | None:
    """The driver's open session on this charger, if any."""
    return session.scalar(select(m.ChargingSession).where(
        m.ChargingSession.charger_id == charger.id, m.ChargingSession.driver_id == user.id,
        m.ChargingSession.closed_by.is_(None), m.ChargingSession.stopped_at.is_(None),
        m.ChargingSession.started_at.is_not(None),
    ).order_by(m.ChargingSession.id.desc()))
