"""Tariffs, time-of-use split, rounding and the idle fee (chargeapp.domain.tariff)."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeapp.domain.errors import InvalidRequest, NotFound
from chargeapp.domain.tariff import (
    Band,
    BandPeriod,
    EnergyCharge,
    InvalidMeterSample,
    InvalidTariff,
    MeterSample,
    Tariff,
    TariffMissing,
    idle_fee,
    price_energy,
    round_half_up,
    tariff_at,
)

pytestmark = pytest.mark.unit

SH = ZoneInfo("Asia/Shanghai")
P = BandPeriod

# A Shanghai-style day: valley 22:00-06:00 (wraps midnight), two peaks, flat in between.
SHANGHAI_PERIODS = (
    P(time(22), time(6), Band.VALLEY),
    P(time(6), time(8), Band.FLAT),
    P(time(8), time(11), Band.PEAK),
    P(time(11), time(18), Band.FLAT),
    P(time(18), time(21), Band.PEAK),
    P(time(21), time(22), Band.FLAT),
)
PRICES = {Band.PEAK: 12345, Band.FLAT: 10755, Band.VALLEY: 3210}  # 1.2345 / 1.0755 / 0.3210 CNY per kWh


def local(y, mo, d, h=0, mi=0, s=0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=SH)


def make_tariff(**overrides) -> Tariff:
    fields = dict(
        effective_from=local(2024, 1, 1),
        periods=SHANGHAI_PERIODS,
        energy_price=PRICES,
        service_fee=8000,  # 0.80 CNY per kWh
    )
    fields.update(overrides)
    return Tariff(**fields)


def flat_tariff(price: int = 10755, service_fee: int = 0, **overrides) -> Tariff:
    return make_tariff(
        periods=(P(time(0), time(0), Band.FLAT),), energy_price={Band.FLAT: price}, service_fee=service_fee, **overrides
    )


def samples(*readings: tuple[datetime, int]) -> list[MeterSample]:
    return [MeterSample(t, wh) for t, wh in readings]


# --- rounding -----------------------------------------------------------------


@pytest.mark.parametrize(
    "numerator, denominator, expected",
    [
        (0, 7, 0),
        (1, 3, 0),     # 0.333 -> 0
        (2, 3, 1),     # 0.667 -> 1
        (1, 2, 1),     # 0.5 -> 1 (half up)
        (3, 2, 2),     # 1.5 -> 2
        (5, 2, 3),     # 2.5 -> 3 (banker's rounding would give 2)
        (-5, 2, -3),   # -2.5 -> -3: halves go away from zero
        (5, -2, -3),
        (-5, -2, 3),
        (-1, 3, 0),
        (249_999, 100_000, 2),
        (250_000, 100_000, 3),
    ],
)
def test_round_half_up_rounds_exact_halves_away_from_zero(numerator, denominator, expected):
    assert round_half_up(numerator, denominator) == expected


def test_round_half_up_refuses_zero_denominator():
    with pytest.raises(ZeroDivisionError):
        round_half_up(1, 0)


# --- tariff validation and bands ----------------------------------------------


@pytest.mark.parametrize(
    "periods",
    [
        pytest.param((P(time(0), time(0), Band.FLAT),), id="one-period-all-day"),
        pytest.param((P(time(6), time(6), Band.FLAT),), id="one-period-all-day-from-06"),
        pytest.param(SHANGHAI_PERIODS, id="valley-wraps-midnight"),
        pytest.param(
            (P(time(0), time(8), Band.VALLEY), P(time(8), time(0), Band.PEAK)), id="end-midnight-as-time-0"
        ),
    ],
)
def test_periods_that_cover_the_day_once_are_accepted(periods):
    make_tariff(periods=periods)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param(dict(periods=()), id="no-periods"),
        pytest.param(
            dict(periods=(P(time(0), time(6), Band.VALLEY), P(time(7), time(0), Band.PEAK))), id="gap-06-07"
        ),
        pytest.param(
            dict(periods=(P(time(0), time(8), Band.VALLEY), P(time(7), time(0), Band.PEAK))), id="overlap-07-08"
        ),
        pytest.param(dict(periods=(P(time(0), time(12), Band.VALLEY),)), id="half-a-day"),
        pytest.param(dict(periods=SHANGHAI_PERIODS + (P(time(1), time(2), Band.PEAK),)), id="extra-overlap"),
        pytest.param(dict(energy_price={Band.PEAK: 1, Band.FLAT: 1}), id="valley-price-missing"),
        pytest.param(dict(energy_price={**PRICES, Band.PEAK: -1}), id="negative-price"),
        pytest.param(dict(energy_price={**PRICES, Band.PEAK: 1.2345}), id="float-price"),
        pytest.param(dict(service_fee=-1), id="negative-service-fee"),
        pytest.param(dict(idle_fee_cap_fen=-5), id="negative-cap"),
        pytest.param(dict(idle_grace=timedelta(minutes=-1)), id="negative-grace"),
        pytest.param(dict(effective_from=datetime(2024, 1, 1)), id="naive-effective-from"),
    ],
)
def test_broken_tariffs_are_refused_as_invalid_requests(overrides):
    with pytest.raises(InvalidTariff) as err:
        make_tariff(**overrides)
    assert isinstance(err.value, InvalidRequest)


def test_band_period_refuses_a_time_zone_on_wall_times():
    with pytest.raises(InvalidTariff):
        P(time(0, tzinfo=timezone.utc), time(0), Band.FLAT)


def test_energy_price_keys_may_be_band_strings():
    tariff = make_tariff(energy_price={"peak": 1, "flat": 2, "valley": 3})
    assert tariff.price_of(Band.VALLEY) == 3


@pytest.mark.parametrize(
    "at, band",
    [
        (local(2024, 5, 1, 0, 0), Band.VALLEY),
        (local(2024, 5, 1, 5, 59, 59), Band.VALLEY),
        (local(2024, 5, 1, 6, 0), Band.FLAT),
        (local(2024, 5, 1, 8, 0), Band.PEAK),
        (local(2024, 5, 1, 10, 59, 59), Band.PEAK),
        (local(2024, 5, 1, 11, 0), Band.FLAT),
        (local(2024, 5, 1, 21, 59, 59), Band.FLAT),
        (local(2024, 5, 1, 22, 0), Band.VALLEY),
        (local(2024, 5, 1, 23, 59, 59), Band.VALLEY),
        (datetime(2024, 5, 1, 0, 30, tzinfo=timezone.utc), Band.PEAK),  # 08:30 in Shanghai
    ],
)
def test_band_at_uses_station_wall_time(at, band):
    assert make_tariff().band_at(at, SH) is band


# --- versions -----------------------------------------------------------------

APRIL = make_tariff(effective_from=local(2024, 4, 1), energy_price={**PRICES, Band.FLAT: 10755})
MAY = make_tariff(effective_from=local(2024, 5, 1), energy_price={**PRICES, Band.FLAT: 12000})


@pytest.mark.parametrize(
    "at, expected",
    [
        (local(2024, 4, 1), APRIL),              # effective_from itself is included
        (local(2024, 4, 30, 23, 59, 59), APRIL),
        (local(2024, 5, 1), MAY),
        (local(2025, 1, 1), MAY),
    ],
)
def test_tariff_at_picks_the_latest_version_in_effect(at, expected):
    assert tariff_at([MAY, APRIL], at) is expected


def test_last_months_receipt_is_unchanged_after_a_new_version():
    # A session priced on 20 April: 10 kWh flat at 1.0755 -> 10.755 CNY = 1075.5 fen -> 1076 fen.
    april_session = samples((local(2024, 4, 20, 12), 0), (local(2024, 4, 20, 13), 10_000))
    before = price_energy(april_session, tariff_at([APRIL], local(2024, 4, 20, 12)), SH)
    after = price_energy(april_session, tariff_at([APRIL, MAY], local(2024, 4, 20, 12)), SH)
    assert before == after
    assert after.energy_fen == 1076
    # The same session under May's price would be different: the version matters.
    assert price_energy(april_session, MAY, SH).energy_fen == 1200


def test_session_is_priced_by_the_version_at_its_start():
    # 23:30 Apr 30 -> 00:30 May 1: the whole session uses April's prices.
    start = local(2024, 4, 30, 23, 30)
    assert tariff_at([APRIL, MAY], start) is APRIL


def test_no_version_in_effect_is_not_found():
    with pytest.raises(TariffMissing) as err:
        tariff_at([APRIL, MAY], local(2024, 3, 31, 23, 59))
    assert isinstance(err.value, NotFound)


def test_two_versions_from_the_same_instant_are_refused():
    twin = make_tariff(effective_from=local(2024, 5, 1))
    with pytest.raises(InvalidTariff):
        tariff_at([APRIL, MAY, twin], local(2024, 5, 2))


# --- pricing energy -------------------------------------------------------------


def test_session_across_a_time_of_use_boundary_is_split_by_interpolation():
    # Flat until 22:00, valley from 22:00 (1.0755 and 0.3210 CNY/kWh; service 0.80 CNY/kWh).
    #   21:50 -> 21:57  10,500 Wh, all flat
    #   21:57 -> 22:05  11,500 Wh over 8 min: 3/8 flat = 4,312.5 Wh, 5/8 valley = 7,187.5 Wh
    #   22:05 -> 22:10   8,000 Wh, all valley
    # flat 14,812.5 Wh, valley 15,187.5 Wh, total 30,000 Wh
    # energy = (10755 * 14,812.5 + 3210 * 15,187.5) / 100,000
    #        = (159,308,437.5 + 48,751,875) / 100,000 = 2,080.603125 fen -> 2081 fen
    # service = 8000 * 30,000 / 100,000 = 2400 fen; total 4481 fen = 44.81 CNY
    charge = price_energy(
        samples(
            (local(2024, 5, 1, 21, 50), 100_000),
            (local(2024, 5, 1, 21, 57), 110_500),
            (local(2024, 5, 1, 22, 5), 122_000),
            (local(2024, 5, 1, 22, 10), 130_000),
        ),
        make_tariff(),
        SH,
    )
    assert charge == EnergyCharge(
        energy_wh=30_000,
        wh_by_band={Band.PEAK: Fraction(0), Band.FLAT: Fraction(29625, 2), Band.VALLEY: Fraction(30375, 2)},
        energy_fen=2081,
        service_fen=2400,
    )
    assert charge.total_fen == 4481


def test_session_across_midnight_is_split_at_midnight():
    # Flat 08:00-24:00, valley 00:00-08:00; 6,000 Wh from 23:45 to 00:15 -> 3,000 Wh each side.
    # energy = (10000 * 3000 + 2000 * 3000) / 100,000 = 360 fen
    tariff = make_tariff(
        periods=(P(time(0), time(8), Band.VALLEY), P(time(8), time(0), Band.FLAT)),
        energy_price={Band.FLAT: 10000, Band.VALLEY: 2000},
        service_fee=0,
    )
    charge = price_energy(samples((local(2024, 5, 1, 23, 45), 0), (local(2024, 5, 2, 0, 15), 6000)), tariff, SH)
    assert charge.wh_by_band[Band.FLAT] == 3000
    assert charge.wh_by_band[Band.VALLEY] == 3000
    assert charge.energy_fen == 360


def test_session_across_several_boundaries_in_one_sample_pair():
    # 07:00 -> 12:00 with one pair of samples, 5,000 Wh: 1 h flat, 3 h peak, 1 h flat.
    charge = price_energy(samples((local(2024, 5, 1, 7), 0), (local(2024, 5, 1, 12), 5000)), make_tariff(), SH)
    assert charge.wh_by_band == {Band.FLAT: 2000, Band.PEAK: 3000, Band.VALLEY: 0}


@pytest.mark.parametrize(
    "wh, expected_fen",
    [
        (1_000, 108),      # 107.55 fen -> 108
        (10_000, 1076),    # 1075.5 fen -> 1076
        (20_000, 2151),    # 21.51 CNY exactly
        (30_000, 3227),    # 3226.5 fen -> 3227 (half-even, and floats, give 3226)
        (3, 0),            # 0.32265 fen -> 0
        (5, 1),            # 0.53775 fen -> 1
    ],
)
def test_shanghai_price_of_1_0755_cny_per_kwh_is_exact(wh, expected_fen):
    charge = price_energy(samples((local(2024, 5, 1, 12), 0), (local(2024, 5, 1, 13), wh)), flat_tariff(10755), SH)
    assert charge.energy_fen == expected_fen


def test_float_arithmetic_would_have_lost_a_fen():
    # Why integers: 30 kWh at 1.0755 CNY/kWh is exactly 32.265 CNY = 3226.5 fen -> 3227 half-up;
    # in floats 1.0755 * 3000 is 3226.4999..., which rounds to 3226.
    assert round(1.0755 * 30_000 / 1000 * 100) == 3226
    charge = price_energy(samples((local(2024, 5, 1, 12), 0), (local(2024, 5, 1, 13), 30_000)), flat_tariff(10755), SH)
    assert charge.energy_fen == 3227


@pytest.mark.parametrize(
    "wh, expected_service_fen",
    [
        (10, 1),   # 0.5 fen -> 1
        (30, 2),   # 1.5 fen -> 2
        (50, 3),   # 2.5 fen -> 3 (half-even would give 2)
        (49, 2),   # 2.45 fen -> 2
    ],
)
def test_service_fee_rounds_an_exact_half_fen_up(wh, expected_service_fen):
    # 0.50 CNY per kWh = 0.05 fen per Wh.
    charge = price_energy(
        samples((local(2024, 5, 1, 12), 0), (local(2024, 5, 1, 13), wh)), flat_tariff(0, service_fee=5000), SH
    )
    assert charge.service_fen == expected_service_fen


def test_energy_charge_is_rounded_once_not_per_band():
    # 50 Wh over 21:59:30-22:00:30 at 1.0000 CNY/kWh in both bands: 25 Wh flat + 25 Wh valley,
    # 2.5 fen each. Rounded per band: 3 + 3 = 6 fen; rounded once: 5.0 -> 5 fen.
    tariff = make_tariff(energy_price={Band.PEAK: 10000, Band.FLAT: 10000, Band.VALLEY: 10000}, service_fee=0)
    charge = price_energy(
        samples((local(2024, 5, 1, 21, 59, 30), 0), (local(2024, 5, 1, 22, 0, 30), 50)), tariff, SH
    )
    assert charge.wh_by_band[Band.FLAT] == 25 and charge.wh_by_band[Band.VALLEY] == 25
    assert charge.energy_fen == 5


@pytest.mark.parametrize(
    "readings, expected_wh",
    [
        pytest.param([], 0, id="no-samples"),
        pytest.param([(12, 500)], 0, id="one-sample"),
        pytest.param([(12, 1000), (13, 5000), (14, 200), (15, 1200)], 5000, id="meter-replaced-pair-counts-zero"),
        pytest.param([(15, 1200), (12, 1000), (14, 1200), (13, 1100)], 200, id="unsorted-samples"),
        pytest.param([(12, 1000), (13, 1000)], 0, id="no-energy"),
    ],
)
def test_energy_is_the_sum_of_increases_between_sorted_samples(readings, expected_wh):
    charge = price_energy(samples(*[(local(2024, 5, 1, h), wh) for h, wh in readings]), flat_tariff(), SH)
    assert charge.energy_wh == expected_wh
    assert sum(charge.wh_by_band.values()) == expected_wh
    assert charge.energy_fen >= 0 and charge.service_fen >= 0


def test_energy_between_two_samples_at_the_same_instant_goes_to_the_band_then():
    charge = price_energy(samples((local(2024, 5, 1, 9), 0), (local(2024, 5, 1, 9), 100)), make_tariff(), SH)
    assert charge.wh_by_band[Band.PEAK] == 100


def test_bands_follow_real_time_across_a_dst_change():
    # New York, 2024-03-10: 02:00 EST jumps to 03:00 EDT. Valley until 02:30 wall time, peak after.
    # 01:00 EST -> 04:00 EDT is 2 real hours: 1 h valley (01:00-02:00), 1 h peak (03:00-04:00).
    ny = ZoneInfo("America/New_York")
    tariff = make_tariff(
        periods=(P(time(0), time(2, 30), Band.VALLEY), P(time(2, 30), time(0), Band.PEAK)),
        energy_price={Band.PEAK: 1, Band.VALLEY: 1},
    )
    charge = price_energy(
        samples((datetime(2024, 3, 10, 1, tzinfo=ny), 0), (datetime(2024, 3, 10, 4, tzinfo=ny), 2000)), tariff, ny
    )
    assert charge.wh_by_band[Band.VALLEY] == 1000
    assert charge.wh_by_band[Band.PEAK] == 1000


@pytest.mark.parametrize(
    "at, wh",
    [(datetime(2024, 5, 1, 12), 10), (local(2024, 5, 1, 12), -1), (local(2024, 5, 1, 12), 1.5)],
    ids=["naive-time", "negative-register", "float-register"],
)
def test_bad_meter_samples_are_refused(at, wh):
    with pytest.raises(InvalidMeterSample):
        MeterSample(at, wh)


readings = st.lists(
    st.tuples(st.integers(min_value=0, max_value=48 * 3600), st.integers(min_value=0, max_value=500_000)),
    max_size=8,
)


@given(readings)
def test_energy_split_is_exact_and_never_negative(readings):
    base = local(2024, 5, 1)
    charge = price_energy(
        samples(*[(base + timedelta(seconds=s), wh) for s, wh in readings]), make_tariff(), SH
    )
    assert sum(charge.wh_by_band.values()) == charge.energy_wh >= 0
    assert all(wh >= 0 for wh in charge.wh_by_band.values())
    assert charge.energy_fen >= 0 and charge.service_fen >= 0
    exact = sum(PRICES[b] * wh for b, wh in charge.wh_by_band.items()) / Fraction(100_000)
    assert abs(charge.energy_fen - exact) <= Fraction(1, 2)


# --- idle fee -----------------------------------------------------------------

IDLE = flat_tariff(idle_fee_per_minute_fen=100, idle_fee_cap_fen=3000)  # 1 CNY per minute, 30 CNY cap, 10 min grace


@pytest.mark.parametrize(
    "idle, minutes, fee, capped",
    [
        (timedelta(0), 0, 0, False),
        (timedelta(minutes=10), 0, 0, False),               # the grace itself is free
        (timedelta(minutes=10, seconds=59), 0, 0, False),   # less than a whole minute past the grace
        (timedelta(minutes=11), 1, 100, False),
        (timedelta(minutes=13, seconds=59), 3, 300, False), # whole minutes: floor(3 min 59 s) = 3
        (timedelta(minutes=40), 30, 3000, False),           # exactly the cap
        (timedelta(minutes=41), 31, 3000, True),
        (timedelta(hours=5), 290, 3000, True),
    ],
)
def test_idle_fee_grace_then_whole_minutes_then_cap(idle, minutes, fee, capped):
    end = local(2024, 5, 1, 12)
    result = idle_fee(end, end + idle, IDLE)
    assert (result.idle, result.billed_minutes, result.fee_fen, result.capped) == (idle, minutes, fee, capped)


def test_idle_fee_without_cap_keeps_counting():
    end = local(2024, 5, 1, 12)
    result = idle_fee(end, end + timedelta(hours=2), flat_tariff(idle_fee_per_minute_fen=100))
    assert (result.billed_minutes, result.fee_fen, result.capped) == (110, 11000, False)


def test_available_before_charging_end_is_no_idle_time():
    end = local(2024, 5, 1, 12)
    result = idle_fee(end, end - timedelta(minutes=3), IDLE)
    assert (result.idle, result.fee_fen) == (timedelta(0), 0)


def test_idle_fee_with_zero_rate_is_free():
    end = local(2024, 5, 1, 12)
    assert idle_fee(end, end + timedelta(hours=1), flat_tariff()).fee_fen == 0


@given(st.integers(min_value=-3600, max_value=10 * 3600))
def test_idle_fee_is_never_negative_nor_above_the_cap(seconds):
    end = local(2024, 5, 1, 12)
    result = idle_fee(end, end + timedelta(seconds=seconds), IDLE)
    assert 0 <= result.fee_fen <= 3000
