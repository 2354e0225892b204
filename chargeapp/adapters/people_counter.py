"""A directional people counter's JSON: cumulative in and out totals per counting line, no boot or seq.

The format (what ToF and stereo-vision counters push over MQTT to a topic set
on the device; field names as below), one message per report:

    {"device_id": "PC-0042", "time": "2026-11-22T14:30:05+08:00",
     "lines": [{"line": "L1", "in": 1234, "out": 1200}, {"line": "L2", "in": 88, "out": 90}]}

or a single line per message: ``{"line": "L1", "in": 1234, "out": 1200, "time": "..."}``.
``time`` is RFC 3339 with an offset, or Unix seconds. Totals are people since
the counter's last reboot (or reset); ``in`` is the line's "in" direction.
Other fields are ignored. The registry maps (topic, line) to one door sensor;
lines it does not map are left alone.

``translate`` gives one ``CounterTotals`` per line. ``door_count`` turns a line's
totals into the contract's ``DoorCount`` against the last reading applied, so
the occupancy rules (``domain.occupancy``) apply unchanged:

- the device has no boot: totals that fall (either direction) mean the counter
  rebooted or was reset, so the reading starts a new boot (boot + 1, seq 1)
  and all its totals are new passages;
- the device has no seq: the bridge numbers readings (seq + 1) in device-time
  order. A reading not newer than the last one applied (a redelivery, or an old
  one arriving late) is stale and applies nothing: its passages are already in
  the newer cumulative totals;
- the first reading of a line is a baseline (moves no one): it is seq 2 of
  boot 1, because seq 1 would tell the occupancy rules the boot was seen from
  its start and count every total as passages.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from chargeapp import telemetry as t
from chargeapp.adapters.events import CounterTotals, load_json, outside_reserved_roots, require_aware, unknown_format

NAME = "people_counter"
MAX_LINE_LENGTH = 64
_LINE = re.compile(r"[^\x00-\x1f\x7f]{1,64}")
# An MQTT topic a device publishes on: no wildcards, no empty level, not a $SYS topic.
_TOPIC = re.compile(r"(?!\$)[^/+#\x00-\x1f\x7f]{1,64}(?:/[^/+#\x00-\x1f\x7f]{1,64}){0,7}")


def check_topic(topic: str) -> str:
    """``topic`` if a counter may publish on it (1-8 levels, no wildcards, not under ``stations/`` or
    ``zigbee2mqtt/``); raises BadMessage bad_topic."""
    if not isinstance(topic, str) or _TOPIC.fullmatch(topic) is None or not outside_reserved_roots(topic):
        raise t.BadMessage("bad_topic", f"not a people counter topic: {str(topic)[:80]!r}")
    return topic


def check_line(line: str) -> str:
    """``line`` if it names a counting line (1-64 characters, no control characters); raises BadMessage bad_shape."""
    if not isinstance(line, str) or _LINE.fullmatch(line) is None:
        raise t.BadMessage("bad_shape", "a counting line is named by 1-64 characters", field="line")
    return line


def topics(address: str) -> tuple[str, ...]:
    """The topic a counter publishes on; ``address`` is that topic."""
    return (check_topic(address),)


def translate(topic: str, payload: bytes, received_at: datetime) -> tuple[CounterTotals, ...]:
    """The per-line totals of one counter report, at the device's time; raises BadMessage."""
    require_aware(received_at)
    check_topic(topic)
    value = load_json(payload)
    if not isinstance(value, dict) or not ("lines" in value or "line" in value):
        raise unknown_format("people counter report expected: an object with lines, or with line, in and out")
    at = _time(value.get("time"))
    if "lines" in value:
        lines = value["lines"]
        if not isinstance(lines, list) or not lines:
            raise unknown_format("lines must be a non-empty list of {line, in, out}")
    else:
        lines = [value]
    out: dict[str, CounterTotals] = {}
    for entry in lines:
        if not isinstance(entry, dict) or not {"line", "in", "out"} <= entry.keys():
            raise unknown_format("each counting line is an object with line, in and out")
        line = check_line(entry["line"])
        if line in out:
            raise t.BadMessage("bad_shape", "a counting line appears twice in one report", field="line")
        out[line] = CounterTotals(topic, line, _total("in", entry["in"]), _total("out", entry["out"]), at)
    return tuple(out.values())


def _total(name: str, value: Any) -> int:
    if type(value) is not int or not 0 <= value <= t.MAX_INT:
        raise t.BadMessage("bad_shape", "must be a whole number of people >= 0", field=name)
    return value


def _time(value: Any) -> datetime:
    if value is None:
        raise t.BadMessage("bad_shape", "is required", field="time")
    if isinstance(value, str):
        try:
            return t.parse_ts(value)
        except t.BadMessage as e:
            raise t.BadMessage("bad_shape", e.detail, field="time") from None
    if type(value) in (int, float) and math.isfinite(value) and 0 <= value < 253402300800:  # before year 10000
        return datetime.fromtimestamp(value, tz=timezone.utc)
    raise t.BadMessage("bad_shape", "must be RFC 3339 with an offset, or Unix seconds", field="time")


@dataclass(frozen=True)
class CounterMark:
    """The last reading applied for a door sensor: its boot, seq and totals, and its effective time (None: unknown)."""

    boot: int
    seq: int
    in_total: int
    out_total: int
    at: datetime | None


def door_count(station: str, sensor: str, previous: CounterMark | None, totals: CounterTotals,
               received_at: datetime, *, skew_tolerance: timedelta = t.DEFAULT_SKEW_TOLERANCE
               ) -> tuple[t.DoorCount, datetime] | None:
    """The contract's DoorCount for one line's totals and its effective time, or None when the reading is stale.

    Effective time: the device's, or the receive time when the device's is
    skewed (telemetry.is_skewed). Stale: not later than ``previous.at``. Falling
    totals: a new boot (boot + 1, seq 1). No previous reading: a baseline (boot 1, seq 2).
    """
    require_aware(received_at)
    skewed = t.is_skewed(totals.device_ts, received_at, skew_tolerance=skew_tolerance)
    at = received_at if skewed else totals.device_ts
    if previous is None:
        boot, seq = 1, 2
    elif previous.at is not None and at <= previous.at:
        return None
    elif totals.in_total < previous.in_total or totals.out_total < previous.out_total:
        boot, seq = previous.boot + 1, 1
    else:
        boot, seq = previous.boot, previous.seq + 1
    event = t.DoorCount(station=station, device_id=sensor, device_ts=totals.device_ts, boot=boot, seq=seq,
                        in_total=totals.in_total, out_total=totals.out_total, received_at=received_at,
                        skewed=skewed)
    return event, at
