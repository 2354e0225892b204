"""The driver app, phone first: find a station, book a slot in three taps, see and cancel the
booking, notifications, sessions and receipts with the free-parking rule, remote start/stop.

Each view calls the services the JSON API calls (``chargeapp/services``) and renders a page;
a refusal (a domain error) is shown in the driver's language with the HTTP status the API
would give it.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext
from sqlalchemy import select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.domain import booking as rules
from chargeapp.domain.booking import ACTIVE
from chargeapp.domain.errors import DomainError
from chargeapp.domain.geo import wgs84_to_gcj02
from chargeapp.services import booking as booking_service
from chargeapp.services import charging as charging_service
from chargeapp.services import receipts as receipt_service
from chargeapp.services import remote
from chargeapp.services import stations as station_service
from chargeapp.services.common import (
    booking_rules, charger_by_code, opening_hours, rules_of, station_by_code, station_tz,
)
from chargeapp.web.pages import i18n
from chargeapp.web.pages.common import clock_speed, now, register_error_pages, status_of
from chargeapp.web.pages.security import login_required, page_user
from chargeapp.web.transaction import transaction

bp = Blueprint("pages_driver", __name__)
register_error_pages(bp)
ACTIVE_VALUES = {s.value for s in ACTIVE}


# -- helpers ------------------------------------------------------------------------------


def _float_arg(name: str, lo: float, hi: float) -> float | None:
    try:
        value = float(request.args.get(name, ""))
    except ValueError:
        return None
    return value if lo <= value <= hi else None


def _active_booking(user: m.User | None) -> m.Booking | None:
    if user is None:
        return None
    for b in booking_service.driver_bookings(db.session, user.id, limit=5):
        if b.status in ACTIVE_VALUES:
            return b
    return None


def _suspended_until(user: m.User | None, at: datetime) -> datetime | None:
    if user is None or user.suspended_until is None or user.suspended_until <= at:
        return None
    return user.suspended_until


def _districts() -> list[str]:
    return [d for d in db.session.scalars(select(m.Station.district).distinct().order_by(m.Station.district)) if d]


def _parse_slot(raw: str | None) -> datetime | None:
    try:
        slot = datetime.fromisoformat((raw or "").replace(" ", "+"))
    except ValueError:
        return None
    return slot if slot.tzinfo is not None else None


def _rule_numbers(station: m.Station | None) -> dict:
    """The numbers the pages explain (a station's rules, or the defaults when there is none)."""
    r = rules_of(station) if station is not None else m.StationRules(
        **{c.key: c.default.arg for c in m.StationRules.__table__.columns
           if c.default is not None and not callable(c.default.arg) and c.key != "station_id"})
    return {
        "slot": r.slot_minutes, "hold_lead": r.hold_lead_minutes, "before": r.checkin_before_minutes,
        "grace": r.checkin_grace_minutes, "no_show_limit": r.no_show_limit,
        "no_show_days": r.no_show_window_days, "suspension_days": r.suspension_days,
        "qualify": r.free_parking_qualify_minutes, "free": r.free_parking_minutes,
        "block": r.parking_block_minutes, "walkins": r.walkin_reserved_fast,
        "horizon_hours": r.booking_horizon_minutes // 60,
    }


# -- finder and station ---------------------------------------------------------------


@bp.get("/")
def home():
    return redirect(url_for(".finder"))


@bp.get("/stations")
def finder():
    """Stations nearest first from the browser's position (lat/lon, WGS-84), or in a district."""
    at = now()
    lat, lon = _float_arg("lat", -90, 90), _float_arg("lon", -180, 180)
    position = (lat, lon) if lat is not None and lon is not None else None
    districts = _districts()
    district = request.args.get("district") or None
    if district not in districts:
        district = None
    stations = station_service.find_stations(db.session, at, position, district)
    user = page_user()
    return render_template(
        "driver/finder.html", stations=stations, districts=districts, district=district,
        position=position, position_gcj=wgs84_to_gcj02(*position) if position else None,
        now=at, active=_active_booking(user), suspended_until=_suspended_until(user, at),
        map_config=_map_config(),
    )


def _map_config() -> dict:
    from flask import current_app

    return {
        "tiles": current_app.config.get("CHARGEAPP_MAP_TILES") or "",
        "subdomains": current_app.config.get("CHARGEAPP_MAP_TILE_SUBDOMAINS") or "",
        "attribution": current_app.config.get("CHARGEAPP_MAP_ATTRIBUTION") or "",
    }


@bp.get("/stations/<code>")
def station(code: str):
    """A station: chargers now, lounge room, amenities, and the slots of today and tomorrow."""
    at = now()
    st = station_by_code(db.session, code)
    tz = station_tz(st)
    info = station_service.detail(db.session, st, at)
    today = at.astimezone(tz).date()
    days = [today, today + timedelta(days=1)]
    slots = {d: booking_service.free_slots(db.session, st, d, at) for d in days}
    closed = {d: _why_no_slot(st, d, at, slots[d], tz) for d in days}
    chosen = request.args.get("day")
    if chosen == "tomorrow":
        day = days[1]
    elif chosen == "today":
        day = days[0]
    else:
        day = days[0] if any(s["free"] for s in slots[days[0]]) or closed[days[1]] else days[1]
    user = page_user()
    return render_template(
        "driver/station.html", st=st, info=info, tz=tz, now=at, day=day, days=days, slots=slots[day],
        closed=closed,
        today=today, fast=[c for c in info["chargers"] if c["kind"] == "fast"],
        slow=[c for c in info["chargers"] if c["kind"] != "fast"], rules=_rule_numbers(st),
        hours=opening_hours(st), active=_active_booking(user), suspended_until=_suspended_until(user, at),
    )


def _why_no_slot(st: m.Station, day, at: datetime, day_slots: list[dict], tz) -> str | None:
    """Why a day has no slot to book, in the page's language (None when one is free)."""
    if any(s["free"] for s in day_slots):
        return None
    if day_slots:
        return gettext("Every slot of this day is taken.")
    reason = booking_service.day_unbookable_reason(db.session, st, day, at)
    if reason is None:
        return gettext("Every slot of this day is taken.")
    opens_at = reason.details.get("opens_at") if reason.details else None
    if reason.code == "slot_too_far_ahead" and opens_at:
        return gettext("Slots open for booking %(hours)d hours ahead: this day's first slot can be booked "
                       "from %(when)s.", hours=_rule_numbers(st)["horizon_hours"],
                       when=i18n.when(datetime.fromisoformat(opens_at), tz, at))
    return str(i18n.DAY_REFUSALS.get(reason.code) or i18n.refusal(reason, tz))


# -- booking: slot -> confirm -> booked --------------------------------------------------


# Refusals after which the same slot may be tried again at once (a fresh form, another charger).
_TRY_AGAIN = {"idempotency_key_reused", "charger_not_bookable", "charger_not_found"}


def _confirm(st: m.Station, slot: datetime | None, error: str | None = None, status: int = 200,
             code: str | None = None):
    at = now()
    tz = station_tz(st)
    row = None
    if slot is not None:
        local_day = slot.astimezone(tz).date()
        row = next((r for r in booking_service.free_slots(db.session, st, local_day, at)
                    if r["slot_start"] == slot), None)
    if error is None and slot is None:
        error, status = gettext("That is not a slot of this station."), 422
    elif error is None and (row is None or row["free"] == 0):
        # The rule that refuses it, as booking it would say (the API's code); else it is full.
        try:
            booking_service.check_slot(db.session, st, slot, at)
            err: DomainError = rules.SlotUnavailable("Every bookable fast charger is taken for that slot.")
        except DomainError as refused:
            err = refused
        error, status = i18n.refusal(err, tz), status_of(err)
    br = booking_rules(st)
    # The check-in rules come with a slot that can be booked now, never with a refusal.
    bookable = (error is None or code in _TRY_AGAIN) and row is not None and row["free"] > 0
    window = rules.checkin_window(slot, br) if slot is not None and bookable else None
    return render_template(
        "driver/confirm.html", st=st, tz=tz, slot=slot, slot_end=slot + br.slot if slot else None, row=row,
        error=error, now=at, bookable=bookable,
        window=window, rules=_rule_numbers(st), key=secrets.token_urlsafe(16),
    ), status


@bp.get("/stations/<code>/book")
@login_required
def confirm(code: str):
    """Step 3: what is about to be booked, and the rules that come with it."""
    st = station_by_code(db.session, code)
    return _confirm(st, _parse_slot(request.args.get("slot")))


@bp.post("/stations/<code>/book")
@login_required
def book(code: str):
    """Book the slot (any fast charger, or the one chosen); a double tap books once."""
    st = station_by_code(db.session, code)
    slot = _parse_slot(request.form.get("slot"))
    if slot is None:
        return _confirm(st, None)
    charger = request.form.get("charger") or None
    key = (request.form.get("key") or "")[:64]
    try:
        booking, _ = booking_service.book_slot(
            db.session, now(), page_user().id, st.code, slot, charger, f"page-{key}" if key else None)
    except DomainError as err:
        db.session.rollback()
        return _confirm(st, slot, i18n.refusal(err, station_tz(st)), status_of(err), err.code)
    flash(gettext("Booked: %(charger)s at %(time)s.", charger=booking.charger.code if booking.charger else "",
                  time=i18n.when(booking.slot_start, station_tz(st), now())), "ok")
    return redirect(url_for(".booking", booking_id=booking.id))


@bp.get("/bookings")
@login_required
def bookings():
    user = page_user()
    rows = booking_service.driver_bookings(db.session, user.id, limit=50)
    return render_template("driver/bookings.html", bookings=rows, now=now(),
                           active_values=ACTIVE_VALUES, tz_of=lambda b: station_tz(b.station))


def _countdown(b: m.Booking, at: datetime) -> dict | None:
    """What the countdown counts to: check-in opening, then the check-in deadline."""
    if b.status not in ACTIVE_VALUES:
        return None
    opens, deadline = rules.checkin_window(b.slot_start, booking_rules(b.station), booking_service.late_hold(b))
    if at < opens:
        return {"label": gettext("Check-in opens in"), "target": opens, "seconds": (opens - at).total_seconds()}
    if at <= deadline:
        return {"label": gettext("Check in within"), "target": deadline,
                "seconds": (deadline - at).total_seconds()}
    return {"label": gettext("Check-in window closed"), "target": deadline, "seconds": 0}


@bp.get("/bookings/<int:booking_id>")
@login_required
def booking(booking_id: int):
    """My booking: countdown, the charger and level to drive to, what happens if late; cancel."""
    at = now()
    b = booking_service.get_booking(db.session, booking_id, page_user().id)
    tz = station_tz(b.station)
    opens, deadline = rules.checkin_window(b.slot_start, booking_rules(b.station), booking_service.late_hold(b))
    notes = db.session.scalars(
        select(m.Notification).where(m.Notification.booking_id == b.id, m.Notification.user_id == b.driver_id)
        .order_by(m.Notification.id.desc())
    ).all()
    return render_template(
        "driver/booking.html", b=b, tz=tz, now=at, opens=opens, deadline=deadline, notes=notes,
        countdown=_countdown(b, at), speed=clock_speed(), rules=_rule_numbers(b.station),
        cancellable=b.status in ACTIVE_VALUES, cancel_free=at < b.slot_start,
    )


def _cancel_step(b: m.Booking, at: datetime):
    """The confirmation step before a cancel: what is cancelled, what it costs, that it cannot be undone."""
    return render_template("driver/cancel.html", b=b, tz=station_tz(b.station), now=at,
                           cancel_free=at < b.slot_start, rules=_rule_numbers(b.station))


@bp.get("/bookings/<int:booking_id>/cancel")
@login_required
def cancel_step(booking_id: int):
    """Step before cancelling (works without JavaScript): the booking, the cost, and a confirm button."""
    at = now()
    b = booking_service.get_booking(db.session, booking_id, page_user().id)
    if b.status not in ACTIVE_VALUES:
        return redirect(url_for(".booking", booking_id=booking_id))
    return _cancel_step(b, at)


@bp.post("/bookings/<int:booking_id>/cancel")
@login_required
def cancel(booking_id: int):
    """Cancel the booking once confirmed (``confirm=yes`` from the step page); without it, the step page."""
    at = now()
    if request.form.get("confirm") != "yes":
        b = booking_service.get_booking(db.session, booking_id, page_user().id)
        if b.status not in ACTIVE_VALUES:
            return redirect(url_for(".booking", booking_id=booking_id))
        return _cancel_step(b, at)
    try:
        with transaction():
            b = booking_service.cancel_booking(db.session, at, page_user().id, booking_id)
    except DomainError as err:
        db.session.rollback()
        if status_of(err) == 404:
            raise
        flash(i18n.refusal(err), "error")
        return redirect(url_for(".booking", booking_id=booking_id))
    if b.status == "no_show":
        flash(gettext("Cancelled after the slot started: this counts as a no-show."), "error")
    else:
        flash(gettext("Booking cancelled, free of charge."), "ok")
    return redirect(url_for(".booking", booking_id=booking_id))


# -- notifications, sessions, receipts -----------------------------------------------------


@bp.get("/notifications")
@login_required
def notifications():
    rows = db.session.scalars(
        select(m.Notification).where(m.Notification.user_id == page_user().id)
        .order_by(m.Notification.id.desc()).limit(100)
    ).all()
    bookings = {}
    for n in rows:
        if n.booking_id is not None and n.booking_id not in bookings:
            bookings[n.booking_id] = db.session.get(m.Booking, n.booking_id)
    tz_by_booking = {k: station_tz(v.station) for k, v in bookings.items() if v is not None}
    return render_template("driver/notifications.html", notes=rows, tz_by_booking=tz_by_booking, now=now())


@bp.get("/charging")
@login_required
def charging():
    """Parking now ("free until 16:42"), my charging sessions and my receipts."""
    at = now()
    user = page_user()
    stays = receipt_service.parking_status(db.session, at, user.id)
    for s in stays:
        st = db.session.get(m.Station, s["station_id"])
        s["station"], s["tz"], s["rules"] = st, station_tz(st), _rule_numbers(st)
        s["free_if_qualified"] = s["entry_at"] + timedelta(minutes=s["rules"]["free"])
    sessions = charging_service.driver_sessions(db.session, user.id, limit=20)
    receipts = receipt_service.driver_receipts(db.session, user.id, limit=20)
    first_station = stays[0]["station"] if stays else (sessions[0].station if sessions else None)
    return render_template("driver/charging.html", stays=stays, sessions=sessions, receipts=receipts, now=at,
                           rules=_rule_numbers(first_station), tz_of=lambda obj: station_tz(obj.station))


@bp.post("/charging/sessions/<int:session_id>/stop")
@login_required
def remote_stop(session_id: int):
    try:
        with transaction():
            cmd = remote.request_remote_stop(db.session, now(), page_user(), session_id)
    except DomainError as err:
        db.session.rollback()
        if status_of(err) == 404:
            raise
        flash(i18n.refusal(err), "error")
        return redirect(url_for(".charging"))
    flash(gettext("Stop sent to %(charger)s: the charge ends in a few seconds.",
                  charger=db.session.get(m.Charger, cmd.charger_id).code), "ok")
    return redirect(url_for(".charging"))


# -- a charger (the page its QR sticker opens): remote start -----------------------------------


@bp.get("/stations/<code>/chargers/<charger_code>")
def charger(code: str, charger_code: str):
    st = station_by_code(db.session, code)
    ch = charger_by_code(db.session, st, charger_code)
    user = page_user()
    reason = remote.start_state(db.session, user, ch)
    own = remote.open_session_on(db.session, user, ch) if user is not None else None
    info = {"online": ch.online, "in_service": ch.in_service,
            "status": ch.connectors[0].status if ch.connectors else "Unavailable"}
    return render_template("driver/charger.html", st=st, ch=ch, info=info, user=user, own=own,
                           reason=i18n.REFUSALS.get(reason) if reason else None, tz=station_tz(st), now=now())


@bp.post("/stations/<code>/chargers/<charger_code>/start")
@login_required
def remote_start(code: str, charger_code: str):
    try:
        with transaction():
            remote.request_remote_start(db.session, now(), page_user(), code, charger_code)
    except DomainError as err:
        db.session.rollback()
        if status_of(err) == 404:
            raise
        flash(i18n.refusal(err), "error")
        return redirect(url_for(".charger", code=code, charger_code=charger_code))
    flash(gettext("Start sent to %(charger)s: plug in the cable if you have not yet; "
                  "charging starts in a few seconds.", charger=charger_code), "ok")
    return redirect(url_for(".charger", code=code, charger_code=charger_code))
