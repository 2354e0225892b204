"""Tariffs: time-of-use energy prices, service fee, idle fee, and how a session is priced.

Units, everywhere in this module:

- energy: integer Wh (meter register readings are cumulative Wh);
- prices per kWh: integer 1/10,000 CNY (1.0755 CNY/kWh is 10755);
- money: integer fen (1/100 CNY). 1 fen = 100 price units, so
  fen = price * Wh / 1000 / 100 = price * Wh / 100_000.

Every receipt component is computed exactly (``Fraction``) and rounded half-up to the
fen once, at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone, tzinfo
from enum import Enum
from fractions import Fraction
from typing import Mapping, Sequence

from .errors import InvalidRequest, NotFound

DAY_US = 24 * 60 * 60 * 1_000_000
PRICE_UNITS_PER_FEN_KWH = 100_000  # fen = price (1/10,000 CNY per kWh) * Wh / 100_000


class InvalidTariff(InvalidRequest):
    """The tariff is not usable: its periods must cover the day exactly once and every price must be set."""

    code = "invalid_tariff"


class TariffMissing(NotFound):
    """No tariff version is in effect at that time."""

    code = "tariff_missing"


class InvalidMeterSample(InvalidRequest):
    """A meter sample needs a timezone-aware time and a non-negative integer register in Wh."""

    code = "invalid_meter_sample"


class Band(str, Enum):
    """Time-of-use band."""

    PEAK = "peak"
    FLAT = "flat"
    VALLEY = "valley"

    def __str__(self) -> str:
        return self.value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _aware(at) -> bool:
    return isinstance(at, datetime) and at.utcoffset() is not None


def _utc(at: datetime) -> datetime:
    return at.astimezone(timezone.utc)


def _us_of_day(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _us(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True)
class BandPeriod:
    """``band`` applies from ``start`` to ``end`` station-local wall time, [start, end).

    ``end == time(0)`` means midnight (24:00). A period whose end is before its start
    runs past midnight (22:00-06:00); ``start == end`` is the whole day.
    """

    start: time
    end: time
    band: Band

    def __post_init__(self):
        if not isinstance(self.start, time) or not isinstance(self.end, time):
            raise InvalidTariff("Band period ends must be datetime.time values")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise InvalidTariff("Band periods are station-local wall times, without tzinfo")
        try:
            object.__setattr__(self, "band", Band(self.band))
        except ValueError:
            raise InvalidTariff(f"Unknown band: {self.band!r}") from None

    def spans_us(self) -> list[tuple[int, int]]:
        """The period as microsecond-of-day spans within [0, 24 h), split at midnight if it wraps."""
        s, e = _us_of_day(self.start), _us_of_day(self.end)
        if e <= s:
            e += DAY_US
        if e <= DAY_US:
            return [(s, e)]
        return [(s, DAY_US), (0, e - DAY_US)]

    def contains(self, wall: time) -> bool:
        """True if the local wall time falls in this period."""
        t = _us_of_day(wall)
        return any(s <= t < e for s, e in self.spans_us())


@dataclass(frozen=True)
class Tariff:
    """One version of a station's prices, in effect from ``effective_from`` (aware) until the next version.

    Prices per kWh in 1/10,000 CNY; fees in fen; ``parking_block_fen`` is per started block.
    A cap of ``None`` means uncapped.
    """

    effective_from: datetime
    periods: tuple[BandPeriod, ...]
    energy_price: Mapping[Band, int]
    service_fee: int
    idle_grace: timedelta = timedelta(minutes=10)
    idle_fee_per_minute_fen: int = 0
    idle_fee_cap_fen: int | None = None
    parking_block_fen: int = 0
    parking_daily_cap_fen: int | None = None
    currency: str = "CNY"

    def __post_init__(self):
        if not _aware(self.effective_from):
            raise InvalidTariff("effective_from must be a timezone-aware datetime")
        object.__setattr__(self, "periods", tuple(self.periods))
        self._check_periods_cover_the_day()
        try:
            prices = {Band(band): price for band, price in dict(self.energy_price).items()}
        except ValueError as exc:
            raise InvalidTariff(f"Unknown band in energy_price: {exc}") from None
        object.__setattr__(self, "energy_price", prices)
        for band in {p.band for p in self.periods}:
            if band not in prices:
                raise InvalidTariff(f"No energy price for band {band}", band=str(band))
        for band, price in prices.items():
            if not _is_int(price) or price < 0:
                raise InvalidTariff(f"Energy price for {band} must be a non-negative integer", band=str(band))
        for name in ("service_fee", "idle_fee_per_minute_fen", "parking_block_fen"):
            value = getattr(self, name)
            if not _is_int(value) or value < 0:
                raise InvalidTariff(f"{name} must be a non-negative integer", field=name)
        for name in ("idle_fee_cap_fen", "parking_daily_cap_fen"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value < 0):
                raise InvalidTariff(f"{name} must be a non-negative integer or None", field=name)
        if not isinstance(self.idle_grace, timedelta) or self.idle_grace < timedelta():
            raise InvalidTariff("idle_grace must be a non-negative timedelta")
        if not isinstance(self.currency, str) or not self.currency:
            raise InvalidTariff("currency must be a non-empty code")

    def _check_periods_cover_the_day(self) -> None:
        if not self.periods:
            raise InvalidTariff("A tariff needs at least one band period")
        spans = sorted(span for period in self.periods for span in period.spans_us())
        cursor = 0
        for s, e in spans:
            if s < cursor:
                raise InvalidTariff(f"Band periods overlap at {_fmt_us(s)}")
            if s > cursor:
                raise InvalidTariff(f"Band periods leave {_fmt_us(cursor)}-{_fmt_us(s)} uncovered")
            cursor = e
        if cursor != DAY_US:
            raise InvalidTariff(f"Band periods leave {_fmt_us(cursor)}-24:00 uncovered")

    def band_at(self, at: datetime, tz: tzinfo) -> Band:
        """The band in effect at the instant ``at`` (aware), judged by wall time in the station tz."""
        if not _aware(at):
            raise InvalidTariff("band_at needs a timezone-aware datetime")
        wall = at.astimezone(tz).time()
        for period in self.periods:
            if period.contains(wall):
                return period.band
        raise AssertionError("periods cover the day")  # pragma: no cover - checked in __post_init__

    def price_of(self, band: Band) -> int:
        """Energy price of a band, 1/10,000 CNY per kWh."""
        return self.energy_price[Band(band)]


def _fmt_us(us: int) -> str:
    seconds, micro = divmod(us, 1_000_000)
    return (time(0) if us >= DAY_US else time(seconds // 3600, seconds // 60 % 60, seconds % 60, micro)).isoformat("auto")


def tariff_at(tariffs: Sequence[Tariff], at: datetime) -> Tariff:
    """The version with the latest effective_from <= ``at`` (aware); TariffMissing if none, InvalidTariff if two tie.

    A session is priced entirely by the version in effect at its start.
    """
    if not _aware(at):
        raise InvalidTariff("tariff_at needs a timezone-aware datetime")
    candidates = [t for t in tariffs if _utc(t.effective_from) <= _utc(at)]
    if not candidates:
        raise TariffMissing(f"No tariff in effect at {at.isoformat()}", at=at.isoformat())
    latest = max(_utc(t.effective_from) for t in candidates)
    chosen = [t for t in candidates if _utc(t.effective_from) == latest]
    if len(chosen) > 1:
        # Two versions from one instant would make old receipts depend on list order.
        raise InvalidTariff(f"Two tariff versions take effect at {latest.isoformat()}")
    return chosen[0]


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator/denominator rounded to the nearest integer, exact halves away from zero (2.5 -> 3, -2.5 -> -3)."""
    if not _is_int(numerator) or not _is_int(denominator):
        raise TypeError("round_half_up takes integers")
    if denominator == 0:
        raise ZeroDivisionError("round_half_up by zero")
    sign = -1 if (numerator < 0) != (denominator < 0) else 1
    n, d = abs(numerator), abs(denominator)
    return sign * ((2 * n + d) // (2 * d))


def round_fraction_half_up(value: Fraction) -> int:
    """An exact Fraction rounded half away from zero to an integer."""
    return round_half_up(value.numerator, value.denominator)


@dataclass(frozen=True)
class MeterSample:
    """The energy register (cumulative Wh, integer >= 0) read at ``at`` (aware)."""

    at: datetime
    energy_wh: int

    def __post_init__(self):
        if not _aware(self.at):
            raise InvalidMeterSample("A meter sample needs a timezone-aware time", at=str(self.at))
        if not _is_int(self.energy_wh) or self.energy_wh < 0:
            raise InvalidMeterSample("A meter register is a non-negative integer of Wh", energy_wh=self.energy_wh)


@dataclass(frozen=True)
class EnergyCharge:
    """Energy of a session and its price: Wh, exact Wh per band, and the two receipt components in fen."""

    energy_wh: int
    wh_by_band: dict[Band, Fraction]
    energy_fen: int
    service_fen: int

    @property
    def total_fen(self) -> int:
        """Energy plus service fee, fen (each already rounded once)."""
        return self.energy_fen + self.service_fen


def band_segments(start: datetime, end: datetime, tariff: Tariff, tz: tzinfo) -> list[tuple[Band, datetime, datetime]]:
    """[start, end) (aware) cut where the band changes in the station tz; pieces in UTC, in order.

    Neighbouring pieces may share a band (a cut is only a candidate boundary).
    """
    start, end = _utc(start), _utc(end)
    if end <= start:
        return []
    cuts = {start, end}
    first_day = start.astimezone(tz).date() - timedelta(days=1)
    last_day = end.astimezone(tz).date() + timedelta(days=1)
    day = first_day
    while day <= last_day:
        for period in tariff.periods:
            for fold in (0, 1):  # both readings of a wall time repeated when clocks go back
                boundary = _utc(datetime.combine(day, period.start, tzinfo=tz).replace(fold=fold))
                if start < boundary < end:
                    cuts.add(boundary)
        day += timedelta(days=1)
    ordered = sorted(cuts)
    # Where the UTC offset changes between two cuts (DST), also cut at the change itself,
    # so a boundary in a skipped hour takes effect when the clock jumps over it.
    for a, b in zip(ordered, ordered[1:]):
        change = _offset_change(a, b, tz)
        if change is not None:
            cuts.add(change)
    ordered = sorted(cuts)
    return [(tariff.band_at(a, tz), a, b) for a, b in zip(ordered, ordered[1:])]


def _offset_change(a: datetime, b: datetime, tz: tzinfo) -> datetime | None:
    """The first instant in (a, b) at which the tz's UTC offset differs from at ``a``, to the microsecond."""
    offset = a.astimezone(tz).utcoffset()
    if b.astimezone(tz).utcoffset() == offset:
        return None
    lo, hi = 0, _us(b - a)  # offset equal at lo, different at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (a + timedelta(microseconds=mid)).astimezone(tz).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return a + timedelta(microseconds=hi)


def split_energy_by_band(samples: Sequence[MeterSample], tariff: Tariff, tz: tzinfo) -> tuple[int, dict[Band, Fraction]]:
    """Total Wh and exact Wh per band, interpolating linearly in time between consecutive samples.

    Samples are stably sorted by instant; a pair whose register decreases (meter
    replaced) contributes 0; energy between two samples at the same instant goes to
    the band in effect then. Every Band is a key.
    """
    ordered = sorted(samples, key=lambda s: _utc(s.at))
    total = 0
    by_band: dict[Band, Fraction] = {band: Fraction(0) for band in Band}
    for a, b in zip(ordered, ordered[1:]):
        delta = b.energy_wh - a.energy_wh
        if delta <= 0:
            continue
        total += delta
        span_us = _us(_utc(b.at) - _utc(a.at))
        if span_us == 0:
            by_band[tariff.band_at(a.at, tz)] += delta
            continue
        for band, s, e in band_segments(a.at, b.at, tariff, tz):
            by_band[band] += Fraction(delta * _us(e - s), span_us)
    return total, by_band


def price_energy(samples: Sequence[MeterSample], tariff: Tariff, tz: tzinfo) -> EnergyCharge:
    """Energy and service charge of one session, fen, from its meter samples (any order; station tz for bands).

    Energy between samples is split at band boundaries by linear interpolation in time;
    energy charge = sum(price * Wh) exactly, then rounded half-up once; service fee =
    service_fee * total Wh, rounded half-up once. Fewer than two samples: zero.
    """
    energy_wh, wh_by_band = split_energy_by_band(samples, tariff, tz)
    exact_energy = sum(
        (tariff.price_of(band) * wh for band, wh in wh_by_band.items() if wh),
        Fraction(0),
    )
    energy_fen = round_fraction_half_up(exact_energy / PRICE_UNITS_PER_FEN_KWH)
    service_fen = round_half_up(tariff.service_fee * energy_wh, PRICE_UNITS_PER_FEN_KWH)
    return EnergyCharge(energy_wh=energy_wh, wh_by_band=wh_by_band, energy_fen=energy_fen, service_fen=service_fen)


@dataclass(frozen=True)
class IdleFee:
    """Idle time of a session, the whole minutes billed after the grace, and the fee in fen."""

    idle: timedelta
    billed_minutes: int
    fee_fen: int
    capped: bool


def idle_fee(last_charging_end: datetime, available_at: datetime, tariff: Tariff) -> IdleFee:
    """Idle fee, fen: from the end of the last Charging interval to Available (aware), less the grace, per WHOLE minute (floor), capped.

    E.g. grace 10 min, idle 13 min 59 s -> 3 min billed. Available before the charging
    end (clock skew) counts as no idle time.
    """
    if not _aware(last_charging_end) or not _aware(available_at):
        raise InvalidRequest("idle_fee needs timezone-aware datetimes")
    idle = max(_utc(available_at) - _utc(last_charging_end), timedelta())
    billable = max(idle - tariff.idle_grace, timedelta())
    minutes = billable // timedelta(minutes=1)
    fee = minutes * tariff.idle_fee_per_minute_fen
    capped = tariff.idle_fee_cap_fen is not None and fee > tariff.idle_fee_cap_fen
    if capped:
        fee = tariff.idle_fee_cap_fen
    return IdleFee(idle=idle, billed_minutes=minutes, fee_fen=fee, capped=capped)
