"""Device adapters: vendor payloads (golden files) into contact states and counter totals, and counter totals into DoorCount."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeapp import adapters
from chargeapp import telemetry as t
from chargeapp.adapters import people_counter, shelly_gen2, zigbee2mqtt
from chargeapp.adapters.events import ContactState, CounterTotals
from chargeapp.domain import occupancy as occ

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "adapters"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))
RECEIVED = datetime.fromisoformat(CASES["received_at"])
SHELLY = "shellyplusi4-a8032ab636ec"
COUNTER = "counters/PC-0042/lines"


def payload(case) -> bytes:
    return (GOLDEN / case["file"]).read_bytes()


def as_dict(event) -> dict:
    if isinstance(event, ContactState):
        return {"address": event.address, "contact": event.contact, "battery": event.battery,
                "linkquality": event.linkquality}
    return {"address": event.address, "line": event.line, "in_total": event.in_total, "out_total": event.out_total,
            "device_ts": event.device_ts.isoformat()}


# --------------------------------------------------------------------------- golden payloads


@pytest.mark.parametrize("case", CASES["good"], ids=[c["file"] for c in CASES["good"]])
def test_every_good_vendor_payload_translates_into_its_golden_events(case):
    events = adapters.adapter(case["adapter"]).translate(case["topic"], payload(case), RECEIVED)
    assert [as_dict(e) for e in events] == case["events"]
    assert all(e.at == RECEIVED for e in events if isinstance(e, ContactState))  # contacts are state at receive time


@pytest.mark.parametrize("case", CASES["bad"], ids=[c["file"] for c in CASES["bad"]])
def test_every_bad_vendor_payload_is_refused_with_its_reason(case):
    with pytest.raises(t.BadMessage) as e:
        adapters.adapter(case["adapter"]).translate(case["topic"], payload(case), RECEIVED)
    assert (e.value.reason, e.value.field) == (case["reason"], case["field"])


def test_every_golden_file_is_listed_and_every_adapter_has_good_and_unknown_format_examples():
    listed = {GOLDEN / c["file"] for c in CASES["good"] + CASES["bad"]}
    on_disk = {f for d in GOLDEN.iterdir() if d.is_dir() for f in d.iterdir()}
    assert listed == on_disk
    for name in adapters.ADAPTERS:
        assert any(c["adapter"] == name and c["events"] for c in CASES["good"]), name
        assert any(c["adapter"] == name and c["reason"] == "unknown_format" for c in CASES["bad"]), name


def test_unknown_format_is_a_dead_letter_reason_of_the_contract_vocabulary():
    assert "unknown_format" in t.REASONS
    assert adapters.unknown_format("x").reason == "unknown_format"


# --------------------------------------------------------------------------- one interface, chosen per device


def test_every_adapter_has_the_same_small_interface():
    assert set(adapters.ADAPTERS) == {"zigbee2mqtt", "shelly_gen2", "people_counter"}
    for name, module in adapters.ADAPTERS.items():
        assert module.NAME == name and callable(module.topics) and callable(module.translate)
    assert set(adapters.CONTACT_ADAPTERS) | set(adapters.COUNTER_ADAPTERS) == set(adapters.ADAPTERS)


def test_each_adapter_names_the_vendor_topics_of_one_device():
    assert zigbee2mqtt.topics("lounge door") == ("zigbee2mqtt/lounge door",)
    assert shelly_gen2.topics(f"{SHELLY}/input:0") == (f"{SHELLY}/status/input:0", f"{SHELLY}/events/rpc")
    assert shelly_gen2.topics("site/b1/shelly-2/input:3") == ("site/b1/shelly-2/status/input:3", "site/b1/shelly-2/events/rpc")
    assert people_counter.topics(COUNTER) == (COUNTER,)


@pytest.mark.parametrize("adapter, address", [
    ("zigbee2mqtt", "a/b"), ("zigbee2mqtt", ""), ("shelly_gen2", SHELLY), ("shelly_gen2", f"{SHELLY}/switch:0"),
    ("shelly_gen2", "+/input:0"), ("shelly_gen2", "$SYS/input:0"), ("shelly_gen2", "/input:0"),
    ("shelly_gen2", "zigbee2mqtt/input:0"), ("shelly_gen2", "stations/s1/input:0"), ("people_counter", "zigbee2mqtt/pc"),
    ("people_counter", "counters/#"), ("people_counter", "a//b"), ("people_counter", "stations/s1/doors/D1/count"),
    ("people_counter", ""),
])
def test_an_address_no_topic_can_hold_is_refused(adapter, address):
    with pytest.raises(t.BadMessage) as e:
        adapters.adapter(adapter).topics(address)
    assert e.value.reason == "bad_topic"


def test_an_adapter_refuses_a_topic_that_is_not_its_vendors():
    for name, topic in (("zigbee2mqtt", "zigbee2mqtt/bridge/state"), ("shelly_gen2", f"{SHELLY}/status/switch:0"),
                        ("shelly_gen2", f"{SHELLY}/online"), ("people_counter", "stations/s1/doors/D1/count")):
        with pytest.raises(t.BadMessage) as e:
            adapters.adapter(name).translate(topic, b'{"contact": true}', RECEIVED)
        assert e.value.reason == "bad_topic", (name, topic)


def test_a_payload_over_the_contract_limit_is_too_large_for_every_adapter():
    big = b'{"x": "' + b"a" * t.MAX_PAYLOAD_BYTES + b'"}'
    for name, topic in (("zigbee2mqtt", "zigbee2mqtt/d"), ("shelly_gen2", f"{SHELLY}/events/rpc"),
                        ("people_counter", COUNTER)):
        with pytest.raises(t.BadMessage) as e:
            adapters.adapter(name).translate(topic, big, RECEIVED)
        assert e.value.reason == "too_large"


def test_receive_time_must_be_aware():
    with pytest.raises(ValueError):
        shelly_gen2.translate(f"{SHELLY}/status/input:0", b'{"id":0,"state":true}', datetime(2026, 11, 22))


# --------------------------------------------------------------------------- people counter: totals into DoorCount


def totals(in_total, out_total, at, line="L1") -> CounterTotals:
    return CounterTotals(COUNTER, line, in_total, out_total, at)


def test_the_counter_sequence_golden_gives_its_door_counts_and_passages():
    seq = CASES["counter_sequence"]
    mark, state = None, None
    for step in seq["steps"]:
        received = datetime.fromisoformat(step["received_at"])
        reading = totals(step["in"], step["out"], datetime.fromisoformat(step["time"]))
        result = people_counter.door_count(seq["station"], seq["sensor"], mark, reading, received)
        if step["expect"] is None:
            assert result is None, step
            continue
        event, at = result
        assert isinstance(event, t.DoorCount)
        assert (event.boot, event.seq, event.in_total, event.out_total) == (
            step["expect"]["boot"], step["expect"]["seq"], step["in"], step["out"]), step
        assert at == event.effective_ts
        # The occupancy rules, unchanged, on the contract event:
        state, passages = occ.passages_since(state, occ.CounterReading(event.boot, event.seq, event.in_total,
                                                                       event.out_total, at))
        assert [passages.entered, passages.left] == step["passages"], step
        mark = people_counter.CounterMark(event.boot, event.seq, event.in_total, event.out_total, at)


def test_a_skewed_counter_clock_is_flagged_and_the_receive_time_orders_the_readings():
    future = RECEIVED + timedelta(days=3)
    event, at = people_counter.door_count("s1", "D1", None, totals(5, 1, future), RECEIVED)
    assert event.skewed and at == RECEIVED == event.effective_ts
    mark = people_counter.CounterMark(event.boot, event.seq, 5, 1, at)
    later = RECEIVED + timedelta(minutes=1)
    event2, at2 = people_counter.door_count("s1", "D1", mark, totals(6, 1, later), later + timedelta(seconds=1))
    assert (event2.seq, event2.skewed, at2) == (event.seq + 1, False, later)


def test_one_falling_direction_is_enough_to_mean_a_reboot():
    mark = people_counter.CounterMark(4, 90, 100, 80, RECEIVED)
    event, _ = people_counter.door_count("s1", "D1", mark, totals(120, 3, RECEIVED + timedelta(minutes=1)),
                                         RECEIVED + timedelta(minutes=1))
    assert (event.boot, event.seq) == (5, 1)


def test_a_contract_sensor_switched_to_a_counter_keeps_counting_from_its_last_reading():
    mark = people_counter.CounterMark(12, 3308, 1534, 1521, None)  # no vendor time yet
    event, _ = people_counter.door_count("s1", "D1", mark, totals(1540, 1521, RECEIVED), RECEIVED)
    assert (event.boot, event.seq) == (12, 3309)


# --------------------------------------------------------------------------- no payload crashes an adapter

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["contact", "state", "id", "method", "params", "ts", "lines", "line", "in", "out", "time",
                         "input:0", "input:1", "battery", "linkquality", "src"]) | st.text(max_size=8), inner,
        max_size=6),
    max_leaves=20,
)
TOPICS = {
    "zigbee2mqtt": st.sampled_from(["zigbee2mqtt/door", "zigbee2mqtt/a b"]),
    "shelly_gen2": st.sampled_from([f"{SHELLY}/status/input:0", f"{SHELLY}/events/rpc", f"{SHELLY}/status/input:12"]),
    "people_counter": st.sampled_from([COUNTER, "pc"]),
}


def _translate_or_refuse(name, topic, raw):
    try:
        events = adapters.adapter(name).translate(topic, raw, RECEIVED)
    except t.BadMessage as e:
        assert e.reason in t.REASONS
        return
    assert isinstance(events, tuple)
    for e in events:
        assert isinstance(e, (ContactState, CounterTotals))
        if isinstance(e, CounterTotals):
            assert e.in_total >= 0 and e.out_total >= 0 and e.device_ts.tzinfo is not None
            people_counter.door_count("s1", "D1", None, e, RECEIVED)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(adapters.ADAPTERS)), data=st.data(), value=JSON)
def test_no_json_payload_crashes_an_adapter(name, data, value):
    topic = data.draw(TOPICS[name])
    _translate_or_refuse(name, topic, json.dumps(value).encode())


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(adapters.ADAPTERS)), data=st.data(), raw=st.binary(max_size=200))
def test_no_byte_string_crashes_an_adapter(name, data, raw):
    _translate_or_refuse(name, data.draw(TOPICS[name]), raw)


@settings(max_examples=200)
@given(readings=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(-5, 120)), max_size=12))
def test_counter_readings_in_any_order_never_count_negative_passages(readings):
    mark, state = None, None
    for in_total, out_total, minute in readings:
        at = RECEIVED + timedelta(minutes=minute)
        step = people_counter.door_count("s1", "D1", mark, totals(in_total, out_total, at), RECEIVED + timedelta(hours=3))
        if step is None:
            assert mark is not None and mark.at is not None and at <= mark.at
            continue
        event, eff = step
        result = occ.passages_since(state, occ.CounterReading(event.boot, event.seq, event.in_total,
                                                              event.out_total, eff))
        assert result is not None  # boot/seq always move forward
        state, passages = result
        assert passages.entered >= 0 and passages.left >= 0
        mark = people_counter.CounterMark(event.boot, event.seq, event.in_total, event.out_total, eff)
