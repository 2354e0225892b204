"""The demo's seeded week: the simulators' stations lived through the days before the start, written through the
bridge's handler, the booking service and the periodic work, so the first report a manager opens is not zeros."""
from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from chargeapp.db import models as m
from chargeapp.demo_history import seed_history
from chargeapp.seed import seed_demo
from chargeapp.services import reports
from chargeapp.services.auth import password_hasher
from chargeapp.services.registry import create_user
from simulators.layouts import layout_for
from simulators.population import SIM_DRIVER_PASSWORD, roster
from simulators.state import StateStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHANGHAI = ZoneInfo("Asia/Shanghai")
END = datetime(2026, 11, 23, 12, 0, tzinfo=SHANGHAI)
STATION = "hongkou-quyang"  # the smallest demo station: a week of it in seconds


def _demo_accounts(session, now) -> None:
    """The demo stations and the simulated drivers' accounts, as ``chargeapp demo`` makes them."""
    hasher = password_hasher(1, 1024, 1)
    seed_demo(session, now, hasher)
    shared = hasher.hash(SIM_DRIVER_PASSWORD)
    for d in roster([layout_for(STATION)]):
        create_user(session, email=d.email, password_hash=shared, now=now, name=d.name, id_tags=(d.id_tag,),
                    plates=(d.plate,), is_demo=True)
    session.commit()


def _counts(session) -> dict:
    return {table.__name__: session.scalar(select(func.count()).select_from(table))
            for table in (m.AppliedMessage, m.ChargingSession, m.Booking, m.Receipt, m.ConnectorDayRollup)}


def test_the_seeded_week_fills_the_reports_of_the_last_7_days_and_a_second_run_adds_nothing(session, tmp_path):
    _demo_accounts(session, END - timedelta(days=7))
    state = tmp_path / "simulators-state.json"

    result = seed_history(session, [STATION], end=END, days=7, seed=1, state_path=state)

    assert not result.skipped and result.messages > 1000
    assert result.outcomes.get("applied", 0) >= 0.99 * result.messages  # through the handler, hardly any refused
    station = session.scalar(select(m.Station).where(m.Station.code == STATION))
    last_day = (END - timedelta(days=1)).date()
    report = reports.utilization(session, station, last_day - timedelta(days=6), last_day, now=END)
    total = report["total"]
    assert total["sessions"] > 50 and total["energy_wh"] > 100_000
    assert total["charging_min"] > 0 and total["occupied_share"] > 0
    assert total["bookings"] > 0 and total["walk_ins"] > 0
    every_day = [reports.utilization(session, station, d, d, now=END)["total"]["sessions"]
                 for d in (last_day - timedelta(days=i) for i in range(7))]
    assert all(n > 0 for n in every_day), every_day
    before = _counts(session)
    assert before["Receipt"] > 0 and before["ConnectorDayRollup"] > 0  # the periodic work ran on the way
    # Bookings for slots after the end were cancelled: the live run's drivers make their own.
    assert session.scalar(select(func.count()).select_from(m.Booking).where(
        m.Booking.slot_start >= END, m.Booking.status.in_(("booked", "held", "waiting")))) == 0
    # The devices' state is saved for the live simulators: they go on with boot + 1.
    assert StateStore(state).device(f"{STATION}.F1").boot >= 1

    again = seed_history(session, [STATION], end=END, days=7, seed=1, state_path=state)

    assert again.skipped and again.messages == 0
    assert _counts(session) == before


def test_no_days_of_history_is_no_history(session):
    _demo_accounts(session, END)

    result = seed_history(session, [STATION], end=END, days=0)

    assert not result.skipped and result.messages == 0
    assert _counts(session)["AppliedMessage"] == 0
