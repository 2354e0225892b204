"""Tariff versions: stored ``TariffVersion`` rows as domain ``Tariff`` objects, and new versions.

A version holds all the prices of a station from its ``effective_from`` on, until
the next version. Versions are only ever added, never edited, and never from a
moment already past, so the prices of every session and stay already started
(and so every receipt and report) stay what they were. Functions take a session
and flush but do not commit.
"""
from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.errors import Conflict, InvalidRequest
from chargeapp.domain.tariff import Band, BandPeriod, InvalidTariff, Tariff, TariffMissing, tariff_at

# What a new version must say when no earlier version exists to inherit from.
REQUIRED_FIELDS = ("periods", "peak_price", "flat_price", "valley_price", "service_fee")
# Everything else a manager may set, with the value used when no earlier version exists.
OPTIONAL_DEFAULTS = {
    "idle_grace_minutes": 10,
    "idle_fee_per_minute_fen": 0,
    "idle_fee_cap_fen": None,
    "parking_block_fen": 0,
    "parking_daily_cap_fen": None,
    "currency": "CNY",
}
PRICE_FIELDS = REQUIRED_FIELDS + tuple(OPTIONAL_DEFAULTS)


class TariffInThePast(InvalidRequest):
    """A new tariff version must take effect now or later: prices already in effect never change."""

    code = "tariff_in_the_past"


class TariffVersionExists(Conflict):
    """The station already has a tariff version taking effect at that instant."""

    code = "tariff_version_exists"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wall_time(value, *, is_end: bool) -> time:
    """A period end from "HH:MM" / "HH:MM:SS" (or a ``time``); "24:00" is accepted as an end (midnight)."""
    if isinstance(value, time):
        return value
    if not isinstance(value, str):
        raise InvalidTariff(f"A period time is written HH:MM, got {value!r}")
    if is_end and value in ("24:00", "24:00:00"):
        return time(0)
    try:
        parsed = time.fromisoformat(value)
    except ValueError:
        raise InvalidTariff(f"A period time is written HH:MM, got {value!r}") from None
    if parsed.tzinfo is not None:
        raise InvalidTariff("Band periods are station wall times, without a UTC offset")
    return parsed


def _hhmm(t: time) -> str:
    return t.strftime("%H:%M:%S") if t.second or t.microsecond else t.strftime("%H:%M")


def parse_periods(periods) -> tuple[BandPeriod, ...]:
    """Domain band periods from the stored JSON ``[{"start": "08:00", "end": "11:00", "band": "peak"}, ...]``."""
    if not isinstance(periods, (list, tuple)):
        raise InvalidTariff("periods must be a list of {start, end, band}")
    out = []
    for p in periods:
        if not isinstance(p, dict) or set(p) != {"start", "end", "band"}:
            raise InvalidTariff(f"A period has exactly start, end and band: {p!r}")
        out.append(BandPeriod(_wall_time(p["start"], is_end=False), _wall_time(p["end"], is_end=True), p["band"]))
    return tuple(out)


def _periods_json(periods: tuple[BandPeriod, ...]) -> list[dict]:
    return [{"start": _hhmm(p.start), "end": _hhmm(p.end), "band": p.band.value} for p in periods]


def _build(effective_from: datetime, fields: dict) -> Tariff:
    grace = fields["idle_grace_minutes"]
    if not _is_int(grace) or grace < 0:
        raise InvalidTariff("idle_grace_minutes must be a non-negative integer", field="idle_grace_minutes")
    return Tariff(
        effective_from=effective_from,
        periods=parse_periods(fields["periods"]),
        energy_price={
            Band.PEAK: fields["peak_price"], Band.FLAT: fields["flat_price"], Band.VALLEY: fields["valley_price"],
        },
        service_fee=fields["service_fee"],
        idle_grace=timedelta(minutes=grace),
        idle_fee_per_minute_fen=fields["idle_fee_per_minute_fen"],
        idle_fee_cap_fen=fields["idle_fee_cap_fen"],
        parking_block_fen=fields["parking_block_fen"],
        parking_daily_cap_fen=fields["parking_daily_cap_fen"],
        currency=fields["currency"],
    )


def _fields_of(row: m.TariffVersion) -> dict:
    return {name: getattr(row, name) for name in PRICE_FIELDS}


def to_domain(row: m.TariffVersion) -> Tariff:
    """The domain Tariff of a stored version (prices 1/10,000 CNY per kWh, fees fen); InvalidTariff if unusable."""
    return _build(row.effective_from, _fields_of(row))


def tariff_versions(session: Session, station: m.Station) -> list[m.TariffVersion]:
    """Every version of the station, oldest first (the manager's price history)."""
    return list(session.scalars(
        select(m.TariffVersion).where(m.TariffVersion.station_id == station.id)
        .order_by(m.TariffVersion.effective_from, m.TariffVersion.id)
    ))


def tariff_for(session: Session, station: m.Station, at: datetime) -> tuple[m.TariffVersion, Tariff]:
    """The version in effect at ``at`` (aware): latest effective_from <= at, inclusive; TariffMissing if none."""
    # Two rows suffice for domain.tariff_at to see a tie (which the unique constraint also refuses).
    rows = list(session.scalars(
        select(m.TariffVersion)
        .where(m.TariffVersion.station_id == station.id, m.TariffVersion.effective_from <= at)
        .order_by(m.TariffVersion.effective_from.desc(), m.TariffVersion.id.desc())
        .limit(2)
    ))
    if not rows:
        raise TariffMissing(f"No tariff in effect at {station.code} at {at.isoformat()}", at=at.isoformat())
    pairs = [(row, to_domain(row)) for row in rows]
    chosen = tariff_at([t for _, t in pairs], at)
    return next((row, t) for row, t in pairs if t is chosen)


def add_tariff_version(session: Session, now: datetime, station: m.Station, **fields) -> m.TariffVersion:
    """Add a price version from ``effective_from`` (aware, >= now); returns the stored row.

    Fields: effective_from, periods, peak_price, flat_price, valley_price,
    service_fee (1/10,000 CNY per kWh), idle_grace_minutes, idle_fee_per_minute_fen,
    idle_fee_cap_fen, parking_block_fen, parking_daily_cap_fen (fen; caps None =
    uncapped), currency. A field left out is copied from the version that would
    otherwise be in effect at effective_from (a new station's first version must
    give the prices). Periods are validated by the domain (cover the day once).
    Raises TariffInThePast, TariffVersionExists, InvalidTariff.
    """
    unknown = set(fields) - {"effective_from", *PRICE_FIELDS}
    if unknown:
        raise InvalidTariff(f"Unknown tariff fields: {', '.join(sorted(unknown))}", fields=sorted(unknown))
    effective_from = fields.pop("effective_from", None)
    if not isinstance(effective_from, datetime) or effective_from.utcoffset() is None:
        raise InvalidTariff("effective_from must be a timezone-aware datetime", field="effective_from")
    if effective_from < now:
        raise TariffInThePast(
            f"A version from {effective_from.isoformat()} would change prices already in effect "
            f"(now is {now.isoformat()}).", effective_from=effective_from.isoformat(),
        )
    exists = session.scalar(select(m.TariffVersion.id).where(
        m.TariffVersion.station_id == station.id, m.TariffVersion.effective_from == effective_from,
    ))
    if exists is not None:
        raise TariffVersionExists(effective_from=effective_from.isoformat())

    try:
        inherited = _fields_of(tariff_for(session, station, effective_from)[0])
    except TariffMissing:
        missing = [name for name in REQUIRED_FIELDS if name not in fields]
        if missing:
            raise InvalidTariff(f"The first tariff version needs {', '.join(missing)}", fields=missing) from None
        inherited = dict(OPTIONAL_DEFAULTS)
    merged = {**inherited, **fields}
    tariff = _build(effective_from, merged)  # the domain's checks: day covered once, integer prices
    merged["periods"] = _periods_json(tariff.periods)
    row = m.TariffVersion(station_id=station.id, effective_from=effective_from, created_at=now, **merged)
    session.add(row)
    session.flush()
    return row
