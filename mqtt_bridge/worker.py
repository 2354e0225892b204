"""The bridge's single database consumer: batches received messages, commits, then acknowledges.

One thread takes ``Received`` items from a queue in arrival order (so each
device's messages stay in order), gathers a batch bounded by size and time,
applies it in one transaction, COMMITS, and only then acknowledges every
message of the batch, in arrival order. A database error (``OperationalError``:
locked, connection lost) rolls the batch back, acknowledges nothing, backs off
and retries the same batch; if the bridge dies meanwhile, the broker redelivers
whatever was not acknowledged and the handler applies it once.

Between batches the same thread sends the command outbox and, under a lease,
runs the periodic work, each in its own transaction: one writer per bridge.

A batch closes at ``batch_size`` messages, ``batch_ms`` after its first message,
or after ``idle_ms`` with nothing new: the broker sends at most its in-flight
window of unacknowledged messages, so waiting longer for a full batch would
only wait for our own acknowledgements. A batch holding a live message (any but
a meter sample: a status, a transaction, a door count, a gate passage) closes
as soon as nothing more is waiting in the queue, so a status is committed
without waiting for a stream of meter samples to fill the batch; while a
backlog drains the queue is never empty and batches stay full.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from sqlalchemy.exc import OperationalError

from chargeapp import telemetry
from chargeapp.db import db
from chargeapp.services.periodic import dead_letter_retention
from mqtt_bridge.client import Clock, Received
from mqtt_bridge.handler import (
    APPLY_FAILED,
    DEAD_LETTER,
    ApplyContext,
    Outcome,
    RegistryCache,
    apply_message,
    dead_letter,
    device_key,
)
from chargeapp.services.lease import PERIODIC_LEASE, release_lease, run_periodic
from mqtt_bridge.metrics import BridgeMetrics
from mqtt_bridge.outbox import OutboxSender, OutboxSettings

log = logging.getLogger("mqtt_bridge.worker")

# Under the demo's accelerated clock, housekeeping runs at least this often in service-clock seconds.
SIMULATED_PERIODIC_SECONDS = 15.0
SIMULATED_OUTBOX_SECONDS = 1.0


@dataclass(frozen=True)
class WorkerOptions:
    batch_size: int = 200
    batch_ms: float = 50.0
    idle_ms: float = 5.0
    outbox_seconds: float = 0.5  # how often to look at the command outbox (0: never)
    periodic_seconds: float = 5.0  # how often to try the periodic work (0: never)
    retry_min_seconds: float = 0.5  # database error backoff
    retry_max_seconds: float = 5.0  # a retry costs one refused connection; a longer wait only delays the drain
    registry_max_age: float = 30.0
    log_repeat_seconds: float = 60.0  # the same bad topic and reason is logged at most this often
    outbox: OutboxSettings = OutboxSettings()


def _is_live(topic: str) -> bool:
    """Whether a message changes what people watch live (a status, a session starting or stopping, the
    lounge's count, a gate, a device going offline): everything but a meter sample, which only moves a
    session's kWh and can wait for a fuller batch."""
    return not topic.endswith("/meter")


def _device_of(topic: str) -> str:
    """The key of the device a topic belongs to (as in applied_messages); "" for a topic that names none."""
    try:
        return device_key(telemetry.parse_topic(topic).device)
    except telemetry.BadMessage:
        return ""


class _LogOnce:
    """Logs a dead letter once; the same (reason, topic) again within ``every`` seconds is counted, not logged."""

    def __init__(self, every: float):
        self.every = every
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def dead_letter(self, outcome: Outcome) -> None:
        key = (outcome.reason or "", outcome.topic)
        now = time.monotonic()
        last, suppressed = self._last.get(key, (None, 0))
        if last is not None and now - last < self.every:
            self._last[key] = (last, suppressed + 1)
            return
        more = f" ({suppressed} more like it not logged)" if suppressed else ""
        log.warning("dead letter %s on %r: %s%s", outcome.reason, outcome.topic[:300], outcome.detail[:300], more)
        self._last[key] = (now, 0)
        if len(self._last) > 10_000:  # a flood of distinct bad topics must not grow this without bound
            self._last.clear()


class Worker:
    """Applies received messages in batches on one thread; call ``submit`` from the MQTT client, ``start``, ``stop``."""

    def __init__(self, app, *, clock: Clock, ack: Callable[[Received], bool], metrics: BridgeMetrics | None = None,
                 publish: Callable[..., bool] | None = None, connected: Callable[[], bool] = lambda: True,
                 options: WorkerOptions | None = None, worker_id: str = "bridge"):
        self.app = app
        self.clock = clock
        self.ack = ack
        self.metrics = metrics or BridgeMetrics()
        self.options = options or WorkerOptions()
        self.worker_id = worker_id
        self.connected = connected
        self.dead_letter_retention = dead_letter_retention(app.config if app is not None else {})
        self.outbox = OutboxSender(publish, self.metrics, self.options.outbox) if publish is not None else None
        self.registry = RegistryCache(self.options.registry_max_age)
        self.queue: queue.SimpleQueue[Received] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = _LogOnce(self.options.log_repeat_seconds)
        self._next_outbox = 0.0
        self._next_periodic = 0.0
        self._one_by_one = False
        self.heartbeat: float | None = None
        self.last_commit: float | None = None
        self.db_failing = False
        self.batches = 0

    # -- lifecycle --------------------------------------------------------------

    def submit(self, received: Received) -> None:
        """Queue one message (called on the MQTT network thread; never blocks)."""
        self.metrics.received.inc()
        self.queue.put(received)

    def start(self) -> "Worker":
        self._thread = threading.Thread(target=self.run, name="bridge-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand (commit, ack), release the periodic lease, and return; queued messages stay unacknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """The worker loop (the thread's target); returns after ``stop``."""
        with self.app.app_context():
            try:
                while not self._stop.is_set():
                    self.heartbeat = time.monotonic()
                    batch = self._collect()
                    if batch:
                        self.process(batch)
                    self.housekeeping()
            finally:
                left = self.queue.qsize()
                if left:
                    log.info("stopping with %d messages unapplied and unacknowledged (the broker redelivers them)", left)
                self._release_lease()
                db.session.remove()

    def _collect(self) -> list[Received]:
        try:
            first = self.queue.get(timeout=0.1)
        except queue.Empty:
            return []
        batch = [first]
        o = self.options
        live = _is_live(first.topic)
        deadline = time.monotonic() + o.batch_ms / 1000
        while len(batch) < o.batch_size:
            try:
                received = self.queue.get_nowait()
            except queue.Empty:
                if live:
                    break  # someone is watching for this one: commit what has arrived, now
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    received = self.queue.get(timeout=min(remaining, o.idle_ms / 1000))
                except queue.Empty:
                    break
            batch.append(received)
            live = live or _is_live(received.topic)
        return batch

    # -- batches --------------------------------------------------------------------

    def process(self, batch: list[Received]) -> list[Outcome] | None:
        """Apply, commit, then ack one batch; retries on database errors; None if stopped before it committed."""
        delay = self.options.retry_min_seconds
        while True:
            started = time.perf_counter()
            try:
                outcomes = self._apply_one_by_one(batch) if self._one_by_one else self._apply_batch(batch)
                break
            except OperationalError as exc:
                self._rollback()
                self.db_failing = True
                self.metrics.db_errors.inc()
                log.warning("database error, batch of %d rolled back, retrying in %.1f s: %s", len(batch), delay,
                            str(exc).splitlines()[0][:200])
                if self._stop.wait(delay):
                    return None  # unacknowledged: redelivered to the next run
                delay = min(delay * 2, self.options.retry_max_seconds)
            except Exception:
                self._rollback()
                if not self._one_by_one:
                    log.exception("batch of %d failed at commit; applying its messages one by one", len(batch))
                    self._one_by_one = True
                    continue
                log.exception("batch of %d failed one by one too; retrying in %.1f s", len(batch), delay)
                if self._stop.wait(delay):
                    return None
                delay = min(delay * 2, self.options.retry_max_seconds)
        self._one_by_one = False
        self.db_failing = False
        elapsed = time.perf_counter() - started
        self.last_commit = time.monotonic()
        self.batches += 1
        dropped = sum(1 for r in batch if not self.ack(r))
        self._report(outcomes, elapsed, dropped)
        return outcomes

    def _apply_batch(self, batch: list[Received]) -> list[Outcome]:
        session = db.session
        ctx = ApplyContext(self.registry)
        now = self.clock.now()
        # Applied grouped by device (a stable sort keeps each device's arrival order), so every worker locks
        # device rows in one order and two workers' batches cannot deadlock on PostgreSQL (arrival order did:
        # tests/deploy/test_shared_subscription_kill.py). Outcomes, and so acks, stay in arrival order.
        outcomes: list[Outcome] = [None] * len(batch)  # type: ignore[list-item]
        for i in sorted(range(len(batch)), key=lambda i: _device_of(batch[i].topic)):
            outcomes[i] = apply_message(session, batch[i], now, context=ctx)
        session.commit()
        return outcomes

    def _apply_one_by_one(self, batch: list[Received]) -> list[Outcome]:
        """Each message in its own transaction, after a batch failed at commit: isolates the message that breaks it."""
        session = db.session
        outcomes = []
        for r in batch:
            now = self.clock.now()
            try:
                outcome = apply_message(session, r, now, context=ApplyContext(self.registry, defer=False))
                session.commit()
            except OperationalError:
                raise
            except Exception as exc:
                self._rollback()
                log.exception("message on %r breaks its transaction; dead-lettered", r.topic[:300])
                outcome = dead_letter(session, r, APPLY_FAILED, f"{type(exc).__name__}: {str(exc)[:200]}",
                                      loggable=False)
                session.commit()
            outcomes.append(outcome)
        return outcomes

    def _report(self, outcomes: list[Outcome], elapsed: float, dropped: int) -> None:
        mt = self.metrics
        mt.batch_seconds.observe(elapsed)
        mt.batch_size.observe(len(outcomes))
        mt.last_commit.set_to_current_time()
        mt.queue_depth.set(self.queue.qsize())
        if dropped:
            mt.acks_dropped.inc(dropped)
        for outcome in outcomes:
            mt.count(outcome)
            if outcome.status == DEAD_LETTER:
                self._log.dead_letter(outcome)
            if outcome.gap:
                log.info("sequence gap on %s: %d message(s) missing", outcome.device, outcome.gap)

    def _rollback(self) -> None:
        try:
            db.session.rollback()
        except Exception:  # the connection may be gone; the pool replaces it on next use
            log.debug("rollback failed", exc_info=True)

    # -- between batches --------------------------------------------------------------

    def housekeeping(self) -> None:
        """Send the outbox and run the periodic work when due (each its own transaction); never raises."""
        now_wall = time.monotonic()
        o = self.options
        self.metrics.connected.set(1 if self.connected() else 0)
        self.metrics.queue_depth.set(self.queue.qsize())
        if self.outbox is not None and o.outbox_seconds > 0 and now_wall >= self._next_outbox:
            self._next_outbox = now_wall + self._interval(o.outbox_seconds, SIMULATED_OUTBOX_SECONDS, 0.05)
            if self.connected():
                self._in_transaction("outbox", lambda s, now: self.outbox.run_once(s, now))
        if o.periodic_seconds > 0 and now_wall >= self._next_periodic:
            self._next_periodic = now_wall + self._interval(o.periodic_seconds, SIMULATED_PERIODIC_SECONDS, 0.25)
            result = self._in_transaction("periodic", lambda s, now: run_periodic(
                s, now, self.worker_id, self._lease_ttl(), dead_letter_retention=self.dead_letter_retention))
            if result is not False:
                self.metrics.periodic_runs.labels("skipped" if result is None else "ran").inc()
                if result and any(result.values()):
                    log.info("periodic work: %s", ", ".join(f"{k} {v}" for k, v in sorted(result.items()) if v))
            else:
                self.metrics.periodic_runs.labels("error").inc()

    def _interval(self, wall_seconds: float, simulated_seconds: float, floor: float) -> float:
        """Real seconds between two runs: the option, shortened under an accelerated clock so that at most
        ``simulated_seconds`` of service time pass between runs (a hold due at 14:50 is not placed at 15:10)."""
        speed = self._speed()
        if speed <= 1:
            return wall_seconds
        return max(min(floor, wall_seconds), min(wall_seconds, simulated_seconds / speed))

    def _speed(self) -> float:
        try:
            return float(getattr(self.clock, "speed", 1.0) or 1.0)
        except (TypeError, ValueError):
            return 1.0

    def _in_transaction(self, what: str, work):
        session = db.session
        try:
            result = work(session, self.clock.now())
            session.commit()
            return result
        except Exception:
            self._rollback()
            log.exception("%s failed; will try again", what)
            return False

    def _lease_ttl(self) -> timedelta:
        # The lease runs on the service clock, which the demo accelerates: scale it so it outlives the interval.
        interval = self._interval(self.options.periodic_seconds, SIMULATED_PERIODIC_SECONDS, 0.25)
        return timedelta(seconds=max(interval, 1.0) * 3 * max(self._speed(), 1.0))

    def _release_lease(self) -> None:
        if self.options.periodic_seconds <= 0:
            return
        try:
            release_lease(db.session, PERIODIC_LEASE, self.worker_id, self.clock.now())
            db.session.commit()
        except Exception:
            self._rollback()
            log.debug("could not release the periodic lease", exc_info=True)
