"""Charging and parking receipts, late-telemetry corrections, managers' changes, the driver's views
(chargeapp.services.receipts). Times are written in Shanghai wall time; the clock is at 14:00 on 22 Nov 2026."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from chargeapp.db import models as m
from chargeapp.domain.errors import Forbidden, InvalidRequest
from chargeapp.services import charging, gates, receipts, tariffs
from chargeapp.services.registry import create_user
from tests.conftest import T0

pytestmark = pytest.mark.integration

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
PLATE = "沪B67890"
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
_tx = count(1)
_user = count(1)


def local(hour, minute=0, second=0, day=22):
    """A Shanghai wall time on November ``day``, 2026, as an aware UTC instant."""
    return datetime(2026, 11, day, hour, minute, second, tzinfo=SHANGHAI).astimezone(UTC)


def charger(station, code):
    return next(c for c in station.chargers if c.code == code)


def new_driver(session, plate=PLATE, valid_from=LONG_AGO, valid_to=None):
    """A driver to whom ``plate`` is registered over [valid_from, valid_to)."""
    user = create_user(session, email=f"receipts{next(_user)}@example.com", password_hash="x", now=LONG_AGO)
    if plate:
        session.add(m.PlateRegistration(user_id=user.id, plate=plate, valid_from=valid_from, valid_to=valid_to))
    session.flush()
    return user


def manager_of(session, station, email="boss@example.com"):
    return create_user(session, email=email, password_hash="x", now=LONG_AGO, role="manager", stations=(station,))


def statuses(session, station, code, *changes):
    """Status history rows ``(at, status)`` for the charger's connector, as the charging service records them."""
    connector = charger(station, code).connectors[0]
    for at, status in changes:
        session.add(m.StatusChange(connector_id=connector.id, status=status, at=at))
    session.flush()


def charging_session(session, station, driver, start, stop=None, code="F1", start_wh=0, stop_wh=None,
                     readings=(), closed_by="stop"):
    c = charger(station, code)
    cs = m.ChargingSession(
        station_id=station.id, charger_id=c.id, connector_id=c.connectors[0].id, transaction_id=next(_tx),
        driver_id=driver.id if driver else None, started_at=start, start_meter_wh=start_wh,
        stopped_at=stop, stop_meter_wh=stop_wh, closed_by=closed_by if stop else None, flags=[],
    )
    session.add(cs)
    session.flush()
    for at, wh in readings:
        session.add(m.MeterReading(session_id=cs.id, at=at, energy_wh=wh))
    session.flush()
    return cs


def charged(session, station, driver, start, minutes, code="F1", stop_after=None, seconds=0):
    """A session at ``code`` from ``start``: Charging ``minutes`` (+ ``seconds``), SuspendedEV, Finishing, Available."""
    end = start + timedelta(minutes=minutes, seconds=seconds)
    stop = end + timedelta(minutes=stop_after or 1)
    statuses(session, station, code, (start, "Charging"), (end, "SuspendedEV"), (stop, "Finishing"),
             (stop + timedelta(minutes=1), "Available"))
    return charging_session(session, station, driver, start, stop, code=code, stop_wh=1000)


def stay(session, station, entry, exit, plate=PLATE, flags=()):
    s = m.ParkingStay(station_id=station.id, plate=plate, entry_at=entry, exit_at=exit, flags=list(flags))
    session.add(s)
    session.flush()
    return s


def count_receipts(session, **where):
    q = select(func.count(m.Receipt.id))
    for name, value in where.items():
        q = q.where(getattr(m.Receipt, name) == value)
    return session.scalar(q)


def frozen(receipt):
    """Everything of a receipt except ``superseded``."""
    return {c.key: getattr(receipt, c.key) for c in m.Receipt.__table__.columns if c.key != "superseded"}


# -- charging receipts --------------------------------------------------------------------------


def test_session_across_a_time_of_use_boundary_is_split_by_interpolation(session, station, driver):
    # Peak ends at 11:00. 10:50 -> 11:05 draws 15 kWh: 10 min of it peak (10 kWh), 5 min flat (5 kWh);
    # 11:05 -> 11:10 draws 5 kWh flat. Energy (10755 * 10000 + 6655 * 10000) / 100000 = 1741 fen.
    statuses(session, station, "F1", (local(10, 50), "Charging"), (local(11, 10), "Finishing"),
             (local(11, 12), "Available"))
    cs = charging_session(session, station, driver, local(10, 50), local(11, 10), start_wh=1000, stop_wh=21000,
                          readings=[(local(11, 5), 16000)])
    r = receipts.issue_charging_receipt(session, T0, cs)
    assert (r.kind, r.energy_wh, r.energy_fen, r.service_fen, r.idle_fen) == ("charging", 20000, 1741, 1600, 0)
    assert r.total_fen == 3341 and r.parking_fen == 0
    assert r.details["wh_by_band"] == {"peak": 10000, "flat": 10000, "valley": 0}
    assert r.driver_id == driver.id and r.session_id == cs.id and r.issued_at == T0
    assert r.tariff_version_id == tariffs.tariff_for(session, station, local(10, 50))[0].id
    assert r.explanation == (
        "Charger F1 from 10:50 to 11:10: 20.000 kWh. "
        "Energy: 10.000 kWh peak at 1.0755 CNY/kWh, 10.000 kWh flat at 0.6655 CNY/kWh: 17.41 CNY. "
        "Service: 20.000 kWh at 0.8000 CNY/kWh: 16.00 CNY. "
        "Idle 2 min from 11:10 until 11:12 (10 min free): no idle fee. Total 33.41 CNY."
    )


def test_30_kwh_at_1_0755_cny_per_kwh_is_exactly_3227_fen(session, station, driver):
    # 30 kWh x 1.0755 = 32.265 CNY = 3226.5 fen, rounded half-up once (floats would give 3226).
    statuses(session, station, "F1", (local(9), "Charging"), (local(9, 30), "Available"))
    cs = charging_session(session, station, driver, local(9), local(9, 30), start_wh=0, stop_wh=30000)
    r = receipts.issue_charging_receipt(session, T0, cs)
    assert (r.energy_fen, r.service_fen, r.total_fen) == (3227, 2400, 5627)


def idle_history(session, station, available_at, code="F1"):
    """Charging 09:00-09:30, SuspendedEV until the stop at 09:40, Finishing, then Available at ``available_at``."""
    statuses(session, station, code, (local(9), "Charging"), (local(9, 30), "SuspendedEV"),
             (local(9, 40), "Finishing"), (available_at, "Available"))


def test_idle_fee_is_billed_per_whole_minute_after_the_grace(session, station, driver):
    # Idle 09:30 -> 09:53:59 = 23 min 59 s; less 10 min grace = 13 min 59 s -> 13 whole minutes x 0.50 CNY.
    idle_history(session, station, local(9, 53, 59))
    cs = charging_session(session, station, driver, local(9), local(9, 40), stop_wh=10000)
    r = receipts.issue_charging_receipt(session, T0, cs)
    assert r.idle_fen == 650 and r.total_fen == r.energy_fen + r.service_fen + 650
    assert r.details["idle"] == {
        "status": "billed", "charging_ended_at": local(9, 30).isoformat(),
        "connector_free_at": local(9, 53, 59).isoformat(), "idle_seconds": 23 * 60 + 59, "idle_minutes": 23,
        "billed_minutes": 13, "capped": False,
    }
    assert "Idle 23 min 59 s from 09:30 until 09:53 (10 min free): 13 min at 0.50 CNY/min = 6.50 CNY." in r.explanation


def test_idle_fee_is_capped_per_session(session, station, driver):
    # Idle 09:30 -> 11:00 = 90 min: 80 min x 0.50 = 40.00 CNY, capped at 30.00.
    idle_history(session, station, local(11))
    cs = charging_session(session, station, driver, local(9), local(9, 40), stop_wh=10000)
    r = receipts.issue_charging_receipt(session, T0, cs)
    assert r.idle_fen == 3000 and r.details["idle"]["capped"] is True
    assert "80 min at 0.50 CNY/min = 40.00 CNY, capped at 30.00 CNY." in r.explanation


def test_slow_charger_sessions_have_no_idle_fee(session, station, driver):
    idle_history(session, station, local(11), code="S01")
    cs = charging_session(session, station, driver, local(9), local(9, 40), code="S01", stop_wh=10000)
    r = receipts.issue_charging_receipt(session, T0, cs)
    assert r.idle_fen == 0 and r.details["idle"]["status"] == "slow_charger"
    assert "No idle fee on slow chargers." in r.explanation


def test_fast_charger_receipt_waits_until_the_connector_is_available_again(session, station, driver):
    statuses(session, station, "F1", (local(13), "Charging"), (local(13, 20), "Finishing"))
    cs = charging_session(session, station, driver, local(13), local(13, 20), stop_wh=10000)
    assert receipts.issue_charging_receipt(session, T0, cs) is None
    statuses(session, station, "F1", (local(13, 45), "Available"))
    r = receipts.issue_charging_receipt(session, T0, cs)
    assert r.idle_fen == 15 * 50  # 25 min idle, 15 billed


def test_receipt_is_issued_without_idle_fee_when_available_never_comes_and_a_late_one_corrects_it(
        session, station, driver):
    statuses(session, station, "F1", (local(9), "Charging"), (local(9, 20), "Finishing"))
    cs = charging_session(session, station, driver, local(9), local(9, 20), stop_wh=10000)
    assert receipts.issue_charging_receipt(session, local(11, 19), cs) is None  # 1 h 59 min after the stop
    r = receipts.issue_charging_receipt(session, local(11, 20), cs)
    assert r.idle_fen == 0 and r.details["idle"]["status"] == "not_reported"
    assert "has not reported Available yet: no idle fee charged" in r.explanation
    statuses(session, station, "F1", (local(9, 35), "Available"))  # delayed by a charger outage
    correction = receipts.recheck(session, local(11, 30), r)
    assert correction.idle_fen == 250 and correction.corrects_id == r.id  # 15 min idle, 5 billed


def test_the_next_session_on_the_connector_ends_the_idle_time_when_no_available_was_reported(
        session, station, driver):
    statuses(session, station, "F1", (local(9), "Charging"), (local(9, 20), "Finishing"),
             (local(9, 45), "Preparing"), (local(9, 46), "Charging"))
    first = charging_session(session, station, driver, local(9), local(9, 20), stop_wh=10000)
    charging_session(session, station, new_driver(session, plate=None), local(9, 45), closed_by=None)
    r = receipts.issue_charging_receipt(session, T0, first)
    assert r.idle_fen == 15 * 50 and r.details["idle"]["connector_free_at"] == local(9, 45).isoformat()


def test_session_that_never_reached_charging_has_no_idle_fee(session, station, driver):
    statuses(session, station, "F1", (local(9), "Preparing"), (local(9, 1), "SuspendedEV"),
             (local(9, 40), "Finishing"), (local(10, 30), "Available"))
    cs = charging_session(session, station, driver, local(9), local(9, 40), stop_wh=0)
    r = receipts.issue_charging_receipt(session, T0, cs)
    assert (r.idle_fen, r.total_fen) == (0, 0) and r.details["idle"]["status"] == "no_charging"


def test_charging_receipt_is_issued_once(session, station, driver):
    idle_history(session, station, local(9, 45))
    cs = charging_session(session, station, driver, local(9), local(9, 40), stop_wh=10000)
    first = receipts.issue_charging_receipt(session, T0, cs)
    again = receipts.issue_charging_receipt(session, T0 + timedelta(hours=1), cs)
    assert again.id == first.id and count_receipts(session, session_id=cs.id) == 1


def test_open_session_and_session_without_its_start_get_no_receipt(session, station, driver):
    open_cs = charging_session(session, station, driver, local(13), None)
    assert receipts.issue_charging_receipt(session, T0, open_cs) is None
    no_start = charging_session(session, station, driver, None, local(13, 30), stop_wh=5000)
    assert receipts.issue_charging_receipt(session, T0, no_start) is None
    assert count_receipts(session) == 0


def test_a_tariff_change_after_a_session_leaves_its_receipt_unchanged(session, station, driver):
    statuses(session, station, "F1", (local(9), "Charging"), (local(9, 30), "Available"),
             (local(16), "Charging"), (local(16, 30), "Available"))
    cs = charging_session(session, station, driver, local(9), local(9, 30), stop_wh=30000)
    issued = receipts.issue_charging_receipt(session, T0, cs)
    before = frozen(issued)
    new = tariffs.add_tariff_version(session, T0, station, effective_from=local(15), peak_price=20000)
    assert receipts.recheck(session, local(17), issued) is None
    assert frozen(issued) == before and issued.superseded is False and issued.energy_fen == 3227
    # A session started after the new version takes effect is priced by it (18:00 is peak).
    later = charging_session(session, station, driver, local(18), local(18, 30), stop_wh=30000)
    statuses(session, station, "F1", (local(18), "Charging"), (local(18, 30), "Available"))
    r = receipts.issue_charging_receipt(session, local(19), later)
    assert r.tariff_version_id == new.id and r.energy_fen == 6000


def test_a_session_running_into_a_new_version_is_priced_by_the_version_at_its_start(session, station, driver):
    tariffs.add_tariff_version(session, T0, station, effective_from=local(15), flat_price=9000)
    statuses(session, station, "F1", (local(14, 30), "Charging"), (local(15, 30), "Available"))
    cs = charging_session(session, station, driver, local(14, 30), local(15, 30), stop_wh=10000)
    r = receipts.issue_charging_receipt(session, local(16), cs)
    assert r.energy_fen == 666  # 10 kWh flat at 0.6655 = 665.5 fen -> 666, not 9000's 900


# -- parking receipts ------------------------------------------------------------------------------


@pytest.fixture
def owner(session):
    """The driver the stays' plate is registered to."""
    return new_driver(session)


def test_stay_with_14_min_59_s_of_charging_pays_full_parking(session, station, owner):
    charged(session, station, owner, local(10, 10), 14, seconds=59)
    s = stay(session, station, local(10), local(13))
    r = receipts.settle_stay(session, T0, s)
    # Not qualified: 10:00 -> 13:00 is 6 blocks of 30 min at 5.00 CNY.
    assert (r.kind, r.parking_fen, r.total_fen, r.energy_fen) == ("parking", 3000, 3000, 0)
    assert r.stay_id == s.id and r.driver_id == owner.id and s.settled_at == T0
    assert r.explanation == ("Charged 14 min 59 s (15 min needed): no free parking. "
                             "6 blocks of 30 min from entry at 10:00: 30.00 CNY.")
    assert r.details["qualified"] is False and r.details["charging_seconds"] == 899


def test_stay_with_15_min_of_charging_gets_120_min_free(session, station, owner):
    charged(session, station, owner, local(10, 10), 15)
    s = stay(session, station, local(10), local(13))
    r = receipts.settle_stay(session, T0, s)
    assert r.parking_fen == 1000  # free until 12:00, then blocks at 12:00 and 12:30
    assert r.explanation == ("Charged 15 min (15 min needed): first 120 min free, until 12:00. "
                             "2 blocks of 30 min after that: 10.00 CNY.")
    assert r.details["free_until"] == local(12).isoformat() and r.details["blocks"] == 2


def test_two_sessions_of_8_min_qualify(session, station, owner):
    first = charged(session, station, owner, local(10, 10), 8, code="F1")
    second = charged(session, station, owner, local(11), 8, code="F2")
    r = receipts.settle_stay(session, T0, stay(session, station, local(10), local(12)))
    assert r.parking_fen == 0 and r.details["charging_seconds"] == 16 * 60
    assert r.details["sessions"] == [first.id, second.id]
    assert "Left within the free time: 0.00 CNY." in r.explanation


def test_20_min_of_suspended_ev_does_not_qualify(session, station, owner):
    statuses(session, station, "F1", (local(10, 5), "Preparing"), (local(10, 6), "SuspendedEV"),
             (local(10, 26), "Finishing"), (local(10, 27), "Available"))
    charging_session(session, station, owner, local(10, 5), local(10, 26), stop_wh=0)
    r = receipts.settle_stay(session, T0, stay(session, station, local(10), local(13)))
    assert r.parking_fen == 3000 and r.details["charging_seconds"] == 0


def test_a_car_shared_by_two_drivers_counts_both_drivers_charging(session, station, owner):
    other = new_driver(session)  # the same plate, registered to the second shift driver too
    charged(session, station, owner, local(10, 10), 8, code="F1")
    charged(session, station, other, local(10, 40), 8, code="F2")
    r = receipts.settle_stay(session, T0, stay(session, station, local(10), local(13)))
    assert r.details["qualified"] is True and r.parking_fen == 1000
    assert r.details["drivers"] == sorted([owner.id, other.id])


def test_charging_of_a_driver_the_plate_was_not_registered_to_during_the_stay_does_not_count(
        session, station, owner):
    former = new_driver(session, valid_to=local(9))  # gave the car back before the stay
    stranger = new_driver(session, plate="沪C11111")
    charged(session, station, former, local(10, 10), 20, code="F1")
    charged(session, station, stranger, local(10, 10), 20, code="F2")
    r = receipts.settle_stay(session, T0, stay(session, station, local(10), local(13)))
    assert r.parking_fen == 3000 and r.details["drivers"] == [owner.id]


def test_charging_counts_only_while_the_plate_was_registered_to_that_driver(session, station):
    # The car changes hands at 10:20: the new driver's charging before that was in another car.
    new_driver(session, valid_to=local(10, 20))
    newcomer = new_driver(session, valid_from=local(10, 20))
    charged(session, station, newcomer, local(10, 10), 20)  # 10:10-10:30 -> 10 min count
    r = receipts.settle_stay(session, T0, stay(session, station, local(10), local(13)))
    assert r.details["charging_seconds"] == 600 and r.parking_fen == 3000
    assert r.driver_id == newcomer.id  # the plate was registered to them when the car left


def test_charging_at_another_station_does_not_count(session, station, owner):
    from tests.factories import make_station

    elsewhere = make_station(session, T0, code="s2")
    charged(session, elsewhere, owner, local(10, 10), 20)
    r = receipts.settle_stay(session, T0, stay(session, station, local(10), local(13)))
    assert r.parking_fen == 3000


def test_a_stay_across_midnight_is_capped_per_station_day(session, station, owner):
    # 17:00 on the 21st to 01:10 on the 22nd, not qualified: 14 blocks start on the 21st
    # (70.00 CNY, capped at 60.00) and 3 on the 22nd (00:00, 00:30, 01:00: 15.00 CNY).
    r = receipts.settle_stay(session, T0, stay(session, station, local(17, day=21), local(1, 10)))
    assert r.parking_fen == 7500
    assert r.details["days"] == [
        {"day": "2026-11-21", "blocks": 14, "fen": 6000, "capped": True},
        {"day": "2026-11-22", "blocks": 3, "fen": 1500, "capped": False},
    ]
    assert r.explanation.endswith("Daily cap on 2026-11-21: 14 blocks capped at 60.00 CNY.")


def test_parking_receipt_only_after_the_settling_delay(session, station, owner):
    s = stay(session, station, local(13), local(13, 50, 1))
    assert receipts.settle_stay(session, T0, s) is None  # 9 min 59 s after gate out
    assert s.settled_at is None
    r = receipts.settle_stay(session, T0 + timedelta(seconds=1), s)
    assert r.parking_fen == 1000 and s.settled_at == T0 + timedelta(seconds=1)
    assert receipts.settle_stay(session, T0 + timedelta(hours=1), s).id == r.id


def test_settling_delay_is_per_station_configuration(session, station, owner):
    station.rules.receipt_settle_minutes = 30
    s = stay(session, station, local(13), local(13, 40))
    assert receipts.settle_stay(session, T0, s) is None
    assert receipts.settle_stay(session, local(14, 10), s) is not None


def test_stay_without_an_entry_gets_no_automatic_receipt(session, station, owner):
    s = stay(session, station, None, local(12), flags=["out_without_in"])
    assert receipts.settle_stay(session, T0, s) is None
    assert receipts.settle_due(session, T0)["stays_without_entry"] == 1
    assert count_receipts(session) == 0


def test_unregistered_plate_gets_a_receipt_without_a_driver(session, station):
    r = receipts.settle_stay(session, T0, stay(session, station, local(13), local(13, 20), plate="沪D00000"))
    assert r.driver_id is None and r.parking_fen == 500


# -- late telemetry ---------------------------------------------------------------------------------


def test_a_late_status_message_produces_a_correction_and_leaves_the_original_unchanged(session, station, owner):
    charged(session, station, owner, local(10, 10), 14, stop_after=30)  # SuspendedEV 10:24, stop 10:54
    s = stay(session, station, local(10), local(13))
    original = receipts.settle_stay(session, T0, s)
    before = frozen(original)
    assert original.parking_fen == 3000
    # The charger was offline: it resumed charging 10:30-10:31, reported after the receipt.
    statuses(session, station, "F1", (local(10, 30), "Charging"), (local(10, 31), "SuspendedEV"))
    later = T0 + timedelta(minutes=30)
    correction = receipts.recheck(session, later, original)
    assert (correction.kind, correction.corrects_id, correction.stay_id) == ("correction", original.id, s.id)
    assert (correction.parking_fen, correction.total_fen) == (-2000, -2000)
    assert correction.issued_at == later and correction.driver_id == owner.id
    assert correction.details["before"]["parking_fen"] == 3000 and correction.details["after"]["parking_fen"] == 1000
    assert correction.explanation.startswith(
        f"Correction of receipt #{original.id} after late telemetry: parking 30.00 CNY -> 10.00 CNY (-20.00 CNY); "
        "total 30.00 CNY -> 10.00 CNY. Now: Charged 15 min (15 min needed): first 120 min free, until 12:00.")
    assert frozen(original) == before and original.superseded is True and correction.superseded is False
    assert receipts.recheck(session, later, original) is None  # nothing new since
    note = session.scalar(select(m.Notification).where(m.Notification.user_id == owner.id))
    assert note.kind == "receipt_corrected" and note.data["receipt_id"] == correction.id


def test_a_second_correction_corrects_the_latest_one(session, station, owner):
    charged(session, station, owner, local(10, 10), 14, stop_after=30)
    original = receipts.settle_stay(session, T0, stay(session, station, local(10), local(13)))
    statuses(session, station, "F1", (local(10, 30), "Charging"), (local(10, 31), "SuspendedEV"))
    first = receipts.recheck(session, T0, original)
    statuses(session, station, "F1", (local(10, 30, 30), "SuspendedEV"))  # only 30 s of it was Charging
    second = receipts.recheck(session, T0, original)
    assert second.corrects_id == first.id and second.parking_fen == 2000
    assert second.details["before"]["parking_fen"] == 1000 and second.details["after"]["parking_fen"] == 3000
    assert [original.superseded, first.superseded, second.superseded] == [True, True, False]
    assert original.parking_fen + first.parking_fen + second.parking_fen == 3000


def test_a_late_available_through_the_charging_service_corrects_the_idle_fee(session, station, driver):
    idle_history(session, station, local(10, 20))  # idle 50 min: 40 billed = 20.00 CNY
    cs = charging_session(session, station, driver, local(9), local(9, 40), stop_wh=10000)
    original = receipts.issue_charging_receipt(session, T0, cs)
    assert original.idle_fen == 2000
    # The real unplugging, 09:55, arrives late from a charger that was offline.
    charging.record_status(session, station_code="s1", charger_code="F1", connector=1, status="Available",
                           at=local(9, 55), now=T0)
    correction = receipts.recheck(session, T0, original)
    assert (correction.idle_fen, correction.energy_fen, correction.total_fen) == (-1250, 0, -1250)
    assert "idle fee 20.00 CNY -> 7.50 CNY (-12.50 CNY)" in correction.explanation


def test_a_late_meter_reading_moving_energy_across_a_band_boundary_corrects_the_energy(session, station, driver):
    statuses(session, station, "F1", (local(10, 40), "Charging"), (local(11, 20), "Available"))
    cs = charging_session(session, station, driver, local(10, 40), local(11, 20), stop_wh=20000)
    original = receipts.issue_charging_receipt(session, T0, cs)
    assert original.energy_fen == 1741  # 10 kWh peak (10:40-11:00), 10 kWh flat
    session.add(m.MeterReading(session_id=cs.id, at=local(11), energy_wh=18000))  # most of it before 11:00
    session.flush()
    correction = receipts.recheck(session, T0, original)
    # 18 kWh peak + 2 kWh flat = (193,590,000 + 13,310,000) / 100,000 = 2069 fen.
    assert correction.energy_fen == 2069 - 1741 and correction.service_fen == 0 and correction.energy_wh == 0


# -- managers ---------------------------------------------------------------------------------------


@pytest.fixture
def idle_receipt(session, station, driver):
    idle_history(session, station, local(9, 53))  # 23 min idle: 13 billed = 6.50 CNY
    cs = charging_session(session, station, driver, local(9), local(9, 40), stop_wh=10000)
    return receipts.issue_charging_receipt(session, T0, cs)


def test_waiving_the_idle_fee_writes_an_audited_correction(session, station, idle_receipt):
    boss = manager_of(session, station)
    correction = receipts.waive_fee(session, T0, boss, idle_receipt.id, "Charger screen froze", component="idle")
    assert (correction.kind, correction.corrects_id) == ("correction", idle_receipt.id)
    assert (correction.idle_fen, correction.energy_fen, correction.total_fen) == (-650, 0, -650)
    assert idle_receipt.superseded is True and idle_receipt.idle_fen == 650
    assert "idle fee waived by the station manager" in correction.explanation
    assert correction.explanation.endswith("Reason: Charger screen froze")
    entry = session.scalar(select(m.AuditEntry))
    assert (entry.user_id, entry.action, entry.target_type, entry.target_id) == (
        boss.id, "receipt.waive_fee", "receipt", idle_receipt.id)
    assert (entry.reason, entry.station_id) == ("Charger screen froze", station.id)
    assert entry.before["idle_fen"] == 650 and entry.after["idle_fen"] == 0
    assert entry.after["receipt_id"] == correction.id


def test_waiving_everything_zeroes_every_component(session, station, idle_receipt):
    admin = create_user(session, email="root@example.com", password_hash="x", now=LONG_AGO, role="admin")
    correction = receipts.waive_fee(session, T0, admin, idle_receipt.id, "Goodwill")
    assert correction.total_fen == -idle_receipt.total_fen
    assert correction.details["after"]["total_fen"] == 0
    with pytest.raises(receipts.NothingToCorrect):
        receipts.waive_fee(session, T0, admin, correction.id, "Goodwill again")


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_managers_change_needs_a_reason(session, station, idle_receipt, reason):
    boss = manager_of(session, station)
    with pytest.raises(receipts.ReasonRequired) as err:
        receipts.waive_fee(session, T0, boss, idle_receipt.id, reason, component="idle")
    assert isinstance(err.value, InvalidRequest)
    with pytest.raises(receipts.ReasonRequired):
        receipts.correct_fee(session, T0, boss, idle_receipt.id, reason, idle_fen=100)
    assert count_receipts(session) == 1 and session.scalar(select(func.count(m.AuditEntry.id))) == 0


def test_correcting_a_fee_sets_the_new_amount_and_is_audited(session, station, idle_receipt):
    boss = manager_of(session, station)
    correction = receipts.correct_fee(session, T0, boss, idle_receipt.id, "Driver was stuck at the barrier",
                                      idle_fen=300)
    assert (correction.idle_fen, correction.total_fen) == (-350, -350)
    entry = session.scalar(select(m.AuditEntry))
    assert entry.action == "receipt.correct_fee" and entry.reason == "Driver was stuck at the barrier"
    assert (entry.before["idle_fen"], entry.after["idle_fen"]) == (650, 300)


def test_a_fee_set_by_a_manager_is_kept_when_late_telemetry_changes_it(session, station, idle_receipt):
    boss = manager_of(session, station)
    receipts.correct_fee(session, T0, boss, idle_receipt.id, "Agreed with the driver", idle=300)
    statuses(session, station, "F1", (local(9, 45), "Available"))  # idle was really 15 min
    assert receipts.recheck(session, T0, idle_receipt) is None


def test_manager_corrections_refuse_wrong_components_and_amounts(session, station, idle_receipt):
    boss = manager_of(session, station)
    with pytest.raises(receipts.InvalidFeeComponent):
        receipts.waive_fee(session, T0, boss, idle_receipt.id, "x", component="parking")
    with pytest.raises(receipts.InvalidFeeAmount):
        receipts.correct_fee(session, T0, boss, idle_receipt.id, "x", idle_fen=-1)
    with pytest.raises(receipts.InvalidFeeAmount):
        receipts.correct_fee(session, T0, boss, idle_receipt.id, "x", idle_fen=2.5)
    with pytest.raises(receipts.InvalidFeeComponent):
        receipts.correct_fee(session, T0, boss, idle_receipt.id, "x")
    with pytest.raises(receipts.NothingToCorrect):
        receipts.correct_fee(session, T0, boss, idle_receipt.id, "x", idle_fen=650)
    with pytest.raises(receipts.ReceiptNotFound):
        receipts.waive_fee(session, T0, boss, 999_999, "x")


def test_only_a_manager_of_the_receipts_station_may_change_it(session, station, idle_receipt, driver):
    from tests.factories import make_station

    other = make_station(session, T0, code="s2")
    outsider = manager_of(session, other, email="other@example.com")
    with pytest.raises(receipts.NotStationManager) as err:
        receipts.waive_fee(session, T0, outsider, idle_receipt.id, "Because")
    assert isinstance(err.value, Forbidden)
    with pytest.raises(receipts.NotStationManager):
        receipts.waive_fee(session, T0, driver, idle_receipt.id, "Because")


# -- the periodic work -----------------------------------------------------------------------------


def test_settle_due_issues_what_is_due_and_rechecks_recent_receipts(session, station):
    owner = new_driver(session)
    idle_history(session, station, local(9, 45))
    charging_session(session, station, owner, local(9), local(9, 40), stop_wh=10000)
    statuses(session, station, "F2", (local(13, 30), "Charging"), (local(13, 50), "Finishing"))
    charging_session(session, station, owner, local(13, 30), local(13, 50), code="F2", stop_wh=5000)  # no Available yet
    for direction, at in (("in", local(12)), ("out", local(13, 40)), ("in", local(13, 55))):
        gates.record_gate_passage(session, station_code="s1", gate_code=f"G-{direction}", plate=PLATE,
                                  direction=direction, at=at, now=at)
    counts = receipts.settle_due(session, T0)
    assert counts == {"rechecked": 0, "corrections": 0, "charging_receipts": 1, "charging_waiting": 1,
                      "parking_receipts": 1, "parking_waiting": 0, "stays_without_entry": 0, "errors": 0}
    again = receipts.settle_due(session, T0 + timedelta(minutes=5))
    assert (again["rechecked"], again["corrections"], again["charging_receipts"]) == (2, 0, 0)
    assert count_receipts(session) == 2
    assert receipts.settle_due(session, T0 + timedelta(hours=25))["rechecked"] == 0


def test_settle_due_counts_a_station_without_tariff_as_an_error_and_goes_on(session, station, owner):
    from tests.factories import make_station

    broken = make_station(session, T0, code="s2")
    for row in tariffs.tariff_versions(session, broken):
        session.delete(row)
    stay(session, broken, local(12), local(13))
    stay(session, station, local(12), local(13))
    counts = receipts.settle_due(session, T0)
    assert (counts["errors"], counts["parking_receipts"]) == (1, 1)


# -- the driver's views ----------------------------------------------------------------------------


def test_driver_receipts_newest_first_with_corrections(session, station, idle_receipt, driver):
    boss = manager_of(session, station)
    correction = receipts.waive_fee(session, T0 + timedelta(minutes=1), boss, idle_receipt.id, "Goodwill",
                                    component="idle")
    assert [r.id for r in receipts.driver_receipts(session, driver.id, 10)] == [correction.id, idle_receipt.id]
    assert [r.id for r in receipts.driver_receipts(session, driver.id, 1)] == [correction.id]


def test_parking_status_shows_free_until_during_a_stay(session, station, owner):
    charged(session, station, owner, local(13, 10), 20)
    stay(session, station, local(13), None)
    [status] = receipts.parking_status(session, T0, owner.id)
    assert status["qualified"] is True and status["free_until"] == local(15)
    assert (status["charging_seconds"], status["still_needed_seconds"], status["fee_fen_if_left_now"]) == (1200, 0, 0)
    assert status["explanation"] == ("Charged 20 min (15 min needed): parking free until 15:00. "
                                     "Leaving now costs 0.00 CNY.")


def test_parking_status_counts_a_session_still_charging_and_the_fee_so_far(session, station, owner):
    statuses(session, station, "F1", (local(13, 50), "Charging"))
    charging_session(session, station, owner, local(13, 50), None, closed_by=None)
    s = stay(session, station, local(13), None)
    stay(session, station, local(12), None, plate="沪E22222")  # someone else's car
    [status] = receipts.parking_status(session, T0, owner.id)
    assert status["stay_id"] == s.id and status["qualified"] is False and status["free_until"] is None
    assert (status["charging_seconds"], status["still_needed_seconds"]) == (600, 300)
    assert status["fee_fen_if_left_now"] == 1000  # 13:00 -> 14:00: two blocks
    assert status["explanation"] == ("Charged 10 min so far (15 min needed): charge 5 min more for free parking "
                                     "until 15:00. Leaving now costs 10.00 CNY.")
    assert receipts.parking_status(session, T0, new_driver(session, plate=None).id) == []
