"""The bridge's handler: messages fired straight in, no broker (mqtt_bridge.handler.apply_message)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from chargeapp import telemetry as t
from chargeapp.db import models as m
from chargeapp.services import booking, lounge
from mqtt_bridge.handler import (
    APPLIED,
    DEAD_LETTER,
    DUPLICATE,
    IGNORED,
    ApplyContext,
    RegistryCache,
    apply_message,
    device_key,
)
from tests.bridge.wire import charger, gate, raw, rx, sensor
from tests.conftest import T0
from tests.factories import make_driver

pytestmark = pytest.mark.integration

UTC = timezone.utc
NOW = T0 + timedelta(seconds=2)


def apply(session, *messages, now=NOW, received_at=None, context=None):
    """Apply contract messages (or Received records) in order in one transaction; their outcomes."""
    ctx = context or ApplyContext()
    out = []
    for msg in messages:
        received = msg if hasattr(msg, "payload") else rx(msg, received_at)
        out.append(apply_message(session, received, now, context=ctx))
    session.commit()
    return out


def count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def sequence(session, code="F1", kind=t.DeviceKind.CHARGER):
    return session.get(m.DeviceSequence, device_key(t.DeviceRef(kind, "s1", code)))


def history(session, code="F1"):
    return session.execute(
        select(m.StatusChange.status, m.StatusChange.at, m.StatusChange.skewed)
        .join(m.Connector, m.Connector.id == m.StatusChange.connector_id)
        .join(m.Charger, m.Charger.id == m.Connector.charger_id)
        .where(m.Charger.code == code).order_by(m.StatusChange.at, m.StatusChange.id)
    ).all()


def charging_session(session, tx, code="F1"):
    return session.scalar(select(m.ChargingSession).join(m.Charger).where(
        m.Charger.code == code, m.ChargingSession.transaction_id == tx))


# --------------------------------------------------------------------------- every topic kind


def test_status_message_becomes_the_connectors_status_and_history(session, station):
    f1 = charger()
    [out] = apply(session, f1.status("Preparing", ts=T0))
    assert out.status == APPLIED and out.kind == "status" and out.device == "charger:s1/F1"
    conn = session.scalar(select(m.Connector).join(m.Charger).where(m.Charger.code == "F1"))
    assert (conn.status, conn.status_at) == ("Preparing", T0)
    assert [h.status for h in history(session)] == ["Preparing"]


def test_transaction_start_meter_and_stop_make_one_charging_session(session, station):
    f1 = charger()
    outs = apply(session,
                 f1.start(77, meter_wh=1_230_000, ts=T0),
                 f1.meter(77, 1_241_230, ts=T0 + timedelta(minutes=1)),
                 f1.stop(77, meter_wh=1_248_500, ts=T0 + timedelta(minutes=22)),
                 now=T0 + timedelta(minutes=23))
    assert [o.status for o in outs] == [APPLIED] * 3
    cs = charging_session(session, 77)
    assert (cs.started_at, cs.stopped_at, cs.closed_by) == (T0, T0 + timedelta(minutes=22), "stop")
    assert (cs.start_meter_wh, cs.stop_meter_wh, cs.stop_reason) == (1_230_000, 1_248_500, "EVDisconnected")
    reading = session.scalar(select(m.MeterReading).where(m.MeterReading.session_id == cs.id))
    assert (reading.energy_wh, reading.power_w, reading.soc) == (1_241_230, 50_000, 50)
    assert outs[2].lag_seconds == 60.0


def test_stop_before_start_still_makes_one_session_with_both_halves(session, station):
    f1 = charger()
    plugged = f1.status("Preparing", ts=T0 - timedelta(minutes=1))
    start = f1.start(5, ts=T0)
    stop = f1.stop(5, ts=T0 + timedelta(minutes=30))
    apply(session, plugged, stop, start, now=T0 + timedelta(minutes=31))  # the stop arrives before the start
    cs = charging_session(session, 5)
    assert (cs.started_at, cs.stopped_at, cs.closed_by) == (T0, T0 + timedelta(minutes=30), "stop")
    assert "stop_without_start" in cs.flags
    assert count(session, m.ChargingSession) == 1
    assert sequence(session).missing == 0  # seq 2 came first (gap of 1), then seq 1 filled it
    assert sequence(session).gaps == 1


def test_door_counts_move_the_zone_and_a_counter_reboot_loses_and_doubles_nothing(session, station):
    d1 = sensor()
    apply(session, d1.count(3, 0, ts=T0), d1.count(5, 1, ts=T0 + timedelta(seconds=10)),
          now=T0 + timedelta(seconds=11))
    d1.reboot()  # totals restart from zero in the new boot
    apply(session, d1.count(2, 1, ts=T0 + timedelta(seconds=20)), now=T0 + timedelta(seconds=21))
    hall = next(z for z in lounge.zone_view(session, station, T0 + timedelta(seconds=30)) if z["code"] == "hall")
    assert hall["count"] == 5 - 1 + 2 - 1
    row = session.get(m.DoorSensor, session.scalar(select(m.DoorSensor.id).where(m.DoorSensor.code == "D1")))
    assert (row.boot, row.seq, row.in_total, row.out_total) == (2, 1, 2, 1)
    seq = sequence(session, "D1", t.DeviceKind.DOOR_SENSOR)
    assert (seq.boot, seq.last_seq, seq.missing) == (2, 1, 0)


def test_gate_in_and_out_make_a_parking_stay(session, station):
    g_in, g_out = gate("G-in"), gate("G-out")
    apply(session, g_in.passage("沪A12345", "in", ts=T0), g_out.passage("沪A12345", "out", ts=T0 + timedelta(hours=1)),
          now=T0 + timedelta(hours=1, seconds=1))
    stay = session.scalar(select(m.ParkingStay))
    assert (stay.plate, stay.entry_at, stay.exit_at, stay.flags) == ("沪A12345", T0, T0 + timedelta(hours=1), [])


def test_online_topics_mark_devices_offline_and_an_offline_sensor_makes_its_zones_uncertain(session, station):
    outs = apply(session, charger("F2").online(False), sensor("D2").online(False), gate("G-out").online(False))
    assert [o.status for o in outs] == [APPLIED] * 3
    assert session.scalar(select(m.Charger.online).where(m.Charger.code == "F2")) is False
    assert session.scalar(select(m.Gate.online).where(m.Gate.code == "G-out")) is False
    zones = {z["code"]: z["uncertain"] for z in lounge.zone_view(session, station, NOW)}
    assert zones == {"hall": True, "tea": True}  # D2 counts from hall into tea
    apply(session, sensor("D2").online(True))
    assert {z["code"]: z["uncertain"] for z in lounge.zone_view(session, station, NOW)} == {"hall": False, "tea": False}


def test_retained_value_cleared_is_ignored(session, station):
    [out] = apply(session, raw(t.charger_online_topic("s1", "F1"), b"", retain=True))
    assert (out.status, out.reason) == (IGNORED, "retained_cleared")
    assert count(session, m.DeadLetter) == 0


def test_whole_charger_status_on_connector_0_is_recorded_and_ignored(session, station):
    f1 = charger()
    [out] = apply(session, f1.status("Faulted", connector=0))
    assert (out.status, out.reason) == (IGNORED, "charger_status")
    assert history(session) == [] and sequence(session).last_seq == 1


# --------------------------------------------------------------------------- once and only once


def test_the_same_message_three_times_has_one_effect(session, station):
    f1 = charger()
    meter = rx(f1.start(9, ts=T0)), rx(f1.meter(9, 1_000_500, ts=T0 + timedelta(seconds=30)))
    first = apply(session, *meter)
    second = apply(session, meter[1], meter[1])  # redelivered twice, in another batch
    assert [o.status for o in first + second] == [APPLIED, APPLIED, DUPLICATE, DUPLICATE]
    assert count(session, m.MeterReading) == 1
    assert count(session, m.AppliedMessage) == 2


def test_duplicates_within_one_batch_are_caught_before_the_database(session, station):
    f1 = charger()
    msg = rx(f1.status("Charging"))
    assert [o.status for o in apply(session, msg, msg, msg)] == [APPLIED, DUPLICATE, DUPLICATE]
    assert len(history(session)) == 1


def test_a_retained_status_replayed_on_reconnect_adds_no_status_change(session, station):
    f1 = charger()
    status = f1.status("Charging", ts=T0)
    apply(session, status, f1.status("Finishing", ts=T0 + timedelta(minutes=40)))
    before = history(session)
    replay = rx(status, received_at=T0 + timedelta(hours=1), retain=True)
    [out] = apply(session, replay, now=T0 + timedelta(hours=1))
    assert (out.status, out.retained) == (DUPLICATE, True)
    assert history(session) == before
    # Even with the applied-message record gone (pruned), the status service sees a repeat, not an event.
    session.execute(m.AppliedMessage.__table__.delete())
    session.commit()
    apply(session, replay, now=T0 + timedelta(hours=1))
    assert history(session) == before


def test_transaction_event_redelivered_under_a_new_seq_is_one_event(session, station):
    f1 = charger()
    apply(session, f1.start(11, ts=T0))
    apply(session, f1.start(11, ts=T0))  # same natural key (charger, transaction_id, event), new seq
    assert count(session, m.ChargingSession) == 1


# --------------------------------------------------------------------------- sequences and clocks


def test_a_seq_gap_is_counted_and_filled_back_by_late_messages(session, station):
    f1 = charger()
    msgs = [f1.status("Available", ts=T0 + timedelta(seconds=i)) for i in range(1, 6)]
    outs = apply(session, msgs[0], msgs[1], msgs[4])
    assert outs[2].gap == 2
    row = sequence(session)
    assert (row.last_seq, row.missing, row.gaps) == (5, 2, 1)
    late = apply(session, msgs[2])
    assert late[0].filled and sequence(session).missing == 1
    apply(session, msgs[3])
    assert (sequence(session).missing, sequence(session).gaps) == (0, 1)


def test_a_gap_is_on_the_managers_attention_list_for_a_day_after_it_was_found(session, station):
    from chargeapp.services import manage

    f1 = charger()
    msgs = [f1.status("Available", ts=T0 + timedelta(seconds=i)) for i in range(1, 6)]
    apply(session, msgs[0], msgs[1])
    assert sequence(session).gap_at is None
    apply(session, msgs[4], now=NOW)
    assert sequence(session).gap_at == NOW
    [item] = [i for i in manage.attention(session, NOW, station) if i["kind"] == "messages_missing"]
    assert (item["target"], item["data"]["missing"], item["since"]) == ("F1", 2, NOW)
    assert "2 message(s) never arrived" in item["message"]
    later = NOW + timedelta(hours=24, seconds=1)
    assert not [i for i in manage.attention(session, later, station) if i["kind"] == "messages_missing"]
    apply(session, msgs[2], msgs[3])  # the late ones fill the gap back: nothing is missing any more
    assert not [i for i in manage.attention(session, NOW, station) if i["kind"] == "messages_missing"]


def test_late_messages_from_before_the_first_one_seen_fill_nothing(session, station):
    f1 = charger()
    apply(session, f1.status("Available", seq=100))
    outs = apply(session, f1.status("Available", seq=98), f1.status("Available", seq=99))
    assert not any(o.filled for o in outs)
    assert sequence(session).missing == 0


def test_a_reboot_counts_the_new_boots_unseen_first_messages_as_missing(session, station):
    f1 = charger()
    apply(session, f1.status("Available", seq=40))
    f1.reboot()
    [out] = apply(session, f1.status("Available", seq=3))
    assert out.gap == 2 and (sequence(session).boot, sequence(session).missing) == (2, 2)
    [late] = apply(session, f1.status("Available", seq=1))
    assert late.filled and sequence(session).missing == 1


def test_a_message_of_an_older_boot_is_applied_without_moving_the_sequence(session, station):
    f1 = charger(boot=3)
    apply(session, f1.status("Charging", seq=10, ts=T0))
    old = charger(boot=2)
    [out] = apply(session, old.start(44, seq=500, ts=T0 - timedelta(hours=2)))
    assert out.status == APPLIED
    assert (sequence(session).boot, sequence(session).last_seq) == (3, 10)


def test_a_timestamp_an_hour_ahead_is_skewed_and_the_receive_time_used(session, station):
    f1 = charger()
    received = T0 + timedelta(seconds=1)
    [out] = apply(session, f1.status("Charging", ts=T0 + timedelta(hours=1)), received_at=received)
    assert out.skewed
    assert history(session) == [("Charging", received, True)]
    assert sequence(session).skewed == 1 and sequence(session).last_ts is None


def test_a_timestamp_from_1970_is_skewed(session, station):
    f1 = charger()
    [out] = apply(session, f1.status("Preparing", ts=datetime(1970, 1, 1, tzinfo=UTC)))
    assert out.skewed and history(session)[0].at == T0 + timedelta(seconds=1)


def test_a_timestamp_earlier_than_the_previous_message_of_the_boot_is_skewed(session, station):
    f1 = charger()
    apply(session, f1.status("Preparing", ts=T0))
    [out] = apply(session, f1.status("Charging", ts=T0 - timedelta(minutes=5)), received_at=T0 + timedelta(seconds=3))
    assert out.skewed and history(session)[-1].at == T0 + timedelta(seconds=3)


def test_one_skewed_timestamp_does_not_make_its_correct_successors_skewed(session, station):
    f1 = charger()
    apply(session, f1.status("Preparing", ts=T0))
    apply(session, f1.status("Charging", ts=T0 + timedelta(hours=3)), received_at=T0 + timedelta(seconds=1))  # a glitch
    [out] = apply(session, f1.status("SuspendedEV", ts=T0 + timedelta(seconds=1)),
                  received_at=T0 + timedelta(seconds=2))
    assert not out.skewed


def test_old_timestamps_of_messages_queued_during_an_outage_are_kept(session, station):
    f1 = charger()
    [out] = apply(session, f1.status("Charging", ts=T0 - timedelta(hours=5)), now=T0)
    assert not out.skewed and history(session)[0].at == T0 - timedelta(hours=5)
    assert out.lag_seconds == 5 * 3600


def test_the_station_skew_tolerance_applies(session, station):
    station.rules.skew_tolerance_seconds = 10
    session.commit()
    f1 = charger()
    [out] = apply(session, f1.status("Charging", ts=T0 + timedelta(seconds=30)), received_at=T0)
    assert out.skewed


# --------------------------------------------------------------------------- bad input


BAD = [
    ("not_json", lambda: (t.status_topic("s1", "F1", 1), b'{"connector": 1,')),
    ("not_object", lambda: (t.meter_topic("s1", "F1"), b"[1, 2, 3]")),
    ("too_large", lambda: (t.meter_topic("s1", "F1"), b'{"x": "' + b"a" * 9000 + b'"}')),
    ("bad_topic", lambda: ("stations/s1/chargers/F1/status/01", b"{}")),
    ("bad_shape", lambda: (t.meter_topic("s1", "F1"), json.dumps(
        {"connector": 1, "transaction_id": 1, "energy_wh": -5, "power_w": 1, "ts": "2026-11-22T14:00:00+08:00",
         "boot": 1, "seq": 1}).encode())),
    ("bad_encoding", lambda: (t.gate_passage_topic("s1", "G-in"),
                              '{"plate": "沪A1", "direction": "in"}'.encode("gbk"))),
    ("unknown_device", lambda: (t.meter_topic("s1", "F9"), b"{}")),
    ("forbidden_topic", lambda: (t.command_topic("s1", "F1", "remote_stop"),
                                 b'{"transaction_id": 1, "request_id": "abc"}')),
]


@pytest.mark.parametrize("reason, make", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_dead_lettered_and_the_next_message_still_applies(session, station, reason, make):
    topic, payload = make()
    bad = raw(topic, payload)
    outs = apply(session, bad, charger().status("Charging"))
    assert [o.status for o in outs] == [DEAD_LETTER, APPLIED]
    assert outs[0].reason == reason
    letter = session.scalar(select(m.DeadLetter))
    assert (letter.topic, letter.reason) == (topic, reason)
    assert letter.payload == payload[:16 * 1024] and letter.detail
    assert letter.station_code == "s1"
    assert len(history(session)) == 1


def test_a_station_the_registry_does_not_know_is_an_unknown_device(session, station):
    [out] = apply(session, charger(station="elsewhere").status("Charging"))
    assert (out.status, out.reason, out.station) == (DEAD_LETTER, "unknown_device", "elsewhere")
    assert "no station" in out.detail


def test_a_service_refusing_a_message_dead_letters_it_and_keeps_its_place_in_the_sequence(session, station):
    f1 = charger()
    outs = apply(session, f1.status("Charging", connector=1), f1.status("Charging", connector=3),
                 f1.status("Finishing", connector=1))
    assert [o.status for o in outs] == [APPLIED, DEAD_LETTER, APPLIED]
    assert outs[1].reason == "unknown_device" and outs[1].detail == "connector_not_found"
    assert session.scalar(select(m.DeadLetter.detail)).startswith("connector_not_found:")
    assert sequence(session).missing == 0  # seq 2 arrived, it was only refused
    again = apply(session, rx(f1.status("Charging", connector=3, seq=2)))
    assert again[0].status == DUPLICATE and count(session, m.DeadLetter) == 1


def test_an_invalid_plate_is_refused_without_logging_the_plate(session, station):
    [out] = apply(session, gate().passage("···", "in"))
    assert (out.status, out.reason, out.detail) == (DEAD_LETTER, "bad_shape", "invalid_plate")
    assert "···" not in out.detail and not out.loggable_detail


def test_zigbee_contact_sensors_are_unknown_until_the_registry_maps_them(session, station):
    [out] = apply(session, raw(t.zigbee_topic("lounge door"), b'{"contact": true}'))
    assert (out.status, out.reason) == (DEAD_LETTER, "unknown_device")


def test_a_mapped_zigbee_contact_reports_the_door_open_from_the_first_open_report(session, station):
    from chargeapp.db import models as m
    from chargeapp.services import doors

    session.add(m.DoorContact(station_id=station.id, friendly_name="lounge_door", name="Lounge door"))
    session.commit()
    t1, t2 = T0 + timedelta(minutes=1), T0 + timedelta(minutes=9)
    outs = apply(session, raw(t.zigbee_topic("lounge_door"), b'{"contact": false, "battery": 97}', received_at=t1),
                 raw(t.zigbee_topic("lounge_door"), b'{"contact": false, "battery": 97}', received_at=t2))
    assert [o.status for o in outs] == [APPLIED, APPLIED]
    door = session.query(m.DoorContact).one()
    assert door.is_open and door.open_since == t1 and door.state_at == t2 and door.battery == 97
    assert doors.doors_left_open(session, station, t2) == [door]  # open 8 min > 5 min
    apply(session, raw(t.zigbee_topic("lounge_door"), b'{"contact": true}', received_at=t2))
    assert not door.is_open and door.open_since is None
    assert doors.doors_left_open(session, station, t2) == []


def test_an_unexpected_service_error_is_dead_lettered_and_the_batch_goes_on(session, station, monkeypatch):
    from chargeapp.services import charging

    def broken(*a, **kw):
        raise KeyError("bug")

    monkeypatch.setattr(charging, "record_meter", broken)
    f1 = charger()
    outs = apply(session, f1.meter(1, 5), f1.status("Charging"))
    assert [(o.status, o.reason) for o in outs] == [(DEAD_LETTER, "apply_failed"), (APPLIED, None)]


def test_a_device_added_to_the_registry_is_known_in_the_next_batch(session, station):
    cache = RegistryCache(max_age=3600)
    apply(session, charger().status("Charging"), context=ApplyContext(cache))
    session.add(m.Gate(station_id=station.id, code="G-new", name="G-new"))
    session.commit()
    [out] = apply(session, gate("G-new").passage("沪B00001", "in"), context=ApplyContext(cache))
    assert out.status == APPLIED and cache.loads == 2


# --------------------------------------------------------------------------- command results


SLOT = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def held_booking(session, clock, driver):
    b, _ = booking.book_slot(session, clock.now(), driver.id, "s1", SLOT, "F1")
    clock.set(SLOT - timedelta(minutes=10))
    booking.tick(session, clock.now())
    session.commit()
    cmd = session.scalar(select(m.CommandOutbox).where(m.CommandOutbox.name == "reserve_now"))
    cmd.status, cmd.attempts, cmd.sent_at = "sent", 1, clock.now()
    session.commit()
    assert b.status == "held" and b.charger.code == "F1"
    return b, cmd


def test_an_accepted_result_marks_the_command_answered(session, clock, station, driver):
    b, cmd = held_booking(session, clock, driver)
    [out] = apply(session, charger("F1").result(cmd.request_id, "reserve_now", "Accepted"), now=clock.now())
    assert (out.status, out.command, out.result) == (APPLIED, "reserve_now", "Accepted")
    session.refresh(cmd)
    assert (cmd.status, cmd.result, cmd.answered_at) == ("answered", "Accepted", clock.now())
    assert b.status == "held" and b.charger.code == "F1"


def test_a_reserve_now_answered_occupied_moves_the_booking_to_another_charger(session, clock, station, driver):
    b, cmd = held_booking(session, clock, driver)
    apply(session, charger("F1").result(cmd.request_id, "reserve_now", "Occupied"), now=clock.now())
    session.refresh(b)
    assert b.status == "held" and b.charger.code == "F2"
    assert (session.get(m.CommandOutbox, cmd.id).status, session.get(m.CommandOutbox, cmd.id).result) == (
        "answered", "Occupied")
    # The answer redelivered under a new seq moves nothing again.
    apply(session, charger("F1", seq=5).result(cmd.request_id, "reserve_now", "Occupied"), now=clock.now())
    session.refresh(b)
    assert b.charger.code == "F2"


def test_a_result_from_another_charger_or_unknown_request_matches_nothing(session, clock, station, driver):
    b, cmd = held_booking(session, clock, driver)
    outs = apply(session, charger("F2").result(cmd.request_id, "reserve_now", "Occupied"),
                 charger("F1").result("nosuchrequest", "reserve_now", "Occupied"), now=clock.now())
    assert [o.result for o in outs] == ["unmatched", "unmatched"]
    session.refresh(b)
    assert b.charger.code == "F1" and session.get(m.CommandOutbox, cmd.id).status == "sent"


def test_an_accepted_answer_after_the_bridge_gave_up_cancels_the_stray_reservation(session, clock, station, driver):
    b, cmd = held_booking(session, clock, driver)
    cmd.status = "failed"
    booking.hold_refused(session, clock.now(), b.id, "NoAnswer")  # what the outbox does on giving up
    session.commit()
    assert b.charger.code == "F2"
    apply(session, charger("F1").result(cmd.request_id, "reserve_now", "Accepted"), now=clock.now())
    cancel = session.scalar(select(m.CommandOutbox).where(m.CommandOutbox.name == "cancel_reservation"))
    assert cancel is not None and cancel.charger_id == cmd.charger_id and cancel.payload["reservation_id"] == b.id
    assert session.get(m.CommandOutbox, cmd.id).result == "Accepted"


def test_a_refused_hold_waits_when_no_other_fast_charger_is_free(session, clock, station, driver):
    # Every other fast charger busy: a refused hold makes the booking wait for one.
    for code in ("F2", "F3"):
        apply(session, charger(code).status("Charging"))
    b, cmd = held_booking(session, clock, make_driver(session, clock.now()))
    apply(session, charger("F1", seq=10).result(cmd.request_id, "reserve_now", "Faulted"), now=clock.now())
    session.refresh(b)
    assert b.status == "waiting" and b.charger_id is None
