"""Demo data: the Yangpu Liaoyuan drivers' lounge and two more stations for the finder.

Everything created here is marked ``is_demo``.
"""
from __future__ import annotations

from datetime import datetime, time, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.services.registry import (
    ChargerSpec, SensorSpec, StationSpec, TariffSpec, ZoneSpec, build_station, create_user,
)

DEMO_MANAGER = ("manager@demo.chargeapp", "demo-manager-pass")
DEMO_ADMIN = ("admin@demo.chargeapp", "demo-admin-pass")
DEMO_DRIVER = ("driver@demo.chargeapp", "demo-driver-pass")
EPOCH = datetime(2020, 1, 1, tzinfo=timezone.utc)

AMENITIES = ["hot_water_24h", "microwave", "wifi", "phone_charging", "books", "tables", "restroom"]


def demo_stations() -> list[StationSpec]:
    liaoyuan = StationSpec(
        code="yangpu-liaoyuan", name="杨浦辽源司机之家", name_en="Yangpu Liaoyuan Drivers' Lounge",
        address="上海市杨浦区辽源西路", district="杨浦区", latitude=31.2721, longitude=121.5130,
        amenities=AMENITIES,
        chargers=[ChargerSpec(f"F{i}", "fast", "B1", 120) for i in range(1, 6)]
        + [ChargerSpec(f"S{i:02d}", "slow", "B2", 7) for i in range(1, 29)],
        zones=[ZoneSpec("hall", "一楼大厅", 40, "Floor-1 hall"), ZoneSpec("tea", "茶水间", 12, "Tea room"),
               ZoneSpec("upstairs", "二楼共享空间", 30, "Upstairs shared space")],
        sensors=[SensorSpec("door-hall", "hall"), SensorSpec("door-tea", "tea", "hall"),
                 SensorSpec("door-upstairs", "upstairs", "hall")],
        gates=["gate-in", "gate-out"],
        tariff=TariffSpec(effective_from=EPOCH),
        is_demo=True,
    )
    depot = StationSpec(
        code="yangpu-bus-depot", name="杨浦公交停车场快充站", name_en="Yangpu Bus Depot Fast Charging",
        address="上海市杨浦区军工路", district="杨浦区", latitude=31.2905, longitude=121.5522,
        amenities=["hot_water_24h", "restroom"],
        chargers=[ChargerSpec(f"F{i}", "fast", "P1", 160) for i in range(1, 11)],
        zones=[ZoneSpec("room", "休息室", 15, "Rest room")], sensors=[SensorSpec("door-room", "room")],
        gates=["gate-in", "gate-out"], rules={"walkin_reserved_fast": 2},
        tariff=TariffSpec(effective_from=EPOCH, parking_block_fen=0, parking_daily_cap_fen=None),
        is_demo=True,
    )
    small = StationSpec(
        code="hongkou-quyang", name="虹口曲阳社区充电站", name_en="Hongkou Quyang Community Charging",
        address="上海市虹口区曲阳路", district="虹口区", latitude=31.2826, longitude=121.4890,
        amenities=["hot_water_24h", "wifi"], opens_at=time(6, 0), closes_at=time(23, 0),
        chargers=[ChargerSpec("F1", "fast", "G", 60), ChargerSpec("F2", "fast", "G", 60)]
        + [ChargerSpec(f"S{i:02d}", "slow", "G", 7) for i in range(1, 7)],
        zones=[ZoneSpec("room", "休息角", 6, "Rest corner")], sensors=[SensorSpec("door-room", "room")],
        gates=["gate"], tariff=TariffSpec(effective_from=EPOCH), is_demo=True,
    )
    return [liaoyuan, depot, small]


def seed_demo(session: Session, now: datetime, hasher) -> dict:
    """Create the demo stations and accounts unless they exist; returns what was created."""
    created = {"stations": [], "users": []}
    stations = {}
    for spec in demo_stations():
        existing = session.scalar(select(m.Station).where(m.Station.code == spec.code))
        stations[spec.code] = existing or build_station(session, spec, now)
        if existing is None:
            created["stations"].append(spec.code)
    accounts = [
        (DEMO_ADMIN, "admin", (), (), ()),
        (DEMO_MANAGER, "manager", (), (), tuple(stations.values())),
        (DEMO_DRIVER, "driver", ("D-DEMO01",), ("沪A12345",), ()),
    ]
    for (email, password), role, tags, plates, st in accounts:
        if session.scalar(select(m.User).where(m.User.email == email)) is None:
            create_user(session, email=email, password_hash=hasher.hash(password), now=now, role=role,
                        name=f"Demo {role}", id_tags=tags, plates=plates, stations=st, is_demo=True)
            created["users"].append(email)
    session.flush()
    return created
