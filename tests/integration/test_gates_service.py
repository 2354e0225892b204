"""Garage gates service: plate passages to parking stays (chargeapp.services.gates)."""
from __future__ import annotations

from datetime import timedelta
from itertools import permutations

import pytest
from sqlalchemy import delete, select

from chargeapp.db import models as m
from chargeapp.services import gates
from chargeapp.services.common import StationNotFound
from tests.conftest import T0

pytestmark = pytest.mark.integration

PLATE = "沪A12345"


def passage(session, direction, at, plate=PLATE, gate=None):
    gate = gate or ("G-in" if direction == "in" else "G-out")
    return gates.record_gate_passage(session, station_code="s1", gate_code=gate, plate=plate,
                                     direction=direction, at=at, now=at)


def stays(session):
    rows = session.scalars(select(m.ParkingStay).order_by(m.ParkingStay.id))
    return sorted(((s.entry_at, s.exit_at, tuple(s.flags)) for s in rows),
                  key=lambda r: r[0] or r[1])


def at(minutes):
    return T0 + timedelta(minutes=minutes)


def test_gate_in_then_out_makes_one_stay(session, station):
    entered = passage(session, "in", at(0))
    assert gates.open_stay(session, station.id, PLATE).id == entered.id
    left = passage(session, "out", at(95))
    assert left.id == entered.id
    assert (left.entry_at, left.exit_at, left.flags) == (at(0), at(95), [])
    gate_in, gate_out = (session.scalar(select(m.Gate.id).where(m.Gate.code == c)) for c in ("G-in", "G-out"))
    assert (left.entry_gate_id, left.exit_gate_id) == (gate_in, gate_out)
    assert gates.open_stay(session, station.id, PLATE) is None


def test_same_passage_twice_has_one_effect(session, station):
    first = passage(session, "in", at(0))
    assert passage(session, "in", at(0)).id == first.id
    passage(session, "out", at(30))
    passage(session, "out", at(30))
    assert stays(session) == [(at(0), at(30), ())]


def test_out_without_in_is_recorded_and_flagged(session, station):
    stay = passage(session, "out", at(30))
    assert (stay.entry_at, stay.exit_at, stay.flags) == (None, at(30), ["out_without_in"])


def test_in_while_open_flags_the_open_stay_and_starts_a_new_one(session, station):
    passage(session, "in", at(0))
    second = passage(session, "in", at(60))
    passage(session, "out", at(90))
    assert stays(session) == [(at(0), None, ("in_while_open",)), (at(60), at(90), ())]
    assert gates.open_stay(session, station.id, PLATE) is None
    assert second.exit_at == at(90)


def test_delayed_in_completes_the_stay_its_out_started(session, station):
    passage(session, "out", at(90))
    stay = passage(session, "in", at(0))
    assert stays(session) == [(at(0), at(90), ())]  # the flag describes the stay, which is now whole
    assert stay.entry_at == at(0)


@pytest.mark.parametrize("order", list(permutations(range(4))))
def test_two_visits_arriving_in_any_order_give_two_clean_stays(session, station, order):
    events = [("in", at(0)), ("out", at(30)), ("in", at(60)), ("out", at(90))]
    for i in order:
        passage(session, *events[i])
    assert stays(session) == [(at(0), at(30), ()), (at(60), at(90), ())]


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_stays_do_not_depend_on_the_order_passages_arrive_in(session, station, order):
    events = [("in", at(0)), ("in", at(60)), ("out", at(90))]
    for i in order:
        passage(session, *events[i])
    assert stays(session) == [(at(0), None, ("in_while_open",)), (at(60), at(90), ())]


@pytest.mark.parametrize("order", list(permutations(range(3))))
def test_two_outs_after_one_in_give_a_stay_and_an_out_without_in_in_any_order(session, station, order):
    events = [("in", at(0)), ("out", at(30)), ("out", at(50))]
    for i in order:
        passage(session, *events[i])
    assert stays(session) == [(at(0), at(30), ()), (None, at(50), ("out_without_in",))]


def test_next_visit_after_a_closed_stay_is_a_new_stay(session, station):
    passage(session, "in", at(0))
    passage(session, "out", at(30))
    passage(session, "in", at(120))
    passage(session, "out", at(150))
    assert stays(session) == [(at(0), at(30), ()), (at(120), at(150), ())]


def test_plates_are_normalised(session, station):
    assert gates.normalise_plate(" 沪a·12345 ") == "沪A12345"
    assert gates.normalise_plate("沪Ａ１２３４５") == "沪A12345"  # full-width
    assert gates.normalise_plate("粤b-d1234 5") == "粤BD12345"
    entered = passage(session, "in", at(0), plate="沪a 12345")
    left = passage(session, "out", at(30), plate="沪A12345")
    assert entered.id == left.id and left.plate == "沪A12345"


def test_empty_plate_or_unknown_direction_is_refused(session, station):
    with pytest.raises(gates.InvalidPlate):
        passage(session, "in", at(0), plate=" · ")
    with pytest.raises(gates.InvalidDirection):
        passage(session, "sideways", at(0))
    with pytest.raises(gates.GateNotFound):
        passage(session, "in", at(0), gate="G-9")
    with pytest.raises(StationNotFound):
        gates.record_gate_passage(session, station_code="nope", gate_code="G-in", plate=PLATE,
                                  direction="in", at=at(0), now=at(0))


def test_plates_are_kept_apart_per_plate_and_station(session, station):
    passage(session, "in", at(0))
    other = passage(session, "out", at(10), plate="沪B99999")
    assert other.flags == ["out_without_in"]
    assert gates.open_stay(session, station.id, PLATE).entry_at == at(0)


def test_change_to_a_settled_stay_is_flagged_for_a_correction(session, station):
    stay = passage(session, "in", at(0))
    passage(session, "out", at(60))
    stay.settled_at = at(70)
    session.flush()
    passage(session, "out", at(40))  # an earlier out delayed past the receipt
    assert (stay.exit_at, "changed_after_settled" in stay.flags) == (at(40), True)


def test_driver_stays_are_the_stays_of_plates_registered_to_the_driver_during_the_stay(session, station, driver):
    reg = session.scalar(select(m.PlateRegistration).where(m.PlateRegistration.user_id == driver.id))
    reg.valid_from = at(0)
    reg.valid_to = at(200)
    session.flush()
    before = passage(session, "in", at(-100)); passage(session, "out", at(-50))  # noqa: E702
    during = passage(session, "in", at(100)); passage(session, "out", at(150))  # noqa: E702
    after = passage(session, "in", at(300))
    found = gates.driver_stays(session, driver.id, since=at(-1000))
    assert [s.id for s in found] == [during.id]
    assert before.id != during.id != after.id


def test_driver_stays_include_a_stay_still_open_and_respect_since(session, station, driver):
    passage(session, "in", at(0)); passage(session, "out", at(30))  # noqa: E702
    open_now = passage(session, "in", at(120))
    assert [s.id for s in gates.driver_stays(session, driver.id, since=at(60))] == [open_now.id]
    assert len(gates.driver_stays(session, driver.id, since=at(-60))) == 2


def test_driver_without_plates_has_no_stays(session, station, driver):
    session.execute(delete(m.PlateRegistration))
    passage(session, "in", at(0))
    assert gates.driver_stays(session, driver.id, since=at(-60)) == []


def test_gate_online_flag(session, station):
    assert gates.set_gate_online(session, station_code="s1", gate_code="G-in", online=False, now=T0)
    assert not gates.set_gate_online(session, station_code="s1", gate_code="G-in", online=False, now=T0)
    with pytest.raises(gates.GateNotFound):
        gates.set_gate_online(session, station_code="s1", gate_code="nope", online=True, now=T0)
