"""Apply one received MQTT message to the database: parse, check the registry, apply once, or dead-letter.

``apply_message`` needs no broker: tests fire ``Received`` records straight in.
It never raises for bad input; only a database failure (``OperationalError``)
leaves it, so the worker can roll the batch back and retry it unacknowledged.
It flushes but does not commit.

Decisions (docs/bridge.md):

- Order of checks: topic (``bad_topic``), then who may publish it (a command
  topic is ``forbidden_topic``: the bridge alone publishes commands), then the
  registry (``unknown_device``), then the payload.
- A service refusing a parsed message is bad input too: a ``NotFound`` (unknown
  connector, charger, sensor, gate) is ``unknown_device``, any other
  ``DomainError`` is ``bad_shape``; the detail carries the error code. Such a
  message still counts as received in the device's sequence (no false gap) and
  a redelivery of it is a duplicate. An unexpected exception in a service is
  dead-lettered as ``apply_failed`` (logged with its traceback) so one poison
  message cannot stall the stream; its payload stays in the dead-letter store.
- Each message applies inside a SAVEPOINT, so a failure undoes that message
  only. (device, boot, seq) is inserted into ``applied_messages`` first; the
  unique constraint makes a redelivery a duplicate with no effect.
- Except the common case, in a batch (``ApplyContext.defer``): a message newer
  than its device's sequence (whose row is locked for the batch) cannot have
  been applied, so it skips the duplicate check, and its ``applied_messages``
  row, its sequence row and, for a sample of a known session, its meter reading
  are written at the commit (one executemany each, one update per device); a
  service call still runs in a SAVEPOINT. A first or late message takes the
  general path above, after writing what was deferred. The worker's one-by-one
  fallback does not defer. tests/bridge/test_deferred_bookkeeping.py checks a
  batch writes, row for row, what the one-by-one path writes.
- Skew: ``previous_ts`` is the device ts of the highest applied seq of the same
  boot when this message comes after it; a late (lower seq) message has no
  known predecessor ts and is checked against the receive time only. A skewed
  message does not move ``last_ts``, so one bad clock reading does not make its
  correct successors look skewed.
- Gaps: ``telemetry.seq_gap`` counts the seqs a message jumps over. A late
  message fills one back only when it was counted missing (the first message
  ever seen of a device starts its count, as in ``seq_gap``).
- ``status/0`` (the charger as a whole, OCPP connector 0) is recorded in the
  sequence and ignored: the services keep status per connector.
- Vendor devices (zigbee2mqtt and Shelly Gen2 door contacts, people counters)
  go through their registry adapter first (``mqtt_bridge.vendor``); an unmapped
  zigbee2mqtt name is dead-lettered ``unknown_device``.
- A zero-length payload on a retained topic (retained value cleared) is ignored.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from flask import current_app, has_app_context
from sqlalchemy import bindparam, event, exists, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, scoped_session, selectinload

from chargeapp import telemetry as t
from chargeapp.db import models as m
from chargeapp.domain.errors import DomainError, NotFound
from chargeapp.services import booking, charging, dead_letters, gates, lounge
from chargeapp.services.common import enqueue_command
from mqtt_bridge import vendor
from mqtt_bridge.client import Received

log = logging.getLogger("mqtt_bridge.handler")

APPLIED, DUPLICATE, DEAD_LETTER, IGNORED = "applied", "duplicate", "dead_letter", "ignored"
APPLY_FAILED = "apply_failed"  # an unexpected exception in a service (a bug), not a contract reason
DEAD_LETTER_REASONS = tuple(sorted(t.REASONS)) + (APPLY_FAILED,)
STORED_PAYLOAD_LIMIT = 16 * 1024  # a too_large payload is kept truncated, never whole
REFUSED_RESERVATION = ("Faulted", "Occupied", "Rejected", "Unavailable")


@dataclass(frozen=True)
class Outcome:
    """What one message did: status applied | duplicate | dead_letter | ignored, with what the metrics and logs need."""

    status: str
    topic: str
    kind: str | None = None
    reason: str | None = None  # dead letters: one of DEAD_LETTER_REASONS; ignored: why
    detail: str = ""
    loggable_detail: bool = True  # False when the detail may quote personal data (plates, id tags)
    station: str | None = None
    device: str | None = None
    retained: bool = False
    gap: int = 0  # messages this one found missing before it
    filled: bool = False  # this late message filled a counted gap
    skewed: bool = False
    lag_seconds: float | None = None  # now - effective ts (device time, or receive time when skewed)
    unknown_fields: tuple[str, ...] = ()
    command: str | None = None  # command results: the command answered
    result: str | None = None  # command results: the answer; "unmatched" when no outbox row fits
    stored: bool = True  # dead letters: False when over its source's hourly cap (counted, not stored)


# --------------------------------------------------------------------------- registry


@dataclass
class RegistrySnapshot:
    """Which devices the registry knows, by (station code, device code), and each station's skew tolerance."""

    stations: dict[str, timedelta] = field(default_factory=dict)
    chargers: dict[tuple[str, str], int] = field(default_factory=dict)
    sensors: set[tuple[str, str]] = field(default_factory=set)
    gates: set[tuple[str, str]] = field(default_factory=set)
    loaded_at: float = 0.0

    def knows(self, device: t.DeviceRef) -> bool:
        key = (device.station, device.device_id)
        if device.kind is t.DeviceKind.CHARGER:
            return key in self.chargers
        if device.kind is t.DeviceKind.DOOR_SENSOR:
            return key in self.sensors
        if device.kind is t.DeviceKind.GATE:
            return key in self.gates
        return False  # zigbee2mqtt: no registry mapping yet


def load_registry(session: Session) -> RegistrySnapshot:
    """The device registry in four queries (a few hundred rows per station at most)."""
    snap = RegistrySnapshot(loaded_at=time.monotonic())
    for code, skew in session.execute(
        select(m.Station.code, m.StationRules.skew_tolerance_seconds).outerjoin(m.StationRules)
    ):
        snap.stations[code] = timedelta(seconds=skew) if skew is not None else t.DEFAULT_SKEW_TOLERANCE
    for station, code, charger_id in session.execute(
        select(m.Station.code, m.Charger.code, m.Charger.id).join(m.Station, m.Charger.station_id == m.Station.id)
    ):
        snap.chargers[(station, code)] = charger_id
    for station, code in session.execute(
        select(m.Station.code, m.DoorSensor.code).join(m.Station, m.DoorSensor.station_id == m.Station.id)
    ):
        snap.sensors.add((station, code))
    for station, code in session.execute(
        select(m.Station.code, m.Gate.code).join(m.Station, m.Gate.station_id == m.Station.id)
    ):
        snap.gates.add((station, code))
    return snap


class RegistryCache:
    """The registry, reloaded when older than ``max_age`` seconds, or once per batch when a device is not in it."""

    def __init__(self, max_age: float = 30.0):
        self.max_age = max_age
        self._snapshot: RegistrySnapshot | None = None
        self.loads = 0

    def snapshot(self, session: Session) -> RegistrySnapshot:
        if self._snapshot is None or time.monotonic() - self._snapshot.loaded_at > self.max_age:
            self.reload(session)
        return self._snapshot  # type: ignore[return-value]

    def reload(self, session: Session) -> RegistrySnapshot:
        self._snapshot = load_registry(session)
        self.loads += 1
        return self._snapshot


class ApplyContext:
    """State shared by the messages of one batch: the registry cache, the keys applied so far, and pinned rows.

    Pinning: the session's identity map holds rows weakly, so a charger loaded for
    one message is gone by the next one and loaded again. The context keeps the
    rows of each station touched in the batch (chargers with their connectors,
    sensors, gates), so the services' lookups by primary key are answered from
    memory until the batch commits. Device sequences are kept as plain values
    (``SeqState``), read once per batch and written with Core statements.
    """

    def __init__(self, registry: RegistryCache | None = None, *, defer: bool = True):
        self.registry = registry or RegistryCache()
        self._reloaded = False
        self.applied: set[tuple[str, int, int]] = set()
        self._pinned: dict[str | None, list] = {}
        self.sequences: dict[str, SeqState | None] = {}
        self.meter_sessions: dict[tuple[int, int], int] = {}  # (charger id, transaction id) -> session id
        # Deferred bookkeeping (``defer``): a message newer than its device's sequence (nearly all of them) cannot
        # have been applied before, so its applied_messages row, its device's sequence row and its meter sample
        # wait here and are written once per batch (executemany, one update per device) at the commit.
        self.defer = defer
        self._claims: list[dict] = []
        self._sequence_values: dict[str, dict] = {}
        self._meters: list[dict] = []
        self._meter_keys: set[tuple[int, datetime]] = set()
        self._locked_chargers: set[int] = set()
        self._hooked = False

    def pin_station(self, session: Session, station: str | None) -> None:
        """Load the station's devices once per batch and keep them in the identity map."""
        if station in self._pinned:
            return
        rows: list = list(session.scalars(select(m.Station).where(m.Station.code == station)))
        if rows:
            sid = rows[0].id
            rows += session.scalars(select(m.Charger).where(m.Charger.station_id == sid)
                                    .options(selectinload(m.Charger.connectors))).all()
            rows += session.scalars(select(m.DoorSensor).where(m.DoorSensor.station_id == sid)).all()
            rows += session.scalars(select(m.Gate).where(m.Gate.station_id == sid)).all()
        self._pinned[station] = rows

    def sequence(self, session: Session, key: str) -> "SeqState | None":
        """The device's sequence state, read once per batch with its row locked until the batch commits
        (PostgreSQL: two workers applying one device's messages take turns)."""
        if key not in self.sequences:
            self.sequences[key] = SeqState.load(session, key)
        return self.sequences[key]

    # -- deferred writes --------------------------------------------------------------

    def _hook(self, session: Session) -> None:
        """Have the session's next commit write what this context deferred (``_write_deferred``)."""
        if not self._hooked:
            session.info.setdefault(_DEFERRED, []).append(self)
            self._hooked = True

    def defer_applied(self, session: Session, ident: tuple[str, int, int], key: str, state: "SeqState", gap: int,
                      now: datetime) -> None:
        """Record a new message as applied: its applied_messages row and its device's sequence, written at commit."""
        self._hook(session)
        device, boot, seq = ident
        self._claims.append({"device": device, "boot": boot, "seq": seq, "applied_at": now})
        values = self._sequence_values.get(key, {})
        values.update({k: v for k, v in state.__dict__.items() if k != "device"}, updated_at=now)
        if gap:
            values["gap_at"] = now  # managers see a device's gap for a day after it was found
        self._sequence_values[key] = values
        self.sequences[key] = state

    def defer_meter(self, session: Session, row: dict) -> None:
        self._hook(session)
        self._meters.append(row)
        self._meter_keys.add((row["session_id"], row["at"]))

    def has_meter(self, session_id: int, at: datetime) -> bool:
        return (session_id, at) in self._meter_keys

    def lock_charger(self, session: Session, charger_id: int) -> None:
        """PostgreSQL: lock the charger row (``charging._locked_charger``), once per batch: held until the commit."""
        conn = session.connection()
        if conn.dialect.name == "postgresql" and charger_id not in self._locked_chargers:
            conn.execute(_LOCK_CHARGER, {"cid": charger_id})
            if not _in_savepoint(session):  # rolling back to a SAVEPOINT releases the locks taken after it
                self._locked_chargers.add(charger_id)

    def flush_meters(self, session: Session) -> None:
        """Write the deferred meter samples now (before a service, which may read them, runs)."""
        if self._meters:
            session.connection().execute(_INSERT_METER, self._meters)
            self._meters = []
            self._meter_keys.clear()

    def flush(self, session: Session) -> None:
        """Write everything deferred now: meter samples, applied_messages rows, sequence rows."""
        self.flush_meters(session)
        if self._claims:
            session.connection().execute(_INSERT_APPLIED, self._claims)
            self._claims = []
        if self._sequence_values:
            conn = session.connection()
            for key, values in self._sequence_values.items():
                conn.execute(update(_SEQ).where(_SEQ.c.device == key), values)
            self._sequence_values = {}

    def _discard(self) -> None:
        self._claims, self._sequence_values, self._meters = [], {}, []
        self._meter_keys.clear()
        self._locked_chargers.clear()
        self._hooked = False

    def knows(self, session: Session, device: t.DeviceRef) -> bool:
        if self.registry.snapshot(session).knows(device):
            return True
        if self._reloaded:
            return False
        self._reloaded = True  # a device added since the last load: look again, once per batch
        return self.registry.reload(session).knows(device)

    def skew_tolerance(self, session: Session, station: str | None) -> timedelta:
        return self.registry.snapshot(session).stations.get(station, t.DEFAULT_SKEW_TOLERANCE)

    def charger_id(self, session: Session, station: str, charger: str) -> int | None:
        return self.registry.snapshot(session).chargers.get((station, charger))


_DEFERRED = "mqtt_bridge.deferred"


def _in_savepoint(session: Session) -> bool:
    real = session() if isinstance(session, scoped_session) else session
    return real.in_nested_transaction()


@event.listens_for(Session, "before_commit")
def _write_deferred(session: Session) -> None:
    """The commit of a transaction writes the deferred rows of the contexts that applied messages in it."""
    if session.in_nested_transaction():
        return  # a SAVEPOINT released, not the commit
    for ctx in session.info.pop(_DEFERRED, ()):
        ctx.flush(session)
        ctx._discard()


@event.listens_for(Session, "after_transaction_end")
def _drop_deferred(session: Session, transaction) -> None:
    """A transaction rolled back (or closed) without a commit: what it deferred is gone with it."""
    if transaction.parent is None:
        for ctx in session.info.pop(_DEFERRED, ()):
            ctx._discard()


def device_key(device: t.DeviceRef) -> str:
    """The key of a device in device_sequences / applied_messages: ``charger:station/F1``."""
    return f"{device.kind.value}:{device.station}/{device.device_id}"


# --------------------------------------------------------------------------- entry point


class _AlreadyApplied(Exception):
    pass


def apply_message(session: Session, received: Received, now: datetime, *, context: ApplyContext | None = None) -> Outcome:
    """Apply one message (flushes, no commit) and say what it did; bad input becomes a DeadLetter row, never an exception.

    ``now`` is the service clock's time (aware); ``received.received_at`` is the
    receive time used for skew checks. Raises only ``OperationalError`` (the
    database is unavailable: the caller rolls back and retries).
    """
    ctx = context or ApplyContext()
    vendor_outcome = vendor.apply_vendor_message(session, received, now, ctx)  # zigbee2mqtt, Shelly, counters
    if vendor_outcome is not None:
        return vendor_outcome
    try:
        ref = t.parse_topic(received.topic)
    except t.BadMessage as exc:
        return dead_letter(session, received, exc.reason, exc.detail)
    if ref.kind is t.TopicKind.COMMAND:
        return dead_letter(session, received, "forbidden_topic",
                           "command topics are published by the bridge alone", ref=ref)
    if not ctx.knows(session, ref.device):
        what = ref.device_kind.value.replace("_", " ")
        detail = (f"no station {ref.station!r}" if ref.station not in ctx.registry.snapshot(session).stations
                  else f"no {what} {ref.device_id!r} at station {ref.station!r}")
        return dead_letter(session, received, "unknown_device", detail, ref=ref)
    try:
        message = t.parse_message(received.topic, received.payload, received.received_at,
                                  skew_tolerance=ctx.skew_tolerance(session, ref.station))
    except t.BadMessage as exc:
        detail = f"{exc.detail} (field {exc.field!r})" if exc.field else exc.detail
        return dead_letter(session, received, exc.reason, detail, ref=ref)

    if isinstance(message, t.RetainedCleared):
        return Outcome(IGNORED, received.topic, ref.kind.value, reason="retained_cleared", station=ref.station,
                       device=device_key(ref.device), retained=received.retain)
    if isinstance(message, t.OnlineMessage):
        return _apply_state(session, received, ref, now, lambda: _set_online(session, message, now))
    return _apply_device_message(session, received, ref, message, now, ctx)


def _apply_state(session, received, ref, now, apply) -> Outcome:
    """A message without ts/boot/seq (online flags): state, so applying it again is harmless."""
    try:
        with session.begin_nested():
            apply()
    except OperationalError:
        raise
    except DomainError as exc:
        return _refused(session, received, ref, exc)
    except Exception as exc:  # a bug in a service: keep the stream moving, keep the payload
        return _apply_failed(session, received, ref, exc)
    return Outcome(APPLIED, received.topic, ref.kind.value, station=ref.station, device=device_key(ref.device),
                   retained=received.retain)


def _set_online(session: Session, msg: t.OnlineMessage, now: datetime) -> None:
    if msg.device_kind is t.DeviceKind.CHARGER:
        charging.set_charger_online(session, station_code=msg.station, charger_code=msg.device_id,
                                    online=msg.online, now=now)
    elif msg.device_kind is t.DeviceKind.DOOR_SENSOR:
        # An offline sensor makes its zones' counts uncertain (lounge.zone_view reads DoorSensor.online).
        lounge.set_sensor_online(session, station_code=msg.station, sensor_code=msg.device_id,
                                 online=msg.online, now=now)
    else:
        gates.set_gate_online(session, station_code=msg.station, gate_code=msg.device_id, online=msg.online, now=now)


# --------------------------------------------------------------------------- device messages


def _apply_device_message(session: Session, received: Received, ref: t.TopicRef, msg: t.DeviceMessage,
                          now: datetime, ctx: ApplyContext) -> Outcome:
    key = device_key(msg.device)
    ident = (key, msg.boot, msg.seq)
    base = dict(topic=received.topic, kind=ref.kind.value, station=msg.station, device=key, retained=received.retain,
                unknown_fields=msg.unknown_fields)
    if ident in ctx.applied:
        return Outcome(DUPLICATE, **base)

    ctx.pin_station(session, msg.station)
    if ctx.defer:
        seq_row = ctx.sequence(session, key)
        if seq_row is not None and _is_new(seq_row, msg):
            return _apply_new_message(session, received, ref, msg, now, ctx, seq_row, base)
        ctx.flush(session)  # a first or late message: the path below reads and writes the bookkeeping itself
    for attempt in (1, 2):
        seq_row = ctx.sequence(session, key)
        previous_ts = None
        if seq_row is not None and seq_row.boot == msg.boot and msg.seq > seq_row.last_seq:
            previous_ts = seq_row.last_ts
        skewed = t.is_skewed(msg.device_ts, received.received_at,
                             skew_tolerance=ctx.skew_tolerance(session, msg.station), previous_ts=previous_ts)
        if skewed != msg.skewed:
            msg = replace(msg, skewed=skewed)
        try:
            with session.begin_nested():
                _claim(session, ident, now)
                state, gap, filled = _advance_sequence(session, seq_row, key, msg, now)
                ignored = _route(session, msg, now, ctx)
            ctx.sequences[key] = state  # only now: a rolled-back message leaves the state as it was
            break
        except _AlreadyApplied:
            ctx.applied.add(ident)
            return Outcome(DUPLICATE, **base)
        except OperationalError:
            raise
        except DomainError as exc:
            _record_sequence_only(session, ctx, ident, key, msg, now)
            ctx.applied.add(ident)
            return _refused(session, received, ref, exc)
        except Exception as exc:
            if isinstance(exc, IntegrityError) and attempt == 1:
                # Another worker inserted this device's first sequence row (or a row a service creates)
                # meanwhile: read again and apply once more; a second failure is a real error.
                ctx.sequences.pop(key, None)
                continue
            _record_sequence_only(session, ctx, ident, key, msg, now)
            ctx.applied.add(ident)
            return _apply_failed(session, received, ref, exc)
    ctx.applied.add(ident)
    return _applied(base, msg, now, ignored, gap=gap, filled=filled)


def _is_new(row: "SeqState", msg: t.DeviceMessage) -> bool:
    """Whether the message comes after everything applied of its device (so it cannot have been applied before):
    ``last_seq`` is the highest applied seq of the current boot, and the sequence row is locked for the batch."""
    return msg.boot > row.boot or (msg.boot == row.boot and msg.seq > row.last_seq)


def _apply_new_message(session: Session, received: Received, ref: t.TopicRef, msg: t.DeviceMessage, now: datetime,
                       ctx: ApplyContext, seq_row: "SeqState", base: dict) -> Outcome:
    """A message newer than its device's sequence: no duplicate check, bookkeeping deferred to the commit.

    What it applies and records is what the general path does (the tests of tests/bridge run both); the
    difference is the cost: no applied_messages insert and sequence update per message, and a meter sample of a
    known session needs no SAVEPOINT (nothing is written before the commit). A service call still runs in a
    SAVEPOINT, so a refusal or a failure undoes that message only, and still counts it in its sequence.
    """
    key, ident = base["device"], (base["device"], msg.boot, msg.seq)
    previous_ts = seq_row.last_ts if msg.boot == seq_row.boot else None
    skewed = t.is_skewed(msg.device_ts, received.received_at,
                         skew_tolerance=ctx.skew_tolerance(session, msg.station), previous_ts=previous_ts)
    if skewed != msg.skewed:
        msg = replace(msg, skewed=skewed)
    refused: Outcome | None = None
    ignored = None
    if not (isinstance(msg, t.MeterSample) and _record_meter_fast(session, msg, msg.effective_ts, ctx)):
        ctx.flush_meters(session)  # a service may read the samples written so far
        for attempt in (1, 2):
            try:
                with session.begin_nested():
                    ignored = _route(session, msg, now, ctx)
                break
            except OperationalError:
                raise
            except DomainError as exc:
                refused = _refused(session, received, ref, exc)
                break
            except Exception as exc:
                if isinstance(exc, IntegrityError) and attempt == 1:
                    continue  # another worker inserted a row a service creates meanwhile: once more
                refused = _apply_failed(session, received, ref, exc)
                break
    state, gap = _next_sequence(seq_row, msg)
    ctx.defer_applied(session, ident, key, state, gap, now)
    ctx.applied.add(ident)
    if refused is not None:
        return refused
    return _applied(base, msg, now, ignored, gap=gap, filled=False)


def _applied(base: dict, msg: t.DeviceMessage, now: datetime, ignored, *, gap: int, filled: bool) -> Outcome:
    """The outcome of an applied device message; ``ignored`` is what ``_route`` returned."""
    lag = (now - msg.effective_ts).total_seconds()
    outcome = Outcome(APPLIED, gap=gap, filled=filled, skewed=msg.skewed, lag_seconds=lag, **base)
    if isinstance(ignored, tuple):  # a command result: (command, answer)
        return replace(outcome, command=ignored[0], result=ignored[1])
    if ignored:
        return replace(outcome, status=IGNORED, reason=ignored)
    return outcome


def _apply_failed(session: Session, received: Received, ref: t.TopicRef, exc: Exception) -> Outcome:
    """An unexpected exception in a service (a bug): logged with its traceback, the message dead-lettered."""
    log.exception("applying %s failed", received.topic)
    return dead_letter(session, received, APPLY_FAILED, f"{type(exc).__name__}: {str(exc)[:200]}", ref=ref,
                       loggable=False)


_INSERT_APPLIED = insert(m.AppliedMessage.__table__)


def _claim(session: Session, ident: tuple[str, int, int], now: datetime) -> None:
    """Insert (device, boot, seq) into applied_messages; the unique constraint turns a redelivery into _AlreadyApplied."""
    device, boot, seq = ident
    try:
        session.connection().execute(_INSERT_APPLIED, {"device": device, "boot": boot, "seq": seq, "applied_at": now})
    except IntegrityError:
        raise _AlreadyApplied() from None


def _record_sequence_only(session: Session, ctx: ApplyContext, ident, key: str, msg: t.DeviceMessage,
                          now: datetime) -> None:
    """A refused message still arrived: keep its place in the device's sequence (no false gap, redelivery is a duplicate)."""
    try:
        with session.begin_nested():
            _claim(session, ident, now)
            state, _, _ = _advance_sequence(session, ctx.sequence(session, key), key, msg, now)
        ctx.sequences[key] = state
    except _AlreadyApplied:
        pass


_SEQ = m.DeviceSequence.__table__


@dataclass(frozen=True)
class SeqState:
    """A device's row in device_sequences as plain values, written with Core (an ORM flush per message costs more)."""

    device: str
    boot: int
    last_seq: int
    last_ts: datetime | None
    missing: int
    gaps: int
    skewed: int

    @staticmethod
    def load(session: Session, key: str) -> "SeqState | None":
        row = session.execute(
            select(_SEQ.c.device, _SEQ.c.boot, _SEQ.c.last_seq, _SEQ.c.last_ts, _SEQ.c.missing, _SEQ.c.gaps,
                   _SEQ.c.skewed).where(_SEQ.c.device == key).with_for_update()
        ).first()
        if row is None:
            return None
        return SeqState(row.device, row.boot, row.last_seq, row.last_ts, row.missing or 0, row.gaps or 0,
                        row.skewed or 0)


def _advance_sequence(session: Session, row: SeqState | None, key: str, msg: t.DeviceMessage,
                      now: datetime) -> tuple[SeqState, int, bool]:
    """Write the device's boot/seq/ts, gap and skew counts for this (new) message; returns (new state, gap, filled)."""
    good_ts = None if msg.skewed else msg.device_ts
    if row is None:
        state = SeqState(key, msg.boot, msg.seq, good_ts, 0, 0, int(msg.skewed))
        session.connection().execute(insert(_SEQ), {**state.__dict__, "updated_at": now})
        return state, 0, False
    state, gap, filled = row, 0, False
    if _is_new(row, msg):
        state, gap = _next_sequence(row, msg)
    else:
        if msg.boot == row.boot and row.missing > 0 and _was_counted_missing(session, key, msg.boot, msg.seq):
            state, filled = replace(row, missing=row.missing - 1), True
        if msg.skewed:
            state = replace(state, skewed=state.skewed + 1)
    values = {k: v for k, v in state.__dict__.items() if k != "device"}
    if gap:
        values["gap_at"] = now  # managers see a device's gap for a day after it was found
    session.connection().execute(update(_SEQ).where(_SEQ.c.device == key), {**values, "updated_at": now})
    return state, gap, filled


def _next_sequence(row: SeqState, msg: t.DeviceMessage) -> tuple[SeqState, int]:
    """The device's sequence after a message newer than it (``_is_new``), and the seqs the message jumped over."""
    good_ts = None if msg.skewed else msg.device_ts
    gap = t.seq_gap((row.boot, row.last_seq), msg.boot, msg.seq)
    last_ts = row.last_ts if msg.boot == row.boot else None
    state = replace(row, boot=msg.boot, last_seq=msg.seq, last_ts=good_ts or last_ts, missing=row.missing + gap,
                    gaps=row.gaps + (1 if gap else 0), skewed=row.skewed + int(msg.skewed))
    return state, gap


def _was_counted_missing(session: Session, key: str, boot: int, seq: int) -> bool:
    """Whether a late seq of the current boot was counted as missing: it lies after the first message seen of the
    boot, or the boot began after an earlier one (then seq_gap counted from 1)."""
    first = session.execute(
        select(m.AppliedMessage.id, m.AppliedMessage.seq)
        .where(m.AppliedMessage.device == key, m.AppliedMessage.boot == boot)
        .order_by(m.AppliedMessage.id).limit(1)
    ).first()
    if first is None:
        return False
    if seq > first.seq:
        return True
    return bool(session.scalar(select(exists().where(m.AppliedMessage.device == key, m.AppliedMessage.id < first.id))))


def _route(session: Session, msg: t.DeviceMessage, now: datetime, ctx: ApplyContext):
    """Call the service for one device message; returns None, a reason it was ignored, or (command, answer)."""
    at = msg.effective_ts
    if isinstance(msg, t.StatusMessage):
        if msg.connector == 0:
            return "charger_status"
        charging.record_status(
            session, station_code=msg.station, charger_code=msg.device_id, connector=msg.connector,
            status=msg.status, error_code=msg.error_code, at=at, received_at=msg.received_at,
            device_ts=msg.device_ts, skewed=msg.skewed, now=now)
    elif isinstance(msg, t.TransactionEvent):
        charging.record_transaction(
            session, station_code=msg.station, charger_code=msg.device_id, event=msg.event,
            connector=msg.connector, transaction_id=msg.transaction_id, id_tag=msg.id_tag, meter_wh=msg.meter_wh,
            at=at, reservation_id=msg.reservation_id, reason=msg.stop_reason, now=now)
    elif isinstance(msg, t.MeterSample):
        _record_meter(session, msg, at, now, ctx)
    elif isinstance(msg, t.DoorCount):
        lounge.record_door_count(
            session, station_code=msg.station, sensor_code=msg.device_id, boot=msg.boot, seq=msg.seq,
            in_total=msg.in_total, out_total=msg.out_total, at=at, now=now)
    elif isinstance(msg, t.GatePassage):
        gates.record_gate_passage(session, station_code=msg.station, gate_code=msg.device_id, plate=msg.plate,
                                  direction=msg.direction, at=at, now=now)
    elif isinstance(msg, t.CommandResult):
        return msg.command, apply_command_result(session, msg, now, ctx.charger_id(session, msg.station, msg.device_id))
    return None


_MR = m.MeterReading.__table__
_CS = m.ChargingSession.__table__
_INSERT_METER = insert(_MR)
_METER_EXISTS = select(_MR.c.id).where(_MR.c.session_id == bindparam("sid"), _MR.c.at == bindparam("at")).limit(1)
_SESSION_OF = select(_CS.c.id).where(_CS.c.charger_id == bindparam("cid"), _CS.c.transaction_id == bindparam("tx"))
_LOCK_CHARGER = select(m.Charger.__table__.c.id).where(m.Charger.__table__.c.id == bindparam("cid")).with_for_update()


def _meter_session(session: Session, msg: t.MeterSample, ctx: ApplyContext) -> int | None:
    """The id of the sample's session when its charger and connector are known and the session exists, else None;
    the charger row locked on PostgreSQL (one charger's messages apply one at a time, as ``_locked_charger``)."""
    charger_id = ctx.charger_id(session, msg.station, msg.device_id)
    charger = session.get(m.Charger, charger_id) if charger_id is not None else None  # pinned: no query
    if charger is None or not any(c.number == msg.connector for c in charger.connectors):
        return None
    ctx.lock_charger(session, charger_id)
    session_id = ctx.meter_sessions.get((charger_id, msg.transaction_id))
    if session_id is None:
        session_id = session.connection().execute(_SESSION_OF, {"cid": charger_id, "tx": msg.transaction_id}).scalar()
        if session_id is not None:
            ctx.meter_sessions[(charger_id, msg.transaction_id)] = session_id
    return session_id


def _meter_row(msg: t.MeterSample, session_id: int, at: datetime) -> dict:
    return {"session_id": session_id, "at": at, "energy_wh": msg.energy_wh, "power_w": round(msg.power_w),
            "soc": None if msg.soc is None else round(msg.soc)}


def _record_meter_fast(session: Session, msg: t.MeterSample, at: datetime, ctx: ApplyContext) -> bool:
    """A sample of an existing session, deferred to the commit (``ApplyContext.defer_meter``); False when it needs
    the service (an unknown connector or transaction)."""
    session_id = _meter_session(session, msg, ctx)
    if session_id is None:
        return False
    if ctx.has_meter(session_id, at) or session.connection().execute(
            _METER_EXISTS, {"sid": session_id, "at": at}).first() is not None:
        return True  # the same sample again: a no-op, as in the service
    ctx.defer_meter(session, _meter_row(msg, session_id, at))
    return True


def _record_meter(session: Session, msg: t.MeterSample, at: datetime, now: datetime, ctx: ApplyContext) -> None:
    """``charging.record_meter`` for the common case, in Core statements; anything else goes to the service.

    Meter samples are two thirds of the traffic, and the service's ORM work (lock and re-read the charger,
    look up the session, look for the same sample, flush a new object) was the largest cost of ingest.
    Here, for a known connector of a session that exists: the same effects (the charger row locked on
    PostgreSQL, one reading per session and instant) with the session's id kept for the batch (a
    session's id never changes). An unknown charger, connector or transaction (the service makes the
    placeholder session, or refuses) takes the service's own path.
    """
    session_id = _meter_session(session, msg, ctx)
    if session_id is None:
        charging.record_meter(
            session, station_code=msg.station, charger_code=msg.device_id, connector=msg.connector,
            transaction_id=msg.transaction_id, energy_wh=msg.energy_wh, power_w=round(msg.power_w),
            soc=None if msg.soc is None else round(msg.soc), at=at, now=now)
        return
    conn = session.connection()
    if ctx.has_meter(session_id, at) or conn.execute(_METER_EXISTS, {"sid": session_id, "at": at}).first() is not None:
        return  # the same sample again: a no-op, as in the service
    conn.execute(_INSERT_METER, _meter_row(msg, session_id, at))


# --------------------------------------------------------------------------- command results


def apply_command_result(session: Session, msg: t.CommandResult, now: datetime, charger_id: int | None) -> str:
    """Record a charger's answer in the outbox row of its request_id; returns the answer, or "unmatched".

    The first answer wins (a redelivered or repeated answer changes nothing). A
    reserve_now refused (Occupied, Faulted, Rejected, Unavailable) while its
    booking still holds that charger moves the booking (booking.hold_refused). An
    Accepted reserve_now arriving after the bridge gave up on it (status failed,
    booking already moved) is recorded and the stray reservation cancelled.
    """
    cmd = session.scalar(select(m.CommandOutbox).where(m.CommandOutbox.request_id == msg.request_id))
    if cmd is None or cmd.charger_id != charger_id or cmd.name != msg.command:
        return "unmatched"
    if cmd.result is not None:
        return msg.status
    gave_up = cmd.status == "failed"
    cmd.result = msg.status
    cmd.answered_at = now
    if not gave_up:
        cmd.status = "answered"
    session.flush()
    if cmd.name == "reserve_now" and cmd.booking_id is not None:
        b = session.get(m.Booking, cmd.booking_id)
        holds_it = b is not None and b.status == "held" and b.charger_id == cmd.charger_id
        if msg.status in REFUSED_RESERVATION and holds_it and not gave_up:
            booking.hold_refused(session, now, cmd.booking_id, msg.status)
        elif msg.status == "Accepted" and gave_up and not holds_it:
            charger = session.get(m.Charger, cmd.charger_id)
            enqueue_command(session, charger, "cancel_reservation",
                            {"reservation_id": cmd.payload.get("reservation_id", cmd.booking_id)}, now, b)
    return msg.status


# --------------------------------------------------------------------------- dead letters


def _station_of(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) > 2 and parts[0] == t.STATION_ROOT and t.is_valid_id(parts[1]):
        return parts[1]
    return None


def _refused(session: Session, received: Received, ref: t.TopicRef, exc: DomainError) -> Outcome:
    reason = "unknown_device" if isinstance(exc, NotFound) else "bad_shape"
    # Service messages may quote a plate or an id tag: the code is logged, the message only stored.
    return dead_letter(session, received, reason, f"{exc.code}: {exc.message}", ref=ref, loggable=False,
                       log_detail=exc.code)


def dead_letter_cap() -> int:
    """Dead letters stored per source and hour at most (CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR; 0: no cap)."""
    if has_app_context():
        return int(current_app.config.get("CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR", dead_letters.DEFAULT_CAP_PER_HOUR))
    return dead_letters.DEFAULT_CAP_PER_HOUR


def dead_letter(session: Session, received: Received, reason: str, detail: str, *, ref: t.TopicRef | None = None,
                loggable: bool = True, log_detail: str | None = None) -> Outcome:
    """Store a message that is never applied (topic, payload bytes, reason, detail, station code) and say so;
    over its source's hourly cap (``services.dead_letters``) it is only counted: ``Outcome.stored`` False."""
    station = ref.station if ref is not None else _station_of(received.topic)
    cap = dead_letter_cap()
    stored = dead_letters.admit(session, received.topic, station, received.received_at, cap)
    payload = bytes(received.payload)
    if len(payload) > STORED_PAYLOAD_LIMIT:
        detail = f"{detail} [payload truncated to {STORED_PAYLOAD_LIMIT} of {len(payload)} bytes]"
        payload = payload[:STORED_PAYLOAD_LIMIT]
    if stored:
        session.add(m.DeadLetter(received_at=received.received_at, topic=received.topic[:1000], payload=payload,
                                 reason=reason, detail=detail[:2000], station_code=station))
    else:
        note = f" [not stored: over {cap} an hour from {dead_letters.source_of(received.topic)}]"
        detail, log_detail = detail + note, (log_detail or "") + note
    return Outcome(DEAD_LETTER, received.topic, ref.kind.value if ref is not None else None, reason=reason,
                   detail=detail if loggable else (log_detail or ""), loggable_detail=loggable,
                   station=station, device=device_key(ref.device) if ref is not None else None,
                   retained=received.retain, stored=stored)
