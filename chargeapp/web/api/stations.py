"""Stations for drivers: finder, detail, free slots."""
from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate, validates_schema, ValidationError

from chargeapp.db import db
from chargeapp.services import booking as booking_service
from chargeapp.services import stations as station_service
from chargeapp.services.common import station_by_code, station_tz
from chargeapp.web.fields import Day, StationTime
from chargeapp.web.schemas import ZoneSchema
from chargeapp.web.security import clock

blp = Blueprint("stations", __name__, url_prefix="/api/v1/stations", description="Find a station")


class FinderArgs(Schema):
    lat = fields.Float(validate=validate.Range(-90, 90))
    lon = fields.Float(validate=validate.Range(-180, 180))
    district = fields.String(validate=validate.Length(max=100))

    @validates_schema
    def both_or_neither(self, data, **kwargs):
        if ("lat" in data) != ("lon" in data):
            raise ValidationError("Give both lat and lon, or neither.", "lat")


class Point(Schema):
    latitude = fields.Float()
    longitude = fields.Float()


class StationSummary(Schema):
    code = fields.String()
    name = fields.String()
    name_en = fields.String(allow_none=True)
    address = fields.String()
    district = fields.String()
    latitude = fields.Float(metadata={"description": "WGS-84"})
    longitude = fields.Float(metadata={"description": "WGS-84"})
    gcj02 = fields.Nested(Point, metadata={"description": "for Chinese map tiles"})
    timezone = fields.String()
    amenities = fields.List(fields.String())
    opens_at = fields.String(allow_none=True)
    closes_at = fields.String(allow_none=True)
    fast_total = fields.Integer()
    fast_free = fields.Integer()
    slow_total = fields.Integer()
    slow_free = fields.Integer()
    lounge_free = fields.Integer()
    lounge_capacity = fields.Integer()
    next_free_slot = StationTime(allow_none=True)
    distance_m = fields.Integer(allow_none=True)
    is_demo = fields.Boolean()


class ConnectorSchema(Schema):
    number = fields.Integer()
    status = fields.String()
    status_at = fields.Method("_at")

    def _at(self, obj):
        return obj["status_at"].isoformat() if obj.get("status_at") else None


class ChargerSchema(Schema):
    code = fields.String()
    kind = fields.String()
    level = fields.String()
    max_power_kw = fields.Integer()
    in_service = fields.Boolean()
    online = fields.Boolean()
    status = fields.String()
    connectors = fields.List(fields.Nested(ConnectorSchema))


class StationDetail(StationSummary):
    chargers = fields.List(fields.Nested(ChargerSchema))
    zones = fields.List(fields.Nested(ZoneSchema))


class SlotArgs(Schema):
    date = Day(required=True, metadata={"description": "station-local day, YYYY-MM-DD"})


class SlotSchema(Schema):
    slot_start = StationTime()
    slot_end = StationTime()
    free = fields.Integer()
    chargers = fields.List(fields.String())


@blp.route("")
class Stations(MethodView):
    @blp.arguments(FinderArgs, location="query")
    @blp.response(200, StationSummary(many=True))
    def get(self, args):
        """Stations with live availability; nearest first when lat/lon (WGS-84) are given."""
        position = (args["lat"], args["lon"]) if "lat" in args else None
        return station_service.find_stations(db.session, clock().now(), position, args.get("district"))


@blp.route("/<code>")
class StationView(MethodView):
    @blp.response(200, StationDetail)
    def get(self, code):
        """A station: charger states, lounge occupancy, amenities."""
        return station_service.detail(db.session, station_by_code(db.session, code), clock().now())


@blp.route("/<code>/slots")
class Slots(MethodView):
    @blp.arguments(SlotArgs, location="query")
    @blp.response(200, SlotSchema(many=True))
    def get(self, args, code):
        """Bookable fast-charge slots of a station-local day, with the free chargers in each."""
        station = station_by_code(db.session, code)
        rows = booking_service.free_slots(db.session, station, args["date"], clock().now())
        for r in rows:
            r["tz"] = station_tz(station)
        return rows
