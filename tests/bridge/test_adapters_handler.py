"""Vendor devices through the bridge's handler (no broker): registry mapping, contact state, counter occupancy, dead letters."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from chargeapp.db import models as m
from chargeapp.services import doors, lounge, registry
from mqtt_bridge.handler import APPLIED, DEAD_LETTER, IGNORED, ApplyContext, apply_message
from mqtt_bridge.vendor import load_routes, vendor_subscriptions
from tests.bridge.wire import raw
from tests.conftest import T0

pytestmark = pytest.mark.integration

SHELLY = "shellyplusi4-a8032ab636ec"
COUNTER = "counters/PC-0042/lines"
NOW = T0 + timedelta(seconds=2)


def apply(session, *messages, now=NOW):
    ctx = ApplyContext()
    out = [apply_message(session, msg, now, context=ctx) for msg in messages]
    session.commit()
    return out


def report(lines, at, **extra) -> bytes:
    return json.dumps({"device_id": "PC-0042", "time": at.isoformat(), **extra,
                       "lines": [{"line": n, "in": i, "out": o} for n, i, o in lines]}).encode()


def zone_count(session, station, code):
    return next(z["count"] for z in lounge.zone_view(session, station, T0 + timedelta(hours=1)) if z["code"] == code)


def letters(session):
    return session.execute(select(m.DeadLetter.reason, m.DeadLetter.station_code, m.DeadLetter.topic)
                           .order_by(m.DeadLetter.id)).all()


# --------------------------------------------------------------------------- Shelly Gen2 contacts


@pytest.fixture
def shelly_door(session, station):
    door = registry.map_door_contact(session, station_code="s1", address=f"{SHELLY}/input:0", adapter="shelly_gen2",
                                     name="Lounge door")
    session.commit()
    return door


def test_a_shelly_input_status_opens_and_closes_the_mapped_door(session, station, shelly_door):
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=9)
    outs = apply(session, raw(f"{SHELLY}/status/input:0", b'{"id":0,"state":false}', received_at=t1))
    assert [(o.status, o.kind, o.station) for o in outs] == [(APPLIED, "shelly_gen2", "s1")]
    assert shelly_door.is_open and shelly_door.open_since == t1
    assert doors.doors_left_open(session, station, t2) == [shelly_door]
    rpc = {"src": SHELLY, "dst": f"{SHELLY}/events", "method": "NotifyStatus",
           "params": {"ts": 1795329600.5, "input:0": {"id": 0, "state": True}}}
    apply(session, raw(f"{SHELLY}/events/rpc", json.dumps(rpc).encode(), received_at=t2))
    assert not shelly_door.is_open and shelly_door.state_at == t2


def test_an_inverted_shelly_contact_reads_the_other_way_round(session, station, shelly_door):
    registry.map_door_contact(session, station_code="s1", address=f"{SHELLY}/input:0", adapter="shelly_gen2",
                              inverted=True)
    session.commit()
    apply(session, raw(f"{SHELLY}/status/input:0", b'{"id":0,"state":true}'))
    assert shelly_door.is_open


def test_shelly_messages_without_a_mapped_input_state_are_ignored(session, station, shelly_door):
    event = {"src": SHELLY, "method": "NotifyEvent", "params": {"ts": 1.0, "events": [{"component": "input:0"}]}}
    other = {"src": SHELLY, "method": "NotifyStatus", "params": {"ts": 1.0, "input:1": {"id": 1, "state": False}}}
    outs = apply(session, raw(f"{SHELLY}/events/rpc", json.dumps(event).encode()),
                 raw(f"{SHELLY}/events/rpc", json.dumps(other).encode()))
    assert [(o.status, o.reason) for o in outs] == [(IGNORED, "no_contact_state"), (IGNORED, "unmapped_input")]
    assert shelly_door.is_open is None


def test_an_unknown_format_on_a_shelly_topic_is_dead_lettered_with_the_station(session, station, shelly_door):
    [out] = apply(session, raw(f"{SHELLY}/status/input:0", b'{"id":0,"state":null}'))
    assert (out.status, out.reason, out.kind) == (DEAD_LETTER, "unknown_format", "shelly_gen2")
    assert "button" in out.detail
    assert letters(session) == [("unknown_format", "s1", f"{SHELLY}/status/input:0")]


def test_an_unmapped_vendor_topic_is_not_read_as_a_vendor_device(session, station):
    [out] = apply(session, raw(f"{SHELLY}/status/input:0", b'{"id":0,"state":true}'))
    assert (out.status, out.reason) == (DEAD_LETTER, "bad_topic")


def test_zigbee2mqtt_contacts_are_the_zigbee2mqtt_adapter_and_unmapped_names_stay_unknown(session, station):
    registry.map_door_contact(session, station_code="s1", address="lounge_door")
    session.commit()
    outs = apply(session, raw("zigbee2mqtt/lounge_door", b'{"contact": false}'),
                 raw("zigbee2mqtt/tea_door", b'{"contact": false}'),
                 raw("zigbee2mqtt/lounge_door", b'{"temperature": 21.5}'))
    assert [(o.status, o.reason) for o in outs] == [(APPLIED, None), (DEAD_LETTER, "unknown_device"),
                                                   (DEAD_LETTER, "unknown_format")]
    assert session.scalar(select(m.DoorContact.is_open).where(m.DoorContact.friendly_name == "lounge_door"))


def test_a_shelly_device_is_not_reachable_through_a_zigbee2mqtt_topic(session, station):
    registry.map_door_contact(session, station_code="s1", address=f"{SHELLY}/input:0", adapter="shelly_gen2")
    session.commit()
    [out] = apply(session, raw(f"zigbee2mqtt/{SHELLY}", b'{"contact": false}'))
    assert (out.status, out.reason) == (DEAD_LETTER, "unknown_device")
    assert session.scalar(select(m.DoorContact.is_open)) is None


# --------------------------------------------------------------------------- people counter


@pytest.fixture
def counter(session, station):
    registry.map_counting_line(session, station_code="s1", sensor_code="D1", topic=COUNTER, line="L1")
    registry.map_counting_line(session, station_code="s1", sensor_code="D2", topic=COUNTER, line="L2")
    session.commit()


def test_counter_totals_move_people_like_a_contract_door_counter(session, station, counter):
    t0 = T0 - timedelta(minutes=30)
    outs = apply(session,
                 raw(COUNTER, report([("L1", 1234, 1200), ("L2", 88, 90), ("L9", 5, 5)], t0)),  # baseline
                 raw(COUNTER, report([("L1", 1240, 1201), ("L2", 88, 90)], t0 + timedelta(minutes=1))),
                 raw(COUNTER, report([("L1", 1240, 1201), ("L2", 90, 90)], t0 + timedelta(minutes=2))))
    assert [(o.status, o.kind) for o in outs] == [(APPLIED, "people_counter")] * 3
    # D1 counts into the hall from outside: 6 in, 1 out; D2 from the hall into the tea room: 2 in
    assert (zone_count(session, station, "hall"), zone_count(session, station, "tea")) == (3, 2)
    d1 = session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D1"))
    assert (d1.boot, d1.seq, d1.in_total, d1.out_total, d1.vendor_ts) == (1, 4, 1240, 1201, t0 + timedelta(minutes=2))
    assert session.scalar(select(func.count()).select_from(m.AppliedMessage)) == 6  # one per line and report


def test_a_counter_reboot_and_a_redelivered_report_neither_lose_nor_double_anyone(session, station, counter):
    t0 = T0 - timedelta(minutes=30)
    first = raw(COUNTER, report([("L1", 100, 90)], t0))
    second = raw(COUNTER, report([("L1", 104, 90)], t0 + timedelta(minutes=1)))
    outs = apply(session, first, second, second,  # redelivered
                 raw(COUNTER, report([("L1", 3, 1)], t0 + timedelta(minutes=5))),  # rebooted: totals fell
                 first)  # a very old copy arrives last
    assert [o.status for o in outs] == [APPLIED, APPLIED, IGNORED, APPLIED, IGNORED]
    assert outs[2].reason == "stale"
    assert zone_count(session, station, "hall") == 4 + 3 - 1
    d1 = session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D1"))
    assert (d1.boot, d1.seq) == (2, 1)


def test_a_report_of_lines_nobody_mapped_and_an_unknown_format_are_dead_lettered(session, station, counter):
    outs = apply(session, raw(COUNTER, report([("L7", 1, 1)], T0)),
                 raw(COUNTER, b'{"device_id": "PC-0042", "time": "2026-11-22T14:00:00+08:00", "occupancy": 12}'))
    assert [(o.status, o.reason) for o in outs] == [(DEAD_LETTER, "unknown_device"), (DEAD_LETTER, "unknown_format")]
    assert [(r, s) for r, s, _ in letters(session)] == [("unknown_device", "s1"), ("unknown_format", "s1")]


def test_a_batch_rolled_back_and_applied_again_applies_the_report_once(session, station, counter):
    msg = raw(COUNTER, report([("L1", 10, 0)], T0))
    ctx = ApplyContext()
    assert apply_message(session, msg, NOW, context=ctx).status == APPLIED
    session.rollback()  # the batch failed at commit: the worker applies it again
    assert apply_message(session, msg, NOW, context=ApplyContext()).status == APPLIED
    session.commit()
    assert session.scalar(select(func.count()).select_from(m.AppliedMessage)) == 1
    assert session.scalar(select(m.DoorSensor.vendor_ts).where(m.DoorSensor.code == "D1")) == T0


# --------------------------------------------------------------------------- registry and subscriptions


def test_the_registry_refuses_addresses_no_topic_can_hold_and_lines_mapped_twice(session, station, counter):
    with pytest.raises(registry.InvalidDeviceAddress):
        registry.map_door_contact(session, station_code="s1", address=SHELLY, adapter="shelly_gen2")
    with pytest.raises(registry.InvalidDeviceAddress):
        registry.map_door_contact(session, station_code="s1", address="x", adapter="people_counter")
    with pytest.raises(registry.InvalidDeviceAddress):
        registry.map_counting_line(session, station_code="s1", sensor_code="D1", topic="a/#", line="L1")
    with pytest.raises(registry.DeviceAddressTaken):
        registry.map_counting_line(session, station_code="s1", sensor_code="D2", topic=COUNTER, line="L1")
    sensor = registry.map_counting_line(session, station_code="s1", sensor_code="D2", topic=COUNTER, line="L2",
                                        adapter=None)
    assert (sensor.adapter, sensor.vendor_topic) == (None, None)


def test_the_bridge_subscribes_to_the_mapped_vendor_topics_of_its_stations(session, station, counter, shelly_door):
    registry.map_door_contact(session, station_code="s1", address="lounge_door")
    session.commit()
    assert vendor_subscriptions(session) == (COUNTER, f"{SHELLY}/events/rpc", f"{SHELLY}/status/input:0")
    assert vendor_subscriptions(session, "s2") == ()
    routes = load_routes(session)
    assert routes.topics["zigbee2mqtt/lounge_door"] == ("zigbee2mqtt", "s1")
    assert routes.lines == {(COUNTER, "L1"): ("s1", "D1"), (COUNTER, "L2"): ("s1", "D2")}


def test_map_device_command_maps_contacts_and_counting_lines_and_refuses_bad_addresses(app, session, station, runner):
    result = runner.invoke(args=["map-device", "--station", "s1", "--adapter", "shelly_gen2",
                                 "--address", f"{SHELLY}/input:0", "--inverted", "--name", "Lounge door"])
    assert result.exit_code == 0, result.output
    assert f"{SHELLY}/status/input:0, {SHELLY}/events/rpc" in result.output
    result = runner.invoke(args=["map-device", "--station", "s1", "--adapter", "people_counter", "--address", COUNTER,
                                 "--sensor", "D1", "--line", "L1"])
    assert result.exit_code == 0, result.output
    session.expire_all()
    door = session.scalar(select(m.DoorContact))
    assert (door.adapter, door.friendly_name, door.inverted, door.name) == ("shelly_gen2", f"{SHELLY}/input:0", True,
                                                                            "Lounge door")
    sensor = session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D1"))
    assert (sensor.adapter, sensor.vendor_topic, sensor.vendor_line) == ("people_counter", COUNTER, "L1")
    for args in (["--adapter", "shelly_gen2", "--address", SHELLY],
                 ["--adapter", "people_counter", "--address", COUNTER],
                 ["--adapter", "people_counter", "--address", "a/+", "--sensor", "D2", "--line", "L2"],
                 ["--adapter", "zigbee2mqtt", "--address", "door", "--line", "L1"]):
        result = runner.invoke(args=["map-device", "--station", "s1", *args])
        assert result.exit_code != 0 and "Traceback" not in result.output, args
