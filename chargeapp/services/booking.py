"""Booking use cases: book, cancel, the periodic hold/no-show work, check-in from a
charging session, and moving bookings off a broken charger.

Functions take a session and ``now`` and flush but do not commit, except
``book_slot``, which owns its transactions because it must retry a lost race
(the documented exception to the rule in chargeapp/web/transaction.py).
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain import booking as rules
from chargeapp.domain.booking import (
    ACTIVE, ActiveBookingExists, BookingNotCancellable, BookingNotFound, BookingStatus,
    ChargerCandidate, ChargerNow, DriverSuspended, IdempotencyKeyReused, SlotUnavailable,
)
from chargeapp.domain.intervals import Interval
from chargeapp.services.common import (
    booking_rules, charger_by_code, commit_and_keep, enqueue_command, local_hhmm, maintenance_windows, notify,
    opening_hours, station_by_code, station_tz,
)

HOLDING = [s for s in m.CHARGER_HOLDING_STATUSES]
ACTIVE_VALUES = [s.value for s in ACTIVE]


# -- queries ------------------------------------------------------------------


def _fast_candidates(station: m.Station) -> list[ChargerCandidate]:
    return [ChargerCandidate(c.id, c.code, c.kind == "fast", c.in_service) for c in station.chargers]


def booked_span(b: m.Booking) -> Interval:
    """The booking's own [slot_start, slot_end): it keeps its times when the station's grid changes."""
    return Interval(b.slot_start, b.slot_end)


def _holding_overlapping(station_id: int, span: Interval):
    """Bookings holding a charger at some moment of ``span`` (the condition the database's exclusion enforces)."""
    return (
        m.Booking.station_id == station_id, m.Booking.status.in_(HOLDING), m.Booking.charger_id.is_not(None),
        m.Booking.slot_start < span.end, m.Booking.slot_end > span.start,
    )


def _taken_ids(session: Session, station_id: int, span: Interval, exclude_booking: int | None = None) -> set[int]:
    """Chargers holding a booking whose time overlaps ``span``: not only equal starts, since bookings made
    before a grid change keep their times."""
    q = select(m.Booking.charger_id).where(*_holding_overlapping(station_id, span))
    if exclude_booking is not None:
        q = q.where(m.Booking.id != exclude_booking)
    return set(session.scalars(q))


def _chargers_now(station: m.Station) -> list[ChargerNow]:
    out = []
    for c in station.chargers:
        status = c.connectors[0].status if c.connectors else "Unavailable"
        out.append(ChargerNow(c.id, c.code, status, c.in_service, c.online, c.kind == "fast"))
    return out


def no_show_times(session: Session, driver_id: int) -> list[datetime]:
    """When the driver's bookings became no-shows (each counted once)."""
    return list(session.scalars(
        select(m.Booking.no_show_at).where(
            m.Booking.driver_id == driver_id, m.Booking.status == BookingStatus.NO_SHOW.value,
            m.Booking.no_show_at.is_not(None),
        )
    ))


def driver_suspended_until(session: Session, driver: m.User, now: datetime, station: m.Station) -> datetime | None:
    """End of the driver's booking suspension (network-wide) in force at ``now``, or None."""
    return rules.suspended_until(no_show_times(session, driver.id), now, booking_rules(station))


def late_hold(b: m.Booking) -> datetime | None:
    """When a delayed booking was finally held (its grace runs from then), else None."""
    return b.held_at if b.delay_started_at is not None else None


def get_booking(session: Session, booking_id: int, driver_id: int | None = None) -> m.Booking:
    """A booking by id; another driver's booking is reported as not found."""
    b = session.get(m.Booking, booking_id)
    if b is None or (driver_id is not None and b.driver_id != driver_id):
        raise BookingNotFound()
    return b


def driver_bookings(session: Session, driver_id: int, limit: int = 50) -> list[m.Booking]:
    return list(session.scalars(
        select(m.Booking).where(m.Booking.driver_id == driver_id)
        .order_by(m.Booking.slot_start.desc()).limit(limit)
    ))


def free_slots(session: Session, station: m.Station, day: date, now: datetime) -> list[dict]:
    """Bookable slots of a station-local day with how many fast chargers are still free in each."""
    tz, br = station_tz(station), booking_rules(station)
    day_starts = rules.day_slot_starts(day, tz, br)
    if not day_starts:
        return []
    windows = maintenance_windows(session, station, day_starts[0], day_starts[-1] + br.slot)
    starts = rules.bookable_slot_starts(day, now, tz, br, opening_hours(station), windows)
    if not starts:
        return []
    booked = [(charger_id, Interval(start, end)) for charger_id, start, end in session.execute(
        select(m.Booking.charger_id, m.Booking.slot_start, m.Booking.slot_end).where(
            *_holding_overlapping(station.id, Interval(starts[0], starts[-1] + br.slot)))
    )]
    candidates = _fast_candidates(station)
    capacity = rules.booking_capacity(candidates, br)
    bookable = sorted(c.code for c in candidates if c.bookable)
    id_by_code = {c.code: c.id for c in candidates}
    bookable_ids = {id_by_code[code] for code in bookable}
    out = []
    for s in starts:
        # As choose_charger counts: bookable chargers with a booking at any moment of the slot.
        t = rules.chargers_taken(rules.slot_span(s, br), booked) & bookable_ids
        free_codes = [code for code in bookable if id_by_code[code] not in t]
        out.append({"slot_start": s, "slot_end": s + br.slot,
                    "free": max(0, capacity - len(t)) if free_codes else 0,
                    "chargers": free_codes if capacity - len(t) > 0 else []})
    return out


def check_slot(session: Session, station: m.Station, slot_start: datetime, now: datetime) -> Interval:
    """The slot's span if the station's rules allow booking it at ``now``; else raises the rule's error
    (``slot_not_on_grid``, ``slot_in_past``, ``slot_too_far_ahead``, ``station_closed``, ``station_maintenance``)."""
    tz, br = station_tz(station), booking_rules(station)
    return rules.validate_slot(
        slot_start, now, tz, br, opening_hours(station),
        maintenance_windows(session, station, slot_start, slot_start + br.slot),
    )


def day_unbookable_reason(session: Session, station: m.Station, day: date, now: datetime):
    """Why no slot of the station-local ``day`` can be booked at ``now`` (a domain error), or None."""
    tz, br = station_tz(station), booking_rules(station)
    day_starts = rules.day_slot_starts(day, tz, br)
    if not day_starts:
        return None
    windows = maintenance_windows(session, station, day_starts[0], day_starts[-1] + br.slot)
    return rules.day_unbookable_reason(day, now, tz, br, opening_hours(station), windows)


# -- book and cancel ----------------------------------------------------------


def _fingerprint(station_code: str, slot_start: datetime, charger_code: str | None) -> str:
    body = json.dumps([station_code, slot_start.isoformat(), charger_code], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _by_key(session: Session, driver_id: int, key: str) -> m.Booking | None:
    return session.scalar(select(m.Booking).where(m.Booking.driver_id == driver_id, m.Booking.idempotency_key == key))


def book_slot(session: Session, now: datetime, driver_id: int, station_code: str, slot_start: datetime,
              charger_code: str | None = None, idempotency_key: str | None = None,
              attempts: int = 8) -> tuple[m.Booking, bool]:
    """Book a fast-charge slot (any charger, or the named one); returns (booking, created).

    Commits. A retry with the same idempotency key returns the first booking; the
    same key with another request raises IdempotencyKeyReused. Concurrent requests
    are decided by the database's unique indexes: a loser of a race for "any
    charger" tries the next free one.
    """
    fingerprint = _fingerprint(station_code, slot_start, charger_code)
    last_error: Exception | None = None
    for _ in range(attempts):
        try:
            booking = _try_book(session, now, driver_id, station_code, slot_start, charger_code,
                                idempotency_key, fingerprint)
            if isinstance(booking, tuple):
                session.rollback()
                return booking
            commit_and_keep(session)  # the caller answers with the booking: no reload in a second transaction
            return booking, True
        except IntegrityError as err:
            session.rollback()
            last_error = err
            if idempotency_key:
                existing = _by_key(session, driver_id, idempotency_key)
                if existing is not None:
                    if existing.request_fingerprint != fingerprint:
                        raise IdempotencyKeyReused() from None
                    return existing, False
            if _active_booking(session, driver_id) is not None:
                raise ActiveBookingExists() from None
            if charger_code is not None:
                raise SlotUnavailable("That charger is already booked for that slot.") from None
        except Exception:
            session.rollback()
            raise
    raise SlotUnavailable("Every bookable fast charger is taken for that slot.") from last_error


# The time buckets new bookings lock (see _lock_span): fixed, whatever the station's slot length.
LOCK_BUCKET_SECONDS = 30 * 60


def _lock_span(session: Session, station_id: int, span: Interval) -> None:
    """Serialise new bookings of one station that overlap in time until the transaction ends (PostgreSQL;
    SQLite has one writer).

    The exclusion constraint stops two bookings holding one charger at once, but the
    walk-in reserve is a count per slot: two requests that each see one place left
    would book it twice on different chargers (found by 200 concurrent named and
    "any" requests through gunicorn: 8 bookings for 7 places). An advisory lock per
    (station, 30-minute bucket the span touches) makes the count and the insert one
    step; read committed then sees every booking committed before the locks were
    granted. Two overlapping spans share an instant, so they share that instant's
    bucket, even across a change of slot length; the locks are taken in ascending
    order, so two requests never wait for each other. A 30-minute slot on the
    :00/:30 grid takes the one lock it always took (its start minute).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    first = int(span.start.timestamp()) // LOCK_BUCKET_SECONDS
    last = (int(span.end.timestamp()) - 1) // LOCK_BUCKET_SECONDS
    for bucket in range(first, max(first, last) + 1):
        session.execute(text("SELECT pg_advisory_xact_lock(CAST(:station AS integer), CAST(:minute AS integer))"),
                        {"station": station_id, "minute": bucket * LOCK_BUCKET_SECONDS // 60})


def _active_booking(session: Session, driver_id: int) -> m.Booking | None:
    return session.scalar(select(m.Booking).where(m.Booking.driver_id == driver_id, m.Booking.status.in_(ACTIVE_VALUES)))


def _try_book(session, now, driver_id, station_code, slot_start, charger_code, key, fingerprint):
    if key:
        existing = _by_key(session, driver_id, key)
        if existing is not None:
            if existing.request_fingerprint != fingerprint:
                raise IdempotencyKeyReused()
            return existing, False
    driver = session.get(m.User, driver_id)
    station = station_by_code(session, station_code)
    tz, br = station_tz(station), booking_rules(station)
    until = rules.suspended_until(no_show_times(session, driver_id), now, br)
    if until is not None:
        raise DriverSuspended(
            f"Booking is suspended until {until.astimezone(tz):%Y-%m-%d %H:%M} after "
            f"{br.no_show_limit} no-shows in {br.no_show_window.days} days.", until=until.isoformat())
    if _active_booking(session, driver_id) is not None:
        raise ActiveBookingExists()
    span = check_slot(session, station, slot_start, now)
    requested = charger_by_code(session, station, charger_code) if charger_code else None
    _lock_span(session, station.id, span)
    charger_id = rules.choose_charger(
        requested.id if requested else None, _fast_candidates(station),
        _taken_ids(session, station.id, span), br,
    )
    charger = session.get(m.Charger, charger_id)
    # The relationships set as well as the ids, so the answer needs no query for them after the commit.
    booking = m.Booking(
        driver_id=driver.id, station=station, station_id=station.id, charger=charger, charger_id=charger_id,
        booked_charger_id=charger_id, requested_charger_id=requested.id if requested else None,
        slot_start=span.start, slot_end=span.end, status=BookingStatus.BOOKED.value, created_at=now,
        idempotency_key=key, request_fingerprint=fingerprint,
    )
    session.add(booking)
    session.flush()
    start, end = f"{span.start.astimezone(tz):%m-%d %H:%M}", local_hhmm(span.end, tz)
    notify(session, driver.id, "booked",
           f"Booked {charger.code} ({charger.level}) at {station.name}, {start}-{end}.", now, booking,
           code="booked", params={"charger": charger.code, "level": charger.level, "station": station.name,
                                  "start": start, "end": end})
    return booking


def cancel_booking(session: Session, now: datetime, driver_id: int, booking_id: int) -> m.Booking:
    """Cancel a booking: free until the slot starts; after that an unused booking is a no-show.

    Cancelling a booking already cancelled returns it unchanged (idempotent), and so does
    cancelling again one cancelled late (a no-show with ``cancelled_at``): a retried tap
    after a slow answer must not turn into an error.
    """
    b = get_booking(session, booking_id, driver_id)
    if b.status == BookingStatus.CANCELLED.value:
        return b
    if b.status == BookingStatus.NO_SHOW.value and b.cancelled_at is not None:
        return b
    if b.status not in ACTIVE_VALUES:
        raise BookingNotCancellable(f"This booking is {b.status.replace('_', ' ')}.")
    if now < b.slot_start:
        _release_hold(session, now, b)
        b.status = BookingStatus.CANCELLED.value
        b.cancelled_at = now
        notify(session, b.driver_id, "cancelled", "Booking cancelled, free of charge.", now, b,
               code="cancelled", params={})
    else:
        _mark_no_show(session, now, b, cancelled=True)
    session.flush()
    return b


def _release_hold(session: Session, now: datetime, b: m.Booking) -> None:
    if b.status == BookingStatus.HELD.value and b.charger_id is not None:
        enqueue_command(session, session.get(m.Charger, b.charger_id), "cancel_reservation",
                        {"reservation_id": b.id}, now, b)


def _mark_no_show(session: Session, now: datetime, b: m.Booking, cancelled: bool = False) -> None:
    _release_hold(session, now, b)
    b.status = BookingStatus.NO_SHOW.value
    b.no_show_at = now
    if cancelled:
        b.cancelled_at = now
    station = b.station
    br = booking_rules(station)
    grace = int(br.checkin_grace.total_seconds() // 60)
    if cancelled:
        notify(session, b.driver_id, "no_show", "Cancelled after the slot started: counted as a no-show.", now, b,
               code="no_show_cancelled_late", params={})
    else:
        notify(session, b.driver_id, "no_show",
               f"No check-in within {grace} minutes of the slot: "
               "the booking is a no-show and the charger was released.", now, b,
               code="no_show", params={"minutes": grace})
    session.flush()
    _update_suspension(session, now, b.driver_id, station)


def _update_suspension(session: Session, now: datetime, driver_id: int, station: m.Station) -> None:
    driver = session.get(m.User, driver_id)
    until = rules.suspended_until(no_show_times(session, driver_id), now, booking_rules(station))
    if until != driver.suspended_until:
        if until is not None and (driver.suspended_until is None or until > driver.suspended_until):
            local_until = f"{until.astimezone(station_tz(station)):%Y-%m-%d %H:%M}"
            notify(session, driver_id, "suspended",
                   f"Booking suspended until {local_until} "
                   "after repeated no-shows. Existing bookings stand.", now,
                   code="suspended", params={"until": local_until}, until=until.isoformat())
        elif until is None and driver.suspended_until is not None and driver.suspended_until > now:
            notify(session, driver_id, "suspension_lifted", "Your booking suspension was lifted.", now,
                   code="suspension_lifted", params={})
        driver.suspended_until = until


# -- periodic work ------------------------------------------------------------


def tick(session: Session, now: datetime) -> dict:
    """The periodic booking work, in order: holds due, waiting bookings, no-shows. Flushes."""
    counts = {"held": 0, "moved": 0, "waiting": 0, "no_show": 0}
    due = session.scalars(
        select(m.Booking).where(m.Booking.status == BookingStatus.BOOKED.value)
        .order_by(m.Booking.slot_start, m.Booking.id)
    ).all()
    for b in due:
        br = booking_rules(b.station)
        if now >= rules.hold_due_at(b.slot_start, br) and not rules.no_show_due(b.slot_start, now, br):
            counts[_place_hold(session, now, b)] += 1
    for b in session.scalars(
        select(m.Booking).where(m.Booking.status == BookingStatus.WAITING.value)
        .order_by(m.Booking.slot_start, m.Booking.id)
    ).all():
        if _place_hold(session, now, b) != "waiting":
            counts["held"] += 1
    for b in session.scalars(
        select(m.Booking).where(m.Booking.status.in_([BookingStatus.HELD.value, BookingStatus.BOOKED.value]))
    ).all():
        if rules.no_show_due(b.slot_start, now, booking_rules(b.station), late_hold(b)):
            _mark_no_show(session, now, b)
            counts["no_show"] += 1
    session.flush()
    return counts


def _place_hold(session: Session, now: datetime, b: m.Booking) -> str:
    """Hold, move or keep waiting a booking whose hold is due; returns what happened."""
    station = b.station
    tz = station_tz(station)
    claimed = _taken_ids(session, station.id, booked_span(b), exclude_booking=b.id)
    plan = rules.plan_hold(b.charger_id, _chargers_now(station), claimed)
    if plan.action == "wait":
        if b.status != BookingStatus.WAITING.value:
            b.status = BookingStatus.WAITING.value
            b.charger = None
            b.delay_started_at = now
            slot = local_hhmm(b.slot_start, tz)
            notify(session, b.driver_id, "delayed",
                   f"No fast charger is free yet for your {slot} slot: "
                   "we will hold the first one that frees up and tell you which.", now, b,
                   code="delayed", params={"slot": slot})
        session.flush()
        return "waiting"
    charger = session.get(m.Charger, plan.charger_id)
    was_waiting = b.status == BookingStatus.WAITING.value
    moved = plan.charger_id != b.booked_charger_id
    b.charger = charger
    b.status = BookingStatus.HELD.value
    b.held_at = now
    if was_waiting:
        b.delay_seconds = max(0, int((now - b.slot_start).total_seconds()))
    _, last = rules.checkin_window(b.slot_start, booking_rules(station), late_hold(b))
    driver_tags = session.scalars(select(m.IdTag.tag).where(m.IdTag.user_id == b.driver_id)).all()
    enqueue_command(session, charger, "reserve_now", {
        "reservation_id": b.id, "connector": 1, "id_tag": driver_tags[0] if driver_tags else f"driver-{b.driver_id}",
        "parent_id_tag": f"driver-{b.driver_id}", "expiry": last.astimezone(tz).isoformat(),
    }, now, b)
    where = f"{charger.code} ({charger.level})" if charger.level else charger.code
    deadline = local_hhmm(last, tz)
    if was_waiting:
        delay = b.delay_seconds // 60
        notify(session, b.driver_id, "held",
               f"{where} is now held for you" + (f", {delay} min after your slot started" if delay else "")
               + f". Check in by {deadline}.", now, b,
               code="held_after_delay" if delay else "held_after_wait",
               params={"where": where, "delay": delay, "deadline": deadline}, delay_seconds=b.delay_seconds)
    elif moved:
        notify(session, b.driver_id, "moved",
               f"Your charger was busy or out of service: moved to {where}, held until {deadline}.", now, b,
               code="moved", params={"where": where, "deadline": deadline})
    else:
        notify(session, b.driver_id, "held", f"{where} is held for you until {deadline}.", now, b,
               code="held", params={"where": where, "deadline": deadline})
    session.flush()
    return "moved" if moved and not was_waiting else "held"


# -- check-in -----------------------------------------------------------------


def check_in_from_session(session: Session, now: datetime, cs: m.ChargingSession) -> m.Booking | None:
    """Match a charging session to its driver's booking at that station and check it in.

    A session counts when it is open at any moment of the check-in window by
    device time, on the held charger or any other fast charger of the station. A
    late-arriving start inside the window reverses a no-show.
    """
    if cs.started_at is None or cs.charger is None or cs.charger.kind != "fast":
        return None
    candidates_q = select(m.Booking).where(
        m.Booking.station_id == cs.station_id,
        m.Booking.status.in_(ACTIVE_VALUES + [BookingStatus.NO_SHOW.value]),
        m.Booking.session_id.is_(None),
    )
    if cs.driver_id is not None:
        candidates_q = candidates_q.where(m.Booking.driver_id == cs.driver_id)
    elif cs.reservation_id is not None:
        candidates_q = candidates_q.where(m.Booking.id == cs.reservation_id)
    else:
        return None
    if cs.reservation_id is not None and cs.driver_id is not None:
        candidates_q = candidates_q.order_by((m.Booking.id == cs.reservation_id).desc())
    for b in session.scalars(candidates_q.order_by(m.Booking.slot_start)).all():
        br = booking_rules(b.station)
        if not rules.counts_as_checkin(b.slot_start, cs.started_at, cs.stopped_at, br, late_hold(b)):
            continue
        _check_in(session, now, b, cs)
        return b
    return None


def _check_in(session: Session, now: datetime, b: m.Booking, cs: m.ChargingSession) -> None:
    reversed_no_show = b.status == BookingStatus.NO_SHOW.value
    if b.charger_id is not None and b.charger_id != cs.charger_id and b.status == BookingStatus.HELD.value:
        _release_hold(session, now, b)  # checked in elsewhere: release the original hold
    target = cs.charger_id
    if target in _taken_ids(session, b.station_id, booked_span(b), exclude_booking=b.id):
        target = None  # another booking holds that charger for the slot; the session says where
    b.charger = session.get(m.Charger, target) if target is not None else None
    b.status = BookingStatus.CHECKED_IN.value
    b.checked_in_at = cs.started_at
    b.session_id = cs.id
    if reversed_no_show:
        b.no_show_at = None
        b.cancelled_at = None
        notify(session, b.driver_id, "no_show_reversed",
               "Your charger reported a start inside the check-in window: the no-show is withdrawn.", now, b,
               code="no_show_reversed", params={})
        session.flush()
        _update_suspension(session, now, b.driver_id, b.station)
    else:
        notify(session, b.driver_id, "checked_in", f"Checked in on {cs.charger.code}.", now, b,
               code="checked_in", params={"charger": cs.charger.code})
    session.flush()


# -- a charger breaks ---------------------------------------------------------


def rehome_after_fault(session: Session, now: datetime, charger: m.Charger) -> list[m.Booking]:
    """Move the bookings of the next look-ahead period off a charger that went Faulted or
    Unavailable: to another fast charger, or delayed if the hold is due, or disrupted."""
    station = charger.station
    br = booking_rules(station)
    tz = station_tz(station)
    affected = session.scalars(
        select(m.Booking).where(
            m.Booking.charger_id == charger.id,
            m.Booking.status.in_([BookingStatus.BOOKED.value, BookingStatus.HELD.value]),
            m.Booking.slot_start <= now + br.fault_lookahead,
        ).order_by(m.Booking.slot_start)
    ).all()
    changed = []
    for b in affected:
        if rules.no_show_due(b.slot_start, now, br, late_hold(b)):
            continue  # the next tick makes it a no-show
        if now >= rules.hold_due_at(b.slot_start, br):
            # The hold is due: as at hold time, a free charger now or wait for one.
            _release_hold(session, now, b)
            b.status = BookingStatus.BOOKED.value
            b.charger = None
            session.flush()
            _place_hold(session, now, b)
            changed.append(b)
            continue
        plan = rules.rehome_on_fault(
            b.slot_start, now, _fast_candidates_excluding(station, charger.id), charger.id,
            _taken_ids(session, station.id, booked_span(b), exclude_booking=b.id), br,
        )
        if plan.action == "move":
            target = session.get(m.Charger, plan.charger_id)
            b.charger = target
            slot = local_hhmm(b.slot_start, tz)
            notify(session, b.driver_id, "moved",
                   f"{charger.code} is out of service: your {slot} slot moved to {target.code}.", now, b,
                   code="moved_charger_down", params={"from": charger.code, "slot": slot, "charger": target.code})
        elif plan.action == "disrupted":
            b.status = BookingStatus.DISRUPTED.value
            b.charger = None
            b.disrupted_at = now
            slot = local_hhmm(b.slot_start, tz)
            notify(session, b.driver_id, "disrupted",
                   f"{charger.code} is out of service and no other fast charger is free for your "
                   f"{slot} slot: the booking is cancelled at no cost. Please book again.", now, b,
                   code="disrupted_charger_down", params={"from": charger.code, "slot": slot})
        else:
            continue
        session.flush()
        changed.append(b)
    return changed


def _fast_candidates_excluding(station: m.Station, broken_id: int) -> list[ChargerCandidate]:
    out = []
    for c in station.chargers:
        usable = c.in_service and c.online and c.id != broken_id and not any(
            k.status in ("Faulted", "Unavailable") for k in c.connectors)
        out.append(ChargerCandidate(c.id, c.code, c.kind == "fast", usable))
    return out


def hold_refused(session: Session, now: datetime, booking_id: int, answer: str) -> m.Booking | None:
    """A charger answered reserve_now with Occupied, Faulted, Rejected or Unavailable
    (or never answered): hold the booking on another free charger, or make it wait."""
    b = session.get(m.Booking, booking_id)
    if b is None or b.status != BookingStatus.HELD.value or b.charger_id is None:
        return b
    refused = b.charger_id
    station = b.station
    claimed = _taken_ids(session, station.id, booked_span(b), exclude_booking=b.id) | {refused}
    plan = rules.plan_hold(None, _chargers_now(station), claimed)
    b.status = BookingStatus.BOOKED.value
    b.charger = None
    session.flush()
    if plan.action == "wait":
        b.status = BookingStatus.WAITING.value
        b.delay_started_at = now
        notify(session, b.driver_id, "delayed",
               f"The held charger answered '{answer}'; we will hold the first fast charger that frees up.", now, b,
               code="delayed_hold_refused", params={"answer": answer})
    else:
        b.charger = session.get(m.Charger, plan.charger_id)
        _place_hold(session, now, b)
    session.flush()
    return b


def disrupt_for_maintenance(session: Session, now: datetime, station: m.Station,
                            window: m.MaintenanceWindow) -> list[int]:
    """Every active booking of ``station`` that overlaps the maintenance ``window``: its hold released (a held
    charger gets cancel_reservation, as on cancelling), marked disrupted at ``now`` and its driver told that it is
    cancelled at no cost. Flushes; the ids, by slot."""
    tz = station_tz(station)
    affected = session.scalars(
        select(m.Booking).where(
            m.Booking.station_id == station.id, m.Booking.status.in_(ACTIVE_VALUES),
            m.Booking.slot_start < window.ends_at, m.Booking.slot_end > window.starts_at,
        ).order_by(m.Booking.slot_start, m.Booking.id)
    ).all()
    for b in affected:
        _release_hold(session, now, b)  # cancel_reservation for a held one, as on cancelling
        b.status = BookingStatus.DISRUPTED.value
        b.charger = None
        b.disrupted_at = now
        start, end = f"{b.slot_start.astimezone(tz):%m-%d %H:%M}", local_hhmm(b.slot_end, tz)
        notify(session, b.driver_id, "disrupted",
               f"{station.name} is closed for maintenance during your {start}-{end} slot: "
               "the booking is cancelled at no cost. Please book another slot.",
               now, b, code="disrupted_maintenance", params={"station": station.name, "start": start, "end": end},
               maintenance_window_id=window.id)
    session.flush()
    return [b.id for b in affected]
