"""The periodic work in one place: run by ``chargeapp tick``, and by the bridge while it runs."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from chargeapp.services import booking, receipts


def run_once(session: Session, now: datetime) -> dict:
    """Holds due, waiting bookings, no-shows; then receipts of closed sessions and stays due,
    and corrections from late telemetry. Flushes, does not commit; returns counts."""
    counts = booking.tick(session, now)
    counts.update(receipts.settle_due(session, now))
    return counts
