"""Lounge occupancy rules: passages from cumulative counters, zone counts, baselines, display."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeapp.domain.occupancy import (
    Baseline,
    CounterReading,
    CounterState,
    Passages,
    ZoneChange,
    ZoneOccupancy,
    door_changes,
    effective_baseline,
    latest_reset,
    passages_since,
    zone_count,
    zone_deltas,
    zone_occupancy,
)

pytestmark = pytest.mark.unit

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 11, 22, 14, 30, tzinfo=SH)


def reading(boot, seq, in_total, out_total, at=T0):
    return CounterReading(boot=boot, seq=seq, in_total=in_total, out_total=out_total, at=at)


def state(boot, seq, in_total, out_total):
    return CounterState(boot=boot, seq=seq, in_total=in_total, out_total=out_total)


# --------------------------------------------------------------------------- passages_since


def test_next_reading_of_the_same_boot_carries_the_difference():
    new_state, passages = passages_since(state(12, 3308, 1534, 1521), reading(12, 3309, 1536, 1522))
    assert passages == Passages(entered=2, left=1)
    assert new_state == state(12, 3309, 1536, 1522)


def test_a_lost_message_loses_no_passage_because_the_next_carries_it():
    _, passages = passages_since(state(12, 3308, 1534, 1521), reading(12, 3312, 1540, 1525))
    assert passages == Passages(6, 4)


def test_a_redelivered_message_is_a_no_op():
    assert passages_since(state(12, 3308, 1534, 1521), reading(12, 3308, 1534, 1521)) is None


def test_an_older_message_of_the_same_boot_is_stale():
    assert passages_since(state(12, 3308, 1534, 1521), reading(12, 3300, 1530, 1519)) is None


def test_a_message_from_an_older_boot_is_stale():
    assert passages_since(state(13, 2, 3, 1), reading(12, 3309, 1536, 1522)) is None


def test_after_a_reboot_every_total_is_new_passages():
    new_state, passages = passages_since(state(12, 3308, 1534, 1521), reading(13, 1, 3, 1))
    assert passages == Passages(3, 1)
    assert new_state == state(13, 1, 3, 1)


def test_after_a_reboot_whose_first_messages_were_lost_the_totals_still_count_from_zero():
    _, passages = passages_since(state(12, 3308, 1534, 1521), reading(13, 4, 5, 2))
    assert passages == Passages(5, 2)


def test_a_total_that_drops_without_a_reboot_counts_nothing_and_is_adopted():
    new_state, passages = passages_since(state(12, 3308, 1534, 1521), reading(12, 3309, 10, 1523))
    assert passages == Passages(0, 2)
    assert new_state == state(12, 3309, 10, 1523)
    _, after = passages_since(new_state, reading(12, 3310, 12, 1523))
    assert after == Passages(2, 0)


def test_a_reading_with_no_new_passages_still_advances_the_state():
    new_state, passages = passages_since(state(12, 3308, 1534, 1521), reading(12, 3309, 1534, 1521))
    assert passages == Passages(0, 0) and passages.none
    assert new_state.seq == 3309


def test_the_first_reading_ever_mid_boot_is_a_baseline_without_passages():
    new_state, passages = passages_since(None, reading(12, 3308, 1534, 1521))
    assert passages == Passages(0, 0)
    assert new_state == state(12, 3308, 1534, 1521)


def test_the_first_reading_ever_at_seq_1_counts_the_totals_since_boot():
    new_state, passages = passages_since(None, reading(1, 1, 2, 0))
    assert passages == Passages(2, 0)
    assert new_state == state(1, 1, 2, 0)


def test_readings_refuse_negative_totals_and_naive_times():
    with pytest.raises(ValueError):
        reading(1, 1, -1, 0)
    with pytest.raises(ValueError):
        reading(1, 1, True, 0)
    with pytest.raises(ValueError):
        CounterReading(boot=1, seq=1, in_total=0, out_total=0, at=datetime(2026, 11, 22, 14, 30))


@st.composite
def sensor_history(draw):
    """A sensor's life after a known state: boots of passages, each passage published as a reading."""
    boots = draw(st.lists(st.lists(st.sampled_from(["in", "out"]), max_size=8), min_size=1, max_size=4))
    readings, true_in, true_out = [], 0, 0
    for b, passages in enumerate(boots, start=1):
        seq, in_total, out_total = 0, 0, 0
        seq += 1  # the boot message
        readings.append((b, reading(b, seq, 0, 0)))
        for p in passages:
            seq += 1
            if p == "in":
                in_total += 1
                true_in += 1
            else:
                out_total += 1
                true_out += 1
            readings.append((b, reading(b, seq, in_total, out_total)))
    return readings, true_in, true_out


@settings(max_examples=300, deadline=None)
@given(history=sensor_history(), data=st.data())
def test_no_passage_is_lost_or_double_counted_across_reboots_gaps_and_redelivery(history, data):
    readings, true_in, true_out = history
    # Deliver: inside a boot messages may be lost (not the boot's last one), reordered and
    # redelivered; anything already delivered may be redelivered at any later point.
    delivered = []
    for boot in sorted({b for b, _ in readings}):
        own = [r for b, r in readings if b == boot]
        last, rest = own[-1], own[:-1]
        kept = [r for r in rest if data.draw(st.booleans())]
        batch = data.draw(st.permutations(kept + [last]))
        # the boot's last reading arrives before the next boot's first one
        batch = [r for r in batch if r is not last] + [last]
        for r in batch:
            delivered.append(r)
            if data.draw(st.booleans()):
                delivered.append(data.draw(st.sampled_from(delivered)))
    current = state(0, 99, 500, 480)  # a known state of a boot before the history starts
    total_in = total_out = 0
    for r in delivered:
        result = passages_since(current, r)
        if result is not None:
            current, p = result
            total_in += p.entered
            total_out += p.left
    assert (total_in, total_out) == (true_in, true_out)


# --------------------------------------------------------------------------- zones


def test_a_door_from_outside_moves_people_into_its_zone_only():
    assert zone_deltas(Passages(3, 1), "hall", None) == {"hall": 2}


def test_a_door_between_two_zones_moves_people_out_of_one_into_the_other():
    assert zone_deltas(Passages(3, 1), "tea_room", "hall") == {"tea_room": 2, "hall": -2}
    assert zone_deltas(Passages(0, 2), "tea_room", "hall") == {"tea_room": -2, "hall": 2}


def test_passages_that_cancel_out_change_no_zone():
    assert zone_deltas(Passages(2, 2), "tea_room", "hall") == {}


def test_a_door_cannot_lead_into_the_zone_it_leaves():
    with pytest.raises(ValueError):
        zone_deltas(Passages(1, 0), "hall", "hall")


def test_door_changes_are_stamped_with_the_reading_time():
    assert door_changes(Passages(1, 0), T0, "tea_room", "hall") == {
        "tea_room": ZoneChange(T0, 1), "hall": ZoneChange(T0, -1),
    }


def at(hh, mm):
    return datetime(2026, 11, 22, hh, mm, tzinfo=SH)


def test_zone_count_is_the_baseline_plus_later_changes():
    changes = [ZoneChange(at(9, 0), 2), ZoneChange(at(9, 5), 3), ZoneChange(at(9, 10), -1)]
    assert zone_count(Baseline(at(8, 0), 4), changes) == 8
    assert zone_count(None, changes) == 4


def test_changes_at_or_before_the_baseline_do_not_move_it():
    changes = [ZoneChange(at(9, 0), 5), ZoneChange(at(10, 0), 1), ZoneChange(at(10, 1), 1)]
    assert zone_count(Baseline(at(10, 0), 3), changes) == 4


def test_the_count_is_floored_at_zero_at_every_step():
    # 04:00 reset to 0; 04:10 someone leaves whose entry was missed; 04:20 two come in.
    changes = [ZoneChange(at(4, 20), 2), ZoneChange(at(4, 10), -1)]
    assert zone_count(Baseline(at(4, 0), 0), changes) == 2


def test_late_changes_are_applied_in_time_order_not_arrival_order():
    arrival_order = [ZoneChange(at(9, 30), -2), ZoneChange(at(9, 0), 3)]
    assert zone_count(None, arrival_order) == 1


def test_at_one_instant_entries_apply_before_exits():
    same_instant = [ZoneChange(at(9, 0), -1), ZoneChange(at(9, 0), 1)]
    assert zone_count(None, same_instant) == 0
    assert zone_count(None, list(reversed(same_instant))) == 0


@given(st.lists(st.tuples(st.integers(0, 600), st.integers(-5, 5)), max_size=30), st.integers(0, 50))
def test_zone_count_is_never_negative_and_ignores_arrival_order(raw, start):
    base = at(8, 0)
    changes = [ZoneChange(base + timedelta(minutes=m), d) for m, d in raw]
    baseline = Baseline(base, start)
    count = zone_count(baseline, changes)
    assert count >= 0
    assert count == zone_count(baseline, list(reversed(changes)))


# --------------------------------------------------------------------------- baselines


def test_the_latest_reset_is_today_once_its_time_has_passed():
    assert latest_reset(at(9, 0), time(4, 0), SH) == at(4, 0)


def test_before_the_reset_time_the_latest_reset_is_yesterday():
    assert latest_reset(at(3, 59), time(4, 0), SH) == datetime(2026, 11, 21, 4, 0, tzinfo=SH)


def test_the_reset_instant_itself_counts_as_reset():
    assert latest_reset(at(4, 0), time(4, 0), SH) == at(4, 0)


def test_no_reset_when_reset_is_off():
    assert latest_reset(at(9, 0), None, SH) is None


def test_the_reset_follows_the_station_zone_not_the_zone_of_now():
    now_utc = datetime(2026, 11, 21, 20, 30, tzinfo=timezone.utc)  # 04:30 on the 22nd in Shanghai
    assert latest_reset(now_utc, time(4, 0), SH) == at(4, 0)
    assert latest_reset(now_utc, time(4, 0), SH).tzinfo == SH


def test_a_reset_in_a_dst_gap_happens_after_the_jump():
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29; a 02:30 reset happens at 03:30 CEST.
    reset = latest_reset(datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN), time(2, 30), BERLIN)
    assert reset == datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc)
    assert (reset.hour, reset.minute) == (3, 30)
    before = latest_reset(datetime(2026, 3, 29, 3, 10, tzinfo=BERLIN), time(2, 30), BERLIN)
    assert before == datetime(2026, 3, 28, 2, 30, tzinfo=BERLIN)


def test_a_reset_in_a_repeated_hour_happens_once_at_its_first_occurrence():
    # Europe/Berlin repeats 02:00-03:00 on 2026-10-25: 02:30 CEST (00:30 UTC) then 02:30 CET.
    now = datetime(2026, 10, 25, 1, 45, tzinfo=timezone.utc)  # the second 02:45
    reset = latest_reset(now, time(2, 30), BERLIN)
    # compared in UTC: PEP 495 makes == across zones False for a repeated wall time
    assert reset.astimezone(timezone.utc) == datetime(2026, 10, 25, 0, 30, tzinfo=timezone.utc)
    assert latest_reset(datetime(2026, 10, 25, 0, 29, tzinfo=timezone.utc), time(2, 30), BERLIN).day == 24


def test_reset_needs_an_aware_now_and_a_wall_time():
    with pytest.raises(ValueError):
        latest_reset(datetime(2026, 11, 22, 9, 0), time(4, 0), SH)
    with pytest.raises(ValueError):
        latest_reset(at(9, 0), time(4, 0, tzinfo=timezone.utc), SH)


def test_a_manager_set_after_the_reset_is_the_baseline():
    manual = Baseline(at(10, 0), 7)
    assert effective_baseline(manual, at(12, 0), time(4, 0), SH) == manual


def test_the_nightly_reset_supersedes_yesterdays_manager_set():
    manual = Baseline(datetime(2026, 11, 21, 22, 0, tzinfo=SH), 7)
    assert effective_baseline(manual, at(12, 0), time(4, 0), SH) == Baseline(at(4, 0), 0)


def test_a_manager_set_at_the_reset_instant_wins():
    manual = Baseline(at(4, 0), 2)
    assert effective_baseline(manual, at(12, 0), time(4, 0), SH) == manual


def test_without_a_reset_the_manager_set_or_nothing_is_the_baseline():
    manual = Baseline(at(10, 0), 7)
    assert effective_baseline(manual, at(12, 0), None, SH) == manual
    assert effective_baseline(None, at(12, 0), None, SH) is None


def test_a_manager_set_stamped_in_the_future_is_not_yet_in_force():
    assert effective_baseline(Baseline(at(13, 0), 7), at(12, 0), time(4, 0), SH) == Baseline(at(4, 0), 0)


def test_baselines_refuse_negative_counts():
    with pytest.raises(ValueError):
        Baseline(at(4, 0), -1)


def test_worked_example_of_a_day_in_the_tea_room():
    # Reset at 04:00; door changes before it are history; the manager counts 6 at 15:00.
    changes = [ZoneChange(at(3, 50), 4), ZoneChange(at(9, 0), 3), ZoneChange(at(9, 40), -5),
               ZoneChange(at(10, 0), 4), ZoneChange(at(14, 59), 1), ZoneChange(at(15, 10), 2)]
    morning = effective_baseline(None, at(12, 0), time(4, 0), SH)
    assert zone_count(morning, [c for c in changes if c.at <= at(12, 0)]) == 4  # 3, then -5 -> 0, then 4
    afternoon = effective_baseline(Baseline(at(15, 0), 6), at(16, 0), time(4, 0), SH)
    assert zone_count(afternoon, changes) == 8


# --------------------------------------------------------------------------- display


def test_free_places_never_go_below_zero():
    assert zone_occupancy(12, 20, [True]).free == 8
    over = zone_occupancy(23, 20, [True, True])
    assert over.free == 0 and over.full


def test_a_zone_is_uncertain_while_any_of_its_sensors_is_offline():
    assert zone_occupancy(5, 20, [True, False]) == ZoneOccupancy(5, 20, uncertain=True)
    assert not zone_occupancy(5, 20, [True, True]).uncertain


def test_a_zone_without_sensors_is_not_uncertain():
    assert not zone_occupancy(0, 10, []).uncertain


def test_zone_occupancy_accepts_any_iterable_of_sensor_states():
    assert zone_occupancy(1, 10, (s for s in [True, False])).uncertain


def test_zone_occupancy_refuses_negative_numbers():
    with pytest.raises(ValueError):
        zone_occupancy(-1, 10, [])
    with pytest.raises(ValueError):
        zone_occupancy(1, -10, [])
