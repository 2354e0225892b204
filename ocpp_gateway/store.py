"""The gateway's database access: id tags, and its own per-charger state.

Which chargers may connect, and with which password, is the core registry's
(``chargeapp.services.registry``: ``charger_by_ocpp_id``, ``ocpp_chargers``).

The gateway writes only its own tables (``ocpp_chargers`` counters,
``ocpp_transactions``); telemetry reaches the service's tables through MQTT and
the bridge alone. Every function takes a session and leaves committing to
``Store``, which runs them one at a time on one thread with its own app context
(SQLAlchemy sessions are not for the event loop).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chargeapp import telemetry as t
from chargeapp.db import db
from chargeapp.db import models as m
from ocpp_gateway import translate as tr


class Store:
    """Runs store functions on one worker thread, each in its own transaction (commit, or rollback on error)."""

    def __init__(self, app):
        self.app = app
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocpp-db")

    def _call(self, fn: Callable[..., Any], args: tuple) -> Any:
        with self.app.app_context():
            try:
                result = fn(db.session, *args)
                db.session.commit()
                return result
            except BaseException:
                db.session.rollback()
                raise
            finally:
                db.session.remove()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(session, *args)`` on the database thread, committed."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, fn, args)

    def close(self) -> None:
        self._pool.shutdown(wait=True)


# --------------------------------------------------------------------------- registry


def driver_of_tag(session: Session, id_tag: str) -> int | None:
    """The driver (user id) an id tag belongs to, or None."""
    return session.scalar(select(m.IdTag.user_id).where(m.IdTag.tag == id_tag))


# --------------------------------------------------------------------------- boot and seq


def _state_row(session: Session, charger_id: int) -> m.OcppCharger:
    return session.scalar(select(m.OcppCharger).where(m.OcppCharger.charger_id == charger_id).with_for_update())


def record_boot(session: Session, charger_id: int, info: dict[str, Any], now: datetime) -> int:
    """A BootNotification: a new boot of the charger's counters, and what it said about itself; returns the boot."""
    row = _state_row(session, charger_id)
    state = tr.new_boot(tr.Sequence(row.boot, row.seq, row.last_ts))
    row.boot, row.seq, row.last_ts = state.boot, state.seq, state.last_ts
    row.boot_info = {k: v for k, v in info.items() if isinstance(v, str)}
    row.booted_at = now
    return row.boot


def stamp_all(session: Session, charger_id: int, drafts: list[t.DeviceMessage], received_at: datetime,
              skew_tolerance_seconds: int) -> list[t.DeviceMessage]:
    """Give the drafts the charger's next boot/seq (see ``translate.stamp``) and persist the counters."""
    row = _state_row(session, charger_id)
    state = tr.Sequence(row.boot, row.seq, row.last_ts)
    stamped = []
    for draft in drafts:
        state, message = tr.stamp(state, draft, received_at, timedelta(seconds=skew_tolerance_seconds))
        stamped.append(message)
    row.boot, row.seq, row.last_ts = state.boot, state.seq, state.last_ts
    return stamped


def skew_tolerance_seconds(session: Session, station_code: str) -> int:
    """The station's skew tolerance (the bridge's), 120 s if the station has no rules row."""
    value = session.scalar(select(m.StationRules.skew_tolerance_seconds).join(m.Station)
                           .where(m.Station.code == station_code))
    return value if value is not None else int(t.DEFAULT_SKEW_TOLERANCE.total_seconds())


# --------------------------------------------------------------------------- transactions


@dataclass(frozen=True)
class TransactionRecord:
    transaction_id: int
    connector: int
    started_at: datetime
    meter_start: int
    start_published: bool
    stop_published: bool

    @property
    def start_reading(self) -> tr.EnergyReading:
        return tr.EnergyReading(self.started_at, self.meter_start)


def _record(row: m.OcppTransaction) -> TransactionRecord:
    return TransactionRecord(row.transaction_id, row.connector, row.started_at, row.meter_start,
                             row.start_published, row.stop_published)


def start_transaction(session: Session, charger_id: int, payload: dict[str, Any]) -> TransactionRecord:
    """The transaction of a StartTransaction: the recorded one if this repeats it, else a new never-used id."""
    started_at = tr.parse_ocpp_time(payload["timestamp"])
    for row in session.scalars(select(m.OcppTransaction).where(
            m.OcppTransaction.charger_id == charger_id, m.OcppTransaction.connector == payload["connector_id"],
            m.OcppTransaction.started_at == started_at)):
        if tr.same_start({"connector": row.connector, "id_tag": row.id_tag, "meter_start": row.meter_start,
                          "started_at": row.started_at}, payload):
            return _record(row)
    state = _state_row(session, charger_id)
    recorded = session.scalar(select(func.max(m.ChargingSession.transaction_id))
                              .where(m.ChargingSession.charger_id == charger_id))
    transaction_id = tr.next_transaction_id(state.last_transaction_id, recorded)
    state.last_transaction_id = transaction_id
    row = m.OcppTransaction(charger_id=charger_id, transaction_id=transaction_id, connector=payload["connector_id"],
                            id_tag=payload["id_tag"], meter_start=payload["meter_start"], started_at=started_at,
                            reservation_id=payload.get("reservation_id"), start_published=False,
                            stop_published=False)
    session.add(row)
    session.flush()
    return _record(row)


def transaction(session: Session, charger_id: int, transaction_id: int) -> TransactionRecord | None:
    """A transaction the gateway assigned, or None."""
    row = session.scalar(select(m.OcppTransaction).where(m.OcppTransaction.charger_id == charger_id,
                                                         m.OcppTransaction.transaction_id == transaction_id))
    return _record(row) if row is not None else None


def open_transaction(session: Session, charger_id: int, connector: int) -> TransactionRecord | None:
    """The latest transaction on a connector that has no stop yet, or None."""
    row = session.scalar(select(m.OcppTransaction).where(
        m.OcppTransaction.charger_id == charger_id, m.OcppTransaction.connector == connector,
        m.OcppTransaction.stopped_at.is_(None)).order_by(m.OcppTransaction.started_at.desc()).limit(1))
    return _record(row) if row is not None else None


def record_stop(session: Session, charger_id: int, transaction_id: int, stopped_at: datetime,
                meter_stop: int) -> TransactionRecord | None:
    """Note a StopTransaction of an assigned transaction (the first stop wins); None for an id the gateway never gave."""
    row = session.scalar(select(m.OcppTransaction).where(m.OcppTransaction.charger_id == charger_id,
                                                         m.OcppTransaction.transaction_id == transaction_id))
    if row is None:
        return None
    if row.stopped_at is None:
        row.stopped_at, row.meter_stop = stopped_at, meter_stop
    return _record(row)


def mark_published(session: Session, charger_id: int, transaction_id: int, event: str) -> None:
    """The broker acknowledged the start (or stop) event: a replay of it need not be published again."""
    row = session.scalar(select(m.OcppTransaction).where(m.OcppTransaction.charger_id == charger_id,
                                                         m.OcppTransaction.transaction_id == transaction_id))
    if row is not None:
        setattr(row, f"{event}_published", True)
