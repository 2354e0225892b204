"""The manager dashboard: a manager's stations, each live with what needs attention,
its configuration, fix-ups (each with a reason) and the audit log.

Every view is ``manager_required`` (a driver gets a 403 page) and reaches a station
only through ``services.manage`` (another manager's station is a 404, as in the API).
Changes go through the same ``services.manage`` functions as the API; a form is
checked here first so a refusal names the field, then the service checks again. A
refusal re-shows the page with what was typed and the status the API would give
(422 for bad input, 409 for a conflict, 404 for something not there), in the
manager's language. Times are written and read in the station's time zone.
The reports are in ``reports.py``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext as _l
from sqlalchemy import func, select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.domain.errors import DomainError
from chargeapp.services import manage as manage_service
from chargeapp.services import receipts as receipt_service
from chargeapp.web.pages import i18n
from chargeapp.web.pages.common import now, register_error_pages, status_of
from chargeapp.web.pages.security import manager_required, page_user
from chargeapp.web.transaction import transaction

bp = Blueprint("pages_manage", __name__, url_prefix="/manage")
register_error_pages(bp)

PAGE_SIZE = 50
INT_MAX = 2**31 - 1  # an integer column on every backend
REASON_MAX = 500
HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
WHOLE = re.compile(r"\d{1,10}")
YUAN = re.compile(r"\d{1,9}(\.\d{1,2})?")
PRICE = re.compile(r"\d{1,6}(\.\d{1,4})?")
PERIOD_LINE = re.compile(r"(\d{2}:\d{2})\s*[-–~至]\s*(\d{2}:\d{2})\s+(\S+)")
BANDS = {"peak": "peak", "flat": "flat", "valley": "valley", "峰": "peak", "平": "flat", "谷": "valley"}


# -- words ------------------------------------------------------------------------------

# Refusals of the manager's services, in Chinese by their stable code (English pages show
# the service's own sentence, as the driver pages do).
REFUSALS = {
    "reason_required": _l("Say why: every change is kept in the audit log with its reason."),
    "zone_not_found": _l("No such zone at this station."),
    "zone_code_taken": _l("This station already has a zone with that code."),
    "stay_not_found": _l("No such parking stay."),
    "stay_anonymised": _l("That stay's plate was anonymised after the retention period: it can no longer be fixed."),
    "maintenance_window_not_found": _l("No such maintenance window at this station."),
    "invalid_maintenance_window": _l("A maintenance window must end after it starts, and after now."),
    "maintenance_window_over": _l("That maintenance window has ended: it is kept as history."),
    "invalid_opening_hours": _l("Give both opening times (two different times), or neither for around the clock."),
    "invalid_rules": _l("A station rule is out of range."),
    "receipt_not_found": _l("No such receipt."),
    "not_station_manager": _l("No such receipt."),
    "invalid_fee_component": _l("That fee is not part of this receipt."),
    "invalid_fee_amount": _l("A fee is an amount of 0 or more."),
    "nothing_to_correct": _l("The receipt already shows those amounts: nothing to correct."),
    "session_not_open": _l("That charging session has already ended."),
    "invalid_close_time": _l("A session is closed at a time after it began and not in the future."),
    "tariff_in_the_past": _l("A new tariff takes effect now or later: prices already in effect never change."),
    "tariff_version_exists": _l("A tariff version already takes effect at that time."),
    "invalid_tariff": _l("The tariff is not usable: the periods must cover the day exactly once "
                         "and every price must be set."),
    "invalid_plate": _l("That is not a plate."),
    "invalid_zone_count": _l("A head count is a whole number, 0 or more."),
}

ATTENTION = {
    "charger_faulted": _l("Charger faulted"),
    "charger_unavailable": _l("Charger unavailable"),
    "charger_offline": _l("Charger offline"),
    "sensor_offline": _l("Door sensor offline"),
    "gate_offline": _l("Gate offline"),
    "door_left_open": _l("Door left open"),
    "session_stuck": _l("Session open too long"),
    "messages_missing": _l("Messages missing"),
    "hold_unacknowledged": _l("Hold not acknowledged"),
    "command_failed": _l("Command failed"),
    "dead_letters": _l("Dead letters"),
}

AUDIT_ACTIONS = {
    "charger.in_service": _l("Charger back in service"),
    "charger.out_of_service": _l("Charger out of service"),
    "zone.create": _l("Zone added"),
    "zone.update": _l("Zone changed"),
    "zone.set_count": _l("Zone count set"),
    "rules.update": _l("Rules changed"),
    "hours.update": _l("Opening hours changed"),
    "maintenance.create": _l("Maintenance window added"),
    "maintenance.delete": _l("Maintenance window removed"),
    "tariff.create": _l("Tariff version added"),
    "receipt.waive_fee": _l("Fee waived"),
    "receipt.correct_fee": _l("Fee corrected"),
    "session.close": _l("Session closed"),
    "stay.fix_plate": _l("Plate fixed"),
    "user.reset_link": _l("Password reset link issued"),
    "user.password_reset": _l("Password set through a reset link"),
}

RULE_LABELS = {
    "slot_minutes": _l("Slot length (minutes)"),
    "booking_horizon_minutes": _l("Booking horizon (minutes)"),
    "hold_lead_minutes": _l("Hold the charger before the slot (minutes)"),
    "checkin_before_minutes": _l("Check-in opens before the slot (minutes)"),
    "checkin_grace_minutes": _l("Check-in grace after the slot start (minutes)"),
    "no_show_limit": _l("No-shows before a suspension"),
    "no_show_window_days": _l("No-shows counted over (days)"),
    "suspension_days": _l("Suspension (days)"),
    "walkin_reserved_fast": _l("Fast chargers kept for walk-ins"),
    "fault_lookahead_minutes": _l("Move bookings of a faulted charger within (minutes)"),
    "free_parking_qualify_minutes": _l("Charging needed for free parking (minutes)"),
    "free_parking_minutes": _l("Free parking (minutes)"),
    "parking_block_minutes": _l("Parking billed per (minutes)"),
    "receipt_settle_minutes": _l("Receipts settled after (minutes)"),
    "skew_tolerance_seconds": _l("Clock skew tolerated (seconds)"),
    "plate_retention_days": _l("Plates kept for (days)"),
    "max_report_days": _l("Longest report (days)"),
}

COMPONENT_LABELS = {
    "energy_fen": _l("Energy"),
    "service_fen": _l("Service fee"),
    "idle_fen": _l("Idle fee"),
    "parking_fen": _l("Parking"),
}

BAND_LABELS = {"peak": _l("Peak"), "flat": _l("Flat"), "valley": _l("Valley")}
# How a charging session ended (charging_sessions.closed_by; services/charging.py).
CLOSED_BY_LABELS = {
    "stop": _l("the charger reported the stop"),
    "available": _l("inferred: the connector became available"),
    "new_start": _l("inferred: a new session started"),
    "manager": _l("closed by a manager"),
}

# The tariff form's money fields: prices per kWh (1/10,000 CNY) and fees (fen).
TARIFF_PRICES = ("peak_price", "flat_price", "valley_price", "service_fee")
TARIFF_FEES = ("idle_fee_per_minute_fen", "idle_fee_cap_fen", "parking_block_fen", "parking_daily_cap_fen")
TARIFF_NULLABLE = ("idle_fee_cap_fen", "parking_daily_cap_fen")
TARIFF_LABELS = {
    "peak_price": _l("Peak energy price (¥/kWh)"),
    "flat_price": _l("Flat energy price (¥/kWh)"),
    "valley_price": _l("Valley energy price (¥/kWh)"),
    "service_fee": _l("Service fee (¥/kWh)"),
    "idle_grace_minutes": _l("Idle grace (minutes)"),
    "idle_fee_per_minute_fen": _l("Idle fee per minute (¥)"),
    "idle_fee_cap_fen": _l("Idle fee cap (¥)"),
    "parking_block_fen": _l("Parking fee per block (¥)"),
    "parking_daily_cap_fen": _l("Parking daily cap (¥)"),
}


def refusal(err: DomainError) -> str:
    """A refusal in the page's language: the service's sentence in English, else by its code."""
    if not i18n.is_english() and err.code in REFUSALS:
        return str(REFUSALS[err.code])
    return i18n.refusal(err)


@bp.errorhandler(DomainError)
def _domain(err: DomainError):
    db.session.rollback()
    status = status_of(err)
    title = gettext("Not found") if status == 404 else gettext("Sorry")
    return render_template("manage/error.html", status=status, message=refusal(err), title=title), status


@bp.context_processor
def _manage_helpers():
    return {
        "has_reports": "pages_reports.report" in current_app.view_functions,
        "attention_label": lambda kind: str(ATTENTION.get(kind, kind)),
        "audit_label": lambda action: str(AUDIT_ACTIONS.get(action, action)),
        "rule_label": lambda key: str(RULE_LABELS.get(key, key)),
        "component_label": lambda key: str(COMPONENT_LABELS.get(key, key)),
        "band_label": lambda band: str(BAND_LABELS.get(band, band)),
        "closed_by_label": lambda value: str(CLOSED_BY_LABELS.get(value, value)),
        "tariff_label": lambda key: str(TARIFF_LABELS.get(key, key)),
        "duration": duration,
        "yuan": yuan,
        "price": price_text,
        "local_input": local_input,
        "stamp": stamp,
    }


# -- formatting ---------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    """A time span as "3 min", "2 h 5 min" or "3 d 4 h" (for time in state, open for...)."""
    if seconds is None:
        return ""
    total = max(0, int(seconds)) // 60
    days, rest = divmod(total, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return gettext("%(d)d d %(h)d h", d=days, h=hours)
    if hours:
        return gettext("%(h)d h %(m)d min", h=hours, m=minutes)
    return gettext("%(m)d min", m=minutes)


def yuan(fen: int | None) -> str:
    """Fen as a plain amount of yuan for a form field ("12.50"), exact; "" for None."""
    if fen is None:
        return ""
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


def price_text(units: int | None) -> str:
    """A price in 1/10,000 CNY per kWh as yuan ("1.2000"), exact; "" for None."""
    if units is None:
        return ""
    return str((Decimal(units) / 10000).quantize(Decimal("0.0001")))


def stamp(at: datetime | None, tz: str) -> str:
    """An instant as "2026-11-22 14:00" in station time, with the year (histories span years)."""
    return "" if at is None else at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def local_input(at: datetime | None, tz: str) -> str:
    """An instant as the value of a datetime-local field, station wall time."""
    if at is None:
        return ""
    return at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%dT%H:%M")


# -- forms --------------------------------------------------------------------------------


@dataclass
class Form:
    """What was typed into one form and what is wrong with it (field -> message)."""

    key: str
    values: dict
    errors: dict = field(default_factory=dict)
    error: str | None = None  # a refusal of the service, for the whole form

    def text(self, name: str, max_len: int = 200) -> str:
        return (self.values.get(name) or "").strip()[:max_len]

    def reason(self, required: bool = True) -> str:
        text = (self.values.get("reason") or "").strip()
        if required and not text:
            self.errors["reason"] = gettext("Say why: the reason is kept in the audit log.")
        elif len(text) > REASON_MAX:
            self.errors["reason"] = gettext("At most %(n)d characters.", n=REASON_MAX)
        return text

    def whole(self, name: str, lo: int = 0, hi: int = INT_MAX, required: bool = True) -> int | None:
        raw = self.text(name, 40)
        if not raw:
            if required:
                self.errors[name] = gettext("Required.")
            return None
        if not WHOLE.fullmatch(raw) or not lo <= int(raw) <= hi:
            self.errors[name] = gettext("A whole number from %(lo)d to %(hi)d.", lo=lo, hi=hi)
            return None
        return int(raw)

    def hhmm(self, name: str) -> time | None:
        raw = self.text(name, 20)
        if not raw:
            return None
        if not HHMM.fullmatch(raw):
            self.errors[name] = gettext('Write a time as "HH:MM", 00:00 to 23:59.')
            return None
        return time(int(raw[:2]), int(raw[3:]))

    def local_datetime(self, name: str, tz: str, required: bool = True) -> datetime | None:
        raw = self.text(name, 40)
        if not raw:
            if required:
                self.errors[name] = gettext("Required.")
            return None
        try:
            naive = datetime.fromisoformat(raw)
        except ValueError:
            naive = None
        if naive is None or naive.tzinfo is not None or not 2000 <= naive.year <= 2100:
            self.errors[name] = gettext("Write a date and time as YYYY-MM-DD HH:MM (station time).")
            return None
        return naive.replace(second=0, microsecond=0, tzinfo=ZoneInfo(tz))

    def money(self, name: str, pattern: re.Pattern, scale: int, required: bool = False) -> int | None:
        """A non-negative amount of yuan as integer units (``scale`` per yuan), exact."""
        raw = self.text(name, 40).replace(",", "").lstrip("¥")
        if not raw:
            if required:
                self.errors[name] = gettext("Required.")
            return None
        try:
            units = int(Decimal(raw) * scale) if pattern.fullmatch(raw) else None
        except InvalidOperation:
            units = None
        if units is None or units > INT_MAX:
            decimals = len(str(scale)) - 1
            self.errors[name] = gettext("An amount in yuan, 0 or more, with at most %(n)d decimals.", n=decimals)
            return None
        return units

    @property
    def ok(self) -> bool:
        return not self.errors and self.error is None


def posted(key: str) -> Form:
    """The form just posted; a NUL character (no database text column takes it) is refused on its field."""
    form = Form(key, {k: v for k, v in request.form.items() if k != "csrf_token"})
    for name, value in form.values.items():
        if "\x00" in value:
            form.values[name] = value.replace("\x00", "")
            form.errors[name] = gettext("Contains a character that cannot be stored.")
    return form


def _query_text(name: str) -> str:
    """A search box's text (at most 64 characters, no NUL)."""
    return request.args.get(name, "").replace("\x00", "").strip()[:64]


class Forms:
    """A page's forms: the one that was refused keeps what was typed; the others show the defaults."""

    def __init__(self, failed: Form | None = None):
        self.failed = failed

    def __call__(self, key: str, defaults: dict | None = None) -> Form:
        if self.failed is not None and self.failed.key == key:
            return self.failed
        return Form(key, {k: ("" if v is None else v) for k, v in (defaults or {}).items()})


def _refused(form: Form, err: DomainError) -> int:
    db.session.rollback()
    form.error = refusal(err)
    return status_of(err)


def _done(message: str, endpoint: str, **values):
    flash(message, "ok")
    return redirect(url_for(endpoint, **values))


# -- scope --------------------------------------------------------------------------------


def _station(code: str) -> dict:
    """The station summary (name, tz, ...) if the manager may manage it; StationNotFound otherwise."""
    return manage_service.station_summary(manage_service.managed_station(db.session, page_user(), code))


def _station_row(code: str) -> m.Station:
    return manage_service.managed_station(db.session, page_user(), code)


def _render(template: str, station: dict, status: int = 200, **context):
    return render_template(template, station=station, tz=station["tz"], now=now(), **context), status


# -- my stations and the live view --------------------------------------------------------


@bp.get("/")
@manager_required
def index():
    at = now()
    user = page_user()
    stations = []
    for s in manage_service.list_stations(db.session, user):
        st = manage_service.managed_station(db.session, user, s["code"])
        stations.append({**s, "attention": len(manage_service.attention(db.session, at, st))})
    return render_template("manage/index.html", stations=stations)


def _live(code: str) -> dict:
    at = now()
    user = page_user()
    view = manage_service.station_view(db.session, at, user, code)
    station = manage_service.managed_station(db.session, user, code)
    for c in view["chargers"]:
        status_at = c["connectors"][0]["status_at"] if c["connectors"] else None
        c["state"] = i18n.connector_state(c)
        c["since"] = status_at
        c["in_state_seconds"] = (at - status_at).total_seconds() if status_at else None
    view["sensors"] = manage_service.list_sensors(db.session, user, code)
    view["gates"] = manage_service.list_gates(db.session, user, code)
    view["sessions"] = manage_service.open_sessions(db.session, at, station)
    view["as_of"] = at
    return view


@bp.get("/<code>")
@manager_required
def station(code: str):
    """A station live: chargers with their state and time in it, zones, sensors, gates, open sessions, attention."""
    live = _live(code)
    return _render("manage/station.html", live, live=live)


@bp.get("/<code>/live")
@manager_required
def live_fragment(code: str):
    """The live part of the station page alone, fetched every few seconds by manage-live.js."""
    live = _live(code)
    return render_template("manage/_live.html", station=live, tz=live["tz"], now=now(), live=live)


# -- chargers -----------------------------------------------------------------------------


def _chargers_page(code: str, failed: Form | None = None, status: int = 200):
    live = _live(code)
    return _render("manage/chargers.html", live, status, chargers=live["chargers"], forms=Forms(failed))


@bp.get("/<code>/chargers")
@manager_required
def chargers(code: str):
    return _chargers_page(code)


@bp.post("/<code>/chargers/<charger_code>")
@manager_required
def charger_service(code: str, charger_code: str):
    """Take a charger out of service (its bookings move) or put it back; a reason is required."""
    _station(code)
    form = posted(f"charger-{charger_code}")
    wanted = form.text("in_service")
    if wanted not in ("0", "1"):
        form.errors["in_service"] = gettext("Choose in service or out of service.")
    reason = form.reason()
    if not form.ok:
        return _chargers_page(code, form, 422)
    try:
        with transaction():
            out = manage_service.set_charger_in_service(db.session, now(), page_user(), code, charger_code,
                                                        wanted == "1", reason)
    except DomainError as err:
        if status_of(err) == 404:
            raise
        status = _refused(form, err)
        return _chargers_page(code, form, status)
    if wanted == "1":
        message = gettext("%(charger)s is back in service.", charger=charger_code)
    else:
        message = gettext("%(charger)s is out of service; %(n)d booking(s) moved.", charger=charger_code,
                          n=len(out["moved_booking_ids"]))
    return _done(message, ".chargers", code=code)


# -- zones --------------------------------------------------------------------------------


def _zones_page(code: str, failed: Form | None = None, status: int = 200):
    station = _station(code)
    user = page_user()
    zones = manage_service.list_zones(db.session, now(), user, code)
    return _render("manage/zones.html", station, status, zones=zones, forms=Forms(failed),
                   sensors=manage_service.list_sensors(db.session, user, code),
                   gates=manage_service.list_gates(db.session, user, code))


@bp.get("/<code>/zones")
@manager_required
def zones(code: str):
    return _zones_page(code)


ZONE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@bp.post("/<code>/zones")
@manager_required
def add_zone(code: str):
    _station(code)
    form = posted("zone-add")
    zone_code = form.text("code", 100)
    if not ZONE_CODE.fullmatch(zone_code):
        form.errors["code"] = gettext("1 to 64 letters, digits, '-', '_' or '.'.")
    name = form.text("name")
    if not name:
        form.errors["name"] = gettext("Required.")
    capacity = form.whole("capacity", 0, 100000)
    reason = form.reason(required=False)
    if not form.ok:
        return _zones_page(code, form, 422)
    try:
        with transaction():
            manage_service.add_zone(db.session, now(), page_user(), code, zone_code=zone_code, name=name,
                                    capacity=capacity, name_en=form.text("name_en") or None, reason=reason)
    except DomainError as err:
        return _zones_page(code, form, _refused(form, err))
    return _done(gettext("Zone %(zone)s added.", zone=zone_code), ".zones", code=code)


@bp.post("/<code>/zones/<zone_code>")
@manager_required
def update_zone(code: str, zone_code: str):
    _station(code)
    form = posted(f"zone-{zone_code}")
    name = form.text("name")
    if not name:
        form.errors["name"] = gettext("Required.")
    capacity = form.whole("capacity", 0, 100000)
    reason = form.reason(required=False)
    if not form.ok:
        return _zones_page(code, form, 422)
    try:
        with transaction():
            manage_service.update_zone(db.session, now(), page_user(), code, zone_code, reason=reason, name=name,
                                       name_en=form.text("name_en") or None, capacity=capacity)
    except DomainError as err:
        if status_of(err) == 404:
            raise
        return _zones_page(code, form, _refused(form, err))
    return _done(gettext("Zone %(zone)s saved.", zone=zone_code), ".zones", code=code)


@bp.post("/<code>/zones/<zone_code>/count")
@manager_required
def zone_count(code: str, zone_code: str):
    """Set a zone's head count now (a new baseline for the door counts); a reason is required."""
    _station(code)
    form = posted(f"count-{zone_code}")
    count = form.whole("count", 0, 100000)
    reason = form.reason()
    if not form.ok:
        return _zones_page(code, form, 422)
    try:
        with transaction():
            manage_service.set_zone_count(db.session, now(), page_user(), code, zone_code, count, reason)
    except DomainError as err:
        if status_of(err) == 404:
            raise
        return _zones_page(code, form, _refused(form, err))
    return _done(gettext("Zone %(zone)s now counts %(count)d people.", zone=zone_code, count=count),
                 ".zones", code=code)


# -- rules and opening hours -----------------------------------------------------------------


def _rules_page(code: str, failed: Form | None = None, status: int = 200):
    station = _station(code)
    rules = manage_service.get_rules(db.session, page_user(), code)
    return _render("manage/rules.html", station, status, rules=rules, forms=Forms(failed),
                   ranges=manage_service.RULE_RANGES)


@bp.get("/<code>/rules")
@manager_required
def rules(code: str):
    return _rules_page(code)


@bp.post("/<code>/rules")
@manager_required
def update_rules(code: str):
    _station(code)
    form = posted("rules")
    changes: dict = {}
    for key, (lo, hi) in manage_service.RULE_RANGES.items():
        value = form.whole(key, lo, hi)
        if value is not None:
            changes[key] = value
    slot = changes.get("slot_minutes")
    if slot is not None and (24 * 60) % slot:
        form.errors["slot_minutes"] = gettext("Must divide a day (e.g. 15, 30, 60).")
    changes["lounge_reset_time"] = form.hhmm("lounge_reset_time")
    reason = form.reason(required=False)
    if not form.ok:
        return _rules_page(code, form, 422)
    try:
        with transaction():
            manage_service.update_rules(db.session, now(), page_user(), code, reason=reason, **changes)
    except DomainError as err:
        return _rules_page(code, form, _refused(form, err))
    return _done(gettext("Rules saved."), ".rules", code=code)


@bp.post("/<code>/hours")
@manager_required
def opening_hours(code: str):
    """Opening hours, station wall time; both empty with "Open 24 hours" ticked: around the clock. Existing bookings stand."""
    _station(code)
    form = posted("hours")
    opens, closes = form.hhmm("opens_at"), form.hhmm("closes_at")
    around_the_clock = form.values.get("around_the_clock") == "yes"
    if form.ok and opens is None and closes is None and not around_the_clock:
        # Both fields emptied by mistake used to open the station around the clock without a word.
        form.errors["around_the_clock"] = gettext(
            'Both times are empty: tick "Open 24 hours" to open around the clock, or give both times.')
    if form.ok and around_the_clock and (opens is not None or closes is not None):
        form.errors["around_the_clock"] = gettext(
            'Untick "Open 24 hours" to keep opening times, or clear both times to open around the clock.')
    if form.ok and (opens is None) != (closes is None):
        form.errors["closes_at" if closes is None else "opens_at"] = gettext(
            "Give both times, or neither for around the clock.")
    if form.ok and opens is not None and opens == closes:
        form.errors["closes_at"] = gettext("Equal to the opening time: leave both empty for around the clock.")
    reason = form.reason(required=False)
    if not form.ok:
        return _rules_page(code, form, 422)
    try:
        with transaction():
            manage_service.set_opening_hours(db.session, now(), page_user(), code, opens, closes, reason)
    except DomainError as err:
        return _rules_page(code, form, _refused(form, err))
    return _done(gettext("Opening hours saved."), ".rules", code=code)


# -- maintenance windows ------------------------------------------------------------------------


def _maintenance_page(code: str, failed: Form | None = None, status: int = 200):
    station = _station(code)
    include_past = request.args.get("past") == "1"
    windows = manage_service.list_maintenance(db.session, now(), page_user(), code, include_past)
    return _render("manage/maintenance.html", station, status, windows=windows, forms=Forms(failed),
                   include_past=include_past)


@bp.get("/<code>/maintenance")
@manager_required
def maintenance(code: str):
    return _maintenance_page(code)


@bp.post("/<code>/maintenance")
@manager_required
def add_maintenance(code: str):
    """A maintenance window (station time): overlapping active bookings are disrupted and their drivers told."""
    station = _station(code)
    form = posted("maintenance-add")
    at = now()
    starts = form.local_datetime("starts_at", station["tz"])
    ends = form.local_datetime("ends_at", station["tz"])
    if starts is not None and ends is not None and ends <= starts:
        form.errors["ends_at"] = gettext("The end must be after the start.")
    elif ends is not None and ends <= at:
        form.errors["ends_at"] = gettext("That window has already ended.")
    reason = form.reason()
    if not form.ok:
        return _maintenance_page(code, form, 422)
    try:
        with transaction():
            out = manage_service.add_maintenance(db.session, at, page_user(), code, starts, ends, reason)
    except DomainError as err:
        return _maintenance_page(code, form, _refused(form, err))
    return _done(gettext("Maintenance window added; %(n)d booking(s) disrupted.",
                         n=len(out["disrupted_booking_ids"])), ".maintenance", code=code)


@bp.post("/<code>/maintenance/<int:window_id>/delete")
@manager_required
def delete_maintenance(code: str, window_id: int):
    _station(code)
    form = posted(f"maintenance-{window_id}")
    reason = form.reason(required=False)
    if not form.ok:
        return _maintenance_page(code, form, 422)
    try:
        with transaction():
            manage_service.delete_maintenance(db.session, now(), page_user(), code, window_id, reason)
    except DomainError as err:
        if status_of(err) == 404:
            raise
        return _maintenance_page(code, form, _refused(form, err))
    return _done(gettext("Maintenance window removed."), ".maintenance", code=code)


# -- tariffs ------------------------------------------------------------------------------------


def _tariffs_page(code: str, failed: Form | None = None, status: int = 200):
    station = _station(code)
    versions = manage_service.list_tariffs(db.session, page_user(), code)
    at = now()
    current = None
    for v in versions:
        if v["effective_from"] <= at:
            current = v
    return _render("manage/tariffs.html", station, status, versions=versions, current=current,
                   forms=Forms(failed), prices=TARIFF_PRICES, fees=TARIFF_FEES)


@bp.get("/<code>/tariffs")
@manager_required
def tariffs(code: str):
    return _tariffs_page(code)


def _periods(form: Form) -> list[dict] | None:
    raw = (form.values.get("periods") or "").strip()
    if not raw:
        return None
    out = []
    for line in raw.splitlines():
        line = line.strip()
        if not line:
            continue
        match = PERIOD_LINE.fullmatch(line)
        band = BANDS.get(match.group(3).lower()) if match else None
        if band is None or len(out) >= 48:
            form.errors["periods"] = gettext('One period a line: "08:00-11:00 peak" (peak, flat or valley).')
            return None
        out.append({"start": match.group(1), "end": match.group(2), "band": band})
    return out


@bp.post("/<code>/tariffs")
@manager_required
def add_tariff(code: str):
    """A tariff version from a moment now or later; fields left empty carry over from the version before."""
    station = _station(code)
    form = posted("tariff-add")
    fields: dict = {}
    effective = form.local_datetime("effective_from", station["tz"])
    periods = _periods(form)
    if periods is not None:
        fields["periods"] = periods
    for name in TARIFF_PRICES:
        value = form.money(name, PRICE, 10000)
        if value is not None:
            fields[name] = value
    for name in TARIFF_FEES:
        value = form.money(name, YUAN, 100)
        if value is not None:
            fields[name] = value
        elif name in TARIFF_NULLABLE and form.values.get(f"{name}_none"):
            fields[name] = None  # "no cap" ticked
    grace = form.whole("idle_grace_minutes", 0, 24 * 60, required=False)
    if grace is not None:
        fields["idle_grace_minutes"] = grace
    reason = form.reason(required=False)
    if not form.ok:
        return _tariffs_page(code, form, 422)
    try:
        with transaction():
            manage_service.add_tariff(db.session, now(), page_user(), code, reason=reason, effective_from=effective,
                                      **fields)
    except DomainError as err:
        return _tariffs_page(code, form, _refused(form, err))
    return _done(gettext("Tariff version added from %(when)s.", when=i18n.local_datetime(effective, station["tz"])),
                 ".tariffs", code=code)


# -- receipts: waive or correct a fee ------------------------------------------------------------


def _before_arg() -> int | None:
    raw = request.args.get("before", "")
    return int(raw) if WHOLE.fullmatch(raw) and 0 < int(raw) <= INT_MAX else None


@bp.get("/<code>/receipts")
@manager_required
def receipts(code: str):
    """The station's receipts, newest first; ``?q=`` a receipt number or a plate."""
    station = _station_row(code)
    wanted = _query_text("q")
    rows, next_before = manage_service.station_receipts(db.session, station, wanted, PAGE_SIZE, _before_arg())
    return _render("manage/receipts.html", manage_service.station_summary(station), receipts=rows,
                   next_before=next_before, q=wanted)


def _components(kind: str) -> tuple[str, ...]:
    return receipt_service.CHARGING_COMPONENTS if kind == "charging" else receipt_service.PARKING_COMPONENTS


def _receipt_page(code: str, receipt_id: int, failed: Form | None = None, status: int = 200):
    station = _station_row(code)
    receipt = manage_service.station_receipt(db.session, station, receipt_id)
    chain = manage_service.receipt_chain(db.session, receipt)
    root = chain[0]
    components = _components(root.kind)
    standing = {c: sum(getattr(r, c) for r in chain) for c in components}
    return _render("manage/receipt.html", manage_service.station_summary(station), status, receipt=receipt,
                   root=root, chain=chain, components=components, standing=standing,
                   standing_total=sum(standing.values()), forms=Forms(failed))


@bp.get("/<code>/receipts/<int:receipt_id>")
@manager_required
def receipt(code: str, receipt_id: int):
    return _receipt_page(code, receipt_id)


@bp.post("/<code>/receipts/<int:receipt_id>/waive")
@manager_required
def waive_fee(code: str, receipt_id: int):
    """Waive one fee of a receipt, or all of it, by a correction receipt; a reason is required."""
    station = _station_row(code)
    root = manage_service.receipt_chain(db.session, manage_service.station_receipt(db.session, station, receipt_id))[0]
    form = posted("waive")
    component = form.text("component") or None
    if component is not None and component not in _components(root.kind):
        form.errors["component"] = gettext("Choose a fee of this receipt.")
    reason = form.reason()
    if not form.ok:
        return _receipt_page(code, receipt_id, form, 422)
    try:
        with transaction():
            correction = manage_service.waive_fee(db.session, now(), page_user(), root.id, reason,
                                                  component)
    except DomainError as err:
        if status_of(err) == 404:
            raise
        return _receipt_page(code, receipt_id, form, _refused(form, err))
    return _done(gettext("Waived: correction receipt #%(id)d issued.", id=correction["id"]), ".receipt",
                 code=code, receipt_id=correction["id"])


@bp.post("/<code>/receipts/<int:receipt_id>/correct")
@manager_required
def correct_fee(code: str, receipt_id: int):
    """Set some fees of a receipt to new amounts (yuan) by a correction receipt; a reason is required."""
    station = _station_row(code)
    chain = manage_service.receipt_chain(db.session, manage_service.station_receipt(db.session, station, receipt_id))
    root = chain[0]
    form = posted("correct")
    amounts = {c: form.money(c, YUAN, 100, required=True) for c in _components(root.kind)}
    reason = form.reason()
    if not form.ok:
        return _receipt_page(code, receipt_id, form, 422)
    standing = {c: sum(getattr(r, c) for r in chain) for c in amounts}
    changed = {c: fen for c, fen in amounts.items() if fen != standing[c]} or amounts  # none changed: refused
    try:
        with transaction():
            correction = manage_service.correct_fee(db.session, now(), page_user(), root.id, reason, **changed)
    except DomainError as err:
        if status_of(err) == 404:
            raise
        return _receipt_page(code, receipt_id, form, _refused(form, err))
    return _done(gettext("Corrected: correction receipt #%(id)d issued.", id=correction["id"]), ".receipt",
                 code=code, receipt_id=correction["id"])


# -- charging sessions: close a stuck one --------------------------------------------------------


@bp.get("/<code>/sessions")
@manager_required
def sessions(code: str):
    """Open sessions (to close a stuck one) and the latest closed ones."""
    station = _station_row(code)
    at = now()
    closed, next_before = manage_service.closed_sessions(db.session, station, PAGE_SIZE, _before_arg())
    return _render("manage/sessions.html", manage_service.station_summary(station),
                   open_sessions=manage_service.open_sessions(db.session, at, station), closed=closed,
                   next_before=next_before)


def _session_page(code: str, session_id: int, failed: Form | None = None, status: int = 200):
    station = _station_row(code)
    cs = manage_service.station_session(db.session, station, session_id)
    began = cs.started_at
    energy = db.session.scalar(select(func.max(m.MeterReading.energy_wh))
                               .where(m.MeterReading.session_id == cs.id))
    return _render("manage/session.html", manage_service.station_summary(station), status, cs=cs, began=began,
                   last_meter_wh=energy, forms=Forms(failed))


@bp.get("/<code>/sessions/<int:session_id>")
@manager_required
def session_detail(code: str, session_id: int):
    return _session_page(code, session_id)


@bp.post("/<code>/sessions/<int:session_id>/close")
@manager_required
def close_session(code: str, session_id: int):
    """Close a stuck session now, or at a given station time; a reason is required."""
    station = _station_row(code)
    manage_service.station_session(db.session, station, session_id)
    form = posted("close")
    at = form.local_datetime("at", station.timezone, required=False)
    reason = form.reason()
    if not form.ok:
        return _session_page(code, session_id, form, 422)
    try:
        with transaction():
            manage_service.close_session(db.session, now(), page_user(), session_id, reason, at)
    except DomainError as err:
        if status_of(err) == 404:
            raise
        return _session_page(code, session_id, form, _refused(form, err))
    return _done(gettext("Session %(id)d closed.", id=session_id), ".session_detail", code=code,
                 session_id=session_id)


# -- parking stays: fix a misread plate ----------------------------------------------------------


@bp.get("/<code>/stays")
@manager_required
def stays(code: str):
    """Parking stays, newest first; ``?plate=`` finds one plate's stays."""
    station = _station_row(code)
    plate = _query_text("plate")
    rows, next_before = manage_service.station_stays(db.session, station, plate, PAGE_SIZE, _before_arg())
    return _render("manage/stays.html", manage_service.station_summary(station), stays=rows,
                   next_before=next_before, plate=plate)


def _stay_page(code: str, stay_id: int, failed: Form | None = None, status: int = 200):
    station = _station_row(code)
    stay = manage_service.station_stay(db.session, station, stay_id)
    receipt = manage_service.parking_receipt(db.session, stay)
    return _render("manage/stay.html", manage_service.station_summary(station), status, stay=stay,
                   receipt=receipt, forms=Forms(failed))


@bp.get("/<code>/stays/<int:stay_id>")
@manager_required
def stay(code: str, stay_id: int):
    return _stay_page(code, stay_id)


@bp.post("/<code>/stays/<int:stay_id>/plate")
@manager_required
def fix_plate(code: str, stay_id: int):
    """Fix a misread plate; an issued parking receipt is rechecked; a reason is required."""
    station = _station_row(code)
    manage_service.station_stay(db.session, station, stay_id)
    form = posted("plate")
    plate = form.text("plate", 100)
    if not plate:
        form.errors["plate"] = gettext("Required.")
    elif len(plate) > 64:
        form.errors["plate"] = gettext("At most %(n)d characters.", n=64)
    reason = form.reason()
    if not form.ok:
        return _stay_page(code, stay_id, form, 422)
    try:
        with transaction():
            out = manage_service.fix_plate(db.session, now(), page_user(), stay_id, plate, reason)
    except DomainError as err:
        if status_of(err) == 404:
            raise
        return _stay_page(code, stay_id, form, _refused(form, err))
    message = gettext("Plate saved: %(plate)s.", plate=out["plate"])
    if out["correction_receipt_id"]:
        message += " " + gettext("Correction receipt #%(id)d issued.", id=out["correction_receipt_id"])
    return _done(message, ".stay", code=code, stay_id=stay_id)


# -- dead letters and the audit log --------------------------------------------------------------


@bp.get("/<code>/dead-letters")
@manager_required
def dead_letters(code: str):
    from chargeapp.services.periodic import dead_letter_retention

    station = _station(code)
    page = manage_service.dead_letters(db.session, page_user(), code, PAGE_SIZE, _before_arg())
    retention = dead_letter_retention(current_app.config)
    drops = manage_service.dead_letter_drops(db.session, page_user(), code, now(), retention)
    return _render("manage/dead_letters.html", station, page=page, drops=drops,
                   retention_days=retention.days if retention else 0,
                   cap=int(current_app.config.get("CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR", 0)))


@bp.get("/<code>/audit")
@manager_required
def audit(code: str):
    station = _station(code)
    page = manage_service.audit_log(db.session, page_user(), code, PAGE_SIZE, _before_arg())
    return _render("manage/audit.html", station, page=page)
