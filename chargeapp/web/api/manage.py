"""The managers' API: a station live, configuration, fix-ups, dead letters and the audit log.

Every route needs a manager or administrator token (a driver's is a 403, checked
before the body is read). A manager sees only their stations: anything of
another station is a 404, exactly as if it did not exist. Bodies refuse unknown
and read-only fields (422, one message per field). Changes to money, sessions
and plates need a ``reason``; every change is in the audit log. A changing view is
``@committed`` (chargeapp/web/transaction.py): its service flushes, the view's
return commits, a refusal rolls back.
"""
from __future__ import annotations

import re
from datetime import time
from functools import wraps

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from chargeapp.db import db
from chargeapp.services import manage
from chargeapp.web import messages
from chargeapp.web.fields import Instant, StationTime
from chargeapp.web.schemas import ReceiptSchema, ZoneSchema
from chargeapp.web.security import clock, current_user, manager_required
from chargeapp.web.transaction import committed

blp = Blueprint("manage", __name__, url_prefix="/api/v1/manage",
                description="Managers: live view, configuration and fix-ups of their stations")
AUTH = [{"bearerAuth": []}]
HHMM = re.compile(r"([01]\d|2[0-3]):[0-5]\d")
COMPONENTS = ("energy", "service", "idle", "parking")


# -- fields ---------------------------------------------------------------------------


class WallTime(fields.String):
    """A station wall-clock time written "HH:MM" (00:00 to 23:59)."""

    default_error_messages = {"invalid": 'Write a time as "HH:MM", 00:00 to 23:59.'}

    def __init__(self, **kwargs):
        kwargs.setdefault("metadata", {}).update(pattern=HHMM.pattern, example="04:00")
        super().__init__(**kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return value.strftime("%H:%M") if isinstance(value, time) else value

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not HHMM.fullmatch(value):
            raise self.make_error("invalid")
        return time(int(value[:2]), int(value[3:]))


class ReadOnly(fields.Raw):
    """A field the server sets: named in a body, it is refused with its own message."""

    def __init__(self, **kwargs):
        super().__init__(metadata={"readOnly": True, "description": "set by the server; refused in a body"},
                         **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        raise ValidationError("Read-only: set by the server.")


def _not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("Say why: the reason is kept in the audit log.")


def Reason(required: bool = True):  # noqa: N802 (a field factory reads like a field)
    """Why a change is made (kept in the audit log with who made it)."""
    if required:
        return fields.String(required=True, validate=[validate.Length(min=1, max=500), _not_blank],
                             metadata={"description": "why (kept in the audit log)"})
    return fields.String(load_default="", validate=validate.Length(max=500),
                         metadata={"description": "why (kept in the audit log)"})


def Count(**kwargs):  # noqa: N802
    return fields.Integer(strict=True, validate=validate.Range(min=0), **kwargs)


class Body(Schema):
    """A request body: unknown fields are refused (marshmallow RAISE); so are the server's own."""

    id = ReadOnly()
    station_id = ReadOnly()
    created_at = ReadOnly()


# -- response schemas -----------------------------------------------------------------


class ManagedStation(Schema):
    code = fields.String()
    name = fields.String()
    name_en = fields.String(allow_none=True)
    address = fields.String()
    district = fields.String()
    timezone = fields.String()
    opens_at = fields.String(allow_none=True)
    closes_at = fields.String(allow_none=True)
    is_demo = fields.Boolean()
    fast_total = fields.Integer()
    slow_total = fields.Integer()


class ManagedConnector(Schema):
    number = fields.Integer()
    status = fields.String()
    error_code = fields.String()
    status_at = StationTime(allow_none=True, metadata={"description": "when the current status began"})


class ManagedCharger(Schema):
    code = fields.String()
    kind = fields.String()
    level = fields.String()
    max_power_kw = fields.Integer()
    in_service = fields.Boolean()
    online = fields.Boolean()
    status = fields.String(metadata={"description": "OCPP 1.6 status of connector 1"})
    error_code = fields.String()
    connectors = fields.List(fields.Nested(ManagedConnector))


class ManagedChargerChanged(ManagedCharger):
    moved_booking_ids = fields.List(fields.Integer(), metadata={"description": "bookings moved, delayed or disrupted"})


class AttentionSchema(Schema):
    kind = fields.String(metadata={"description": "charger_faulted, charger_unavailable, charger_offline, "
                                                  "sensor_offline, gate_offline, session_stuck, "
                                                  "hold_unacknowledged, command_failed, dead_letters"})
    target = fields.String()
    message = fields.String(metadata={"description": "In English (kept for older clients)."})
    code = fields.String(metadata={"description": "The kind, as the code of the text"})
    params = fields.Dict(metadata={"description": "The code's parameters (station-local times as text)"})
    text = fields.String(metadata={"description": "The item in the language of Accept-Language (zh first, "
                                                  "else en); Content-Language says which"})
    since = StationTime(allow_none=True)
    data = fields.Dict()


class StationLive(ManagedStation):
    chargers = fields.List(fields.Nested(ManagedCharger))
    zones = fields.List(fields.Nested(ZoneSchema))
    attention = fields.List(fields.Nested(AttentionSchema))
    dead_letters_24h = fields.Integer()


class ManagedSensor(Schema):
    code = fields.String()
    zone_in = fields.String()
    zone_out = fields.String(allow_none=True)
    online = fields.Boolean()
    boot = fields.Integer(allow_none=True)
    seq = fields.Integer(allow_none=True)
    in_total = fields.Integer(allow_none=True)
    out_total = fields.Integer(allow_none=True)


class ManagedGate(Schema):
    code = fields.String()
    name = fields.String()
    online = fields.Boolean()


RulesSchema = type("RulesSchema", (Schema,), {
    **{name: fields.Integer() for name in manage.RULE_RANGES},
    "lounge_reset_time": WallTime(allow_none=True, metadata={"description": "nightly lounge reset; null: off"}),
})


class HoursSchema(Schema):
    opens_at = WallTime(allow_none=True)
    closes_at = WallTime(allow_none=True)


class MaintenanceSchema(Schema):
    id = fields.Integer()
    starts_at = StationTime()
    ends_at = StationTime()
    reason = fields.String()


class MaintenanceCreated(MaintenanceSchema):
    disrupted_booking_ids = fields.List(fields.Integer())


class TariffPeriod(Schema):
    start = fields.String(required=True, validate=validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$"))
    end = fields.String(required=True, validate=validate.Regexp(r"^(([01]\d|2[0-3]):[0-5]\d|24:00)$"))
    band = fields.String(required=True, validate=validate.OneOf(["peak", "flat", "valley"]))


class ManagedTariff(Schema):
    id = fields.Integer()
    effective_from = StationTime()
    periods = fields.List(fields.Nested(TariffPeriod))
    peak_price = fields.Integer(metadata={"description": "1/10,000 CNY per kWh"})
    flat_price = fields.Integer()
    valley_price = fields.Integer()
    service_fee = fields.Integer(metadata={"description": "1/10,000 CNY per kWh"})
    idle_grace_minutes = fields.Integer()
    idle_fee_per_minute_fen = fields.Integer()
    idle_fee_cap_fen = fields.Integer(allow_none=True)
    parking_block_fen = fields.Integer()
    parking_daily_cap_fen = fields.Integer(allow_none=True)
    currency = fields.String()
    created_at = StationTime()


class ManagedSession(Schema):
    id = fields.Integer()
    charger = fields.String()
    transaction_id = fields.Integer()
    started_at = StationTime(allow_none=True)
    stopped_at = StationTime(allow_none=True)
    closed_by = fields.String(allow_none=True)
    flags = fields.List(fields.String())


class ManagedStay(Schema):
    id = fields.Integer()
    plate = fields.String()
    entry_at = StationTime(allow_none=True)
    exit_at = StationTime(allow_none=True)
    settled_at = StationTime(allow_none=True)
    flags = fields.List(fields.String())
    correction_receipt_id = fields.Integer(allow_none=True, metadata={"description": "a correction the fix caused"})


class DeadLetterEntry(Schema):
    id = fields.Integer()
    received_at = StationTime()
    station = fields.String(allow_none=True)
    topic = fields.String()
    reason = fields.String()
    detail = fields.String()
    payload = fields.String(metadata={"description": "UTF-8 text, undecodable bytes replaced by U+FFFD"})
    payload_bytes = fields.Integer()


class DeadLetterPage(Schema):
    items = fields.List(fields.Nested(DeadLetterEntry))
    next_before = fields.Integer(allow_none=True, metadata={"description": "pass as ?before= for the next page"})


class AuditLogEntry(Schema):
    id = fields.Integer()
    at = StationTime()
    user_id = fields.Integer(allow_none=True)
    user_email = fields.String(allow_none=True)
    user_name = fields.String(allow_none=True)
    station = fields.String(allow_none=True)
    action = fields.String()
    target_type = fields.String()
    target_id = fields.Integer(allow_none=True)
    reason = fields.String()
    before = fields.Dict(allow_none=True)
    after = fields.Dict(allow_none=True)


class AuditPage(Schema):
    items = fields.List(fields.Nested(AuditLogEntry))
    next_before = fields.Integer(allow_none=True, metadata={"description": "pass as ?before= for the next page"})


# -- request schemas ------------------------------------------------------------------


class ChargerPatch(Body):
    in_service = fields.Boolean(required=True, metadata={"description": "false: out of service (Inoperative)"})
    reason = Reason()
    code = ReadOnly()
    kind = ReadOnly()
    online = ReadOnly()
    status = ReadOnly()


class ZoneCreate(Body):
    code = fields.String(required=True, validate=[validate.Length(min=1, max=64),
                                                  validate.Regexp(r"^[A-Za-z0-9_.-]+$")])
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    name_en = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=200))
    capacity = Count(required=True, metadata={"description": "people"})
    reason = Reason(required=False)
    count = ReadOnly()
    free = ReadOnly()
    uncertain = ReadOnly()


class ZonePatch(Body):
    name = fields.String(validate=validate.Length(min=1, max=200))
    name_en = fields.String(allow_none=True, validate=validate.Length(max=200))
    capacity = Count(metadata={"description": "people"})
    reason = Reason(required=False)
    code = ReadOnly()
    count = ReadOnly()
    free = ReadOnly()
    uncertain = ReadOnly()

    @validates_schema
    def something_to_change(self, data, **kwargs):
        if not {"name", "name_en", "capacity"} & set(data):
            raise ValidationError("Give name, name_en or capacity.", "_schema")


class ZoneCountBody(Body):
    count = Count(required=True, metadata={"description": "people in the zone now"})
    reason = Reason()


RulesPatch = type("RulesPatch", (Body,), {
    **{name: fields.Integer(strict=True, validate=validate.Range(lo, hi))
       for name, (lo, hi) in manage.RULE_RANGES.items()},
    "lounge_reset_time": WallTime(allow_none=True, metadata={"description": "HH:MM, or null for no nightly reset"}),
    "reason": Reason(required=False),
    "_check": validates_schema(lambda self, data, **kw: _rules_patch_check(data)),
})


def _rules_patch_check(data: dict) -> None:
    if not set(data) - {"reason"}:
        raise ValidationError("Give at least one rule to change.", "_schema")
    slot = data.get("slot_minutes")
    if slot is not None and (24 * 60) % slot:
        raise ValidationError("Must divide a day (e.g. 15, 30, 60).", "slot_minutes")


class HoursBody(Body):
    opens_at = WallTime(required=True, allow_none=True)
    closes_at = WallTime(required=True, allow_none=True)
    reason = Reason(required=False)

    @validates_schema
    def both_or_neither(self, data, **kwargs):
        if (data["opens_at"] is None) != (data["closes_at"] is None):
            raise ValidationError("Give both times, or both null for around the clock.", "closes_at")
        if data["opens_at"] is not None and data["opens_at"] == data["closes_at"]:
            raise ValidationError("Equal to opens_at: use null for both to open around the clock.", "closes_at")


class MaintenanceBody(Body):
    starts_at = Instant(required=True, metadata={"description": "RFC 3339 with offset"})
    ends_at = Instant(required=True, metadata={"description": "RFC 3339 with offset, after starts_at"})
    reason = Reason()

    @validates_schema
    def ends_after_start(self, data, **kwargs):
        if data["ends_at"] <= data["starts_at"]:
            raise ValidationError("Must be after starts_at.", "ends_at")


class MaintenanceListArgs(Schema):
    include_past = fields.Boolean(load_default=False)


class MaintenanceDeleteArgs(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=500))


class TariffBody(Body):
    effective_from = Instant(required=True,
                                          metadata={"description": "RFC 3339 with offset; not in the past"})
    periods = fields.List(fields.Nested(TariffPeriod), validate=validate.Length(min=1, max=48),
                          metadata={"description": "station wall time, covering the day once"})
    peak_price = Count(metadata={"description": "1/10,000 CNY per kWh"})
    flat_price = Count(metadata={"description": "1/10,000 CNY per kWh"})
    valley_price = Count(metadata={"description": "1/10,000 CNY per kWh"})
    service_fee = Count(metadata={"description": "1/10,000 CNY per kWh"})
    idle_grace_minutes = Count()
    idle_fee_per_minute_fen = Count()
    idle_fee_cap_fen = Count(allow_none=True)
    parking_block_fen = Count()
    parking_daily_cap_fen = Count(allow_none=True)
    currency = fields.String(validate=validate.Regexp(r"^[A-Z]{3}$"))
    reason = Reason(required=False)


class WaiveBody(Body):
    reason = Reason()
    component = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(COMPONENTS),
                              metadata={"description": "one component; omit to waive the whole receipt"})


class CorrectBody(Body):
    reason = Reason()
    energy_fen = Count()
    service_fen = Count()
    idle_fen = Count()
    parking_fen = Count()

    @validates_schema
    def something_to_correct(self, data, **kwargs):
        if not {f"{c}_fen" for c in COMPONENTS} & set(data):
            raise ValidationError("Give at least one of energy_fen, service_fen, idle_fen, parking_fen.", "_schema")


class CloseBody(Body):
    reason = Reason()
    at = Instant(load_default=None, allow_none=True,
                              metadata={"description": "when it ended (RFC 3339 with offset); default now"})


class PlateBody(Body):
    plate = fields.String(required=True, validate=validate.Length(min=1, max=64))
    reason = Reason()


class ManagePageArgs(Schema):
    station = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    limit = fields.Integer(load_default=50, validate=validate.Range(1, manage.PAGE_MAX))
    before = fields.Integer(load_default=None, validate=validate.Range(min=1),
                            metadata={"description": "only entries with a smaller id (the next page)"})


# -- views ----------------------------------------------------------------------------


def in_scope(view):
    """A station or row of a route outside the manager's scope is a 404 before the body is read (as for drivers)."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        manage.check_scope(db.session, current_user(), kwargs)
        return view(*args, **kwargs)
    return wrapper


class ManageView(MethodView):
    # Applied to the whole view (the last outermost): a driver gets 403, and another station's manager 404,
    # before the body is read.
    decorators = [in_scope, manager_required]


def _session_and_now():
    return db.session, clock().now()


@blp.route("/stations")
class Stations(ManageView):
    @blp.response(200, ManagedStation(many=True))
    @blp.doc(security=AUTH)
    def get(self):
        """My stations (every station for an administrator)."""
        return manage.list_stations(db.session, current_user())


@blp.route("/stations/<code>")
class StationLiveView(ManageView):
    @blp.response(200, StationLive)
    @blp.doc(security=AUTH)
    def get(self, code):
        """A station live: chargers, zones, and what needs attention (``text`` in the Accept-Language)."""
        view = manage.station_view(db.session, clock().now(), current_user(), code)
        lang = messages.api_language()
        messages.say_content_language(lang)
        for item in view["attention"]:
            item["text"] = messages.in_language(lang, messages.attention_text, item)
        return view


@blp.route("/stations/<code>/chargers/<charger>")
class ChargerView(ManageView):
    @blp.arguments(ChargerPatch)
    @blp.response(200, ManagedChargerChanged)
    @blp.doc(security=AUTH)
    @committed
    def patch(self, body, code, charger):
        """Take a charger out of service (its bookings move) or put it back; audited."""
        session, now = _session_and_now()
        return manage.set_charger_in_service(session, now, current_user(), code, charger, body["in_service"],
                                             body["reason"])


@blp.route("/stations/<code>/zones")
class Zones(ManageView):
    @blp.response(200, ZoneSchema(many=True))
    @blp.doc(security=AUTH)
    def get(self, code):
        """The lounge zones with their count now."""
        return manage.list_zones(db.session, clock().now(), current_user(), code)

    @blp.arguments(ZoneCreate)
    @blp.response(201, ZoneSchema)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body, code):
        """Add a lounge zone."""
        session, now = _session_and_now()
        return manage.add_zone(session, now, current_user(), code, zone_code=body["code"], name=body["name"],
                               capacity=body["capacity"], name_en=body["name_en"], reason=body["reason"])


@blp.route("/stations/<code>/zones/<zone>")
class ZoneView(ManageView):
    @blp.arguments(ZonePatch)
    @blp.response(200, ZoneSchema)
    @blp.doc(security=AUTH)
    @committed
    def patch(self, body, code, zone):
        """Rename a zone or change its capacity."""
        session, now = _session_and_now()
        return manage.update_zone(session, now, current_user(), code, zone, **body)


@blp.route("/stations/<code>/zones/<zone>/count")
class ZoneCount(ManageView):
    @blp.arguments(ZoneCountBody)
    @blp.response(200, ZoneSchema)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body, code, zone):
        """Set a zone's head count now (a new baseline); audited."""
        session, now = _session_and_now()
        return manage.set_zone_count(session, now, current_user(), code, zone, body["count"], body["reason"])


@blp.route("/stations/<code>/sensors")
class Sensors(ManageView):
    @blp.response(200, ManagedSensor(many=True))
    @blp.doc(security=AUTH)
    def get(self, code):
        """Door sensors with their zones and online flags."""
        return manage.list_sensors(db.session, current_user(), code)


@blp.route("/stations/<code>/gates")
class Gates(ManageView):
    @blp.response(200, ManagedGate(many=True))
    @blp.doc(security=AUTH)
    def get(self, code):
        """Garage gates with their online flags."""
        return manage.list_gates(db.session, current_user(), code)


@blp.route("/stations/<code>/rules")
class Rules(ManageView):
    @blp.response(200, RulesSchema)
    @blp.doc(security=AUTH)
    def get(self, code):
        """The station's rules."""
        return manage.get_rules(db.session, current_user(), code)

    @blp.arguments(RulesPatch)
    @blp.response(200, RulesSchema)
    @blp.doc(security=AUTH)
    @committed
    def patch(self, body, code):
        """Change some rules (minutes and days > 0, counts >= 0, lounge_reset_time HH:MM or null); audited."""
        session, now = _session_and_now()
        return manage.update_rules(session, now, current_user(), code, **body)


@blp.route("/stations/<code>/hours")
class Hours(ManageView):
    @blp.arguments(HoursBody)
    @blp.response(200, HoursSchema)
    @blp.doc(security=AUTH)
    @committed
    def patch(self, body, code):
        """Set opening hours (HH:MM station time; both null: around the clock); existing bookings stand."""
        session, now = _session_and_now()
        return manage.set_opening_hours(session, now, current_user(), code, body["opens_at"], body["closes_at"],
                                        body["reason"])


@blp.route("/stations/<code>/maintenance")
class Maintenance(ManageView):
    @blp.arguments(MaintenanceListArgs, location="query")
    @blp.response(200, MaintenanceSchema(many=True))
    @blp.doc(security=AUTH)
    def get(self, args, code):
        """Current and future maintenance windows (all with include_past=true)."""
        return manage.list_maintenance(db.session, clock().now(), current_user(), code, args["include_past"])

    @blp.arguments(MaintenanceBody)
    @blp.response(201, MaintenanceCreated)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body, code):
        """Add a maintenance window: overlapping active bookings are disrupted and their drivers told."""
        session, now = _session_and_now()
        return manage.add_maintenance(session, now, current_user(), code, body["starts_at"], body["ends_at"],
                                      body["reason"])


@blp.route("/stations/<code>/maintenance/<int:window_id>")
class MaintenanceWindowView(ManageView):
    @blp.arguments(MaintenanceDeleteArgs, location="query")
    @blp.response(204)
    @blp.doc(security=AUTH)
    @committed
    def delete(self, args, code, window_id):
        """Remove a current or future maintenance window (an ended one is history: 409)."""
        session, now = _session_and_now()
        manage.delete_maintenance(session, now, current_user(), code, window_id, args["reason"])


@blp.route("/stations/<code>/tariffs")
class Tariffs(ManageView):
    @blp.response(200, ManagedTariff(many=True))
    @blp.doc(security=AUTH)
    def get(self, code):
        """Every tariff version, oldest first."""
        return manage.list_tariffs(db.session, current_user(), code)

    @blp.arguments(TariffBody)
    @blp.response(201, ManagedTariff)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body, code):
        """Add a tariff version from effective_from (not in the past); fields left out carry over."""
        session, now = _session_and_now()
        return manage.add_tariff(session, now, current_user(), code, **body)


@blp.route("/receipts/<int:receipt_id>/waive")
class WaiveReceipt(ManageView):
    @blp.arguments(WaiveBody)
    @blp.response(200, ReceiptSchema)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body, receipt_id):
        """Waive a fee (one component or the whole receipt); returns the correction; audited."""
        session, now = _session_and_now()
        return manage.waive_fee(session, now, current_user(), receipt_id, body["reason"], body["component"])


@blp.route("/receipts/<int:receipt_id>/correct")
class CorrectReceipt(ManageView):
    @blp.arguments(CorrectBody)
    @blp.response(200, ReceiptSchema)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body, receipt_id):
        """Correct some components (fen); returns the correction; audited."""
        session, now = _session_and_now()
        reason = body.pop("reason")
        return manage.correct_fee(session, now, current_user(), receipt_id, reason, **body)


@blp.route("/sessions/<int:session_id>/close")
class CloseSession(ManageView):
    @blp.arguments(CloseBody)
    @blp.response(200, ManagedSession)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body, session_id):
        """Close a stuck charging session (at a given instant, default now); audited."""
        session, now = _session_and_now()
        return manage.close_session(session, now, current_user(), session_id, body["reason"], body["at"])


@blp.route("/stays/<int:stay_id>/plate")
class FixPlate(ManageView):
    @blp.arguments(PlateBody)
    @blp.response(200, ManagedStay)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body, stay_id):
        """Fix a misread plate; its parking receipt is rechecked; audited."""
        session, now = _session_and_now()
        return manage.fix_plate(session, now, current_user(), stay_id, body["plate"], body["reason"])


@blp.route("/dead-letters")
class DeadLetters(ManageView):
    @blp.arguments(ManagePageArgs, location="query")
    @blp.response(200, DeadLetterPage)
    @blp.doc(security=AUTH)
    def get(self, args):
        """Dead-lettered messages, newest first (limit <= 200; ?before= pages on)."""
        return manage.dead_letters(db.session, current_user(), args["station"], args["limit"], args["before"])


@blp.route("/audit")
class Audit(ManageView):
    @blp.arguments(ManagePageArgs, location="query")
    @blp.response(200, AuditPage)
    @blp.doc(security=AUTH)
    def get(self, args):
        """The audit log, newest first (limit <= 200; ?before= pages on)."""
        return manage.audit_log(db.session, current_user(), args["station"], args["limit"], args["before"])
