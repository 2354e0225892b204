"""Connector states and the time spent in each (chargeapp.domain.charger)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from chargeapp.domain.charger import (
    OCCUPIED_STATUSES,
    OUT_OF_SERVICE_STATUSES,
    ConnectorStatus,
    InvalidStatusChange,
    InvalidTimeWindow,
    StatusChange,
    charging_intervals,
    is_occupied,
    is_out_of_service,
    occupied_intervals,
    out_of_service_intervals,
    status_intervals,
    time_in_states,
)
from chargeapp.domain.errors import InvalidRequest
from chargeapp.domain.intervals import Interval

pytestmark = pytest.mark.unit

SH = ZoneInfo("Asia/Shanghai")
S = ConnectorStatus


def at(hhmm: str, day: int = 1) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2024, 5, day, h, m, tzinfo=SH)


def history(*pairs: tuple[str, ConnectorStatus]) -> list[StatusChange]:
    return [StatusChange(at(t), s) for t, s in pairs]


def test_the_nine_ocpp_16_statuses_have_their_wire_spelling():
    assert [s.value for s in ConnectorStatus] == [
        "Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE",
        "Finishing", "Reserved", "Unavailable", "Faulted",
    ]


@pytest.mark.parametrize(
    "status, occupied, out_of_service",
    [
        (S.AVAILABLE, False, False),
        (S.PREPARING, True, False),
        (S.CHARGING, True, False),
        (S.SUSPENDED_EV, True, False),
        (S.SUSPENDED_EVSE, True, False),
        (S.FINISHING, True, False),
        (S.RESERVED, False, False),
        (S.UNAVAILABLE, False, True),
        (S.FAULTED, False, True),
        ("Charging", True, False),  # the wire string works too
        ("Faulted", False, True),
    ],
)
def test_occupied_and_out_of_service_statuses(status, occupied, out_of_service):
    assert is_occupied(status) is occupied
    assert is_out_of_service(status) is out_of_service


def test_status_sets_are_the_documented_ones():
    assert OCCUPIED_STATUSES == {S.PREPARING, S.CHARGING, S.SUSPENDED_EV, S.SUSPENDED_EVSE, S.FINISHING}
    assert OUT_OF_SERVICE_STATUSES == {S.UNAVAILABLE, S.FAULTED}


def test_unknown_status_is_rejected_as_a_domain_error():
    with pytest.raises(InvalidStatusChange) as err:
        StatusChange(at("10:00"), "Sleeping")
    assert isinstance(err.value, InvalidRequest)


def test_status_change_needs_an_aware_time():
    with pytest.raises(InvalidStatusChange):
        StatusChange(datetime(2024, 5, 1, 10, 0), S.CHARGING)


def test_status_change_accepts_the_wire_string():
    assert StatusChange(at("10:00"), "SuspendedEV").status is S.SUSPENDED_EV


@pytest.mark.parametrize(
    "changes, start, end, expected",
    [
        pytest.param(
            [("10:00", S.AVAILABLE), ("10:20", S.CHARGING), ("10:50", S.FINISHING), ("11:00", S.AVAILABLE)],
            "10:00", "12:00",
            [(S.AVAILABLE, "10:00", "10:20"), (S.CHARGING, "10:20", "10:50"),
             (S.FINISHING, "10:50", "11:00"), (S.AVAILABLE, "11:00", "12:00")],
            id="plain-history-last-state-runs-to-window-end",
        ),
        pytest.param(
            [("11:00", S.AVAILABLE), ("10:20", S.CHARGING), ("10:50", S.FINISHING)],
            "10:00", "12:00",
            [(S.CHARGING, "10:20", "10:50"), (S.FINISHING, "10:50", "11:00"), (S.AVAILABLE, "11:00", "12:00")],
            id="unsorted-input-and-time-before-first-change-is-unknown",
        ),
        pytest.param(
            [("08:00", S.CHARGING), ("10:30", S.AVAILABLE)],
            "10:00", "11:00",
            [(S.CHARGING, "10:00", "10:30"), (S.AVAILABLE, "10:30", "11:00")],
            id="state-before-window-is-in-effect-at-start",
        ),
        pytest.param(
            [("10:00", S.CHARGING), ("10:30", S.AVAILABLE)],
            "10:00", "11:00",
            [(S.CHARGING, "10:00", "10:30"), (S.AVAILABLE, "10:30", "11:00")],
            id="change-exactly-at-start-counts",
        ),
        pytest.param(
            [("10:00", S.CHARGING), ("11:00", S.AVAILABLE)],
            "10:15", "10:45",
            [(S.CHARGING, "10:15", "10:45")],
            id="clipped-on-both-sides",
        ),
        pytest.param(
            [("10:00", S.CHARGING), ("10:10", S.CHARGING), ("10:20", S.AVAILABLE)],
            "10:00", "10:30",
            [(S.CHARGING, "10:00", "10:20"), (S.AVAILABLE, "10:20", "10:30")],
            id="repeated-notifications-join",
        ),
        pytest.param(
            [("10:00", S.CHARGING), ("10:10", S.FAULTED), ("10:10", S.AVAILABLE)],
            "10:00", "10:30",
            [(S.CHARGING, "10:00", "10:10"), (S.AVAILABLE, "10:10", "10:30")],
            id="same-instant-last-listed-wins",
        ),
        pytest.param(
            [("12:30", S.CHARGING)],
            "10:00", "12:00",
            [],
            id="changes-after-the-window-are-ignored",
        ),
        pytest.param([], "10:00", "12:00", [], id="no-history-no-intervals"),
        pytest.param([("09:00", S.CHARGING)], "10:00", "10:00", [], id="empty-window"),
    ],
)
def test_status_intervals(changes, start, end, expected):
    got = status_intervals(history(*changes), at(start), at(end))
    assert got == [(s, Interval(at(a), at(b))) for s, a, b in expected]


def test_time_in_states_counts_the_state_before_the_window():
    changes = history(("09:00", S.CHARGING), ("10:20", S.SUSPENDED_EV), ("10:40", S.AVAILABLE))
    totals = time_in_states(changes, at("10:00"), at("11:00"))
    assert totals[S.CHARGING] == timedelta(minutes=20)
    assert totals[S.SUSPENDED_EV] == timedelta(minutes=20)
    assert totals[S.AVAILABLE] == timedelta(minutes=20)
    assert totals[S.FAULTED] == timedelta(0)
    assert set(totals) == set(ConnectorStatus)


def test_time_in_states_leaves_unknown_time_out():
    totals = time_in_states(history(("10:30", S.FAULTED)), at("10:00"), at("11:00"))
    assert sum(totals.values(), timedelta()) == timedelta(minutes=30)


def test_only_charging_counts_as_charging():
    changes = history(
        ("10:00", S.PREPARING), ("10:02", S.CHARGING), ("10:10", S.SUSPENDED_EV),
        ("10:30", S.CHARGING), ("10:35", S.SUSPENDED_EVSE), ("10:40", S.FINISHING), ("10:45", S.AVAILABLE),
    )
    assert charging_intervals(changes, at("09:00"), at("12:00")) == [
        Interval(at("10:02"), at("10:10")),
        Interval(at("10:30"), at("10:35")),
    ]
    assert occupied_intervals(changes, at("09:00"), at("12:00")) == [Interval(at("10:00"), at("10:45"))]


def test_out_of_service_joins_faulted_and_unavailable():
    changes = history(("10:00", S.FAULTED), ("10:10", S.UNAVAILABLE), ("10:30", S.AVAILABLE))
    assert out_of_service_intervals(changes, at("09:00"), at("11:00")) == [Interval(at("10:00"), at("10:30"))]


def test_durations_are_real_elapsed_time_across_a_dst_change():
    # 01:00 EST to 04:00 EDT on 2024-03-10 is two real hours, not three wall-clock hours.
    ny = ZoneInfo("America/New_York")
    changes = [StatusChange(datetime(2024, 3, 10, 1, 0, tzinfo=ny), S.CHARGING)]
    totals = time_in_states(changes, datetime(2024, 3, 10, 1, 0, tzinfo=ny), datetime(2024, 3, 10, 4, 0, tzinfo=ny))
    assert totals[S.CHARGING] == timedelta(hours=2)


def test_mixed_time_zones_compare_as_instants():
    changes = [StatusChange(datetime(2024, 5, 1, 2, 0, tzinfo=timezone.utc), S.CHARGING)]  # 10:00 Shanghai
    assert charging_intervals(changes, at("09:00"), at("10:30"))[0].duration == timedelta(minutes=30)


@pytest.mark.parametrize(
    "start, end",
    [
        (at("11:00"), at("10:00")),
        (datetime(2024, 5, 1, 10, 0), at("11:00")),
    ],
    ids=["ends-before-start", "naive-start"],
)
def test_bad_window_is_rejected(start, end):
    with pytest.raises(InvalidTimeWindow):
        status_intervals([], start, end)
