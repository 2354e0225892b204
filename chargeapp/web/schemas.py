"""Response schemas shared by several API blueprints (driver and manager views of one thing)."""
from __future__ import annotations

from marshmallow import Schema, fields

from chargeapp.web import messages
from chargeapp.web.fields import StationTime


class ZoneSchema(Schema):
    """A lounge zone's live occupancy."""

    code = fields.String()
    name = fields.String()
    name_en = fields.String(allow_none=True)
    capacity = fields.Integer()
    count = fields.Integer()
    free = fields.Integer()
    uncertain = fields.Boolean(metadata={"description": "a door sensor of the zone is offline"})


class ReceiptSchema(Schema):
    """A receipt or a correction (a correction's amounts are deltas), money in fen."""

    id = fields.Integer()
    kind = fields.String()
    station = fields.Method("_station")
    session_id = fields.Integer(allow_none=True)
    stay_id = fields.Integer(allow_none=True)
    corrects_id = fields.Integer(allow_none=True)
    energy_wh = fields.Integer()
    energy_fen = fields.Integer()
    service_fen = fields.Integer()
    idle_fen = fields.Integer()
    parking_fen = fields.Integer()
    total_fen = fields.Integer()
    currency = fields.String()
    explanation = fields.String(metadata={"description": "In English, as stored (kept for older clients)."})
    explanation_lines = fields.List(fields.Dict(), allow_none=True, metadata={
        "description": "The explanation as lines of a code and params (money in fen, energy in Wh, durations in "
                       "seconds, station-local times as text); null on an old receipt that could not be read."})
    explanation_text = fields.Method("_explanation_text", metadata={
        "description": "The explanation in the language of Accept-Language (zh first, else en); "
                       "Content-Language says which."})
    details = fields.Dict()
    issued_at = StationTime()
    superseded = fields.Boolean()

    def _explanation_text(self, r):
        lang = messages.api_language()
        messages.say_content_language(lang)
        return messages.in_language(lang, messages.receipt_text, r)

    def _station(self, r):
        if isinstance(r, dict):
            return r.get("station")
        return r.station.code
