"""The station finder: live availability, next free slot, lounge room, distance."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.geo import distance_m, wgs84_to_gcj02
from chargeapp.services import booking as booking_service
from chargeapp.services.common import station_tz


def _free(c: m.Charger) -> bool:
    return c.in_service and c.online and any(k.status == "Available" for k in c.connectors)


def next_free_slot(session: Session, station: m.Station, now: datetime):
    """The first bookable slot (today or tomorrow, station time) with a fast charger free, or None."""
    today = now.astimezone(station_tz(station)).date()
    for day in (today, today + timedelta(days=1)):
        for slot in booking_service.free_slots(session, station, day, now):
            if slot["free"] > 0:
                return slot["slot_start"]
    return None


def summary(session: Session, station: m.Station, now: datetime, position: tuple[float, float] | None = None,
            zones: list[dict] | None = None) -> dict:
    """What a driver sees of a station in the finder (``zones``: its ``lounge.zone_view`` at ``now``, if in hand)."""
    fast = [c for c in station.chargers if c.kind == "fast"]
    slow = [c for c in station.chargers if c.kind == "slow"]
    from chargeapp.services import lounge

    if zones is None:
        zones = lounge.zone_view(session, station, now)
    gcj = wgs84_to_gcj02(station.latitude, station.longitude)
    return {
        "code": station.code, "name": station.name, "name_en": station.name_en,
        "address": station.address, "district": station.district,
        "latitude": station.latitude, "longitude": station.longitude,
        "gcj02": {"latitude": gcj[0], "longitude": gcj[1]},
        "timezone": station.timezone, "tz": station.timezone,
        "amenities": station.amenities or [],
        "opens_at": station.opens_at.strftime("%H:%M") if station.opens_at else None,
        "closes_at": station.closes_at.strftime("%H:%M") if station.closes_at else None,
        "fast_total": len(fast), "fast_free": sum(_free(c) for c in fast),
        "slow_total": len(slow), "slow_free": sum(_free(c) for c in slow),
        "lounge_free": sum(z["free"] for z in zones),
        "lounge_capacity": sum(z["capacity"] for z in zones),
        "next_free_slot": next_free_slot(session, station, now),
        "distance_m": round(distance_m(position[0], position[1], station.latitude, station.longitude))
        if position else None,
        "is_demo": station.is_demo,
    }


def find_stations(session: Session, now: datetime, position: tuple[float, float] | None = None,
                  district: str | None = None) -> list[dict]:
    """Stations with live availability; nearest first when a position is given, else by name."""
    q = select(m.Station)
    if district:
        q = q.where(m.Station.district == district)
    rows = [summary(session, s, now, position) for s in session.scalars(q)]
    if position:
        rows.sort(key=lambda r: r["distance_m"])
    else:
        rows.sort(key=lambda r: r["name"])
    return rows


def detail(session: Session, station: m.Station, now: datetime) -> dict:
    """A station with its chargers' states and its zones' occupancy."""
    from chargeapp.services import lounge

    zones = lounge.zone_view(session, station, now)
    out = summary(session, station, now, zones=zones)
    out["chargers"] = [{
        "code": c.code, "kind": c.kind, "level": c.level, "max_power_kw": c.max_power_kw,
        "in_service": c.in_service, "online": c.online,
        "status": c.connectors[0].status if c.connectors else "Unavailable",
        "connectors": [{"number": k.number, "status": k.status, "status_at": k.status_at} for k in c.connectors],
    } for c in station.chargers]
    out["zones"] = zones
    return out
