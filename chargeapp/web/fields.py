"""Marshmallow fields shared by the API schemas."""
from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from marshmallow import fields

# The dates and instants a request may name: far wider than any booking, report or tariff needs, and narrow enough
# that converting between time zones or adding a day never leaves Python's or the database's range (an outside
# probe's 0001-01-01T00:00+14:00 was a 500: it underflowed in UTC; 9999-12-31 overflowed the next day).
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)
OUT_OF_RANGE = f"Out of range: give a date from {EARLIEST} to {LATEST}."


class Day(fields.Date):
    """A calendar day (YYYY-MM-DD) from EARLIEST to LATEST."""

    default_error_messages = {"range": OUT_OF_RANGE}

    def _deserialize(self, value, attr, data, **kwargs):
        day = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST <= day <= LATEST:
            raise self.make_error("range")
        return day


class Instant(fields.AwareDateTime):
    """An instant written RFC 3339 with its offset, from EARLIEST to LATEST (in UTC)."""

    default_error_messages = {"range": OUT_OF_RANGE}

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        at = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST <= at.replace(tzinfo=None).date() <= LATEST:  # its own offset: no conversion can overflow
            raise self.make_error("range")
        return at


class StationTime(fields.DateTime):
    """An instant written as RFC 3339 in the station's time zone (``+08:00`` for Shanghai).

    The object being dumped says its zone through a ``tz`` attribute/key or a
    ``station`` with a ``timezone``; UTC otherwise.
    """

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return value.astimezone(_tz_of(obj)).isoformat()


def _tz_of(obj):
    tz = obj.get("tz") if isinstance(obj, dict) else getattr(obj, "tz", None)
    if tz is None:
        station = obj.get("station") if isinstance(obj, dict) else getattr(obj, "station", None)
        tz = getattr(station, "timezone", None)
    if isinstance(tz, str):
        return ZoneInfo(tz)
    return tz or timezone.utc
