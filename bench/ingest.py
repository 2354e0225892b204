"""Bridge ingest against a bare paho subscriber draining the same backlog: ``mqtt_bridge.measure``, reused.

``mqtt_bridge.measure.run`` starts a private Mosquitto, creates both persistent
sessions, publishes the backlog once (queued for both), then times (a) a bare
paho MQTT 5 subscriber that only counts and acknowledges and (b) the bridge
applying every message to the database (batch 200, commit before ack). Here it
runs with 2 % of the draws turning a charger's session over (stop, Available,
Preparing, start, Charging), so the mix has status, meter, transaction, door
and gate messages throughout. No QoS 1 message lost: the bare subscriber got
every message, and the database holds one ``applied_messages`` row per
published message.
"""
from __future__ import annotations

from pathlib import Path

from bench.common import Databases, Result, say

TRANSACTION_SHARE = 0.02


def _mix(messages: int, chargers: int) -> dict:
    """The share of each kind of message in the workload (counted from the generator itself)."""
    from datetime import datetime, timezone

    from chargeapp import telemetry as t
    from mqtt_bridge.measure import workload

    batch = workload("m1", [f"F{i}" for i in range(1, chargers + 1)], [f"D{i}" for i in range(1, 5)], ["G1", "G2"],
                     min(messages, 20_000), datetime.now(timezone.utc), transaction_share=TRANSACTION_SHARE)
    kinds: dict[str, int] = {}
    for topic, _ in batch:
        k = t.parse_topic(topic).kind.value
        kinds[k] = kinds.get(k, 0) + 1
    return {k: round(v / len(batch), 3) for k, v in sorted(kinds.items())}


def run(backend: str, dbs: Databases, workdir: Path, sizes: dict) -> list[Result]:
    from mqtt_bridge.measure import run as measure

    messages = sizes["messages"]
    url = dbs.fresh(backend, "ingest") if backend != "sqlite" else None  # measure makes its own SQLite file
    say(f"  publishing {messages:,} messages, then draining them with a bare subscriber and with the bridge")
    figures = measure(messages, 200, 50.0, chargers=20, workdir=workdir / f"ingest-{backend}", database_url=url,
                      transaction_share=TRANSACTION_SHARE)
    r = Result("bridge_ingest", backend, target="bridge >= 0.55 x bare subscriber, no QoS 1 message lost")
    lost_bare = figures["messages"] - figures["bare_received"]
    lost_bridge = figures["messages"] - figures["db_applied_rows"]
    r.figures = {
        "bridge_msg_per_s": figures["bridge_per_second"], "messages": figures["messages"],
        "applied": figures["applied"], "db_applied_rows": figures["db_applied_rows"],
        "duplicates": figures["duplicates"], "dead_letters": figures["dead_letters"], "batches": figures["batches"],
        "lost": lost_bridge, "publish_seconds": figures["publish_seconds"],
    }
    r.baseline = {"bare_msg_per_s": figures["bare_per_second"], "bare_received": figures["bare_received"],
                  "lost": lost_bare}
    r.ratio = figures["ratio"]
    r.met = r.ratio >= 0.55 and lost_bridge == 0 and lost_bare == 0
    r.sizes = {"messages": messages, "chargers": 20, "door_counters": 4, "gates": 2, "batch_size": 200,
               "batch_ms": 50, "mix": _mix(messages, 20)}
    if lost_bridge or lost_bare:
        r.notes.append(f"LOST: bridge {lost_bridge}, bare {lost_bare}")
    return [r]
