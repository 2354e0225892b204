"""Vendor devices in the bridge: a message on a mapped device's vendor topic goes through its adapter (chargeapp.adapters).

``apply_vendor_message`` is the handler's one hook: it answers for every topic
the registry maps to an adapter, and for every ``zigbee2mqtt/<name>`` (an
unmapped name is ``unknown_device``); for any other topic it returns None and
the handler goes on with the contract. Decisions (docs/bridge.md, "Device adapters"):

- The routes (vendor topic -> adapter, station; contact address -> station;
  counter topic and line -> door sensor) are built from the registry with the
  handler's registry snapshot and reloaded with it (at most every 30 s, and
  once per batch when a vendor topic is not in them).
- An adapter's ``BadMessage`` is dead-lettered with its reason (``unknown_format``
  for a payload that is not the adapter's format) and the device's station.
- Door contacts are state at the receive time (``doors.record_door_contact``):
  applying one twice is harmless. States of inputs the registry does not map
  (another input of the same Shelly) are left alone; a message with no contact
  state (a Shelly NotifyEvent, another component's status) is ignored.
- Counter totals become the contract's ``DoorCount`` (``people_counter.door_count``
  against the sensor's last reading, its row locked) and are applied exactly as
  a contract door count is: ``applied_messages``, the device's sequence, then
  ``lounge.record_door_count``. Stale readings are ignored (``why="stale"``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp import adapters
from chargeapp import telemetry as t
from chargeapp.adapters import people_counter
from chargeapp.db import models as m
from chargeapp.services import doors
from mqtt_bridge.client import Received

log = logging.getLogger("mqtt_bridge.vendor")


@dataclass
class VendorRoutes:
    """Which vendor topics the registry maps, to which adapter and station, and the devices behind them."""

    topics: dict[str, tuple[str, str]] = field(default_factory=dict)  # topic -> (adapter, station code)
    contacts: dict[tuple[str, str], str] = field(default_factory=dict)  # (adapter, address) -> station code
    lines: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (topic, line) -> (station, sensor)


def load_routes(session: Session, station: str | None = None) -> VendorRoutes:
    """The vendor routes of the registry (one station's, or all); a device whose address its adapter refuses is logged and left out."""
    routes = VendorRoutes()

    def add(adapter_name: str, address: str, station_code: str) -> bool:
        try:
            topics = adapters.adapter(adapter_name).topics(address)
        except (KeyError, t.BadMessage) as exc:
            log.warning("registry: %s device %r has no usable topic (%s); its messages are not read",
                        adapter_name, address[:80], exc)
            return False
        for topic in topics:
            routed = routes.topics.setdefault(topic, (adapter_name, station_code))
            if routed[0] != adapter_name:
                log.warning("registry: topic %r is mapped to a %s device and a %s device; read as %s",
                            topic[:200], routed[0], adapter_name, routed[0])
        return True

    q = select(m.Station.code, m.DoorContact.adapter, m.DoorContact.friendly_name).join(
        m.Station, m.DoorContact.station_id == m.Station.id)
    if station is not None:
        q = q.where(m.Station.code == station)
    for station_code, adapter_name, address in session.execute(q):
        if add(adapter_name, address, station_code):
            routes.contacts[(adapter_name, address)] = station_code
    q = select(m.Station.code, m.DoorSensor.code, m.DoorSensor.adapter, m.DoorSensor.vendor_topic,
               m.DoorSensor.vendor_line).join(m.Station, m.DoorSensor.station_id == m.Station.id).where(
        m.DoorSensor.adapter.is_not(None))
    if station is not None:
        q = q.where(m.Station.code == station)
    for station_code, sensor, adapter_name, topic, line in session.execute(q):
        if topic and line and add(adapter_name, topic, station_code):
            routes.lines[(topic, line)] = (station_code, sensor)
    return routes


def vendor_subscriptions(session: Session, station: str | None = None) -> tuple[str, ...]:
    """The vendor topics the bridge subscribes to besides the contract's (``zigbee2mqtt/+`` already covers zigbee2mqtt)."""
    return tuple(sorted(topic for topic in load_routes(session, station).topics
                        if not t.topic_matches(f"{t.ZIGBEE_ROOT}/+", topic)))


def _routes(session: Session, ctx, reload: bool = False) -> VendorRoutes:
    snap = ctx.registry.reload(session) if reload else ctx.registry.snapshot(session)
    routes = getattr(snap, "vendor_routes", None)
    if routes is None:
        routes = snap.vendor_routes = load_routes(session)
    return routes


def _is_zigbee(topic: str) -> bool:
    if not topic.startswith(t.ZIGBEE_ROOT + "/"):
        return False  # every contract message passes here: no second topic parse for them
    try:
        return t.parse_topic(topic).kind is t.TopicKind.ZIGBEE
    except t.BadMessage:
        return False


def apply_vendor_message(session: Session, received: Received, now: datetime, ctx):
    """Apply a message on a vendor topic through its adapter and return the Outcome; None when the topic is not a vendor topic."""
    from mqtt_bridge import handler as h

    topic = received.topic
    routes = _routes(session, ctx)
    if topic not in routes.topics and not topic.startswith(t.STATION_ROOT + "/") and not ctx._reloaded:
        # A device mapped since the last load: look again, once per batch (the flag ApplyContext.knows uses).
        ctx._reloaded = True
        routes = _routes(session, ctx, reload=True)
    if topic not in routes.topics:
        if _is_zigbee(topic):
            return h.dead_letter(session, received, "unknown_device",
                                 f"no door contact with zigbee2mqtt friendly name {topic.split('/', 1)[1][:64]!r}")
        return None
    adapter_name, station = routes.topics[topic]
    outcome = h.Outcome(h.APPLIED, topic, adapter_name, station=station, device=f"{adapter_name}:{topic}",
                        retained=received.retain)
    try:
        events = adapters.adapter(adapter_name).translate(topic, received.payload, received.received_at)
    except t.BadMessage as exc:
        detail = f"{adapter_name}: {exc.detail}" + (f" (field {exc.field!r})" if exc.field else "")
        return _dead_letter(session, received, exc.reason, detail, outcome, h)
    if adapter_name in adapters.CONTACT_ADAPTERS:
        return _apply_contacts(session, received, routes, adapter_name, events, now, outcome, h)
    return _apply_counter(session, received, routes, events, now, ctx, outcome, h)


def _dead_letter(session, received, reason, detail, outcome, h):
    # The ref only carries the station into the dead-letter row (managers list dead letters per station).
    carrier = t.TopicRef(t.TopicKind.ZIGBEE, outcome.station, received.topic)
    return replace(h.dead_letter(session, received, reason, detail, ref=carrier), kind=outcome.kind,
                   device=outcome.device)


def _apply_contacts(session, received, routes, adapter_name, events, now, outcome, h):
    mapped = [e for e in events if (adapter_name, e.address) in routes.contacts]
    if not mapped:
        return replace(outcome, status=h.IGNORED, reason="no_contact_state" if not events else "unmapped_input")
    # For the handler's refusal path only: carries the station into a dead letter.
    ref = t.TopicRef(t.TopicKind.ZIGBEE, outcome.station, mapped[0].address)
    for event in mapped:
        result = h._apply_state(session, received, ref, now, lambda e=event: doors.record_door_contact(
            session, friendly_name=e.address, contact=e.contact, at=e.at, battery=e.battery,
            linkquality=e.linkquality))
        if result.status != h.APPLIED:
            return replace(result, kind=adapter_name, station=outcome.station, device=outcome.device)
    return replace(outcome, device=f"{adapter_name}:{mapped[-1].address}")


def _apply_counter(session, received, routes, events, now, ctx, outcome, h):
    applied = []
    for totals in events:
        target = routes.lines.get((totals.address, totals.line))
        if target is None:
            continue  # a counting line the registry does not map (a staff door, say)
        station, code = target
        # Locked and read afresh (the batch may hold this row pinned from before another worker's commit).
        sensor = session.scalar(select(m.DoorSensor).join(m.Station, m.DoorSensor.station_id == m.Station.id)
                                .where(m.Station.code == station, m.DoorSensor.code == code).with_for_update()
                                .execution_options(populate_existing=True))
        previous = None
        if sensor.boot is not None:
            previous = people_counter.CounterMark(sensor.boot, sensor.seq or 0, sensor.in_total or 0,
                                                  sensor.out_total or 0, sensor.vendor_ts)
        step = people_counter.door_count(station, code, previous, totals, received.received_at,
                                         skew_tolerance=ctx.skew_tolerance(session, station))
        if step is None:
            applied.append(replace(outcome, status=h.IGNORED, reason="stale", station=station))
            continue
        event, at = step
        ref = t.TopicRef(t.TopicKind.DOOR_COUNT, station, code)
        result = h._apply_device_message(session, received, ref, event, now, ctx)
        if result.status == h.APPLIED:
            sensor.vendor_ts = at
            session.flush()
        applied.append(replace(result, kind=outcome.kind))
    if not applied:
        return _dead_letter(session, received, "unknown_device",
                            "no counting line of this report is mapped to a door sensor: "
                            + ", ".join(sorted(e.line for e in events))[:200], outcome, h)
    # One outcome per message: a refusal if any line was refused, else the first line applied, else ignored.
    for status in (h.DEAD_LETTER, h.APPLIED, h.DUPLICATE):
        for result in applied:
            if result.status == status:
                return result
    return applied[0]
