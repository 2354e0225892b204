"""Building blocks for simulator tests: a quiet one-charger world, command payloads, record parsing."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from chargeapp import telemetry as t
from simulators.behaviour import Behaviour
from simulators.ev import VEHICLE_MODELS, Battery
from simulators.layouts import DEMO_LAYOUTS, StationLayout
from simulators.simulation import Simulation
from simulators.sinks import MemorySink

CST = timezone(timedelta(hours=8))
START = datetime(2026, 11, 22, 14, 0, tzinfo=CST)
STATION = "yangpu-liaoyuan"
QUIET = Behaviour(fast_visits_per_charger_day=0, slow_visits_per_charger_day=0, lounge_only_share=0,
                  incidents=0, warm_start=False)


def quiet_sim(layouts: list[StationLayout] | None = None, start: datetime = START) -> tuple[Simulation, MemorySink]:
    """A simulation with no drivers and no incidents, devices powered on: tests act on the devices themselves."""
    sink = MemorySink()
    sim = Simulation(layouts or [DEMO_LAYOUTS[STATION]], start=start, seed=1, sink=sink, behaviour=QUIET)
    sim.run_until(start + timedelta(seconds=5))
    return sim, sink


def advance(sim: Simulation, **delta) -> None:
    sim.run_until(sim.now + timedelta(**delta))


def battery(soc: float = 20.0, target: float = 90.0, model: int = 0) -> Battery:
    return Battery(VEHICLE_MODELS[model], soc, target)


def command(sim: Simulation, charger: str, name: str, request_id: str = "r1", **fields) -> None:
    """Deliver a command as the bridge would send it (formatted by the telemetry contract)."""
    cls = t.COMMAND_TYPES[name]
    topic, payload = t.format_command(cls(station=STATION, charger=charger, request_id=request_id, **fields))
    assert sim.deliver(topic, payload)


def payloads(sink: MemorySink, device: str, kind: str | None = None) -> list[dict]:
    """The JSON payloads one device published (optionally one topic leaf: status, transaction, meter, command_results, count)."""
    out = []
    for r in sink.of(f"{STATION}.{device}" if "." not in device else device):
        if r.topic.endswith("/online"):
            continue
        if kind is not None and r.topic.split("/")[4] != kind:
            continue
        out.append(json.loads(r.payload))
    return out


def statuses(sink: MemorySink, device: str) -> list[str]:
    return [p["status"] for p in payloads(sink, device, "status")]


def results(sink: MemorySink, device: str) -> list[tuple[str, str, str]]:
    return [(p["command"], p["request_id"], p["status"]) for p in payloads(sink, device, "command_results")]
