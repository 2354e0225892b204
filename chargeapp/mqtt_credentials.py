"""``chargeapp mqtt-credentials``: Mosquitto's password and ACL files from the device registry.

Every charger, door counter and gate logs in with its own username (its
``mqtt_username``, ``<station code>.<device code>``) and password. The ACL lets
it publish only its own topics and read only its own command topics; the bridge
users read every device topic and are the only ones who may publish commands;
nobody else may publish anything. Topics come from ``chargeapp.telemetry`` (the
wire contract), never from strings written here.

Decisions:

- Explicit ``user`` blocks, no ``pattern`` lines. A pattern on ``%c`` (client id)
  would let a device choose another device's client id and publish as it; and
  the broker runs with ``use_username_as_clientid true`` (deploy/mosquitto), so a
  client id cannot take over another device's session either.
- Vendor devices (Shelly Gen2 door contacts, people counters; docs/bridge.md,
  "Device adapters") publish on their vendors' topics, which the registry maps:
  ``--vendor-user USER=STATION[,DEVICE]`` may write exactly those topics of the
  station (or of one device: a Shelly's topic prefix, a counter's topic), and
  the bridge and monitor users read them. ``--zigbee2mqtt-user USER=STATION``
  covers the station's zigbee2mqtt contacts only.
- ``--ocpp-gateway-user`` is the OCPP gateway's login: for every charger with
  OCPP credentials (``ocpp_chargers``) exactly what that charger's own account
  would have, since the gateway speaks for it; nothing of the other chargers.
- ``--monitor-user`` is a read-only login for operators (``mosquitto_sub``): logging
  in as a bridge worker would take over that worker's session.
- One username per bridge worker (``--bridge-user`` repeated): with
  ``use_username_as_clientid`` the username is the MQTT session, so two workers
  sharing one username would evict each other and share one queue.
- Hashes are what ``mosquitto_passwd -b`` writes in Mosquitto 2.0:
  ``$7$101$<base64 12-byte salt>$<base64 PBKDF2-HMAC-SHA512>``, made in Python so
  the command runs on a host without Mosquitto. 101 iterations is Mosquitto's own
  default; it is enough because generated passwords are random 144-bit secrets
  (no dictionary to try), and the broker checks a hash on its single thread at
  every connect, so a reconnect storm of 10,000 devices must stay cheap.
- Generated passwords are written, with the device's kind, station and code, to a
  separate secrets file (mode 0600) so installers can provision devices; the
  password file (hashes) and ACL file are what Mosquitto reads. A re-run keeps
  every existing password (the hash lines are kept as they are, so the files do
  not change when the registry did not), adds new devices and drops removed
  ones; ``--rotate`` (all) or ``--rotate-user`` (one) makes new passwords.
- ``--password-for USER=PASSWORD`` (or ``USER=env:VARIABLE``, which keeps the
  password out of the process list) sets a known password, for example the one
  a bridge worker already has in CHARGEAPP_MQTT_URL; such passwords are not
  written to the secrets file. USER may be a shell-style pattern (``*``,
  ``yangpu-liaoyuan.*``): a pattern matches device users only, for demos whose
  simulators log every device in with one password.
"""
from __future__ import annotations

import base64
import csv
import fnmatch
import grp
import hashlib
import hmac
import io
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
from sqlalchemy import select

from chargeapp import telemetry as t

HASH_ITERATIONS = 101  # mosquitto_passwd's default in Mosquitto 2.0
SALT_BYTES = 12  # as mosquitto_passwd
PASSWORD_BYTES = 18  # 144 random bits, 24 URL-safe characters

PASSWD_FILE = "passwd"
ACL_FILE = "acl"
SECRETS_FILE = "device-secrets.csv"
SECRETS_HEADER = ("username", "password", "kind", "station", "device")

# A username Mosquitto's files can hold: no ':' (password file separator), no
# whitespace (ACL lines), no MQTT wildcards.
_USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,139}")


# --------------------------------------------------------------------------- hashes


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS) -> str:
    """The Mosquitto 2.0 ``$7$`` (PBKDF2-HMAC-SHA512) hash of a password, as ``mosquitto_passwd -b`` writes it."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, hashed: str) -> bool | None:
    """True or False for a ``$7$`` hash; None when the hash is in a format this module does not check."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return None
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return None
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def new_password() -> str:
    """A random device password: 24 characters of [A-Za-z0-9_-] (safe in CSV, URLs and shell)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


# --------------------------------------------------------------------------- who gets what


@dataclass(frozen=True)
class Account:
    """One MQTT login: its username, what it is, and the topic filters it may publish to and read."""

    username: str
    kind: str  # charger | door_sensor | gate | bridge | monitor | ocpp_gateway | zigbee2mqtt | vendor
    station: str
    device: str
    write: tuple[str, ...]
    read: tuple[str, ...]

    @property
    def is_device(self) -> bool:
        return self.kind in ("charger", "door_sensor", "gate")


def _any(template_kind: t.TopicKind, **parts: str) -> str:
    """A contract channel's address with some levels as the single-level wildcard ``+``."""
    return t.CHANNELS[template_kind].format(**parts)


def charger_account(username: str, station: str, charger: str) -> Account:
    online = t.charger_online_topic(station, charger)  # validates both ids
    return Account(
        username, "charger", station, charger,
        write=(
            _any(t.TopicKind.STATUS, station=station, charger=charger, connector="+"),
            online,
            t.transaction_topic(station, charger),
            t.meter_topic(station, charger),
            t.command_results_topic(station, charger),
        ),
        read=(t.command_subscription(station, charger),),
    )


def door_account(username: str, station: str, sensor: str) -> Account:
    return Account(username, "door_sensor", station, sensor,
                   write=(t.door_count_topic(station, sensor), t.door_online_topic(station, sensor)), read=())


def gate_account(username: str, station: str, gate: str) -> Account:
    return Account(username, "gate", station, gate,
                   write=(t.gate_passage_topic(station, gate), t.gate_online_topic(station, gate)), read=())


def bridge_account(username: str, vendor_topics: tuple[str, ...] = ()) -> Account:
    """Reads every device topic (``stations/#``, ``zigbee2mqtt/#`` and the registry's vendor devices' topics);
    the only writer of charger commands."""
    return Account(
        username, "bridge", "", "",
        write=(_any(t.TopicKind.COMMAND, station="+", charger="+", command="+"),),
        read=(f"{t.STATION_ROOT}/#", f"{t.ZIGBEE_ROOT}/#", *vendor_topics),
    )


def monitor_account(username: str, vendor_topics: tuple[str, ...] = ()) -> Account:
    """An operator's read-only view of every device topic (mosquitto_sub), so nobody logs in as a bridge worker
    (which, with use_username_as_clientid, would take over that worker's session)."""
    return Account(username, "monitor", "", "", write=(),
                   read=(f"{t.STATION_ROOT}/#", f"{t.ZIGBEE_ROOT}/#", *vendor_topics))


def ocpp_gateway_account(username: str, chargers: list[tuple[str, str]]) -> Account:
    """``chargeapp ocpp-gateway``: speaks for the registry's OCPP chargers, so it may do on the broker exactly what
    each of them would (``charger_account``): publish its status, online, transaction, meter and command results
    topics, read its commands. Nothing of the chargers that speak MQTT themselves."""
    own = [charger_account(username, station, charger) for station, charger in chargers]
    return Account(username, "ocpp_gateway", "", "",
                   write=tuple(topic for a in own for topic in a.write),
                   read=tuple(topic for a in own for topic in a.read))


def zigbee2mqtt_account(username: str, station: str | None = None, friendly_names: tuple[str, ...] = ()) -> Account:
    """A zigbee2mqtt gateway. For one station: exactly its door contacts' topics (the registry's friendly
    names), nothing to read. Without a station: the whole ``zigbee2mqtt/#`` tree (one gateway for all)."""
    if station is None:
        tree = f"{t.ZIGBEE_ROOT}/#"
        return Account(username, "zigbee2mqtt", "", "", write=(tree,), read=(tree,))
    return Account(username, "zigbee2mqtt", station, "",
                   write=tuple(t.zigbee_topic(name) for name in friendly_names), read=())


def station_door_contacts(session, station: str) -> tuple[str, ...] | None:
    """The friendly names of a station's zigbee2mqtt door contacts; None when there is no such station."""
    from chargeapp.db import models as m

    station_id = session.scalar(select(m.Station.id).where(m.Station.code == station))
    if station_id is None:
        return None
    return tuple(session.scalars(select(m.DoorContact.friendly_name).where(
        m.DoorContact.station_id == station_id, m.DoorContact.adapter == "zigbee2mqtt")
        .order_by(m.DoorContact.friendly_name)))


@dataclass(frozen=True)
class VendorDevice:
    """A device the registry reads through an adapter other than zigbee2mqtt: its station, adapter, the device
    name an installer knows (a Shelly's topic prefix, a counter's topic) and the topics it publishes."""

    station: str
    adapter: str
    device: str
    topics: tuple[str, ...]


def vendor_devices(session, station: str | None = None) -> tuple[list[VendorDevice], list[str]]:
    """The registry's Shelly Gen2 contacts and people counters (one station's, or all), and a warning per device left out."""
    from chargeapp.adapters import people_counter, shelly_gen2
    from chargeapp.db import models as m

    found: list[VendorDevice] = []
    warnings: list[str] = []
    q = (select(m.Station.code, m.DoorContact.adapter, m.DoorContact.friendly_name)
         .join(m.Station, m.DoorContact.station_id == m.Station.id)
         .where(m.DoorContact.adapter == shelly_gen2.NAME).order_by(m.Station.code, m.DoorContact.friendly_name))
    if station is not None:
        q = q.where(m.Station.code == station)
    for code, adapter, address in session.execute(q):
        try:
            found.append(VendorDevice(code, adapter, shelly_gen2.split_address(address)[0],
                                      shelly_gen2.topics(address)))
        except t.BadMessage as e:
            warnings.append(f"{adapter} contact {code}/{address[:80]!r}: {e.detail}: no broker access")
    q = (select(m.Station.code, m.DoorSensor.adapter, m.DoorSensor.vendor_topic)
         .join(m.Station, m.DoorSensor.station_id == m.Station.id)
         .where(m.DoorSensor.adapter == people_counter.NAME).order_by(m.Station.code, m.DoorSensor.vendor_topic))
    if station is not None:
        q = q.where(m.Station.code == station)
    for code, adapter, topic in session.execute(q):
        try:
            found.append(VendorDevice(code, adapter, topic, people_counter.topics(topic)))
        except t.BadMessage as e:
            warnings.append(f"{adapter} {code}/{str(topic)[:80]!r}: {e.detail}: no broker access")
    return found, warnings


def vendor_account(username: str, station: str, devices: list[VendorDevice]) -> Account:
    """A login for a station's vendor devices (or their gateway): write exactly their vendor topics, read nothing."""
    topics = tuple(dict.fromkeys(topic for d in devices for topic in d.topics))
    label = devices[0].device if len({d.device for d in devices}) == 1 else ""
    return Account(username, "vendor", station, label, write=topics, read=())


def registry_accounts(session) -> tuple[list[Account], list[str]]:
    """The accounts of every charger, door counter and gate in the registry, and a warning per device left out."""
    from chargeapp.db import models as m

    accounts: list[Account] = []
    warnings: list[str] = []
    for model, kind, build in ((m.Charger, "charger", charger_account), (m.DoorSensor, "door_sensor", door_account),
                               (m.Gate, "gate", gate_account)):
        rows = session.execute(
            select(m.Station.code, model.code, model.mqtt_username)
            .join(m.Station, model.station_id == m.Station.id)
            .order_by(m.Station.code, model.code)
        ).all()
        for station, device, username in rows:
            where = f"{kind} {station}/{device}"
            if not username:
                warnings.append(f"{where} has no mqtt_username: no broker access")
            elif not _USERNAME.fullmatch(username):
                warnings.append(f"{where}: mqtt_username {username!r} cannot be used in Mosquitto's files: no broker access")
            elif not (t.is_valid_id(station) and t.is_valid_id(device)):
                warnings.append(f"{where}: station or device code is not a contract id: no broker access")
            else:
                accounts.append(build(username, station, device))
    return accounts, warnings


def render_acl(accounts: list[Account]) -> str:
    """The Mosquitto ACL file: one ``user`` block per account, nothing for anyone else."""
    out = io.StringIO()
    out.write(
        "# Mosquitto ACL generated by `chargeapp mqtt-credentials` from the device registry.\n"
        "# Do not edit: re-run the command and reload Mosquitto (systemctl reload mosquitto).\n"
        "# Explicit user blocks only: no `pattern` lines, never %c.\n"
        "# Nothing before the first `user` line: anonymous clients get no topics.\n"
    )
    for a in accounts:
        label = f"{a.kind} {a.station}/{a.device}" if a.is_device else f"{a.kind} {a.station}".rstrip()
        out.write(f"\n# {label}\nuser {a.username}\n")
        for topic in a.write:
            out.write(f"topic write {topic}\n")
        for topic in a.read:
            out.write(f"topic read {topic}\n")
    return out.getvalue()


# --------------------------------------------------------------------------- files


def read_passwd(path: Path) -> dict[str, str]:
    """username -> hash of an existing password file (blank and comment lines ignored)."""
    if not path.exists():
        return {}
    entries: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if sep:
            entries[user] = hashed
    return entries


def read_secrets(path: Path) -> dict[str, str]:
    """username -> password of an existing secrets file."""
    if not path.exists():
        return {}
    with path.open(newline="", encoding="utf-8") as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f) if row.get("username")}


def _write_atomically(path: Path, text: str, mode: int, gid: int | None) -> None:
    """Write through a temporary file in the same directory and rename, so Mosquitto never reads half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        if gid is not None:
            os.chown(tmp, -1, gid)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _resolve_password(value: str, spec: str) -> str:
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise click.BadParameter(f"environment variable {name} is not set", param_hint=f"--password-for {spec.split('=')[0]}")
        value = os.environ[name]
    if not value:
        raise click.BadParameter("empty password", param_hint="--password-for")
    return value


def _parse_password_for(specs: tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        user, sep, value = spec.partition("=")
        if not sep or not user:
            raise click.BadParameter(f"{spec.split('=')[0]!r}: expected USER=PASSWORD or USER=env:VARIABLE",
                                     param_hint="--password-for")
        out.append((user, _resolve_password(value, spec)))
    return out


def _is_pattern(user: str) -> bool:
    return any(ch in user for ch in "*?[")


def _zigbee_gateway(session, spec: str) -> Account:
    user, sep, station = spec.partition("=")
    if not sep:
        return zigbee2mqtt_account(user)
    names = station_door_contacts(session, station)
    if names is None:
        raise click.BadParameter(f"no station {station!r}", param_hint="--zigbee2mqtt-user")
    try:
        return zigbee2mqtt_account(user, station, names)
    except t.BadMessage as e:
        raise click.ClickException(f"station {station}: a door contact's friendly name cannot be a topic ({e})") from None


def _vendor_login(session, spec: str) -> Account:
    user, sep, where = spec.partition("=")
    station, _, device = where.partition(",")
    if not sep or not station:
        raise click.BadParameter(f"{user!r}: expected USER=STATION or USER=STATION,DEVICE", param_hint="--vendor-user")
    from chargeapp.db import models as m

    if session.scalar(select(m.Station.id).where(m.Station.code == station)) is None:
        raise click.BadParameter(f"no station {station!r}", param_hint="--vendor-user")
    devices, _ = vendor_devices(session, station)
    if device:
        devices = [d for d in devices if d.device == device]
    if not devices:
        what = f"no Shelly Gen2 contact or people counter {device!r}" if device else "no Shelly Gen2 contacts or people counters"
        raise click.BadParameter(f"station {station} has {what} in the registry", param_hint="--vendor-user")
    return vendor_account(user, station, devices)


@dataclass
class Outcome:
    created: list[str]
    kept: list[str]
    rotated: list[str]
    given: list[str]
    removed: list[str]
    warnings: list[str]


def build_credentials(accounts: list[Account], old_hashes: dict[str, str], old_secrets: dict[str, str], *,
                      given: list[tuple[str, str]], rotate_all: bool, rotate: set[str]
                      ) -> tuple[dict[str, str], dict[str, str], Outcome]:
    """(username -> hash, username -> generated password, what happened) for the accounts, keeping what can be kept."""
    hashes: dict[str, str] = {}
    plain: dict[str, str] = {}
    outcome = Outcome([], [], [], [], [], [])
    for a in accounts:
        user = a.username
        supplied = next((pw for pattern, pw in given if pattern == user), None)
        if supplied is None and a.is_device:
            supplied = next((pw for pattern, pw in given if _is_pattern(pattern) and fnmatch.fnmatchcase(user, pattern)), None)
        old_hash, old_plain = old_hashes.get(user), old_secrets.get(user)
        if supplied is not None:
            # Keep the hash line when it already is this password, so the file does not churn.
            hashes[user] = old_hash if old_hash and verify_password(supplied, old_hash) else hash_password(supplied)
            outcome.given.append(user)
        elif rotate_all or user in rotate:
            plain[user] = new_password()
            hashes[user] = hash_password(plain[user])
            outcome.rotated.append(user)
        elif old_hash is not None:
            hashes[user] = old_hash
            if old_plain is not None:
                if verify_password(old_plain, old_hash) is False:
                    outcome.warnings.append(f"{user}: the secrets file's password does not match the password file; "
                                            "dropped from the secrets file (the password file wins)")
                else:
                    plain[user] = old_plain
            outcome.kept.append(user)
        elif old_plain is not None:
            plain[user] = old_plain
            hashes[user] = hash_password(old_plain)
            outcome.kept.append(user)
        else:
            plain[user] = new_password()
            hashes[user] = hash_password(plain[user])
            outcome.created.append(user)
    outcome.removed = sorted(set(old_hashes) - set(hashes))
    return hashes, plain, outcome


def render_passwd(accounts: list[Account], hashes: dict[str, str]) -> str:
    return "".join(f"{a.username}:{hashes[a.username]}\n" for a in accounts)


def render_secrets(accounts: list[Account], plain: dict[str, str]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(SECRETS_HEADER)
    for a in accounts:
        if a.username in plain:
            w.writerow((a.username, plain[a.username], a.kind, a.station, a.device))
    return out.getvalue()


# --------------------------------------------------------------------------- the command


@click.command("mqtt-credentials")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for the password file (passwd) and ACL file (acl), e.g. /etc/mosquitto/chargeapp.")
@click.option("--bridge-user", "bridge_users", multiple=True, default=("bridge",), show_default=True,
              help="Username of a bridge worker (repeat for several workers: one username each, since "
                   "use_username_as_clientid makes it the worker's session).")
@click.option("--monitor-user", "monitor_users", multiple=True,
              help="Username of a read-only operator login (reads every device topic, writes nothing).")
@click.option("--ocpp-gateway-user", "ocpp_gateway_users", multiple=True, metavar="USER",
              help="Username of the OCPP gateway (chargeapp ocpp-gateway): it may publish and read exactly what each "
                   "charger with OCPP credentials would. Re-run after `chargeapp ocpp-password` registers a charger.")
@click.option("--zigbee2mqtt-user", "zigbee_users", multiple=True, metavar="USER[=STATION]",
              help="Username of a zigbee2mqtt gateway. With =STATION it may publish exactly that station's door "
                   "contacts (registry friendly names); without, the whole zigbee2mqtt/# tree.")
@click.option("--vendor-user", "vendor_users", multiple=True, metavar="USER=STATION[,DEVICE]",
              help="Username of a station's Shelly Gen2 door contacts and people counters (or their gateway): it may "
                   "publish exactly their vendor topics. With ,DEVICE (a Shelly's topic prefix or a counter's topic) "
                   "only that device's.")
@click.option("--password-for", "password_for", multiple=True, metavar="USER=PASSWORD|USER=env:VAR",
              help="Use this password for USER instead of a generated one (not written to the secrets file). "
                   "USER may be a pattern such as '*' that matches device users (demos).")
@click.option("--rotate", "rotate_all", is_flag=True, help="New passwords for every user (except --password-for ones).")
@click.option("--rotate-user", "rotate_users", multiple=True, metavar="USER", help="A new password for this user.")
@click.option("--secrets", "secrets_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Where generated passwords go (mode 0600). Default: OUT/{SECRETS_FILE}.")
@click.option("--file-group", default=None, metavar="GROUP",
              help="Group (name or numeric id) that may read the password and ACL files (mode 0640), e.g. mosquitto.")
def mqtt_credentials_command(out_dir, bridge_users, monitor_users, ocpp_gateway_users, zigbee_users, vendor_users,
                             password_for, rotate_all, rotate_users, secrets_path, file_group):
    """Write Mosquitto's password and ACL files from the device registry, and the devices' passwords to a secrets file."""
    from chargeapp.db import db
    from chargeapp.services.registry import ocpp_chargers  # the chargers the gateway serves, as it reads them

    gid = None
    if file_group is not None and file_group.isdigit():
        gid = int(file_group)  # a numeric gid: the broker's group may not exist here (containers)
    elif file_group is not None:
        try:
            gid = grp.getgrnam(file_group).gr_gid
        except KeyError:
            raise click.BadParameter(f"no group {file_group!r}", param_hint="--file-group") from None

    devices, warnings = registry_accounts(db.session)
    vendor, vendor_warnings = vendor_devices(db.session)
    warnings += vendor_warnings
    vendor_topics = tuple(dict.fromkeys(topic for d in vendor for topic in d.topics))
    ocpp_codes = [(c.station, c.charger) for c in ocpp_chargers(db.session)] if ocpp_gateway_users else []
    if ocpp_gateway_users and not ocpp_codes:
        warnings.append("no charger has OCPP credentials (chargeapp ocpp-password): the OCPP gateway user may publish "
                        "nothing until one has and this command runs again")
    extra = ([bridge_account(u, vendor_topics) for u in dict.fromkeys(bridge_users)]
             + [monitor_account(u, vendor_topics) for u in dict.fromkeys(monitor_users)]
             + [ocpp_gateway_account(u, ocpp_codes) for u in dict.fromkeys(ocpp_gateway_users)]
             + [_zigbee_gateway(db.session, spec) for spec in dict.fromkeys(zigbee_users)]
             + [_vendor_login(db.session, spec) for spec in dict.fromkeys(vendor_users)])
    accounts = extra + devices
    seen: set[str] = set()
    for a in accounts:
        if not _USERNAME.fullmatch(a.username):
            raise click.BadParameter(f"{a.username!r}: letters, digits, '.', '_' and '-' only", param_hint=f"--{a.kind}-user")
        if a.username in seen:
            raise click.ClickException(f"username {a.username!r} is used twice (a bridge user named like a device?)")
        seen.add(a.username)
    given = _parse_password_for(password_for)
    for user, _ in given:
        if not _is_pattern(user) and user not in seen:
            raise click.BadParameter(f"no user {user!r} in the registry or --bridge-user", param_hint="--password-for")
    for user in rotate_users:
        if user not in seen:
            raise click.BadParameter(f"no user {user!r}", param_hint="--rotate-user")

    out_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    if gid is not None:
        # Mosquitto 2.0 opens these files after dropping root for its own user: the group must get through the directory.
        os.chown(out_dir, -1, gid)
        os.chmod(out_dir, stat.S_IMODE(out_dir.stat().st_mode) | 0o050)
    passwd_path, acl_path = out_dir / PASSWD_FILE, out_dir / ACL_FILE
    secrets_path = secrets_path or out_dir / SECRETS_FILE
    secrets_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    hashes, plain, outcome = build_credentials(
        accounts, read_passwd(passwd_path), read_secrets(secrets_path),
        given=given, rotate_all=rotate_all, rotate=set(rotate_users),
    )
    shared_mode = 0o640
    _write_atomically(passwd_path, render_passwd(accounts, hashes), shared_mode, gid)
    _write_atomically(acl_path, render_acl(accounts), shared_mode, gid)
    _write_atomically(secrets_path, render_secrets(accounts, plain), 0o600, None)

    for w in warnings + outcome.warnings:
        click.echo(f"warning: {w}", err=True)
    kinds = {k: sum(1 for a in accounts if a.kind == k)
             for k in ("charger", "door_sensor", "gate", "bridge", "monitor", "ocpp_gateway", "zigbee2mqtt", "vendor")}
    click.echo(f"users: {len(accounts)} ({', '.join(f'{n} {k}' for k, n in kinds.items() if n)})")
    click.echo(f"passwords: {len(outcome.created)} new, {len(outcome.kept)} kept, {len(outcome.rotated)} rotated, "
               f"{len(outcome.given)} given, {len(outcome.removed)} users removed"
               + (f" ({', '.join(outcome.removed)})" if outcome.removed else ""))
    click.echo(f"wrote {passwd_path} and {acl_path}; generated passwords in {secrets_path} (mode 0600)")
    click.echo("reload the broker to apply: systemctl reload mosquitto")
