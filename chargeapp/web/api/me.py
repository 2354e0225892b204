"""A driver's own things: notifications, charging sessions, receipts, parking."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.web.fields import StationTime
from chargeapp.web.schemas import ReceiptSchema
from chargeapp.web.security import clock, current_user, login_required

blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="My notifications, sessions, receipts, parking")
AUTH = [{"bearerAuth": []}]


class PageArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


class NotificationSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    message = fields.String()
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
        """My notifications, newest first: held, moved, delayed, disrupted, no-show, suspension."""
        return db.session.scalars(
            select(m.Notification).where(m.Notification.user_id == current_user().id)
            .order_by(m.Notification.id.desc()).limit(args["limit"])
        ).all()


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
    explanation = fields.String()


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
