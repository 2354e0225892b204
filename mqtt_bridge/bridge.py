"""One running bridge: the MQTT client, the worker and the metrics server, wired together."""
from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass, field

from chargeapp import telemetry
from mqtt_bridge.client import (
    BridgeClient,
    Clock,
    Received,
    default_client_id,
    parse_mqtt_url,
)
from mqtt_bridge.metrics import BridgeMetrics, MetricsServer, monotonic_age
from mqtt_bridge.worker import Worker, WorkerOptions

log = logging.getLogger("mqtt_bridge")

DEFAULT_METRICS_PORT = 9108
STALE_LOOP_SECONDS = 30.0


@dataclass(frozen=True)
class BridgeOptions:
    """How to run: broker URL (None: the app's CHARGEAPP_MQTT_URL), share group, client id, metrics port (0: off), worker options."""

    mqtt_url: str | None = None
    group: str | None = None
    client_id: str | None = None
    station: str | None = None  # subscribe to one station's topics only
    metrics_host: str = "127.0.0.1"
    metrics_port: int = DEFAULT_METRICS_PORT
    worker: WorkerOptions = field(default_factory=WorkerOptions)


def _vendor_topics(app, station: str | None) -> tuple[str, ...]:
    """The vendor topics of the devices the registry maps to an adapter, read once at start (docs/bridge.md)."""
    from sqlalchemy.exc import SQLAlchemyError

    from chargeapp.db import db
    from mqtt_bridge.vendor import vendor_subscriptions

    try:
        with app.app_context():
            return vendor_subscriptions(db.session, station)
    except SQLAlchemyError as exc:
        log.error("could not read the vendor devices' topics from the registry (%s): only the contract's and "
                  "zigbee2mqtt's topics are subscribed until the bridge restarts", str(exc).splitlines()[0][:200])
        return ()


class Bridge:
    """The MQTT bridge of one process: ``start``, then ``stop`` (finishes the batch in hand, commits, acks, disconnects)."""

    def __init__(self, app, options: BridgeOptions | None = None, *, clock: Clock | None = None):
        self.options = o = options or BridgeOptions()
        self.clock = clock or app.extensions["chargeapp.clock"]
        self.metrics = BridgeMetrics()
        self.settings = parse_mqtt_url(o.mqtt_url or app.config.get("CHARGEAPP_MQTT_URL"),
                                       client_id=o.client_id or default_client_id(o.group))
        vendor_topics = _vendor_topics(app, o.station)  # mapped devices' own topics (Shelly, counters)
        if o.group:
            subscriptions = telemetry.shared_subscriptions(o.group, o.station) + tuple(
                telemetry.shared_subscription(topic, o.group) for topic in vendor_topics)
        else:
            subscriptions = telemetry.bridge_subscriptions(o.station) + vendor_topics
        self.client = BridgeClient(
            self.settings, subscriptions=subscriptions, on_received=self._received, clock=self.clock,
            receive_maximum=max(2 * o.worker.batch_size, 100), on_session=self._session,
        )
        self.worker = Worker(
            app, clock=self.clock, ack=self._ack, metrics=self.metrics, publish=self.client.publish,
            connected=lambda: self.client.connected, options=o.worker,
            worker_id=f"{socket.gethostname()}:{os.getpid()}:{self.settings.client_id}",
        )
        self.server: MetricsServer | None = None
        self._stopped = threading.Event()
        self._connections = 0

    def _received(self, received: Received) -> None:
        self.worker.submit(received)

    def _session(self, present: bool) -> None:
        """Count every connection by whether the broker resumed our session; a new one is a possible gap."""
        self.metrics.sessions.labels("true" if present else "false").inc()
        self._connections += 1
        if present:
            return
        who = f"user {self.settings.username}, client id {self.settings.client_id}"
        if self._connections == 1:
            # This process's first connection: on a first start against this broker (every demo start) there is
            # no session to resume, and nothing was missed. Had the bridge run against this broker before, a
            # broker that lost its session meanwhile dropped what devices published then: the devices' next
            # messages show it as sequence gaps (seq_gaps_total, device_sequences.missing), so no warning here.
            log.info("the broker had no session for this bridge (%s): starting a new one (expected on a first "
                     "start; a gap in what devices sent meanwhile would show as sequence gaps)", who)
            return
        # A reconnection of a running bridge: the broker had our session and lost it (restarted without its
        # persistence file, or the session expired). Whatever devices published while no session existed was
        # dropped by the broker; we resubscribe now, and each device's next message shows it as a sequence gap.
        log.warning("the broker lost this bridge's session (%s): anything published while it had none is lost to "
                    "us; resubscribing, and the devices' next messages will show it as sequence gaps", who)

    def _ack(self, received: Received) -> bool:
        return self.client.ack(received)

    def start(self) -> "Bridge":
        if self.options.metrics_port:
            self.server = MetricsServer(self.metrics, self.health, self.options.metrics_host,
                                        self.options.metrics_port).start()
        self.worker.start()
        self.client.start()
        log.info("bridge %s: broker %s, client id %s, %s", self.worker.worker_id, self.settings.url,
                 self.settings.client_id, f"share group {self.options.group}" if self.options.group else "no share group")
        return self

    def stop(self) -> None:
        """Stop cleanly: the worker finishes its batch (commit, ack), then the client disconnects."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.worker.stop()
        self.client.stop()
        if self.server is not None:
            self.server.stop()
        log.info("bridge stopped")

    def health(self) -> dict:
        """Health for /healthz: ok when connected and subscribed, the worker loop turns, and the database accepts commits."""
        age = monotonic_age(self.worker.heartbeat)
        connected = self.client.connected
        self.metrics.connected.set(1 if connected else 0)
        self.metrics.queue_depth.set(self.worker.queue.qsize())
        ok = (connected and self.client.subscribed and self.worker.alive and not self.worker.db_failing
              and age is not None and age < STALE_LOOP_SECONDS and not self.client.subscribe_failures)
        return {
            "ok": ok, "connected": connected, "subscribed": self.client.subscribed, "protocol": self.client.protocol,
            "session_present": self.client.session_present,
            "worker_alive": self.worker.alive, "loop_age_s": age, "database_ok": not self.worker.db_failing,
            "last_commit_age_s": monotonic_age(self.worker.last_commit), "queue_depth": self.worker.queue.qsize(),
            "subscribe_failures": list(self.client.subscribe_failures),
        }
