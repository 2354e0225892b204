"""The bridge's meter sample path (handler._record_meter) stores what ``charging.record_meter`` stores.

Meter samples of a known session are written with Core statements in the bridge
(speed: docs/performance.md, bridge ingest); anything unusual goes to the
service. These check the two give the same rows for the same messages.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from chargeapp.db import models as m
from chargeapp.services import charging
from mqtt_bridge.handler import APPLIED, DEAD_LETTER, ApplyContext, apply_message
from tests.bridge.wire import charger, rx
from tests.conftest import T0

pytestmark = pytest.mark.integration

NOW = T0 + timedelta(hours=1)


def apply(session, *messages, context=None):
    ctx = context or ApplyContext()
    out = [apply_message(session, rx(msg), NOW, context=ctx) for msg in messages]
    session.commit()
    return out


def readings(session):
    return session.execute(
        select(m.ChargingSession.transaction_id, m.Charger.code, m.MeterReading.at, m.MeterReading.energy_wh,
               m.MeterReading.power_w, m.MeterReading.soc, m.ChargingSession.flags)
        .join(m.ChargingSession, m.ChargingSession.id == m.MeterReading.session_id)
        .join(m.Charger, m.Charger.id == m.ChargingSession.charger_id)
        .order_by(m.MeterReading.id)
    ).all()


def test_samples_of_a_session_are_stored_once_per_instant_as_the_service_stores_them(session, station):
    f1, f2 = charger("F1"), charger("F2")
    at = [T0 + timedelta(minutes=i) for i in range(4)]
    outs = apply(session,
                 f1.start(5, ts=at[0]), f2.start(6, ts=at[0]),
                 f1.meter(5, 1_000_100, power_w=7_400.4, soc=None, ts=at[1]),
                 f2.meter(6, 2_000_100, power_w=60_000, soc=81.6, ts=at[1]),
                 f1.meter(5, 1_000_100, ts=at[1]),  # the same instant again, another seq: a no-op
                 f1.meter(5, 1_000_200, ts=at[2]))
    assert [o.status for o in outs] == [APPLIED] * 6
    apply(session, f1.meter(5, 1_000_200, ts=at[2]), f1.meter(5, 1_000_300, ts=at[3]))  # next batch: at[2] again
    got = readings(session)

    # The same messages through the service alone, on a fresh copy of the sessions.
    session.execute(m.MeterReading.__table__.delete())
    session.commit()
    for code, tx, wh, w, soc, ts in (("F1", 5, 1_000_100, 7_400, None, at[1]), ("F2", 6, 2_000_100, 60_000, 82, at[1]),
                                     ("F1", 5, 1_000_100, 50_000, 50, at[1]), ("F1", 5, 1_000_200, 50_000, 50, at[2]),
                                     ("F1", 5, 1_000_200, 50_000, 50, at[2]), ("F1", 5, 1_000_300, 50_000, 50, at[3])):
        charging.record_meter(session, station_code="s1", charger_code=code, connector=1, transaction_id=tx,
                              energy_wh=wh, power_w=w, soc=soc, at=ts, now=NOW)
    session.commit()
    assert got == readings(session)
    assert [(r.transaction_id, r.energy_wh, r.power_w, r.soc) for r in got] == [
        (5, 1_000_100, 7_400, None), (6, 2_000_100, 60_000, 82), (5, 1_000_200, 50_000, 50),
        (5, 1_000_300, 50_000, 50)]


def test_a_sample_before_its_start_makes_the_placeholder_and_the_next_ones_join_it(session, station):
    f1 = charger()
    outs = apply(session, f1.meter(9, 10, ts=T0), f1.meter(9, 20, ts=T0 + timedelta(minutes=1)),
                 f1.start(9, meter_wh=5, ts=T0 + timedelta(minutes=1)), f1.meter(9, 30, ts=T0 + timedelta(minutes=2)))
    assert [o.status for o in outs] == [APPLIED] * 4
    got = readings(session)
    assert [r.energy_wh for r in got] == [10, 20, 30]
    assert {r.transaction_id for r in got} == {9} and got[0].flags == ["meter_without_start"]
    assert session.scalars(select(m.ChargingSession.started_at)).all() == [T0 + timedelta(minutes=1)]


def test_a_sample_on_an_unknown_connector_is_refused_as_the_service_refuses_it(session, station):
    f1 = charger()
    out = apply(session, f1.start(3, ts=T0), f1.meter(3, 10, connector=7, ts=T0 + timedelta(minutes=1)))
    assert (out[1].status, out[1].reason) == (DEAD_LETTER, "unknown_device")
    letter = session.scalar(select(m.DeadLetter))
    assert letter.detail.startswith("connector_not_found:")
    assert readings(session) == []
