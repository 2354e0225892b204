"""The worker (batches, commit then ack, database-error retry), the outbox, the lease and the metrics; no broker."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from chargeapp import telemetry as t
from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.services import booking
from chargeapp.services.common import enqueue_command
from mqtt_bridge.cli import bridge_command
from mqtt_bridge.client import parse_mqtt_url
from chargeapp.services.lease import PERIODIC_LEASE, acquire_lease, run_periodic
from mqtt_bridge.metrics import BridgeMetrics, MetricsServer
from mqtt_bridge.outbox import OutboxSender, OutboxSettings
from mqtt_bridge.worker import Worker, WorkerOptions
from tests.bridge.wire import charger, raw, rx, sensor
from tests.conftest import T0

pytestmark = pytest.mark.integration

UTC = timezone.utc
SLOT = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def committed(sql: str) -> int:
    """A count seen from another connection: only what is committed."""
    with db.engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def make_worker(app, clock, acks=None, **options):
    acks = [] if acks is None else acks
    opts = {"periodic_seconds": 0, "outbox_seconds": 0, "retry_min_seconds": 0.01, **options}
    return Worker(app, clock=clock, ack=lambda r: acks.append(r) or True, options=WorkerOptions(**opts)), acks


# --------------------------------------------------------------------------- commit, then ack


def test_a_batch_is_committed_before_any_of_its_messages_is_acknowledged(app, clock, station):
    seen = []

    def ack(received):
        seen.append(committed("SELECT count(*) FROM applied_messages"))
        return True

    worker = Worker(app, clock=clock, ack=ack, options=WorkerOptions(periodic_seconds=0, outbox_seconds=0))
    f1 = charger()
    batch = [rx(f1.status("Preparing")), rx(f1.start(1)), rx(f1.meter(1, 1_000_100))]
    worker.process(batch)
    assert seen == [3, 3, 3]


def test_acks_go_out_in_arrival_order_including_dead_letters_and_duplicates(app, clock, station):
    worker, acks = make_worker(app, clock)
    f1 = charger()
    status = rx(f1.status("Charging"))
    batch = [status, raw(t.meter_topic("s1", "F1"), b"nope"), status, rx(sensor().count(1, 0))]
    worker.process(batch)
    assert [r.mid for r in acks] == [r.mid for r in batch]
    mt = worker.metrics
    assert mt.value("chargeapp_bridge_dead_letters_total", {"reason": "not_json"}) == 1
    assert mt.value("chargeapp_bridge_duplicates_total", {"retained": "true"}) == 1
    assert mt.value("chargeapp_bridge_messages_applied_total", {"kind": "door_count"}) == 1
    assert mt.value("chargeapp_bridge_batch_size_count") == 1


def test_every_bad_input_reason_is_counted_per_reason(app, clock, station):
    worker, _ = make_worker(app, clock)
    from tests.bridge.test_handler import BAD

    batch = [raw(*make()) for _, make in BAD] + [rx(charger().status("Charging"))]
    worker.process(batch)
    for reason, _ in BAD:
        assert worker.metrics.value("chargeapp_bridge_dead_letters_total", {"reason": reason}) == 1, reason
    assert committed("SELECT count(*) FROM dead_letters") == len(BAD)
    assert committed("SELECT count(*) FROM status_changes") == 1


def test_a_database_error_rolls_back_acks_nothing_and_retries_the_same_batch(app, clock, station, monkeypatch):
    worker, acks = make_worker(app, clock)
    real_commit = db.session.commit
    calls = {"n": 0}

    def flaky_commit():
        calls["n"] += 1
        if calls["n"] <= 2:
            assert acks == []
            raise OperationalError("COMMIT", {}, Exception("database is locked"))
        real_commit()

    monkeypatch.setattr(db.session, "commit", flaky_commit)
    f1 = charger()
    batch = [rx(f1.status("Charging")), rx(f1.start(3))]
    outcomes = worker.process(batch)
    assert [o.status for o in outcomes] == ["applied", "applied"]
    assert len(acks) == 2 and calls["n"] == 3
    assert worker.metrics.value("chargeapp_bridge_db_errors_total") == 2
    assert committed("SELECT count(*) FROM charging_sessions") == 1


def test_stopping_during_a_database_outage_leaves_the_batch_unacknowledged(app, clock, station, monkeypatch):
    worker, acks = make_worker(app, clock, retry_min_seconds=0.05)

    def down():
        raise OperationalError("COMMIT", {}, Exception("connection refused"))

    monkeypatch.setattr(db.session, "commit", down)
    threading.Timer(0.2, worker._stop.set).start()
    assert worker.process([rx(charger().status("Charging"))]) is None
    assert acks == []


def test_the_worker_thread_batches_by_size_and_keeps_arrival_order(app, clock, station):
    worker, acks = make_worker(app, clock, batch_size=50, batch_ms=200)
    f1 = charger()
    batch = [rx(f1.status("Available" if i % 2 else "Preparing", ts=T0 + timedelta(seconds=i))) for i in range(1, 131)]
    for r in batch:
        worker.submit(r)
    worker.start()
    deadline = time.monotonic() + 15
    while len(acks) < len(batch) and time.monotonic() < deadline:
        time.sleep(0.02)
    worker.stop()
    assert [r.mid for r in acks] == [r.mid for r in batch]
    assert worker.metrics.value("chargeapp_bridge_batch_size_count") == 3  # 50 + 50 + 30
    assert committed("SELECT count(*) FROM status_changes") == 130
    assert committed("SELECT last_seq FROM device_sequences") == 130


def _collect_with_late_arrival(worker, first, late, after=0.15):
    """``_collect`` with ``first`` queued and ``late`` submitted ``after`` seconds later; (batch, seconds taken)."""
    for r in first:
        worker.submit(r)
    timer = threading.Timer(after, worker.submit, args=(late,))
    timer.start()
    started = time.monotonic()
    try:
        return worker._collect(), time.monotonic() - started
    finally:
        timer.join()


def test_a_batch_of_meter_samples_waits_for_more_within_its_idle_time(clock):
    # A meter sample can wait: the batch stays open for the sample arriving 150 ms later (idle 2 s).
    worker, _ = make_worker(None, clock, batch_ms=5000, idle_ms=2000, batch_size=3)
    f1 = charger()
    first, late = rx(f1.meter(1, 1_000_100)), rx(f1.meter(1, 1_000_200))
    batch, _ = _collect_with_late_arrival(worker, [first], late)
    assert [r.mid for r in batch][:2] == [first.mid, late.mid]


@pytest.mark.parametrize("live", ["status", "door_count", "transaction"])
def test_a_batch_holding_a_live_message_closes_as_soon_as_the_queue_is_empty(clock, live):
    # A status (or a door count, a transaction) is what someone watches: it is committed with what has
    # already arrived, without waiting the idle time (2 s here) for more meter samples.
    worker, _ = make_worker(None, clock, batch_ms=5000, idle_ms=2000)
    f1 = charger()
    message = {"status": lambda: rx(f1.status("Charging")), "door_count": lambda: rx(sensor().count(1, 0)),
               "transaction": lambda: rx(f1.start(1))}[live]()
    queued = [rx(f1.meter(1, 1_000_100)), message, rx(f1.meter(1, 1_000_200))]
    # The late sample comes 600 ms later, inside the idle time: a 150 ms gap was within reach of a busy CI box's
    # scheduling delay between queueing and collecting.
    batch, took = _collect_with_late_arrival(worker, queued, rx(f1.meter(1, 1_000_300)), after=0.6)
    assert [r.mid for r in batch] == [r.mid for r in queued]
    assert took < 0.6  # closed before the late sample came: it is left for the next batch


def test_a_draining_backlog_still_fills_batches_around_live_messages(clock):
    # While the queue is not empty a live message does not cut the batch short: full batches while draining.
    worker, _ = make_worker(None, clock, batch_size=50, idle_ms=2000)
    f1 = charger()
    for i in range(120):
        worker.submit(rx(f1.status("Charging")) if i % 7 == 0 else rx(f1.meter(1, 1_000_000 + i)))
    assert [len(worker._collect()) for _ in range(3)] == [50, 50, 20]


# --------------------------------------------------------------------------- outbox


class FakeLink:
    def __init__(self):
        self.up = True
        self.sent = []

    def publish(self, topic, payload, qos=1, expiry_seconds=None):
        if self.up:
            self.sent.append((topic, payload, qos, expiry_seconds))
        return self.up


def remote_start(session, station, code="F2"):
    c = next(c for c in station.chargers if c.code == code)
    cmd = enqueue_command(session, c, "remote_start", {"connector": 1, "id_tag": "TAG-1"}, T0)
    session.commit()
    return cmd


def test_a_pending_command_is_published_once_with_its_request_id(session, station):
    link, wall = FakeLink(), [0.0]
    sender = OutboxSender(link.publish, BridgeMetrics(), monotonic=lambda: wall[0])
    cmd = remote_start(session, station)
    assert sender.run_once(session, T0) == {"sent": 1, "retried": 0, "failed": 0}
    session.commit()
    [(topic, payload, qos, expiry)] = link.sent
    assert topic == t.command_topic("s1", "F2", "remote_start") and qos == 1 and expiry == 30
    parsed = t.parse_message(topic, payload, T0)
    assert isinstance(parsed, t.RemoteStart) and parsed.request_id == cmd.request_id
    assert (cmd.status, cmd.attempts, cmd.sent_at) == ("sent", 1, T0)
    assert sender.run_once(session, T0 + timedelta(seconds=10))["sent"] == 0 and len(link.sent) == 1


def test_nothing_is_published_while_the_link_is_down(session, station):
    link = FakeLink()
    link.up = False
    cmd = remote_start(session, station)
    OutboxSender(link.publish).run_once(session, T0)
    assert (cmd.status, cmd.attempts) == ("pending", 0)


def test_an_unanswered_command_is_retried_three_times_with_the_same_request_id_then_failed(session, station):
    link, wall, mt = FakeLink(), [0.0], BridgeMetrics()
    sender = OutboxSender(link.publish, mt, monotonic=lambda: wall[0])
    cmd = remote_start(session, station)
    now = T0
    for _ in range(6):
        sender.run_once(session, now)
        now += timedelta(seconds=31)
        wall[0] += 31
    assert len(link.sent) == 4 and len({p for _, p, _, _ in link.sent}) == 1
    assert (cmd.status, cmd.attempts) == ("failed", 4)
    assert mt.value("chargeapp_bridge_commands_retried_total", {"command": "remote_start"}) == 3
    assert mt.value("chargeapp_bridge_commands_failed_total", {"command": "remote_start"}) == 1


def test_an_answered_command_is_not_retried(session, station):
    link = FakeLink()
    sender = OutboxSender(link.publish, monotonic=lambda: 1e9)
    cmd = remote_start(session, station)
    sender.run_once(session, T0)
    cmd.status, cmd.result = "answered", "Accepted"
    sender.run_once(session, T0 + timedelta(minutes=5))
    assert len(link.sent) == 1


def test_an_accelerated_clock_does_not_retry_before_a_real_round_trip(session, station):
    link, wall = FakeLink(), [0.0]
    sender = OutboxSender(link.publish, settings=OutboxSettings(min_wall_seconds=2.0), monotonic=lambda: wall[0])
    remote_start(session, station)
    sender.run_once(session, T0)
    wall[0] += 0.5  # the demo clock ran 31 s in half a real second
    sender.run_once(session, T0 + timedelta(seconds=31))
    assert len(link.sent) == 1


def test_a_reserve_now_nobody_answers_moves_the_booking(session, clock, station, driver):
    link = FakeLink()
    b, _ = booking.book_slot(session, clock.now(), driver.id, "s1", SLOT, "F1")
    clock.set(SLOT - timedelta(minutes=10))
    booking.tick(session, clock.now())
    session.commit()
    wall = [0.0]
    sender = OutboxSender(link.publish, monotonic=lambda: wall[0])
    now = clock.now()
    for _ in range(6):  # the first send, three retries, giving up (which holds F2), sending to F2
        sender.run_once(session, now)
        session.commit()
        now += timedelta(seconds=31)
        wall[0] += 31
    first = session.scalar(select(m.CommandOutbox).order_by(m.CommandOutbox.id))
    assert (first.name, first.status, first.attempts) == ("reserve_now", "failed", 4)
    session.refresh(b)
    assert b.status == "held" and b.charger.code == "F2"
    topics = [topic for topic, *_ in link.sent]
    assert topics[:4] == [t.command_topic("s1", "F1", "reserve_now")] * 4
    assert topics[4] == t.command_topic("s1", "F2", "reserve_now")


def test_a_command_the_contract_cannot_carry_is_failed_not_sent(session, station):
    link = FakeLink()
    c = station.chargers[0]
    cmd = enqueue_command(session, c, "remote_start", {"connector": 0, "id_tag": "TAG-1"}, T0)  # connector >= 1
    session.commit()
    assert OutboxSender(link.publish).run_once(session, T0)["failed"] == 1
    assert cmd.status == "failed" and link.sent == []


def test_the_worker_sends_the_outbox_between_batches(app, clock, station, session):
    link = FakeLink()
    cmd_id = remote_start(session, station).id
    worker = Worker(app, clock=clock, ack=lambda r: True, publish=link.publish,
                    options=WorkerOptions(periodic_seconds=0, outbox_seconds=0.01))
    worker.housekeeping()
    assert len(link.sent) == 1
    assert committed(f"SELECT status FROM command_outbox WHERE id = {cmd_id}") == "sent"


# --------------------------------------------------------------------------- periodic work under a lease


def test_only_one_holder_gets_the_lease_until_it_expires(session):
    ttl = timedelta(seconds=15)
    assert acquire_lease(session, PERIODIC_LEASE, "a", T0, ttl)
    session.commit()
    assert not acquire_lease(session, PERIODIC_LEASE, "b", T0 + timedelta(seconds=5), ttl)
    assert acquire_lease(session, PERIODIC_LEASE, "a", T0 + timedelta(seconds=5), ttl)  # renewed
    session.commit()
    assert not acquire_lease(session, PERIODIC_LEASE, "b", T0 + timedelta(seconds=19), ttl)
    assert acquire_lease(session, PERIODIC_LEASE, "b", T0 + timedelta(seconds=21), ttl)  # a stopped renewing
    session.commit()
    assert session.get(m.Lease, PERIODIC_LEASE).holder == "b"


def test_two_workers_run_the_periodic_work_once_not_twice(app, clock, station, driver, session):
    booking.book_slot(session, clock.now(), driver.id, "s1", SLOT, "F1")
    clock.set(SLOT - timedelta(minutes=10))
    workers = [Worker(app, clock=clock, ack=lambda r: True, worker_id=w,
                      options=WorkerOptions(periodic_seconds=5, outbox_seconds=0)) for w in ("w1", "w2")]
    for w in workers:
        w.housekeeping()
    ran = [w.metrics.value("chargeapp_bridge_periodic_runs_total", {"result": "ran"}) for w in workers]
    skipped = [w.metrics.value("chargeapp_bridge_periodic_runs_total", {"result": "skipped"}) for w in workers]
    assert ran == [1, 0] and skipped == [0, 1]
    assert committed("SELECT count(*) FROM command_outbox WHERE name = 'reserve_now'") == 1
    assert committed("SELECT status FROM bookings") == "held"


def test_run_periodic_is_skipped_while_another_holder_has_the_lease(session, clock):
    assert run_periodic(session, T0, "a", timedelta(seconds=15)) is not None
    session.commit()
    assert run_periodic(session, T0 + timedelta(seconds=1), "b", timedelta(seconds=15)) is None


# --------------------------------------------------------------------------- metrics, health, configuration


def test_metrics_and_health_are_served_over_http(app, clock):
    mt = BridgeMetrics()
    state = {"ok": False}
    server = MetricsServer(mt, lambda: dict(state), port=0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        body = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert 'chargeapp_bridge_dead_letters_total{reason="too_large"} 0.0' in body
        assert "chargeapp_bridge_batch_seconds_bucket" in body and "chargeapp_bridge_lag_seconds_bucket" in body
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/healthz", timeout=5)
        assert err.value.code == 503
        state["ok"] = True
        assert json.loads(urllib.request.urlopen(base + "/healthz", timeout=5).read()) == {"ok": True}
    finally:
        server.stop()


def test_the_broker_url_carries_credentials_tls_and_session_options():
    s = parse_mqtt_url("mqtts://bridge%40s1:p%2Fss@broker.example:8884?client_id=w1&protocol=5&ca=/etc/ca.pem"
                       "&session_expiry=3600")
    assert (s.host, s.port, s.username, s.password, s.tls, s.ca_certs) == (
        "broker.example", 8884, "bridge@s1", "p/ss", True, "/etc/ca.pem")
    assert (s.client_id, s.protocol, s.session_expiry) == ("w1", "5", 3600)
    assert "p/ss" not in repr(s)
    assert parse_mqtt_url(None).url == "mqtt://127.0.0.1:1883"
    assert parse_mqtt_url("mqtts://h").port == 8883
    assert parse_mqtt_url("mqtt://h?protocol=311").protocol == "3.1.1"
    for bad in ("http://h", "mqtt://h?protocol=4", "mqtt://h?tls_ca=x"):
        with pytest.raises(ValueError):
            parse_mqtt_url(bad)


def test_the_cli_refuses_a_bad_broker_url(app):
    result = CliRunner().invoke(bridge_command, ["--mqtt-url", "http://nowhere", "--metrics-port", "0"])
    assert result.exit_code == 2 and "mqtt://" in result.output


def test_an_accelerated_clock_shortens_the_housekeeping_intervals(app):
    from chargeapp.clock import AcceleratedClock

    fast = Worker(app, clock=AcceleratedClock(T0, speed=60), ack=lambda r: True)
    assert fast._interval(5.0, 15.0, 0.25) == 0.25  # 15 simulated seconds
    assert fast._interval(0.5, 1.0, 0.05) == 0.05
    assert fast._lease_ttl() == timedelta(seconds=180)  # three real seconds of a 60x clock
    real = Worker(app, clock=AcceleratedClock(T0, speed=1), ack=lambda r: True)
    assert real._interval(5.0, 15.0, 0.25) == 5.0
