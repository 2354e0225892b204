"""Issue 14 item 6: the dead-letter store is bounded. At most CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR stored per
source (a device's topics) and hour, the rest counted (persisted in dead_letter_counts, and in the bridge's
metrics); dead letters older than CHARGEAPP_DEAD_LETTER_RETENTION_DAYS pruned by the periodic work."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from chargeapp import telemetry as t
from chargeapp.config import Settings
from chargeapp.db import models as m
from chargeapp.services import dead_letters, periodic
from mqtt_bridge.handler import DEAD_LETTER, ApplyContext, apply_message
from mqtt_bridge.worker import Worker, WorkerOptions
from tests.bridge.wire import charger, raw, rx
from tests.conftest import T0

pytestmark = pytest.mark.integration

F1_METER, F2_METER = t.meter_topic("s1", "F1"), t.meter_topic("s1", "F2")


def apply_all(session, received):
    ctx = ApplyContext()
    out = [apply_message(session, r, T0, context=ctx) for r in received]
    session.commit()
    return out


def stored(session, *where):
    return session.scalar(select(func.count()).select_from(m.DeadLetter).where(*where))


def counts(session):
    return {(c.source, c.hour): (c.messages, c.dropped, c.station_code)
            for c in session.scalars(select(m.DeadLetterCount))}


def test_sources_are_a_devices_topic_prefix():
    assert dead_letters.source_of("stations/s1/chargers/F1/status/1") == "stations/s1/chargers/F1"
    assert dead_letters.source_of("stations/s1/chargers/F1 2/meter") == "stations/s1/chargers/F1 2"
    assert dead_letters.source_of("stations/s1/x") == "stations/s1/x"
    assert dead_letters.source_of("zigbee2mqtt/front door") == "zigbee2mqtt/front door"
    assert dead_letters.source_of("shellyplus1-abc/events/rpc") == "shellyplus1-abc/events"
    assert len(dead_letters.source_of("stations/s1/chargers/" + "F" * 500 + "/meter")) == 200


def test_over_the_hourly_cap_a_sources_dead_letters_are_counted_not_stored(app, session, station):
    app.config["CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR"] = 3
    hour = T0 + timedelta(minutes=5)
    f1 = [raw(F1_METER, b"nope %d" % i, hour + timedelta(minutes=i)) for i in range(5)]
    f2 = [raw(F2_METER, b"nope", hour), raw(t.status_topic("s1", "F2", 1), b"[1]", hour)]  # another device
    outs = apply_all(session, f1 + f2)
    assert all(o.status == DEAD_LETTER for o in outs)
    assert [o.stored for o in outs] == [True, True, True, False, False, True, True]
    assert "not stored: over 3 an hour from stations/s1/chargers/F1" in outs[3].detail
    # The first three of F1 are kept as they came; F2 has its own cap.
    assert [bytes(p) for p in session.scalars(select(m.DeadLetter.payload).where(m.DeadLetter.topic == F1_METER)
                                               .order_by(m.DeadLetter.id))] == [b"nope 0", b"nope 1", b"nope 2"]
    assert stored(session, m.DeadLetter.topic.like("stations/s1/chargers/F2/%")) == 2
    assert counts(session) == {("stations/s1/chargers/F1", T0): (5, 2, "s1"), ("stations/s1/chargers/F2", T0): (2, 0, "s1")}

    # The next hour F1 may store three again; the dropped count of the last hour stays.
    later = [raw(F1_METER, b"later %d" % i, T0 + timedelta(hours=1, minutes=i)) for i in range(4)]
    assert [o.stored for o in apply_all(session, later)] == [True, True, True, False]
    assert counts(session)[("stations/s1/chargers/F1", T0 + timedelta(hours=1))] == (4, 1, "s1")
    assert counts(session)[("stations/s1/chargers/F1", T0)] == (5, 2, "s1")
    assert stored(session) == 3 + 2 + 3


def test_a_cap_of_zero_stores_every_dead_letter_and_still_counts_them(app, session, station):
    app.config["CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR"] = 0
    outs = apply_all(session, [raw(F1_METER, b"nope") for _ in range(150)])
    assert all(o.stored for o in outs) and stored(session) == 150
    assert counts(session) == {("stations/s1/chargers/F1", T0): (150, 0, "s1")}


def test_the_default_cap_is_a_hundred_an_hour_from_the_settings(app, session, station):
    assert Settings().dead_letter_cap_per_hour == 100 == app.config["CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR"]
    outs = apply_all(session, [raw(F1_METER, b"nope") for _ in range(101)])
    assert sum(o.stored for o in outs) == 100 and stored(session) == 100


def test_a_cap_applies_to_every_kind_of_refusal_including_unknown_devices_and_bad_topics(app, session, station):
    app.config["CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR"] = 1
    received = [raw(t.meter_topic("s1", "F99"), b"{}"), raw(t.meter_topic("s1", "F99"), b"{}"),
                raw("stations/s1/chargers/F1/status/01", b"{}"), raw("stations/s1/chargers/F1/status/x", b"{}"),
                raw(t.zigbee_topic("unmapped_door"), b'{"contact": false}'),
                raw(t.zigbee_topic("unmapped_door"), b'{"contact": true}')]
    outs = apply_all(session, received)
    assert [(o.reason, o.stored) for o in outs] == [
        ("unknown_device", True), ("unknown_device", False), ("bad_topic", True), ("bad_topic", False),
        ("unknown_device", True), ("unknown_device", False)]
    assert counts(session)[("zigbee2mqtt/unmapped_door", T0)] == (2, 1, None)


def test_the_worker_counts_dropped_dead_letters_per_reason_and_every_refusal_in_the_total(app, clock, station):
    app.config["CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR"] = 2
    worker = Worker(app, clock=clock, ack=lambda r: True, options=WorkerOptions(periodic_seconds=0, outbox_seconds=0))
    batch = [raw(F1_METER, b"nope") for _ in range(5)] + [rx(charger().status("Charging"))]
    worker.process(batch)
    mt = worker.metrics
    assert mt.value("chargeapp_bridge_dead_letters_total", {"reason": "not_json"}) == 5
    assert mt.value("chargeapp_bridge_dead_letters_dropped_total", {"reason": "not_json"}) == 3
    assert mt.value("chargeapp_bridge_dead_letters_dropped_total", {"reason": "too_large"}) == 0  # exported at 0
    assert mt.value("chargeapp_bridge_messages_applied_total", {"kind": "status"}) == 1


# --------------------------------------------------------------------------- retention


def _letter(session, at, topic=F1_METER):
    session.add(m.DeadLetter(received_at=at, topic=topic, payload=b"x", reason="not_json", detail="",
                             station_code="s1"))


def test_the_periodic_work_prunes_dead_letters_and_counts_older_than_the_retention(session, station, monkeypatch):
    now = T0
    for days in (45, 31, 30.5, 29, 1):
        _letter(session, now - timedelta(days=days))
    for days in (31, 29):
        session.add(m.DeadLetterCount(source="stations/s1/chargers/F1", hour=dead_letters.hour_of(now - timedelta(days=days)),
                                      station_code="s1", messages=200, dropped=100))
    session.commit()
    monkeypatch.setattr(dead_letters, "PRUNE_BATCH", 2)  # a large backlog goes in turns
    first = periodic.run_once(session, now)  # the default: 30 days
    session.commit()
    assert first["dead_letters_pruned"] == 2
    assert periodic.run_once(session, now)["dead_letters_pruned"] == 1
    session.commit()
    assert periodic.run_once(session, now)["dead_letters_pruned"] == 0
    session.commit()
    left = sorted(session.scalars(select(m.DeadLetter.received_at)))
    assert left == [now - timedelta(days=29), now - timedelta(days=1)]
    assert [c.hour for c in session.scalars(select(m.DeadLetterCount))] == [dead_letters.hour_of(now - timedelta(days=29))]

    # Zero (None) keeps everything.
    assert periodic.run_once(session, now + timedelta(days=365), dead_letter_retention=None)["dead_letters_pruned"] == 0


def test_the_retention_comes_from_the_settings_for_the_bridge_and_tick(app, session, clock, station, runner,
                                                                       monkeypatch):
    monkeypatch.setenv("CHARGEAPP_DEAD_LETTER_RETENTION_DAYS", "7")
    monkeypatch.setenv("CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR", "25")
    settings = Settings.from_env()
    assert (settings.dead_letter_retention_days, settings.dead_letter_cap_per_hour) == (7, 25)
    assert settings.flask_config()["CHARGEAPP_DEAD_LETTER_RETENTION_DAYS"] == 7
    assert settings.flask_config()["CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR"] == 25
    assert Settings().dead_letter_retention_days == 30

    app.config["CHARGEAPP_DEAD_LETTER_RETENTION_DAYS"] = 7
    worker = Worker(app, clock=clock, ack=lambda r: True, options=WorkerOptions(outbox_seconds=0))
    assert worker.dead_letter_retention == timedelta(days=7)
    app.config["CHARGEAPP_DEAD_LETTER_RETENTION_DAYS"] = 0
    assert Worker(app, clock=clock, ack=lambda r: True).dead_letter_retention is None

    app.config["CHARGEAPP_DEAD_LETTER_RETENTION_DAYS"] = 7
    _letter(session, T0 - timedelta(days=8))
    _letter(session, T0 - timedelta(days=6))
    session.commit()
    r = runner.invoke(args=["tick"])
    assert r.exit_code == 0, r.output
    assert '"dead_letters_pruned": 1' in r.output
    assert stored(session) == 1


def test_the_bridges_periodic_run_prunes_under_its_lease(app, clock, session, station):
    app.config["CHARGEAPP_DEAD_LETTER_RETENTION_DAYS"] = 2
    _letter(session, T0 - timedelta(days=3))
    session.commit()
    worker = Worker(app, clock=clock, ack=lambda r: True, options=WorkerOptions(outbox_seconds=0, periodic_seconds=1))
    with app.app_context():
        worker.housekeeping()
    assert worker.metrics.value("chargeapp_bridge_periodic_runs_total", {"result": "ran"}) == 1
    session.expire_all()
    assert stored(session) == 0
