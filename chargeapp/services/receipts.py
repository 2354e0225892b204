"""Receipts: charging sessions and parking stays priced by the pure rules, corrections
after late telemetry, managers' waivers and corrections, and the driver's views.

Money is integer fen, energy integer Wh, instants aware UTC; receipt text is English
with station-local HH:MM. Functions take a session and ``now``, flush, never commit.

A receipt, once written, is never changed except for ``superseded``: a changed figure
is a new ``correction`` receipt whose component columns hold the *delta* and which
points (``corrects_id``) at the receipt it supersedes, always the latest of its chain
(original -> correction 1 -> correction 2 ...). The standing figures of a chain are
the original plus every delta; exactly one receipt of a chain is not superseded.
Decisions and worked examples: docs/rules.md, "Receipts".
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta, tzinfo
from fractions import Fraction

from sqlalchemy import and_, case, delete, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from chargeapp.db import models as m
from chargeapp.domain.charger import ConnectorStatus, StatusChange, charging_intervals
from chargeapp.domain.errors import Conflict, DomainError, Forbidden, InvalidRequest, NotFound
from chargeapp.domain.intervals import Interval
from chargeapp.domain.parking import (
    ParkingPolicy, ParkingSettlement, charging_time_in_stay, format_duration, format_money,
    free_parking_until, local_stamp,
)
from chargeapp.domain.parking import settle_stay as settle_parking
from chargeapp.domain.plates import InvalidPlate, normalise_plate
from chargeapp.domain.tariff import (
    Band, EnergyCharge, IdleFee, MeterSample, Tariff, idle_fee, price_energy, round_fraction_half_up,
)
from chargeapp.services.common import audit, may_manage, notify, rules_of, station_tz
from chargeapp.services.tariffs import tariff_for

log = logging.getLogger(__name__)

ORIGINAL_KINDS = ("charging", "parking")
CHARGING_COMPONENTS = ("energy_fen", "service_fen", "idle_fen")
PARKING_COMPONENTS = ("parking_fen",)
COMPONENT_LABELS = {
    "energy_fen": "energy", "service_fen": "service fee", "idle_fen": "idle fee", "parking_fen": "parking",
}
# Late telemetry is looked for this long after a receipt is issued (settle_due).
RECHECK_WINDOW = timedelta(hours=24)
# Receipts of that window looked at per pass, at most. A station's day fits in one pass; a network's day (tens of
# thousands) is looked at in turns, each pass going on from where the last one stopped (periodic_cursors), so a
# pass's time and memory stay bounded whatever the network's size (docs/rules.md, Receipts).
RECHECK_PER_PASS = 2_000
RECHECK_CURSOR = "receipts.recheck"
IN_CHUNK = 5_000  # ids per IN list at most (SQLite and psycopg bound a statement's parameters)
# A fast charger's receipt waits this long after the stop for the connector to report
# Available; then it is issued without an idle fee, and a later Available corrects it.
IDLE_WAIT_LIMIT = timedelta(hours=2)


class ReceiptNotFound(NotFound):
    """No such receipt."""

    code = "receipt_not_found"


class ReasonRequired(InvalidRequest):
    """A manager's change to a receipt needs a reason."""

    code = "reason_required"


class InvalidFeeComponent(InvalidRequest):
    """Fee components are energy, service, idle (charging receipts) and parking (parking receipts)."""

    code = "invalid_fee_component"


class InvalidFeeAmount(InvalidRequest):
    """A corrected fee is a non-negative integer of fen."""

    code = "invalid_fee_amount"


class NothingToCorrect(Conflict):
    """The receipt already shows those figures."""

    code = "nothing_to_correct"


class NotStationManager(Forbidden):
    """Only a manager of the receipt's station, or an administrator, may change it."""

    code = "not_station_manager"


# -- figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """The numbers of a receipt: Wh and the four fee components in fen (the total is their sum)."""

    energy_wh: int = 0
    energy_fen: int = 0
    service_fen: int = 0
    idle_fen: int = 0
    parking_fen: int = 0

    @property
    def total_fen(self) -> int:
        return self.energy_fen + self.service_fen + self.idle_fen + self.parking_fen

    @classmethod
    def of(cls, receipt: m.Receipt) -> "Figures":
        return cls(**{f.name: getattr(receipt, f.name) or 0 for f in fields(cls)})

    def plus(self, other: "Figures") -> "Figures":
        return Figures(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def minus(self, other: "Figures") -> "Figures":
        return Figures(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)})

    def as_dict(self) -> dict:
        """The figures with their total: the receipt's columns, and what details/audit entries record."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "total_fen": self.total_fen}


@dataclass(frozen=True)
class Priced:
    """A receipt's content computed from the recorded history (nothing written yet)."""

    figures: Figures
    tariff_version_id: int
    currency: str
    explanation: str
    details: dict
    driver_id: int | None
    # The explanation as lines {"code", "params"} (chargeapp.web.messages renders them in the reader's language).
    lines: tuple[dict, ...] = ()


# -- formatting ------------------------------------------------------------------------------


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _local(at: datetime, tz: tzinfo, reference_day: date) -> str:
    """HH:MM in the station tz, with the date when it is not ``reference_day``."""
    local = at.astimezone(tz)
    text = local.strftime("%H:%M")
    return text if local.date() == reference_day else f"{text} on {local.date().isoformat()}"


def _kwh(wh: int | Fraction) -> str:
    """Wh as "20.000 kWh" (a fraction of a Wh rounded half-up; for reading only)."""
    wh = round_fraction_half_up(Fraction(wh)) if not isinstance(wh, int) else wh
    sign = "-" if wh < 0 else ""
    whole, rest = divmod(abs(wh), 1000)
    return f"{sign}{whole}.{rest:03d} kWh"


def _per_kwh(price: int, currency: str) -> str:
    """1/10,000 CNY per kWh as "1.0755 CNY/kWh"."""
    return f"{price // 10_000}.{price % 10_000:04d} {currency}/kWh"


def _wh_number(wh: Fraction) -> int | float:
    """Wh for the details: an integer when whole, else rounded to 0.001 Wh (display only, never priced)."""
    if wh.denominator == 1:
        return int(wh)
    return round_fraction_half_up(wh * 1000) / 1000


def _signed_money(fen: int, currency: str) -> str:
    return ("+" if fen > 0 else "") + format_money(fen, currency)


# -- status history --------------------------------------------------------------------------


def _history(session: Session, connector_id: int, start: datetime, end: datetime) -> list[StatusChange]:
    """The connector's changes deciding its states in [start, end): the one in effect at start, then those inside."""
    carried = session.scalar(
        select(m.StatusChange)
        .where(m.StatusChange.connector_id == connector_id, m.StatusChange.at <= start)
        .order_by(m.StatusChange.at.desc(), m.StatusChange.id.desc())
        .limit(1)
    )
    inside = session.scalars(
        select(m.StatusChange)
        .where(m.StatusChange.connector_id == connector_id, m.StatusChange.at > start, m.StatusChange.at < end)
        .order_by(m.StatusChange.at, m.StatusChange.id)
    )
    rows = ([carried] if carried is not None else []) + list(inside)
    return [StatusChange(r.at, r.status) for r in rows]


def _lock(session: Session, model, row_id: int) -> None:
    """Lock the row (PostgreSQL) so two workers cannot issue the same receipt twice; a no-op on SQLite."""
    session.execute(select(model.id).where(model.id == row_id).with_for_update())


# -- charging receipts -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Idle:
    status: str  # billed | slow_charger | no_charging | not_reported
    fee: IdleFee | None = None
    charging_end: datetime | None = None
    free_at: datetime | None = None

    @property
    def fee_fen(self) -> int:
        return self.fee.fee_fen if self.fee is not None else 0


def _meter_samples(session: Session, cs: m.ChargingSession) -> list[MeterSample]:
    """Start and stop registers plus the readings taken between them (readings outside the session are ignored)."""
    samples = []
    if cs.start_meter_wh is not None:
        samples.append(MeterSample(cs.started_at, cs.start_meter_wh))
    readings = session.scalars(
        select(m.MeterReading)
        .where(m.MeterReading.session_id == cs.id, m.MeterReading.at >= cs.started_at,
               m.MeterReading.at <= cs.stopped_at)
        .order_by(m.MeterReading.at, m.MeterReading.id)
    )
    samples.extend(MeterSample(r.at, r.energy_wh) for r in readings)
    if cs.stop_meter_wh is not None:
        samples.append(MeterSample(cs.stopped_at, cs.stop_meter_wh))
    return samples


def _connector_free_at(session: Session, cs: m.ChargingSession, since: datetime) -> datetime | None:
    """When the vehicle left: the first Available at or after ``since``, or the next session's start if earlier."""
    available = session.scalar(
        select(m.StatusChange.at)
        .where(m.StatusChange.connector_id == cs.connector_id,
               m.StatusChange.status == ConnectorStatus.AVAILABLE.value, m.StatusChange.at >= since)
        .order_by(m.StatusChange.at).limit(1)
    )
    next_start = session.scalar(
        select(m.ChargingSession.started_at)
        .where(m.ChargingSession.connector_id == cs.connector_id, m.ChargingSession.id != cs.id,
               m.ChargingSession.started_at > cs.started_at, m.ChargingSession.started_at >= since)
        .order_by(m.ChargingSession.started_at).limit(1)
    )
    candidates = [t for t in (available, next_start) if t is not None]
    return min(candidates) if candidates else None


def _idle(session: Session, now: datetime, cs: m.ChargingSession, charger: m.Charger, tariff: Tariff) -> _Idle | None:
    """The idle outcome of a closed session, or None while the receipt must wait for the connector's Available."""
    if charger.kind != "fast":
        return _Idle("slow_charger")
    end = max(cs.stopped_at, cs.started_at)
    charging = charging_intervals(_history(session, cs.connector_id, cs.started_at, end), cs.started_at, end)
    if not charging:
        return _Idle("no_charging")
    charging_end = charging[-1].end
    free_at = _connector_free_at(session, cs, charging_end)
    if free_at is None:
        if now - cs.stopped_at < IDLE_WAIT_LIMIT:
            return None
        return _Idle("not_reported", charging_end=charging_end)
    return _Idle("billed", idle_fee(charging_end, free_at, tariff), charging_end, free_at)


def _idle_text(idle: _Idle, tariff: Tariff, tz: tzinfo, day: date) -> str:
    cur = tariff.currency
    if idle.status == "slow_charger":
        return "No idle fee on slow chargers."
    if idle.status == "no_charging":
        return "No Charging time recorded: no idle fee."
    if idle.status == "not_reported":
        return (f"Charging ended at {_local(idle.charging_end, tz, day)}; the connector has not reported "
                "Available yet: no idle fee charged.")
    fee = idle.fee
    text = (f"Idle {format_duration(fee.idle)} from {_local(idle.charging_end, tz, day)} until "
            f"{_local(idle.free_at, tz, day)} ({format_duration(tariff.idle_grace)} free): ")
    if fee.billed_minutes == 0:
        return text + "no idle fee."
    text += (f"{fee.billed_minutes} min at {format_money(tariff.idle_fee_per_minute_fen, cur)}/min"
             f" = {format_money(fee.billed_minutes * tariff.idle_fee_per_minute_fen, cur)}")
    if fee.capped:
        text += f", capped at {format_money(fee.fee_fen, cur)}"
    return text + "."


def _idle_line(idle: _Idle, tariff: Tariff, tz: tzinfo, day: date) -> dict:
    """``_idle_text`` as a code and params (durations in seconds, money in fen, station-local times as text)."""
    if idle.status in ("slow_charger", "no_charging"):
        return {"code": f"idle_{idle.status}", "params": {}}
    if idle.status == "not_reported":
        return {"code": "idle_not_reported", "params": {"charging_end": local_stamp(idle.charging_end, tz, day)}}
    fee = idle.fee
    params = {"idle_seconds": int(fee.idle.total_seconds()), "from": local_stamp(idle.charging_end, tz, day),
              "until": local_stamp(idle.free_at, tz, day), "grace_seconds": int(tariff.idle_grace.total_seconds())}
    if fee.billed_minutes == 0:
        return {"code": "idle_within_grace", "params": params}
    params.update(minutes=fee.billed_minutes, rate_fen=tariff.idle_fee_per_minute_fen,
                  amount_fen=fee.billed_minutes * tariff.idle_fee_per_minute_fen)
    if fee.capped:
        return {"code": "idle_capped", "params": {**params, "fee_fen": fee.fee_fen}}
    return {"code": "idle_billed", "params": params}


def _charging_lines(cs: m.ChargingSession, charger: m.Charger, tariff: Tariff, tz: tzinfo,
                    energy: EnergyCharge, idle: _Idle, figures: Figures) -> tuple[dict, ...]:
    """``_charging_explanation`` as lines of a code and params."""
    day = cs.started_at.astimezone(tz).date()
    bands = [{"band": band.value, "wh": _wh_int(wh), "price": tariff.price_of(band)}
             for band, wh in energy.wh_by_band.items() if wh]
    return (
        {"code": "charging_session", "params": {
            "charger": charger.code, "from": local_stamp(cs.started_at, tz, day),
            "to": local_stamp(cs.stopped_at, tz, day), "energy_wh": _wh_int(energy.energy_wh)}},
        {"code": "charging_energy", "params": {"bands": bands, "energy_fen": energy.energy_fen}},
        {"code": "charging_service", "params": {"energy_wh": _wh_int(energy.energy_wh), "price": tariff.service_fee,
                                                "service_fen": energy.service_fen}},
        _idle_line(idle, tariff, tz, day),
        {"code": "total", "params": {"total_fen": figures.total_fen}},
    )


def _wh_int(wh: int | Fraction) -> int:
    """Wh as a whole number for reading (a fraction rounded half-up, as ``_kwh`` shows it)."""
    return wh if isinstance(wh, int) else round_fraction_half_up(Fraction(wh))


def _charging_explanation(cs: m.ChargingSession, charger: m.Charger, tariff: Tariff, tz: tzinfo,
                          energy: EnergyCharge, idle: _Idle, figures: Figures) -> str:
    cur = tariff.currency
    day = cs.started_at.astimezone(tz).date()
    parts = [f"Charger {charger.code} from {_local(cs.started_at, tz, day)} to {_local(cs.stopped_at, tz, day)}: "
             f"{_kwh(energy.energy_wh)}."]
    bands = [f"{_kwh(wh)} {band} at {_per_kwh(tariff.price_of(band), cur)}"
             for band, wh in energy.wh_by_band.items() if wh]
    parts.append(f"Energy: {', '.join(bands) or _kwh(0)}: {format_money(energy.energy_fen, cur)}.")
    parts.append(f"Service: {_kwh(energy.energy_wh)} at {_per_kwh(tariff.service_fee, cur)}: "
                 f"{format_money(energy.service_fen, cur)}.")
    parts.append(_idle_text(idle, tariff, tz, day))
    parts.append(f"Total {format_money(figures.total_fen, cur)}.")
    return " ".join(parts)


def _idle_details(idle: _Idle) -> dict:
    fee = idle.fee
    idle_seconds = int(fee.idle.total_seconds()) if fee else 0
    return {
        "status": idle.status,
        "charging_ended_at": _iso(idle.charging_end),
        "connector_free_at": _iso(idle.free_at),
        "idle_seconds": idle_seconds,
        "idle_minutes": idle_seconds // 60,
        "billed_minutes": fee.billed_minutes if fee else 0,
        "capped": fee.capped if fee else False,
    }


def _price_session(session: Session, now: datetime, cs: m.ChargingSession) -> Priced | None:
    """A closed session priced by the version in effect at its start; None if it cannot be priced yet."""
    if cs.started_at is None or cs.stopped_at is None:
        return None  # open, or its start never arrived (flagged stop_without_start): wait
    station = session.get(m.Station, cs.station_id)
    charger = session.get(m.Charger, cs.charger_id)
    connector = session.get(m.Connector, cs.connector_id)
    tz = station_tz(station)
    version, tariff = tariff_for(session, station, cs.started_at)
    idle = _idle(session, now, cs, charger, tariff)
    if idle is None:
        return None
    samples = _meter_samples(session, cs)
    energy = price_energy(samples, tariff, tz)
    figures = Figures(energy_wh=energy.energy_wh, energy_fen=energy.energy_fen,
                      service_fen=energy.service_fen, idle_fen=idle.fee_fen)
    details = {
        "charger": charger.code,
        "connector": connector.number if connector else None,
        "transaction_id": cs.transaction_id,
        "started_at": _iso(cs.started_at),
        "stopped_at": _iso(cs.stopped_at),
        "closed_by": cs.closed_by,
        "tariff_effective_from": _iso(version.effective_from),
        "meter_samples": len(samples),
        "wh_by_band": {band.value: _wh_number(energy.wh_by_band[band]) for band in Band},
        "prices": {"peak": version.peak_price, "flat": version.flat_price, "valley": version.valley_price,
                   "service_fee": version.service_fee},
        "idle": _idle_details(idle),
    }
    return Priced(figures, version.id, tariff.currency,
                  _charging_explanation(cs, charger, tariff, tz, energy, idle, figures), details, cs.driver_id,
                  _charging_lines(cs, charger, tariff, tz, energy, idle, figures))


def _original(session: Session, *, session_id: int | None = None, stay_id: int | None = None) -> m.Receipt | None:
    q = select(m.Receipt).order_by(m.Receipt.id).limit(1)
    if session_id is not None:
        q = q.where(m.Receipt.kind == "charging", m.Receipt.session_id == session_id)
    else:
        q = q.where(m.Receipt.kind == "parking", m.Receipt.stay_id == stay_id)
    return session.scalar(q)


def _write_original(session: Session, now: datetime, kind: str, station_id: int, priced: Priced,
                    session_id: int | None = None, stay_id: int | None = None) -> m.Receipt:
    receipt = m.Receipt(
        kind=kind, station_id=station_id, driver_id=priced.driver_id, session_id=session_id, stay_id=stay_id,
        tariff_version_id=priced.tariff_version_id, currency=priced.currency, explanation=priced.explanation,
        explanation_lines=list(priced.lines), details=priced.details, issued_at=now, superseded=False, **priced.figures.as_dict(),
    )
    session.add(receipt)
    session.flush()
    return receipt


def issue_charging_receipt(session: Session, now: datetime, charging_session: m.ChargingSession) -> m.Receipt | None:
    """The session's charging receipt (fen; bands by station-local time), issued once: a second call returns the first.

    None while the session is open or its start is missing, or, on a fast charger, while
    the connector has not reported Available since charging ended (at most IDLE_WAIT_LIMIT
    after the stop). Raises TariffMissing if no tariff was in effect at the start.
    """
    return _issue_charging_receipt(session, now, charging_session)[0]


def _issue_charging_receipt(session: Session, now: datetime, cs: m.ChargingSession) -> tuple[m.Receipt | None, bool]:
    """``issue_charging_receipt``, also saying whether this call priced and wrote the receipt."""
    _lock(session, m.ChargingSession, cs.id)
    existing = _original(session, session_id=cs.id)
    if existing is not None:
        if cs.receipted_at is None:  # (another worker's, issued meanwhile)
            cs.receipted_at = existing.issued_at
        return existing, False
    priced = _price_session(session, now, cs)
    if priced is None:
        return None, False
    receipt = _write_original(session, now, "charging", cs.station_id, priced, session_id=cs.id)
    cs.receipted_at = receipt.issued_at
    return receipt, True


# -- parking receipts ------------------------------------------------------------------------


def _registrations_during(session: Session, plate: str, start: datetime, end: datetime) -> list[m.PlateRegistration]:
    """Registrations of the (normalised) plate whose [valid_from, valid_to) overlaps [start, end)."""
    return list(session.scalars(
        select(m.PlateRegistration)
        .where(m.PlateRegistration.plate == plate, m.PlateRegistration.valid_from < end,
               or_(m.PlateRegistration.valid_to.is_(None), m.PlateRegistration.valid_to > start))
        .order_by(m.PlateRegistration.id)
    ))


@dataclass(frozen=True)
class _StayCharging:
    intervals: list[Interval]
    driver_ids: list[int]
    session_ids: list[int]
    payer_id: int | None


def _payer(registrations: list[m.PlateRegistration]) -> int | None:
    """Who pays: the driver of the registration ending last (open ones first), then starting last."""
    if not registrations:
        return None
    far = datetime.max.replace(tzinfo=registrations[0].valid_from.tzinfo)
    return max(registrations, key=lambda r: (r.valid_to or far, r.valid_from, r.id)).user_id


def _stay_charging(session: Session, stay: m.ParkingStay, end: datetime) -> _StayCharging:
    """Charging-state intervals in [entry, end) of the plate's drivers, each while the plate was registered to them."""
    entry = stay.entry_at
    registrations = _registrations_during(session, stay.plate, entry, end)
    by_driver: dict[int, list[m.PlateRegistration]] = {}
    for reg in registrations:
        by_driver.setdefault(reg.user_id, []).append(reg)
    intervals: list[Interval] = []
    counted: set[int] = set()
    if by_driver:
        sessions = session.scalars(
            select(m.ChargingSession)
            .where(m.ChargingSession.driver_id.in_(by_driver), m.ChargingSession.station_id == stay.station_id,
                   m.ChargingSession.started_at.is_not(None), m.ChargingSession.started_at < end,
                   or_(m.ChargingSession.stopped_at.is_(None), m.ChargingSession.stopped_at > entry))
            .order_by(m.ChargingSession.started_at, m.ChargingSession.id)
        )
        for cs in sessions:
            for reg in by_driver[cs.driver_id]:
                start = max(cs.started_at, entry, reg.valid_from)
                stop = min(t for t in (cs.stopped_at, end, reg.valid_to) if t is not None)
                if start >= stop:
                    continue
                found = charging_intervals(_history(session, cs.connector_id, start, stop), start, stop)
                if found:
                    counted.add(cs.id)
                intervals.extend(found)
    return _StayCharging(intervals, sorted(by_driver), sorted(counted), _payer(registrations))


def _policy(station: m.Station, tariff: Tariff) -> ParkingPolicy:
    rules = rules_of(station)
    return ParkingPolicy.from_tariff(
        tariff,
        qualify_charging=timedelta(minutes=rules.free_parking_qualify_minutes),
        free_period=timedelta(minutes=rules.free_parking_minutes),
        block=timedelta(minutes=rules.parking_block_minutes),
    )


def _price_stay(session: Session, stay: m.ParkingStay, exit: datetime) -> tuple[Priced, ParkingSettlement]:
    """The stay [entry, exit) priced by the version in effect at entry and the station's rules."""
    station = session.get(m.Station, stay.station_id)
    tz = station_tz(station)
    version, tariff = tariff_for(session, station, stay.entry_at)
    policy = _policy(station, tariff)
    charging = _stay_charging(session, stay, exit)
    settlement = settle_parking(stay.entry_at, exit, charging.intervals, policy, tz)
    details = {
        "plate": stay.plate,
        "entry_at": _iso(stay.entry_at),
        "exit_at": _iso(exit),
        "charging_seconds": int(settlement.charging_time.total_seconds()),
        "qualify_seconds": int(policy.qualify_charging.total_seconds()),
        "qualified": settlement.qualified,
        "free_until": _iso(settlement.free_until),
        "blocks": settlement.blocks,
        "block_minutes": int(policy.block.total_seconds() // 60),
        "block_fen": policy.block_fen,
        "daily_cap_fen": policy.daily_cap_fen,
        "days": [{"day": d.day.isoformat(), "blocks": d.blocks, "fen": d.fen, "capped": d.capped}
                 for d in settlement.days],
        "drivers": charging.driver_ids,
        "sessions": charging.session_ids,
        "tariff_effective_from": _iso(version.effective_from),
    }
    priced = Priced(Figures(parking_fen=settlement.fee_fen), version.id, tariff.currency,
                    settlement.explanation, details, charging.payer_id, settlement.explanation_lines)
    return priced, settlement


def settle_stay(session: Session, now: datetime, stay: m.ParkingStay) -> m.Receipt | None:
    """The stay's parking receipt (fen), issued once, at least receipt_settle_minutes after gate out.

    None while the stay is open or settling, and for a stay without an entry
    (``out_without_in``: a manager must fix it). Sets ``stay.settled_at``.
    A second call returns the first receipt.
    """
    return _settle_stay(session, now, stay)[0]


def _settling(session: Session, now: datetime, stay: m.ParkingStay) -> bool:
    """Gate out less than its station's receipt_settle_minutes ago: a late passage may still change it, so the
    receipt waits."""
    station = session.get(m.Station, stay.station_id)
    return now - stay.exit_at < timedelta(minutes=rules_of(station).receipt_settle_minutes)


def _settle_stay(session: Session, now: datetime, stay: m.ParkingStay) -> tuple[m.Receipt | None, bool]:
    """``settle_stay``, also saying whether this call priced and wrote the receipt."""
    _lock(session, m.ParkingStay, stay.id)
    existing = _original(session, stay_id=stay.id)
    if existing is not None:
        return existing, False
    if stay.entry_at is None or stay.exit_at is None:
        return None, False
    if _settling(session, now, stay):
        return None, False
    priced, _ = _price_stay(session, stay, stay.exit_at)
    receipt = _write_original(session, now, "parking", stay.station_id, priced, stay_id=stay.id)
    stay.settled_at = now
    session.flush()
    return receipt, True


# -- corrections -------------------------------------------------------------------------------


def _chain(session: Session, receipt: m.Receipt) -> list[m.Receipt]:
    """The receipt's chain, original first, each later one correcting the one before.

    The original's row is locked first (PostgreSQL), so two workers cannot both
    correct the same latest receipt.
    """
    root = receipt
    while root.corrects_id is not None:
        root = session.get(m.Receipt, root.corrects_id)
    _lock(session, m.Receipt, root.id)
    chain = [root]
    while True:
        nxt = session.scalar(
            select(m.Receipt).where(m.Receipt.corrects_id == chain[-1].id).order_by(m.Receipt.id).limit(1)
        )
        if nxt is None:
            return chain
        chain.append(nxt)


def _standing(chain: list[m.Receipt]) -> Figures:
    total = Figures()
    for receipt in chain:
        total = total.plus(Figures.of(receipt))
    return total


def _pinned(chain: list[m.Receipt]) -> set[str]:
    """Components a manager set (waived or corrected): later rechecks leave them as set."""
    out: set[str] = set()
    for receipt in chain[1:]:
        details = receipt.details or {}
        if details.get("source") == "manager":
            out.update(details.get("pinned", []))
    return out


def changes(before: Figures, after: Figures) -> list[dict]:
    """What a correction changed, for rendering in any language: energy in Wh, components and total in fen.

    ``[{"what": "energy" | "energy_fen" | "service_fen" | "idle_fen" | "parking_fen" | "total",
    "before": n, "after": n}, ...]``; the total always comes last.
    """
    out = []
    if before.energy_wh != after.energy_wh:
        out.append({"what": "energy", "before": before.energy_wh, "after": after.energy_wh})
    out += [{"what": name, "before": getattr(before, name), "after": getattr(after, name)}
            for name in COMPONENT_LABELS if getattr(before, name) != getattr(after, name)]
    out.append({"what": "total", "before": before.total_fen, "after": after.total_fen})
    return out


def _changes_text(before: Figures, after: Figures, currency: str) -> str:
    parts = []
    if before.energy_wh != after.energy_wh:
        parts.append(f"energy {_kwh(before.energy_wh)} -> {_kwh(after.energy_wh)}")
    for name, label in COMPONENT_LABELS.items():
        a, b = getattr(before, name), getattr(after, name)
        if a != b:
            parts.append(f"{label} {format_money(a, currency)} -> {format_money(b, currency)} "
                         f"({_signed_money(b - a, currency)})")
    parts.append(f"total {format_money(before.total_fen, currency)} -> {format_money(after.total_fen, currency)}")
    return "; ".join(parts)


def _write_correction(session: Session, now: datetime, chain: list[m.Receipt], after: Figures,
                      explanation: str, details: dict, tariff_version_id: int | None,
                      lines: list[dict] | None = None) -> m.Receipt:
    root, latest = chain[0], chain[-1]
    before = _standing(chain)
    delta = after.minus(before)
    correction = m.Receipt(
        kind="correction", corrects_id=latest.id, station_id=root.station_id, driver_id=root.driver_id,
        session_id=root.session_id, stay_id=root.stay_id, tariff_version_id=tariff_version_id,
        currency=root.currency, explanation=explanation, explanation_lines=lines, issued_at=now, superseded=False,
        details={**details, "original_id": root.id, "before": before.as_dict(), "after": after.as_dict(),
                 "delta": delta.as_dict()},
        **delta.as_dict(),
    )
    session.add(correction)
    latest.superseded = True
    session.flush()
    if root.driver_id is not None:
        notify(session, root.driver_id, "receipt_corrected",
               f"Receipt #{root.id} was corrected: {_changes_text(before, after, root.currency)}.", now,
               code="receipt_corrected", params={"receipt": root.id, "changes": changes(before, after)},
               receipt_id=correction.id, original_id=root.id)
    return correction


def _reprice(session: Session, now: datetime, root: m.Receipt) -> Priced | None:
    if root.kind == "charging":
        cs = session.get(m.ChargingSession, root.session_id)
        return _price_session(session, now, cs) if cs is not None else None
    stay = session.get(m.ParkingStay, root.stay_id)
    if stay is None or stay.entry_at is None or stay.exit_at is None:
        return None  # the stay was reopened or lost its entry (gate messages reordered): wait for it
    return _price_stay(session, stay, stay.exit_at)[0]


def recheck(session: Session, now: datetime, receipt: m.Receipt) -> m.Receipt | None:
    """Reprice a receipt's session or stay from the history recorded now; a correction receipt if the figures changed.

    Compares with the chain's standing figures; components a manager set are
    kept as set. The correction corrects the chain's latest receipt, which becomes
    superseded; nothing else is modified. Returns None when nothing changed or
    the session/stay cannot be priced now.
    """
    return _recheck(session, now, receipt)[1]


def _recheck(session: Session, now: datetime, receipt: m.Receipt) -> tuple[Priced | None, m.Receipt | None]:
    """``recheck``, also saying what the repricing gave (None: the session or stay cannot be priced now)."""
    chain = _chain(session, receipt)
    root = chain[0]
    priced = _reprice(session, now, root)
    if priced is None:
        return None, None
    before = _standing(chain)
    pinned = _pinned(chain)
    after = replace(priced.figures, **{name: getattr(before, name) for name in pinned})
    if after == before:
        return priced, None
    kept = [COMPONENT_LABELS[n] for n in sorted(pinned) if getattr(priced.figures, n) != getattr(before, n)]
    text = f"Correction of receipt #{root.id} after late telemetry: {_changes_text(before, after, priced.currency)}."
    lines = [{"code": "correction_recheck", "params": {"receipt": root.id, "changes": changes(before, after)}}]
    if kept:
        text += f" Kept as set by a manager: {', '.join(kept)}."
        lines.append({"code": "correction_kept", "params": {"components": [
            n for n in sorted(pinned) if getattr(priced.figures, n) != getattr(before, n)]}})
    text += f" Now: {priced.explanation}"
    lines += [{"code": "correction_now", "params": {}}, *priced.lines]
    details = {"source": "recheck", "recomputed": priced.details, "recomputed_figures": priced.figures.as_dict()}
    return priced, _write_correction(session, now, chain, after, text, details, priced.tariff_version_id, lines)


# -- manager corrections --------------------------------------------------------------------


def _component(name: str, kind: str) -> str:
    column = name if name.endswith("_fen") else f"{name}_fen"
    allowed = CHARGING_COMPONENTS if kind == "charging" else PARKING_COMPONENTS
    if column not in allowed:
        raise InvalidFeeComponent(
            f"A {kind} receipt has the components {', '.join(c[:-4] for c in allowed)}; not {name!r}.",
            component=str(name),
        )
    return column


def _reason(reason) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonRequired()
    return reason.strip()


def _managed_chain(session: Session, user: m.User, receipt_id: int) -> list[m.Receipt]:
    receipt = session.get(m.Receipt, receipt_id)
    if receipt is None:
        raise ReceiptNotFound(f"No receipt {receipt_id}.")
    if user is None or not may_manage(user, receipt.station_id):
        raise NotStationManager()
    return _chain(session, receipt)


def _manager_correction(session: Session, now: datetime, user: m.User, chain: list[m.Receipt], after: Figures,
                        pinned: list[str], reason: str, action: str) -> m.Receipt:
    root = chain[0]
    before = _standing(chain)
    if after == before:
        raise NothingToCorrect()
    verb = "waived" if action == "waive_fee" else "corrected"
    text = (f"Correction of receipt #{root.id}: {', '.join(COMPONENT_LABELS[p] for p in pinned)} {verb} by the "
            f"station manager: {_changes_text(before, after, root.currency)}. Reason: {reason}")
    lines = [{"code": f"correction_{verb}", "params": {
        "receipt": root.id, "components": list(pinned), "changes": changes(before, after), "reason": reason}}]
    details = {"source": "manager", "action": action, "pinned": pinned, "user_id": user.id, "reason": reason}
    latest = chain[-1]
    correction = _write_correction(session, now, chain, after, text, details, latest.tariff_version_id, lines)
    audit(session, now, user, f"receipt.{action}", "receipt", root.id, reason,
          before={**before.as_dict(), "receipt_id": latest.id},
          after={**after.as_dict(), "receipt_id": correction.id}, station_id=root.station_id)
    session.flush()
    return correction


def waive_fee(session: Session, now: datetime, user: m.User, receipt_id: int, reason: str,
              component: str | None = None) -> m.Receipt:
    """Zero one component ("energy", "service", "idle", "parking"; all when None) by a correction receipt; audited.

    Raises ReasonRequired, ReceiptNotFound, NotStationManager, InvalidFeeComponent, NothingToCorrect (already zero).
    """
    reason = _reason(reason)
    chain = _managed_chain(session, user, receipt_id)
    kind = chain[0].kind
    names = list(CHARGING_COMPONENTS if kind == "charging" else PARKING_COMPONENTS)
    if component is not None:
        names = [_component(component, kind)]
    after = replace(_standing(chain), **{n: 0 for n in names})
    return _manager_correction(session, now, user, chain, after, names, reason, "waive_fee")


def correct_fee(session: Session, now: datetime, user: m.User, receipt_id: int, reason: str,
                **component_fen: int) -> m.Receipt:
    """Set components to new amounts, fen (``idle_fen=300`` or ``idle=300``), by a correction receipt; audited.

    Raises ReasonRequired, ReceiptNotFound, NotStationManager, InvalidFeeComponent,
    InvalidFeeAmount (not a non-negative integer), NothingToCorrect.
    """
    reason = _reason(reason)
    chain = _managed_chain(session, user, receipt_id)
    kind = chain[0].kind
    if not component_fen:
        raise InvalidFeeComponent("Say which component to correct, e.g. idle_fen=300.")
    values: dict[str, int] = {}
    for name, fen in component_fen.items():
        column = _component(name, kind)
        if not isinstance(fen, int) or isinstance(fen, bool) or fen < 0:
            raise InvalidFeeAmount(f"{name} must be a non-negative integer of fen, got {fen!r}.", component=name)
        values[column] = fen
    after = replace(_standing(chain), **values)
    return _manager_correction(session, now, user, chain, after, sorted(values), reason, "correct_fee")


# -- what a receipt is priced from -----------------------------------------------------------------
#
# settle_due prices again only what may have changed. For every item it looks at (the sessions and stays
# of the originals issued in the last RECHECK_WINDOW, closed sessions and exited stays still without a
# receipt) a few grouped queries read what its pricing depends on, as a digest (``_charging_inputs``,
# ``_parking_inputs``); ``receipt_checks`` keeps the digest the item was last priced from. An item whose
# digest is unchanged would be priced the same, so it is skipped. The digest is read before the pricing,
# so a row committed in between is priced and also shows as a change at the next pass (priced once more,
# to no effect), never the other way round. Status changes and meter readings are only ever added, each
# with a new id: for a span of them the digest holds the count and the highest id, so one more row
# changes it, even one committed late with a lower id. Rows that may be updated (sessions, stays, plate
# registrations, station rules) are in the digest by value. The pull covers every writer (the bridge's Core meter
# path, the OCPP gateway, managers' actions) without any of them knowing about receipts.


def _later(a, b):
    """The later of two instants, in SQL (``b`` when ``a`` is NULL)."""
    return case((a > b, a), else_=b)


def _earlier(a, b):
    """The earlier of two instants, in SQL (``b`` when ``a`` is NULL)."""
    return case((a < b, a), else_=b)


def _status_span(connector_id, start, end) -> list:
    """What decides a connector's states in [start, end) (``_history``): the id of the change in effect at
    ``start`` (a late change at or before ``start`` but after it takes its place), and the count and the
    highest id of the changes inside. Any span inside [start, end) is decided by the same rows."""
    sc = m.StatusChange
    carried = (select(sc.id).where(sc.connector_id == connector_id, sc.at <= start)
               .order_by(sc.at.desc(), sc.id.desc()).limit(1).scalar_subquery())
    inside = (sc.connector_id == connector_id, sc.at > start, sc.at < end)
    return [carried, select(func.count(sc.id)).where(*inside).scalar_subquery(),
            select(func.max(sc.id)).where(*inside).scalar_subquery()]


def _tariff_at(station_id, at):
    """The id of the version ``tariff_for`` picks (versions are never edited: the id says which prices)."""
    tv = m.TariffVersion
    return (select(tv.id).where(tv.station_id == station_id, tv.effective_from <= at)
            .order_by(tv.effective_from.desc(), tv.id.desc()).limit(1).scalar_subquery())


def _digest(parts) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def _charging_inputs(session: Session, session_ids) -> dict[int, str]:
    """Per session (ids: a list or a subquery), a digest of everything ``_price_session`` reads; one query.

    The session's start, stop and registers; its charger's kind, the station's time zone and the tariff
    version at its start; its meter readings; the connector's status history over [start, stop); the
    first Available at or after the stop (an earlier one inside is in the history); the start of every
    other session of the connector starting inside the session (rare: one row each), and the first
    starting at or after its stop.
    """
    cs, mr, sc = m.ChargingSession, m.MeterReading, m.StatusChange
    other, inside = aliased(m.ChargingSession), aliased(m.ChargingSession)
    end = _later(func.coalesce(cs.stopped_at, cs.started_at), cs.started_at)  # _idle's max(stop, start)
    readings = (select(mr.session_id, func.count(mr.id).label("n"), func.max(mr.id).label("last"))
                .where(mr.session_id.in_(session_ids)).group_by(mr.session_id).subquery())
    first_available = (select(sc.at).where(sc.connector_id == cs.connector_id,
                                           sc.status == ConnectorStatus.AVAILABLE.value, sc.at >= end)
                       .order_by(sc.at).limit(1).scalar_subquery())
    next_start = (select(other.started_at)
                  .where(other.charger_id == cs.charger_id, other.connector_id == cs.connector_id,
                         other.id != cs.id, other.started_at > cs.started_at, other.started_at >= end)
                  .order_by(other.started_at).limit(1).scalar_subquery())
    q = (
        select(cs.id, cs.started_at, cs.stopped_at, cs.start_meter_wh, cs.stop_meter_wh, cs.connector_id,
               m.Charger.kind, m.Station.timezone, _tariff_at(cs.station_id, cs.started_at),
               readings.c.n, readings.c.last, *_status_span(cs.connector_id, cs.started_at, end), first_available,
               next_start, inside.id, inside.started_at)
        .join(m.Charger, m.Charger.id == cs.charger_id).join(m.Station, m.Station.id == cs.station_id)
        .outerjoin(readings, readings.c.session_id == cs.id)
        .outerjoin(inside, and_(inside.charger_id == cs.charger_id, inside.connector_id == cs.connector_id,
                                inside.id != cs.id, inside.started_at > cs.started_at, inside.started_at < end))
        .where(cs.id.in_(session_ids))
    )
    rows: dict[int, list] = {}
    for row in session.execute(q):
        rows.setdefault(row[0], []).append(tuple(row))
    return {session_id: _digest(sorted(found, key=lambda r: r[-2] or 0)) for session_id, found in rows.items()}


def _parking_inputs(session: Session, stay_ids) -> dict[int, str]:
    """Per stay (ids: a list or a subquery), a digest of everything ``_price_stay`` reads; three queries.

    The stay's entry, exit and plate; the station's time zone and parking rules and the tariff version at
    entry; the plate's registrations overlapping the stay; the sessions at the station of those drivers
    overlapping the stay, each with its connector's status history over its part of the stay (the
    pricing clips further, to each registration: a span inside).
    """
    st, pr, cs, rules = m.ParkingStay, m.PlateRegistration, m.ChargingSession, m.StationRules
    stays = session.execute(
        select(st.id, st.station_id, st.entry_at, st.exit_at, st.plate, m.Station.timezone,
               rules.free_parking_qualify_minutes, rules.free_parking_minutes, rules.parking_block_minutes,
               _tariff_at(st.station_id, st.entry_at))
        .join(m.Station, m.Station.id == st.station_id).outerjoin(rules, rules.station_id == st.station_id)
        .where(st.id.in_(stay_ids))
    ).all()
    during = and_(pr.plate == st.plate, pr.valid_from < st.exit_at,
                  or_(pr.valid_to.is_(None), pr.valid_to > st.entry_at))
    registrations: dict[int, list] = {}
    for row in session.execute(select(st.id, pr.id, pr.user_id, pr.valid_from, pr.valid_to)
                               .join(pr, during).where(st.id.in_(stay_ids))):
        registrations.setdefault(row[0], []).append(tuple(row))
    start = _later(cs.started_at, st.entry_at)
    stop = _earlier(func.coalesce(cs.stopped_at, st.exit_at), st.exit_at)
    charging: dict[int, list] = {}
    for row in session.execute(
        select(st.id, cs.id, cs.driver_id, cs.connector_id, cs.started_at, cs.stopped_at,
               *_status_span(cs.connector_id, start, stop))
        .join(pr, during)
        # "+ 0": not by the station's index (every session of the station, per stay: SQLite picks it without
        # statistics), but the plate's registrations, then their drivers' sessions.
        .join(cs, and_(cs.driver_id == pr.user_id, cs.station_id + 0 == st.station_id, cs.started_at.is_not(None),
                       cs.started_at < st.exit_at, or_(cs.stopped_at.is_(None), cs.stopped_at > st.entry_at)))
        .where(st.id.in_(stay_ids)).distinct()
    ):
        charging.setdefault(row[0], []).append(tuple(row))
    return {
        row[0]: _digest((tuple(row), sorted(registrations.get(row[0], []), key=lambda r: r[1]),
                         sorted(charging.get(row[0], []), key=lambda r: r[1])))
        for row in stays
    }


@dataclass(frozen=True)
class _Check:
    inputs: str
    due_at: datetime | None


class _Checks:
    """The digests items were last priced from (``receipt_checks``), and the ones this pass priced."""

    def __init__(self, session: Session, now: datetime):
        self.session, self.since = session, now - RECHECK_WINDOW
        self.stored: dict[tuple[str, int], _Check] = {}  # of the items looked at (``load``), not of the window
        self.priced: dict[tuple[str, int], _Check] = {}

    def load(self, items: dict[str, list[int]]) -> None:
        """Read the stored digests of these items (kind -> ids), in one query per IN_CHUNK ids."""
        rc = m.ReceiptCheck
        wanted = [(kind, item_id) for kind, ids in items.items() for item_id in ids]
        for start in range(0, len(wanted), IN_CHUNK):
            chunk: dict[str, list[int]] = {}
            for kind, item_id in wanted[start:start + IN_CHUNK]:
                chunk.setdefault(kind, []).append(item_id)
            of_items = or_(*(and_(rc.kind == kind, rc.item_id.in_(ids)) for kind, ids in chunk.items()))
            for kind, item_id, inputs, due_at in self.session.execute(
                    select(rc.kind, rc.item_id, rc.inputs, rc.due_at).where(of_items, rc.checked_at >= self.since)):
                self.stored[(kind, item_id)] = _Check(inputs, due_at)

    def unchanged(self, kind: str, item_id: int, inputs: str | None, now: datetime, *, waiting: bool) -> bool:
        """The item was priced from these inputs (``waiting``: and could not be issued yet) and is not due again."""
        check = self.stored.get((kind, item_id))
        if inputs is None or check is None or check.inputs != inputs:
            return False
        if check.due_at is None:
            return not waiting
        return now < check.due_at

    def priced_from(self, kind: str, item_id: int, inputs: str | None, due_at: datetime | None = None) -> None:
        if inputs is not None:
            self.priced[(kind, item_id)] = _Check(inputs, due_at)

    def save(self, session: Session, now: datetime) -> None:
        """Upsert what this pass priced; drop rows older than the window (no receipt they describe is rechecked)."""
        if not self.priced:
            return
        t = m.ReceiptCheck.__table__
        dialect = session.connection().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        stmt = insert(t)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.kind, t.c.item_id],
            set_={"inputs": stmt.excluded.inputs, "due_at": stmt.excluded.due_at,
                  "checked_at": stmt.excluded.checked_at},
        )
        session.execute(stmt, [{"kind": kind, "item_id": item_id, "inputs": c.inputs, "due_at": c.due_at,
                                "checked_at": now} for (kind, item_id), c in sorted(self.priced.items())])
        session.execute(delete(t).where(t.c.checked_at < now - RECHECK_WINDOW))


def _waiting_until(session: Session, session_id: int, now: datetime) -> datetime | None:
    """When a closed session that cannot be priced yet may be priced with the same inputs: a fast charger's
    session waiting for Available is priced without it IDLE_WAIT_LIMIT after its stop."""
    cs = session.get(m.ChargingSession, session_id)
    if cs is None or cs.stopped_at is None or now >= cs.stopped_at + IDLE_WAIT_LIMIT:
        return None
    return cs.stopped_at + IDLE_WAIT_LIMIT


# -- the periodic work ---------------------------------------------------------------------------


def settle_due(session: Session, now: datetime, *, recheck_per_pass: int = RECHECK_PER_PASS) -> dict:
    """Recheck receipts issued in the last 24 h, issue charging receipts of closed sessions, settle stays due; counts.

    Only items whose inputs changed since they were last priced are priced again (see
    "what a receipt is priced from" above); ``rechecked`` counts the receipts of the window
    looked at, priced again or not: all of them, or ``recheck_per_pass`` from where the last
    pass stopped when the window holds more. An item that fails on a rule (a station
    without a tariff, a stay exiting before its entry) is logged, counted in ``errors`` and
    retried next time.
    """
    counts = {"rechecked": 0, "corrections": 0, "charging_receipts": 0, "charging_waiting": 0,
              "parking_receipts": 0, "parking_waiting": 0, "stays_without_entry": 0, "errors": 0}
    checks = _Checks(session, now)
    _recheck_recent(session, now, checks, counts, recheck_per_pass)
    _issue_charging(session, now, checks, counts)
    _settle_exited(session, now, checks, counts)
    checks.save(session, now)
    return counts


def _recheck_turn(session: Session, now: datetime, limit: int) -> list:
    """The window's originals to look at in this pass: ``limit`` of them by id, from just after the receipt the last
    pass looked at last, going round to the lowest id after the highest. The cursor moves to the last one taken."""
    r = m.Receipt
    cursor = session.get(m.PeriodicCursor, RECHECK_CURSOR)
    after = cursor.position if cursor is not None else 0
    turn = session.execute(
        select(r.id, r.kind, r.session_id, r.stay_id)
        .where(r.kind.in_(ORIGINAL_KINDS), r.issued_at >= now - RECHECK_WINDOW)
        .order_by(case((r.id > after, 0), else_=1), r.id).limit(limit)
    ).all()
    if turn and turn[-1].id != after:
        if cursor is None:
            session.add(m.PeriodicCursor(name=RECHECK_CURSOR, position=turn[-1].id, moved_at=now))
        else:
            cursor.position, cursor.moved_at = turn[-1].id, now
    return turn


def _recheck_recent(session: Session, now: datetime, checks: _Checks, counts: dict, limit: int) -> None:
    recent = _recheck_turn(session, now, limit)
    items = {kind: [row.session_id if kind == "charging" else row.stay_id for row in recent if row.kind == kind]
             for kind in ORIGINAL_KINDS}
    inputs = {"charging": {}, "parking": {}}
    if items["charging"]:
        inputs["charging"] = _charging_inputs(session, items["charging"])
    if items["parking"]:
        inputs["parking"] = _parking_inputs(session, items["parking"])
    checks.load(items)
    for receipt_id, kind, session_id, stay_id in recent:
        item_id = session_id if kind == "charging" else stay_id
        digest = inputs[kind].get(item_id)
        if checks.unchanged(kind, item_id, digest, now, waiting=False):
            counts["rechecked"] += 1
            continue
        try:
            priced, correction = _recheck(session, now, session.get(m.Receipt, receipt_id))
        except DomainError:
            log.warning("recheck of receipt %s failed", receipt_id, exc_info=True)
            counts["errors"] += 1
            continue
        counts["rechecked"] += 1
        counts["corrections"] += correction is not None
        due = None if priced is not None or kind != "charging" else _waiting_until(session, item_id, now)
        checks.priced_from(kind, item_id, digest, due)


def _issue_charging(session: Session, now: datetime, checks: _Checks, counts: dict) -> None:
    has_charging = exists().where(m.Receipt.session_id == m.ChargingSession.id, m.Receipt.kind == "charging")
    # receipted_at and stopped_at as ix_charging_sessions_unreceipted has them: only sessions still without a
    # receipt are read, not every session ever closed; the receipt itself (has_charging) stays the test.
    due = (m.ChargingSession.receipted_at.is_(None), m.ChargingSession.stopped_at.is_not(None),
           m.ChargingSession.started_at.is_not(None), m.ChargingSession.stopped_at <= now, ~has_charging)
    closed = list(session.scalars(
        select(m.ChargingSession).where(*due).order_by(m.ChargingSession.stopped_at, m.ChargingSession.id)
    ))
    inputs = _charging_inputs(session, select(m.ChargingSession.id).where(*due)) if closed else {}
    checks.load({"charging": [cs.id for cs in closed]})
    for cs in closed:
        digest = inputs.get(cs.id)
        if checks.unchanged("charging", cs.id, digest, now, waiting=True):
            counts["charging_waiting"] += 1  # nothing new since it had to wait, and not due yet
            continue
        try:
            receipt, written = _issue_charging_receipt(session, now, cs)
        except DomainError:
            log.warning("charging receipt of session %s failed", cs.id, exc_info=True)
            counts["errors"] += 1
            continue
        counts["charging_receipts" if receipt is not None else "charging_waiting"] += 1
        if receipt is None:
            checks.priced_from("charging", cs.id, digest, _waiting_until(session, cs.id, now))
        elif written:  # not one another worker wrote meanwhile: that one was priced from what it saw
            checks.priced_from("charging", cs.id, digest)


def _settle_exited(session: Session, now: datetime, checks: _Checks, counts: dict) -> None:
    has_parking = exists().where(m.Receipt.stay_id == m.ParkingStay.id, m.Receipt.kind == "parking")
    # As ix_parking_stays_unsettled: stays not settled yet, not every stay ever; the receipt stays the test.
    due = (m.ParkingStay.settled_at.is_(None), m.ParkingStay.exit_at.is_not(None), m.ParkingStay.exit_at <= now,
           ~has_parking)
    exited = list(session.scalars(
        select(m.ParkingStay).where(*due).order_by(m.ParkingStay.exit_at, m.ParkingStay.id)
    ))
    # A settling stay is not handed to _settle_stay, which would only lock it and wait: a network has a few hundred
    # of them at any time, each looked at in every pass for 10 minutes.
    ready = []
    for stay in exited:
        if stay.entry_at is None:
            counts["stays_without_entry"] += 1
        elif _settling(session, now, stay):
            counts["parking_waiting"] += 1
        else:
            ready.append(stay)
    inputs = {}
    for start in range(0, len(ready), IN_CHUNK):  # (after an outage's backlog: bounded IN lists)
        inputs.update(_parking_inputs(session, [stay.id for stay in ready[start:start + IN_CHUNK]]))
    for stay in ready:
        try:
            receipt, written = _settle_stay(session, now, stay)
        except DomainError:
            log.warning("parking receipt of stay %s failed", stay.id, exc_info=True)
            counts["errors"] += 1
            continue
        counts["parking_receipts" if receipt is not None else "parking_waiting"] += 1
        if written:
            checks.priced_from("parking", stay.id, inputs.get(stay.id))


# -- the driver's views ---------------------------------------------------------------------------


def driver_receipts(session: Session, driver_id: int, limit: int = 50) -> list[m.Receipt]:
    """The driver's receipts and their corrections, newest first (a correction's figures are deltas)."""
    return list(session.scalars(
        select(m.Receipt).where(m.Receipt.driver_id == driver_id)
        .order_by(m.Receipt.issued_at.desc(), m.Receipt.id.desc()).limit(limit)
    ))


def _driver_plates(session: Session, driver_id: int) -> dict[str, list[m.PlateRegistration]]:
    out: dict[str, list[m.PlateRegistration]] = {}
    for reg in session.scalars(select(m.PlateRegistration).where(m.PlateRegistration.user_id == driver_id)):
        try:
            out.setdefault(normalise_plate(reg.plate), []).append(reg)
        except InvalidPlate:
            continue
    return out


def parking_status(session: Session, now: datetime, driver_id: int) -> list[dict]:
    """Each open stay of the driver's plates: entry, charging so far, qualified, free until, fee (fen) if they left now.

    A stay counts when a plate registration of the driver overlaps [entry, now].
    Stays whose out was missed (flagged ``in_while_open``) are not shown. Instants
    are aware UTC; ``explanation`` uses station-local HH:MM.
    """
    plates = _driver_plates(session, driver_id)
    if not plates:
        return []
    stays = session.scalars(
        select(m.ParkingStay)
        .where(m.ParkingStay.plate.in_(plates), m.ParkingStay.entry_at.is_not(None),
               m.ParkingStay.exit_at.is_(None))
        .order_by(m.ParkingStay.entry_at.desc(), m.ParkingStay.id.desc())
    )
    out = []
    for stay in stays:
        if "in_while_open" in (stay.flags or []):
            continue
        end = max(now, stay.entry_at)
        if not any(r.valid_from <= end and (r.valid_to is None or r.valid_to > stay.entry_at)
                   for r in plates[stay.plate]):
            continue
        out.append(_stay_status(session, stay, end))
    return out


def _stay_status(session: Session, stay: m.ParkingStay, end: datetime) -> dict:
    station = session.get(m.Station, stay.station_id)
    tz = station_tz(station)
    _, tariff = tariff_for(session, station, stay.entry_at)
    policy = _policy(station, tariff)
    charging = _stay_charging(session, stay, end)
    charged = charging_time_in_stay(charging.intervals, stay.entry_at, end)
    free_until = free_parking_until(stay.entry_at, charged, policy)
    if_left_now = settle_parking(stay.entry_at, end, charging.intervals, policy, tz)
    still_needed = max(policy.qualify_charging - charged, timedelta())
    day = end.astimezone(tz).date()
    seconds = {"charged_seconds": int(charged.total_seconds()),
               "needed_seconds": int(policy.qualify_charging.total_seconds())}
    if free_until is not None:
        text = (f"Charged {format_duration(charged)} ({format_duration(policy.qualify_charging)} needed): "
                f"parking free until {_local(free_until, tz, day)}.")
        lines = [{"code": "parking_status_free", "params": {**seconds, "until": local_stamp(free_until, tz, day)}}]
    else:
        lines = [{"code": "parking_status_not_yet", "params": {
            **seconds, "still_needed_seconds": int(still_needed.total_seconds()),
            "until": local_stamp(stay.entry_at + policy.free_period, tz, day)}}]
        text = (f"Charged {format_duration(charged)} so far ({format_duration(policy.qualify_charging)} needed): "
                f"charge {format_duration(still_needed)} more for free parking until "
                f"{_local(stay.entry_at + policy.free_period, tz, day)}.")
    text += f" Leaving now costs {format_money(if_left_now.fee_fen, tariff.currency)}."
    lines.append({"code": "parking_status_fee", "params": {"fee_fen": if_left_now.fee_fen}})
    return {
        "stay_id": stay.id,
        "station_id": station.id,
        "station_code": station.code,
        "plate": stay.plate,
        "entry_at": stay.entry_at,
        "charging_seconds": int(charged.total_seconds()),
        "qualify_seconds": int(policy.qualify_charging.total_seconds()),
        "still_needed_seconds": int(still_needed.total_seconds()),
        "qualified": free_until is not None,
        "free_until": free_until,
        "fee_fen_if_left_now": if_left_now.fee_fen,
        "currency": tariff.currency,
        "explanation": text,
        "explanation_lines": lines,
    }
