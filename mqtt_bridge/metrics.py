"""The bridge's counters in Prometheus format, and a small HTTP server for /metrics and /healthz.

Each bridge owns its ``CollectorRegistry`` (not the process-wide default), so
several bridges in one process (tests, the demo) do not collide.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    make_wsgi_app,
)

from mqtt_bridge.handler import (
    APPLIED,
    DEAD_LETTER,
    DEAD_LETTER_REASONS,
    DUPLICATE,
    IGNORED,
    Outcome,
)

log = logging.getLogger("mqtt_bridge.metrics")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_LAG_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 24 * 3600, 7 * 24 * 3600)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


class BridgeMetrics:
    """Counters of received, applied, duplicate and dead-lettered messages, gaps, skew, batches, lag and commands."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry(auto_describe=True)
        p = "chargeapp_bridge_"
        self.received = Counter(p + "messages_received", "Messages received from the broker", registry=r)
        self.applied = Counter(p + "messages_applied", "Messages applied to the database, by topic kind", ["kind"],
                               registry=r)
        self.duplicates = Counter(p + "duplicates", "Messages already applied (redelivery, retained replay)",
                                  ["retained"], registry=r)
        self.ignored = Counter(p + "messages_ignored", "Valid messages with nothing to apply, by why", ["why"],
                               registry=r)
        self.dead_letters = Counter(p + "dead_letters", "Messages never applied, stored as dead letters, by reason",
                                    ["reason"], registry=r)
        self.dead_letters_dropped = Counter(
            p + "dead_letters_dropped", "Dead letters counted but not stored: over their source's hourly cap "
            "(CHARGEAPP_DEAD_LETTER_CAP_PER_HOUR), by reason", ["reason"], registry=r)
        self.unknown_fields = Counter(p + "unknown_fields", "Applied messages carrying fields the contract lacks",
                                      ["kind"], registry=r)
        self.seq_gaps = Counter(p + "seq_gaps", "Sequence gaps found (a device's seq jumped)", registry=r)
        self.seq_missing = Counter(p + "seq_missing_messages", "Messages found missing in sequence gaps", registry=r)
        self.seq_filled = Counter(p + "seq_filled_messages", "Missing messages that arrived late", registry=r)
        self.skewed = Counter(p + "skewed_timestamps", "Device timestamps replaced by the receive time", registry=r)
        self.batch_seconds = Histogram(p + "batch_seconds", "Time to apply and commit one batch", registry=r,
                                       buckets=_LATENCY_BUCKETS)
        self.batch_size = Histogram(p + "batch_size", "Messages per committed batch", registry=r,
                                    buckets=_SIZE_BUCKETS)
        self.lag_seconds = Histogram(p + "lag_seconds", "Service time at apply minus the message's effective time",
                                     registry=r, buckets=_LAG_BUCKETS)
        self.db_errors = Counter(p + "db_errors", "Batches rolled back by a database error and retried", registry=r)
        self.acks_dropped = Counter(p + "acks_dropped", "Acks not sent because the connection changed (redelivered)",
                                    registry=r)
        self.queue_depth = Gauge(p + "queue_depth", "Messages received and not yet applied", registry=r)
        self.connected = Gauge(p + "connected", "1 while connected to the broker", registry=r)
        self.sessions = Counter(p + "sessions", "Connections, by whether the broker resumed the persistent session "
                                "(present=\"false\" after the first start: the broker lost it, a possible gap)",
                                ["present"], registry=r)
        self.last_commit = Gauge(p + "last_commit_timestamp_seconds", "Unix time of the last committed batch",
                                 registry=r)
        self.commands_published = Counter(p + "commands_published", "Commands published (first attempt)",
                                          ["command"], registry=r)
        self.commands_retried = Counter(p + "commands_retried", "Commands republished after a timeout", ["command"],
                                        registry=r)
        self.commands_failed = Counter(p + "commands_failed", "Commands given up after the last retry (or invalid)",
                                       ["command"], registry=r)
        self.command_results = Counter(p + "command_results", "Command answers received, by command and answer",
                                       ["command", "result"], registry=r)
        self.periodic_runs = Counter(p + "periodic_runs", "Periodic work: ran here, skipped (lease held elsewhere), error",
                                     ["result"], registry=r)
        for present in ("true", "false"):
            self.sessions.labels(present)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)  # every reason exported from the start, at 0
            self.dead_letters_dropped.labels(reason)

    def count(self, outcome: Outcome) -> None:
        """Count one committed outcome."""
        if outcome.status == APPLIED:
            self.applied.labels(outcome.kind or "").inc()
        elif outcome.status == DUPLICATE:
            self.duplicates.labels("true" if outcome.retained else "false").inc()
        elif outcome.status == IGNORED:
            self.applied.labels(outcome.kind or "").inc()
            self.ignored.labels(outcome.reason or "").inc()
        elif outcome.status == DEAD_LETTER:
            self.dead_letters.labels(outcome.reason or "").inc()
            if not outcome.stored:
                self.dead_letters_dropped.labels(outcome.reason or "").inc()
        if outcome.unknown_fields and outcome.status in (APPLIED, IGNORED):
            self.unknown_fields.labels(outcome.kind or "").inc()
        if outcome.gap:
            self.seq_gaps.inc()
            self.seq_missing.inc(outcome.gap)
        if outcome.filled:
            self.seq_filled.inc()
        if outcome.skewed:
            self.skewed.inc()
        if outcome.lag_seconds is not None:
            self.lag_seconds.observe(max(0.0, outcome.lag_seconds))
        if outcome.command is not None:
            self.command_results.labels(outcome.command, outcome.result or "").inc()

    def value(self, name: str, labels: dict | None = None) -> float:
        """A sample's current value (0 when absent); for tests and the measurement script."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes every 15 s would flood the log
        pass


class MetricsServer:
    """Serves /metrics (Prometheus text) and /healthz (JSON, 200 or 503) on a daemon thread."""

    def __init__(self, metrics: BridgeMetrics, health: Callable[[], dict], host: str = "127.0.0.1", port: int = 9108):
        metrics_app = make_wsgi_app(metrics.registry)

        def app(environ, start_response):
            path = environ.get("PATH_INFO", "")
            if path == "/healthz":
                state = health()
                body = json.dumps(state, sort_keys=True).encode()
                start_response("200 OK" if state.get("ok") else "503 Service Unavailable",
                               [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                return [body]
            if path == "/metrics":
                return metrics_app(environ, start_response)
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics or /healthz\n"]

        self._server: WSGIServer = make_server(host, port, app, handler_class=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="bridge-metrics", daemon=True)

    def start(self) -> "MetricsServer":
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics, health on /healthz", self._server.server_name, self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def monotonic_age(since: float | None) -> float | None:
    return None if since is None else round(time.monotonic() - since, 3)
