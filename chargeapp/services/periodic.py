"""The periodic work in one place: run by ``chargeapp tick``, and by the bridge while it runs."""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from chargeapp.services import booking, dead_letters, receipts, rollups


def run_once(session: Session, now: datetime, *,
             dead_letter_retention: timedelta | None = dead_letters.DEFAULT_RETENTION) -> dict:
    """Holds due, waiting bookings, no-shows; then receipts of closed sessions and stays due,
    and corrections from late telemetry; then, every few minutes, the reports' daily rollups (dirty
    days, then days completed since the last pass); then dead letters older than ``dead_letter_retention``
    (None: kept). Flushes, does not commit; returns counts."""
    counts = booking.tick(session, now)
    counts.update(receipts.settle_due(session, now))
    counts.update(rollups.run_due(session, now))
    counts.update(dead_letters.prune(session, now, dead_letter_retention))
    return counts


def dead_letter_retention(config) -> timedelta | None:
    """The retention from the app's config (CHARGEAPP_DEAD_LETTER_RETENTION_DAYS; 0: keep them all)."""
    days = int(config.get("CHARGEAPP_DEAD_LETTER_RETENTION_DAYS", dead_letters.DEFAULT_RETENTION.days))
    return timedelta(days=days) if days > 0 else None
