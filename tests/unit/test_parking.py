"""The free-parking rule and parking fees (chargeapp.domain.parking)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeapp.domain.charger import ConnectorStatus as S
from chargeapp.domain.charger import StatusChange, charging_intervals
from chargeapp.domain.errors import InvalidRequest
from chargeapp.domain.intervals import Interval
from chargeapp.domain.parking import (
    DayCharge,
    InvalidParkingPolicy,
    InvalidStay,
    ParkingPolicy,
    charging_time_in_stay,
    format_duration,
    format_money,
    free_parking_until,
    settle_stay,
)
from chargeapp.domain.tariff import Band, BandPeriod, Tariff

pytestmark = pytest.mark.unit

SH = ZoneInfo("Asia/Shanghai")
POLICY = ParkingPolicy(block_fen=500)  # 5.00 CNY per started 30 min, no daily cap
MIN = timedelta(minutes=1)


def at(hhmm: str, day: int = 1, seconds: int = 0) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2024, 5, day, h, m, seconds, tzinfo=SH)


def iv(start: datetime, minutes: float) -> Interval:
    return Interval(start, start + timedelta(minutes=minutes))


# --- qualifying -----------------------------------------------------------------


@pytest.mark.parametrize(
    "charging, qualified, fee_fen",
    [
        # Stay 14:00-17:00 (180 min). Unqualified: 6 blocks from 14:00 = 30.00 CNY.
        # Qualified: free until 16:00, then 2 blocks = 10.00 CNY.
        pytest.param(timedelta(minutes=14, seconds=59), False, 3000, id="14min59s-pays-full-parking"),
        pytest.param(timedelta(minutes=15), True, 1000, id="15min00s-gets-120min-free"),
        pytest.param(timedelta(0), False, 3000, id="no-charging"),
        pytest.param(timedelta(minutes=90), True, 1000, id="long-charge-same-free-time"),
    ],
)
def test_fifteen_minutes_of_charging_earn_two_hours_free(charging, qualified, fee_fen):
    entry = at("14:00")
    result = settle_stay(entry, at("17:00"), [Interval(at("14:10"), at("14:10") + charging)], POLICY, SH)
    assert result.qualified is qualified
    assert result.fee_fen == fee_fen
    assert result.free_until == (at("16:00") if qualified else None)


def test_two_sessions_of_8_minutes_each_qualify():
    result = settle_stay(at("14:00"), at("16:30"), [iv(at("14:05"), 8), iv(at("15:00"), 8)], POLICY, SH)
    assert result.charging_time == timedelta(minutes=16)
    assert result.qualified
    assert (result.blocks, result.fee_fen) == (1, 500)  # 16:00-16:30


def test_twenty_minutes_of_suspended_ev_do_not_count():
    history = [
        StatusChange(at("14:05"), S.PREPARING),
        StatusChange(at("14:07"), S.CHARGING),
        StatusChange(at("14:17"), S.SUSPENDED_EV),   # the car's battery management pauses for 20 min
        StatusChange(at("14:37"), S.CHARGING),
        StatusChange(at("14:40"), S.FINISHING),
        StatusChange(at("14:45"), S.AVAILABLE),
    ]
    charging = charging_intervals(history, at("14:00"), at("17:00"))
    result = settle_stay(at("14:00"), at("17:00"), charging, POLICY, SH)
    assert result.charging_time == timedelta(minutes=13)  # 10 + 3; 33 if SuspendedEV counted
    assert not result.qualified
    assert result.fee_fen == 3000


@pytest.mark.parametrize(
    "charging, counted",
    [
        pytest.param([Interval(at("13:50"), at("14:10"))], 10, id="started-before-entry"),
        pytest.param([Interval(at("16:50"), at("17:30"))], 10, id="ran-past-exit"),
        pytest.param([Interval(at("12:00"), at("13:00"))], 0, id="entirely-before-entry"),
        pytest.param([Interval(at("12:00"), at("18:00"))], 180, id="covers-the-stay"),
    ],
)
def test_charging_outside_the_stay_is_clipped(charging, counted):
    assert charging_time_in_stay(charging, at("14:00"), at("17:00")) == timedelta(minutes=counted)


def test_charging_clipped_to_the_stay_decides_qualification():
    # 20 min of charging, but only 10 min of it after gate-in: does not qualify.
    result = settle_stay(at("14:00"), at("17:00"), [Interval(at("13:50"), at("14:10"))], POLICY, SH)
    assert result.charging_time == timedelta(minutes=10)
    assert not result.qualified


def test_overlapping_sessions_of_two_drivers_count_once():
    # A car shared by two shift drivers: both sessions are on the plate, 14:10-14:20 and 14:15-14:22.
    # Union 12 min (a plain sum would be 17 min and qualify).
    driver_a, driver_b = Interval(at("14:10"), at("14:20")), Interval(at("14:15"), at("14:22"))
    result = settle_stay(at("14:00"), at("17:00"), [driver_a, driver_b], POLICY, SH)
    assert result.charging_time == timedelta(minutes=12)
    assert not result.qualified


def test_sessions_of_two_drivers_add_up_when_they_do_not_overlap():
    driver_a, driver_b = iv(at("14:10"), 7), iv(at("15:10"), 8)
    assert settle_stay(at("14:00"), at("17:00"), [driver_a, driver_b], POLICY, SH).qualified


def test_charging_late_in_the_stay_still_frees_the_first_120_minutes_from_entry():
    # Gate in 14:00, charges 16:30-16:45, leaves 17:00: 14:00-16:00 free, blocks 16:00 and 16:30.
    result = settle_stay(at("14:00"), at("17:00"), [iv(at("16:30"), 15)], POLICY, SH)
    assert (result.qualified, result.free_until, result.blocks, result.fee_fen) == (True, at("16:00"), 2, 1000)


def test_charging_time_of_a_stay_still_in_progress():
    assert charging_time_in_stay([iv(at("13:00"), 90)], at("14:00"), None) == timedelta(minutes=30)


@pytest.mark.parametrize(
    "charging, expected",
    [(timedelta(minutes=15), at("16:00")), (timedelta(minutes=14, seconds=59), None)],
)
def test_free_parking_until(charging, expected):
    assert free_parking_until(at("14:00"), charging, POLICY) == expected


# --- blocks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "exit, charged_minutes, blocks",
    [
        pytest.param(at("14:00"), 0, 0, id="zero-length-stay-costs-nothing"),
        pytest.param(at("14:00", seconds=1), 0, 1, id="one-second-starts-a-block"),
        pytest.param(at("14:30"), 0, 1, id="exit-on-first-boundary-one-block"),
        pytest.param(at("15:00"), 0, 2, id="exit-on-boundary-starts-no-new-block"),
        pytest.param(at("15:00", seconds=1), 0, 3, id="one-second-past-boundary-starts-a-block"),
        pytest.param(at("15:30"), 20, 0, id="stay-inside-free-time-costs-nothing"),
        pytest.param(at("16:00"), 20, 0, id="stay-exactly-the-free-time-costs-nothing"),
        pytest.param(at("16:00", seconds=1), 20, 1, id="one-second-past-free-time"),
        pytest.param(at("16:30"), 20, 1, id="qualified-exit-on-boundary"),
        pytest.param(at("16:31"), 20, 2, id="qualified-started-second-block"),
    ],
)
def test_blocks_are_started_30_minutes_from_the_end_of_free_time_or_entry(exit, charged_minutes, blocks):
    charging = [iv(at("14:00"), charged_minutes)] if charged_minutes else []
    result = settle_stay(at("14:00"), exit, charging, POLICY, SH)
    assert result.blocks == blocks
    assert result.fee_fen == blocks * 500


def test_stay_across_midnight_blocks_belong_to_the_day_they_start_in_and_are_capped_per_day():
    # Unqualified 22:45 May 1 -> 00:40 May 2, 5.00 CNY a block, cap 12.00 CNY a day.
    # Blocks 22:45, 23:15, 23:45 (May 1; the 23:45 block runs past midnight but starts on May 1)
    # and 00:15 (May 2). May 1: 3 x 500 = 1500 -> capped at 1200. May 2: 500. Total 1700.
    # (Had the 23:45 block belonged to May 2 it would be 1000 + 1000 = 2000.)
    policy = ParkingPolicy(block_fen=500, daily_cap_fen=1200)
    result = settle_stay(at("22:45"), at("00:40", day=2), [], policy, SH)
    assert result.days == (
        DayCharge(day=date(2024, 5, 1), blocks=3, fen=1200, capped=True),
        DayCharge(day=date(2024, 5, 2), blocks=1, fen=500, capped=False),
    )
    assert (result.blocks, result.fee_fen) == (4, 1700)
    assert "Daily cap on 2024-05-01: 3 blocks capped at 12.00 CNY." in result.explanation


def test_qualified_stay_across_midnight():
    # Entry 21:40, 20 min charging: free until 23:40. Exit 00:20: blocks 23:40 (May 1) and 00:10 (May 2).
    result = settle_stay(at("21:40"), at("00:20", day=2), [iv(at("21:45"), 20)], POLICY, SH)
    assert [(d.day.day, d.blocks, d.fen) for d in result.days] == [(1, 1, 500), (2, 1, 500)]
    assert result.fee_fen == 1000


def test_long_stay_is_capped_on_every_day():
    # 21:00 May 1 -> 02:10 May 2 unqualified, cap 15.00 CNY: May 1 six blocks (30.00 -> 15.00),
    # May 2 five blocks 00:00..02:00 (25.00 -> 15.00). Total 30.00 CNY.
    policy = ParkingPolicy(block_fen=500, daily_cap_fen=1500)
    result = settle_stay(at("21:00"), at("02:10", day=2), [], policy, SH)
    assert [(d.blocks, d.fen, d.capped) for d in result.days] == [(6, 1500, True), (5, 1500, True)]
    assert result.fee_fen == 3000


def test_cap_equal_to_the_charge_is_not_marked_capped():
    policy = ParkingPolicy(block_fen=500, daily_cap_fen=1000)
    result = settle_stay(at("14:00"), at("15:00"), [], policy, SH)
    assert result.days == (DayCharge(day=date(2024, 5, 1), blocks=2, fen=1000, capped=False),)


def test_station_day_is_the_local_day_not_utc():
    # 07:50-08:10 Shanghai is 23:50-00:10 UTC; both blocks are on May 1 local.
    result = settle_stay(at("07:50"), at("08:30"), [], POLICY, SH)
    assert [d.day for d in result.days] == [date(2024, 5, 1)]


# --- explanation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "entry, exit, charging, policy, text",
    [
        pytest.param(
            at("14:42"), at("17:37"), [iv(at("14:50"), 17)], POLICY,
            "Charged 17 min (15 min needed): first 120 min free, until 16:42. "
            "2 blocks of 30 min after that: 10.00 CNY.",
            id="qualified-with-blocks",
        ),
        pytest.param(
            at("14:42"), at("15:50"), [iv(at("14:50"), 14.5)], POLICY,
            "Charged 14 min 30 s (15 min needed): no free parking. "
            "3 blocks of 30 min from entry at 14:42: 15.00 CNY.",
            id="not-qualified",
        ),
        pytest.param(
            at("14:42"), at("16:00"), [iv(at("14:50"), 30)], POLICY,
            "Charged 30 min (15 min needed): first 120 min free, until 16:42. Left within the free time: 0.00 CNY.",
            id="left-within-free-time",
        ),
        pytest.param(
            at("23:00"), at("01:30", day=2), [iv(at("23:00"), 15)], POLICY,
            "Charged 15 min (15 min needed): first 120 min free, until 01:00 on 2024-05-02. "
            "1 block of 30 min after that: 5.00 CNY.",
            id="free-time-ends-next-day",
        ),
        pytest.param(
            at("14:00"), at("14:00"), [], POLICY,
            "Charged 0 min (15 min needed): no free parking. No time parked: 0.00 CNY.",
            id="zero-length",
        ),
    ],
)
def test_explanation_shows_how_the_rule_applied(entry, exit, charging, policy, text):
    assert settle_stay(entry, exit, charging, policy, SH).explanation == text


def test_explanation_uses_station_local_time_whatever_the_input_zone():
    entry = datetime(2024, 5, 1, 6, 42, tzinfo=timezone.utc)  # 14:42 in Shanghai
    result = settle_stay(entry, entry + timedelta(minutes=175), [iv(entry, 17)], POLICY, SH)
    assert "until 16:42" in result.explanation


@pytest.mark.parametrize(
    "delta, text",
    [(timedelta(0), "0 min"), (timedelta(minutes=17), "17 min"), (timedelta(minutes=14, seconds=59), "14 min 59 s")],
)
def test_format_duration(delta, text):
    assert format_duration(delta) == text


@pytest.mark.parametrize("fen, text", [(0, "0.00 CNY"), (5, "0.05 CNY"), (1000, "10.00 CNY"), (123456, "1234.56 CNY")])
def test_format_money(fen, text):
    assert format_money(fen) == text


# --- policy and validation --------------------------------------------------------


def test_policy_from_tariff_takes_the_stations_parking_prices():
    tariff = Tariff(
        effective_from=at("00:00"),
        periods=(BandPeriod(time(0), time(0), Band.FLAT),),
        energy_price={Band.FLAT: 10755},
        service_fee=0,
        parking_block_fen=600,
        parking_daily_cap_fen=4000,
    )
    policy = ParkingPolicy.from_tariff(tariff, free_period=timedelta(minutes=90))
    assert policy == ParkingPolicy(
        qualify_charging=timedelta(minutes=15),
        free_period=timedelta(minutes=90),
        block=timedelta(minutes=30),
        block_fen=600,
        daily_cap_fen=4000,
    )


@pytest.mark.parametrize(
    "fields",
    [dict(block=timedelta(0)), dict(free_period=-MIN), dict(block_fen=-1), dict(block_fen=2.5), dict(daily_cap_fen=-1)],
)
def test_broken_policy_is_refused(fields):
    with pytest.raises(InvalidParkingPolicy) as err:
        ParkingPolicy(**fields)
    assert isinstance(err.value, InvalidRequest)


@pytest.mark.parametrize(
    "entry, exit",
    [(at("15:00"), at("14:00")), (datetime(2024, 5, 1, 14), at("15:00"))],
    ids=["exit-before-entry", "naive-entry"],
)
def test_impossible_stay_is_refused(entry, exit):
    with pytest.raises(InvalidStay):
        settle_stay(entry, exit, [], POLICY, SH)


# --- properties -------------------------------------------------------------------

BASE = at("00:00")
seconds_in_two_days = st.integers(min_value=0, max_value=2 * 86400)
charging_spans = st.lists(
    st.tuples(st.integers(min_value=-4 * 3600, max_value=2 * 86400 + 4 * 3600), st.integers(0, 3 * 3600)),
    max_size=5,
)
policies = st.builds(
    ParkingPolicy,
    block_fen=st.integers(0, 2000),
    daily_cap_fen=st.one_of(st.none(), st.integers(0, 10_000)),
)


def _stay(entry_s: int, length_s: int, spans):
    entry = BASE + timedelta(seconds=entry_s)
    exit = entry + timedelta(seconds=length_s)
    charging = [Interval(entry + timedelta(seconds=s), entry + timedelta(seconds=s + n)) for s, n in spans]
    return entry, exit, charging


@given(seconds_in_two_days, seconds_in_two_days, charging_spans, policies)
def test_fee_is_never_negative(entry_s, length_s, spans, policy):
    entry, exit, charging = _stay(entry_s, length_s, spans)
    result = settle_stay(entry, exit, charging, policy, SH)
    assert result.fee_fen >= 0
    assert result.fee_fen == sum(d.fen for d in result.days)
    assert result.blocks == sum(d.blocks for d in result.days)


@given(seconds_in_two_days, seconds_in_two_days, charging_spans, policies)
def test_qualified_stay_never_costs_more_than_unqualified_one_of_the_same_times(entry_s, length_s, spans, policy):
    entry, exit, charging = _stay(entry_s, length_s, spans)
    with_charging = settle_stay(entry, exit, charging, policy, SH)
    without = settle_stay(entry, exit, [], policy, SH)
    assert with_charging.fee_fen <= without.fee_fen


@given(seconds_in_two_days, seconds_in_two_days, charging_spans)
def test_total_charging_never_exceeds_stay_length(entry_s, length_s, spans):
    entry, exit, charging = _stay(entry_s, length_s, spans)
    assert timedelta(0) <= charging_time_in_stay(charging, entry, exit) <= exit - entry


@given(seconds_in_two_days, seconds_in_two_days, st.integers(0, 3 * 3600), charging_spans, policies)
def test_staying_longer_never_costs_less(entry_s, length_s, extra_s, spans, policy):
    entry, exit, charging = _stay(entry_s, length_s, spans)
    # Only charging inside the shorter stay, so both stays have the same charging time.
    shorter = settle_stay(entry, exit, charging, policy, SH)
    clipped = [c for iv_ in charging if (c := iv_.clip(entry, exit)) is not None]
    longer = settle_stay(entry, exit + timedelta(seconds=extra_s), clipped, policy, SH)
    assert longer.fee_fen >= shorter.fee_fen
