"""Connector usage rules of the reports (chargeapp.domain.usage): day windows, time by state, idle runs,
energy spread over a session, and day figures that add up to any range."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeapp.domain.charger import ConnectorStatus as S
from chargeapp.domain.charger import StatusChange, status_intervals
from chargeapp.domain.usage import (
    HOURLY,
    DayFigures,
    IdleParts,
    SessionRecord,
    StateTime,
    add_sessions,
    adjacent_runs,
    connector_time,
    day_figures,
    day_times,
    day_windows,
    delivered_by,
    fold_idle,
    fold_sparse,
    hour_cells,
    hour_slots,
    idle_parts,
    idle_time,
    local_midnight,
    merged_windows,
    metered_wh,
    occupied_runs,
    span_day_figures,
    split_by_day,
    wh_between,
    whole_days,
)

pytestmark = pytest.mark.unit

SH = ZoneInfo("Asia/Shanghai")
UTC = timezone.utc
DAY = timedelta(days=1)
MIN = timedelta(minutes=1)


def at(hhmm: str, day: int = 10, month: int = 11) -> datetime:
    """A Shanghai local time in 2026 (10 November is a Tuesday)."""
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, month, day, h, m, tzinfo=SH)


def history(*changes: tuple[datetime, str]) -> list[StatusChange]:
    return [StatusChange(t, S(status)) for t, status in changes]


def intervals(start: datetime, end: datetime, *changes: tuple[datetime, str]):
    return status_intervals(history(*changes), start, end)


def session(start: datetime, stop: datetime | None, wh: int | None = None, *, sid: int = 1,
            connector: int = 7) -> SessionRecord:
    return SessionRecord(sid, 1, start.astimezone(UTC), stop.astimezone(UTC) if stop else None,
                         None if wh is None else 1_000, None if wh is None else 1_000 + wh, connector)


def windows_of(first: date, last: date, start: datetime | None = None, end: datetime | None = None):
    start = start or local_midnight(first, SH)
    end = end or local_midnight(last + DAY, SH)
    return day_windows(first, last, SH, start, end)


# -- days ------------------------------------------------------------------------------


def test_a_shanghai_day_starts_at_16_utc_the_day_before():
    assert local_midnight(date(2026, 11, 1), SH) == datetime(2026, 10, 31, 16, 0, tzinfo=UTC)


def test_november_in_shanghai_is_31_october_16_utc_to_30_november_16_utc():
    days = windows_of(date(2026, 11, 1), date(2026, 11, 30))
    assert len(days) == 30
    assert days[0] == (date(2026, 11, 1), datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 1, 16, tzinfo=UTC))
    assert days[-1][2] == datetime(2026, 11, 30, 16, tzinfo=UTC)


@pytest.mark.parametrize("first", [date(2026, 3, 28), date(2026, 10, 24), date(2026, 12, 31)])
def test_every_shanghai_day_is_24_hours_even_when_europe_and_america_change_clocks(first):
    # Shanghai has no DST: the weekends Berlin and New York change clocks, and a year end, are 24 h days.
    days = windows_of(first, first + 3 * DAY)
    assert [hi - lo for _, lo, hi in days] == [timedelta(hours=24)] * 4
    assert all(days[i][2] == days[i + 1][1] for i in range(3))


def test_a_range_cut_at_now_keeps_the_partial_day_and_drops_the_days_after():
    now = at("14:00", day=11)
    days = windows_of(date(2026, 11, 10), date(2026, 11, 13), end=now.astimezone(UTC))
    assert [d for d, _, _ in days] == [date(2026, 11, 10), date(2026, 11, 11)]
    assert days[-1][2] == now
    assert whole_days(days, SH) == [date(2026, 11, 10)]


def test_a_range_ending_exactly_at_midnight_has_no_empty_day():
    days = windows_of(date(2026, 11, 10), date(2026, 11, 12), end=at("00:00", day=12).astimezone(UTC))
    assert [d for d, _, _ in days] == [date(2026, 11, 10), date(2026, 11, 11)]
    assert whole_days(days, SH) == [date(2026, 11, 10), date(2026, 11, 11)]


def test_adjacent_day_windows_form_one_run_and_a_gap_starts_another():
    d10, d11, d12, d13 = windows_of(date(2026, 11, 10), date(2026, 11, 13))
    assert adjacent_runs([d10, d11, d13]) == [[d10, d11], [d13]]
    assert adjacent_runs([]) == []


def test_touching_and_overlapping_windows_merge():
    a, b, c, d = at("08:00"), at("09:00"), at("10:00"), at("11:00")
    assert merged_windows([(c, d), (a, b), (b, c)]) == [(a, d)]
    assert merged_windows([(c, d), (a, b)]) == [(a, b), (c, d)]


def test_hour_slots_are_local_hours_labelled_with_weekday_and_hour():
    bounds, labels = hour_slots(at("22:30").astimezone(UTC), at("01:00", day=11).astimezone(UTC), SH)
    assert bounds == [at(t, day=d).astimezone(UTC) for t, d in (("22:30", 10), ("23:00", 10), ("00:00", 11),
                                                                  ("01:00", 11))]
    assert labels == [(1, 22), (1, 23), (2, 0)]  # Tuesday 22, 23, Wednesday 0


# -- time in states ----------------------------------------------------------------------


def test_in_service_time_leaves_out_faulted_and_unavailable_time():
    # docs/rules.md: Faulted 06-12, Unavailable 21-23, Charging 18-21 -> 960 min in service, charging 180/960.
    ivs = intervals(at("00:00"), at("00:00", day=11), (at("00:00"), "Available"), (at("06:00"), "Faulted"),
                    (at("12:00"), "Available"), (at("18:00"), "Charging"), (at("21:00"), "Unavailable"),
                    (at("23:00"), "Available"))
    t = connector_time(ivs, at("00:00"))
    assert t.in_service == timedelta(minutes=960)
    assert t.share("charging") == 0.1875
    assert t.share("occupied") == 0.1875


def test_time_before_the_first_status_is_unknown_and_not_in_service():
    ivs = intervals(at("00:00"), at("12:00"), (at("06:00"), "Available"))
    assert connector_time(ivs, at("00:00")).known == timedelta(hours=6)


def test_a_share_without_in_service_time_is_none():
    t = StateTime()
    t.count(S.FAULTED, timedelta(hours=2))
    assert t.in_service == timedelta() and t.share("occupied") is None


def test_hour_cells_put_time_in_local_weekday_and_hour():
    ivs = intervals(at("00:00"), at("00:00", day=11), (at("00:00"), "Available"), (at("18:30"), "Charging"),
                    (at("19:00"), "Available"))
    cells = hour_cells([ivs], at("00:00").astimezone(UTC), at("00:00", day=11).astimezone(UTC), SH)
    tuesday = cells[1]
    assert tuesday[18].share("charging") == 0.5 and tuesday[19].share("charging") == 0.0
    assert tuesday[10].known == timedelta(hours=1)
    assert all(cell.known == timedelta() for row in cells[:1] + cells[2:] for cell in row)


def test_day_times_split_a_charge_over_midnight_between_the_days():
    days = windows_of(date(2026, 11, 10), date(2026, 11, 11))
    ivs = intervals(days[0][1], days[-1][2], (at("00:00"), "Available"), (at("23:00"), "Charging"),
                    (at("01:00", day=11), "Available"))
    times = day_times([ivs], days)
    assert times[date(2026, 11, 10)].charging == timedelta(hours=1)
    assert times[date(2026, 11, 11)].charging == timedelta(hours=1)
    assert day_times([ivs], []) == {}


# -- idle runs -----------------------------------------------------------------------------


def test_idle_is_the_time_after_the_last_charging_interval_of_a_run():
    # docs/rules.md: Charging to 09:10, SuspendedEV and Finishing, Available at 09:40: 30 min.
    ivs = intervals(at("08:00"), at("12:00"), (at("08:00"), "Preparing"), (at("08:05"), "Charging"),
                    (at("09:10"), "SuspendedEV"), (at("09:30"), "Finishing"), (at("09:40"), "Available"))
    assert idle_time(ivs, at("08:00")) == 30 * MIN


def test_a_pause_between_two_charging_intervals_is_not_idle():
    ivs = intervals(at("08:00"), at("12:00"), (at("08:00"), "Charging"), (at("08:30"), "SuspendedEV"),
                    (at("08:50"), "Charging"), (at("09:00"), "Finishing"), (at("09:05"), "Available"))
    assert idle_time(ivs, at("08:00")) == 5 * MIN


def test_each_occupied_run_counts_its_own_idle_time():
    ivs = intervals(at("08:00"), at("12:00"), (at("08:00"), "Charging"), (at("08:30"), "Finishing"),
                    (at("08:40"), "Available"), (at("10:00"), "Charging"), (at("10:20"), "SuspendedEVSE"),
                    (at("10:35"), "Available"))
    assert len(occupied_runs(ivs)) == 2
    assert idle_time(ivs, at("08:00")) == 25 * MIN


def test_a_run_carried_into_the_window_without_charging_counts_its_suspended_and_finishing_time():
    # Plugged in before the window (it may have charged then): SuspendedEV and Finishing count, Preparing not.
    ivs = intervals(at("08:00"), at("12:00"), (at("07:00"), "SuspendedEV"), (at("08:20"), "Finishing"),
                    (at("08:30"), "Preparing"), (at("08:45"), "Available"))
    assert idle_time(ivs, at("08:00")) == 30 * MIN


def test_a_run_starting_inside_the_window_without_charging_is_not_idle():
    ivs = intervals(at("08:00"), at("12:00"), (at("08:00"), "Available"), (at("09:00"), "Preparing"),
                    (at("09:10"), "SuspendedEV"), (at("09:40"), "Available"))
    assert idle_time(ivs, at("08:00")) == timedelta()


def test_a_run_over_midnight_folds_to_the_idle_time_of_one_window():
    # Charging 23:00-00:30, SuspendedEV to 01:10: 40 min idle, 30 of them on the second day.
    days = windows_of(date(2026, 11, 10), date(2026, 11, 11))
    start, end = days[0][1], days[-1][2]
    ivs = intervals(start, end, (at("00:00"), "Available"), (at("23:00"), "Charging"),
                    (at("00:30", day=11), "SuspendedEV"), (at("01:10", day=11), "Available"))
    parts = [idle_parts(part, lo, hi) for (_, lo, hi), part in zip(days, split_by_day(ivs, days).values())]
    assert parts[0].trail and parts[0].trail_charging and parts[0].trail_tail_us == 0
    assert parts[1].lead == 1 and parts[1].lead_charging and parts[1].lead_tail_us == 40 * 60 * 10**6
    assert fold_idle(parts) == idle_time(ivs, start) // timedelta(microseconds=1) == 40 * 60 * 10**6


def test_a_run_filling_a_whole_day_is_joined_to_both_neighbours():
    # Charging ends 22:00 on the 10th; the car stays (SuspendedEV) all of the 11th, until 02:00 on the 12th: 28 h.
    days = windows_of(date(2026, 11, 10), date(2026, 11, 12))
    start, end = days[0][1], days[-1][2]
    ivs = intervals(start, end, (at("00:00"), "Available"), (at("20:00"), "Charging"),
                    (at("22:00"), "SuspendedEV"), (at("02:00", day=12), "Available"))
    parts = [idle_parts(part, lo, hi) for (_, lo, hi), part in zip(days, split_by_day(ivs, days).values())]
    assert parts[1].lead == 2
    assert fold_idle(parts) == 28 * 3600 * 10**6 == idle_time(ivs, start) // timedelta(microseconds=1)


def test_empty_days_fold_like_one_so_sparse_parts_give_the_same_idle():
    lead = IdleParts(lead=1, lead_charging=True, lead_tail_us=5)
    trail = IdleParts(trail=True, trail_charging=True, trail_tail_us=0)
    first = date(2026, 11, 1)
    dense = [IdleParts(), trail, lead, IdleParts(), IdleParts(), trail, lead]
    sparse = [(first + DAY, trail), (first + 2 * DAY, lead), (first + 5 * DAY, trail), (first + 6 * DAY, lead)]
    assert fold_sparse(first, sparse) == fold_idle(dense) == 10


def test_a_run_open_at_the_range_start_counts_only_on_the_first_day():
    # No Charging in the range: suspended time counts only for a run already there when the range starts.
    after = IdleParts(lead=1, lead_after_us=7)
    assert fold_idle([after]) == 7
    assert fold_sparse(date(2026, 11, 1), [(date(2026, 11, 2), after)]) == 0


STATES = ["Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing", "Faulted",
          "Unavailable"]


@given(st.lists(st.tuples(st.integers(0, 4 * 24 * 60), st.sampled_from(STATES)), max_size=30),
       st.integers(0, 4 * 24 * 60))
def test_days_add_up_to_the_whole_range_for_any_history(changes, cut_minutes):
    # Four Shanghai days from 10 November, cut at a random minute: times, hours and idle of the days add up.
    first = date(2026, 11, 10)
    start = local_midnight(first, SH)
    end = start + timedelta(minutes=max(cut_minutes, 1))
    hist = [StatusChange(start + timedelta(minutes=m) - timedelta(hours=2), S(s)) for m, s in changes]
    days = day_windows(first, first + 3 * DAY, SH, start, end)
    figures = span_day_figures(hist, days, SH)
    whole = connector_time(status_intervals(hist, start, end), start)
    us = timedelta(microseconds=1)
    assert sum(f.known_us for f in figures.values()) == whole.known // us
    assert sum(f.occupied_us for f in figures.values()) == whole.occupied // us
    assert sum(f.charging_us for f in figures.values()) == whole.charging // us
    assert sum(f.faulted_us + f.unavailable_us for f in figures.values()) == (whole.faulted + whole.unavailable) // us
    assert sum(sum(f.hours["in_service"]) for f in figures.values()) == whole.in_service // us
    assert fold_idle(f.idle for f in figures.values()) == whole.idle // us


# -- energy --------------------------------------------------------------------------------


def test_energy_over_midnight_is_split_with_cumulative_rounding():
    # docs/rules.md: 23:00-01:00 with 10,001 Wh puts 5,001 Wh on the first day and 5,000 on the second.
    s = session(at("23:00"), at("01:00", day=11), wh=10_001)
    midnight = at("00:00", day=11)
    assert wh_between(s, at("00:00"), midnight) == 5_001
    assert wh_between(s, midnight, at("00:00", day=12)) == 5_000


def test_energy_spread_over_hours_adds_up_to_the_session_total():
    s = session(at("08:20"), at("11:05"), wh=7_777)
    hours = [at(f"{h:02d}:00") for h in range(8, 13)]
    parts = [wh_between(s, lo, hi) for lo, hi in zip(hours, hours[1:])]
    assert sum(parts) == 7_777
    assert parts[0] == delivered_by(s, 7_777, hours[1].astimezone(UTC))
    assert parts[1] == parts[2] == round(7_777 * 60 / 165)  # a full hour of 165 minutes
    assert parts[-1] == wh_between(s, at("11:00"), at("12:00")) == sum(parts) - sum(parts[:-1])


def test_energy_before_the_start_and_after_the_stop_is_zero():
    s = session(at("08:00"), at("09:00"), wh=1_000)
    assert wh_between(s, at("06:00"), at("08:00")) == 0
    assert wh_between(s, at("09:00"), at("10:00")) == 0
    assert wh_between(s, at("00:00"), at("00:00", day=11)) == 1_000


@pytest.mark.parametrize("s", [
    pytest.param(session(at("08:00"), None, wh=1_000), id="open"),
    pytest.param(session(at("08:00"), at("09:00")), id="no-meter-values"),
    pytest.param(session(at("09:00"), at("08:00"), wh=1_000), id="stopped-before-it-started"),
])
def test_sessions_without_metered_energy_add_nothing(s):
    assert metered_wh(s) is None
    assert wh_between(s, at("00:00"), at("00:00", day=11)) == 0


def test_a_decreasing_register_counts_zero():
    s = SessionRecord(1, 1, at("08:00"), at("09:00"), 5_000, 4_000, 7)
    assert metered_wh(s) == 0


# -- the figures of a day --------------------------------------------------------------------


def test_day_figures_hold_times_by_kind_and_by_local_hour():
    lo, hi = at("00:00").astimezone(UTC), at("00:00", day=11).astimezone(UTC)
    ivs = intervals(lo, hi, (at("00:00"), "Available"), (at("08:30"), "Charging"), (at("09:00"), "Faulted"),
                    (at("10:00"), "Available"))
    f = day_figures(ivs, lo, hi, SH)
    hour = 3600 * 10**6
    assert set(f.hours) == set(HOURLY)
    assert f.known_us == 24 * hour and f.faulted_us == hour and f.charging_us == f.occupied_us == hour // 2
    assert f.hours["charging"][8] == hour // 2 and f.hours["in_service"][9] == 0
    assert sum(f.hours["in_service"]) == 23 * hour
    assert day_figures(ivs, lo, hi, SH, hours=False).hours == DayFigures().hours


def test_split_by_day_clips_intervals_to_each_window_including_gaps():
    d10, d11, d12 = windows_of(date(2026, 11, 10), date(2026, 11, 12))
    ivs = intervals(d10[1], d12[2], (at("12:00"), "Charging"))
    parts = split_by_day(ivs, [d10, d12])
    assert [iv.duration for _, iv in parts[date(2026, 11, 10)]] == [timedelta(hours=12)]
    assert [iv.duration for _, iv in parts[date(2026, 11, 12)]] == [timedelta(hours=24)]


def test_a_session_over_two_days_counts_on_its_start_day_and_spreads_its_energy():
    days = windows_of(date(2026, 11, 10), date(2026, 11, 11))
    figures = {(7, d): DayFigures() for d, _, _ in days}
    windows = {(7, d): (lo, hi) for d, lo, hi in days}
    add_sessions(figures, windows, [session(at("23:00"), at("01:00", day=11), wh=10_001)], SH, days[0][1],
                 days[-1][2])
    first, second = figures[(7, date(2026, 11, 10))], figures[(7, date(2026, 11, 11))]
    assert (first.sessions, first.energy_wh, first.lengths_us) == (1, 5_001, [2 * 3600 * 10**6])
    assert (second.sessions, second.energy_wh, second.lengths_us) == (0, 5_000, [])


def test_a_session_started_before_the_range_adds_only_its_energy_inside():
    days = windows_of(date(2026, 11, 11), date(2026, 11, 11))
    figures = {(7, date(2026, 11, 11)): DayFigures()}
    add_sessions(figures, {(7, d): (lo, hi) for d, lo, hi in days},
                 [session(at("23:00"), at("01:00", day=11), wh=10_001), session(at("09:00", day=11), None, sid=2)],
                 SH, days[0][1], days[-1][2])
    f = figures[(7, date(2026, 11, 11))]
    assert (f.sessions, f.energy_wh, f.lengths_us) == (1, 5_000, [])  # the open one counts, without a length


def test_sessions_of_other_connectors_are_left_out():
    days = windows_of(date(2026, 11, 10), date(2026, 11, 10))
    figures = {(7, date(2026, 11, 10)): DayFigures()}
    add_sessions(figures, {(7, d): (lo, hi) for d, lo, hi in days},
                 [session(at("08:00"), at("09:00"), wh=500, connector=8)], SH, days[0][1], days[-1][2])
    assert figures[(7, date(2026, 11, 10))] == DayFigures()
