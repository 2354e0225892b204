"""Tariff versions as stored rows and domain Tariffs (chargeapp.services.tariffs)."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.domain.errors import InvalidRequest
from chargeapp.domain.tariff import Band, InvalidTariff, TariffMissing
from chargeapp.services import tariffs
from tests.conftest import T0

pytestmark = pytest.mark.integration

UTC = timezone.utc
FIRST = datetime(2020, 1, 1, tzinfo=UTC)  # the fixture station's only version
ALL_DAY_FLAT = [{"start": "00:00", "end": "00:00", "band": "flat"}]


def test_version_in_effect_is_the_latest_that_started_at_or_before_the_instant(session, station):
    new = tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(hours=1), peak_price=20000)
    row, tariff = tariffs.tariff_for(session, station, T0 + timedelta(hours=1))
    assert row.id == new.id and tariff.price_of(Band.PEAK) == 20000
    row, tariff = tariffs.tariff_for(session, station, T0 + timedelta(minutes=59, seconds=59))
    assert row.effective_from == FIRST and tariff.price_of(Band.PEAK) == 10755


def test_stored_version_becomes_a_domain_tariff_with_bands_in_station_time(session, station):
    _, tariff = tariffs.tariff_for(session, station, T0)
    assert tariff.energy_price == {Band.PEAK: 10755, Band.FLAT: 6655, Band.VALLEY: 3055}
    assert tariff.service_fee == 8000 and tariff.idle_grace == timedelta(minutes=10)
    assert (tariff.idle_fee_per_minute_fen, tariff.idle_fee_cap_fen) == (50, 3000)
    assert (tariff.parking_block_fen, tariff.parking_daily_cap_fen) == (500, 6000)
    # 14:00 Shanghai is flat, 18:30 is peak, 23:00 is valley (22:00-00:00).
    shanghai = timezone(timedelta(hours=8))
    assert tariff.band_at(T0, shanghai) == Band.FLAT
    assert tariff.band_at(T0 + timedelta(hours=4, minutes=30), shanghai) == Band.PEAK
    assert tariff.band_at(T0 + timedelta(hours=9), shanghai) == Band.VALLEY


def test_no_version_before_the_first_one_is_tariff_missing(session, station):
    with pytest.raises(TariffMissing):
        tariffs.tariff_for(session, station, FIRST - timedelta(seconds=1))


def test_a_version_taking_effect_in_the_past_is_refused(session, station):
    with pytest.raises(tariffs.TariffInThePast) as err:
        tariffs.add_tariff_version(session, T0, station, effective_from=T0 - timedelta(seconds=1), peak_price=1)
    assert isinstance(err.value, InvalidRequest)
    assert len(tariffs.tariff_versions(session, station)) == 1


def test_a_version_may_take_effect_right_now(session, station):
    row = tariffs.add_tariff_version(session, T0, station, effective_from=T0, flat_price=7000)
    assert row.created_at == T0
    assert tariffs.tariff_for(session, station, T0)[1].price_of(Band.FLAT) == 7000


def test_fields_left_out_are_copied_from_the_version_it_follows(session, station):
    row = tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=1),
                                     parking_block_fen=600)
    assert row.parking_block_fen == 600
    assert (row.peak_price, row.flat_price, row.valley_price, row.service_fee) == (10755, 6655, 3055, 8000)
    assert (row.idle_fee_per_minute_fen, row.idle_fee_cap_fen, row.parking_daily_cap_fen) == (50, 3000, 6000)
    assert row.periods == tariffs.tariff_for(session, station, T0)[0].periods


def test_a_version_between_two_others_copies_the_earlier_one(session, station):
    tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=10), peak_price=30000)
    middle = tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=5),
                                        service_fee=9000)
    assert (middle.peak_price, middle.service_fee) == (10755, 9000)
    assert [v.peak_price for v in tariffs.tariff_versions(session, station)] == [10755, 10755, 30000]


def test_periods_that_leave_part_of_the_day_uncovered_are_refused(session, station):
    periods = [{"start": "00:00", "end": "06:00", "band": "valley"}, {"start": "07:00", "end": "00:00", "band": "peak"}]
    with pytest.raises(InvalidTariff, match="06:00:00-07:00:00 uncovered"):
        tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=1), periods=periods)


def test_overlapping_periods_are_refused(session, station):
    periods = [{"start": "00:00", "end": "12:00", "band": "valley"}, {"start": "11:00", "end": "00:00", "band": "peak"}]
    with pytest.raises(InvalidTariff, match="overlap"):
        tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=1), periods=periods)


@pytest.mark.parametrize("bad", [
    [{"start": "8am", "end": "00:00", "band": "flat"}],
    [{"start": "00:00", "end": "00:00", "band": "super-peak"}],
    [{"start": "00:00", "band": "flat"}],
    "00:00-24:00 flat",
])
def test_malformed_periods_are_refused(session, station, bad):
    with pytest.raises(InvalidTariff):
        tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=1), periods=bad)


def test_a_price_given_in_cny_as_a_float_is_refused(session, station):
    with pytest.raises(InvalidTariff):
        tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=1), peak_price=1.0755)


@pytest.mark.parametrize("field, value", [
    ("idle_grace_minutes", 2.5), ("idle_grace_minutes", -1), ("parking_daily_cap_fen", -1), ("service_fee", "8000"),
])
def test_non_integer_or_negative_fees_are_refused(session, station, field, value):
    with pytest.raises(InvalidTariff):
        tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=1), **{field: value})


def test_an_unknown_field_is_refused(session, station):
    with pytest.raises(InvalidTariff, match="peek_price"):
        tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=1), peek_price=1)


def test_a_naive_effective_from_is_refused(session, station):
    with pytest.raises(InvalidTariff):
        tariffs.add_tariff_version(session, T0, station, effective_from=datetime(2027, 1, 1), peak_price=1)


def test_two_versions_from_one_instant_are_refused(session, station):
    at = T0 + timedelta(days=1)
    tariffs.add_tariff_version(session, T0, station, effective_from=at, peak_price=11000)
    with pytest.raises(tariffs.TariffVersionExists):
        tariffs.add_tariff_version(session, T0, station, effective_from=at, peak_price=12000)


def test_24_00_is_accepted_as_the_end_of_the_day_and_stored_as_00_00(session, station):
    periods = [{"start": "00:00", "end": "08:00", "band": "valley"}, {"start": "08:00", "end": "24:00", "band": "flat"}]
    row = tariffs.add_tariff_version(session, T0, station, effective_from=T0 + timedelta(days=1), periods=periods)
    assert row.periods == [{"start": "00:00", "end": "08:00", "band": "valley"},
                           {"start": "08:00", "end": "00:00", "band": "flat"}]
    assert tariffs.to_domain(row).periods[1].end == time(0)


def test_the_first_version_of_a_station_must_give_its_prices(session, station):
    for row in tariffs.tariff_versions(session, station):
        session.delete(row)
    session.flush()
    with pytest.raises(InvalidTariff, match="periods, peak_price"):
        tariffs.add_tariff_version(session, T0, station, effective_from=T0, service_fee=8000)
    row = tariffs.add_tariff_version(session, T0, station, effective_from=T0, periods=ALL_DAY_FLAT,
                                     peak_price=10755, flat_price=10755, valley_price=10755, service_fee=0)
    assert (row.idle_fee_per_minute_fen, row.idle_fee_cap_fen) == (0, None)
    assert (row.parking_block_fen, row.currency) == (0, "CNY")
    assert session.scalar(select(m.TariffVersion.id).where(m.TariffVersion.station_id == station.id)) == row.id
