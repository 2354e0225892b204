"""The free-parking rule and the parking fee of one garage stay.

A stay (gate in to gate out, by plate) in which the vehicle was in the Charging state
for at least ``qualify_charging`` in total gets the first ``free_period`` from entry
free. The rest of the stay, or the whole stay if it does not qualify, is billed per
started ``block``, blocks counted from the end of the free time (or from entry). Each
block belongs to the station-local calendar day it starts in, and each day's blocks
are capped at ``daily_cap_fen``. Money in fen; datetimes timezone-aware; all
arithmetic on UTC instants.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Iterable

from .errors import InvalidRequest
from .intervals import Interval, total_duration
from .tariff import Tariff

QUALIFY_CHARGING = timedelta(minutes=15)
FREE_PERIOD = timedelta(minutes=120)
BLOCK = timedelta(minutes=30)


class InvalidParkingPolicy(InvalidRequest):
    """Parking rule settings must be non-negative, the block positive, the fees integer fen."""

    code = "invalid_parking_policy"


class InvalidStay(InvalidRequest):
    """A parking stay needs timezone-aware entry and exit, and must not leave before it enters."""

    code = "invalid_stay"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utc(at: datetime, what: str = "time") -> datetime:
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise InvalidStay(f"The {what} must be a timezone-aware datetime", **{what: str(at)})
    return at.astimezone(timezone.utc)


@dataclass(frozen=True)
class ParkingPolicy:
    """A station's parking rule: charging needed to qualify, free time, block length, fen per started block, daily cap (None = none)."""

    qualify_charging: timedelta = QUALIFY_CHARGING
    free_period: timedelta = FREE_PERIOD
    block: timedelta = BLOCK
    block_fen: int = 0
    daily_cap_fen: int | None = None
    currency: str = "CNY"

    def __post_init__(self):
        for name in ("qualify_charging", "free_period"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value < timedelta():
                raise InvalidParkingPolicy(f"{name} must be a non-negative duration", field=name)
        if not isinstance(self.block, timedelta) or self.block <= timedelta():
            raise InvalidParkingPolicy("block must be a positive duration", field="block")
        if not _is_int(self.block_fen) or self.block_fen < 0:
            raise InvalidParkingPolicy("block_fen must be a non-negative integer", field="block_fen")
        if self.daily_cap_fen is not None and (not _is_int(self.daily_cap_fen) or self.daily_cap_fen < 0):
            raise InvalidParkingPolicy("daily_cap_fen must be a non-negative integer or None", field="daily_cap_fen")

    @classmethod
    def from_tariff(
        cls,
        tariff: Tariff,
        qualify_charging: timedelta = QUALIFY_CHARGING,
        free_period: timedelta = FREE_PERIOD,
        block: timedelta = BLOCK,
    ) -> "ParkingPolicy":
        """The policy with the tariff's block price, daily cap and currency; durations from the station's rules."""
        return cls(
            qualify_charging=qualify_charging,
            free_period=free_period,
            block=block,
            block_fen=tariff.parking_block_fen,
            daily_cap_fen=tariff.parking_daily_cap_fen,
            currency=tariff.currency,
        )


def charging_time_in_stay(charging: Iterable[Interval], entry: datetime, exit: datetime | None) -> timedelta:
    """Charging time inside [entry, exit) (aware; exit None = still parked): intervals clipped, overlaps counted once."""
    start = _utc(entry, "entry")
    end = _utc(exit, "exit") if exit is not None else None
    if end is not None and end < start:
        raise InvalidStay("The stay ends before it starts", entry=entry.isoformat(), exit=exit.isoformat())
    clipped = []
    for iv in charging:
        s, e = max(_utc(iv.start), start), _utc(iv.end)
        if end is not None:
            e = min(e, end)
        if s < e:
            clipped.append(Interval(s, e))
    return total_duration(clipped)


def qualifies(charging_time: timedelta, policy: ParkingPolicy) -> bool:
    """True if the charging time reaches the policy's threshold (>=, so exactly 15 min 00 s qualifies)."""
    return charging_time >= policy.qualify_charging


def free_parking_until(entry: datetime, charging_time: timedelta, policy: ParkingPolicy) -> datetime | None:
    """entry + free period if the stay qualifies (charging_time >= threshold), else None; same tz as ``entry``."""
    if not qualifies(charging_time, policy):
        return None
    return (_utc(entry, "entry") + policy.free_period).astimezone(entry.tzinfo)


@dataclass(frozen=True)
class DayCharge:
    """Blocks that start on one station-local calendar day and what they cost (fen, after the daily cap)."""

    day: date
    blocks: int
    fen: int
    capped: bool


@dataclass(frozen=True)
class ParkingSettlement:
    """How the parking rule applied to one stay: charging time, free time, billed blocks per day, fee (fen), and why."""

    entry: datetime
    exit: datetime
    charging_time: timedelta
    qualified: bool
    free_until: datetime | None
    blocks: int
    fee_fen: int
    days: tuple[DayCharge, ...]
    explanation: str
    # The explanation as lines {"code", "params"} for rendering in any language (chargeapp.web.messages):
    # durations in seconds, money in fen, times as station-local text ("HH:MM", or "YYYY-MM-DD HH:MM" on another day).
    explanation_lines: tuple[dict, ...] = ()


def block_starts(billing_from: datetime, exit: datetime, block: timedelta) -> list[datetime]:
    """Start instants (UTC) of the blocks from ``billing_from`` that start before ``exit``: a block started is a block billed."""
    start, end = _utc(billing_from), _utc(exit)
    if end <= start:
        return []
    count = -(-(end - start) // block)  # ceiling: a started block counts; exit on a boundary starts none
    return [start + i * block for i in range(count)]


def charge_blocks_by_day(starts: Iterable[datetime], policy: ParkingPolicy, tz: tzinfo) -> tuple[DayCharge, ...]:
    """Blocks grouped by the station-local day they start in, each day's fen capped; days in order."""
    per_day: dict[date, int] = {}
    for start in starts:
        day = start.astimezone(tz).date()
        per_day[day] = per_day.get(day, 0) + 1
    days = []
    for day in sorted(per_day):
        fen = per_day[day] * policy.block_fen
        capped = policy.daily_cap_fen is not None and fen > policy.daily_cap_fen
        days.append(DayCharge(day=day, blocks=per_day[day], fen=policy.daily_cap_fen if capped else fen, capped=capped))
    return tuple(days)


def settle_stay(
    entry: datetime,
    exit: datetime,
    charging: Iterable[Interval],
    policy: ParkingPolicy,
    tz: tzinfo,
) -> ParkingSettlement:
    """Parking fee (fen) of a finished stay [entry, exit) (aware; days and HH:MM in the station tz).

    Charging intervals must be Charging-state time of the plate's drivers; they are
    clipped to the stay and overlaps count once. A stay within its free time, a
    zero-length stay, and time up to a block boundary exactly cost nothing more.
    """
    start, end = _utc(entry, "entry"), _utc(exit, "exit")
    if end < start:
        raise InvalidStay("The stay ends before it starts", entry=entry.isoformat(), exit=exit.isoformat())
    charging_time = charging_time_in_stay(charging, start, end)
    free_until = free_parking_until(start, charging_time, policy)
    billing_from = free_until if free_until is not None else start
    starts = block_starts(billing_from, end, policy.block)
    days = charge_blocks_by_day(starts, policy, tz)
    fee = sum(d.fen for d in days)
    settlement_free_until = free_until.astimezone(entry.tzinfo) if free_until is not None else None
    return ParkingSettlement(
        entry=entry,
        exit=exit,
        charging_time=charging_time,
        qualified=free_until is not None,
        free_until=settlement_free_until,
        blocks=len(starts),
        fee_fen=fee,
        days=days,
        explanation=_explain(start, charging_time, free_until, len(starts), fee, days, policy, tz),
        explanation_lines=explanation_lines(start, charging_time, free_until, len(starts), fee, days, policy, tz),
    )


def format_duration(delta: timedelta) -> str:
    """"17 min", "14 min 59 s", "0 min": whole minutes, seconds only when there are some (sub-seconds dropped)."""
    seconds = int(delta.total_seconds())
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs} s" if secs else f"{minutes} min"


def format_money(fen: int, currency: str = "CNY") -> str:
    """Fen as "10.00 CNY" (exact, no floats)."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}.{cents:02d} {currency}"


def local_stamp(at: datetime, tz: tzinfo, reference_day: date) -> str:
    """Station-local "HH:MM", or "YYYY-MM-DD HH:MM" when not on ``reference_day`` (language-neutral)."""
    local = at.astimezone(tz)
    return f"{local:%H:%M}" if local.date() == reference_day else f"{local.date().isoformat()} {local:%H:%M}"


def explanation_lines(
    entry: datetime,
    charging_time: timedelta,
    free_until: datetime | None,
    blocks: int,
    fee: int,
    days: tuple[DayCharge, ...],
    policy: ParkingPolicy,
    tz: tzinfo,
) -> tuple[dict, ...]:
    """``_explain`` as lines of a code and params: what the receipt shows, in the reader's language."""
    entry_day = entry.astimezone(tz).date()
    charged = {"charged_seconds": int(charging_time.total_seconds()),
               "needed_seconds": int(policy.qualify_charging.total_seconds())}
    if free_until is not None:
        lines = [{"code": "parking_qualified", "params": {
            **charged, "free_seconds": int(policy.free_period.total_seconds()),
            "until": local_stamp(free_until, tz, entry_day)}}]
    else:
        lines = [{"code": "parking_not_qualified", "params": charged}]
    block = int(policy.block.total_seconds())
    if blocks:
        code = "parking_block" if blocks == 1 else "parking_blocks"
        if free_until is not None:
            lines.append({"code": f"{code}_after_free",
                          "params": {"blocks": blocks, "block_seconds": block, "fee_fen": fee}})
        else:
            lines.append({"code": f"{code}_from_entry", "params": {
                "blocks": blocks, "block_seconds": block, "entry": local_stamp(entry, tz, entry_day),
                "fee_fen": fee}})
    elif free_until is not None:
        lines.append({"code": "parking_left_in_free_time", "params": {"fee_fen": fee}})
    else:
        lines.append({"code": "parking_no_time", "params": {"fee_fen": fee}})
    lines += [{"code": "parking_daily_cap", "params": {"day": d.day.isoformat(), "blocks": d.blocks, "cap_fen": d.fen}}
              for d in days if d.capped]
    return tuple(lines)


def _local_time(at: datetime, tz: tzinfo, reference_day: date) -> str:
    local = at.astimezone(tz)
    text = local.strftime("%H:%M")
    return text if local.date() == reference_day else f"{text} on {local.date().isoformat()}"


def _explain(
    entry: datetime,
    charging_time: timedelta,
    free_until: datetime | None,
    blocks: int,
    fee: int,
    days: tuple[DayCharge, ...],
    policy: ParkingPolicy,
    tz: tzinfo,
) -> str:
    entry_day = entry.astimezone(tz).date()
    parts = [f"Charged {format_duration(charging_time)} ({format_duration(policy.qualify_charging)} needed):"]
    if free_until is not None:
        parts.append(
            f"first {format_duration(policy.free_period)} free, until {_local_time(free_until, tz, entry_day)}."
        )
        where = "after that"
    else:
        parts.append("no free parking.")
        where = f"from entry at {_local_time(entry, tz, entry_day)}"
    money = format_money(fee, policy.currency)
    if blocks:
        noun = "block" if blocks == 1 else "blocks"
        parts.append(f"{blocks} {noun} of {format_duration(policy.block)} {where}: {money}.")
    elif free_until is not None:
        parts.append(f"Left within the free time: {money}.")
    else:
        parts.append(f"No time parked: {money}.")
    for day in days:
        if day.capped:
            parts.append(
                f"Daily cap on {day.day.isoformat()}: {day.blocks} blocks capped at {format_money(day.fen, policy.currency)}."
            )
    return " ".join(parts)
