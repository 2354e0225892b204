"""Device adapters: pure translators from vendors' MQTT formats into the service's events.

Real door hardware speaks its vendor's format, not the contract in
``chargeapp.telemetry``. Each adapter here is a module of pure functions (no
paho, no database, no clock: the receive time is passed in) behind one small
interface, chosen per device by the registry (``DoorContact.adapter``,
``DoorSensor.adapter``):

- ``topics(address)``: the vendor topics one device publishes on (the bridge
  subscribes to them; ``chargeapp mqtt-credentials`` lets the device write them);
- ``translate(topic, payload, received_at)``: the events one vendor message
  carries, or ``BadMessage`` with a reason. ``unknown_format`` means a payload
  on a mapped topic that is not this vendor's format (another device's JSON, a
  firmware that changed its shape); ``not_json``, ``too_large``, ``bad_encoding``
  and ``bad_shape`` mean what they mean for the contract.

Events: ``ContactState`` (a door contact open or closed, at the receive time)
and ``CounterTotals`` (a people counter's cumulative totals of one counting
line, at the device's time), which ``people_counter.door_count`` turns into the
contract's ``DoorCount`` so the occupancy rules apply unchanged.

Adapters: ``zigbee2mqtt`` (door contacts), ``shelly_gen2`` (a Shelly Gen2
input wired to a door's reed contact) and ``people_counter`` (a directional
people counter's per-line totals). docs/bridge.md, "Device adapters".
"""
from __future__ import annotations

from types import ModuleType

from chargeapp.adapters import people_counter, shelly_gen2, zigbee2mqtt
from chargeapp.adapters.events import ContactState, CounterTotals, unknown_format

ADAPTERS: dict[str, ModuleType] = {
    zigbee2mqtt.NAME: zigbee2mqtt,
    shelly_gen2.NAME: shelly_gen2,
    people_counter.NAME: people_counter,
}
CONTACT_ADAPTERS = (zigbee2mqtt.NAME, shelly_gen2.NAME)  # for DoorContact.adapter
COUNTER_ADAPTERS = (people_counter.NAME,)  # for DoorSensor.adapter (None: the sensor speaks the contract)

__all__ = ["ADAPTERS", "CONTACT_ADAPTERS", "COUNTER_ADAPTERS", "ContactState", "CounterTotals", "adapter",
           "unknown_format"]


def adapter(name: str) -> ModuleType:
    """The adapter module called ``name``; raises KeyError for a name the registry should never hold."""
    return ADAPTERS[name]
