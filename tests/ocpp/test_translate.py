"""The pure translation between OCPP 1.6J payloads and the telemetry contract (no broker, no database)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from chargeapp import telemetry as t
from ocpp_gateway import translate as tr

pytestmark = pytest.mark.unit

UTC = timezone.utc
T = datetime(2026, 11, 22, 6, 55, tzinfo=UTC)  # 14:55 in Shanghai
F1 = tr.ChargerAddress("s1", "F1")


def wire(message: t.DeviceMessage) -> dict:
    """What the bridge would read: the message formatted and parsed back through the contract."""
    topic, payload = t.format_message(message)
    return {"topic": topic, **json.loads(payload)}


def test_ocpp_times_with_z_offset_fraction_or_no_offset_are_instants():
    assert tr.parse_ocpp_time("2026-11-22T06:55:00Z") == T
    assert tr.parse_ocpp_time("2026-11-22T14:55:00.000+08:00") == T
    assert tr.parse_ocpp_time("2026-11-22T06:55:00") == T  # OCPP times are UTC: no offset reads as UTC
    with pytest.raises(tr.UnusableMessage):
        tr.parse_ocpp_time("yesterday")
    assert tr.ocpp_time(T.astimezone(timezone(timedelta(hours=8)))) == "2026-11-22T06:55:00.000Z"


def test_a_status_notification_becomes_the_connectors_retained_status_and_takes_the_receive_time_without_one():
    msg = tr.status_draft(F1, {"connector_id": 2, "status": "SuspendedEV", "error_code": "NoError"}, T)
    assert wire(msg) == {"topic": "stations/s1/chargers/F1/status/2", "connector": 2, "status": "SuspendedEV",
                         "error_code": "NoError", "ts": "2026-11-22T06:55:00+00:00", "boot": 0, "seq": 1}
    assert msg.topic_ref.retained
    faulted = tr.status_draft(F1, {"connector_id": 0, "status": "Faulted", "error_code": "GroundFailure",
                                   "timestamp": "2026-11-22T06:50:00Z"}, T)
    assert (faulted.connector, faulted.error_code, faulted.device_ts) == (0, "GroundFailure", T - timedelta(minutes=5))


def test_start_and_stop_transaction_become_the_contracts_events_with_the_assigned_id_and_the_starts_connector():
    start = tr.start_draft(F1, {"connector_id": 1, "id_tag": "APP-1", "meter_start": 1_230_000,
                                "timestamp": "2026-11-22T06:55:00Z", "reservation_id": 55}, transaction_id=77)
    assert {k: v for k, v in wire(start).items() if k not in ("ts", "boot", "seq")} == {
        "topic": "stations/s1/chargers/F1/transaction", "event": "start", "connector": 1, "transaction_id": 77,
        "id_tag": "APP-1", "reservation_id": 55, "meter_wh": 1_230_000}
    stop = tr.stop_draft(F1, {"transaction_id": 77, "meter_stop": 1_248_500, "timestamp": "2026-11-22T07:17:10Z",
                              "reason": "EVDisconnected"}, connector=2)
    assert (stop.event, stop.connector, stop.meter_wh, stop.reason, stop.id_tag) == (
        "stop", 2, 1_248_500, "EVDisconnected", None)
    assert stop.stop_reason == "EVDisconnected"


def sample(ts: datetime, *values: dict) -> dict:
    return {"timestamp": tr.ocpp_time(ts), "sampled_value": list(values)}


def test_meter_values_in_kwh_and_kw_become_whole_wh_and_w_with_soc():
    drafts, latest, skipped = tr.meter_drafts(F1, 1, 77, [sample(
        T, {"value": "1241.2304", "measurand": "Energy.Active.Import.Register", "unit": "kWh"},
        {"value": "58.2", "measurand": "Power.Active.Import", "unit": "kW"},
        {"value": "46", "measurand": "SoC", "unit": "Percent", "location": "EV"})], previous=None)
    [m] = drafts
    assert (m.energy_wh, m.power_w, m.soc, m.transaction_id, m.connector, m.device_ts) == (
        1_241_230, 58_200, 46, 77, 1, T)
    assert latest == tr.EnergyReading(T, 1_241_230) and skipped == 0
    assert wire(m)["topic"] == "stations/s1/chargers/F1/meter"


def test_a_value_without_measurand_is_the_energy_register_and_phases_are_summed_when_no_total_is_given():
    [m], _, _ = tr.meter_drafts(F1, 1, 77, [sample(
        T, {"value": "1000"},
        {"value": "7000", "measurand": "Power.Active.Import", "phase": "L1"},
        {"value": "7100", "measurand": "Power.Active.Import", "phase": "L2"},
        {"value": "6900", "measurand": "Power.Active.Import", "phase": "L3"},
        {"value": "230", "measurand": "Voltage", "phase": "L1-N"})], previous=None)
    assert (m.energy_wh, m.power_w, m.soc) == (1000, 21_000, None)


def test_without_power_the_average_since_the_previous_reading_is_used():
    previous = tr.EnergyReading(T, 1_000_000)
    drafts, latest, _ = tr.meter_drafts(F1, 1, 77, [
        sample(T + timedelta(minutes=10), {"value": "1011000"}),  # 11 kWh in 10 min: 66 kW
        sample(T + timedelta(minutes=5), {"value": "1005000"}),  # out of order in one message: sorted
    ], previous)
    assert [(d.energy_wh, d.power_w) for d in drafts] == [(1_005_000, 60_000), (1_011_000, 72_000)]
    assert latest == tr.EnergyReading(T + timedelta(minutes=10), 1_011_000)


def test_instants_without_an_energy_register_or_with_signed_data_only_are_skipped():
    drafts, latest, skipped = tr.meter_drafts(F1, 1, 77, [
        sample(T, {"value": "50", "measurand": "SoC", "unit": "Percent"}),
        sample(T, {"value": "ABCDEF", "format": "SignedData"}),
    ], previous=None)
    assert (drafts, latest, skipped) == ([], None, 2)


def test_an_instant_with_a_time_that_is_not_one_refuses_the_whole_message_instead_of_being_skipped():
    with pytest.raises(tr.UnusableMessage, match="bad_timestamp"):
        tr.meter_drafts(F1, 1, 77, [sample(T, {"value": "1"}), {"timestamp": "not a time", "sampled_value": [
            {"value": "2"}]}], previous=None)


def test_stamp_counts_seq_and_starts_a_new_boot_when_a_replay_is_older_than_the_last_message():
    state = tr.Sequence(boot=4, seq=10, last_ts=T)
    later = tr.status_draft(F1, {"connector_id": 1, "status": "Available", "error_code": "NoError"}, T)
    state, msg = tr.stamp(state, later, received_at=T)
    assert (msg.boot, msg.seq, state) == (4, 11, tr.Sequence(4, 11, T))
    replay = tr.status_draft(F1, {"connector_id": 1, "status": "Charging", "error_code": "NoError",
                                  "timestamp": tr.ocpp_time(T - timedelta(minutes=20))}, T)
    state, msg = tr.stamp(state, replay, received_at=T)
    assert (msg.boot, msg.seq, state.last_ts) == (5, 1, T - timedelta(minutes=20))
    assert t.seq_gap((4, 11), msg.boot, msg.seq) == 0  # the bridge counts nothing missing
    assert not t.is_skewed(msg.device_ts, T, previous_ts=None)


def test_stamp_keeps_a_time_from_the_future_out_of_the_last_time_as_the_bridge_does():
    future = tr.status_draft(F1, {"connector_id": 1, "status": "Available", "error_code": "NoError",
                                  "timestamp": tr.ocpp_time(T + timedelta(hours=1))}, T)
    state, msg = tr.stamp(tr.Sequence(1, 3, T), future, received_at=T)
    assert (msg.boot, msg.seq, state.last_ts) == (1, 4, T)  # so the next correct message is not a rewind


def test_a_boot_notification_starts_a_new_boot_from_seq_one():
    assert tr.new_boot(tr.Sequence(2, 99, T)) == tr.Sequence(3, 0, None)


@pytest.mark.parametrize("command, action, payload", [
    (t.ReserveNow(station="s1", charger="F1", request_id="r1", reservation_id=55, connector=1, id_tag="APP-1",
                  parent_id_tag="driver-7", expiry=T.astimezone(timezone(timedelta(hours=8)))),
     "ReserveNow", {"connector_id": 1, "expiry_date": "2026-11-22T06:55:00.000Z", "id_tag": "APP-1",
                    "reservation_id": 55, "parent_id_tag": "driver-7"}),
    (t.CancelReservation(station="s1", charger="F1", request_id="r2", reservation_id=55),
     "CancelReservation", {"reservation_id": 55}),
    (t.RemoteStart(station="s1", charger="F1", request_id="r3", connector=2, id_tag="APP-1"),
     "RemoteStartTransaction", {"id_tag": "APP-1", "connector_id": 2, "charging_profile": None}),
    (t.RemoteStop(station="s1", charger="F1", request_id="r4", transaction_id=77),
     "RemoteStopTransaction", {"transaction_id": 77}),
    (t.ChangeAvailability(station="s1", charger="F1", request_id="r5", connector=0, type="Inoperative"),
     "ChangeAvailability", {"connector_id": 0, "type": "Inoperative"}),
])
def test_each_contract_command_becomes_its_ocpp_call(command, action, payload):
    ocpp_call = tr.ocpp_call(command)
    assert type(ocpp_call).__name__ == action
    assert vars(ocpp_call) == payload


@pytest.mark.parametrize("name, answer, status", [
    ("reserve_now", "Occupied", "Occupied"),
    ("reserve_now", None, "Rejected"),  # a CALLERROR
    ("change_availability", "Scheduled", "Scheduled"),
    ("remote_start", "Occupied", "Rejected"),  # not an answer RemoteStartTransaction can give
])
def test_the_chargers_answer_becomes_a_command_result_and_anything_else_is_rejected(name, answer, status):
    command = t.COMMAND_TYPES[name]
    fields = {"reserve_now": dict(reservation_id=1, connector=1, id_tag="A", expiry=T),
              "change_availability": dict(connector=1, type="Operative"),
              "remote_start": dict(connector=1, id_tag="A")}[name]
    result = tr.result_draft(F1, command(station="s1", charger="F1", request_id="req-1", **fields), answer, T)
    assert wire(result) == {"topic": "stations/s1/chargers/F1/command_results", "request_id": "req-1",
                            "command": name, "status": status, "ts": "2026-11-22T06:55:00+00:00",
                            "boot": 0, "seq": 1}


def test_id_tags_of_known_drivers_are_accepted_with_their_parent_tag_and_others_invalid():
    assert tr.id_tag_info(7) == {"status": "Accepted", "parent_id_tag": "driver-7"}
    assert tr.id_tag_info(None) == {"status": "Invalid"}


def test_transaction_ids_go_above_both_the_gateways_last_and_the_services_highest_and_stay_32_bit():
    assert tr.next_transaction_id(0, None) == 1
    assert tr.next_transaction_id(12, 4711) == 4712
    assert tr.next_transaction_id(4712, 4711) == 4713
    with pytest.raises(tr.UnusableMessage):
        tr.next_transaction_id(2**31 - 1, None)


def test_a_replayed_start_is_recognised_by_connector_tag_meter_and_time():
    recorded = {"connector": 1, "id_tag": "APP-1", "meter_start": 10, "started_at": T}
    payload = {"connector_id": 1, "id_tag": "APP-1", "meter_start": 10, "timestamp": "2026-11-22T14:55:00+08:00"}
    assert tr.same_start(recorded, payload)
    assert not tr.same_start(recorded, {**payload, "meter_start": 11})
    assert not tr.same_start(recorded, {**payload, "timestamp": "2026-11-22T06:55:01Z"})


@pytest.mark.parametrize("text", [
    "2026-11-22", "2026-11-22 06:55:00Z", "20261122T065500Z", "22/11/2026 14:55", "2026-11-22T06:55Z",
    "2026-13-22T06:55:00Z", " 2026-11-22T06:55:00Z", "2026-11-22T06:55:00+0800",
])
def test_times_that_are_not_rfc_3339_date_times_are_refused(text):
    with pytest.raises(tr.UnusableMessage, match="bad_timestamp"):
        tr.parse_ocpp_time(text)


def test_rfc_3339_in_lower_case_and_with_nanoseconds_is_read():
    assert tr.parse_ocpp_time("2026-11-22t06:55:00z") == T
    assert tr.parse_ocpp_time("2026-11-22T06:55:00.123456789Z") == T + timedelta(microseconds=123456)


@pytest.mark.parametrize("sampled, reason", [
    ({"value": "5000", "unit": "W"}, "wrong_unit"),  # the register (the default measurand) in W
    ({"value": "50", "measurand": "Energy.Active.Import.Register", "unit": "Percent"}, "wrong_unit"),
    ({"value": "50", "measurand": "Power.Active.Import", "unit": "Wh"}, "wrong_unit"),
    ({"value": "50", "measurand": "SoC", "unit": "kW"}, "wrong_unit"),
    ({"value": "lots"}, "not_a_number"),
    ({"value": "NaN", "unit": "kWh"}, "not_a_number"),
    ({"value": "-5"}, "negative_register"),
])
def test_a_value_in_a_unit_its_measurand_cannot_have_or_not_a_number_refuses_the_message(sampled, reason):
    with pytest.raises(tr.UnusableMessage, match=reason):
        tr.meter_drafts(F1, 1, 77, [sample(T, {"value": "1000"}), sample(T + timedelta(minutes=1), sampled)],
                        previous=None)


def test_measurands_the_gateway_does_not_read_are_not_checked():
    [m], _, _ = tr.meter_drafts(F1, 1, 77, [sample(T, {"value": "1000"}, {"value": "230", "measurand": "Voltage",
                                                                             "unit": "V"})], previous=None)
    assert m.energy_wh == 1000


RATED_120_KW = 120_000
START = tr.EnergyReading(T, 5_000_000)


def at_minute(minute: int) -> datetime:
    return T + timedelta(minutes=minute)


def test_the_worked_example_of_docs_ocpp_md():
    # 120 kW charger, transaction started at 5,000,000 Wh; 2 min later 5,004,000 Wh (120 kW): at most
    # 120 kW x 1.25 x 2/60 h + 1,000 Wh = 6,000 Wh more, so it is accepted.
    assert tr.max_rise_wh(RATED_120_KW, 120) == 6_000
    [ok], latest, _ = tr.meter_drafts(F1, 1, 77, [sample(at_minute(2), {"value": "5004000"})], START,
                                      start=START, rated_w=RATED_120_KW)
    assert (ok.energy_wh, ok.power_w, latest) == (5_004_000, 120_000, tr.EnergyReading(at_minute(2), 5_004_000))
    # 14:04 5,200 Wh: below 5,004,000 at 14:02 -> refused, nothing published, the latest reading stays.
    with pytest.raises(tr.UnusableMessage, match="register_backwards"):
        tr.meter_drafts(F1, 1, 77, [sample(at_minute(4), {"value": "5200"})], latest, start=START,
                        rated_w=RATED_120_KW)
    # 14:06 5,400,700 Wh: 396,700 Wh in 4 min (5.95 MW) where at most 11,000 Wh may be -> refused.
    with pytest.raises(tr.UnusableMessage, match=r"register_jump: 396700 Wh in 240 s .* at most 11000 Wh"):
        tr.meter_drafts(F1, 1, 77, [sample(at_minute(6), {"value": "5400.7", "unit": "kWh"})], latest,
                        start=START, rated_w=RATED_120_KW)


def test_the_limit_is_inclusive_and_readings_out_of_order_are_checked_in_time_order():
    limit = tr.max_rise_wh(RATED_120_KW, 600)  # 10 min: 25,000 + 1,000 Wh
    assert limit == 26_000
    tr.check_register(tr.EnergyReading(at_minute(10), 5_026_000), [START], RATED_120_KW)
    with pytest.raises(tr.UnusableMessage, match="register_jump"):
        tr.check_register(tr.EnergyReading(at_minute(10), 5_026_001), [START], RATED_120_KW)
    latest = tr.EnergyReading(at_minute(10), 5_020_000)
    # A replayed older reading must fit between the start and the latest one.
    tr.check_register(tr.EnergyReading(at_minute(5), 5_010_000), [latest, START], RATED_120_KW)
    with pytest.raises(tr.UnusableMessage, match="register_backwards"):
        tr.check_register(tr.EnergyReading(at_minute(5), 5_021_000), [latest, START], RATED_120_KW)
    with pytest.raises(tr.UnusableMessage, match="register_backwards"):
        tr.check_register(tr.EnergyReading(T - timedelta(minutes=1), 5_000_001), [START], RATED_120_KW)


def test_a_charger_whose_rated_power_is_not_known_is_held_to_one_megawatt():
    assert tr.rated_power_w(0) == tr.UNKNOWN_RATED_POWER_W == 1_000_000
    assert tr.rated_power_w(7) == 7_000
    tr.check_register(tr.EnergyReading(at_minute(60), 6_000_000), [START], tr.rated_power_w(0))  # 1 MW for 1 h
    with pytest.raises(tr.UnusableMessage, match="register_jump"):
        tr.check_register(tr.EnergyReading(at_minute(60), 6_300_000), [START], tr.rated_power_w(0))
