"""The periodic work in one place: run by ``chargeapp tick``, and by the bridge while it runs."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from chargeapp.services import booking, receipts, rollups


def run_once(session: Session, now: datetime) -> dict:
    """Holds due, waiting bookings, no-shows; then receipts of closed sessions and stays due,
    and corrections from late telemetry; then, every few minutes, the reports' daily rollups (dirty
    days, then days completed since the last pass). Flushes, does not commit; returns counts."""
    counts = booking.tick(session, now)
    counts.update(receipts.settle_due(session, now))
    counts.update(rollups.run_due(session, now))
    return counts
