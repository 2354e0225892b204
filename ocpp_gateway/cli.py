"""``chargeapp ocpp-gateway`` (and ``python -m ocpp_gateway``): run the gateway until SIGINT or SIGTERM.

A charger's credentials are the registry's: ``chargeapp ocpp-password`` (chargeapp/commands.py)."""
from __future__ import annotations

import asyncio
import logging
import signal

import click
from flask import current_app, has_app_context

from chargeapp.runtime import freeze_startup_objects
from ocpp_gateway.gateway import Gateway, GatewayOptions


def _configure_logging(level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ocpp_gateway").setLevel(level.upper())
    logging.getLogger("ocpp").setLevel(logging.WARNING)  # it logs every frame at INFO


@click.command("ocpp-gateway")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="CHARGEAPP_OCPP_HOST",
              help="Address to listen on (0.0.0.0 for chargers on the network).")
@click.option("--port", type=click.IntRange(0, 65535), default=9000, show_default=True, envvar="CHARGEAPP_OCPP_PORT")
@click.option("--mqtt-url", default=None, help="Broker URL; default CHARGEAPP_MQTT_URL, else mqtt://127.0.0.1:1883.")
@click.option("--client-id", default="chargeapp-ocpp-gateway", show_default=True,
              help="MQTT client id (stable: it names the persistent session that keeps commands while away).")
@click.option("--certfile", type=click.Path(exists=True, dir_okay=False), default=None, envvar="CHARGEAPP_OCPP_CERTFILE",
              help="TLS certificate chain: serve wss:// (OCPP security profile 2).")
@click.option("--keyfile", type=click.Path(exists=True, dir_okay=False), default=None, envvar="CHARGEAPP_OCPP_KEYFILE")
@click.option("--heartbeat-seconds", type=click.IntRange(10, 86400), default=300, show_default=True,
              help="Heartbeat interval given to chargers in BootNotification.conf.")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              default="INFO", show_default=True)
def ocpp_gateway_command(host, port, mqtt_url, client_id, certfile, keyfile, heartbeat_seconds, log_level):
    """Run the OCPP 1.6J gateway: chargers connect to ws(s)://HOST:PORT/ocpp/<chargePointId>. Ctrl-C stops it."""
    _configure_logging(log_level)
    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    options = GatewayOptions(host=host, port=port, mqtt_url=mqtt_url, client_id=client_id, certfile=certfile,
                             keyfile=keyfile, heartbeat_seconds=heartbeat_seconds)
    if has_app_context():
        _run(current_app._get_current_object(), options)
        return
    from chargeapp.app import create_app

    app = create_app()
    with app.app_context():
        _run(app, options)


def _run(app, options: GatewayOptions) -> None:
    try:
        gateway = Gateway(app, options)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await gateway.run(stop)

    freeze_startup_objects()  # as the bridge: later garbage collections skip what start-up made
    asyncio.run(main())
