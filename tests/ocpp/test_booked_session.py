"""A booked session end to end through OCPP: charge point -> gateway -> Mosquitto -> bridge -> database -> API.

The charge point is built with the ``ocpp`` library and speaks only OCPP 1.6J; the
gateway, a private Mosquitto on loopback and the real bridge (periodic work and
command outbox on) sit between it and the service. Time is the test's FixedClock;
every OCPP timestamp is the scripted time at which it is sent.

The figures are the scripted day's (tests/e2e/test_scripted_day.py): driver A
books 15:00 on F1 (Asia/Shanghai, 2026-11-22); at 14:50 the periodic work holds
F1 (reserve_now -> OCPP ReserveNow, Accepted); 14:55 start; meter 15:00, 15:05,
15:10; 15:15 stop after 30,000 Wh in the flat band: energy 1997 fen, service
2400 fen, idle 5 min inside the grace: total 4397 fen, issued when F1 reports
Available at 15:20.
"""
from __future__ import annotations

import pytest
from ocpp.v16 import call
from sqlalchemy import select

from chargeapp.db import models as m
from tests.bridge.support import read_count, wait_for
from tests.e2e.test_scripted_day import Http, iso, local, poll
from tests.integration.test_api_driver import register
from tests.ocpp.support import F1_ONLINE, WAIT, at, wait_offline_at_start

pytestmark = pytest.mark.e2e

METER_START = 5_120_000


def sampled(energy: str, unit: str = "Wh", power_w: str | None = None, soc: str | None = None) -> list[dict]:
    values = [{"value": energy, "measurand": "Energy.Active.Import.Register", "unit": unit}]
    if power_w is not None:
        values.append({"value": power_w, "measurand": "Power.Active.Import", "unit": "W"})
    if soc is not None:
        values.append({"value": soc, "measurand": "SoC", "unit": "Percent", "location": "EV"})
    return values


def test_a_booked_session_over_ocpp_is_held_started_metered_stopped_and_billed(
        app, session, clock, client, station, f1_credentials, bridge, start_gateway, charge_points):
    http = Http(client, session)
    a = register(http, "a@example.com")
    tag_a = http.get("/api/v1/auth/me", headers=a).json["id_tags"][0]
    r = http.post("/api/v1/bookings", headers=a, json={"station": "s1", "slot_start": iso(15, 0), "charger": "F1"})
    assert r.status_code == 201, r.json
    booking = r.json

    def get(path):
        r = http.get(path, headers=a)
        assert r.status_code == 200, (path, r.json)
        return r.json

    ocpp_id, password = f1_credentials
    gateway = start_gateway()
    wait_offline_at_start(app)
    cp = charge_points(gateway.port, ocpp_id, password).connect()

    boot = cp.send(call.BootNotification(charge_point_model="DC120", charge_point_vendor="ACME"))
    assert boot.status == "Accepted" and boot.current_time == at(clock.now())
    cp.send(call.StatusNotification(connector_id=1, error_code="NoError", status="Available", timestamp=at(clock.now())))
    wait_for(lambda: read_count(app, F1_ONLINE) == 1, WAIT, "F1 online")
    assert cp.send(call.Authorize(id_tag=tag_a)).id_tag_info["status"] == "Accepted"
    assert cp.send(call.Authorize(id_tag="NOT-A-DRIVER")).id_tag_info["status"] == "Invalid"

    # 14:50: the bridge's periodic work holds F1; the outbox's reserve_now arrives as OCPP ReserveNow.
    clock.set(local(14, 50))
    reserve = cp.command("ReserveNow")
    assert (reserve["reservation_id"], reserve["connector_id"], reserve["id_tag"], reserve["expiry_date"]) == (
        booking["id"], 1, tag_a, at(local(15, 10)))
    assert reserve["parent_id_tag"].startswith("driver-")
    cp.send(call.StatusNotification(connector_id=1, error_code="NoError", status="Reserved", timestamp=at(clock.now())))
    held = poll(lambda: get(f"/api/v1/bookings/{booking['id']}"), lambda b: b["status"] == "held", "the hold")
    assert (held["charger"], held["held_at"]) == ("F1", iso(14, 50))
    wait_for(lambda: read_count(app, "SELECT count(*) FROM command_outbox WHERE name = 'reserve_now' AND "
                                     "status = 'answered' AND result = 'Accepted'") == 1, WAIT, "the answer recorded")

    # 14:54-15:15: the driver charges.
    clock.set(local(14, 54))
    cp.send(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing", timestamp=at(clock.now())))
    clock.set(local(14, 55))
    started = cp.send(call.StartTransaction(connector_id=1, id_tag=tag_a, meter_start=METER_START,
                                            timestamp=at(clock.now()), reservation_id=booking["id"]))
    tx = started.transaction_id
    assert started.id_tag_info["status"] == "Accepted" and tx >= 1
    cp.send(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging", timestamp=at(clock.now())))
    checked = poll(lambda: get(f"/api/v1/bookings/{booking['id']}"), lambda b: b["status"] == "checked_in",
                   "the check-in")
    assert checked["checked_in_at"] == iso(14, 55)
    readings = ((0, sampled("5127.5", "kWh", power_w="90000", soc="40")),  # kWh is converted to Wh
                (5, sampled(str(METER_START + 15_000), soc="45")),  # no power: the average since 15:00
                (10, sampled(str(METER_START + 22_500), power_w="88000")))
    for minute, values in readings:
        clock.set(local(15, minute))
        cp.send(call.MeterValues(connector_id=1, transaction_id=tx,
                                 meter_value=[{"timestamp": at(clock.now()), "sampled_value": values}]))
    clock.set(local(15, 15))
    stopped = cp.send(call.StopTransaction(meter_stop=METER_START + 30_000, timestamp=at(clock.now()), transaction_id=tx,
                                           reason="EVDisconnected", id_tag=tag_a))
    assert stopped.id_tag_info["status"] == "Accepted"
    cp.send(call.StatusNotification(connector_id=1, error_code="NoError", status="Finishing", timestamp=at(clock.now())))
    clock.set(local(15, 20))
    cp.send(call.StatusNotification(connector_id=1, error_code="NoError", status="Available", timestamp=at(clock.now())))

    # The receipt, made by the app's periodic work from what the bridge applied.
    [receipt] = poll(lambda: get("/api/v1/me/receipts"), lambda rows: rows, "A's charging receipt")
    assert (receipt["kind"], receipt["issued_at"], receipt["energy_wh"], receipt["energy_fen"], receipt["service_fen"],
            receipt["idle_fen"], receipt["total_fen"]) == ("charging", iso(15, 20), 30_000, 1997, 2400, 0, 4397)
    [charged] = get("/api/v1/me/sessions")
    assert (charged["charger"], charged["transaction_id"], charged["energy_wh"], charged["closed_by"]) == (
        "F1", tx, 30_000, "stop")

    cp.close()
    wait_for(lambda: read_count(app, "SELECT online FROM chargers WHERE code = 'F1'") == 0, WAIT, "F1 offline")
    bridge.stop()
    gateway.stop()
    cs = session.scalar(select(m.ChargingSession))
    assert (cs.stop_reason, cs.reservation_id, cs.start_meter_wh) == ("EVDisconnected", booking["id"], METER_START)
    meters = [(r.energy_wh, r.power_w, r.soc) for r in session.scalars(select(m.MeterReading).order_by(m.MeterReading.at))]
    assert meters == [(METER_START + 7_500, 90_000, 40), (METER_START + 15_000, 90_000, 45),
                      (METER_START + 22_500, 88_000, None)]
    [seq] = session.scalars(select(m.DeviceSequence).where(m.DeviceSequence.device.like("charger:%"))).all()
    assert (seq.missing, seq.gaps, seq.skewed) == (0, 0, 0)
    assert session.scalar(select(m.DeadLetter.id)) is None
