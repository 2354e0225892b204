"""Shelly Gen2 (Plus/Pro) inputs wired to a door's reed contact, over Shelly's own MQTT.

A Gen2 device publishes under its MQTT ``topic_prefix`` (default its device id,
e.g. ``shellyplusi4-a8032ab636ec``). Two documented forms carry an input's state
(Shelly Gen2 API, "MQTT" component and "Notifications"), and both are read:

- ``<prefix>/status/input:<id>``: the component's whole status, published when
  "Generic status update over MQTT" (``status_ntf``) is on:
  ``{"id": 0, "state": true}``;
- ``<prefix>/events/rpc``: RPC notifications (``rpc_ntf``, on by default):
  ``{"src": "...", "dst": "...", "method": "NotifyStatus", "params": {"ts": 1732256405.12,
  "input:0": {"id": 0, "state": false}}}``. ``NotifyFullStatus`` reads the same;
  ``NotifyEvent`` frames and status changes of other components carry no
  contact state and translate to nothing.

The input must be of type ``switch`` (``state`` true or false): ``true`` means
the circuit is closed, i.e. a normally-open reed switch held shut by the door's
magnet, door closed (the registry's ``inverted`` flips it, as for zigbee2mqtt).
A ``button`` input reports ``state: null``; that is ``unknown_format`` on the
status topic. The registry address of a contact is ``<prefix>/input:<id>``.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from chargeapp import telemetry as t
from chargeapp.adapters.events import ContactState, load_json, outside_reserved_roots, require_aware, unknown_format

NAME = "shelly_gen2"
NOTIFY_METHODS = ("NotifyStatus", "NotifyFullStatus")
_COMPONENT = re.compile(r"input:(0|[1-9][0-9]?)")
# A topic prefix: levels without wildcards, control characters or an empty level; not a $SYS topic.
_PREFIX = re.compile(r"(?!\$)[^/+#\x00-\x1f\x7f]{1,64}(?:/[^/+#\x00-\x1f\x7f]{1,64}){0,3}")
_ADDRESS = re.compile(rf"({_PREFIX.pattern})/(input:(?:0|[1-9][0-9]?))")


def split_address(address: str) -> tuple[str, str]:
    """(topic prefix, component) of a registry address ``<prefix>/input:<id>`` (the prefix not under ``stations/``
    or ``zigbee2mqtt/``); raises BadMessage bad_topic."""
    m = _ADDRESS.fullmatch(address) if isinstance(address, str) else None
    if m is None or not outside_reserved_roots(m.group(1)):
        raise t.BadMessage("bad_topic", f"a Shelly Gen2 contact is <topic prefix>/input:<id>: {str(address)[:80]!r}")
    return m.group(1), m.group(2)


def topics(address: str) -> tuple[str, ...]:
    """The two topics that carry one input's state: ``<prefix>/status/input:<id>`` and ``<prefix>/events/rpc``."""
    prefix, component = split_address(address)
    return (f"{prefix}/status/{component}", f"{prefix}/events/rpc")


def translate(topic: str, payload: bytes, received_at: datetime) -> tuple[ContactState, ...]:
    """The input states a Shelly Gen2 status or RPC notification carries, at the receive time; raises BadMessage."""
    require_aware(received_at)
    prefix, sep, leaf = topic.rpartition("/") if isinstance(topic, str) else ("", "", "")
    if sep and leaf == "rpc" and prefix.endswith("/events"):
        return _notification(prefix[: -len("/events")], load_json(payload), received_at)
    if sep and _COMPONENT.fullmatch(leaf) and prefix.endswith("/status"):
        return _status(prefix[: -len("/status")], leaf, load_json(payload), received_at)
    raise t.BadMessage("bad_topic", f"not a Shelly Gen2 input status or RPC notification topic: {str(topic)[:200]!r}")


def _status(prefix: str, component: str, value: Any, received_at: datetime) -> tuple[ContactState, ...]:
    if not isinstance(value, dict) or "state" not in value:
        raise unknown_format(f"Shelly Gen2 {component} status expected: an object with state")
    state = value["state"]
    if state is None:
        raise unknown_format(f"{component} reports state null: it is a button input, not a switch")
    if type(state) is not bool:
        raise t.BadMessage("bad_shape", "must be true or false", field="state")
    if "id" in value and value["id"] != int(component.split(":")[1]):
        raise t.BadMessage("bad_shape", "differs from the input in the topic", field="id")
    return (ContactState(f"{prefix}/{component}", state, received_at),)


def _notification(prefix: str, value: Any, received_at: datetime) -> tuple[ContactState, ...]:
    if not isinstance(value, dict) or not isinstance(value.get("method"), str) or not isinstance(
            value.get("params", {}), dict):
        raise unknown_format("Shelly Gen2 RPC notification expected: an object with method and params")
    if value["method"] not in NOTIFY_METHODS:
        return ()  # NotifyEvent (button pushes, config changes...): no contact state
    states = []
    for key, status in sorted(value.get("params", {}).items()):
        if not _COMPONENT.fullmatch(key) or not isinstance(status, dict):
            continue
        state = status.get("state")
        if state is None:
            continue  # a partial status without the state, or a button input
        if type(state) is not bool:
            raise t.BadMessage("bad_shape", f"{key}.state must be true or false", field="state")
        states.append(ContactState(f"{prefix}/{key}", state, received_at))
    return tuple(states)
