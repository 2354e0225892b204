"""A driver's own things: notifications, charging sessions, receipts, parking."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.web.fields import StationTime
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
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, NotificationSchema(many=True))
    @blp.doc(security=AUTH)
    @login_required
    def get(self, args):
        """My notifications, newest first: held, moved, delayed, disrupted, no-show, suspension."""
        return db.session.scalars(
            select(m.Notification).where(m.Notification.user_id == current_user().id)
            .order_by(m.Notification.id.desc()).limit(args["limit"])
        ).all()
