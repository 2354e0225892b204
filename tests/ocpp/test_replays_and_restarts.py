"""Replays a charger sends after an outage, gateway restarts, and commands: through Mosquitto and the real bridge."""
from __future__ import annotations

from datetime import timedelta

import paho.mqtt.client as mqtt
import pytest
from ocpp.exceptions import InternalError, PropertyConstraintViolationError
from ocpp.v16 import call
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import func, select

from chargeapp import telemetry as t
from chargeapp.db import models as m
from chargeapp.services import charging
from chargeapp.services.common import enqueue_command
from mqtt_bridge.measure import Mosquitto
from tests.bridge.support import read_count, wait_for
from tests.e2e.test_scripted_day import local
from tests.ocpp.support import F1_ONLINE, WAIT, at, wait_offline_at_start

pytestmark = pytest.mark.e2e


def status(connector: int, value: str, when) -> call.StatusNotification:
    return call.StatusNotification(connector_id=connector, error_code="NoError", status=value, timestamp=at(when))


def meter(tx: int, wh: int, when) -> call.MeterValues:
    return call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[
        {"timestamp": at(when), "sampled_value": [{"value": str(wh), "unit": "Wh"}]}])


def charger_sequence(session) -> m.DeviceSequence:
    session.expire_all()
    return session.scalar(select(m.DeviceSequence).where(m.DeviceSequence.device.like("charger:%")))


def test_messages_queued_while_offline_are_applied_once_with_their_own_device_times(
        app, session, clock, station, driver, f1_credentials, bridge, start_gateway, charge_points):
    tag = driver_tag(session)
    ocpp_id, password = f1_credentials
    gateway = start_gateway()
    wait_offline_at_start(app)
    cp = charge_points(gateway.port, ocpp_id, password).connect()
    cp.send(call.BootNotification(charge_point_model="AC22", charge_point_vendor="ACME"))
    cp.send(status(1, "Available", clock.now()))
    clock.set(local(14, 10))
    start = call.StartTransaction(connector_id=1, id_tag=tag, meter_start=1_000, timestamp=at(local(14, 10)))
    tx = cp.send(start).transaction_id
    cp.send(status(1, "Charging", local(14, 10)))

    # The network drops at 14:15; the EV finishes at 14:30 while the charger is offline.
    cp.disconnect()
    wait_for(lambda: read_count(app, F1_ONLINE) == 0, WAIT, "F1 offline")
    clock.set(local(14, 40))
    cp.connect()
    wait_for(lambda: read_count(app, F1_ONLINE) == 1, WAIT, "F1 online again")
    cp.send(status(1, "Available", local(14, 40)))  # its current state first, then what it queued
    assert cp.send(start).transaction_id == tx  # the StartTransaction whose answer it never got: the same id
    cp.send(meter(tx, 4_000, local(14, 20)))
    stop = call.StopTransaction(meter_stop=7_000, timestamp=at(local(14, 30)), transaction_id=tx, reason="Local")
    cp.send(stop)
    cp.send(meter(tx, 4_000, local(14, 20)))  # and once more, as if the answers were lost
    cp.send(stop)
    published = gateway.counters.get("published")
    wait_for(lambda: read_count(app, "SELECT count(*) FROM applied_messages") == published, WAIT,
             "the bridge to apply every message the gateway published")
    wait_for(lambda: read_count(app, "SELECT count(*) FROM charging_sessions WHERE closed_by = 'stop'") == 1, WAIT,
             "the stop applied")
    bridge.stop()

    [cs] = session.scalars(select(m.ChargingSession)).all()
    assert (cs.transaction_id, cs.started_at, cs.stopped_at, cs.start_meter_wh, cs.stop_meter_wh, cs.closed_by) == (
        tx, local(14, 10), local(14, 30), 1_000, 7_000, "stop")
    assert [(r.at, r.energy_wh) for r in session.scalars(select(m.MeterReading))] == [(local(14, 20), 4_000)]
    assert gateway.counters.get("replays") == 2  # the start and the second stop: answered, not published again
    seq = charger_sequence(session)
    # Each message older than the one before it (the 14:20 meter after the 14:40 status, and its repeat after the
    # 14:30 stop) started a new boot after the BootNotification's boot 1, so no device time was taken for skewed.
    assert (seq.skewed, seq.missing, seq.gaps) == (0, 0, 0)
    assert seq.boot == 3
    assert session.scalar(select(m.DeadLetter.id)) is None


def driver_tag(session) -> str:
    """The one driver's id tag (the session is ended again: it must not hold SQLite's write lock)."""
    tag = session.scalar(select(m.IdTag.tag))
    session.remove()
    return tag


def test_transaction_ids_never_repeat_for_a_charger_across_a_gateway_restart(
        app, session, clock, station, driver, f1_credentials, bridge, start_gateway, charge_points):
    # F1 spoke MQTT before and reached transaction 4711: the gateway's ids start above it.
    charging.record_transaction(session, station_code="s1", charger_code="F1", event="start", connector=1,
                                transaction_id=4711, id_tag=None, meter_wh=0, at=local(13, 0), now=clock.now())
    session.commit()
    session.remove()
    tag = driver_tag(session)
    ocpp_id, password = f1_credentials
    ids = []
    for minute in (10, 20):
        gateway = start_gateway()
        wait_offline_at_start(app)
        cp = charge_points(gateway.port, ocpp_id, password).connect()
        wait_for(lambda: read_count(app, F1_ONLINE) == 1, WAIT, "F1 online")
        clock.set(local(14, minute))
        tx = cp.send(call.StartTransaction(connector_id=1, id_tag=tag, meter_start=minute, timestamp=at(clock.now())))
        ids.append(tx.transaction_id)
        cp.send(call.StopTransaction(meter_stop=minute + 5, timestamp=at(clock.now()), transaction_id=tx.transaction_id))
        gateway.stop()  # closes the charger's connection and says it is offline
        wait_for(lambda: read_count(app, F1_ONLINE) == 0, WAIT, "F1 offline after the gateway stopped")
        cp.close()
    assert ids == [4712, 4713]
    wait_for(lambda: read_count(app, "SELECT count(*) FROM charging_sessions WHERE closed_by = 'stop'") == 2, WAIT,
             "both stops applied")
    bridge.stop()
    seq = charger_sequence(session)
    assert (seq.boot, seq.last_seq, seq.missing, seq.skewed) == (0, 4, 0, 0)  # the count carried on over the restart
    assert session.scalar(select(func.count()).select_from(m.ChargingSession)) == 3


def test_commands_become_ocpp_calls_and_their_answers_command_results(
        app, session, clock, station, f1_credentials, bridge, start_gateway, charge_points):
    ocpp_id, password = f1_credentials
    gateway = start_gateway()
    wait_offline_at_start(app)
    cp = charge_points(gateway.port, ocpp_id, password, answers={
        "ChangeAvailability": "Rejected", "RemoteStopTransaction": "CALLERROR"}).connect()
    wait_for(lambda: read_count(app, F1_ONLINE) == 1, WAIT, "F1 online")
    f1 = session.scalar(select(m.Charger).where(m.Charger.code == "F1"))
    sent = {
        "remote_start": {"connector": 1, "id_tag": "APP-1234"},
        "change_availability": {"connector": 1, "type": "Inoperative"},
        "cancel_reservation": {"reservation_id": 55},
        "remote_stop": {"transaction_id": 77},
    }
    request_ids = {name: enqueue_command(session, f1, name, payload, clock.now()).request_id
                   for name, payload in sent.items()}
    session.commit()
    session.remove()
    calls = dict(cp.received.get(timeout=WAIT) for _ in sent)
    assert calls == {
        "RemoteStartTransaction": {"connector_id": 1, "id_tag": "APP-1234"},
        "ChangeAvailability": {"connector_id": 1, "type": "Inoperative"},
        "CancelReservation": {"reservation_id": 55},
        "RemoteStopTransaction": {"transaction_id": 77},
    }
    answered = "SELECT count(*) FROM command_outbox WHERE status = 'answered'"
    wait_for(lambda: read_count(app, answered) == 4, WAIT, "four answers recorded")
    results = dict(session.execute(select(m.CommandOutbox.name, m.CommandOutbox.result)).all())
    assert results == {"remote_start": "Accepted", "change_availability": "Rejected",
                       "cancel_reservation": "Accepted", "remote_stop": "Rejected"}  # a CALLERROR is a refusal
    session.remove()

    # The bridge's retry of an answered command (same request_id) gets the same answer, with no second CALL.
    retry = t.RemoteStart(station="s1", charger="F1", request_id=request_ids["remote_start"], connector=1,
                          id_tag="APP-1234")
    results_before = gateway.counters.get("commands_answered_again")
    publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ocpp-test-retry")
    publisher.connect("127.0.0.1", bridge.client.settings.port)
    publisher.loop_start()
    try:
        publisher.publish(*t.format_command(retry), qos=1).wait_for_publish(WAIT)
        wait_for(lambda: gateway.counters.get("commands_answered_again") == results_before + 1, WAIT, "the answer again")
    finally:
        publisher.disconnect()
        publisher.loop_stop()
    assert cp.received.empty()


def test_a_message_the_broker_never_acknowledged_is_refused_so_the_chargers_repeat_is_applied_once(
        app, session, clock, station, driver, f1_credentials, mosquitto, bridge, start_gateway, charge_points,  # noqa: F811
        tmp_path):
    tag = driver_tag(session)
    ocpp_id, password = f1_credentials
    # 3 s: the start before the outage must get its PUBACK in time on a busy CI box too (the stop then waits 3 s).
    gateway = start_gateway(puback_timeout=3)
    cp = charge_points(gateway.port, ocpp_id, password).connect()
    tx = cp.send(call.StartTransaction(connector_id=1, id_tag=tag, meter_start=0, timestamp=at(clock.now())))
    tx = tx.transaction_id
    wait_for(lambda: read_count(app, "SELECT count(*) FROM charging_sessions") == 1, WAIT, "the start applied")

    mosquitto.stop()  # the broker goes away (and, without persistence, forgets every session)
    # 9 kWh in 10 minutes (54 kW): a register a 120 kW charger can reach
    stop = call.StopTransaction(meter_stop=9_000, timestamp=at(clock.now() + timedelta(minutes=10)), transaction_id=tx)
    with pytest.raises(InternalError):
        cp.send(stop)  # no PUBACK within 3 s: the charger is told to try again, not that it was done

    again = Mosquitto(tmp_path / "mosquitto-again", port=mosquitto.port).start()
    try:
        wait_for(lambda: bridge.client.subscribed and gateway.mqtt.connected.is_set(), 15, "both clients back")
        cp.send(stop)  # the charger's retry
        wait_for(lambda: read_count(app, "SELECT count(*) FROM charging_sessions WHERE closed_by = 'stop'") == 1,
                 WAIT, "the stop applied")
        bridge.stop()
    finally:
        again.stop()
    [cs] = session.scalars(select(m.ChargingSession)).all()
    assert (cs.transaction_id, cs.stop_meter_wh) == (tx, 9_000)


def test_messages_the_contract_cannot_carry_are_refused_with_a_call_error_and_spend_no_id(
        app, session, clock, station, f1_credentials, start_gateway, charge_points):
    ocpp_id, password = f1_credentials
    gateway = start_gateway()
    cp = charge_points(gateway.port, ocpp_id, password).connect()
    with pytest.raises(PropertyConstraintViolationError):
        cp.send(call.StartTransaction(connector_id=1, id_tag="APP-\x07", meter_start=0, timestamp=at(clock.now())))
    with pytest.raises(PropertyConstraintViolationError):
        cp.send(call.StatusNotification(connector_id=1, error_code="NoError", status="Available", timestamp="soon"))
    assert cp.send(call.StartTransaction(connector_id=1, id_tag="APP-1", meter_start=0,
                                         timestamp=at(clock.now()))).transaction_id == 1
    assert gateway.counters.get("refused_messages") == 2


def test_meter_values_without_a_transaction_id_go_to_the_connectors_open_transaction_or_nowhere(
        app, session, clock, station, driver, f1_credentials, bridge, start_gateway, charge_points):
    tag = driver_tag(session)
    ocpp_id, password = f1_credentials
    gateway = start_gateway()
    cp = charge_points(gateway.port, ocpp_id, password).connect()

    def reading(wh: int, minute: int) -> call.MeterValues:
        return call.MeterValues(connector_id=1, meter_value=[
            {"timestamp": at(local(14, minute)), "sampled_value": [{"value": str(wh)}]}])

    cp.send(reading(100, 0))  # no transaction yet: a clock-aligned reading the contract has no place for
    clock.set(local(14, 5))
    tx = cp.send(call.StartTransaction(connector_id=1, id_tag=tag, meter_start=100, timestamp=at(local(14, 5))))
    clock.set(local(14, 10))
    cp.send(reading(3_100, 10))  # 3 kWh in 5 min and no power sent: 36 kW on average
    # A stop of a transaction the gateway never gave (say, from a central system before it): F1 has one connector.
    cp.send(call.StopTransaction(meter_stop=50, timestamp=at(local(14, 10)), transaction_id=999))
    wait_for(lambda: read_count(app, "SELECT count(*) FROM applied_messages") == gateway.counters.get("published"),
             WAIT, "the bridge to apply every message the gateway published")
    bridge.stop()
    assert gateway.counters.get("meter_values_outside_transaction") == 1
    [(energy, power, at_)] = session.execute(select(m.MeterReading.energy_wh, m.MeterReading.power_w,
                                                    m.MeterReading.at)).all()
    assert (energy, power, at_) == (3_100, 36_000, local(14, 10))
    sessions = {cs.transaction_id: cs for cs in session.scalars(select(m.ChargingSession))}
    assert set(sessions) == {tx.transaction_id, 999} and sessions[999].flags == ["stop_without_start"]
