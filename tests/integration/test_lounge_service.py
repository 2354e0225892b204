"""Lounge occupancy service: door counts, manager's count, nightly reset, zone view, hourly report (chargeapp.services.lounge)."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.services import lounge
from tests.conftest import T0

pytestmark = pytest.mark.integration

SH = ZoneInfo("Asia/Shanghai")


def local(day: int, hh: int, mm: int = 0) -> datetime:
    """A Shanghai wall time in November 2026."""
    return datetime(2026, 11, day, hh, mm, tzinfo=SH)


def door(session, sensor, seq, in_total, out_total, at, boot=1):
    return lounge.record_door_count(session, station_code="s1", sensor_code=sensor, boot=boot, seq=seq,
                                    in_total=in_total, out_total=out_total, at=at, now=at)


def zone(session, code) -> m.Zone:
    return session.scalar(select(m.Zone).where(m.Zone.code == code))


def counts(session, station, now):
    return {z["code"]: z["count"] for z in lounge.zone_view(session, station, now)}


def view(session, station, now, code):
    return next(z for z in lounge.zone_view(session, station, now) if z["code"] == code)


# -- door counts ---------------------------------------------------------------------


def test_door_passages_move_the_zone_count(session, station):
    assert door(session, "D1", 1, 3, 1, T0) == 4  # seq 1 of a boot: its totals are all new
    assert door(session, "D1", 2, 5, 1, T0 + timedelta(minutes=1)) == 2
    assert counts(session, station, T0 + timedelta(minutes=2)) == {"hall": 4, "tea": 0}
    hall = view(session, station, T0 + timedelta(minutes=2), "hall")
    assert (hall["capacity"], hall["free"], hall["uncertain"], hall["name"]) == (20, 16, False, "Hall")


def test_redelivered_old_count_applies_nothing(session, station):
    door(session, "D1", 1, 3, 0, T0)
    door(session, "D1", 2, 5, 0, T0 + timedelta(minutes=1))
    assert door(session, "D1", 2, 5, 0, T0 + timedelta(minutes=1)) == 0
    assert door(session, "D1", 1, 3, 0, T0) == 0
    assert counts(session, station, T0 + timedelta(minutes=2))["hall"] == 5
    rows = session.scalars(select(m.OccupancyChange).where(m.OccupancyChange.source == "door")).all()
    assert [r.delta for r in rows] == [3, 2]


def test_counter_reboot_neither_loses_nor_doubles_passages(session, station):
    door(session, "D1", 1, 10, 2, T0, boot=7)
    # rebooted: totals restart from zero, and every one of them is a new passage
    assert door(session, "D1", 1, 2, 0, T0 + timedelta(minutes=5), boot=8) == 2
    # a message of the old boot delivered late counts nothing
    assert door(session, "D1", 9, 12, 2, T0 + timedelta(minutes=4), boot=7) == 0
    assert counts(session, station, T0 + timedelta(minutes=6))["hall"] == 10
    sensor = session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D1"))
    assert (sensor.boot, sensor.seq, sensor.in_total, sensor.out_total) == (8, 1, 2, 0)


def test_a_reading_compares_with_the_sensors_stored_totals_not_a_copy_loaded_earlier(session, station):
    """Bridge workers share a sensor: a batch that loaded the row before another worker's commit must not
    compare with the totals it loaded. On PostgreSQL the other commit can come between the load and the
    reading (the reading locks and reads the row again); on SQLite it cannot: the batch's transaction holds
    the database's write lock from its first statement, so the copy it loaded stays current."""
    from sqlalchemy import create_engine, event, update
    from sqlalchemy.exc import OperationalError

    from chargeapp.db import db

    door(session, "D1", 1, 10, 2, T0)
    session.commit()
    sensor = session.scalar(select(m.DoorSensor).where(m.DoorSensor.code == "D1"))
    assert (sensor.seq, sensor.in_total) == (1, 10)  # loaded into this session, in a new transaction
    other = create_engine(db.engine.url)
    if db.engine.dialect.name == "sqlite":  # "locked" at once: the app's connect listener sets a 15 s busy timeout
        event.listen(other, "connect", lambda dbapi, _record: dbapi.execute("PRAGMA busy_timeout=0"))
    try:
        with other.connect() as conn:  # another worker applies seq 2 (12 in, 2 out: 2 passages) and commits
            write = update(m.DoorSensor).where(m.DoorSensor.id == sensor.id).values(seq=2, in_total=12, out_total=2)
            if db.engine.dialect.name == "sqlite":
                with pytest.raises(OperationalError, match="locked"):
                    conn.execute(write)
                assert door(session, "D1", 2, 12, 2, T0 + timedelta(minutes=1)) == 2  # so it applies after us
                return
            conn.execute(write)
            conn.commit()
    finally:
        other.dispose()
    # seq 3 (13 in) adds one passage since seq 2, not three since the stale seq 1
    assert door(session, "D1", 3, 13, 2, T0 + timedelta(minutes=2)) == 1


def test_first_reading_in_the_middle_of_a_boot_is_only_a_baseline(session, station):
    assert door(session, "D1", 40, 100, 90, T0) == 0
    assert door(session, "D1", 41, 101, 90, T0 + timedelta(minutes=1)) == 1
    assert counts(session, station, T0 + timedelta(minutes=2))["hall"] == 1


def test_seq_1_arriving_after_a_later_first_reading_counts_the_boot_from_its_start(session, station):
    """Two bridge workers: seq 3 is applied first (a baseline), then seq 1 and 2 of the same boot come late.
    Seq 1 shows the boot began in view, so every passage up to seq 3 counts, once."""
    assert door(session, "D1", 3, 6, 1, T0 + timedelta(minutes=3)) == 0
    assert door(session, "D1", 4, 7, 1, T0 + timedelta(minutes=4)) == 1
    assert door(session, "D1", 1, 2, 0, T0 + timedelta(minutes=1)) == 7  # 2 + 0 at seq 1, 4 + 1 up to seq 3
    assert door(session, "D1", 2, 4, 1, T0 + timedelta(minutes=2)) == 0
    assert door(session, "D1", 1, 2, 0, T0 + timedelta(minutes=1)) == 0  # redelivered
    assert counts(session, station, T0 + timedelta(minutes=5))["hall"] == 7 - 1
    assert counts(session, station, T0 + timedelta(minutes=2))["hall"] == 2  # seq 1's passages at seq 1's time
    assert session.scalars(select(m.OccupancyChange).where(m.OccupancyChange.source == "baseline")).all() == []


def test_an_older_boots_seq_1_after_a_reboot_does_not_undo_a_baseline(session, station):
    door(session, "D1", 40, 100, 90, T0, boot=3)  # a baseline of boot 3
    door(session, "D1", 1, 2, 0, T0 + timedelta(minutes=5), boot=4)
    assert door(session, "D1", 1, 1, 0, T0 - timedelta(hours=1), boot=3) == 0
    assert counts(session, station, T0 + timedelta(minutes=6))["hall"] == 2


def test_door_between_two_zones_moves_a_person_from_one_to_the_other(session, station):
    door(session, "D1", 1, 3, 0, T0)  # three people into the hall
    assert door(session, "D2", 1, 1, 0, T0 + timedelta(minutes=1)) == 1  # one goes on into the tea room
    assert counts(session, station, T0 + timedelta(minutes=2)) == {"hall": 2, "tea": 1}
    door(session, "D2", 2, 1, 1, T0 + timedelta(minutes=3))  # and comes back
    assert counts(session, station, T0 + timedelta(minutes=4)) == {"hall": 3, "tea": 0}


def test_zone_count_never_goes_below_zero_but_the_raw_change_is_kept(session, station):
    door(session, "D1", 1, 0, 3, T0)  # three leave whose entry was never counted
    door(session, "D1", 2, 2, 3, T0 + timedelta(minutes=1))
    assert counts(session, station, T0 + timedelta(minutes=2))["hall"] == 2
    deltas = session.scalars(select(m.OccupancyChange.delta).order_by(m.OccupancyChange.id)).all()
    assert deltas == [-3, 2]


def test_door_changes_stamped_after_now_do_not_count_yet(session, station):
    door(session, "D1", 1, 2, 0, T0 + timedelta(minutes=10))
    assert counts(session, station, T0)["hall"] == 0
    assert counts(session, station, T0 + timedelta(minutes=10))["hall"] == 2


def test_invalid_door_reading_is_refused(session, station):
    with pytest.raises(lounge.InvalidDoorCount):
        door(session, "D1", 1, -1, 0, T0)
    with pytest.raises(lounge.SensorNotFound):
        door(session, "D9", 1, 1, 0, T0)


# -- manager's count and nightly reset ----------------------------------------------------


def test_manager_set_is_a_baseline_earlier_door_changes_do_not_move(session, station):
    door(session, "D1", 1, 3, 0, T0)
    lounge.set_zone_count(session, zone_id=zone(session, "hall").id, count=5, now=T0 + timedelta(minutes=10))
    # a reading stamped before the set arrives late: it does not move the manager's count
    door(session, "D1", 2, 4, 0, T0 + timedelta(minutes=5))
    assert counts(session, station, T0 + timedelta(minutes=11))["hall"] == 5
    door(session, "D1", 3, 5, 0, T0 + timedelta(minutes=12))
    assert counts(session, station, T0 + timedelta(minutes=13))["hall"] == 6
    rows = session.scalars(select(m.OccupancyChange).where(m.OccupancyChange.source == "set")).all()
    assert [(r.count_after, r.delta) for r in rows] == [(5, 0)]


def test_manager_count_must_be_zero_or_more(session, station):
    hall = zone(session, "hall")
    with pytest.raises(lounge.InvalidZoneCount):
        lounge.set_zone_count(session, zone_id=hall.id, count=-1, now=T0)
    lounge.set_zone_count(session, zone_id=hall.id, count=0, now=T0)
    with pytest.raises(lounge.ZoneNotFound):
        lounge.set_zone_count(session, zone_id=9999, count=1, now=T0)


def test_nightly_reset_at_four_station_time_is_a_new_baseline(session, station):
    door(session, "D1", 1, 3, 0, local(23, 3, 50))
    assert counts(session, station, local(23, 3, 59))["hall"] == 3
    assert counts(session, station, local(23, 4, 0))["hall"] == 0
    # a reading stamped before the reset, arriving after it, does not move the new baseline
    door(session, "D1", 2, 4, 0, local(23, 3, 55))
    assert counts(session, station, local(23, 4, 1))["hall"] == 0
    door(session, "D1", 3, 5, 0, local(23, 4, 5))
    assert counts(session, station, local(23, 4, 6))["hall"] == 1


def test_lounge_open_around_the_clock_has_no_reset(session, station):
    station.rules.lounge_reset_time = None
    session.flush()
    door(session, "D1", 1, 3, 0, local(23, 3, 50))
    assert counts(session, station, local(23, 12, 0))["hall"] == 3


def test_manager_set_after_the_reset_wins_until_the_next_reset(session, station):
    lounge.set_zone_count(session, zone_id=zone(session, "tea").id, count=4, now=local(23, 10, 0))
    assert counts(session, station, local(23, 22, 0))["tea"] == 4
    assert counts(session, station, local(24, 4, 0))["tea"] == 0


# -- uncertainty ---------------------------------------------------------------------------


def test_zone_is_uncertain_while_a_sensor_into_or_out_of_it_is_offline(session, station):
    assert lounge.set_sensor_online(session, station_code="s1", sensor_code="D2", online=False, now=T0)
    assert not lounge.set_sensor_online(session, station_code="s1", sensor_code="D2", online=False, now=T0)
    shown = {z["code"]: z["uncertain"] for z in lounge.zone_view(session, station, T0)}
    assert shown == {"hall": True, "tea": True}  # D2 counts into tea and out of the hall
    lounge.set_sensor_online(session, station_code="s1", sensor_code="D2", online=True, now=T0)
    lounge.set_sensor_online(session, station_code="s1", sensor_code="D1", online=False, now=T0)
    shown = {z["code"]: z["uncertain"] for z in lounge.zone_view(session, station, T0)}
    assert shown == {"hall": True, "tea": False}


# -- hourly occupancy (reports) ------------------------------------------------------------------


def test_hourly_occupancy_gives_peak_and_time_weighted_average(session, station):
    hall = zone(session, "hall")
    door(session, "D1", 1, 2, 0, local(22, 14, 15))  # 2 people from 14:15
    door(session, "D1", 2, 2, 1, local(22, 14, 45))  # 1 from 14:45
    lounge.set_zone_count(session, zone_id=hall.id, count=4, now=local(22, 16, 30))
    hours = lounge.hourly_occupancy(session, hall, local(22, 14), local(22, 17), SH)
    assert hours == [
        (local(22, 14), 2, 1.25),  # (0*15 + 2*30 + 1*15) / 60
        (local(22, 15), 1, 1.0),
        (local(22, 16), 4, 2.5),  # 1 for 30 min, then the manager's 4
    ]
    assert hours[0].hour.tzinfo == SH


def test_hourly_occupancy_starts_from_the_count_before_the_range_and_follows_the_reset(session, station):
    hall = zone(session, "hall")
    door(session, "D1", 1, 3, 0, local(23, 2, 10))
    hours = lounge.hourly_occupancy(session, hall, local(23, 3), local(23, 5), SH)
    assert [(h.peak, h.average) for h in hours] == [(3, 3.0), (0, 0.0)]


def test_hourly_occupancy_agrees_with_the_live_view_when_a_person_leaves_first(session, station):
    hall = zone(session, "hall")
    door(session, "D1", 1, 0, 1, local(22, 14, 0))  # floor at zero: -1 does nothing
    door(session, "D1", 2, 1, 1, local(22, 14, 30))
    [hour] = lounge.hourly_occupancy(session, hall, local(22, 14), local(22, 15), SH)
    assert (hour.peak, hour.average) == (1, 0.5)
    assert counts(session, station, local(22, 15))["hall"] == 1
