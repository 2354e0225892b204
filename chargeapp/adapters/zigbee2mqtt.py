"""zigbee2mqtt door contact sensors: ``zigbee2mqtt/<friendly name>`` with ``{"contact": true, ...}`` (true = CLOSED).

The payload is the contract's own zigbee2mqtt form (``telemetry.ZigbeeContact``,
spec/telemetry.md), so this adapter reads it with ``telemetry.parse_message``.
A JSON value that is not an object with a ``contact`` key (a temperature
sensor's state, zigbee2mqtt's legacy plain payloads) is ``unknown_format``; a
``contact`` that is not true or false is ``bad_shape``, as in the contract.
"""
from __future__ import annotations

from datetime import datetime

from chargeapp import telemetry as t
from chargeapp.adapters.events import ContactState, load_json, require_aware, unknown_format

NAME = "zigbee2mqtt"


def topics(address: str) -> tuple[str, ...]:
    """The topic of one contact sensor; ``address`` is its zigbee2mqtt friendly name (one topic level)."""
    return (t.zigbee_topic(address),)


def translate(topic: str, payload: bytes, received_at: datetime) -> tuple[ContactState, ...]:
    """The contact state a zigbee2mqtt state message carries, at the receive time; raises BadMessage."""
    require_aware(received_at)
    ref = t.parse_topic(topic)
    if ref.kind is not t.TopicKind.ZIGBEE:
        raise t.BadMessage("bad_topic", f"not a zigbee2mqtt device topic: {topic[:200]!r}")
    value = load_json(payload)
    if not isinstance(value, dict) or "contact" not in value:
        shown = "an object without contact" if isinstance(value, dict) else f"a JSON {type(value).__name__}"
        raise unknown_format(f"zigbee2mqtt contact sensor state expected, got {shown}")
    msg = t.parse_message(topic, payload, received_at)
    return (ContactState(msg.friendly_name, msg.contact, received_at, battery=msg.battery,
                         linkquality=msg.linkquality),)
