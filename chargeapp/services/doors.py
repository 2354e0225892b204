"""Door contact sensors (zigbee2mqtt): open/closed state for "door left open" alerts.

State, not events: the receive time is used, and the same state twice changes
nothing (``open_since`` keeps the moment the door opened).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.errors import NotFound


class DoorContactNotFound(NotFound):
    """No door contact with that zigbee2mqtt friendly name in the registry."""

    code = "door_contact_not_found"


def record_door_contact(session: Session, *, friendly_name: str, contact: bool, at: datetime,
                        battery: float | None = None, linkquality: int | None = None) -> m.DoorContact:
    """Apply a zigbee2mqtt contact report (``contact`` True means closed unless the sensor is inverted)."""
    door = session.scalar(select(m.DoorContact).where(m.DoorContact.friendly_name == friendly_name))
    if door is None:
        raise DoorContactNotFound(f"zigbee2mqtt device {friendly_name[:64]!r} is not mapped to a station door")
    is_open = contact if door.inverted else not contact
    if door.is_open is not is_open:
        door.open_since = at if is_open else None
    door.is_open = is_open
    door.state_at = at
    door.battery = battery
    door.linkquality = linkquality
    session.flush()
    return door


def doors_left_open(session: Session, station: m.Station, now: datetime,
                    longer_than: timedelta = timedelta(minutes=5)) -> list[m.DoorContact]:
    """Doors of the station open for longer than ``longer_than`` at ``now``."""
    return list(session.scalars(select(m.DoorContact).where(
        m.DoorContact.station_id == station.id, m.DoorContact.is_open.is_(True),
        m.DoorContact.open_since <= now - longer_than)))
