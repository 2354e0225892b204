"""OCPP 1.6J <-> the telemetry contract, both ways: pure functions, time passed in.

Inputs are what the ``ocpp`` library hands a handler (the CALL's payload with
snake_case keys: ``connector_id``, ``meter_value`` with ``sampled_value`` ...);
outputs are ``chargeapp.telemetry`` messages. A message built here is a *draft*:
its boot and seq are placeholders until ``stamp`` gives it the charger's next
ones (the gateway keeps them, since an OCPP charger has no such counters).

Decisions (docs/ocpp.md):

- Device time is the OCPP ``timestamp``; a StatusNotification without one, and
  a command result (OCPP answers carry no time), take the gateway's receive time.
  OCPP 1.6 timestamps should be UTC; one without an offset is read as UTC.
- ``stamp``: the contract flags a ts earlier than the previous message of the
  same boot as skewed (the bridge would then use the receive time). An OCPP
  charger that reconnects replays its queued transaction messages *after* it
  may have reported a fresh status, so the gateway starts a new boot (seq 1)
  when a message is older than the last one it stamped: the replay keeps its
  own time and no seq goes missing. A BootNotification starts a new boot too.
- Meter values: the energy register is ``Energy.Active.Import.Register`` (the
  OCPP default measurand when none is named), Wh or kWh; power is
  ``Power.Active.Import`` (W or kW); SoC is ``SoC`` (Percent). Another unit for
  one of these, a value that is not a number or a negative register refuses
  the whole message (``UnusableMessage``), as does a register reading that
  cannot be true (``check_register``: backwards, or faster than the charger's
  rated power allows). A value without phase wins;
  else the phases L1, L2, L3 (or L1-N, L2-N, L3-N) are summed. Signed data is
  skipped. A sampled instant without an energy register is not a contract
  sample (``energy_wh`` is required) and is skipped. A charger that sends no
  power (OCPP's default MeterValuesSampledData is the energy register only) gets
  the average power since the previous reading of the transaction (or its start).
- Command results: the OCPP answer's status; a CALLERROR (for example
  NotImplemented) or a status outside the contract's list is ``Rejected``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, NamedTuple

from ocpp.v16 import call

from chargeapp import telemetry as t

UTC = timezone.utc
ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
SOC = "SoC"
MAX_TRANSACTION_ID = 2**31 - 1  # OCPP 1.6 transactionId is a JSON integer; chargers keep it in 32 bits
_PHASES = (("L1", "L2", "L3"), ("L1-N", "L2-N", "L3-N"))
# The units each measurand the gateway reads may come in, and their factor to the contract's unit (Wh, W, %).
_UNITS = {
    ENERGY_REGISTER: {"Wh": Decimal(1), "kWh": Decimal(1000)},
    POWER: {"W": Decimal(1), "kW": Decimal(1000)},
    SOC: {"Percent": Decimal(1)},
}
# Register plausibility (docs/ocpp.md, "Meter values that cannot be true"): between two readings of a
# transaction the register may rise by at most the rated power times POWER_MARGIN over the time between
# them, plus REGISTER_SLACK_WH (a kWh register's resolution, second-rounded timestamps).
POWER_MARGIN = Decimal("1.25")
REGISTER_SLACK_WH = 1_000
UNKNOWN_RATED_POWER_W = 1_000_000  # a charger whose rated power the registry does not know (max_power_kw 0)
# OCPP 1.6 dateTime (RFC 3339; the offset may be left out, then UTC)
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?")


@dataclass(frozen=True)
class ChargerAddress:
    """Where a charger's messages go on the contract: its station and charger codes."""

    station: str
    charger: str


class EnergyReading(NamedTuple):
    """A transaction's latest known register reading: instant (aware) and Wh; for deriving power."""

    at: datetime
    energy_wh: int


class UnusableMessage(ValueError):
    """An OCPP message (or part of one) that has no contract form; ``reason`` is a short code for counters."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


# --------------------------------------------------------------------------- time


def parse_ocpp_time(text: str) -> datetime:
    """An aware datetime from an OCPP dateTime; raises UnusableMessage.

    RFC 3339 ``YYYY-MM-DDThh:mm:ss[.fraction](Z|+hh:mm)`` (``T`` and ``Z`` in either
    case); a time without an offset is read as UTC. A date alone, a space for
    ``T``, ISO 8601's basic format or anything else is refused.
    """
    if not isinstance(text, str):
        raise UnusableMessage("bad_timestamp", "not a string")
    normal = text.upper()
    if not _DATE_TIME.fullmatch(normal):
        raise UnusableMessage("bad_timestamp", f"not an RFC 3339 date-time: {text[:40]!r}")
    try:
        value = datetime.fromisoformat(normal)  # more than 6 fraction digits: cut to microseconds
    except ValueError:  # a month 13, a 25th hour...
        raise UnusableMessage("bad_timestamp", f"not a valid date-time: {text[:40]!r}") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def ocpp_time(at: datetime) -> str:
    """An OCPP dateTime in UTC with ``Z`` and millisecond precision, as chargers expect (naive raises ValueError)."""
    if at.tzinfo is None:
        raise ValueError("OCPP times need a timezone-aware datetime")
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- boot and seq


@dataclass(frozen=True)
class Sequence:
    """A charger's contract counters as the gateway keeps them: boot, the last seq given, the last good device time."""

    boot: int = 0
    seq: int = 0
    last_ts: datetime | None = None


def new_boot(state: Sequence) -> Sequence:
    """The counters after the charger rebooted (BootNotification): boot + 1, seq restarts."""
    return Sequence(state.boot + 1, 0, None)


def stamp(state: Sequence, draft: t.DeviceMessage, received_at: datetime,
          skew_tolerance: timedelta = t.DEFAULT_SKEW_TOLERANCE) -> tuple[Sequence, t.DeviceMessage]:
    """(new counters, the draft with its boot and seq); a draft older than the last stamped time starts a new boot.

    A device time the bridge will flag as skewed anyway (before 2020, or beyond the
    tolerance after ``received_at``) does not become the last time, as in the bridge.
    """
    if state.last_ts is not None and draft.device_ts < state.last_ts:
        state = new_boot(state)
    seq = state.seq + 1
    plausible = not t.is_skewed(draft.device_ts, received_at, skew_tolerance=skew_tolerance)
    last_ts = draft.device_ts if plausible else state.last_ts
    return Sequence(state.boot, seq, last_ts), replace(draft, boot=state.boot, seq=seq)


# --------------------------------------------------------------------------- charger -> contract

_DRAFT = {"boot": 0, "seq": 1}  # placeholders until stamp(); valid so a draft can be checked with format_message


def status_draft(charger: ChargerAddress, payload: dict[str, Any], received_at: datetime) -> t.StatusMessage:
    """StatusNotification -> the connector's status (connector 0 = the whole charger); no timestamp: received_at."""
    stamp_at = payload.get("timestamp")
    return t.StatusMessage(
        station=charger.station, device_id=charger.charger, **_DRAFT,
        device_ts=parse_ocpp_time(stamp_at) if stamp_at else received_at,
        connector=payload["connector_id"], status=payload["status"], error_code=payload.get("error_code") or "NoError",
    )


def start_draft(charger: ChargerAddress, payload: dict[str, Any], transaction_id: int) -> t.TransactionEvent:
    """StartTransaction (with the id the gateway assigned) -> the contract's start event (meterStart is Wh)."""
    return t.TransactionEvent(
        station=charger.station, device_id=charger.charger, **_DRAFT,
        device_ts=parse_ocpp_time(payload["timestamp"]), event="start",
        connector=payload["connector_id"], transaction_id=transaction_id, meter_wh=payload["meter_start"],
        id_tag=payload["id_tag"], reservation_id=payload.get("reservation_id"),
    )


def stop_draft(charger: ChargerAddress, payload: dict[str, Any], connector: int) -> t.TransactionEvent:
    """StopTransaction -> the contract's stop event; ``connector`` comes from the start (OCPP's stop names none)."""
    return t.TransactionEvent(
        station=charger.station, device_id=charger.charger, **_DRAFT,
        device_ts=parse_ocpp_time(payload["timestamp"]), event="stop",
        connector=connector, transaction_id=payload["transaction_id"], meter_wh=payload["meter_stop"],
        id_tag=payload.get("id_tag"), reason=payload.get("reason"),
    )


def _number(sampled: dict[str, Any], measurand: str, default_unit: str) -> Decimal | None:
    """A sampled value in the contract's unit; None for signed data. Raises UnusableMessage for a unit that is not
    one of the measurand's, or a value that is not a finite number."""
    if sampled.get("format") == "SignedData":
        return None
    unit = sampled.get("unit") or default_unit
    scale = _UNITS[measurand].get(unit)
    if scale is None:
        raise UnusableMessage("wrong_unit", f"{measurand} in {str(unit)[:20]}: only {' or '.join(_UNITS[measurand])}")
    try:
        value = Decimal(str(sampled.get("value")))
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        raise UnusableMessage("not_a_number", f"{measurand}: the value is not a number")
    return value * scale


def measurand_value(sampled_values: Iterable[dict[str, Any]], measurand: str, default_unit: str) -> Decimal | None:
    """One measurand of a sampled instant in base units (Wh, W, %): the value without phase, else the phases summed.

    Raises UnusableMessage when a value of the measurand has a unit it cannot have or is not a number.
    """
    by_phase: dict[str | None, Decimal] = {}
    for sampled in sampled_values:
        if (sampled.get("measurand") or ENERGY_REGISTER) != measurand:
            continue
        value = _number(sampled, measurand, default_unit)
        if value is not None:
            by_phase.setdefault(sampled.get("phase"), value)
    if None in by_phase:
        return by_phase[None]
    for phases in _PHASES:
        if any(p in by_phase for p in phases):
            return sum((by_phase[p] for p in phases if p in by_phase), Decimal(0))
    return None


def rated_power_w(max_power_kw: int | None) -> int:
    """The charger's rated power in W from the registry's ``max_power_kw``; unknown (0) is UNKNOWN_RATED_POWER_W."""
    return max_power_kw * 1000 if max_power_kw and max_power_kw > 0 else UNKNOWN_RATED_POWER_W


def max_rise_wh(rated_w: int, seconds: float) -> int:
    """The most a register can rise in ``seconds`` at ``rated_w``: the rated power with its margin, plus the slack."""
    return int(Decimal(rated_w) * POWER_MARGIN * Decimal(max(seconds, 0.0)) / 3600) + REGISTER_SLACK_WH


def check_register(reading: EnergyReading, known: Iterable[EnergyReading | None], rated_w: int) -> None:
    """Refuse (UnusableMessage) a register reading of a transaction that cannot be true beside the ones known.

    For each known reading (the start, the latest accepted), in time order: the
    later one must not be below the earlier one (``register_backwards``) and may
    be above it by at most ``max_rise_wh`` over the time between them
    (``register_jump``). Pure: the times are the readings' own.
    """
    for other in known:
        if other is None:
            continue
        early, late = (other, reading) if other.at <= reading.at else (reading, other)
        if late.energy_wh < early.energy_wh:
            raise UnusableMessage("register_backwards", f"{late.energy_wh} Wh at {ocpp_time(late.at)} is below "
                                                        f"{early.energy_wh} Wh at {ocpp_time(early.at)}")
        seconds = (late.at - early.at).total_seconds()
        rise, allowed = late.energy_wh - early.energy_wh, max_rise_wh(rated_w, seconds)
        if rise > allowed:
            raise UnusableMessage("register_jump", f"{rise} Wh in {seconds:.0f} s ({ocpp_time(early.at)} to "
                                                   f"{ocpp_time(late.at)}); at most {allowed} Wh at "
                                                   f"{rated_w // 1000} kW rated")


def _average_power_w(previous: EnergyReading | None, at: datetime, energy_wh: int) -> int:
    if previous is None or at <= previous.at or energy_wh < previous.energy_wh:
        return 0
    hours = Decimal((at - previous.at).total_seconds()) / 3600
    return int((Decimal(energy_wh - previous.energy_wh) / hours).to_integral_value())


def meter_drafts(charger: ChargerAddress, connector: int, transaction_id: int, meter_value: list[dict[str, Any]],
                 previous: EnergyReading | None, *, start: EnergyReading | None = None,
                 rated_w: int = UNKNOWN_RATED_POWER_W) -> tuple[list[t.MeterSample], EnergyReading | None, int]:
    """MeterValues (or StopTransaction's transactionData) of one transaction -> (samples, latest reading, instants skipped).

    Energy is rounded to whole Wh, power to whole W; ``previous`` (the last reading
    or the start) gives the average power when the charger sent none. Each
    register reading is checked against the transaction's ``start`` and the
    latest reading (``check_register``); one that fails, or any value in a wrong
    unit, raises UnusableMessage: the message is refused as a whole. Timestamps
    were checked before (``rpc.check_timestamps``); one that is not raises too.
    """
    samples: list[t.MeterSample] = []
    skipped = 0
    readings = sorted(((parse_ocpp_time(item.get("timestamp")), item.get("sampled_value") or [])
                       for item in meter_value), key=lambda r: r[0])
    for at, sampled in readings:
        energy = measurand_value(sampled, ENERGY_REGISTER, "Wh")
        power = measurand_value(sampled, POWER, "W")
        soc = measurand_value(sampled, SOC, "Percent")
        if energy is None:
            skipped += 1  # no register (or signed data only): not a contract sample
            continue
        if energy < 0:
            raise UnusableMessage("negative_register", f"{ENERGY_REGISTER} {energy} Wh at {ocpp_time(at)}")
        energy_wh = int(energy.to_integral_value())
        check_register(EnergyReading(at, energy_wh), (previous, start), rated_w)
        power_w = int(power.to_integral_value()) if power is not None and power >= 0 else _average_power_w(
            previous, at, energy_wh)
        samples.append(t.MeterSample(
            station=charger.station, device_id=charger.charger, **_DRAFT, device_ts=at,
            connector=connector, transaction_id=transaction_id, energy_wh=energy_wh, power_w=power_w,
            soc=int(soc.to_integral_value()) if soc is not None and 0 <= soc <= 100 else None,
        ))
        if previous is None or at >= previous.at:
            previous = EnergyReading(at, energy_wh)
    return samples, previous, skipped


def result_draft(charger: ChargerAddress, command: t.Command, status: str | None,
                 received_at: datetime) -> t.CommandResult:
    """The charger's answer to a command -> its command result; None (a CALLERROR) or an unknown status is Rejected."""
    allowed = t.COMMAND_RESULT_STATUSES[command.name]
    return t.CommandResult(
        station=charger.station, device_id=charger.charger, **_DRAFT, device_ts=received_at,
        request_id=command.request_id, command=command.name, status=status if status in allowed else "Rejected",
    )


# --------------------------------------------------------------------------- contract -> charger


def ocpp_call(command: t.Command) -> Any:
    """The OCPP 1.6 CALL payload of a contract command (ReserveNow, CancelReservation, RemoteStart/StopTransaction, ChangeAvailability)."""
    if isinstance(command, t.ReserveNow):
        return call.ReserveNow(connector_id=command.connector, expiry_date=ocpp_time(command.expiry),
                               id_tag=command.id_tag, reservation_id=command.reservation_id,
                               parent_id_tag=command.parent_id_tag)
    if isinstance(command, t.CancelReservation):
        return call.CancelReservation(reservation_id=command.reservation_id)
    if isinstance(command, t.RemoteStart):
        return call.RemoteStartTransaction(id_tag=command.id_tag, connector_id=command.connector)
    if isinstance(command, t.RemoteStop):
        return call.RemoteStopTransaction(transaction_id=command.transaction_id)
    if isinstance(command, t.ChangeAvailability):
        return call.ChangeAvailability(connector_id=command.connector, type=command.type)
    raise TypeError(f"not a contract command: {type(command).__name__}")


# --------------------------------------------------------------------------- the gateway's own answers


def id_tag_info(driver_id: int | None) -> dict[str, Any]:
    """OCPP IdTagInfo for an id tag: Accepted (parent ``driver-<id>``, as in reserve_now) for a known driver, else Invalid."""
    if driver_id is None:
        return {"status": "Invalid"}
    return {"status": "Accepted", "parent_id_tag": f"driver-{driver_id}"}


def next_transaction_id(last_assigned: int, highest_recorded: int | None) -> int:
    """The next transaction id of a charger: above every id the gateway gave and every one the service recorded for it.

    Raises UnusableMessage when a charger has used up OCPP's 32-bit range.
    """
    value = max(last_assigned, highest_recorded or 0) + 1
    if value > MAX_TRANSACTION_ID:
        raise UnusableMessage("transaction_ids_exhausted", "no transaction id left below 2**31")
    return value


def same_start(recorded: dict[str, Any], payload: dict[str, Any]) -> bool:
    """Whether a StartTransaction repeats a recorded one (a replay after a lost answer): connector, tag, meter and time."""
    return (recorded["connector"] == payload["connector_id"] and recorded["id_tag"] == payload["id_tag"]
            and recorded["meter_start"] == payload["meter_start"]
            and recorded["started_at"] == parse_ocpp_time(payload["timestamp"]))
