"""Bounds on the dead-letter store: a per-source hourly cap with a persisted count of what it dropped, and
retention (docs/bridge.md, "Bad input").

A *source* is the device a refused message came from as far as its topic tells: the first four levels of a
``stations/...`` topic (``stations/s1/chargers/F1``: the broker's ACL gives each device login exactly one such
prefix), the first two of any other (``zigbee2mqtt/front door``, a vendor device's prefix). Per source and UTC
hour, ``dead_letter_counts`` counts the messages refused and how many of them were dropped: the first ``cap``
are stored as dead letters, the rest only counted (and counted in the bridge's metrics). One device login can
then add at most ``cap`` x 16 KiB an hour, and the retention bounds the whole store.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from chargeapp.config import Settings
from chargeapp.db import models as m

DEFAULT_CAP_PER_HOUR = Settings.dead_letter_cap_per_hour
DEFAULT_RETENTION = timedelta(days=Settings.dead_letter_retention_days)
PRUNE_BATCH = 10_000  # dead letters deleted per periodic run at most (a first prune of a large store: in turns)
SOURCE_MAX = 200


def source_of(topic: str) -> str:
    """The device a topic belongs to, as far as the topic tells (see the module doc)."""
    parts = topic.split("/")
    return "/".join(parts[:4 if parts[0] == "stations" else 2])[:SOURCE_MAX]


def hour_of(at: datetime) -> datetime:
    """The UTC hour an instant falls in."""
    return at.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def admit(session: Session, topic: str, station: str | None, at: datetime, cap: int) -> bool:
    """Count one refused message of ``topic``'s source in ``at``'s hour; True when it is to be stored (within
    the first ``cap`` of that source and hour; ``cap`` <= 0: no cap), False when it is only counted as dropped.

    One upsert, atomic on both databases, so two bridge workers refusing the same device's messages share one
    count. No commit: rolled back with the batch it belongs to.
    """
    table = m.DeadLetterCount.__table__
    insert = postgresql_insert if session.connection().dialect.name == "postgresql" else sqlite_insert
    capped = cap > 0
    stmt = insert(table).values(source=source_of(topic), hour=hour_of(at), station_code=station, messages=1,
                                dropped=0)
    over = case((table.c.messages >= cap, 1), else_=0) if capped else 0
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.source, table.c.hour],
        set_={"messages": table.c.messages + 1, "dropped": table.c.dropped + over},
    ).returning(table.c.messages)
    messages = session.execute(stmt).scalar_one()
    return not capped or messages <= cap


def prune(session: Session, now: datetime, retention: timedelta | None) -> dict:
    """Delete dead letters received more than ``retention`` before ``now`` (at most PRUNE_BATCH a run, so a
    first prune of a large store takes a few runs, not one long statement) and the hourly counts of hours
    wholly before that. ``retention`` None or zero: keep everything. No commit; returns counts."""
    if not retention:
        return {"dead_letters_pruned": 0}
    cutoff = now - retention
    dl = m.DeadLetter.__table__
    old = select(dl.c.id).where(dl.c.received_at < cutoff).limit(PRUNE_BATCH).scalar_subquery()
    pruned = session.execute(delete(dl).where(dl.c.id.in_(old))).rowcount or 0
    counts = m.DeadLetterCount.__table__
    session.execute(delete(counts).where(counts.c.hour < hour_of(cutoff)))
    return {"dead_letters_pruned": pruned}


def dropped(session: Session, station_code: str, since: datetime, limit: int = 20) -> dict:
    """What the cap dropped for a station's sources since ``since``: the total, and per source (most first,
    ``limit`` of them) the messages refused, how many were dropped, and the last hour that dropped any."""
    c = m.DeadLetterCount
    where = (c.station_code == station_code, c.hour >= hour_of(since), c.dropped > 0)
    total = session.scalar(select(func.coalesce(func.sum(c.dropped), 0)).where(*where)) or 0
    rows = session.execute(
        select(c.source, func.sum(c.dropped), func.sum(c.messages), func.max(c.hour)).where(*where)
        .group_by(c.source).order_by(func.sum(c.dropped).desc(), c.source).limit(limit)
    ).all()
    return {"total": int(total), "sources": [
        {"source": source, "dropped": int(d), "messages": int(n), "last_hour": last} for source, d, n, last in rows]}
