"""A driver's own things: profile (name, plates, password), notifications, charging sessions, receipts, parking."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.web import messages
from chargeapp.web.fields import StationTime
from chargeapp.web.login_limits import login_limited
from chargeapp.web.schemas import ReceiptSchema
from chargeapp.web.security import clock, current_user, hasher, issue_token, login_required
from chargeapp.web.transaction import committed, transaction

blp = Blueprint("me", __name__, url_prefix="/api/v1/me",
                description="My profile, plates, password, notifications, sessions, receipts, parking")
AUTH = [{"bearerAuth": []}]


class PageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class NotificationSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    message = fields.String(metadata={"description": "The English sentence, as stored (kept for older clients)."})
    code = fields.String(allow_none=True, metadata={
        "description": "What happened (booked, held, moved, delayed, disrupted_maintenance, ...); null on an "
                       "old notification whose sentence could not be read: then text is the message."})
    params = fields.Dict(allow_none=True, metadata={
        "description": "The code's parameters: station-local times as text, money in fen, energy in Wh."})
    text = fields.String(metadata={
        "description": "The notification in the language of Accept-Language (zh first, else en; Chinese "
                       "when neither is asked for); Content-Language says which."})
    booking_id = fields.Integer(allow_none=True)
    created_at = fields.AwareDateTime()
    read_at = fields.AwareDateTime(allow_none=True)


@blp.route("/notifications")
class Notifications(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, NotificationSchema(many=True))
    @blp.doc(security=AUTH)
    def get(self, args):
        """My notifications, newest first: held, moved, delayed, disrupted, no-show, suspension.

        ``text`` is in the language of ``Accept-Language`` (Chinese first); ``message`` stays English.
        """
        rows = db.session.scalars(
            select(m.Notification).where(m.Notification.user_id == current_user().id)
            .order_by(m.Notification.id.desc()).limit(args["limit"])
        ).all()
        lang = messages.api_language()
        messages.say_content_language(lang)
        return [{"id": n.id, "kind": n.kind, "message": n.message, "code": n.code, "params": n.params,
                 "text": messages.in_language(lang, messages.notification_text, n), "booking_id": n.booking_id,
                 "created_at": n.created_at, "read_at": n.read_at} for n in rows]


class SessionSchema(Schema):
    id = fields.Integer()
    station = fields.Function(lambda s: s.station.code)
    charger = fields.Function(lambda s: s.charger.code)
    transaction_id = fields.Integer()
    started_at = StationTime(allow_none=True)
    stopped_at = StationTime(allow_none=True)
    energy_wh = fields.Method("_energy")
    stop_reason = fields.String(allow_none=True)
    closed_by = fields.String(allow_none=True)
    open = fields.Function(lambda s: s.closed_by is None)

    def _energy(self, s):
        if s.start_meter_wh is None or s.stop_meter_wh is None:
            return None
        return max(0, s.stop_meter_wh - s.start_meter_wh)


class ParkingStatusSchema(Schema):
    stay_id = fields.Integer()
    station = fields.String(attribute="station_code")
    plate = fields.String()
    entry_at = StationTime()
    charging_seconds = fields.Integer()
    qualify_seconds = fields.Integer()
    still_needed_seconds = fields.Integer()
    qualified = fields.Boolean()
    free_until = StationTime(allow_none=True)
    fee_fen_if_left_now = fields.Integer()
    currency = fields.String()
    explanation = fields.String(metadata={"description": "In English (kept for older clients)."})
    explanation_lines = fields.List(fields.Dict(), metadata={
        "description": "The explanation as lines of a code and params (as a receipt's)."})
    explanation_text = fields.Method("_explanation_text", metadata={
        "description": "The explanation in the language of Accept-Language (zh first, else en)."})

    def _explanation_text(self, status):
        lang = messages.api_language()
        messages.say_content_language(lang)
        return messages.in_language(lang, messages.receipt_text, status)


@blp.route("/sessions")
class Sessions(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, SessionSchema(many=True))
    @blp.doc(security=AUTH)
    def get(self, args):
        """My charging sessions, newest first."""
        from chargeapp.services import charging

        return charging.driver_sessions(db.session, current_user().id, args["limit"])


@blp.route("/receipts")
class Receipts(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, ReceiptSchema(many=True))
    @blp.doc(security=AUTH)
    def get(self, args):
        """My receipts and their corrections (a correction's figures are deltas), newest first."""
        from chargeapp.services import receipts

        return receipts.driver_receipts(db.session, current_user().id, args["limit"])


@blp.route("/parking")
class Parking(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.response(200, ParkingStatusSchema(many=True))
    @blp.doc(security=AUTH)
    def get(self):
        """My open parking stays: charged so far, free until when, and the fee if I left now."""
        from chargeapp.services import receipts
        from chargeapp.services.common import station_tz

        rows = receipts.parking_status(db.session, clock().now(), current_user().id)
        for r in rows:
            r["tz"] = station_tz(db.session.get(m.Station, r["station_id"]))
        return rows


# -- profile, plates, password --------------------------------------------------------------

class PlateSchema(Schema):
    plate = fields.String(metadata={"description": "normalised: 沪A12345, 沪AD12345"})
    since = fields.AwareDateTime()


class ProfileSchema(Schema):
    id = fields.Integer()
    email = fields.String()
    name = fields.String()
    role = fields.String()
    plates = fields.List(fields.Nested(PlateSchema))
    id_tags = fields.List(fields.String())
    suspended_until = fields.AwareDateTime(allow_none=True)


class ProfileChangeSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(max=100))


class NewPlateSchema(Schema):
    plate = fields.String(required=True, validate=validate.Length(min=1, max=32), metadata={
        "description": "an ordinary (沪A12345) or new-energy (沪AD12345, 沪A12345D) mainland plate; "
                       "full-width characters, spaces and dots are normalised away"})


class PasswordChangeSchema(Schema):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(max=200))
    new_password = fields.String(required=True, load_only=True, validate=validate.Length(min=8, max=200))


class NewTokenSchema(Schema):
    token = fields.String(metadata={"description": "replaces every earlier token of the account"})


@blp.route("/profile")
class Profile(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.response(200, ProfileSchema)
    @blp.doc(security=AUTH)
    def get(self):
        """My account: email, name, the plates registered to me now (free parking follows them), my id tags."""
        from chargeapp.services import accounts

        return accounts.profile(db.session, current_user())

    @blp.arguments(ProfileChangeSchema)
    @blp.response(200, ProfileSchema)
    @blp.doc(security=AUTH)
    def patch(self, body):
        """Change my name."""
        from chargeapp.services import accounts

        with transaction():
            accounts.rename(db.session, current_user(), body["name"])
        return accounts.profile(db.session, current_user())


@blp.route("/plates")
class Plates(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.arguments(NewPlateSchema)
    @blp.response(201, PlateSchema)
    @blp.doc(security=AUTH)
    @committed
    def post(self, body):
        """Register a plate from now (at most 5 at a time). A plate off the format is a 422 whose code names the
        rule (plate_province, plate_office_letter, plate_length, plate_serial, plate_new_energy, plate_special)."""
        from chargeapp.services import accounts

        return accounts.add_plate(db.session, clock().now(), current_user(), body["plate"])


@blp.route("/plates/<string:plate>")
class PlateItem(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.response(204)
    @blp.doc(security=AUTH)
    @committed
    def delete(self, plate):
        """Unregister a plate from now; stays parked before keep the charging counted while it was mine."""
        from chargeapp.services import accounts

        accounts.remove_plate(db.session, clock().now(), current_user(), plate)


@blp.route("/password")
class Password(MethodView):
    # 401 before any body is read; a wrong current password counts like a refused login (web/login_limits.py).
    decorators = [login_required, login_limited(lambda resp: resp.status_code == 422)]

    @blp.arguments(PasswordChangeSchema)
    @blp.response(200, NewTokenSchema)
    @blp.doc(security=AUTH)
    def post(self, body):
        """Change my password (the current one is required). Every earlier token and page session ends;
        the answer carries this client's new token."""
        from chargeapp.services import accounts

        with transaction():
            user = accounts.change_password(db.session, hasher(), current_user(), body["current_password"],
                                            body["new_password"])
        return {"token": issue_token(user)}
