"""The simulation as a whole: stamping, reboots, door counters, determinism, a full day on the contract."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

import pytest

from chargeapp import telemetry as t
from simulators.behaviour import Behaviour, poisson, slot_of
from simulators.bookings import Ticket
from simulators.layouts import DEMO_LAYOUTS
from simulators.population import roster, roster_size
from simulators.scheduler import Scheduler
from simulators.simulation import Simulation
from simulators.sinks import MemorySink
from simulators.state import StateStore
from tests.simulators.helpers import (
    CST,
    START,
    STATION,
    advance,
    battery,
    payloads,
    quiet_sim,
)

pytestmark = pytest.mark.unit


def records_of_a_day(seed: int, hours: int = 24, stations=None) -> tuple[Simulation, MemorySink]:
    sink = MemorySink()
    sim = Simulation([DEMO_LAYOUTS[s] for s in (stations or DEMO_LAYOUTS)], start=START, seed=seed, sink=sink)
    sim.run_until(START + timedelta(hours=hours))
    return sim, sink


# -- the scheduler ----------------------------------------------------------------------


def test_the_scheduler_runs_actions_in_time_order_and_same_time_actions_in_scheduling_order():
    s = Scheduler(START)
    seen = []
    s.after(10, seen.append, "b")
    s.after(5, seen.append, "a")
    s.after(10, seen.append, "c")
    cancelled = s.after(7, seen.append, "x")
    cancelled.cancel()
    s.at(START - timedelta(hours=1), seen.append, "now")  # the past runs at once, never backwards
    assert s.run_until(START + timedelta(seconds=9)) == 2
    assert seen == ["now", "a"]
    s.run_until(START + timedelta(seconds=10))
    assert seen == ["now", "a", "b", "c"] and s.now == START + timedelta(seconds=10)


def test_the_same_seed_gives_the_same_messages_and_another_seed_does_not():
    _, one = records_of_a_day(7, hours=6, stations=["hongkou-quyang"])
    _, two = records_of_a_day(7, hours=6, stations=["hongkou-quyang"])
    _, other = records_of_a_day(8, hours=6, stations=["hongkou-quyang"])
    assert len(one.records) > 500
    assert one.records == two.records
    assert one.records != other.records


# -- stamping ------------------------------------------------------------------------------


def test_a_chargers_seq_counts_every_message_across_topics_and_restarts_at_1_with_boot_plus_1_after_a_reboot():
    sim, sink = quiet_sim()
    f1 = sim.charger(STATION, "F1")
    f1.plug_in(battery(), "D-A")
    f1.authorize("D-A")
    advance(sim, minutes=2)
    f1.unplug()
    f1.reboot(90)
    advance(sim, minutes=2)
    f1.plug_in(battery(), "D-B")
    stamped = [(r.topic.split("/")[4], json.loads(r.payload)) for r in sink.of(f"{STATION}.F1")
               if not r.topic.endswith("/online")]
    first_boot = [p for _, p in stamped if p["boot"] == 1]
    second_boot = [p for _, p in stamped if p["boot"] == 2]
    assert {leaf for leaf, _ in stamped} >= {"status", "transaction", "meter"}
    assert [p["seq"] for p in first_boot] == list(range(1, len(first_boot) + 1))
    assert [p["seq"] for p in second_boot] == [1, 2]  # Available after boot, then Preparing
    assert [p["status"] for p in second_boot] == ["Available", "Preparing"]


def test_device_time_is_the_simulated_time_in_the_station_zone_in_whole_seconds():
    sim, sink = quiet_sim()
    advance(sim, seconds=12.7)
    sim.charger(STATION, "F1").set_fault("InternalError")
    ts = payloads(sink, "F1", "status")[-1]["ts"]
    assert ts == (sim.now.astimezone(CST).replace(microsecond=0)).isoformat()
    assert ts.endswith("+08:00")


def test_a_reboot_lets_the_broker_publish_the_last_will_then_the_device_says_online_again():
    sim, sink = quiet_sim()
    sim.devices[f"{STATION}.door-hall"].reboot(60)
    advance(sim, minutes=2)
    online = [(r.payload, r.will) for r in sink.of(f"{STATION}.door-hall") if r.topic.endswith("/online")]
    assert online == [(b"true", False), (b"false", True), (b"true", False)]


def test_during_a_network_outage_messages_queue_with_their_device_time_and_the_will_is_published():
    sim, sink = quiet_sim()
    door = sim.devices[f"{STATION}.door-tea"]
    door.set_network(False)
    advance(sim, seconds=30)
    door.passage("in")
    advance(sim, seconds=30)
    door.set_network(True)
    recs = sink.of(f"{STATION}.door-tea")
    queued = [r for r in recs if r.queued]
    assert queued and all(r.topic.endswith("/count") for r in queued)
    assert [r.payload for r in recs if r.topic.endswith("/online")] == [b"true", b"false", b"true"]
    boots = {json.loads(r.payload)["boot"] for r in recs if r.topic.endswith("/count")}
    assert boots == {1}  # an outage is not a reboot


def test_an_orderly_shutdown_says_offline_without_a_will_and_saves_the_device_state(tmp_path):
    path = tmp_path / "state.json"
    sink = MemorySink()
    from tests.simulators.helpers import QUIET

    sim = Simulation([DEMO_LAYOUTS["hongkou-quyang"]], start=START, seed=1, sink=sink, behaviour=QUIET,
                     state=StateStore(path))
    sim.run_until(START + timedelta(seconds=5))
    charger = sim.charger("hongkou-quyang", "F1")
    charger.plug_in(battery(), "D-A")
    charger.authorize("D-A")
    sim.shutdown()
    assert all(not r.will for r in sink.records if r.payload == b"false")
    again = Simulation([DEMO_LAYOUTS["hongkou-quyang"]], start=START + timedelta(hours=1), seed=1, sink=MemorySink(),
                       behaviour=QUIET, state=StateStore(path))
    again.run_until(START + timedelta(hours=1, seconds=5))
    f1 = again.charger("hongkou-quyang", "F1")
    assert f1.boot == 2 and f1.state.next_transaction_id == 2
    assert f1.connector.energy_wh == pytest.approx(charger.connector.energy_wh)


# -- door counters and gates -----------------------------------------------------------------


def test_door_totals_are_cumulative_and_restart_from_zero_with_a_new_boot_after_a_reboot():
    sim, sink = quiet_sim()
    door = sim.devices[f"{STATION}.door-hall"]
    door.miss_rate = 0
    for direction in ("in", "in", "in", "out"):
        door.passage(direction)
    door.reboot(60)
    assert not door.passage("in")  # off: this passage is lost
    advance(sim, seconds=61)
    door.passage("out")
    counts = [(p["boot"], p["in_total"], p["out_total"]) for p in payloads(sink, "door-hall", "count")]
    assert counts == [(1, 0, 0), (1, 1, 0), (1, 2, 0), (1, 3, 0), (1, 3, 1), (2, 0, 0), (2, 0, 1)]


def test_door_counters_publish_at_least_every_60_seconds_without_passages():
    sim, sink = quiet_sim()
    advance(sim, minutes=10)
    times = [r.at for r in sink.of(f"{STATION}.door-upstairs") if r.topic.endswith("/count")]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert len(times) >= 10 and max(gaps) <= 60


def test_a_gate_publishes_the_plate_and_direction():
    sim, sink = quiet_sim()
    sim.devices[f"{STATION}.gate-in"].misread_rate = 0
    sim.devices[f"{STATION}.gate-in"].passage("沪AD12345", "in")
    (p,) = payloads(sink, "gate-in", "passage")
    assert (p["plate"], p["direction"], p["seq"]) == ("沪AD12345", "in", 1)


# -- a whole day on the wire ----------------------------------------------------------------------


def test_every_message_of_a_simulated_day_parses_with_the_contract_and_keeps_seq_and_ts_in_order():
    sim, sink = records_of_a_day(11)
    last: dict[str, tuple[int, int, object]] = {}
    kinds = defaultdict(int)
    for r in sink.records:
        message = t.parse_message(r.topic, r.payload, r.at + timedelta(seconds=1))  # BadMessage fails the test
        kinds[type(message).__name__] += 1
        if isinstance(message, t.DeviceMessage):
            assert not message.unknown_fields
            prev = last.get(r.device)
            if prev is not None and prev[0] == message.boot:
                assert message.seq == prev[1] + 1, r
                assert message.device_ts >= prev[2] or message.device_ts.year == 2000, r
            elif prev is not None:
                assert message.boot == prev[0] + 1 and message.seq == 1, r
            last[r.device] = (message.boot, message.seq, message.device_ts)
    assert set(kinds) == {"StatusMessage", "TransactionEvent", "MeterSample", "DoorCount", "GatePassage",
                          "OnlineMessage"}
    counts = sim.counts
    assert counts["sessions_fast"] > 150 and counts["sessions_slow"] > 40
    assert counts["faults"] > 0 and counts["boots"] > len(sim.devices)


def test_arrivals_follow_the_off_peak_profile():
    _, sink = records_of_a_day(3, hours=72, stations=["yangpu-bus-depot"])
    by_hour = defaultdict(int)
    for r in sink.records:
        if r.topic.endswith("/passage") and json.loads(r.payload)["direction"] == "in":
            by_hour[r.at.astimezone(CST).hour] += 1
    peak = sum(by_hour[h] for h in (11, 12, 13, 20, 21, 22))  # lunch and late evening
    off = sum(by_hour[h] for h in (2, 3, 4, 7, 8, 17, 18))   # small hours and rush hours
    assert peak > 2.5 * off  # the profile says 3.5 times


def test_cars_are_left_plugged_in_after_charging():
    _, sink = records_of_a_day(5, hours=12, stations=["yangpu-liaoyuan"])
    idle_minutes = []
    for charger in DEMO_LAYOUTS[STATION].chargers_of("fast"):
        since = None
        for p in payloads(sink, charger.code, "status"):
            if p["status"] == "SuspendedEV":
                since = p["ts"]
            elif since and p["status"] in ("Finishing", "Available"):
                from datetime import datetime
                idle_minutes.append((datetime.fromisoformat(p["ts"]) - datetime.fromisoformat(since)).seconds / 60)
                since = None
    assert max(idle_minutes) > 15


def test_lounge_visitors_walk_in_and_out_through_the_door_counters():
    _, sink = records_of_a_day(2, hours=12, stations=["yangpu-liaoyuan"])
    hall = payloads(sink, "door-hall", "count")
    assert max(p["in_total"] for p in hall) > 30
    tea = payloads(sink, "door-tea", "count")
    assert max(p["in_total"] for p in tea) > 5


# -- bookings (a fake service that holds chargers as the real one does) ------------------------------


class FakeService:
    """Accepts every booking, holds a free fast charger 10 minutes before the slot with reserve_now."""

    def __init__(self):
        self.sim = None
        self.next_id = 100
        self.booked: list[tuple[str, int]] = []
        self.cancelled: list[int] = []

    def book(self, driver, station, slot_start):
        self.next_id += 1
        ticket = Ticket(self.next_id, slot_start, None, "booked")
        self.booked.append((driver.id_tag, ticket.booking_id))
        self.sim.scheduler.at(slot_start - timedelta(minutes=10), self._hold, station, driver.id_tag, ticket)
        return ticket

    def _hold(self, station, id_tag, ticket):
        if ticket.booking_id in self.cancelled:
            return
        for charger in self.sim.lives[station].chargers:
            if charger.fast and charger.connector.status == "Available":
                topic, payload = t.format_command(t.ReserveNow(
                    station=station, charger=charger.device_id, request_id=f"hold-{ticket.booking_id}",
                    reservation_id=ticket.booking_id, connector=1, id_tag=id_tag,
                    expiry=ticket.slot_start + timedelta(minutes=10)))
                self.sim.deliver(topic, payload)
                return

    def cancel(self, driver, booking_id):
        self.cancelled.append(booking_id)
        return True


def test_booked_drivers_start_on_the_charger_held_for_them_and_some_cancel():
    service = FakeService()
    sink = MemorySink()
    sim = Simulation([DEMO_LAYOUTS["yangpu-bus-depot"]], start=START, seed=4, sink=sink, bookings=service,
                     behaviour=Behaviour(booking_share=0.6, incidents=0))
    service.sim = sim
    sim.run_until(START + timedelta(hours=12))
    assert len(service.booked) > 30 and service.cancelled
    starts = [json.loads(r.payload) for r in sink.records if r.topic.endswith("/transaction")]
    consumed = [s for s in starts if s["event"] == "start" and s.get("reservation_id")]
    assert len(consumed) > 10
    booked = dict(service.booked)
    assert all(booked.get(s["id_tag"]) is not None for s in consumed)
    results = [json.loads(r.payload)["status"] for r in sink.records if r.topic.endswith("/command_results")]
    assert results.count("Accepted") >= len(consumed)


# -- small rules -------------------------------------------------------------------------------------


def test_slots_round_to_the_nearest_half_hour_in_station_time():
    assert slot_of(START + timedelta(minutes=14), CST) == START
    assert slot_of(START + timedelta(minutes=16), CST) == START + timedelta(minutes=30)
    assert slot_of(START + timedelta(minutes=50), CST) == START + timedelta(hours=1)


def test_poisson_counts_have_the_requested_mean():
    import random

    rng = random.Random(1)
    for lam in (0.5, 4, 50):
        mean = sum(poisson(rng, lam) for _ in range(4000)) / 4000
        assert mean == pytest.approx(lam, rel=0.08)


def test_simulator_layouts_match_the_demo_seed():
    from chargeapp.seed import demo_stations

    for spec in demo_stations():
        layout = DEMO_LAYOUTS[spec.code]
        assert [(c.code, c.kind, c.max_power_kw, c.connectors) for c in spec.chargers] == \
               [(c.code, c.kind, c.max_power_kw, c.connectors) for c in layout.chargers]
        assert [(s.code, s.zone_in, s.zone_out) for s in spec.sensors] == \
               [(d.code, d.zone_in, d.zone_out) for d in layout.doors]
        assert list(spec.gates) == [g.code for g in layout.gates]
        assert (spec.opens_at, spec.closes_at, spec.timezone) == (layout.opens_at, layout.closes_at, layout.timezone)


def test_the_roster_has_unique_accounts_tags_and_plates_valid_on_the_wire():
    drivers = roster(list(DEMO_LAYOUTS.values()))
    assert len(drivers) == sum(roster_size(l) for l in DEMO_LAYOUTS.values())
    for attr in ("email", "id_tag", "plate"):
        assert len({getattr(d, attr) for d in drivers}) == len(drivers)
    assert all(len(d.id_tag) <= t.ID_TAG_MAX_LENGTH and len(d.plate) == 8 for d in drivers)
    assert roster(list(DEMO_LAYOUTS.values())) == drivers  # fixed, whatever the seed
