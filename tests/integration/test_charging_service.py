"""Charger telemetry service: status history, transactions, meter readings (chargeapp.services.charging)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from chargeapp.db import models as m
from chargeapp.domain.charger import InvalidStatusChange
from chargeapp.domain.errors import NotFound
from chargeapp.services import booking, charging
from chargeapp.services.common import ChargerNotFound, StationNotFound
from tests.conftest import T0
from tests.factories import make_driver

pytestmark = pytest.mark.integration


@pytest.fixture
def hooks(monkeypatch):
    """Record the booking hooks the charging service calls (the booking service is tested on its own)."""
    calls = {"rehome": [], "check_in": []}
    monkeypatch.setattr(booking, "rehome_after_fault", lambda s, now, charger: calls["rehome"].append(charger.code))
    monkeypatch.setattr(booking, "check_in_from_session",
                        lambda s, now, cs: calls["check_in"].append(cs.transaction_id))
    return calls


def status(session, st, at, charger="F1", connector=1, error_code="NoError"):
    return charging.record_status(session, station_code="s1", charger_code=charger, connector=connector,
                                  status=st, error_code=error_code, at=at, now=at)


def start(session, tx, at, connector=1, id_tag="UNKNOWN", charger="F1", meter=1000, reservation_id=None):
    return charging.record_transaction(session, station_code="s1", charger_code=charger, event="start",
                                       connector=connector, transaction_id=tx, id_tag=id_tag, meter_wh=meter,
                                       at=at, reservation_id=reservation_id, now=at)


def stop(session, tx, at, connector=1, id_tag="UNKNOWN", charger="F1", meter=2000, reason="EVDisconnected"):
    return charging.record_transaction(session, station_code="s1", charger_code=charger, event="stop",
                                       connector=connector, transaction_id=tx, id_tag=id_tag, meter_wh=meter,
                                       at=at, reason=reason, now=at)


def history(session, charger="F1"):
    rows = session.execute(
        select(m.StatusChange.status, m.StatusChange.at)
        .join(m.Connector, m.Connector.id == m.StatusChange.connector_id)
        .join(m.Charger, m.Charger.id == m.Connector.charger_id)
        .where(m.Charger.code == charger)
        .order_by(m.StatusChange.at, m.StatusChange.id)
    )
    return [(s, at) for s, at in rows]


def connector(session, charger="F1"):
    return session.scalar(select(m.Connector).join(m.Charger).where(m.Charger.code == charger))


def sessions(session):
    return list(session.scalars(select(m.ChargingSession).order_by(m.ChargingSession.id)))


def tag_of(session, driver):
    return session.scalar(select(m.IdTag.tag).where(m.IdTag.user_id == driver.id))


# -- status --------------------------------------------------------------------------


def test_first_status_is_history_and_current_state(session, station, hooks):
    assert status(session, "Charging", T0) is True
    assert history(session) == [("Charging", T0)]
    c = connector(session)
    assert (c.status, c.status_at) == ("Charging", T0)


def test_retained_status_replayed_on_reconnect_adds_nothing(session, station, hooks):
    status(session, "Preparing", T0)
    assert status(session, "Preparing", T0) is False
    assert history(session) == [("Preparing", T0)]


def test_repeated_status_later_is_not_a_new_change_and_keeps_status_at(session, station, hooks):
    status(session, "Charging", T0)
    assert status(session, "Charging", T0 + timedelta(minutes=5)) is False
    assert [s for s, _ in history(session)] == ["Charging", "Charging"]  # the report is kept, as a repeat
    assert connector(session).status_at == T0


def test_a_repeat_ends_an_older_state_that_arrives_after_it(session, station, hooks):
    """Available, then Preparing 13:55 delivered after a repeated Available 14:05 (two bridge workers):
    the connector is Available, and the history has Preparing only from 13:55 to 14:05."""
    status(session, "Available", T0)
    status(session, "Available", T0 + timedelta(minutes=10))
    assert status(session, "Preparing", T0 + timedelta(minutes=5)) is True
    c = connector(session)
    # Available again since 14:05: the Preparing that came late ended the run that began at 14:00.
    assert (c.status, c.status_at, c.reported_at) == (
        "Available", T0 + timedelta(minutes=10), T0 + timedelta(minutes=10))
    assert [s for s, _ in history(session)] == ["Available", "Preparing", "Available"]


def test_status_at_is_when_the_current_run_began_whatever_order_the_reports_came_in(session, station, hooks):
    """Two bridge workers: Charging 14:00, then the next session's Charging 14:20 ahead of the Finishing,
    Available and Preparing between them: Charging since 14:20; a late Charging 14:18 with nothing between
    moves it back to 14:18."""
    minutes = lambda n: T0 + timedelta(minutes=n)  # noqa: E731
    status(session, "Charging", minutes(0))
    status(session, "Charging", minutes(20))
    assert connector(session).status_at == minutes(0)  # nothing else known yet: one run since 14:00
    for n, value in ((5, "Finishing"), (10, "Available"), (15, "Preparing")):
        status(session, value, minutes(n))
    assert (connector(session).status, connector(session).status_at) == ("Charging", minutes(20))
    assert status(session, "Charging", minutes(18)) is True  # the current state began earlier
    assert (connector(session).status, connector(session).status_at) == ("Charging", minutes(18))


def test_older_status_arriving_late_goes_to_history_only(session, station, hooks):
    status(session, "Preparing", T0)
    status(session, "Finishing", T0 + timedelta(minutes=30))
    assert status(session, "Charging", T0 + timedelta(minutes=1)) is True
    assert [s for s, _ in history(session)] == ["Preparing", "Charging", "Finishing"]
    c = connector(session)
    assert (c.status, c.status_at) == ("Finishing", T0 + timedelta(minutes=30))


def test_late_status_equal_to_the_state_then_in_effect_adds_nothing(session, station, hooks):
    status(session, "Charging", T0)
    status(session, "Finishing", T0 + timedelta(minutes=30))
    assert status(session, "Charging", T0 + timedelta(minutes=10)) is False
    assert [s for s, _ in history(session)] == ["Charging", "Charging", "Finishing"]


def test_new_error_code_of_the_same_status_is_a_change(session, station, hooks):
    status(session, "Faulted", T0, error_code="GroundFailure")
    assert status(session, "Faulted", T0 + timedelta(minutes=1), error_code="OverCurrentFailure") is True
    assert connector(session).error_code == "OverCurrentFailure"


def test_faulted_or_unavailable_rehomes_bookings_once_per_outage(session, station, hooks):
    status(session, "Available", T0)
    status(session, "Faulted", T0 + timedelta(minutes=1), error_code="GroundFailure")
    status(session, "Faulted", T0 + timedelta(minutes=1), error_code="GroundFailure")  # replay
    status(session, "Unavailable", T0 + timedelta(minutes=2))  # still out of service
    assert hooks["rehome"] == ["F1"]
    status(session, "Available", T0 + timedelta(minutes=3))
    status(session, "Unavailable", T0 + timedelta(minutes=4))
    assert hooks["rehome"] == ["F1", "F1"]


def test_late_faulted_older_than_current_state_rehomes_nothing(session, station, hooks):
    status(session, "Available", T0 + timedelta(minutes=10))
    status(session, "Faulted", T0)
    assert hooks["rehome"] == []
    assert connector(session).status == "Available"


def test_unknown_station_charger_or_connector_is_not_found(session, station, hooks):
    with pytest.raises(StationNotFound):
        charging.record_status(session, station_code="nope", charger_code="F1", connector=1,
                               status="Available", at=T0, now=T0)
    with pytest.raises(ChargerNotFound):
        status(session, "Available", T0, charger="F9")
    with pytest.raises(charging.ConnectorNotFound) as err:
        status(session, "Available", T0, connector=2)
    assert isinstance(err.value, NotFound)


def test_unknown_status_value_is_refused(session, station, hooks):
    with pytest.raises(InvalidStatusChange):
        status(session, "Broken", T0)


def test_available_closes_the_open_session_of_the_connector(session, station, hooks):
    start(session, 77, T0)
    status(session, "Charging", T0 + timedelta(minutes=1))
    assert status(session, "Available", T0 + timedelta(minutes=40)) is True
    [cs] = sessions(session)
    assert (cs.closed_by, cs.stopped_at) == ("available", T0 + timedelta(minutes=40))


def test_available_does_not_close_a_session_on_another_connector_or_charger(session, station, hooks):
    start(session, 77, T0)
    status(session, "Available", T0 + timedelta(minutes=5), charger="F2")
    assert sessions(session)[0].closed_by is None


def test_late_available_older_than_the_session_start_does_not_close_it(session, station, hooks):
    start(session, 77, T0)
    status(session, "Available", T0 - timedelta(minutes=5))
    assert sessions(session)[0].closed_by is None


def test_earlier_available_arriving_late_moves_the_inferred_close_but_never_a_stop(session, station, hooks):
    start(session, 77, T0)
    status(session, "Available", T0 + timedelta(minutes=40))
    status(session, "Available", T0 + timedelta(minutes=25))  # queued during an outage
    assert sessions(session)[0].stopped_at == T0 + timedelta(minutes=25)
    start(session, 78, T0 + timedelta(hours=1))
    stop(session, 78, T0 + timedelta(hours=2))
    status(session, "Available", T0 + timedelta(minutes=90))
    assert (sessions(session)[1].closed_by, sessions(session)[1].stopped_at) == ("stop", T0 + timedelta(hours=2))


def test_start_arriving_after_a_later_available_is_closed_by_it(session, station, hooks):
    status(session, "Available", T0 + timedelta(minutes=30))
    cs = start(session, 77, T0)
    assert (cs.closed_by, cs.stopped_at) == ("available", T0 + timedelta(minutes=30))


# -- transactions ------------------------------------------------------------------


def test_transaction_start_is_idempotent(session, station, driver, hooks):
    first = start(session, 77, T0, id_tag=tag_of(session, driver))
    again = start(session, 77, T0, id_tag=tag_of(session, driver))
    assert first.id == again.id
    assert len(sessions(session)) == 1
    assert (first.started_at, first.start_meter_wh, first.driver_id) == (T0, 1000, driver.id)
    assert hooks["check_in"] == [77]


def test_transaction_stop_is_idempotent(session, station, hooks):
    start(session, 77, T0)
    stop(session, 77, T0 + timedelta(minutes=20))
    cs = stop(session, 77, T0 + timedelta(minutes=20))
    assert len(sessions(session)) == 1
    assert (cs.closed_by, cs.stopped_at, cs.stop_meter_wh, cs.stop_reason) == (
        "stop", T0 + timedelta(minutes=20), 2000, "EVDisconnected")
    assert cs.flags == []


def test_stop_before_start_then_start_is_one_session_with_both_halves_flagged(session, station, driver, hooks):
    tag = tag_of(session, driver)
    early = stop(session, 77, T0 + timedelta(minutes=20), id_tag=tag)
    assert early.flags == ["stop_without_start"]
    assert early.started_at is None and early.driver_id == driver.id
    cs = start(session, 77, T0, id_tag=tag)
    assert len(sessions(session)) == 1
    assert (cs.started_at, cs.start_meter_wh) == (T0, 1000)
    assert (cs.stopped_at, cs.stop_meter_wh, cs.closed_by) == (T0 + timedelta(minutes=20), 2000, "stop")
    assert cs.flags == ["stop_without_start"]
    # the late pair still reaches the booking service: once for the stop, once for the start
    assert hooks["check_in"] == [77, 77]


def test_a_start_arriving_after_a_stop_with_another_card_makes_the_starter_the_driver(session, clock, station,
                                                                                      driver, hooks):
    """Arrival order must not decide who pays: the start's card wins over the stop's."""
    supervisor = make_driver(session, clock.now(), id_tag="SUPERVISOR-1")
    early = stop(session, 77, T0 + timedelta(minutes=20), id_tag="SUPERVISOR-1")
    assert early.driver_id == supervisor.id  # all that is known so far
    cs = start(session, 77, T0, id_tag=tag_of(session, driver))
    assert (cs.id_tag, cs.driver_id) == (tag_of(session, driver), driver.id)
    in_order = start(session, 78, T0 + timedelta(hours=1), id_tag=tag_of(session, driver))
    stop(session, 78, T0 + timedelta(hours=1, minutes=20), id_tag="SUPERVISOR-1")
    assert (in_order.id_tag, in_order.driver_id) == (tag_of(session, driver), driver.id)


def test_stop_of_a_session_that_has_a_booking_does_not_ask_for_check_in_again(session, station, driver, hooks):
    cs = start(session, 77, T0)
    session.add(m.Booking(driver_id=driver.id, station_id=station.id, charger_id=cs.charger_id,
                          booked_charger_id=cs.charger_id, slot_start=T0, slot_end=T0 + timedelta(minutes=30),
                          status="checked_in", created_at=T0, session_id=cs.id))
    session.flush()
    stop(session, 77, T0 + timedelta(minutes=20))
    assert hooks["check_in"] == [77]


def test_new_start_on_the_same_connector_closes_the_previous_session(session, station, hooks):
    start(session, 77, T0)
    start(session, 78, T0 + timedelta(hours=1))
    old, new = sessions(session)
    assert (old.closed_by, old.stopped_at) == ("new_start", T0 + timedelta(hours=1))
    assert new.closed_by is None


def test_new_start_on_another_charger_leaves_the_session_open(session, station, hooks):
    start(session, 77, T0)
    start(session, 78, T0 + timedelta(hours=1), charger="F2")
    assert [cs.closed_by for cs in sessions(session)] == [None, None]


def test_late_start_of_an_earlier_transaction_is_closed_by_the_later_start(session, station, hooks):
    start(session, 78, T0 + timedelta(hours=1))
    early = start(session, 77, T0)
    later = sessions(session)[0]
    assert later.transaction_id == 78 and later.closed_by is None
    assert (early.closed_by, early.stopped_at) == ("new_start", T0 + timedelta(hours=1))


def test_late_stop_replaces_an_inferred_close_and_is_flagged(session, station, hooks):
    start(session, 77, T0)
    start(session, 78, T0 + timedelta(hours=1))
    cs = stop(session, 77, T0 + timedelta(minutes=25))
    assert (cs.closed_by, cs.stopped_at) == ("stop", T0 + timedelta(minutes=25))
    assert cs.flags == ["late_stop"]


def test_driver_comes_from_the_reservation_when_the_tag_is_unknown(session, station, driver, hooks):
    f1 = session.scalar(select(m.Charger).where(m.Charger.code == "F1"))
    b = m.Booking(driver_id=driver.id, station_id=station.id, charger_id=f1.id, booked_charger_id=f1.id,
                  slot_start=T0, slot_end=T0 + timedelta(minutes=30), status="held", created_at=T0)
    session.add(b)
    session.flush()
    cs = start(session, 77, T0, id_tag="CARD-NOBODY", reservation_id=b.id)
    assert (cs.driver_id, cs.reservation_id) == (driver.id, b.id)


def test_unknown_transaction_event_is_refused(session, station, hooks):
    with pytest.raises(charging.InvalidTransactionEvent):
        charging.record_transaction(session, station_code="s1", charger_code="F1", event="pause", connector=1,
                                    transaction_id=1, id_tag=None, meter_wh=0, at=T0, now=T0)


# -- meter ---------------------------------------------------------------------------


def meter(session, tx, at, energy, power=50000, soc=None):
    return charging.record_meter(session, station_code="s1", charger_code="F1", connector=1, transaction_id=tx,
                                 energy_wh=energy, power_w=power, soc=soc, at=at, now=at)


def test_meter_sample_of_the_same_session_and_instant_is_stored_once(session, station, hooks):
    cs = start(session, 77, T0)
    meter(session, 77, T0 + timedelta(seconds=30), 1200, soc=40)
    again = meter(session, 77, T0 + timedelta(seconds=30), 1200, soc=40)
    meter(session, 77, T0 + timedelta(seconds=60), 1500)
    assert again.session_id == cs.id
    assert session.scalar(select(func.count()).select_from(m.MeterReading)) == 2


def test_meter_without_start_makes_a_placeholder_the_start_fills(session, station, hooks):
    meter(session, 77, T0 + timedelta(minutes=1), 1200)
    [placeholder] = sessions(session)
    assert placeholder.flags == ["meter_without_start"] and placeholder.closed_by is None
    cs = start(session, 77, T0)
    assert cs.id == placeholder.id and cs.started_at == T0
    assert cs.flags == ["meter_without_start"]


def test_placeholder_session_is_closed_by_a_later_start_on_its_connector(session, station, hooks):
    meter(session, 76, T0, 1200)
    start(session, 77, T0 + timedelta(minutes=30))
    placeholder = sessions(session)[0]
    assert (placeholder.closed_by, placeholder.stopped_at) == ("new_start", T0 + timedelta(minutes=30))


# -- charger state, manager actions, queries -------------------------------------------


def test_charger_online_flag_changes_only_on_a_change(session, station, hooks):
    assert charging.set_charger_online(session, station_code="s1", charger_code="F1", online=False, now=T0)
    assert not charging.set_charger_online(session, station_code="s1", charger_code="F1", online=False, now=T0)
    live = {c["code"]: c for c in charging.station_live(session, station)}
    assert live["F1"]["online"] is False and live["F2"]["online"] is True


def test_manager_closes_a_stuck_session(session, station, hooks):
    cs = start(session, 77, T0)
    closed = charging.close_stuck_session(session, session_id=cs.id, at=T0 + timedelta(hours=3),
                                          now=T0 + timedelta(hours=5))
    assert (closed.closed_by, closed.stopped_at) == ("manager", T0 + timedelta(hours=3))
    with pytest.raises(charging.SessionNotOpen):
        charging.close_stuck_session(session, session_id=cs.id, at=T0 + timedelta(hours=4),
                                     now=T0 + timedelta(hours=5))


def test_manager_cannot_close_a_session_before_its_start_or_in_the_future(session, station, hooks):
    cs = start(session, 77, T0)
    with pytest.raises(charging.InvalidCloseTime):
        charging.close_stuck_session(session, session_id=cs.id, at=T0 - timedelta(minutes=1), now=T0)
    with pytest.raises(charging.InvalidCloseTime):
        charging.close_stuck_session(session, session_id=cs.id, at=T0 + timedelta(minutes=1), now=T0)
    with pytest.raises(charging.ChargingSessionNotFound):
        charging.close_stuck_session(session, session_id=9999, at=T0, now=T0)


def test_station_live_lists_every_charger_with_its_connectors(session, station, hooks):
    status(session, "Charging", T0, charger="F2")
    live = charging.station_live(session, station)
    assert [c["code"] for c in live] == ["F1", "F2", "F3", "S01", "S02"]
    f2 = live[1]
    assert (f2["kind"], f2["level"], f2["in_service"]) == ("fast", "B1", True)
    assert f2["connectors"] == [{"number": 1, "status": "Charging", "error_code": "NoError", "status_at": T0}]


def test_driver_sessions_newest_first(session, station, driver, hooks):
    tag = tag_of(session, driver)
    start(session, 77, T0, id_tag=tag)
    start(session, 78, T0 + timedelta(hours=1), id_tag=tag, charger="F2")
    stop(session, 90, T0 + timedelta(hours=2), id_tag=tag, charger="F3")  # stop without start
    start(session, 79, T0 + timedelta(hours=3), id_tag="SOMEONE-ELSE", charger="F3")
    assert [cs.transaction_id for cs in charging.driver_sessions(session, driver.id, 10)] == [90, 78, 77]
    assert [cs.transaction_id for cs in charging.driver_sessions(session, driver.id, 1)] == [90]


# -- with the real booking service ---------------------------------------------------------


def _booking(session, station, driver, charger_code, slot_start, status="held"):
    charger = session.scalar(select(m.Charger).where(m.Charger.code == charger_code))
    b = m.Booking(driver_id=driver.id, station_id=station.id, charger_id=charger.id,
                  booked_charger_id=charger.id, slot_start=slot_start,
                  slot_end=slot_start + timedelta(minutes=30), status=status, created_at=T0 - timedelta(hours=1))
    session.add(b)
    session.flush()
    return b


def test_start_of_the_drivers_transaction_checks_the_booking_in(session, station, driver):
    b = _booking(session, station, driver, "F1", T0)
    cs = start(session, 77, T0 - timedelta(minutes=5), id_tag=tag_of(session, driver))
    assert (b.status, b.session_id, b.checked_in_at) == ("checked_in", cs.id, T0 - timedelta(minutes=5))


def test_faulted_charger_moves_its_booking_to_another_fast_charger(session, station, driver):
    b = _booking(session, station, driver, "F1", T0 + timedelta(hours=1), status="booked")
    status(session, "Faulted", T0, error_code="GroundFailure")
    assert b.status == "booked" and b.charger.code != "F1"
