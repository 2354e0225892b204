"""``chargeapp bridge`` (and ``python -m mqtt_bridge``): run the MQTT bridge until SIGINT or SIGTERM."""
from __future__ import annotations

import logging
import signal
import threading

import click
from flask import current_app, has_app_context

from chargeapp.runtime import freeze_startup_objects
from mqtt_bridge.bridge import DEFAULT_METRICS_PORT, Bridge, BridgeOptions
from mqtt_bridge.worker import WorkerOptions


def _configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mqtt_bridge").setLevel(level.upper())


@click.command("bridge")
@click.option("--mqtt-url", default=None, help="Broker URL; default CHARGEAPP_MQTT_URL, else mqtt://127.0.0.1:1883.")
@click.option("--group", default=None, envvar="CHARGEAPP_BRIDGE_GROUP",
              help="MQTT 5 shared-subscription group ($share/<group>/...), to run several workers.")
@click.option("--client-id", default=None, help="MQTT client id (stable across restarts: it names the persistent session).")
@click.option("--station", default=None, help="Only this station's topics (default: every station).")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=DEFAULT_METRICS_PORT, show_default=True,
              envvar="CHARGEAPP_BRIDGE_METRICS_PORT", help="Port of /metrics and /healthz; 0 disables.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, envvar="CHARGEAPP_BRIDGE_METRICS_HOST")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=200, show_default=True,
              help="Most messages applied in one transaction.")
@click.option("--batch-ms", type=click.FloatRange(0, 10_000), default=50.0, show_default=True,
              help="Longest a batch waits for more messages after its first.")
@click.option("--periodic-seconds", type=click.FloatRange(0, 3600), default=5.0, show_default=True,
              help="How often to run the periodic work (holds, no-shows, receipts) under a lease; 0 disables.")
@click.option("--outbox-seconds", type=click.FloatRange(0, 3600), default=0.5, show_default=True,
              help="How often to send the command outbox; 0 disables.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="INFO", show_default=True)
def bridge_command(mqtt_url, group, client_id, station, metrics_port, metrics_host, batch_size, batch_ms,
                   periodic_seconds, outbox_seconds, log_level):
    """Run the MQTT bridge: apply station telemetry, send commands, run the periodic work. Ctrl-C stops it cleanly."""
    _configure_logging(log_level)
    if has_app_context():
        _run(current_app._get_current_object(), mqtt_url, group, client_id, station, metrics_port, metrics_host,
             batch_size, batch_ms, periodic_seconds, outbox_seconds)
        return
    from chargeapp.app import create_app

    app = create_app()
    with app.app_context():
        _run(app, mqtt_url, group, client_id, station, metrics_port, metrics_host, batch_size, batch_ms,
             periodic_seconds, outbox_seconds)


def _run(app, mqtt_url, group, client_id, station, metrics_port, metrics_host, batch_size, batch_ms,
         periodic_seconds, outbox_seconds) -> None:
    options = BridgeOptions(
        mqtt_url=mqtt_url, group=group, client_id=client_id, station=station, metrics_host=metrics_host,
        metrics_port=metrics_port,
        worker=WorkerOptions(batch_size=batch_size, batch_ms=batch_ms, periodic_seconds=periodic_seconds,
                             outbox_seconds=outbox_seconds),
    )
    try:
        bridge = Bridge(app, options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    stop = threading.Event()
    previous = {}

    def on_signal(signum, frame):
        logging.getLogger("mqtt_bridge").info("signal %d: stopping", signum)
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    freeze_startup_objects()  # a full collection of the start-up objects paused the worker ~90 ms
    bridge.start()
    try:
        while not stop.wait(0.5):
            if not bridge.worker.alive:
                raise click.ClickException("the bridge worker stopped unexpectedly")
    finally:
        bridge.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
