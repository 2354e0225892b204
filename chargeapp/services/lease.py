"""The periodic work under a lease, so several bridge workers (and ``chargeapp tick``) run it once, not once each.

A ``leases`` row names the holder and when its hold expires. A worker runs the
work when it holds the lease or the lease has expired, renewing it in the same
transaction as the work. On PostgreSQL the lease row is read with
``SELECT ... FOR UPDATE SKIP LOCKED``: a worker that finds it locked skips this
round (another worker is running the work right now). SQLite has one writer at
a time (the app begins every transaction with BEGIN IMMEDIATE), which gives the
same exclusion.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.services import periodic

PERIODIC_LEASE = "periodic"


def acquire_lease(session: Session, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until now + ttl; False while another holder's lease runs. No commit."""
    row = session.scalar(select(m.Lease).where(m.Lease.name == name).with_for_update(skip_locked=True))
    if row is None:
        try:
            with session.begin_nested():
                session.execute(insert(m.Lease).values(name=name, holder=holder, expires_at=now + ttl))
            return True
        except IntegrityError:
            return False  # exists but locked by a running worker, or another worker inserted it just now
    if row.holder != holder and row.expires_at > now:
        return False
    row.holder, row.expires_at = holder, now + ttl
    session.flush()
    return True


def release_lease(session: Session, name: str, holder: str, now: datetime) -> None:
    """Let the lease go (on a clean stop) so another worker takes over at once. No commit."""
    row = session.scalar(select(m.Lease).where(m.Lease.name == name).with_for_update(skip_locked=True))
    if row is not None and row.holder == holder:
        row.expires_at = now
        session.flush()


def run_periodic(session: Session, now: datetime, holder: str, ttl: timedelta, **options) -> dict | None:
    """services.periodic.run_once at ``now`` (with ``options``) if this holder gets the lease; its counts, or None
    when skipped. No commit."""
    if not acquire_lease(session, PERIODIC_LEASE, holder, now, ttl):
        return None
    return periodic.run_once(session, now, **options)
