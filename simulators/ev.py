"""Electric cars: battery sizes, charging power curves and state of charge.

Fast (DC) charging runs at the lower of the charger's and the car's limit until
about half full, then tapers as the battery fills (the constant-voltage phase),
so the last 20 % take about as long as the first 50 %. Slow (AC) charging is
limited by the car's on-board charger and the 7 kW wallbox, and tapers only
near full.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VehicleModel:
    """A car model: usable battery (kWh), peak DC power (kW) and on-board AC charger (kW)."""

    name: str
    battery_kwh: float
    max_dc_kw: float
    max_ac_kw: float


# Typical ride-hailing and taxi cars in Shanghai.
VEHICLE_MODELS: tuple[VehicleModel, ...] = (
    VehicleModel("BYD Qin PLUS EV", 57.6, 90, 6.6),
    VehicleModel("BYD e5", 60.5, 60, 6.6),
    VehicleModel("BYD Han EV", 76.9, 120, 7.0),
    VehicleModel("BYD Dolphin", 44.9, 60, 6.6),
    VehicleModel("GAC Aion S", 58.8, 100, 6.6),
    VehicleModel("Tesla Model 3", 60.0, 170, 11.0),
    VehicleModel("Geely Geometry A", 51.9, 80, 6.6),
    VehicleModel("Xpeng P5", 55.9, 100, 6.6),
)


def dc_taper(soc: float) -> float:
    """Share (0-1) of the car's peak DC power it accepts at a state of charge ``soc`` (%): 1 up to 50 %, 0.45 at 80 %, 0.08 at 100 %."""
    if soc <= 50:
        return 1.0
    if soc <= 80:
        return 1.0 - (soc - 50) / 30 * 0.55
    return max(0.08, 0.45 - (soc - 80) / 20 * 0.37)


def ac_taper(soc: float) -> float:
    """Share (0-1) of AC power accepted at ``soc`` (%): full up to 95 %, then down to 0.3 at 100 %."""
    if soc <= 95:
        return 1.0
    return max(0.3, 1.0 - (soc - 95) / 5 * 0.7)


def charging_power_w(model: VehicleModel, kind: str, charger_kw: float, soc: float) -> float:
    """Power (W) a car draws from a ``fast`` (DC) or ``slow`` (AC) charger rated ``charger_kw`` at ``soc`` (%); 0 when full."""
    if soc >= 100:
        return 0.0
    if kind == "fast":
        return min(charger_kw, model.max_dc_kw) * dc_taper(soc) * 1000.0
    return min(charger_kw, model.max_ac_kw) * ac_taper(soc) * 1000.0


@dataclass
class Battery:
    """A car's battery while it charges; ``soc`` in %, ``target`` the % at which the car stops drawing power."""

    model: VehicleModel
    soc: float
    target: float = 100.0

    @property
    def full(self) -> bool:
        """True once the car has reached its charge target and stops drawing power."""
        return self.soc >= self.target - 1e-9

    def charge(self, kind: str, charger_kw: float, seconds: float, step: float = 5.0) -> float:
        """Charge for ``seconds`` (integrated in ``step``-second slices, stopping at the target); returns the energy taken in Wh."""
        energy_wh = 0.0
        left = seconds
        while left > 1e-9 and not self.full:
            dt = min(step, left)
            power = charging_power_w(self.model, kind, charger_kw, self.soc)
            if power <= 0:
                break
            wh = power * dt / 3600.0
            room_wh = (self.target - self.soc) / 100.0 * self.model.battery_kwh * 1000.0
            if wh >= room_wh:
                wh = room_wh
                self.soc = self.target
            else:
                self.soc += wh / (self.model.battery_kwh * 1000.0) * 100.0
            energy_wh += wh
            left -= dt
        return energy_wh

    def seconds_to_target(self, kind: str, charger_kw: float, step: float = 30.0) -> float:
        """Estimated seconds until the car reaches its target on this charger (without changing the battery)."""
        probe = Battery(self.model, self.soc, self.target)
        total = 0.0
        while not probe.full and total < 48 * 3600:
            probe.charge(kind, charger_kw, step, step=step)
            total += step
        return total
