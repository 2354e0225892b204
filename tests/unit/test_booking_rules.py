"""The pure booking rules: grid, horizon, opening hours, charger choice, check-in window, suspension."""
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from chargeapp.domain import booking as b
from chargeapp.domain.intervals import Interval

pytestmark = pytest.mark.unit

SH = ZoneInfo("Asia/Shanghai")
R = b.BookingRules()
NOW = datetime(2026, 11, 22, 14, 5, tzinfo=SH)
SLOT = datetime(2026, 11, 22, 15, 0, tzinfo=SH)


def at(h, m, s=0, day=22):
    return datetime(2026, 11, day, h, m, s, tzinfo=SH)


@pytest.mark.parametrize("start, ok", [
    (at(15, 0), True), (at(15, 30), True), (at(15, 15), False), (at(15, 0, 1), False),
])
def test_slots_start_on_the_half_hour_grid_in_station_time(start, ok):
    assert b.on_grid(start, SH, R) is ok


def test_grid_is_read_in_station_time_not_utc():
    # 07:00 UTC is 15:00 in Shanghai: on the grid; in Kathmandu (+05:45) it would not be.
    utc = datetime(2026, 11, 22, 7, 0, tzinfo=timezone.utc)
    assert b.on_grid(utc, SH, R)
    assert not b.on_grid(utc, ZoneInfo("Asia/Kathmandu"), R)


@pytest.mark.parametrize("start, error", [
    (at(14, 0), b.SlotInPast),
    (at(14, 10), b.SlotNotOnGrid),
    (at(14, 30, day=23), b.SlotTooFarAhead),
])
def test_invalid_slots_are_refused_with_their_reason(start, error):
    with pytest.raises(error):
        b.validate_slot(start, NOW, SH, R, b.OpeningHours())


def test_slot_exactly_24_hours_ahead_is_bookable():
    now = at(14, 0)
    assert b.validate_slot(at(14, 0, day=23), now, SH, R, b.OpeningHours()).start == at(14, 0, day=23)


def test_slot_outside_opening_hours_is_refused_and_the_last_full_slot_is_bookable():
    hours = b.OpeningHours(time(7, 0), time(22, 0))
    b.validate_slot(at(21, 30), NOW, SH, R, hours)
    with pytest.raises(b.StationClosed):
        b.validate_slot(at(22, 0), NOW, SH, R, hours)


def test_overnight_opening_hours_cover_slots_after_midnight():
    hours = b.OpeningHours(time(18, 0), time(2, 0))
    b.validate_slot(at(1, 30, day=23), NOW, SH, R, hours)
    with pytest.raises(b.StationClosed):
        b.validate_slot(at(2, 0, day=23), NOW, SH, R, hours)


def test_slot_overlapping_a_maintenance_window_is_refused():
    window = Interval(at(15, 15), at(16, 0))
    with pytest.raises(b.StationInMaintenance):
        b.validate_slot(SLOT, NOW, SH, R, b.OpeningHours(), [window])
    b.validate_slot(at(16, 0), NOW, SH, R, b.OpeningHours(), [window])


def test_a_day_has_48_slots():
    assert len(b.day_slot_starts(date(2026, 11, 22), SH, R)) == 48


# -- why a whole day has no bookable slot --------------------------------------------------


def test_a_day_with_a_bookable_slot_has_no_reason():
    assert b.day_unbookable_reason(date(2026, 11, 23), NOW, SH, R, b.OpeningHours()) is None


def test_a_day_beyond_the_horizon_says_when_its_first_open_slot_can_be_booked():
    short = b.BookingRules(horizon=timedelta(hours=4))
    hours = b.OpeningHours(time(7, 0), time(22, 0))
    reason = b.day_unbookable_reason(date(2026, 11, 23), NOW, SH, short, hours)
    assert isinstance(reason, b.SlotTooFarAhead)
    # the first open slot is 07:00 tomorrow, not 00:00 (closed): bookable from 03:00 tomorrow
    assert datetime.fromisoformat(reason.details["opens_at"]) == at(3, 0, day=23)


def test_a_day_closed_whatever_the_horizon_says_closed():
    hours = b.OpeningHours(time(7, 0), time(7, 30))
    reason = b.day_unbookable_reason(date(2026, 11, 22), NOW, SH, R, hours)
    assert isinstance(reason, b.StationClosed)


def test_maintenance_over_the_rest_of_the_day_says_maintenance():
    window = Interval(at(14, 0), at(0, 0, day=23))
    reason = b.day_unbookable_reason(date(2026, 11, 22), NOW, SH, R, b.OpeningHours(), [window])
    assert isinstance(reason, b.StationInMaintenance)


def test_a_day_that_has_passed_says_its_slots_have_started():
    reason = b.day_unbookable_reason(date(2026, 11, 21), NOW, SH, R, b.OpeningHours())
    assert isinstance(reason, b.SlotInPast)


C = [b.ChargerCandidate(1, "F1"), b.ChargerCandidate(2, "F2"), b.ChargerCandidate(3, "F3"),
     b.ChargerCandidate(9, "S01", fast=False)]


def test_any_charger_gets_the_first_free_by_code():
    assert b.choose_charger(None, C, {1}, R) == 2


def test_named_charger_taken_is_slot_unavailable():
    with pytest.raises(b.SlotUnavailable):
        b.choose_charger(1, C, {1}, R)


def test_a_charger_is_taken_for_a_slot_its_booking_overlaps_in_time_not_only_one_starting_with_it():
    """Booked 15:30-16:00 on 30-minute slots, asked 15:00-16:00 on 60-minute ones: taken. Touching is not."""
    booked = [(1, Interval(at(15, 30), at(16, 0))), (2, Interval(at(14, 0), at(15, 0)))]
    hour = b.slot_span(at(15, 0), b.BookingRules(slot=timedelta(minutes=60)))
    assert b.chargers_taken(hour, booked) == {1}
    assert b.chargers_taken(Interval(at(16, 0), at(17, 0)), booked) == set()
    assert b.choose_charger(None, C, b.chargers_taken(hour, booked), R) == 2


def test_slow_charger_cannot_be_booked():
    with pytest.raises(b.ChargerNotBookable):
        b.choose_charger(9, C, set(), R)


def test_walk_in_reserve_limits_bookings_per_slot():
    rules = b.BookingRules(walkin_reserved_fast=1)
    assert b.choose_charger(None, C, {1}, rules) == 2
    with pytest.raises(b.SlotUnavailable):
        b.choose_charger(3, C, {1, 2}, rules)


@pytest.mark.parametrize("start, counts", [
    (SLOT - timedelta(minutes=10), True),            # exactly -10:00
    (SLOT - timedelta(minutes=10, seconds=1), None),  # started earlier: counts only if still running
    (SLOT + timedelta(minutes=10), True),            # exactly +10:00
    (SLOT + timedelta(minutes=10, seconds=1), False),
])
def test_checkin_window_is_inclusive_at_both_ends(start, counts):
    if counts is None:
        assert b.counts_as_checkin(SLOT, start, None, R)  # still running at the window start
        assert not b.counts_as_checkin(SLOT, start, start + timedelta(seconds=0.5), R)
    else:
        assert b.counts_as_checkin(SLOT, start, None, R) is counts


def test_session_started_earlier_and_still_running_counts():
    assert b.counts_as_checkin(SLOT, SLOT - timedelta(hours=1), SLOT - timedelta(minutes=10), R)


def test_no_show_is_due_at_plus_10_01_not_at_plus_10_00():
    assert not b.no_show_due(SLOT, SLOT + timedelta(minutes=10), R)
    assert b.no_show_due(SLOT, SLOT + timedelta(minutes=10, seconds=1), R)


def test_delayed_booking_grace_runs_from_the_hold():
    held = SLOT + timedelta(minutes=25)
    assert not b.no_show_due(SLOT, held + timedelta(minutes=10), R, held)
    assert b.counts_as_checkin(SLOT, held + timedelta(minutes=9), None, R, held)


def test_three_no_shows_in_30_days_suspend_for_7_days():
    t = [at(10, 0, day=1), at(10, 0, day=10), at(10, 0, day=20)]
    assert b.suspended_until(t[:2], at(12, 0, day=20), R) is None
    assert b.suspended_until(t, at(12, 0, day=20), R) == t[2] + timedelta(days=7)
    assert b.suspended_until(t, t[2] + timedelta(days=7), R) is None


def test_no_shows_more_than_30_days_apart_do_not_suspend():
    t = [datetime(2026, 9, 1, tzinfo=SH), datetime(2026, 9, 20, tzinfo=SH), datetime(2026, 10, 2, tzinfo=SH)]
    assert b.suspended_until(t, datetime(2026, 10, 2, 1, tzinfo=SH), R) is None


CH = [b.ChargerNow(1, "F1", "Available"), b.ChargerNow(2, "F2", "Available"), b.ChargerNow(3, "F3", "Charging")]


def test_hold_on_assigned_charger_when_free():
    assert b.plan_hold(1, CH, set()) == b.HoldPlan("hold", 1)


def test_busy_assigned_charger_moves_the_booking_and_never_cuts_anyone_off():
    assert b.plan_hold(3, CH, set()) == b.HoldPlan("move", 1)


def test_no_free_charger_means_wait():
    assert b.plan_hold(3, CH, {1, 2}) == b.HoldPlan("wait", None)


def test_faulted_or_offline_charger_is_not_free():
    chargers = [b.ChargerNow(1, "F1", "Faulted"), b.ChargerNow(2, "F2", "Available", online=False)]
    assert b.plan_hold(1, chargers, set()).action == "wait"


def test_fault_moves_a_later_booking_to_a_charger_free_for_that_slot():
    plan = b.rehome_on_fault(SLOT, NOW, C, broken_id=1, taken_ids={2}, rules=R)
    assert plan == b.HoldPlan("move", 3)


def test_fault_with_no_other_charger_disrupts_a_booking_not_yet_due():
    assert b.rehome_on_fault(SLOT, NOW, C, 1, {2, 3}, R).action == "disrupted"


def test_fault_leaves_bookings_beyond_two_hours():
    assert b.rehome_on_fault(SLOT + timedelta(hours=3), NOW, C, 1, set(), R).action == "keep"
