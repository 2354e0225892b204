"""What the adapters translate vendor messages into, and helpers they share (pure, stdlib and telemetry only)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chargeapp import telemetry as t


@dataclass(frozen=True)
class ContactState:
    """A door contact's state: ``contact`` True means the circuit is closed (door shut, unless the door is inverted).

    ``address`` is the registry's address of the contact (``DoorContact.friendly_name``);
    ``at`` is the receive time: contacts are state, their devices' clocks are not used.
    """

    address: str
    contact: bool
    at: datetime
    battery: float | None = None
    linkquality: int | None = None


@dataclass(frozen=True)
class CounterTotals:
    """A people counter's cumulative totals of one counting line (people), at the device's time ``device_ts``.

    ``address`` is the counter's topic and ``line`` the counting line's name; the
    registry maps (topic, line) to one door sensor.
    """

    address: str
    line: str
    in_total: int
    out_total: int
    device_ts: datetime


RESERVED_ROOTS = (t.STATION_ROOT, t.ZIGBEE_ROOT)  # topic trees a vendor device's own topics must stay out of


def outside_reserved_roots(topic: str) -> bool:
    """True when ``topic`` is in neither the contract's ``stations/`` tree nor zigbee2mqtt's."""
    first = topic.split("/", 1)[0]
    return first not in RESERVED_ROOTS


def unknown_format(detail: str) -> t.BadMessage:
    """The BadMessage of a payload its device's adapter does not recognise."""
    return t.BadMessage("unknown_format", detail)


def load_json(payload: bytes) -> Any:
    """The JSON value of a vendor payload, with the contract's limits and reasons (too_large, bad_encoding, not_json)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError("payload must be bytes")
    raw = bytes(payload)
    if len(raw) > t.MAX_PAYLOAD_BYTES:
        raise t.BadMessage("too_large", f"{len(raw)} bytes, the limit is {t.MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise t.BadMessage("bad_encoding", f"not UTF-8 (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        raise t.BadMessage("not_json", str(e)[:120]) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def require_aware(received_at: datetime) -> None:
    if not isinstance(received_at, datetime) or received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
