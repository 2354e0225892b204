"""The periodic work in one place: run by ``chargeapp tick``, and by the bridge while it runs."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from chargeapp.services import booking


def run_once(session: Session, now: datetime) -> dict:
    """Holds due, waiting bookings, no-shows; then stays and sessions to settle. Flushes, does not commit."""
    counts = booking.tick(session, now)
    return counts
