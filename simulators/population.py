"""The simulated drivers: a fixed roster per station, the same in every run.

The roster does not depend on ``--seed`` so that ``chargeapp demo`` can create
the matching driver accounts (email, password, id tag, plate) in the database
before the simulators start; the seed only decides who comes when.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from simulators.ev import VEHICLE_MODELS, VehicleModel
from simulators.layouts import StationLayout

SIM_DRIVER_PASSWORD = "demo-sim-driver-pass"
SIM_EMAIL_DOMAIN = "sim.demo.chargeapp"

_PROVINCE_LETTERS = "ABDEFGHJKLMN"
_PLATE_CHARS = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on Chinese plates


@dataclass(frozen=True)
class DriverProfile:
    """A simulated driver: account (email, password), RFID id tag, plate and car."""

    email: str
    password: str
    name: str
    id_tag: str
    plate: str
    vehicle: VehicleModel
    home_station: str


@dataclass
class SimDriver:
    """A driver during a run: the profile plus what the service told us (app id tag, API token)."""

    profile: DriverProfile
    id_tag: str
    token: str | None = None
    busy: bool = False
    booking_id: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def email(self) -> str:
        return self.profile.email

    @property
    def plate(self) -> str:
        return self.profile.plate


def roster_size(layout: StationLayout) -> int:
    """How many drivers a station's roster has: about 1.3 times its expected visits a day."""
    fast = len(layout.chargers_of("fast"))
    slow = len(layout.chargers_of("slow"))
    return int(math.ceil((fast * 14 + slow * 2.5) * 1.3)) + 10


def _plate(rng: random.Random) -> str:
    # A Shanghai new-energy plate: 沪 + issuing letter + D/F + 5 characters (8 in all).
    return "沪" + rng.choice(_PROVINCE_LETTERS) + rng.choice("DF") + "".join(rng.choice(_PLATE_CHARS) for _ in range(5))


def station_roster(layout: StationLayout) -> list[DriverProfile]:
    """The fixed drivers of one station (deterministic in the station code)."""
    rng = random.Random(f"roster:{layout.code}")
    drivers = []
    for n in range(1, roster_size(layout) + 1):
        drivers.append(DriverProfile(
            email=f"{layout.code}.{n:03d}@{SIM_EMAIL_DOMAIN}",
            password=SIM_DRIVER_PASSWORD,
            name=f"模拟司机 {layout.code} {n:03d}",
            id_tag="D-" + "".join(rng.choice("0123456789ABCDEF") for _ in range(8)),
            plate=_plate(rng),
            vehicle=rng.choice(VEHICLE_MODELS),
            home_station=layout.code,
        ))
    return drivers


def roster(layouts: list[StationLayout]) -> list[DriverProfile]:
    """The drivers of several stations, in station order (id tags and plates are unique across the demo stations: a test checks)."""
    return [d for layout in layouts for d in station_roster(layout)]
