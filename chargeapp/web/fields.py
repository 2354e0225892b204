"""Marshmallow fields shared by the API schemas."""
from __future__ import annotations

from datetime import timezone
from zoneinfo import ZoneInfo

from marshmallow import fields


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
