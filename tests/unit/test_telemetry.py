"""The MQTT wire contract: topics, golden payloads, strict parsing, skew, formatting."""
from __future__ import annotations

import json
import re
import os
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeapp import telemetry as t

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
CASES = json.loads((GOLDEN / "cases.json").read_text(encoding="utf-8"))
RECEIVED = datetime.fromisoformat(CASES["received_at"])
CST = timezone(timedelta(hours=8))
S = "yangpu-liaoyuan"


def golden_bytes(case) -> bytes:
    return (GOLDEN / case["file"]).read_bytes()


def parse(topic, payload, received_at=RECEIVED, **kw):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload, ensure_ascii=False).encode()
    elif isinstance(payload, str):
        payload = payload.encode()
    return t.parse_message(topic, payload, received_at, **kw)


# --------------------------------------------------------------------------- topics

BUILT_TOPICS = [
    (t.status_topic(S, "F1", 1), t.TopicRef(t.TopicKind.STATUS, S, "F1", connector=1)),
    (t.transaction_topic(S, "F1"), t.TopicRef(t.TopicKind.TRANSACTION, S, "F1")),
    (t.meter_topic(S, "F1"), t.TopicRef(t.TopicKind.METER, S, "F1")),
    (t.charger_online_topic(S, "F1"), t.TopicRef(t.TopicKind.CHARGER_ONLINE, S, "F1")),
    (t.command_topic(S, "F1", "reserve_now"), t.TopicRef(t.TopicKind.COMMAND, S, "F1", command="reserve_now")),
    (t.command_results_topic(S, "F1"), t.TopicRef(t.TopicKind.COMMAND_RESULT, S, "F1")),
    (t.door_count_topic(S, "F1-east"), t.TopicRef(t.TopicKind.DOOR_COUNT, S, "F1-east")),
    (t.door_online_topic(S, "F1-east"), t.TopicRef(t.TopicKind.DOOR_ONLINE, S, "F1-east")),
    (t.gate_passage_topic(S, "B1-in"), t.TopicRef(t.TopicKind.GATE_PASSAGE, S, "B1-in")),
    (t.gate_online_topic(S, "B1-in"), t.TopicRef(t.TopicKind.GATE_ONLINE, S, "B1-in")),
    (t.zigbee_topic("lounge_f1_door"), t.TopicRef(t.TopicKind.ZIGBEE, None, "lounge_f1_door")),
]


def test_topic_builders_write_the_contract_addresses():
    assert [topic for topic, _ in BUILT_TOPICS] == [
        "stations/yangpu-liaoyuan/chargers/F1/status/1",
        "stations/yangpu-liaoyuan/chargers/F1/transaction",
        "stations/yangpu-liaoyuan/chargers/F1/meter",
        "stations/yangpu-liaoyuan/chargers/F1/online",
        "stations/yangpu-liaoyuan/chargers/F1/commands/reserve_now",
        "stations/yangpu-liaoyuan/chargers/F1/command_results",
        "stations/yangpu-liaoyuan/doors/F1-east/count",
        "stations/yangpu-liaoyuan/doors/F1-east/online",
        "stations/yangpu-liaoyuan/gates/B1-in/passage",
        "stations/yangpu-liaoyuan/gates/B1-in/online",
        "zigbee2mqtt/lounge_f1_door",
    ]


@pytest.mark.parametrize("topic,ref", BUILT_TOPICS, ids=[r.kind.value for _, r in BUILT_TOPICS])
def test_parse_topic_inverts_every_builder(topic, ref):
    assert t.parse_topic(topic) == ref
    assert ref.topic == topic


def test_every_topic_kind_has_a_builder_and_a_channel():
    assert {ref.kind for _, ref in BUILT_TOPICS} == set(t.TopicKind) == set(t.CHANNELS)


@pytest.mark.parametrize("topic,ref", BUILT_TOPICS, ids=[r.kind.value for _, r in BUILT_TOPICS])
def test_the_bridge_subscribes_to_every_device_topic_once_and_never_to_commands(topic, ref):
    matching = [f for f in t.BRIDGE_SUBSCRIPTIONS if t.topic_matches(f, topic)]
    assert len(matching) == (0 if ref.kind is t.TopicKind.COMMAND else 1)


def test_topic_ref_names_the_device_identity():
    ref = t.parse_topic("stations/yangpu-liaoyuan/doors/F1-east/count")
    assert ref.device == t.DeviceRef(t.DeviceKind.DOOR_SENSOR, S, "F1-east")
    assert t.parse_topic("zigbee2mqtt/lounge_f1_door").device == t.DeviceRef(t.DeviceKind.ZIGBEE, None, "lounge_f1_door")


def test_only_status_and_online_topics_are_retained():
    retained = {ref.kind for _, ref in BUILT_TOPICS if ref.retained}
    assert retained == {t.TopicKind.STATUS, t.TopicKind.CHARGER_ONLINE, t.TopicKind.DOOR_ONLINE, t.TopicKind.GATE_ONLINE}


@pytest.mark.parametrize("topic", [
    "stations/s1/chargers/F1/status/01",
    "stations/s1/chargers/F1/status/-1",
    "stations/s1/chargers/F1/status/+",
    "stations/s1/chargers/+/meter",
    "stations/s1/chargers/F1/meter/extra",
    "stations/s1/chargers/F1",
    "stations//chargers/F1/meter",
    "stations/s1/chargers/F.1/meter",
    "stations/s1/chargers/F1/commands/reset",
    "stations/s1/doors/D1/status/1",
    "/stations/s1/chargers/F1/meter",
    "stations/s1/chargers/F1/meter/",
    "Stations/s1/chargers/F1/meter",
    "stations/" + "a" * 65 + "/chargers/F1/meter",
    "stations/s1/chargers/F1\n/meter",
    "zigbee2mqtt/bridge/state",
    "zigbee2mqtt/door/availability",
    "zigbee2mqtt/",
    "zigbee2mqtt/#",
    "",
])
def test_parse_topic_refuses_anything_outside_the_contract(topic):
    with pytest.raises(t.BadMessage) as e:
        t.parse_topic(topic)
    assert e.value.reason == "bad_topic"


def test_builders_refuse_bad_ids_and_unknown_commands():
    with pytest.raises(t.BadMessage):
        t.status_topic("s 1", "F1", 1)
    with pytest.raises(t.BadMessage):
        t.meter_topic("s1", "F/1")
    with pytest.raises(t.BadMessage):
        t.status_topic("s1", "F1", True)
    with pytest.raises(t.BadMessage):
        t.command_topic("s1", "F1", "reset")
    with pytest.raises(t.BadMessage):
        t.online_topic("zigbee", "s1", "x")


def test_online_topic_follows_the_device_kind():
    assert t.online_topic("charger", S, "F1") == t.charger_online_topic(S, "F1")
    assert t.online_topic(t.DeviceKind.DOOR_SENSOR, S, "D1") == t.door_online_topic(S, "D1")
    assert t.online_topic("gate", S, "G1") == t.gate_online_topic(S, "G1")


def test_bridge_subscriptions_can_be_scoped_to_one_station():
    subs = t.bridge_subscriptions("s1")
    assert "stations/s1/chargers/+/status/+" in subs
    assert "zigbee2mqtt/+" in subs
    assert not any(s.startswith("stations/+/") for s in subs)


def test_shared_subscriptions_prefix_every_filter_with_the_group():
    shared = t.shared_subscriptions("bridge")
    assert shared[0] == "$share/bridge/stations/+/chargers/+/status/+"
    assert len(shared) == len(t.BRIDGE_SUBSCRIPTIONS)
    assert t.topic_matches(shared[0], t.status_topic(S, "F1", 2))
    with pytest.raises(ValueError):
        t.shared_subscription("stations/#", "a/b")


def test_a_charger_subscribes_to_its_own_commands_only():
    sub = t.command_subscription(S, "F1")
    assert t.topic_matches(sub, t.command_topic(S, "F1", "remote_stop"))
    assert not t.topic_matches(sub, t.command_topic(S, "F2", "remote_stop"))


def test_topic_matching_follows_mqtt_rules():
    assert t.topic_matches("a/#", "a/b/c")
    assert t.topic_matches("a/#", "a")
    assert not t.topic_matches("a/+", "a/b/c")
    assert not t.topic_matches("#", "$SYS/broker")


# --------------------------------------------------------------------------- golden payloads


@pytest.mark.parametrize("case", CASES["good"], ids=[c["file"] for c in CASES["good"]])
def test_every_good_golden_payload_parses_to_its_type(case):
    msg = t.parse_message(case["topic"], golden_bytes(case), RECEIVED)
    assert type(msg).__name__ == case["type"]
    assert msg.received_at == RECEIVED
    assert getattr(msg, "skewed", False) is False


@pytest.mark.parametrize("case", CASES["good"], ids=[c["file"] for c in CASES["good"]])
def test_every_good_golden_payload_survives_format_and_parse(case):
    msg = t.parse_message(case["topic"], golden_bytes(case), RECEIVED)
    topic, payload = t.format_message(msg)
    assert topic == case["topic"]
    assert t.parse_message(topic, payload, RECEIVED) == msg


COMMAND_CASES = [c for c in CASES["good"] if c["file"].startswith("good/command.")]


@pytest.mark.parametrize("case", COMMAND_CASES, ids=[c["file"] for c in COMMAND_CASES])
def test_command_golden_files_are_exactly_what_format_command_writes(case):
    raw = golden_bytes(case).strip()
    cmd = t.parse_message(case["topic"], raw, RECEIVED)
    assert isinstance(cmd, t.Command)
    topic, payload = t.format_command(cmd)
    assert (topic, payload) == (case["topic"], raw)
    assert json.loads(payload) == json.loads(raw)


def test_every_message_type_and_command_has_a_golden_file():
    types = {c["type"] for c in CASES["good"]}
    assert types == {
        "StatusMessage", "TransactionEvent", "MeterSample", "OnlineMessage", "CommandResult",
        "DoorCount", "GatePassage", "ZigbeeContact",
        "ReserveNow", "CancelReservation", "RemoteStart", "RemoteStop", "ChangeAvailability",
    }
    kinds = {t.parse_topic(c["topic"]).kind for c in CASES["good"]}
    assert kinds == set(t.TopicKind)


def test_every_contract_example_is_pinned():
    contract = {c["file"].split("/")[1].rsplit(".", 1)[0] for c in CASES["good"] if c["source"] == "telemetry.md"}
    assert contract == {
        "status.contract", "transaction.start.contract", "transaction.stop.contract", "meter.contract",
        "charger_online.true", "charger_online.false", "command_result.contract", "door_count.contract",
        "door_online.false", "gate_passage.contract", "zigbee.contract",
        *(f"command.{name}.contract" for name in t.COMMAND_NAMES),
    }
    assert {f for f in (GOLDEN / "good").iterdir()} == {GOLDEN / c["file"] for c in CASES["good"]}
    assert {f for f in (GOLDEN / "bad").iterdir()} == {GOLDEN / c["file"] for c in CASES["bad"]}


@pytest.mark.parametrize("case", CASES["bad"], ids=[c["file"] for c in CASES["bad"]])
def test_every_bad_golden_payload_is_refused_with_its_reason(case):
    with pytest.raises(t.BadMessage) as e:
        t.parse_message(case["topic"], golden_bytes(case), RECEIVED)
    assert e.value.reason == case["reason"]
    if case["field"] is not None:
        assert e.value.field == case["field"]


def test_bad_examples_cover_every_reason_parse_can_give():
    # unknown_format is the device adapters' (tests/unit/test_adapters.py), never the contract's parse
    assert {c["reason"] for c in CASES["bad"]} == t.REASONS - {"unknown_device", "forbidden_topic", "unknown_format"}


def test_registry_reasons_share_the_vocabulary():
    assert t.REASONS == {
        "not_json", "not_object", "too_large", "bad_topic", "bad_shape", "bad_encoding",
        "unknown_device", "forbidden_topic", "unknown_format",
    }
    err = t.BadMessage("unknown_device", "F9 is not in the registry")
    assert err.reason == "unknown_device" and isinstance(err, ValueError)
    with pytest.raises(ValueError):
        t.BadMessage("weird", "not a reason")


def golden(name):
    case = next(c for c in CASES["good"] if c["file"] == f"good/{name}.json")
    return t.parse_message(case["topic"], golden_bytes(case), RECEIVED)


def test_contract_status_example_reads_as_written():
    msg = golden("status.contract")
    assert (msg.station, msg.device_id, msg.connector, msg.status, msg.error_code) == (S, "F1", 1, "Charging", "NoError")
    assert msg.device_ts == datetime(2026, 11, 22, 14, 30, 5, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert msg.effective_ts == msg.device_ts
    assert msg.device == t.DeviceRef(t.DeviceKind.CHARGER, S, "F1")
    assert msg.message_key == (t.DeviceKind.CHARGER, S, "F1", 7, 1042)
    assert msg.occupied


def test_status_without_error_code_means_no_error():
    assert golden("status.error_code_omitted").error_code == "NoError"
    assert not golden("status.error_code_omitted").occupied


def test_unknown_fields_are_tolerated_and_listed():
    msg = golden("status.unknown_fields")
    assert msg.status == "SuspendedEV"
    assert msg.unknown_fields == ("fw", "info", "vendor_error_code")
    assert msg.device_ts.microsecond == 250_000


def test_contract_transaction_examples_read_as_written():
    start, stop = golden("transaction.start.contract"), golden("transaction.stop.contract")
    assert (start.event, start.transaction_id, start.id_tag, start.reservation_id, start.meter_wh) == ("start", 77, "D-7F3A21", 55, 1230000)
    assert (stop.event, stop.meter_wh, stop.reason, stop.stop_reason) == ("stop", 1248500, "EVDisconnected", "EVDisconnected")
    assert start.natural_key == (S, "F1", 77, "start")
    assert start.stop_reason is None


def test_stop_without_reason_reads_as_local_like_ocpp():
    stop = golden("transaction.stop.minimal")
    assert stop.reason is None and stop.id_tag is None
    assert stop.stop_reason == "Local"


def test_a_start_ignores_a_stop_only_field_and_lists_it():
    payload = json.loads((GOLDEN / "good/transaction.start.contract.json").read_text(encoding="utf-8"))
    msg = parse(t.transaction_topic(S, "F1"), {**payload, "reason": "Remote"})
    assert msg.reason is None and msg.unknown_fields == ("reason",)


def test_contract_meter_door_gate_zigbee_examples_read_as_written():
    meter = golden("meter.contract")
    assert (meter.energy_wh, meter.power_w, meter.soc) == (1241230, 58200, 46)
    assert golden("meter.no_soc").soc is None
    door = golden("door_count.contract")
    assert (door.in_total, door.out_total, door.boot, door.seq) == (1534, 1521, 12, 3308)
    assert door.device == t.DeviceRef(t.DeviceKind.DOOR_SENSOR, S, "F1-east")
    gate = golden("gate_passage.contract")
    assert (gate.plate, gate.direction) == ("沪A12345", "in")
    assert "沪A12345" not in repr(gate)
    contact = golden("zigbee.contract")
    assert (contact.contact, contact.door_open, contact.battery, contact.linkquality) == (False, True, 97, 120)
    assert contact.effective_ts == RECEIVED


def test_online_payloads_are_bare_json_booleans_stamped_with_the_receive_time():
    assert golden("charger_online.true").online is True
    off = golden("door_online.false")
    assert (off.online, off.device_kind, off.effective_ts) == (False, t.DeviceKind.DOOR_SENSOR, RECEIVED)
    assert golden("gate_online.true").device == t.DeviceRef(t.DeviceKind.GATE, S, "B1-in")


def test_command_result_statuses_follow_the_command():
    assert golden("command_result.contract").accepted
    assert golden("command_result.reserve_now_occupied").status == "Occupied"
    assert golden("command_result.change_availability_scheduled").status == "Scheduled"


def test_contract_commands_read_as_written():
    reserve = golden("command.reserve_now.contract")
    assert isinstance(reserve, t.ReserveNow)
    assert (reserve.reservation_id, reserve.connector, reserve.id_tag, reserve.parent_id_tag) == (55, 1, "D-7F3A21", "driver-1042")
    assert reserve.expiry == datetime(2026, 11, 22, 14, 40, tzinfo=CST)
    assert golden("command.change_availability.contract").type == "Inoperative"


# --------------------------------------------------------------------------- strict shapes

STATUS = {"connector": 1, "status": "Charging", "error_code": "NoError", "ts": "2026-11-22T14:30:05+08:00", "boot": 7, "seq": 1042}
STATUS_TOPIC = "stations/yangpu-liaoyuan/chargers/F1/status/1"


@pytest.mark.parametrize("status", t.CHARGE_POINT_STATUSES)
def test_all_nine_ocpp_statuses_are_accepted(status):
    assert parse(STATUS_TOPIC, {**STATUS, "status": status}).status == status


@pytest.mark.parametrize("code", t.CHARGE_POINT_ERROR_CODES)
def test_all_ocpp_error_codes_are_accepted(code):
    assert parse(STATUS_TOPIC, {**STATUS, "error_code": code}).error_code == code


@pytest.mark.parametrize("reason", t.STOP_REASONS)
def test_all_ocpp_stop_reasons_are_accepted(reason):
    stop = {"event": "stop", "connector": 1, "transaction_id": 77, "meter_wh": 1, "reason": reason,
            "ts": "2026-11-22T14:52:10+08:00", "boot": 7, "seq": 1090}
    assert parse(t.transaction_topic(S, "F1"), stop).reason == reason


def test_vocabularies_are_the_ocpp_16_ones():
    assert len(t.CHARGE_POINT_STATUSES) == 9
    assert len(t.CHARGE_POINT_ERROR_CODES) == 16
    assert len(t.STOP_REASONS) == 11


@pytest.mark.parametrize("field,value", [
    ("boot", True), ("seq", False), ("connector", 1.0), ("seq", "1042"), ("boot", None),
    ("seq", 2**63), ("status", "charging"), ("status", None), ("error_code", 0), ("ts", "2026-11-22T14:30:05"),
    ("ts", "2026-11-22T14:30:05+0800"), ("ts", "20261122T143005+08:00"), ("ts", "2026-11-22T14:30:05+24:00"),
    ("ts", "2026-11-22T14:30:60+08:00"), ("ts", "２０２６-11-22T14:30:05+08:00"), ("ts", ""),
])
def test_a_wrong_type_or_value_is_bad_shape_naming_the_field(field, value):
    with pytest.raises(t.BadMessage) as e:
        parse(STATUS_TOPIC, {**STATUS, field: value})
    assert (e.value.reason, e.value.field) == ("bad_shape", field)


def test_optional_fields_sent_as_null_are_absent():
    assert parse(STATUS_TOPIC, {**STATUS, "error_code": None}).error_code == "NoError"


@pytest.mark.parametrize("ts,expected", [
    ("2026-11-22T06:30:05Z", datetime(2026, 11, 22, 6, 30, 5, tzinfo=timezone.utc)),
    ("2026-11-22t06:30:05z", datetime(2026, 11, 22, 6, 30, 5, tzinfo=timezone.utc)),
    ("2026-11-22T14:30:05.123456789+08:00", datetime(2026, 11, 22, 14, 30, 5, 123456, tzinfo=CST)),
    ("2026-11-22T01:30:05-05:00", datetime(2026, 11, 22, 6, 30, 5, tzinfo=timezone.utc)),
    ("2026-11-22T06:30:05-00:00", datetime(2026, 11, 22, 6, 30, 5, tzinfo=timezone.utc)),
])
def test_rfc3339_timestamps_with_any_offset_are_read(ts, expected):
    parsed = t.parse_ts(ts)
    assert parsed == expected and parsed.tzinfo is not None


def test_a_payload_of_exactly_8_kib_is_accepted_and_one_byte_more_is_too_large():
    base = json.dumps({**STATUS, "pad": ""}).encode()
    exact = json.dumps({**STATUS, "pad": "x" * (8192 - len(base))}).encode()
    assert len(exact) == 8192
    assert parse(STATUS_TOPIC, exact).status == "Charging"
    with pytest.raises(t.BadMessage) as e:
        parse(STATUS_TOPIC, exact[:-1] + b' }')
    assert e.value.reason == "too_large"


def test_a_utf8_byte_order_mark_is_ignored():
    assert parse(STATUS_TOPIC, b"\xef\xbb\xbf" + json.dumps(STATUS).encode()).status == "Charging"


@pytest.mark.parametrize("payload", [b"Infinity", b'{"in_total": -Infinity}', b"1" * 5000, b"[" * 5000, b"{}garbage"])
def test_non_standard_or_pathological_json_is_not_json(payload):
    with pytest.raises(t.BadMessage) as e:
        parse(t.door_count_topic(S, "D1"), payload)
    assert e.value.reason == "not_json"


def test_an_empty_payload_on_a_retained_topic_clears_it():
    cleared = parse(t.charger_online_topic(S, "F1"), b"")
    assert isinstance(cleared, t.RetainedCleared)
    assert cleared.device == t.DeviceRef(t.DeviceKind.CHARGER, S, "F1")
    assert isinstance(parse(STATUS_TOPIC, b""), t.RetainedCleared)


def test_received_at_must_be_aware():
    with pytest.raises(ValueError):
        parse(STATUS_TOPIC, STATUS, received_at=datetime(2026, 11, 22, 14, 55))


# --------------------------------------------------------------------------- skew

DOOR_TOPIC = "stations/yangpu-liaoyuan/doors/F1-east/count"


def door(ts: str) -> dict:
    return {"in_total": 1, "out_total": 0, "ts": ts, "boot": 12, "seq": 5}


def test_a_ts_120_s_ahead_is_trusted_and_121_s_ahead_is_skewed():
    received = datetime(2026, 11, 22, 14, 30, tzinfo=CST)
    ok = parse(DOOR_TOPIC, door("2026-11-22T14:32:00+08:00"), received_at=received)
    assert (ok.skewed, ok.effective_ts) == (False, ok.device_ts)
    skewed = parse(DOOR_TOPIC, door("2026-11-22T14:32:01+08:00"), received_at=received)
    assert skewed.skewed and skewed.effective_ts == received
    assert skewed.device_ts == datetime(2026, 11, 22, 14, 32, 1, tzinfo=CST)


def test_the_skew_tolerance_is_a_parameter():
    received = datetime(2026, 11, 22, 14, 30, tzinfo=CST)
    msg = parse(DOOR_TOPIC, door("2026-11-22T14:30:30+08:00"), received_at=received, skew_tolerance=timedelta(seconds=10))
    assert msg.skewed


def test_a_late_message_keeps_its_device_time():
    received = datetime(2026, 11, 22, 18, 0, tzinfo=CST)
    msg = parse(DOOR_TOPIC, door("2026-11-22T09:00:00+08:00"), received_at=received)
    assert not msg.skewed and msg.effective_ts == datetime(2026, 11, 22, 9, 0, tzinfo=CST)


@pytest.mark.parametrize("ts", ["1970-01-01T00:00:07Z", "2019-12-31T23:59:59Z", "0001-01-01T00:00:00+05:00"])
def test_a_ts_before_2020_is_skewed(ts):
    msg = parse(DOOR_TOPIC, door(ts))
    assert msg.skewed and msg.effective_ts == RECEIVED


def test_a_ts_far_in_the_future_is_skewed_not_an_error():
    msg = parse(DOOR_TOPIC, door("9999-12-31T23:59:59-23:59"))
    assert msg.skewed and msg.effective_ts == RECEIVED


def test_a_ts_earlier_than_the_previous_message_of_the_boot_is_skewed():
    previous = datetime(2026, 11, 22, 14, 30, tzinfo=CST)
    back = parse(DOOR_TOPIC, door("2026-11-22T14:29:59+08:00"), previous_ts=previous)
    assert back.skewed and back.effective_ts == RECEIVED
    same = parse(DOOR_TOPIC, door("2026-11-22T14:30:00+08:00"), previous_ts=previous)
    assert not same.skewed


# --------------------------------------------------------------------------- formatting


def test_format_command_writes_the_contract_payload():
    cmd = t.ReserveNow(
        station=S, charger="F1", request_id="req-1", reservation_id=55, connector=1, id_tag="D-7F3A21",
        parent_id_tag="driver-1042", expiry=datetime(2026, 11, 22, 14, 40, tzinfo=ZoneInfo("Asia/Shanghai")),
    )
    topic, payload = t.format_command(cmd)
    assert topic == "stations/yangpu-liaoyuan/chargers/F1/commands/reserve_now"
    assert json.loads(payload) == {
        "reservation_id": 55, "connector": 1, "id_tag": "D-7F3A21", "parent_id_tag": "driver-1042",
        "expiry": "2026-11-22T14:40:00+08:00", "request_id": "req-1",
    }
    assert t.parse_message(topic, payload, RECEIVED) == replace(cmd, received_at=RECEIVED)


@pytest.mark.parametrize("cmd", [
    t.CancelReservation(station=S, charger="F1", request_id="r", reservation_id=55),
    t.RemoteStart(station=S, charger="F1", request_id="r", connector=2, id_tag="D-7F3A21"),
    t.RemoteStop(station=S, charger="F1", request_id="r", transaction_id=77),
    t.ChangeAvailability(station=S, charger="F1", request_id="r", connector=0, type="Operative"),
], ids=lambda c: c.name)
def test_every_command_round_trips(cmd):
    topic, payload = t.format_command(cmd)
    assert t.parse_topic(topic).command == cmd.name
    assert t.parse_message(topic, payload, RECEIVED) == replace(cmd, received_at=RECEIVED)


@pytest.mark.parametrize("cmd,field", [
    (t.RemoteStart(station=S, charger="F1", request_id="r", connector=1, id_tag="x" * 21), "id_tag"),
    (t.RemoteStop(station=S, charger="F1", request_id="...", transaction_id=77), "request_id"),
    (t.ChangeAvailability(station=S, charger="F1", request_id="r", connector=1, type="Off"), "type"),
    (t.CancelReservation(station=S, charger="F1", request_id="r", reservation_id=-1), "reservation_id"),
    (t.RemoteStart(station=S, charger="F1", request_id="r", connector=True, id_tag="D-1"), "connector"),
])
def test_format_refuses_what_parse_would_refuse(cmd, field):
    with pytest.raises(t.BadMessage) as e:
        t.format_command(cmd)
    assert e.value.field == field


def test_format_refuses_naive_expiry_and_bad_charger_ids():
    with pytest.raises(ValueError):
        t.format_command(t.ReserveNow(station=S, charger="F1", request_id="r", reservation_id=1, connector=1,
                                      id_tag="D", expiry=datetime(2026, 11, 22, 14, 40)))
    with pytest.raises(t.BadMessage) as e:
        t.format_command(t.RemoteStop(station=S, charger="F 1", request_id="r", transaction_id=1))
    assert e.value.reason == "bad_topic"


def test_format_command_refuses_device_messages():
    with pytest.raises(TypeError):
        t.format_command(golden("status.contract"))


def test_simulators_format_device_messages_that_parse_back():
    sample = t.MeterSample(station=S, device_id="F1", device_ts=datetime(2026, 11, 22, 14, 41, 20, tzinfo=ZoneInfo("Asia/Shanghai")),
                           boot=7, seq=1071, connector=1, transaction_id=77, energy_wh=1241230, power_w=58200, soc=46)
    topic, payload = t.format_message(sample)
    assert topic == t.meter_topic(S, "F1")
    assert json.loads(payload)["ts"] == "2026-11-22T14:41:20+08:00"
    assert t.parse_message(topic, payload, RECEIVED) == replace(sample, received_at=RECEIVED)


def test_plates_are_sent_as_utf8_not_escaped():
    msg = t.GatePassage(station=S, device_id="B1-in", device_ts=datetime(2026, 11, 22, 14, 10, tzinfo=CST),
                        boot=3, seq=88, plate="沪A12345", direction="in")
    assert "沪A12345".encode() in t.format_message(msg)[1]


def test_a_ts_with_a_seconds_offset_is_written_in_utc():
    lmt = datetime(1900, 1, 1, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))  # local mean time +08:05:43
    text = t.format_ts(lmt)
    assert text.endswith("+00:00") and t.parse_ts(text) == lmt


def test_online_and_last_will_payloads():
    assert t.online_payload(True) == b"true"
    will = t.last_will("door_sensor", S, "F1-east")
    assert will == t.LastWill("stations/yangpu-liaoyuan/doors/F1-east/online", b"false", 1, True)
    topic, payload = t.format_message(t.OnlineMessage(device_kind=t.DeviceKind.GATE, station=S, device_id="B1-in", online=True))
    assert (topic, payload) == ("stations/yangpu-liaoyuan/gates/B1-in/online", b"true")


def test_request_ids_are_registry_ids_and_the_generator_is_a_seam(monkeypatch):
    assert t.is_valid_id(t.new_request_id())
    monkeypatch.setattr(t, "new_request_id", lambda: "fixed")
    assert t.new_request_id() == "fixed"


# --------------------------------------------------------------------------- sequence gaps


@pytest.mark.parametrize("previous,boot,seq,gap", [
    (None, 7, 1042, 0),
    ((7, 1041), 7, 1042, 0),
    ((7, 1041), 7, 1045, 3),
    ((7, 1041), 7, 1041, 0),
    ((7, 1041), 7, 1000, 0),
    ((7, 1041), 8, 1, 0),
    ((7, 1041), 8, 4, 3),
    ((7, 1041), 6, 9, 0),
])
def test_seq_gap_counts_missing_messages_within_a_boot(previous, boot, seq, gap):
    assert t.seq_gap(previous, boot, seq) == gap


# --------------------------------------------------------------------------- only BadMessage comes out

TOPIC_PER_KIND = {ref.kind: topic for topic, ref in BUILT_TOPICS}
TOPIC_PER_KIND.update({
    f"command/{name}": t.command_topic(S, "F1", name) for name in t.COMMAND_NAMES
})
GOOD_PAYLOADS = [
    (c["topic"], json.loads(golden_bytes(c))) for c in CASES["good"] if golden_bytes(c).strip().startswith(b"{")
]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=12,
)
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parses_or_refuses(topic: str, payload: bytes) -> None:
    try:
        msg = t.parse_message(topic, payload, RECEIVED, previous_ts=RECEIVED - timedelta(hours=1))
    except t.BadMessage as e:
        assert e.reason in t.REASONS
        return
    assert msg.received_at == RECEIVED
    if not isinstance(msg, t.RetainedCleared):
        # whatever parses must format and parse back to itself
        topic2, payload2 = t.format_message(msg)
        assert t.parse_message(topic2, payload2, RECEIVED, previous_ts=RECEIVED - timedelta(hours=1)) == msg


@FUZZ
@given(topic=st.sampled_from(sorted(TOPIC_PER_KIND.values())), payload=st.binary(max_size=300))
def test_arbitrary_bytes_give_a_message_or_bad_message(topic, payload):
    parses_or_refuses(topic, payload)


@FUZZ
@given(topic=st.sampled_from(sorted(TOPIC_PER_KIND.values())), value=JSON)
def test_arbitrary_json_gives_a_message_or_bad_message(topic, value):
    parses_or_refuses(topic, json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@FUZZ
@given(case=st.sampled_from(GOOD_PAYLOADS), key=st.text(max_size=16), value=JSON, drop=st.booleans())
def test_almost_valid_payloads_give_a_message_or_bad_message(case, key, value, drop):
    topic, payload = case
    payload = dict(payload)
    if drop and payload:
        payload.pop(sorted(payload)[len(key) % len(payload)])
    else:
        payload[sorted(payload)[len(key) % len(payload)] if len(key) % 2 else key] = value
    parses_or_refuses(topic, json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass"))


@FUZZ
@given(topic=st.text(max_size=80) | st.lists(st.sampled_from(["stations", "s1", "chargers", "F1", "status", "1", "+", "", "doors", "count", "zigbee2mqtt", "commands", "reserve_now", "online"]), max_size=7).map("/".join))
def test_arbitrary_topics_give_a_topic_ref_or_bad_topic(topic):
    try:
        ref = t.parse_topic(topic)
    except t.BadMessage as e:
        assert e.reason == "bad_topic"
    else:
        assert ref.topic == topic


@FUZZ
@given(
    station=st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"), device=st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"),
    connector=st.integers(min_value=0, max_value=999_999_999),
)
def test_built_topics_always_parse_back(station, device, connector):
    for topic in (t.status_topic(station, device, connector), t.door_count_topic(station, device),
                  t.gate_online_topic(station, device)):
        ref = t.parse_topic(topic)
        assert (ref.station, ref.device_id) == (station, device)


# --------------------------------------------------------------------------- the AsyncAPI document

ASYNCAPI = (Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml").read_text(encoding="utf-8")


def test_asyncapi_document_is_version_3():
    assert ASYNCAPI.startswith("asyncapi: 3.0.0\n")


def test_asyncapi_documents_exactly_the_channels_of_the_module():
    documented = {line.split("address:", 1)[1].strip() for line in ASYNCAPI.splitlines() if line.strip().startswith("address:")}
    expected = {
        template.replace("{friendly_name}", "{friendlyName}")
        for kind, template in t.CHANNELS.items() if kind is not t.TopicKind.COMMAND
    } | {t.CHANNELS[t.TopicKind.COMMAND].replace("{command}", name) for name in t.COMMAND_NAMES}
    assert documented == expected


@pytest.mark.parametrize("values", [
    t.CHARGE_POINT_STATUSES, t.CHARGE_POINT_ERROR_CODES, t.STOP_REASONS, t.COMMAND_NAMES, t.AVAILABILITY_TYPES,
    tuple(sorted(t.REASONS)),
])
def test_asyncapi_enumerations_match_the_module(values):
    lists = [sorted(v.strip() for v in found.split(",")) for found in re.findall(r"enum: \[([^\]]*)\]", ASYNCAPI)]
    blocks = re.findall(r"x-bad-input-reasons:\n((?:\s+- \w+\n)+)", ASYNCAPI)
    lists += [sorted(re.findall(r"- (\w+)", b)) for b in blocks]
    assert sorted(values) in lists


def test_messages_without_a_device_clock_still_answer_the_time_questions():
    for name in ("charger_online.true", "zigbee.contract"):
        msg = golden(name)
        assert (msg.device_ts, msg.skewed, msg.effective_ts) == (None, False, RECEIVED)
