"""Managers' reports of one station over station-local dates, and the network's utilization report of every
station a user manages, as JSON or CSV (UTF-8 with BOM, for Excel and WPS).

A manager sees only their own stations (another station is a 404, as if it did
not exist; the network report covers their stations); a driver gets 403; an
administrator sees every station.
"""
from __future__ import annotations

import re

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, pre_load, validate

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.services import reports
from chargeapp.services.common import station_tz
from chargeapp.services import manage
from chargeapp.web.fields import Day
from chargeapp.web.security import clock, current_user, manager_required

blp = Blueprint("reports", __name__, url_prefix="/api/v1",
                description="Managers' reports over station-local date ranges")
STATION = "/manage/stations/<code>/reports"
AUTH = [{"bearerAuth": []}]
CSV_FILE = {"type": "string", "format": "binary"}
CSV_HELP = "The report as JSON; with format=csv a CSV file (UTF-8 with BOM, CRLF line ends) with a Content-Disposition filename"


class RangeArgs(Schema):
    start = Day(required=True, metadata={"description": "first station-local date, YYYY-MM-DD"})
    end = Day(required=True, metadata={"description": "last station-local date (inclusive)"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))


class HeatmapArgs(RangeArgs):
    measure = fields.String(load_default="occupied", validate=validate.OneOf(reports.MEASURES))


class _RangeSchema(Schema):
    station = fields.String()
    timezone = fields.String()
    start = fields.Date()
    end = fields.Date()


class UtilizationRowSchema(Schema):
    scope = fields.String(metadata={"description": "charger | station | network"})
    charger = fields.String(allow_none=True)
    kind = fields.String(allow_none=True)
    level = fields.String(allow_none=True)
    in_service_min = fields.Float()
    occupied_min = fields.Float()
    charging_min = fields.Float()
    occupied_share = fields.Float(allow_none=True, metadata={"description": "of in-service time, 0..1"})
    charging_share = fields.Float(allow_none=True)
    idle_min = fields.Float()
    faulted_min = fields.Float()
    unavailable_min = fields.Float()
    unknown_min = fields.Float(metadata={"description": "before the first recorded status"})
    energy_wh = fields.Integer()
    sessions = fields.Integer()
    mean_session_min = fields.Float(allow_none=True)
    median_session_min = fields.Float(allow_none=True)
    bookings = fields.Integer()
    cancellations = fields.Integer()
    no_shows = fields.Integer()
    disrupted = fields.Integer()
    walk_ins = fields.Integer(allow_none=True, metadata={"description": "fast chargers only"})
    delayed_bookings = fields.Integer()
    mean_wait_min = fields.Float(allow_none=True)
    free_parking_grants = fields.Integer(allow_none=True, metadata={"description": "station and network rows only"})
    energy_fen = fields.Integer()
    service_fen = fields.Integer()
    idle_fen = fields.Integer()
    parking_fen = fields.Integer(allow_none=True, metadata={"description": "station and network rows only"})
    total_fen = fields.Integer()


class UtilizationSchema(_RangeSchema):
    station_name = fields.String()
    from_ = fields.DateTime(data_key="from", attribute="from")
    until = fields.DateTime()
    chargers = fields.List(fields.Nested(UtilizationRowSchema))
    total = fields.Nested(UtilizationRowSchema)


class NetworkArgs(Schema):
    """``start``/``end`` as in every station report; ``from``/``to``, which this report took first, still work."""

    ALIASES = {"from": "start", "to": "end"}

    start = Day(required=True, metadata={
        "description": "first station-local date, YYYY-MM-DD (each station in its own zone); also as `from`"})
    end = Day(required=True, metadata={"description": "last station-local date (inclusive); also as `to`"})
    chargers = fields.Boolean(load_default=False, metadata={"description": "each station's charger rows too"})
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "csv"]))

    @pre_load
    def _aliases(self, data, **kwargs):
        data = {key: data[key] for key in data}
        for alias, name in self.ALIASES.items():
            if alias in data:
                value = data.pop(alias)
                if name in data and data[name] != value:
                    raise ValidationError(f"give {name} or {alias}, not both", field_name=name)
                data[name] = value
        return data


class NetworkStationSchema(UtilizationSchema):
    chargers = fields.List(fields.Nested(UtilizationRowSchema), metadata={"description": "with chargers=true"})


class NetworkSchema(Schema):
    start = fields.Date()
    end = fields.Date()
    stations = fields.List(fields.Nested(NetworkStationSchema),
                           metadata={"description": "each station's utilization report over its own local dates"})
    total = fields.Nested(UtilizationRowSchema, metadata={"description": "the stations summed (scope network)"})


class HeatmapSchema(_RangeSchema):
    measure = fields.String()
    weekdays = fields.List(fields.String())
    hours = fields.List(fields.Integer())
    matrix = fields.List(fields.List(fields.Float(allow_none=True)),
                         metadata={"description": "matrix[weekday][hour], share 0..1 or null"})


class TrendDaySchema(Schema):
    date = fields.Date()
    energy_wh = fields.Integer()
    sessions = fields.Integer()
    walk_ins = fields.Integer(metadata={"description": "fast-charger sessions started that no booking checked in with"})
    bookings = fields.Integer(metadata={"description": "by the day their slot starts"})
    cancellations = fields.Integer()
    no_shows = fields.Integer()
    revenue_fen = fields.Integer(metadata={"description": "receipts issued that day, corrections as their deltas"})
    in_service_min = fields.Float()
    occupied_share = fields.Float(allow_none=True)
    charging_share = fields.Float(allow_none=True)


class TrendSchema(_RangeSchema):
    days = fields.List(fields.Nested(TrendDaySchema))


class LoungeHourSchema(Schema):
    zone = fields.String()
    zone_name = fields.String()
    capacity = fields.Integer()
    hour = fields.Integer(metadata={"description": "station-local hour of day, 0..23"})
    peak = fields.Integer(allow_none=True)
    peak_on = fields.Date(allow_none=True)
    average = fields.Float(allow_none=True)


class LoungeSchema(_RangeSchema):
    hours = fields.List(fields.Nested(LoungeHourSchema))


def managed_station(code: str) -> m.Station:
    """The station if the current user manages it; another manager's station is not found (not revealed)."""
    return manage.managed_station(db.session, current_user(), code)


def _header(station: m.Station, args: dict) -> dict:
    return {"station": station.code, "timezone": station.timezone, "start": args["start"], "end": args["end"]}


def _csv(station: m.Station, name: str, args: dict, rows: list[dict], columns=None) -> Response:
    code = re.sub(r"[^A-Za-z0-9_.-]", "_", station.code) or "station"
    filename = f"{code}-{name}-{args['start'].isoformat()}-{args['end'].isoformat()}.csv"
    body = reports.to_csv(rows, columns=columns, tz=station_tz(station))
    resp = Response(body, status=200, content_type="text/csv; charset=utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return resp


@blp.route(f"{STATION}/utilization")
class Utilization(MethodView):
    decorators = [manager_required]  # 401/403 before the query is read

    @blp.arguments(RangeArgs, location="query")
    @blp.response(200, UtilizationSchema)
    @blp.alt_response(200, schema=CSV_FILE, content_type="text/csv", description=CSV_HELP, success=True)
    @blp.doc(security=AUTH)
    def get(self, args, code):
        """Utilization, energy, sessions, bookings, idle time, availability and revenue per charger and station."""
        station = managed_station(code)
        report = reports.utilization(db.session, station, args["start"], args["end"], clock().now())
        if args["format"] == "csv":
            return _csv(station, "utilization", args, reports.utilization_rows(report),
                        list(UtilizationRowSchema().fields))
        return report


@blp.route(f"{STATION}/heatmap")
class Heatmap(MethodView):
    decorators = [manager_required]  # 401/403 before the query is read

    @blp.arguments(HeatmapArgs, location="query")
    @blp.response(200, HeatmapSchema)
    @blp.alt_response(200, schema=CSV_FILE, content_type="text/csv", description=CSV_HELP, success=True)
    @blp.doc(security=AUTH)
    def get(self, args, code):
        """Occupied (or charging) share of in-service time by station-local weekday x hour."""
        station = managed_station(code)
        report = reports.heatmap(db.session, station, args["start"], args["end"], args["measure"], clock().now())
        if args["format"] == "csv":
            return _csv(station, f"heatmap-{args['measure']}", args, reports.heatmap_rows(report),
                        ["weekday", *(f"{h:02d}" for h in range(24))])
        return report


@blp.route(f"{STATION}/trend")
class Trend(MethodView):
    decorators = [manager_required]  # 401/403 before the query is read

    @blp.arguments(RangeArgs, location="query")
    @blp.response(200, TrendSchema)
    @blp.alt_response(200, schema=CSV_FILE, content_type="text/csv", description=CSV_HELP, success=True)
    @blp.doc(security=AUTH)
    def get(self, args, code):
        """Per station-local day: energy, sessions, walk-ins, bookings, cancellations, no-shows, revenue, in-service time, occupied and charging share."""
        station = managed_station(code)
        days = reports.daily_trend(db.session, station, args["start"], args["end"], clock().now())
        if args["format"] == "csv":
            return _csv(station, "trend", args, days, list(TrendDaySchema().fields))
        return {**_header(station, args), "days": days}


@blp.route(f"{STATION}/lounge")
class Lounge(MethodView):
    decorators = [manager_required]  # 401/403 before the query is read

    @blp.arguments(RangeArgs, location="query")
    @blp.response(200, LoungeSchema)
    @blp.alt_response(200, schema=CSV_FILE, content_type="text/csv", description=CSV_HELP, success=True)
    @blp.doc(security=AUTH)
    def get(self, args, code):
        """Lounge occupancy per zone by station-local hour of day: peak and time-weighted average."""
        station = managed_station(code)
        hours = reports.lounge_by_hour(db.session, station, args["start"], args["end"], clock().now())
        if args["format"] == "csv":
            return _csv(station, "lounge", args, hours, list(LoungeHourSchema().fields))
        return {**_header(station, args), "hours": hours}


@blp.route("/reports/network")
class Network(MethodView):
    decorators = [manager_required]  # 401/403 before the query is read

    @blp.arguments(NetworkArgs, location="query")
    @blp.response(200, NetworkSchema)
    @blp.alt_response(200, schema=CSV_FILE, content_type="text/csv", description=CSV_HELP, success=True)
    @blp.doc(security=AUTH)
    def get(self, args):
        """Utilization per station (and charger) of every station the user manages (an administrator: all), each
        over the same station-local dates in its own time zone, and the network row summing them."""
        stations = manage.managed_stations(db.session, current_user())
        report = reports.network_utilization(db.session, stations, args["start"], args["end"], clock().now())
        if args["format"] == "csv":
            filename = f"network-utilization-{args['start'].isoformat()}-{args['end'].isoformat()}.csv"
            body = reports.to_csv(reports.network_rows(report, args["chargers"]),
                                  columns=["station", "timezone", *UtilizationRowSchema().fields])
            resp = Response(body, status=200, content_type="text/csv; charset=utf-8")
            resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
            return resp
        if not args["chargers"]:
            report["stations"] = [{k: v for k, v in part.items() if k != "chargers"} for part in report["stations"]]
        return report
