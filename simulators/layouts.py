"""What hardware each simulated station has: chargers, lounge doors and zones, garage gates.

The simulators import only the telemetry contract, the config module and the
clock, never the database; so the demo stations' hardware is written out here as
plain data. A unit test keeps it equal to ``chargeapp.seed.demo_stations()``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class ChargerLayout:
    """One charger: registry code, ``fast`` (DC) or ``slow`` (AC), rated power in kW, connector count."""

    code: str
    kind: str
    max_power_kw: int
    connectors: int = 1


@dataclass(frozen=True)
class DoorLayout:
    """A directional people counter: ``in`` counts into ``zone_in``, out of ``zone_out`` (None: the street)."""

    code: str
    zone_in: str
    zone_out: str | None = None


@dataclass(frozen=True)
class GateLayout:
    """A plate reader at the garage: it reads cars going ``in``, ``out`` or ``both`` ways."""

    code: str
    direction: str  # "in", "out" or "both"


@dataclass(frozen=True)
class StationLayout:
    """A station's devices, time zone and opening hours (None: around the clock)."""

    code: str
    timezone: str = "Asia/Shanghai"
    chargers: tuple[ChargerLayout, ...] = ()
    doors: tuple[DoorLayout, ...] = ()
    gates: tuple[GateLayout, ...] = ()
    opens_at: time | None = None
    closes_at: time | None = None
    zone_capacity: dict[str, int] = field(default_factory=dict)

    @property
    def tz(self) -> ZoneInfo:
        """The station's time zone (device clocks show local time with its offset)."""
        return ZoneInfo(self.timezone)

    def chargers_of(self, kind: str) -> tuple[ChargerLayout, ...]:
        """The chargers of one kind (``fast`` or ``slow``), in registry order."""
        return tuple(c for c in self.chargers if c.kind == kind)

    @property
    def entrance(self) -> DoorLayout | None:
        """The lounge door from the street (the one that counts out of no zone)."""
        return next((d for d in self.doors if d.zone_out is None), None)

    def inner_doors(self, zone: str) -> tuple[DoorLayout, ...]:
        """Doors that lead from ``zone`` into another zone."""
        return tuple(d for d in self.doors if d.zone_out == zone)

    @property
    def entry_gate(self) -> GateLayout | None:
        """The gate cars enter the garage through."""
        return next((g for g in self.gates if g.direction in ("in", "both")), None)

    @property
    def exit_gate(self) -> GateLayout | None:
        """The gate cars leave the garage through."""
        return next((g for g in self.gates if g.direction in ("out", "both")), None)

    def is_open(self, local_time: time) -> bool:
        """Whether the station is open at a station-local time of day (closing time exclusive)."""
        if self.opens_at is None or self.closes_at is None:
            return True
        if self.opens_at <= self.closes_at:
            return self.opens_at <= local_time < self.closes_at
        return local_time >= self.opens_at or local_time < self.closes_at


def _gates(*codes: str) -> tuple[GateLayout, ...]:
    if len(codes) == 1:
        return (GateLayout(codes[0], "both"),)
    return tuple(GateLayout(c, "in" if c.endswith("-in") else "out") for c in codes)


DEMO_LAYOUTS: dict[str, StationLayout] = {
    layout.code: layout
    for layout in (
        StationLayout(
            code="yangpu-liaoyuan",
            chargers=tuple(ChargerLayout(f"F{i}", "fast", 120) for i in range(1, 6))
            + tuple(ChargerLayout(f"S{i:02d}", "slow", 7) for i in range(1, 29)),
            doors=(DoorLayout("door-hall", "hall"), DoorLayout("door-tea", "tea", "hall"),
                   DoorLayout("door-upstairs", "upstairs", "hall")),
            gates=_gates("gate-in", "gate-out"),
            zone_capacity={"hall": 40, "tea": 12, "upstairs": 30},
        ),
        StationLayout(
            code="yangpu-bus-depot",
            chargers=tuple(ChargerLayout(f"F{i}", "fast", 160) for i in range(1, 11)),
            doors=(DoorLayout("door-room", "room"),),
            gates=_gates("gate-in", "gate-out"),
            zone_capacity={"room": 15},
        ),
        StationLayout(
            code="hongkou-quyang",
            chargers=(ChargerLayout("F1", "fast", 60), ChargerLayout("F2", "fast", 60))
            + tuple(ChargerLayout(f"S{i:02d}", "slow", 7) for i in range(1, 7)),
            doors=(DoorLayout("door-room", "room"),),
            gates=_gates("gate"),
            opens_at=time(6, 0), closes_at=time(23, 0),
            zone_capacity={"room": 6},
        ),
    )
}

DEMO_STATIONS: tuple[str, ...] = tuple(DEMO_LAYOUTS)


def layout_for(code: str) -> StationLayout:
    """The layout of a known station code; raises KeyError naming the known ones."""
    try:
        return DEMO_LAYOUTS[code]
    except KeyError:
        raise KeyError(f"no simulator layout for station {code!r}; known: {', '.join(DEMO_LAYOUTS)}") from None
