"""A simulated charger: OCPP 1.6 states, transactions, metering, and the five commands."""
from __future__ import annotations

from datetime import timedelta

import pytest

from simulators.ev import VEHICLE_MODELS, Battery, charging_power_w, dc_taper
from tests.simulators.helpers import (
    START,
    advance,
    battery,
    command,
    payloads,
    quiet_sim,
    results,
    statuses,
)

pytestmark = pytest.mark.unit


def test_a_session_goes_preparing_charging_suspended_ev_finishing_available():
    sim, sink = quiet_sim()
    f1 = sim.charger("yangpu-liaoyuan", "F1")
    assert f1.plug_in(battery(soc=70, target=75), "D-AAA")
    assert f1.authorize("D-AAA")
    advance(sim, minutes=30)
    assert f1.stop("D-AAA")
    advance(sim, seconds=30)
    f1.unplug()
    assert statuses(sink, "F1") == ["Available", "Preparing", "Charging", "SuspendedEV", "Finishing", "Available"]
    start, stop = payloads(sink, "F1", "transaction")
    assert (start["event"], stop["event"], stop["reason"]) == ("start", "stop", "Local")
    assert start["id_tag"] == stop["id_tag"] == "D-AAA"
    assert stop["meter_wh"] > start["meter_wh"]


def test_unplugging_on_the_car_side_ends_the_transaction_as_ev_disconnected_and_frees_the_bay():
    sim, sink = quiet_sim()
    s01 = sim.charger("yangpu-liaoyuan", "S01")
    s01.plug_in(battery(), "D-AAA")
    s01.authorize("D-AAA")
    advance(sim, minutes=5)
    s01.unplug()
    assert payloads(sink, "S01", "transaction")[-1]["reason"] == "EVDisconnected"
    assert statuses(sink, "S01")[-2:] == ["Charging", "Available"]


def test_transaction_ids_never_repeat_on_a_charger_even_across_reboots():
    sim, sink = quiet_sim()
    f1 = sim.charger("yangpu-liaoyuan", "F1")
    for _ in range(2):
        f1.plug_in(battery(), "D-AAA")
        f1.authorize("D-AAA")
        advance(sim, minutes=1)
        f1.unplug()
        f1.reboot(60)
        advance(sim, minutes=2)
    ids = [p["transaction_id"] for p in payloads(sink, "F1", "transaction") if p["event"] == "start"]
    assert len(ids) == len(set(ids)) == 2 and ids[1] > ids[0]


def test_meter_samples_every_30_s_while_charging_with_a_register_that_never_decreases():
    sim, sink = quiet_sim()
    f1 = sim.charger("yangpu-liaoyuan", "F1")
    f1.plug_in(battery(soc=10, target=95), "D-AAA")
    f1.authorize("D-AAA")
    advance(sim, minutes=10)
    meters = payloads(sink, "F1", "meter")
    assert 19 <= len(meters) <= 20
    energy = [m["energy_wh"] for m in meters]
    assert energy == sorted(energy) and energy[-1] > energy[0]
    assert all(10_000 <= m["power_w"] <= 120_000 for m in meters)


def test_fast_charging_power_tapers_as_the_state_of_charge_rises():
    sim, sink = quiet_sim()
    f1 = sim.charger("yangpu-liaoyuan", "F1")
    han = Battery(VEHICLE_MODELS[2], 10, 99)  # BYD Han: 120 kW peak on a 120 kW charger
    f1.plug_in(han, "D-AAA")
    f1.authorize("D-AAA")
    advance(sim, minutes=90)
    samples = [(m["soc"], m["power_w"]) for m in payloads(sink, "F1", "meter") if m["power_w"] > 0]
    early = [p for soc, p in samples if soc < 45]
    mid = [p for soc, p in samples if 70 <= soc < 75]
    late = [p for soc, p in samples if soc >= 90]
    assert early and mid and late
    assert min(early) > max(mid) > max(late)
    assert max(early) <= 120_000 * 1.01


def test_power_curves_are_flat_then_falling():
    assert dc_taper(20) == dc_taper(50) == 1.0
    assert dc_taper(60) > dc_taper(80) > dc_taper(95) > 0
    byd = VEHICLE_MODELS[0]
    assert charging_power_w(byd, "fast", 120, 30) == 90_000  # the car's 90 kW limit
    assert charging_power_w(byd, "slow", 7, 30) == pytest.approx(6_600)
    assert charging_power_w(byd, "fast", 120, 100) == 0


def test_reserve_now_shows_reserved_refuses_other_tags_and_accepts_the_reserved_one():
    sim, sink = quiet_sim()
    f2 = sim.charger("yangpu-liaoyuan", "F2")
    command(sim, "F2", "reserve_now", "r1", reservation_id=55, connector=1, id_tag="D-MINE",
            parent_id_tag="driver-7", expiry=START + timedelta(minutes=30))
    assert results(sink, "F2") == [("reserve_now", "r1", "Accepted")]
    assert statuses(sink, "F2")[-1] == "Reserved"

    assert not f2.accepts("D-OTHER")
    assert not f2.plug_in(battery(), "D-OTHER")
    assert statuses(sink, "F2")[-1] == "Reserved"

    assert f2.accepts("D-MINE") and f2.plug_in(battery(), "D-MINE")
    assert f2.authorize("D-MINE")
    start = payloads(sink, "F2", "transaction")[-1]
    assert (start["event"], start["id_tag"], start["reservation_id"]) == ("start", "D-MINE", 55)
    assert statuses(sink, "F2")[-2:] == ["Preparing", "Charging"]


def test_a_reserved_connector_refuses_a_card_of_another_driver_even_when_plugged():
    sim, sink = quiet_sim()
    f2 = sim.charger("yangpu-liaoyuan", "F2")
    f2.plug_in(battery(), "D-OTHER")  # plugged before the hold arrived ...
    command(sim, "F2", "reserve_now", "r1", reservation_id=55, connector=1, id_tag="D-MINE",
            expiry=START + timedelta(minutes=30))
    assert results(sink, "F2")[-1][2] == "Occupied"  # ... so the hold is refused


def test_reserve_now_answers_by_state_faulted_unavailable_occupied():
    sim, sink = quiet_sim()
    expiry = START + timedelta(minutes=30)
    sim.charger("yangpu-liaoyuan", "F1").set_fault("GroundFailure")
    command(sim, "F1", "reserve_now", "a", reservation_id=1, connector=1, id_tag="D-A", expiry=expiry)
    command(sim, "F2", "change_availability", "b", connector=0, type="Inoperative")
    command(sim, "F2", "reserve_now", "c", reservation_id=2, connector=1, id_tag="D-A", expiry=expiry)
    f3 = sim.charger("yangpu-liaoyuan", "F3")
    f3.plug_in(battery(), "D-B")
    f3.authorize("D-B")
    command(sim, "F3", "reserve_now", "d", reservation_id=3, connector=1, id_tag="D-A", expiry=expiry)
    command(sim, "F4", "reserve_now", "e", reservation_id=4, connector=1, id_tag="D-A", expiry=expiry)
    command(sim, "F4", "reserve_now", "f", reservation_id=5, connector=1, id_tag="D-C", expiry=expiry)
    command(sim, "F5", "reserve_now", "g", reservation_id=6, connector=1, id_tag="D-A", expiry=START)
    assert results(sink, "F1")[-1][2] == "Faulted"
    assert results(sink, "F2")[-1][2] == "Unavailable"
    assert results(sink, "F3")[-1][2] == "Occupied"
    assert [r[2] for r in results(sink, "F4")] == ["Accepted", "Occupied"]
    assert results(sink, "F5")[-1][2] == "Rejected"  # already expired


def test_a_reservation_expires_back_to_available_and_can_be_cancelled():
    sim, sink = quiet_sim()
    command(sim, "F1", "reserve_now", "a", reservation_id=1, connector=1, id_tag="D-A",
            expiry=START + timedelta(minutes=10))
    advance(sim, minutes=11)
    assert statuses(sink, "F1")[-2:] == ["Reserved", "Available"]
    command(sim, "F1", "reserve_now", "b", reservation_id=2, connector=1, id_tag="D-A",
            expiry=START + timedelta(minutes=40))
    command(sim, "F1", "cancel_reservation", "c", reservation_id=2)
    command(sim, "F1", "cancel_reservation", "d", reservation_id=2)
    assert [r[2] for r in results(sink, "F1")] == ["Accepted", "Accepted", "Accepted", "Rejected"]
    assert statuses(sink, "F1")[-2:] == ["Reserved", "Available"]


def test_a_retried_command_gets_the_first_answer_again_and_is_not_applied_twice():
    sim, sink = quiet_sim()
    f1 = sim.charger("yangpu-liaoyuan", "F1")
    f1.plug_in(battery(), "D-A")
    command(sim, "F1", "remote_start", "same", connector=1, id_tag="D-A")
    command(sim, "F1", "remote_start", "same", connector=1, id_tag="D-A")
    assert [r[2] for r in results(sink, "F1")] == ["Accepted", "Accepted"]
    assert len([p for p in payloads(sink, "F1", "transaction") if p["event"] == "start"]) == 1


def test_remote_start_waits_for_the_cable_and_remote_stop_ends_only_that_transaction():
    sim, sink = quiet_sim()
    f1 = sim.charger("yangpu-liaoyuan", "F1")
    command(sim, "F1", "remote_start", "a", connector=1, id_tag="APP-1")
    assert statuses(sink, "F1")[-1] == "Preparing"
    assert f1.plug_in(battery(), "APP-1")
    tx = payloads(sink, "F1", "transaction")[-1]
    assert (tx["event"], tx["id_tag"]) == ("start", "APP-1")
    command(sim, "F1", "remote_stop", "b", transaction_id=tx["transaction_id"] + 1)
    command(sim, "F1", "remote_stop", "c", transaction_id=tx["transaction_id"])
    assert [r[2] for r in results(sink, "F1")] == ["Accepted", "Rejected", "Accepted"]
    assert payloads(sink, "F1", "transaction")[-1]["reason"] == "Remote"
    assert statuses(sink, "F1")[-1] == "Finishing"  # the car is still plugged in


def test_a_remote_start_without_a_car_times_out():
    sim, sink = quiet_sim()
    command(sim, "F1", "remote_start", "a", connector=1, id_tag="APP-1")
    advance(sim, seconds=61)
    assert statuses(sink, "F1")[-2:] == ["Preparing", "Available"]


def test_change_availability_is_scheduled_during_a_transaction_and_applies_when_it_ends():
    sim, sink = quiet_sim()
    f1 = sim.charger("yangpu-liaoyuan", "F1")
    f1.plug_in(battery(), "D-A")
    f1.authorize("D-A")
    command(sim, "F1", "change_availability", "a", connector=0, type="Inoperative")
    assert results(sink, "F1")[-1][2] == "Scheduled"
    assert statuses(sink, "F1")[-1] == "Charging"
    f1.unplug()
    assert statuses(sink, "F1")[-1] == "Unavailable"
    assert not f1.accepts("D-B")
    command(sim, "F1", "change_availability", "b", connector=1, type="Operative")
    assert results(sink, "F1")[-1][2] == "Accepted"
    assert statuses(sink, "F1")[-1] == "Available"


def test_a_fault_stops_the_running_transaction_and_drops_the_hold():
    sim, sink = quiet_sim()
    f1, f2 = sim.charger("yangpu-liaoyuan", "F1"), sim.charger("yangpu-liaoyuan", "F2")
    f1.plug_in(battery(), "D-A")
    f1.authorize("D-A")
    command(sim, "F2", "reserve_now", "a", reservation_id=9, connector=1, id_tag="D-B",
            expiry=START + timedelta(minutes=30))
    f1.set_fault("HighTemperature")
    f2.set_fault("GroundFailure")
    stop = payloads(sink, "F1", "transaction")[-1]
    assert (stop["event"], stop["reason"]) == ("stop", "Other")
    last = payloads(sink, "F1", "status")[-1]
    assert (last["status"], last["error_code"]) == ("Faulted", "HighTemperature")
    f2.set_fault(None)
    assert statuses(sink, "F2")[-2:] == ["Faulted", "Available"]
