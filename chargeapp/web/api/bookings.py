"""A driver's bookings: book, list, see, cancel."""
from __future__ import annotations

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from chargeapp.db import db
from chargeapp.domain import booking as rules
from chargeapp.domain.errors import InvalidRequest
from chargeapp.services import booking as booking_service
from chargeapp.services.common import booking_rules
from chargeapp.web.fields import Instant, StationTime
from chargeapp.web.security import clock, current_user, login_required
from chargeapp.web.transaction import committed

blp = Blueprint("bookings", __name__, url_prefix="/api/v1/bookings", description="Fast-charge slot bookings")
AUTH = [{"bearerAuth": []}]


class BadIdempotencyKey(InvalidRequest):
    """The Idempotency-Key header must be 1 to 100 printable characters."""

    code = "bad_idempotency_key"


class BookingRequest(Schema):
    station = fields.String(required=True, validate=validate.Length(min=1, max=64))
    slot_start = Instant(required=True, metadata={"description": "RFC 3339 with offset, on the :00/:30 grid"})
    charger = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1, max=64),
                            metadata={"description": "a named fast charger; omit for any"})


class BookingSchema(Schema):
    id = fields.Integer()
    station = fields.Function(lambda b: b.station.code)
    station_name = fields.Function(lambda b: b.station.name)
    charger = fields.Function(lambda b: b.charger.code if b.charger else None)
    level = fields.Function(lambda b: b.charger.level if b.charger else None)
    slot_start = StationTime()
    slot_end = StationTime()
    status = fields.String()
    created_at = StationTime()
    held_at = StationTime(allow_none=True)
    checkin_opens_at = fields.Method("_opens")
    checkin_deadline = fields.Method("_deadline")
    delay_seconds = fields.Integer()
    checked_in_at = StationTime(allow_none=True)
    cancelled_at = StationTime(allow_none=True)
    no_show_at = StationTime(allow_none=True)

    def _window(self, b):
        return rules.checkin_window(b.slot_start, booking_rules(b.station), booking_service.late_hold(b))

    def _opens(self, b):
        return StationTime()._serialize(self._window(b)[0], None, b)

    def _deadline(self, b):
        return StationTime()._serialize(self._window(b)[1], None, b)


class ListArgs(Schema):
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 200))


@blp.route("")
class Bookings(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.arguments(BookingRequest)
    @blp.response(201, BookingSchema)
    @blp.doc(security=AUTH, parameters=[{"in": "header", "name": "Idempotency-Key", "required": False,
                                         "schema": {"type": "string", "maxLength": 100}}])
    def post(self, body):
        """Book a slot; with an Idempotency-Key header a retry returns the first result.

        Each booking rule refuses with its own ``code`` (docs/rules.md): 422 ``slot_not_on_grid``,
        ``slot_in_past``, ``slot_too_far_ahead``, ``station_closed``, ``station_maintenance``,
        ``charger_not_bookable``, ``idempotency_key_reused``; 409 ``slot_unavailable`` (every bookable
        fast charger taken), ``active_booking_exists``; 403 ``driver_suspended`` (``details.until``);
        404 ``station_not_found``, ``charger_not_found``; 400 ``bad_idempotency_key``.
        """
        # Not @committed: book_slot commits itself, the one exception to chargeapp/web/transaction.py's rule.
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 100 and key.isprintable()):
            raise BadIdempotencyKey()
        booking, _ = booking_service.book_slot(
            db.session, clock().now(), current_user().id, body["station"], body["slot_start"],
            body["charger"], key)
        return booking

    @blp.arguments(ListArgs, location="query")
    @blp.response(200, BookingSchema(many=True))
    @blp.doc(security=AUTH)
    def get(self, args):
        """My bookings, latest slot first."""
        return booking_service.driver_bookings(db.session, current_user().id, args["limit"])


@blp.route("/<int:booking_id>")
class BookingView(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.response(200, BookingSchema)
    @blp.doc(security=AUTH)
    def get(self, booking_id):
        """One of my bookings (another driver's is a 404)."""
        return booking_service.get_booking(db.session, booking_id, current_user().id)


@blp.route("/<int:booking_id>/cancel")
class CancelBooking(MethodView):
    decorators = [login_required]  # 401 before any body is read

    @blp.response(200, BookingSchema)
    @blp.doc(security=AUTH)
    @committed(keep=True)  # the answer is the booking just written: no reload in a second transaction
    def post(self, booking_id):
        """Cancel: free until the slot starts, a no-show after; cancelling twice is harmless."""
        return booking_service.cancel_booking(db.session, clock().now(), current_user().id, booking_id)
