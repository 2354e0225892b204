"""Send the command outbox: the bridge is the only publisher of commands to chargers.

Other parts of the service put rows in ``command_outbox`` (status ``pending``).
``OutboxSender.run_once`` publishes them (QoS 1, MQTT 5 message expiry where
the broker speaks 5), marks them ``sent``, republishes a command that has no
result within its timeout with the same request_id (up to 3 retries), and then
marks it ``failed``: logged, counted, and for a reserve_now the booking is moved
as if the charger had refused (``booking.hold_refused(..., "NoAnswer")``).
Answers are recorded by the handler (``apply_command_result``).

Decisions:

- Publish first, then mark sent and commit: a crash in between republishes the
  same request_id (a charger treats a repeated request_id as one request), where
  the other order could leave a command marked sent that never left.
- Nothing is published while the broker connection is down (attempts are not
  spent on a dead link); the timeout counts from the last real publish.
- The timeout is in service-clock time (``now``), which the demo accelerates;
  a command is also never retried sooner than ``min_wall_seconds`` of real time
  after this process sent it, so an accelerated clock cannot outrun a charger's
  real round trip.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp import telemetry as t
from chargeapp.db import models as m
from chargeapp.services import booking

log = logging.getLogger("mqtt_bridge.outbox")

Publish = Callable[..., bool]  # publish(topic, payload, qos=1, expiry_seconds=None) -> queued?


@dataclass(frozen=True)
class OutboxSettings:
    timeout: timedelta = t.COMMAND_TIMEOUT
    max_retries: int = t.COMMAND_MAX_RETRIES
    batch: int = 100
    min_wall_seconds: float = 2.0


def command_from_row(row: m.CommandOutbox, station_code: str, charger_code: str) -> t.Command:
    """The telemetry Command of an outbox row (its payload fields; RFC 3339 strings become aware datetimes)."""
    cls = t.COMMAND_TYPES.get(row.name)
    if cls is None:
        raise t.BadMessage("bad_topic", f"unknown command {row.name!r}")
    allowed = {f.name for f in fields(cls)} - {"station", "charger", "request_id", "received_at", "unknown_fields"}
    kwargs = {}
    for key, value in (row.payload or {}).items():
        if key not in allowed:
            continue
        if cls.__dataclass_fields__[key].type in ("datetime", datetime) and isinstance(value, str):
            value = t.parse_ts(value)
        kwargs[key] = value
    try:
        return cls(station=station_code, charger=charger_code, request_id=row.request_id, **kwargs)
    except TypeError as exc:
        raise t.BadMessage("bad_shape", str(exc)) from None


class OutboxSender:
    """Publishes pending commands and retries or fails unanswered ones; one ``run_once`` per call, no commit."""

    def __init__(self, publish: Publish, metrics=None, settings: OutboxSettings | None = None,
                 monotonic: Callable[[], float] = time.monotonic):
        self.publish = publish
        self.metrics = metrics
        self.settings = settings or OutboxSettings()
        self._monotonic = monotonic
        self._sent_wall: dict[str, float] = {}

    def run_once(self, session: Session, now: datetime) -> dict:
        """Publish what is due at ``now``; returns counts {sent, retried, failed}. Flushes, does not commit."""
        counts = {"sent": 0, "retried": 0, "failed": 0}
        s = self.settings
        rows = session.execute(
            select(m.CommandOutbox, m.Station.code, m.Charger.code)
            .join(m.Station, m.CommandOutbox.station_id == m.Station.id)
            .join(m.Charger, m.CommandOutbox.charger_id == m.Charger.id)
            .where(m.CommandOutbox.status == "pending")
            .order_by(m.CommandOutbox.created_at, m.CommandOutbox.id).limit(s.batch)
        ).all()
        for row, station_code, charger_code in rows:
            if self._send(session, row, station_code, charger_code, now) is None:
                break  # the link is down: try again later
            if row.status == "sent":
                counts["sent"] += 1
            elif row.status == "failed":
                counts["failed"] += 1
        overdue = session.execute(
            select(m.CommandOutbox, m.Station.code, m.Charger.code)
            .join(m.Station, m.CommandOutbox.station_id == m.Station.id)
            .join(m.Charger, m.CommandOutbox.charger_id == m.Charger.id)
            .where(m.CommandOutbox.status == "sent", m.CommandOutbox.sent_at <= now - s.timeout)
            .order_by(m.CommandOutbox.sent_at, m.CommandOutbox.id).limit(s.batch)
        ).all()
        for row, station_code, charger_code in overdue:
            sent_wall = self._sent_wall.get(row.request_id)
            if sent_wall is not None and self._monotonic() - sent_wall < s.min_wall_seconds:
                continue
            if row.attempts >= 1 + s.max_retries:
                self._fail(session, row, now, f"no result after {row.attempts} attempts")
                counts["failed"] += 1
                continue
            if self._send(session, row, station_code, charger_code, now) is None:
                break
            counts["retried"] += 1
        session.flush()
        return counts

    def _send(self, session: Session, row: m.CommandOutbox, station_code: str, charger_code: str,
              now: datetime) -> bool | None:
        """Publish one row; None when the link is down, False when the row is invalid (then failed)."""
        try:
            topic, payload = t.format_command(command_from_row(row, station_code, charger_code))
        except (t.BadMessage, ValueError) as exc:
            self._fail(session, row, now, f"invalid command: {exc}")
            return False
        if not self.publish(topic, payload, qos=t.QOS, expiry_seconds=int(self.settings.timeout.total_seconds())):
            return None
        retry = row.attempts > 0
        row.status, row.sent_at = "sent", now
        row.attempts += 1
        self._sent_wall[row.request_id] = self._monotonic()
        if self.metrics is not None:
            (self.metrics.commands_retried if retry else self.metrics.commands_published).labels(row.name).inc()
        if retry:
            log.info("command %s %s to %s/%s retried (attempt %d)", row.name, row.request_id, station_code,
                     charger_code, row.attempts)
        return True

    def _fail(self, session: Session, row: m.CommandOutbox, now: datetime, why: str) -> None:
        row.status = "failed"
        self._sent_wall.pop(row.request_id, None)
        log.warning("command %s %s (outbox id %d) failed: %s", row.name, row.request_id, row.id, why)
        if self.metrics is not None:
            self.metrics.commands_failed.labels(row.name).inc()
        if row.name == "reserve_now" and row.booking_id is not None:
            b = session.get(m.Booking, row.booking_id)
            if b is not None and b.status == "held" and b.charger_id == row.charger_id:
                booking.hold_refused(session, now, row.booking_id, "NoAnswer")
        session.flush()
