"""The periodic work in one place: run by ``chargeapp tick``, and by the bridge while it runs."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from chargeapp.services import booking, receipts, rollups


def run_once(session: Session, now: datetime) -> dict:
    """Holds due, waiting bookings, no-shows; then receipts of closed sessions and stays due,
    and corrections from late telemetry; then the reports' daily rollups (dirty days, then days
    completed since the last run). Flushes, does not commit; returns counts."""
    counts = booking.tick(session, now)
    counts.update(receipts.settle_due(session, now))
    counts.update(rollups.run(session, now))
    return counts
