"""Small builders for tests: a station like the demo one, scaled down, and drivers."""
from __future__ import annotations

from datetime import datetime, timezone

from chargeapp.services.registry import (
    ChargerSpec, SensorSpec, StationSpec, TariffSpec, ZoneSpec, build_station, create_user,
)

UTC = timezone.utc


def station_spec(code: str = "s1", fast: int = 3, slow: int = 2, **kw) -> StationSpec:
    """A station in Asia/Shanghai with ``fast`` fast chargers F1.., ``slow`` slow S01.., two zones, two gates."""
    return StationSpec(
        code=code, name=f"Station {code}", latitude=31.27, longitude=121.52,
        chargers=[ChargerSpec(f"F{i}", "fast", "B1") for i in range(1, fast + 1)]
        + [ChargerSpec(f"S{i:02d}", "slow", "B2", 7) for i in range(1, slow + 1)],
        zones=[ZoneSpec("hall", "Hall", 20), ZoneSpec("tea", "Tea room", 8)],
        sensors=[SensorSpec("D1", "hall"), SensorSpec("D2", "tea", "hall")],
        gates=["G-in", "G-out"],
        tariff=TariffSpec(effective_from=datetime(2020, 1, 1, tzinfo=UTC)),
        **kw,
    )


def make_station(session, now: datetime, code: str = "s1", **kw):
    return build_station(session, station_spec(code, **kw), now)


_n = {"i": 0}


def make_driver(session, now: datetime, email: str | None = None, id_tag: str | None = None,
                plate: str | None = None, password_hash: str = "x"):
    _n["i"] += 1
    i = _n["i"]
    return create_user(
        session, email=email or f"driver{i}@example.com", password_hash=password_hash, now=now,
        name=f"Driver {i}", id_tags=(id_tag or f"TAG-{i}",), plates=(plate,) if plate else (),
    )
