"""``chargeapp simulate``: run the station simulators against a broker (or, with --dry-run, print their messages)."""
from __future__ import annotations

import logging
import random
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from chargeapp.clock import AcceleratedClock, clock_from_config
from chargeapp.config import DEFAULT_DB_PATH, Settings
from simulators.behaviour import Behaviour
from simulators.bookings import HttpBookings
from simulators.layouts import DEMO_STATIONS, layout_for
from simulators.runner import Progress, run_realtime, run_virtual
from simulators.simulation import Simulation
from simulators.state import StateStore

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90``, ``90s``, ``15m``, ``6h``, ``1d`` (or ``1.5h``) as a timedelta; raises ValueError."""
    m = _DURATION.match(text or "")
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 15m, 6h, 1d)")
    return timedelta(seconds=float(m.group(1)) * _UNIT[m.group(2)])


def parse_start(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 start; without an offset it is read as Asia/Shanghai time."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        from zoneinfo import ZoneInfo

        value = value.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    return value


def default_state_path() -> Path:
    """``$CHARGEAPP_DATA_DIR/simulators-state.json`` (next to the default database)."""
    return DEFAULT_DB_PATH.parent / "simulators-state.json"


def build_clock(start: str | None, speed: float | None, settings: Settings):
    """The simulated clock: --start/--speed if given, else the shared demo clock from the environment, else real time."""
    if start is not None or speed is not None:
        begin = parse_start(start) if start else datetime.now(UTC)
        return AcceleratedClock(begin, speed if speed is not None else 1.0, time.time()), (speed or 1.0)
    config = settings.flask_config()
    clock = clock_from_config(config)
    return clock, (settings.clock_speed if isinstance(clock, AcceleratedClock) else 1.0)


class _Duration(click.ParamType):
    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


@click.command("simulate")
@click.option("--station", "stations", multiple=True, metavar="CODE",
              help=f"Station to simulate (repeatable). Default: the demo stations ({', '.join(DEMO_STATIONS)}).")
@click.option("--speed", type=float, default=None,
              help="Simulated seconds per wall-clock second (60: a day in 24 minutes). "
                   "Default: CHARGEAPP_CLOCK_SPEED with CHARGEAPP_CLOCK_START, else 1.")
@click.option("--seed", type=int, default=None, help="Random seed: the same seed, start and stations give the same run. "
                                                       "Default: a random one, printed.")
@click.option("--start", default=None, metavar="TIME",
              help="Simulated start time, ISO 8601 (no offset: Shanghai time). Default: the shared clock "
                   "(CHARGEAPP_CLOCK_START) or now.")
@click.option("--duration", type=_Duration(), default=None, metavar="DURATION",
              help="Simulated time to run, e.g. 90m, 6h, 1d. Default: until Ctrl-C (required with --dry-run).")
@click.option("--api-url", default=None, metavar="URL",
              help="The service's base URL (http://127.0.0.1:5000): some drivers book, cancel and no-show "
                   "through the API. Without it nobody books.")
@click.option("--broker", default=None, metavar="URL",
              help="MQTT broker URL, e.g. mqtt://127.0.0.1:1883?protocol=3.1.1. Default: CHARGEAPP_MQTT_URL.")
@click.option("--device-password", envvar="CHARGEAPP_SIM_DEVICE_PASSWORD", default=None,
              help="Password every simulated device logs in with (its username is station.device). "
                   "Env: CHARGEAPP_SIM_DEVICE_PASSWORD.")
@click.option("--state", "state_path", default=None, metavar="PATH",
              help="Device state file (boot counters, transaction ids, meter registers), so a restart continues "
                   "where the last run stopped. Default: $CHARGEAPP_DATA_DIR/simulators-state.json; "
                   "'-' keeps it in memory (the default with --dry-run).")
@click.option("--incidents", type=float, default=1.0, show_default=True,
              help="Multiplies the rates of faults, outages and reboots (0: none).")
@click.option("--dry-run", is_flag=True, help="No broker: run in virtual time as fast as possible and print "
                                              "every message as a JSON line.")
@click.option("--progress-interval", type=float, default=None, metavar="SECONDS",
              help="Wall seconds between status lines (default 1 on a terminal, 10 otherwise; 0: none).")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def simulate_command(stations, speed, seed, start, duration, api_url, broker, device_password, state_path,
                     incidents, dry_run, progress_interval, verbose):
    """Simulate station hardware (chargers, lounge door counters, garage gates) and the drivers using it.

    Every device speaks the MQTT telemetry contract as its own client. With the
    demo's shared clock (CHARGEAPP_CLOCK_START and CHARGEAPP_CLOCK_SPEED) device
    time, bookings and receipts agree with the service.
    """
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        logging.getLogger("urllib3").setLevel(logging.WARNING)
    try:
        layouts = [layout_for(code) for code in (stations or DEMO_STATIONS)]
    except KeyError as e:
        raise click.BadParameter(str(e.args[0]), param_hint="--station") from None
    settings = Settings.from_env()
    if seed is None:
        seed = random.SystemRandom().randrange(1, 1_000_000)
    behaviour = Behaviour(incidents=max(incidents, 0.0))

    if dry_run:
        if api_url:
            raise click.UsageError("--dry-run runs in virtual time; it cannot book through a live API.")
        if duration is None:
            raise click.UsageError("--dry-run needs --duration.")
        from simulators.sinks import JsonLinesSink

        begin = parse_start(start) if start else datetime.now(UTC).replace(microsecond=0)
        state = StateStore(None if state_path in (None, "-") else state_path)
        sim = Simulation(layouts, start=begin, seed=seed, sink=JsonLinesSink(sys.stdout), behaviour=behaviour,
                         state=state)
        click.echo(f"simulate: seed {seed}, {begin.isoformat()} + {duration}, dry run", err=True)
        progress = None if progress_interval == 0 else Progress(sim, speed=0, interval=progress_interval)
        run_virtual(sim, begin + duration, progress=progress)
        state.save()
        return

    url = broker or settings.mqtt_url
    if not url:
        raise click.UsageError("No broker: pass --broker URL or set CHARGEAPP_MQTT_URL (or use --dry-run).")
    from simulators.mqtt import BrokerSettings, MqttNetwork

    try:
        broker_settings = BrokerSettings.from_url(url)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--broker") from None
    clock, effective_speed = build_clock(start, speed, settings)
    state = StateStore(None if state_path == "-" else (state_path or default_state_path()))
    bookings = HttpBookings(api_url) if api_url else None
    begin = clock.now()
    holder: dict = {}

    def on_command(topic: str, payload: bytes) -> None:
        sim = holder["sim"]
        sim.run_until(clock.now())
        sim.deliver(topic, payload)

    network = MqttNetwork(broker_settings, on_command, password=device_password)
    sim = Simulation(layouts, start=begin, seed=seed, sink=network, bookings=bookings, behaviour=behaviour,
                     state=state)
    holder["sim"] = sim
    executor = None
    if bookings is not None:
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="api")
        sim.api_executor = executor
    until = begin + duration if duration is not None else None
    click.echo(
        f"simulate: {len(sim.devices)} devices at {', '.join(l.code for l in layouts)}; seed {seed}; "
        f"clock {begin.isoformat()} x{effective_speed:g}; broker {broker_settings.host}:{broker_settings.port}"
        f" (MQTT {broker_settings.protocol}); bookings {'via ' + api_url if api_url else 'off'}; "
        f"state {state.path or 'in memory'}",
        err=True,
    )
    progress = None if progress_interval == 0 else Progress(sim, speed=effective_speed, interval=progress_interval)
    try:
        run_realtime(sim, clock, network, speed=effective_speed, until=until, progress=progress)
    finally:
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
    if bookings is not None and bookings.counts:
        click.echo("simulate: API " + ", ".join(f"{k} {v}" for k, v in sorted(bookings.counts.items())), err=True)
    click.echo(f"simulate: stopped at {sim.now.isoformat()}; {sim.counts.get('messages', 0)} messages", err=True)


def main() -> None:  # pragma: no cover
    simulate_command(prog_name="python -m simulators")
