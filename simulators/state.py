"""What a device keeps across reboots: its boot counter, its next transaction id and its meter registers.

A real charger persists these in flash; the simulators keep them in one JSON
file so that a restarted simulator (every device reboots) goes on with boot+1,
never repeats a transaction id and never winds a meter back, and the service's
de-duplication on (device, boot, seq) and (charger, transaction_id) holds.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class DeviceState:
    """Persisted per device: last boot number, next transaction id, energy register per connector (Wh)."""

    boot: int = 0
    next_transaction_id: int = 1
    meter_wh: dict[str, float] = field(default_factory=dict)


class StateStore:
    """Device states by key ``station.device``, loaded from and saved to ``path`` (None: memory only)."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else None
        self._states: dict[str, DeviceState] = {}
        if self.path is not None and self.path.exists():
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            for key, value in raw.get("devices", {}).items():
                self._states[key] = DeviceState(
                    boot=int(value.get("boot", 0)),
                    next_transaction_id=int(value.get("next_transaction_id", 1)),
                    meter_wh={str(k): float(v) for k, v in value.get("meter_wh", {}).items()},
                )

    def device(self, key: str) -> DeviceState:
        """The state of one device, created empty the first time it is asked for."""
        return self._states.setdefault(key, DeviceState())

    def known(self, key: str) -> bool:
        """True if the device has a stored state (it ran before)."""
        return key in self._states

    def save(self) -> None:
        """Write every device's state atomically (a crash leaves the old file or the new one)."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        data = {"version": 1, "devices": {k: asdict(v) for k, v in sorted(self._states.items())}}
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)
