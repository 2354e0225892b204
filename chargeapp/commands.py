"""The app's own commands, run in its app context: ``seed --demo``, ``create-manager``, ``reset-password``, ``tick``,
``rollup``, ``report``, ``map-device``, ``ocpp-password`` and ``mqtt-credentials`` (besides
Flask-Migrate's ``db``).

``create_app`` registers them; the process commands (``bridge``, ``simulate``, ``demo``,
``ocpp-gateway``) are the command line's alone (chargeapp/cli.py), so the web app never imports them.
"""
from __future__ import annotations

import json
import os
import secrets
import sys

import click
from flask import current_app

from chargeapp.db import db

OCPP_PASSWORD_MIN, OCPP_PASSWORD_MAX = 16, 40  # OCPP 1.6 security whitepaper: AuthorizationKey of at least 16 bytes


class _DomainErrorsAsMessages(click.Command):
    """A command whose rule violations print as one line (exit 1), not a traceback."""

    def invoke(self, ctx):
        from chargeapp.domain.errors import DomainError

        try:
            return super().invoke(ctx)
        except DomainError as err:
            raise click.ClickException(err.message) from None


def _now():
    return current_app.extensions["chargeapp.clock"].now()


def _hasher():
    from chargeapp.services.auth import password_hasher

    return password_hasher(*current_app.config["CHARGEAPP_ARGON2"])


@click.command("seed", cls=_DomainErrorsAsMessages)
@click.option("--demo", is_flag=True, help="Create the demo stations and accounts (marked as demo data).")
def seed_command(demo):
    """Load data into the database."""
    if not demo:
        raise click.UsageError("Nothing to seed: pass --demo for the demo stations and accounts.")
    from chargeapp.seed import DEMO_ADMIN, DEMO_DRIVER, DEMO_MANAGER, seed_demo

    created = seed_demo(db.session, _now(), _hasher())
    db.session.commit()
    click.echo(f"stations created: {', '.join(created['stations']) or 'none (already there)'}")
    for email, password in (DEMO_MANAGER, DEMO_ADMIN, DEMO_DRIVER):
        click.echo(f"demo login: {email} / {password}")


@click.command("create-manager", cls=_DomainErrorsAsMessages)
@click.option("--email", required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--station", "stations", multiple=True, help="Station code the manager runs (repeatable).")
@click.option("--admin", is_flag=True, help="A network administrator who sees every station.")
def create_manager_command(email, password, stations, admin):
    """Create a station manager (or, with --admin, a network administrator)."""
    from chargeapp.services.common import station_by_code
    from chargeapp.services.registry import create_user

    if len(password) < 8:
        raise click.BadParameter("at least 8 characters", param_hint="--password")
    st = tuple(station_by_code(db.session, code) for code in stations)
    user = create_user(db.session, email=email, password_hash=_hasher().hash(password), now=_now(),
                       role="admin" if admin else "manager", stations=st)
    db.session.commit()
    click.echo(f"created {user.role} {user.email} for {', '.join(stations) or 'all stations' if admin else ', '.join(stations)}")


@click.command("reset-password", cls=_DomainErrorsAsMessages)
@click.argument("email")
@click.option("--base-url", envvar="CHARGEAPP_PUBLIC_URL", default="",
              help="The site's address as drivers open it, e.g. https://charge.example.cn (env CHARGEAPP_PUBLIC_URL).")
@click.option("--hours", type=click.IntRange(1, 24 * 7), default=24, show_default=True, help="How long the link works.")
@click.option("--reason", default="reset from the command line", help="Kept in the audit log.")
def reset_password_command(email, base_url, hours, reason):
    """Print a one-time link that lets the account EMAIL set a new password (there is no mail).

    The link works once (setting the password voids it and every earlier link) and expires
    after --hours; the driver's other sessions and API tokens end when the password is set.
    """
    from chargeapp.services import accounts

    token, user, expires = accounts.issue_reset_link(db.session, _now(), None, email, current_app.config["SECRET_KEY"],
                                                     reason=reason, hours=hours)
    db.session.commit()
    click.echo(f"{base_url.rstrip('/')}/reset-password/{token}")
    click.echo(f"for {user.email} ({user.role}), single use, expires {expires.isoformat(timespec='minutes')}", err=True)


@click.command("tick", cls=_DomainErrorsAsMessages)
def tick_command():
    """Run the periodic work once: holds, waiting bookings, no-shows, receipts, rollups, old dead letters. Under the
    bridge workers' lease:
    while a running bridge holds it, this run does nothing and says so (the bridge does the work)."""
    import os
    import socket
    from datetime import timedelta

    from chargeapp.db import models as m
    from chargeapp.services.lease import PERIODIC_LEASE, release_lease, run_periodic
    from chargeapp.services.periodic import dead_letter_retention

    now = _now()
    holder = f"tick@{socket.gethostname()}:{os.getpid()}"
    counts = run_periodic(db.session, now, holder, ttl=timedelta(minutes=5),  # (a bound in case it dies midway)
                          dead_letter_retention=dead_letter_retention(current_app.config))
    if counts is None:
        db.session.rollback()
        lease = db.session.get(m.Lease, PERIODIC_LEASE)
        click.echo(f"skipped: {lease.holder if lease else 'another worker'} is running the periodic work"
                   + (f" (its lease runs until {lease.expires_at.isoformat()})" if lease else ""))
        return
    release_lease(db.session, PERIODIC_LEASE, holder, now)
    db.session.commit()
    click.echo(json.dumps(counts, sort_keys=True))


@click.command("rollup", cls=_DomainErrorsAsMessages)
@click.option("--station", "stations", multiple=True, help="Station code (repeatable); default every station.")
@click.option("--from", "first", type=click.DateTime(["%Y-%m-%d"]),
              help="First day (station time); default the station's first data")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]),
              help="Last day, inclusive; default the last complete day")
def rollup_command(stations, first, last):
    """(Re)compute the reports' daily rollups of whole past days, a week per commit (backfills; the periodic
    work keeps them up to date)."""
    from sqlalchemy import select

    from chargeapp.db import models as m
    from chargeapp.services import rollups
    from chargeapp.services.common import station_by_code

    if first and last and last < first:
        raise click.BadParameter("--to is before --from", param_hint="--to")
    now = _now()
    chosen = ([station_by_code(db.session, code) for code in stations] if stations
              else db.session.scalars(select(m.Station).order_by(m.Station.code)).all())
    for st in chosen:
        with click.progressbar(length=1, label=f"{st.code}", show_pos=True, file=sys.stderr) as bar:
            def progress(done, total, bar=bar):
                bar.length = total
                bar.update(done - bar.pos)

            rows = rollups.roll_up(db.session, st, first.date() if first else None, last.date() if last else None,
                                   now, progress=progress, commit=db.session.commit)
        db.session.commit()
        click.echo(f"{st.code}: {rows} connector-days rolled up")


@click.command("report", cls=_DomainErrorsAsMessages)
@click.option("--station", required=True, help="Station code")
@click.option("--start", "start", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (station time)")
@click.option("--end", "end", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day, inclusive")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json")
def report_command(station, start, end, fmt):
    """Print the utilization report of a station for a date range (station time)."""
    from chargeapp.services import reports
    from chargeapp.services.common import station_by_code, station_tz

    st = station_by_code(db.session, station)
    report = reports.utilization(db.session, st, start.date(), end.date(), now=_now())
    if fmt == "csv":
        csv_bytes = reports.to_csv(reports.utilization_rows(report), tz=station_tz(st))
        sys.stdout.buffer.write(csv_bytes) if hasattr(sys.stdout, "buffer") else sys.stdout.write(csv_bytes.decode("utf-8-sig"))
    else:
        click.echo(json.dumps(report, default=str, ensure_ascii=False, indent=2))


@click.command("map-device", cls=_DomainErrorsAsMessages)
@click.option("--station", required=True, help="Station code.")
@click.option("--adapter", required=True, type=click.Choice(["zigbee2mqtt", "shelly_gen2", "people_counter"]),
              help="The device's format (docs/bridge.md, Device adapters).")
@click.option("--address", required=True,
              help="A door contact's zigbee2mqtt friendly name or Shelly '<topic prefix>/input:<id>'; "
                   "a people counter's topic.")
@click.option("--sensor", help="people_counter: the door sensor (code) the counting line feeds.")
@click.option("--line", help="people_counter: the counting line's name in the counter's reports.")
@click.option("--name", default="", help="Door contacts: a name for managers.")
@click.option("--inverted", is_flag=True, help="Door contacts: the sensor reports closed when the door is open.")
def map_device_command(station, adapter, address, sensor, line, name, inverted):
    """Map a vendor door device to a station: a door contact, or a people counter's counting line to a door sensor."""
    from chargeapp import adapters
    from chargeapp.services import registry

    if adapter in adapters.COUNTER_ADAPTERS:
        if not sensor or not line:
            raise click.UsageError("a people counter needs --sensor and --line")
        registry.map_counting_line(db.session, station_code=station, sensor_code=sensor, topic=address, line=line,
                                   adapter=adapter)
        what = f"counting line {line!r} of {address} -> door sensor {station}/{sensor}"
    else:
        if sensor or line:
            raise click.UsageError("--sensor and --line are for people counters")
        registry.map_door_contact(db.session, station_code=station, address=address, adapter=adapter, name=name,
                                  inverted=inverted)
        what = f"{adapter} door contact {address!r} -> station {station}" + (" (inverted)" if inverted else "")
    db.session.commit()
    click.echo(f"mapped {what}; topics: {', '.join(adapters.adapter(adapter).topics(address))}")
    click.echo("then: chargeapp mqtt-credentials (broker access), reload the broker, restart the bridge")


@click.command("ocpp-password", cls=_DomainErrorsAsMessages)
@click.argument("station")
@click.argument("charger")
@click.option("--ocpp-id", default=None, help="The charger's chargePointId (default <station>.<charger>).")
@click.option("--password-env", default=None, metavar="VARIABLE",
              help="Take the password from this environment variable (16-40 characters) instead of generating one.")
def ocpp_password_command(station, charger, ocpp_id, password_env):
    """Set (or replace) a charger's OCPP Basic-auth password; prints the URL path, username and password to configure."""
    from chargeapp.services.registry import set_ocpp_credentials

    if password_env is not None:
        password = os.environ.get(password_env, "")
        if (not OCPP_PASSWORD_MIN <= len(password) <= OCPP_PASSWORD_MAX or not password.isprintable()
                or not password.isascii()):
            raise click.BadParameter(f"${password_env} must hold {OCPP_PASSWORD_MIN}-{OCPP_PASSWORD_MAX} printable "
                                     "ASCII characters", param_hint="--password-env")
        shown = "(from $" + password_env + ")"
    else:
        password = secrets.token_urlsafe(18)  # 24 characters, 144 random bits
        shown = password
    row = set_ocpp_credentials(db.session, station_code=station, charger_code=charger, ocpp_id=ocpp_id,
                               password_hash=_hasher().hash(password), now=_now())
    ocpp_id = row.ocpp_id
    db.session.commit()
    click.echo(f"charger {station}/{charger}: connect to ws(s)://<gateway>/ocpp/{ocpp_id}")
    click.echo(f"  Basic auth username: {ocpp_id}")
    click.echo(f"  password (AuthorizationKey): {shown}")
    click.echo("the gateway's broker login needs this charger's topics: run `chargeapp mqtt-credentials ... "
               "--ocpp-gateway-user <its user>` again and reload Mosquitto (docs/ocpp.md)")


def register(app) -> None:
    """Add the app's own commands to ``app.cli``."""
    from chargeapp.mqtt_credentials import mqtt_credentials_command

    for cmd in (seed_command, create_manager_command, reset_password_command, tick_command, rollup_command, report_command,
                map_device_command, ocpp_password_command, mqtt_credentials_command):
        app.cli.add_command(cmd)
