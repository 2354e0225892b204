"""What a strict OCPP 1.6J charge point found (issue 14, item 9): frames, error codes, timestamps, logs, meter values.

Raw frames go through the asyncio websockets client on a thread of its own (as in test_handshake), so a test can
send what the ``ocpp`` library itself would never send (a numeric message id, a broken payload).
"""
from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.v16 import call
from sqlalchemy import select
from websockets.asyncio.client import connect

from chargeapp.db import models as m
from tests.bridge.support import read_count, wait_for
from tests.e2e.test_scripted_day import local
from tests.ocpp.support import WAIT, at, basic

pytestmark = pytest.mark.e2e

NO_ANSWER = 1.0  # seconds to wait for an answer that must not come

STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": "2026-11-22T06:55:00Z"}


def exchange(port: int, ocpp_id: str, password: str, frames: list) -> list:
    """Send each frame (a JSON value, or text as it is) on one connection; the gateway's answer to each, or None."""

    async def talk():
        answers = []
        async with connect(f"ws://127.0.0.1:{port}/ocpp/{ocpp_id}", subprotocols=["ocpp1.6"], open_timeout=WAIT,
                           additional_headers={"Authorization": basic(ocpp_id, password)}) as ws:
            for frame in frames:
                await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
                try:
                    answers.append(json.loads(await asyncio.wait_for(ws.recv(), NO_ANSWER if _dropped(frame)
                                                                     else WAIT)))
                except asyncio.TimeoutError:
                    answers.append(None)
        return answers

    with ThreadPoolExecutor(max_workers=1) as thread:  # the browser tests may hold an event loop in this thread
        return thread.submit(asyncio.run, talk()).result()


def _dropped(frame) -> bool:
    """Whether a frame is one the gateway cannot answer (no id to answer to): wait only briefly for nothing."""
    return not isinstance(frame, list) or len(frame) < 2 or frame[1] is None


def test_frames_and_payloads_a_strict_charge_point_sends_get_ocpp_1_6_answers_and_logs_without_personal_data(
        app, station, f1_credentials, start_gateway, caplog):
    caplog.set_level(logging.WARNING)
    ocpp_id, password = f1_credentials
    gateway = start_gateway()
    start = {"connectorId": 1, "idTag": "SECRET\u0007TAG", "meterStart": 0, "timestamp": "2026-11-22T06:55:00Z"}
    meter = {"connectorId": 1, "meterValue": [{"timestamp": "22/11/2026 14:55", "sampledValue": [{"value": "1"}]}]}
    answers = exchange(gateway.port, ocpp_id, password, [
        [2, 19223201, "Heartbeat", {}],  # OCPP-J: the message id is a string
        [2, "m-2", "StatusNotification", {**STATUS, "colour": "red"}],  # not in the schema
        [2, "m-3", "StatusNotification", {**STATUS, "timestamp": "22/11/2026 14:55"}],
        [2, "m-4", "MeterValues", meter],  # the same bad time: the same answer
        [2, "m-5", "StartTransaction", start],  # an id tag the contract cannot carry
        [2, None, "Heartbeat", {}],  # no id to answer to: dropped
        [2, "m-7", "Heartbeat", {}],  # and the connection still works
    ])
    heartbeat_ok = answers.pop()
    assert heartbeat_ok[:2] == [3, "m-7"] and "currentTime" in heartbeat_ok[2]
    assert [a[:3] if a else a for a in answers] == [
        [4, 19223201, "FormationViolation"],
        [4, "m-2", "FormationViolation"],
        [4, "m-3", "PropertyConstraintViolation"],
        [4, "m-4", "PropertyConstraintViolation"],
        [4, "m-5", "PropertyConstraintViolation"],
        None,
    ]
    assert answers[2][3] == "timestamp: not an RFC 3339 date-time (like 2026-11-22T06:55:00Z)"
    assert answers[3][3] == "meterValue[0].timestamp: not an RFC 3339 date-time (like 2026-11-22T06:55:00Z)"
    assert gateway.counters.get("refused_messages") == 6  # every CALL refused, answered or not

    gateway_records = [r for r in caplog.records if r.name.startswith(("ocpp", "ocpp_gateway"))]
    assert not [r for r in gateway_records if r.levelno >= logging.ERROR]
    refusals = [r.getMessage() for r in gateway_records if "refused" in r.getMessage()]
    assert len(refusals) == 6
    assert "refused StartTransaction 'm-5': PropertyConstraintViolation: bad_shape" in refusals[4]
    assert not [text for text in (r.getMessage() for r in caplog.records) if "SECRET" in text]


def test_meter_values_that_cannot_be_true_or_name_a_transaction_never_assigned_are_refused_and_not_applied(
        app, session, clock, station, driver, f1_credentials, bridge, start_gateway, charge_points):
    tag = session.scalar(select(m.IdTag.tag))
    session.remove()
    ocpp_id, password = f1_credentials
    gateway = start_gateway()
    cp = charge_points(gateway.port, ocpp_id, password).connect()

    def reading(tx: int, value: str, minute: int, unit: str = "Wh") -> call.MeterValues:
        return call.MeterValues(connector_id=1, transaction_id=tx, meter_value=[
            {"timestamp": at(local(14, minute)), "sampled_value": [{"value": value, "unit": unit}]}])

    clock.set(local(14, 0))
    tx = cp.send(call.StartTransaction(connector_id=1, id_tag=tag, meter_start=5_000_000,
                                       timestamp=at(local(14, 0)))).transaction_id
    clock.set(local(14, 2))  # device times within the bridge's skew tolerance of its receive time
    cp.send(reading(tx, "5004000", 2))  # 4 kWh in 2 min: 120 kW on F1, rated 120 kW
    clock.set(local(14, 6))
    refused = [
        reading(tx, "5200", 4),  # the register going backwards
        reading(tx, "5400.7", 6, unit="kWh"),  # 396.7 kWh in 4 min: 5.95 MW
        reading(tx, "5005000", 6, unit="W"),  # a register is not in W
        reading(tx + 1000, "5005000", 6),  # a transaction this central system never assigned
    ]
    for message in refused:
        with pytest.raises(PropertyConstraintViolationError):
            cp.send(message)
    cp.send(reading(tx, "5006", 6, unit="kWh"))  # 5,006 kWh: converted to 5,006,000 Wh
    clock.set(local(14, 10))
    with pytest.raises(PropertyConstraintViolationError):  # the stop's register too: 20 MWh in 8 min
        cp.send(call.StopTransaction(meter_stop=25_000_000, timestamp=at(local(14, 10)), transaction_id=tx))
    cp.send(call.StopTransaction(meter_stop=5_010_000, timestamp=at(local(14, 10)), transaction_id=tx))
    wait_for(lambda: read_count(app, "SELECT count(*) FROM applied_messages") == gateway.counters.get("published"),
             WAIT, "the bridge to apply every message the gateway published")
    bridge.stop()

    assert gateway.counters.get("meter_values_of_unknown_transactions") == 1
    assert gateway.counters.get("meter_values_refused_register_backwards") == 1
    assert gateway.counters.get("meter_values_refused_wrong_unit") == 1
    [cs] = session.scalars(select(m.ChargingSession)).all()  # no phantom session of the unknown transaction
    assert (cs.transaction_id, cs.start_meter_wh, cs.stop_meter_wh, cs.flags) == (tx, 5_000_000, 5_010_000, [])
    assert session.execute(select(m.MeterReading.at, m.MeterReading.energy_wh, m.MeterReading.power_w)
                           .order_by(m.MeterReading.at)).all() == [
        (local(14, 2), 5_004_000, 120_000), (local(14, 6), 5_006_000, 30_000)]
