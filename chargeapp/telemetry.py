"""Station telemetry wire contract (MQTT), version 1: topics, message types, parse and format.

The one place that knows topic strings and payload shapes (docs: spec/telemetry.md,
docs/asyncapi.yaml). Transport-agnostic and pure, in the manner of
mobilityhouse/ocpp: frozen message types, ``parse_message`` (bytes in, typed
message or ``BadMessage`` out) and ``format_message`` / ``format_command``
(message in, topic and bytes out). No paho, no clock: the receive time is passed in.

Decisions where the contract is open (all listed in docs/asyncapi.yaml too):

- Unknown extra payload fields are tolerated and ignored (firmware may add fields
  before the service knows them); their names are kept in ``unknown_fields`` so
  the bridge can log or count them. Duplicate keys in one object are bad_shape.
- An optional field sent as ``null`` is treated as absent; a required one is bad_shape.
- A zero-length payload on a retained topic is the MQTT way of clearing the
  retained value and parses to ``RetainedCleared``, not to a bad message.
- Gates publish ``online`` like every other device (the general rule says every
  device sets a last will on its online topic): ``stations/{s}/gates/{g}/online``.
- ``change_availability`` results may also be ``Scheduled`` (OCPP 1.6
  AvailabilityStatus), which a one-to-one OCPP gateway sends while a session runs.
- ``id_tag`` is an OCPP 1.6 IdToken: 1-20 characters. Required on ``start``,
  optional on ``stop`` (both as in OCPP 1.6). ``reason`` is optional on ``stop``;
  OCPP 1.6 reads a missing reason as ``Local``, and so does ``TransactionEvent.stop_reason``.
- A UTF-8 byte order mark before the JSON text is ignored (RFC 8259 8.1 allows it).
- zigbee2mqtt friendly names are one topic level (subscribe ``zigbee2mqtt/+``),
  so zigbee2mqtt's own ``bridge/...`` and ``{name}/set|get|availability`` topics
  are never taken for door sensors. Its payload is read here because the contract
  documents it; the bridge applies it through ``chargeapp.adapters.zigbee2mqtt``,
  one adapter among the vendor formats (Shelly Gen2, people counters) that are
  not the contract's and live in ``chargeapp.adapters``.
"""
from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, Callable, ClassVar, NamedTuple, Union

CONTRACT_VERSION = 1
QOS = 1
MAX_PAYLOAD_BYTES = 8 * 1024
DEFAULT_SKEW_TOLERANCE = timedelta(seconds=120)
EARLIEST_PLAUSIBLE_TS = datetime(2020, 1, 1, tzinfo=timezone.utc)
COMMAND_TIMEOUT = timedelta(seconds=30)
COMMAND_MAX_RETRIES = 3
KEEPALIVE_SECONDS = 30
MAX_INT = 2**63 - 1  # every integer fits a signed 64-bit database column
ID_TAG_MAX_LENGTH = 20  # OCPP 1.6 IdToken (CiString20Type)
PLATE_MAX_LENGTH = 32

STATION_ROOT = "stations"
ZIGBEE_ROOT = "zigbee2mqtt"

_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FRIENDLY_NAME = re.compile(r"[^/+#\x00-\x1f\x7f\ud800-\udfff]{1,128}")
_CONNECTOR_SEGMENT = re.compile(r"0|[1-9][0-9]{0,8}")
_SHARE_GROUP = re.compile(r"[^/+#\x00-\x1f\x7f\ud800-\udfff]{1,64}")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# --------------------------------------------------------------------------- OCPP 1.6 vocabularies

CHARGE_POINT_STATUSES = (
    "Available", "Preparing", "Charging", "SuspendedEV", "SuspendedEVSE",
    "Finishing", "Reserved", "Unavailable", "Faulted",
)
OCCUPIED_STATUSES = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"})
CHARGE_POINT_ERROR_CODES = (
    "ConnectorLockFailure", "EVCommunicationError", "GroundFailure", "HighTemperature",
    "InternalError", "LocalListConflict", "NoError", "OtherError", "OverCurrentFailure",
    "OverVoltage", "PowerMeterFailure", "PowerSwitchFailure", "ReaderFailure",
    "ResetFailure", "UnderVoltage", "WeakSignal",
)
STOP_REASONS = (
    "DeAuthorized", "EmergencyStop", "EVDisconnected", "HardReset", "Local", "Other",
    "PowerLoss", "Reboot", "Remote", "SoftReset", "UnlockCommand",
)
TRANSACTION_EVENTS = ("start", "stop")
PASSAGE_DIRECTIONS = ("in", "out")
AVAILABILITY_TYPES = ("Inoperative", "Operative")
RESERVATION_STATUSES = ("Accepted", "Faulted", "Occupied", "Rejected", "Unavailable")
COMMAND_NAMES = ("reserve_now", "cancel_reservation", "remote_start", "remote_stop", "change_availability")
COMMAND_RESULT_STATUSES: dict[str, tuple[str, ...]] = {
    "reserve_now": RESERVATION_STATUSES,
    "cancel_reservation": ("Accepted", "Rejected"),
    "remote_start": ("Accepted", "Rejected"),
    "remote_stop": ("Accepted", "Rejected"),
    "change_availability": ("Accepted", "Rejected", "Scheduled"),
}

# --------------------------------------------------------------------------- errors

REASONS = frozenset({
    "not_json", "not_object", "too_large", "bad_topic", "bad_shape", "bad_encoding",
    # decided by the bridge against the device registry, listed here so metrics share one vocabulary
    "unknown_device", "forbidden_topic",
    # a vendor payload on a mapped device's topic that its adapter does not recognise (chargeapp.adapters)
    "unknown_format",
})


class BadMessage(ValueError):
    """Input that breaks the contract; ``reason`` is one of REASONS, ``field`` names the offending payload field if any."""

    def __init__(self, reason: str, detail: str, *, field: str | None = None):
        if reason not in REASONS:
            raise ValueError(f"unknown BadMessage reason {reason!r}")
        self.reason = reason
        self.detail = detail
        self.field = field
        where = f" (field {field!r})" if field else ""
        super().__init__(f"{reason}: {detail}{where}")


def _shape(field_name: str | None, detail: str) -> BadMessage:
    return BadMessage("bad_shape", detail, field=field_name)


# --------------------------------------------------------------------------- topics


class TopicKind(StrEnum):
    STATUS = "status"
    TRANSACTION = "transaction"
    METER = "meter"
    CHARGER_ONLINE = "charger_online"
    COMMAND = "command"
    COMMAND_RESULT = "command_result"
    DOOR_COUNT = "door_count"
    DOOR_ONLINE = "door_online"
    GATE_PASSAGE = "gate_passage"
    GATE_ONLINE = "gate_online"
    ZIGBEE = "zigbee"


class DeviceKind(StrEnum):
    CHARGER = "charger"
    DOOR_SENSOR = "door_sensor"
    GATE = "gate"
    ZIGBEE = "zigbee"


# The address template of every channel, as in docs/asyncapi.yaml.
CHANNELS: dict[TopicKind, str] = {
    TopicKind.STATUS: "stations/{station}/chargers/{charger}/status/{connector}",
    TopicKind.TRANSACTION: "stations/{station}/chargers/{charger}/transaction",
    TopicKind.METER: "stations/{station}/chargers/{charger}/meter",
    TopicKind.CHARGER_ONLINE: "stations/{station}/chargers/{charger}/online",
    TopicKind.COMMAND: "stations/{station}/chargers/{charger}/commands/{command}",
    TopicKind.COMMAND_RESULT: "stations/{station}/chargers/{charger}/command_results",
    TopicKind.DOOR_COUNT: "stations/{station}/doors/{sensor}/count",
    TopicKind.DOOR_ONLINE: "stations/{station}/doors/{sensor}/online",
    TopicKind.GATE_PASSAGE: "stations/{station}/gates/{gate}/passage",
    TopicKind.GATE_ONLINE: "stations/{station}/gates/{gate}/online",
    TopicKind.ZIGBEE: "zigbee2mqtt/{friendly_name}",
}
RETAINED_KINDS = frozenset({TopicKind.STATUS, TopicKind.CHARGER_ONLINE, TopicKind.DOOR_ONLINE, TopicKind.GATE_ONLINE})
ONLINE_KINDS = {
    DeviceKind.CHARGER: TopicKind.CHARGER_ONLINE,
    DeviceKind.DOOR_SENSOR: TopicKind.DOOR_ONLINE,
    DeviceKind.GATE: TopicKind.GATE_ONLINE,
}
_DEVICE_KIND_OF = {
    TopicKind.STATUS: DeviceKind.CHARGER,
    TopicKind.TRANSACTION: DeviceKind.CHARGER,
    TopicKind.METER: DeviceKind.CHARGER,
    TopicKind.CHARGER_ONLINE: DeviceKind.CHARGER,
    TopicKind.COMMAND: DeviceKind.CHARGER,
    TopicKind.COMMAND_RESULT: DeviceKind.CHARGER,
    TopicKind.DOOR_COUNT: DeviceKind.DOOR_SENSOR,
    TopicKind.DOOR_ONLINE: DeviceKind.DOOR_SENSOR,
    TopicKind.GATE_PASSAGE: DeviceKind.GATE,
    TopicKind.GATE_ONLINE: DeviceKind.GATE,
    TopicKind.ZIGBEE: DeviceKind.ZIGBEE,
}
# (device collection segment, leaf segment) -> kind, for topics under stations/{station}/
_LEAVES = {
    ("chargers", "transaction"): TopicKind.TRANSACTION,
    ("chargers", "meter"): TopicKind.METER,
    ("chargers", "online"): TopicKind.CHARGER_ONLINE,
    ("chargers", "command_results"): TopicKind.COMMAND_RESULT,
    ("doors", "count"): TopicKind.DOOR_COUNT,
    ("doors", "online"): TopicKind.DOOR_ONLINE,
    ("gates", "passage"): TopicKind.GATE_PASSAGE,
    ("gates", "online"): TopicKind.GATE_ONLINE,
}
_COLLECTION = {DeviceKind.CHARGER: "chargers", DeviceKind.DOOR_SENSOR: "doors", DeviceKind.GATE: "gates"}


class DeviceRef(NamedTuple):
    """A device's identity: (device_kind, station, device_id); station is None for zigbee2mqtt devices."""

    kind: DeviceKind
    station: str | None
    device_id: str


def is_valid_id(value: object) -> bool:
    """True for a registry id (station, charger, sensor, gate, request_id): 1-64 of [A-Za-z0-9_-]."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _check_id(what: str, value: object) -> str:
    if not is_valid_id(value):
        raise BadMessage("bad_topic", f"{what} is not a registry id [A-Za-z0-9_-]{{1,64}}: {str(value)[:70]!r}")
    return value  # type: ignore[return-value]


def _check_connector(value: object) -> int:
    if type(value) is not int or not 0 <= value <= 999_999_999:
        raise BadMessage("bad_topic", f"connector must be an integer 0..999999999: {value!r}")
    return value


def _check_friendly_name(value: object) -> str:
    if not isinstance(value, str) or _FRIENDLY_NAME.fullmatch(value) is None:
        raise BadMessage("bad_topic", "zigbee2mqtt friendly name must be one topic level of 1-128 characters")
    return value


@dataclass(frozen=True)
class TopicRef:
    """A parsed topic: kind, station (None for zigbee2mqtt), device id, and connector or command name where the topic has one."""

    kind: TopicKind
    station: str | None
    device_id: str
    connector: int | None = None
    command: str | None = None

    @property
    def device_kind(self) -> DeviceKind:
        """The kind of device that owns (publishes, or for commands receives) this topic."""
        return _DEVICE_KIND_OF[self.kind]

    @property
    def device(self) -> DeviceRef:
        """The owning device's identity, for registry and ACL checks."""
        return DeviceRef(self.device_kind, self.station, self.device_id)

    @property
    def retained(self) -> bool:
        """Whether messages on this topic are published retained."""
        return self.kind in RETAINED_KINDS

    @property
    def topic(self) -> str:
        """The topic string (validates the parts)."""
        if self.kind is TopicKind.ZIGBEE:
            return f"{ZIGBEE_ROOT}/{_check_friendly_name(self.device_id)}"
        station = _check_id("station", self.station)
        device = _check_id("device id", self.device_id)
        if self.kind is TopicKind.STATUS:
            return f"{STATION_ROOT}/{station}/chargers/{device}/status/{_check_connector(self.connector)}"
        if self.kind is TopicKind.COMMAND:
            if self.command not in COMMAND_NAMES:
                raise BadMessage("bad_topic", f"unknown command {str(self.command)[:40]!r}")
            return f"{STATION_ROOT}/{station}/chargers/{device}/commands/{self.command}"
        collection, leaf = next(k for k, v in _LEAVES.items() if v is self.kind)
        return f"{STATION_ROOT}/{station}/{collection}/{device}/{leaf}"


def status_topic(station: str, charger: str, connector: int) -> str:
    """Retained status topic of one connector (connector 0 = the charger as a whole, as in OCPP 1.6)."""
    return TopicRef(TopicKind.STATUS, station, charger, connector=connector).topic


def transaction_topic(station: str, charger: str) -> str:
    """Topic of a charger's transaction start/stop events."""
    return TopicRef(TopicKind.TRANSACTION, station, charger).topic


def meter_topic(station: str, charger: str) -> str:
    """Topic of a charger's meter samples."""
    return TopicRef(TopicKind.METER, station, charger).topic


def charger_online_topic(station: str, charger: str) -> str:
    """Retained online topic (and last-will topic) of a charger."""
    return TopicRef(TopicKind.CHARGER_ONLINE, station, charger).topic


def command_topic(station: str, charger: str, command: str) -> str:
    """Topic the bridge publishes one command to; command is one of COMMAND_NAMES."""
    return TopicRef(TopicKind.COMMAND, station, charger, command=command).topic


def command_results_topic(station: str, charger: str) -> str:
    """Topic a charger answers every command on."""
    return TopicRef(TopicKind.COMMAND_RESULT, station, charger).topic


def door_count_topic(station: str, sensor: str) -> str:
    """Topic of a door counter's cumulative totals."""
    return TopicRef(TopicKind.DOOR_COUNT, station, sensor).topic


def door_online_topic(station: str, sensor: str) -> str:
    """Retained online topic (and last-will topic) of a door counter."""
    return TopicRef(TopicKind.DOOR_ONLINE, station, sensor).topic


def gate_passage_topic(station: str, gate: str) -> str:
    """Topic of a garage gate's plate reads."""
    return TopicRef(TopicKind.GATE_PASSAGE, station, gate).topic


def gate_online_topic(station: str, gate: str) -> str:
    """Retained online topic (and last-will topic) of a garage gate."""
    return TopicRef(TopicKind.GATE_ONLINE, station, gate).topic


def zigbee_topic(friendly_name: str) -> str:
    """zigbee2mqtt state topic of one contact sensor (friendly name: one topic level)."""
    return TopicRef(TopicKind.ZIGBEE, None, friendly_name).topic


def online_topic(device_kind: DeviceKind | str, station: str, device_id: str) -> str:
    """Retained online topic of any station device (charger, door_sensor or gate)."""
    try:
        kind = ONLINE_KINDS[DeviceKind(device_kind)]
    except (ValueError, KeyError):
        raise BadMessage("bad_topic", f"no online topic for device kind {device_kind!r}") from None
    return TopicRef(kind, station, device_id).topic


def parse_topic(topic: str) -> TopicRef:
    """The TopicRef of a contract topic; raises BadMessage("bad_topic") for anything else (wildcards, extra levels, bad ids, unknown command)."""
    if not isinstance(topic, str):
        raise BadMessage("bad_topic", "topic must be a string")
    parts = topic.split("/")
    if parts[0] == ZIGBEE_ROOT and len(parts) == 2:
        return TopicRef(TopicKind.ZIGBEE, None, _check_friendly_name(parts[1]))
    if parts[0] != STATION_ROOT or len(parts) not in (5, 6):
        raise BadMessage("bad_topic", f"not a contract topic: {topic[:200]!r}")
    _, station, collection, device, leaf, *rest = parts
    _check_id("station", station)
    _check_id("device id", device)
    if len(parts) == 6:
        sub = rest[0]
        if collection == "chargers" and leaf == "status":
            if _CONNECTOR_SEGMENT.fullmatch(sub) is None:
                raise BadMessage("bad_topic", f"connector segment must be a plain integer: {sub[:20]!r}")
            return TopicRef(TopicKind.STATUS, station, device, connector=int(sub))
        if collection == "chargers" and leaf == "commands":
            if sub not in COMMAND_NAMES:
                raise BadMessage("bad_topic", f"unknown command {sub[:40]!r}")
            return TopicRef(TopicKind.COMMAND, station, device, command=sub)
        raise BadMessage("bad_topic", f"not a contract topic: {topic[:200]!r}")
    kind = _LEAVES.get((collection, leaf))
    if kind is None:
        raise BadMessage("bad_topic", f"not a contract topic: {topic[:200]!r}")
    return TopicRef(kind, station, device)


# --------------------------------------------------------------------------- subscriptions

# What the bridge reads: every device topic, never the command topics it writes.
BRIDGE_SUBSCRIPTIONS: tuple[str, ...] = (
    "stations/+/chargers/+/status/+",
    "stations/+/chargers/+/transaction",
    "stations/+/chargers/+/meter",
    "stations/+/chargers/+/online",
    "stations/+/chargers/+/command_results",
    "stations/+/doors/+/count",
    "stations/+/doors/+/online",
    "stations/+/gates/+/passage",
    "stations/+/gates/+/online",
    "zigbee2mqtt/+",
)


def bridge_subscriptions(station: str | None = None) -> tuple[str, ...]:
    """Topic filters the bridge subscribes to: all stations, or one station's (zigbee2mqtt filters are not per station and always included)."""
    if station is None:
        return BRIDGE_SUBSCRIPTIONS
    _check_id("station", station)
    return tuple(
        p.replace("stations/+/", f"stations/{station}/", 1) if p.startswith("stations/") else p
        for p in BRIDGE_SUBSCRIPTIONS
    )


def shared_subscription(topic_filter: str, group: str) -> str:
    """The MQTT 5 shared-subscription form ``$share/{group}/{filter}``, so several bridge workers split one filter's messages."""
    if _SHARE_GROUP.fullmatch(group) is None:
        raise ValueError(f"share group must be one topic level without wildcards: {group!r}")
    return f"$share/{group}/{topic_filter}"


def shared_subscriptions(group: str, station: str | None = None) -> tuple[str, ...]:
    """``bridge_subscriptions(station)``, each in its ``$share/{group}/`` form."""
    return tuple(shared_subscription(p, group) for p in bridge_subscriptions(station))


def command_subscription(station: str, charger: str) -> str:
    """The filter a charger (or its simulator) subscribes to for its own commands."""
    return f"{STATION_ROOT}/{_check_id('station', station)}/chargers/{_check_id('charger', charger)}/commands/+"


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching (``+`` one level, ``#`` the rest; a ``$share/{group}/`` prefix is ignored)."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2] if topic_filter.count("/") >= 2 else ""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    if topic.startswith("$") and f_parts[0] in ("+", "#"):
        return False
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts) or (f != "+" and f != t_parts[i]):
            return False
    return len(f_parts) == len(t_parts)


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, kw_only=True)
class DeviceMessage:
    """Common part of every message a station device publishes with ts/boot/seq.

    ``device_ts`` is the device's clock as sent; ``effective_ts`` is what the rules
    use: ``device_ts``, or ``received_at`` when the ts was ``skewed``.
    """

    device_kind: ClassVar[DeviceKind]
    topic_kind: ClassVar[TopicKind]

    station: str
    device_id: str
    device_ts: datetime
    boot: int
    seq: int
    received_at: datetime | None = None
    skewed: bool = False
    unknown_fields: tuple[str, ...] = field(default=(), compare=False)

    @property
    def effective_ts(self) -> datetime:
        """The time the rules use: device_ts, or received_at when device_ts was skewed (aware, offset as received)."""
        return self.received_at if self.skewed and self.received_at is not None else self.device_ts

    @property
    def device(self) -> DeviceRef:
        """(device_kind, station, device_id) of the publisher."""
        return DeviceRef(self.device_kind, self.station, self.device_id)

    @property
    def message_key(self) -> tuple[DeviceKind, str, str, int, int]:
        """(device_kind, station, device_id, boot, seq): the identity a redelivery repeats."""
        return (self.device_kind, self.station, self.device_id, self.boot, self.seq)

    @property
    def topic_ref(self) -> TopicRef:
        """The parsed form of the topic this message is published on."""
        return TopicRef(self.topic_kind, self.station, self.device_id)

    @property
    def topic(self) -> str:
        """The topic this message is published on."""
        return self.topic_ref.topic

    def _header(self) -> dict[str, Any]:
        return {"ts": format_ts(self.device_ts), "boot": self.boot, "seq": self.seq}


@dataclass(frozen=True, kw_only=True)
class StatusMessage(DeviceMessage):
    """One connector's OCPP 1.6 status (retained, one topic per connector)."""

    device_kind = DeviceKind.CHARGER
    topic_kind = TopicKind.STATUS

    connector: int
    status: str
    error_code: str = "NoError"

    @property
    def occupied(self) -> bool:
        """A bay counts as occupied in Preparing, Charging, SuspendedEV, SuspendedEVSE and Finishing."""
        return self.status in OCCUPIED_STATUSES

    @property
    def topic_ref(self) -> TopicRef:
        """The parsed form of the topic this message is published on."""
        return TopicRef(self.topic_kind, self.station, self.device_id, connector=self.connector)

    def _wire(self) -> dict[str, Any]:
        return {"connector": self.connector, "status": self.status, "error_code": self.error_code, **self._header()}


@dataclass(frozen=True, kw_only=True)
class TransactionEvent(DeviceMessage):
    """A transaction start or stop; meter_wh is the register in Wh (meterStart/meterStop)."""

    device_kind = DeviceKind.CHARGER
    topic_kind = TopicKind.TRANSACTION

    event: str
    connector: int
    transaction_id: int
    meter_wh: int
    id_tag: str | None = None
    reservation_id: int | None = None
    reason: str | None = None

    @property
    def natural_key(self) -> tuple[str, str, int, str]:
        """(station, charger, transaction_id, event): idempotency key independent of boot/seq."""
        return (self.station, self.device_id, self.transaction_id, self.event)

    @property
    def stop_reason(self) -> str | None:
        """The stop's OCPP reason, ``Local`` when the charger sent none (OCPP 1.6 default); None for a start."""
        if self.event != "stop":
            return None
        return self.reason or "Local"

    def _wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.event, "connector": self.connector, "transaction_id": self.transaction_id}
        if self.id_tag is not None:
            out["id_tag"] = self.id_tag
        if self.event == "start" and self.reservation_id is not None:
            out["reservation_id"] = self.reservation_id
        out["meter_wh"] = self.meter_wh
        if self.event == "stop" and self.reason is not None:
            out["reason"] = self.reason
        return {**out, **self._header()}


@dataclass(frozen=True, kw_only=True)
class MeterSample(DeviceMessage):
    """A meter sample of a running transaction: energy_wh cumulative import register (Wh), power_w (W), soc (%, optional)."""

    device_kind = DeviceKind.CHARGER
    topic_kind = TopicKind.METER

    connector: int
    transaction_id: int
    energy_wh: int
    power_w: int | float
    soc: int | float | None = None

    def _wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "connector": self.connector, "transaction_id": self.transaction_id,
            "energy_wh": self.energy_wh, "power_w": self.power_w,
        }
        if self.soc is not None:
            out["soc"] = self.soc
        return {**out, **self._header()}


@dataclass(frozen=True, kw_only=True)
class CommandResult(DeviceMessage):
    """A charger's OCPP 1.6 answer to one command, matched by request_id."""

    device_kind = DeviceKind.CHARGER
    topic_kind = TopicKind.COMMAND_RESULT

    request_id: str
    command: str
    status: str

    @property
    def accepted(self) -> bool:
        """True only for Accepted (Scheduled, Occupied, etc. are not)."""
        return self.status == "Accepted"

    def _wire(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "command": self.command, "status": self.status, **self._header()}


@dataclass(frozen=True, kw_only=True)
class DoorCount(DeviceMessage):
    """A door counter's cumulative totals (people) since its last reboot ``boot``."""

    device_kind = DeviceKind.DOOR_SENSOR
    topic_kind = TopicKind.DOOR_COUNT

    in_total: int
    out_total: int

    def _wire(self) -> dict[str, Any]:
        return {"in_total": self.in_total, "out_total": self.out_total, **self._header()}


@dataclass(frozen=True, kw_only=True)
class GatePassage(DeviceMessage):
    """A plate read at a garage gate, direction in or out; the plate is kept exactly as read (personal data)."""

    device_kind = DeviceKind.GATE
    topic_kind = TopicKind.GATE_PASSAGE

    plate: str
    direction: str

    def __repr__(self) -> str:
        # Plates are personal data: keep them out of logs that print messages.
        return (f"GatePassage(station={self.station!r}, device_id={self.device_id!r}, plate=<redacted>, "
                f"direction={self.direction!r}, boot={self.boot}, seq={self.seq})")

    def _wire(self) -> dict[str, Any]:
        return {"plate": self.plate, "direction": self.direction, **self._header()}


@dataclass(frozen=True, kw_only=True)
class OnlineMessage:
    """A device's retained online state: ``true`` on connect, ``false`` as its last will; no ts, so effective_ts is the receive time."""

    device_kind: DeviceKind
    station: str
    device_id: str
    online: bool
    received_at: datetime | None = None

    @property
    def device(self) -> DeviceRef:
        """The device's identity (device_kind, station, device_id)."""
        return DeviceRef(DeviceKind(self.device_kind), self.station, self.device_id)

    @property
    def effective_ts(self) -> datetime | None:
        """The time the rules use: the receive time (this message carries no device ts)."""
        return self.received_at

    @property
    def device_ts(self) -> None:
        """Always None: this message carries no device clock."""
        return None

    @property
    def skewed(self) -> bool:
        """Always False: there is no device ts to distrust."""
        return False

    @property
    def topic_ref(self) -> TopicRef:
        """The parsed form of the topic this message is published on."""
        return TopicRef(ONLINE_KINDS[DeviceKind(self.device_kind)], self.station, self.device_id)

    @property
    def topic(self) -> str:
        """The topic this message is published on."""
        return online_topic(self.device_kind, self.station, self.device_id)

    def _wire(self) -> bool:
        return self.online


@dataclass(frozen=True, kw_only=True)
class ZigbeeContact:
    """A zigbee2mqtt door contact state: contact True means CLOSED; no ts/boot/seq, so effective_ts is the receive time."""

    friendly_name: str
    contact: bool
    battery: int | float | None = None
    linkquality: int | None = None
    received_at: datetime | None = None
    unknown_fields: tuple[str, ...] = field(default=(), compare=False)

    @property
    def door_open(self) -> bool:
        """True when the door is open (zigbee2mqtt contact false)."""
        return not self.contact

    @property
    def device(self) -> DeviceRef:
        """The device's identity (device_kind, station, device_id)."""
        return DeviceRef(DeviceKind.ZIGBEE, None, self.friendly_name)

    @property
    def effective_ts(self) -> datetime | None:
        """The time the rules use: the receive time (this message carries no device ts)."""
        return self.received_at

    @property
    def device_ts(self) -> None:
        """Always None: this message carries no device clock."""
        return None

    @property
    def skewed(self) -> bool:
        """Always False: there is no device ts to distrust."""
        return False

    @property
    def topic_ref(self) -> TopicRef:
        """The parsed form of the topic this message is published on."""
        return TopicRef(TopicKind.ZIGBEE, None, self.friendly_name)

    @property
    def topic(self) -> str:
        """The topic this message is published on."""
        return zigbee_topic(self.friendly_name)

    def _wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"contact": self.contact}
        if self.battery is not None:
            out["battery"] = self.battery
        if self.linkquality is not None:
            out["linkquality"] = self.linkquality
        return out


@dataclass(frozen=True)
class RetainedCleared:
    """A zero-length payload on a retained topic: the retained value was deleted (e.g. a device decommissioned)."""

    topic_ref: TopicRef
    received_at: datetime

    @property
    def device(self) -> DeviceRef:
        """The device's identity (device_kind, station, device_id)."""
        return self.topic_ref.device


# --------------------------------------------------------------------------- commands


def new_request_id() -> str:
    """A fresh request id (32 hex characters); a seam tests may replace. Retries reuse the stored one."""
    return uuid.uuid4().hex


@dataclass(frozen=True, kw_only=True)
class Command:
    """A command the bridge sends to one charger; request_id is kept across retries and echoed in the result."""

    name: ClassVar[str]

    station: str
    charger: str
    request_id: str
    received_at: datetime | None = None
    unknown_fields: tuple[str, ...] = field(default=(), compare=False)

    @property
    def topic_ref(self) -> TopicRef:
        """The parsed form of the topic this message is published on."""
        return TopicRef(TopicKind.COMMAND, self.station, self.charger, command=self.name)

    @property
    def topic(self) -> str:
        """The topic this message is published on."""
        return self.topic_ref.topic


@dataclass(frozen=True, kw_only=True)
class ReserveNow(Command):
    """OCPP 1.6 ReserveNow: hold ``connector`` for ``id_tag`` until ``expiry`` (aware datetime)."""

    name = "reserve_now"

    reservation_id: int
    connector: int
    id_tag: str
    expiry: datetime
    parent_id_tag: str | None = None

    def _wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"reservation_id": self.reservation_id, "connector": self.connector, "id_tag": self.id_tag}
        if self.parent_id_tag is not None:
            out["parent_id_tag"] = self.parent_id_tag
        return {**out, "expiry": format_ts(self.expiry), "request_id": self.request_id}


@dataclass(frozen=True, kw_only=True)
class CancelReservation(Command):
    """OCPP 1.6 CancelReservation of ``reservation_id``."""

    name = "cancel_reservation"

    reservation_id: int

    def _wire(self) -> dict[str, Any]:
        return {"reservation_id": self.reservation_id, "request_id": self.request_id}


@dataclass(frozen=True, kw_only=True)
class RemoteStart(Command):
    """OCPP 1.6 RemoteStartTransaction on ``connector`` for ``id_tag``."""

    name = "remote_start"

    connector: int
    id_tag: str

    def _wire(self) -> dict[str, Any]:
        return {"connector": self.connector, "id_tag": self.id_tag, "request_id": self.request_id}


@dataclass(frozen=True, kw_only=True)
class RemoteStop(Command):
    """OCPP 1.6 RemoteStopTransaction of ``transaction_id``."""

    name = "remote_stop"

    transaction_id: int

    def _wire(self) -> dict[str, Any]:
        return {"transaction_id": self.transaction_id, "request_id": self.request_id}


@dataclass(frozen=True, kw_only=True)
class ChangeAvailability(Command):
    """OCPP 1.6 ChangeAvailability: ``type`` Inoperative or Operative; connector 0 = the whole charger."""

    name = "change_availability"

    connector: int
    type: str

    def _wire(self) -> dict[str, Any]:
        return {"connector": self.connector, "type": self.type, "request_id": self.request_id}


COMMAND_TYPES: dict[str, type[Command]] = {
    c.name: c for c in (ReserveNow, CancelReservation, RemoteStart, RemoteStop, ChangeAvailability)
}

Message = Union[
    StatusMessage, TransactionEvent, MeterSample, CommandResult, DoorCount, GatePassage,
    OnlineMessage, ZigbeeContact, RetainedCleared,
    ReserveNow, CancelReservation, RemoteStart, RemoteStop, ChangeAvailability,
]

# --------------------------------------------------------------------------- field checks

Check = Callable[[str, Any], Any]


def _int(minimum: int = 0, maximum: int = MAX_INT) -> Check:
    def check(name: str, value: Any) -> int:
        if type(value) is not int:
            raise _shape(name, f"must be an integer, got {type(value).__name__}")
        if not minimum <= value <= maximum:
            raise _shape(name, f"must be between {minimum} and {maximum}")
        return value
    return check


def _number(minimum: float = 0, maximum: float = float(MAX_INT)) -> Check:
    def check(name: str, value: Any) -> int | float:
        if type(value) not in (int, float):
            raise _shape(name, f"must be a number, got {type(value).__name__}")
        if (type(value) is float and not math.isfinite(value)) or not minimum <= value <= maximum:
            raise _shape(name, f"must be a finite number between {minimum:g} and {maximum:g}")
        return value
    return check


def _bool(name: str, value: Any) -> bool:
    if type(value) is not bool:
        raise _shape(name, f"must be true or false, got {type(value).__name__}")
    return value


def _enum(values: tuple[str, ...]) -> Check:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in values:
            shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
            raise _shape(name, f"must be one of {', '.join(values)}; got {shown}")
        return value
    return check


def _id(name: str, value: Any) -> str:
    if not is_valid_id(value):
        raise _shape(name, "must be 1-64 characters of [A-Za-z0-9_-]")
    return value


def _text(max_length: int) -> Check:
    # Values of text fields (id tags, plates) are personal: never echoed in errors.
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise _shape(name, f"must be a string, got {type(value).__name__}")
        if not 1 <= len(value) <= max_length:
            raise _shape(name, f"must be 1-{max_length} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadMessage("bad_encoding", "contains an unpaired surrogate escape", field=name) from None
        if _CONTROL.search(value):
            raise _shape(name, "must not contain control characters")
        return value
    return check


def parse_ts(value: str) -> datetime:
    """An aware datetime from an RFC 3339 timestamp with offset (Z or +hh:mm; fraction truncated to microseconds); raises BadMessage bad_shape."""
    if not isinstance(value, str):
        raise _shape("ts", "must be an RFC 3339 string")
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise _shape("ts", "must be RFC 3339 with an offset, e.g. 2026-11-22T14:30:05+08:00")
    year, month, day, hour, minute, second, frac, zulu, sign, off_h, off_m = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    if zulu:
        tz = timezone.utc
    else:
        if int(off_h) > 23 or int(off_m) > 59:
            raise _shape("ts", "offset out of range")
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        tz = timezone(-offset if sign == "-" else offset) if offset else timezone.utc
    try:
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=tz)
    except ValueError:
        raise _shape("ts", "not a real date and time") from None


def _ts(name: str, value: Any) -> datetime:
    try:
        return parse_ts(value)
    except BadMessage as e:
        raise _shape(name, e.detail) from None


def format_ts(at: datetime) -> str:
    """RFC 3339 text of an aware datetime, keeping its offset (seconds-precision offsets are given in UTC); naive raises ValueError."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("timestamps on the wire need a timezone-aware datetime")
    offset = at.utcoffset()
    if offset is not None and offset.total_seconds() % 60:
        at = at.astimezone(timezone.utc)
    return at.isoformat()


class _Fields:
    """A payload object being read: remembers which keys the contract used."""

    def __init__(self, obj: dict[str, Any]):
        self.obj = obj
        self.used: set[str] = set()

    def required(self, key: str, check: Check) -> Any:
        self.used.add(key)
        if key not in self.obj or self.obj[key] is None:
            raise _shape(key, "is required")
        return check(key, self.obj[key])

    def optional(self, key: str, check: Check) -> Any:
        self.used.add(key)
        value = self.obj.get(key)
        return None if value is None else check(key, value)

    def unknown(self) -> tuple[str, ...]:
        return tuple(sorted(k for k in self.obj if k not in self.used))


# --------------------------------------------------------------------------- payload readers


def _header(ref: TopicRef, f: _Fields) -> dict[str, Any]:
    return {
        "station": ref.station, "device_id": ref.device_id,
        "device_ts": f.required("ts", _ts), "boot": f.required("boot", _int(0)), "seq": f.required("seq", _int(1)),
    }


def _read_status(ref: TopicRef, f: _Fields) -> StatusMessage:
    connector = f.required("connector", _int(0))
    if connector != ref.connector:
        raise _shape("connector", "differs from the connector in the topic")
    return StatusMessage(
        **_header(ref, f), connector=connector,
        status=f.required("status", _enum(CHARGE_POINT_STATUSES)),
        error_code=f.optional("error_code", _enum(CHARGE_POINT_ERROR_CODES)) or "NoError",
    )


def _read_transaction(ref: TopicRef, f: _Fields) -> TransactionEvent:
    event = f.required("event", _enum(TRANSACTION_EVENTS))
    start = event == "start"
    return TransactionEvent(
        **_header(ref, f), event=event,
        connector=f.required("connector", _int(1)),
        transaction_id=f.required("transaction_id", _int(0)),
        meter_wh=f.required("meter_wh", _int(0)),
        id_tag=(f.required if start else f.optional)("id_tag", _text(ID_TAG_MAX_LENGTH)),
        reservation_id=f.optional("reservation_id", _int(0)) if start else None,
        reason=None if start else f.optional("reason", _enum(STOP_REASONS)),
    )


def _read_meter(ref: TopicRef, f: _Fields) -> MeterSample:
    return MeterSample(
        **_header(ref, f),
        connector=f.required("connector", _int(1)),
        transaction_id=f.required("transaction_id", _int(0)),
        energy_wh=f.required("energy_wh", _int(0)),
        power_w=f.required("power_w", _number(0)),
        soc=f.optional("soc", _number(0, 100)),
    )


def _read_command_result(ref: TopicRef, f: _Fields) -> CommandResult:
    command = f.required("command", _enum(COMMAND_NAMES))
    return CommandResult(
        **_header(ref, f), request_id=f.required("request_id", _id), command=command,
        status=f.required("status", _enum(COMMAND_RESULT_STATUSES[command])),
    )


def _read_door_count(ref: TopicRef, f: _Fields) -> DoorCount:
    return DoorCount(**_header(ref, f), in_total=f.required("in_total", _int(0)), out_total=f.required("out_total", _int(0)))


def _read_gate_passage(ref: TopicRef, f: _Fields) -> GatePassage:
    return GatePassage(
        **_header(ref, f), plate=f.required("plate", _text(PLATE_MAX_LENGTH)),
        direction=f.required("direction", _enum(PASSAGE_DIRECTIONS)),
    )


def _read_zigbee(ref: TopicRef, f: _Fields) -> ZigbeeContact:
    return ZigbeeContact(
        friendly_name=ref.device_id, contact=f.required("contact", _bool),
        battery=f.optional("battery", _number(0, 100)), linkquality=f.optional("linkquality", _int(0, 255)),
    )


def _read_command(ref: TopicRef, f: _Fields) -> Command:
    common = {"station": ref.station, "charger": ref.device_id, "request_id": f.required("request_id", _id)}
    name = ref.command
    if name == "reserve_now":
        return ReserveNow(
            **common, reservation_id=f.required("reservation_id", _int(0)), connector=f.required("connector", _int(0)),
            id_tag=f.required("id_tag", _text(ID_TAG_MAX_LENGTH)), expiry=f.required("expiry", _ts),
            parent_id_tag=f.optional("parent_id_tag", _text(ID_TAG_MAX_LENGTH)),
        )
    if name == "cancel_reservation":
        return CancelReservation(**common, reservation_id=f.required("reservation_id", _int(0)))
    if name == "remote_start":
        return RemoteStart(**common, connector=f.required("connector", _int(1)), id_tag=f.required("id_tag", _text(ID_TAG_MAX_LENGTH)))
    if name == "remote_stop":
        return RemoteStop(**common, transaction_id=f.required("transaction_id", _int(0)))
    return ChangeAvailability(**common, connector=f.required("connector", _int(0)), type=f.required("type", _enum(AVAILABILITY_TYPES)))


_READERS: dict[TopicKind, Callable[[TopicRef, _Fields], Any]] = {
    TopicKind.STATUS: _read_status,
    TopicKind.TRANSACTION: _read_transaction,
    TopicKind.METER: _read_meter,
    TopicKind.COMMAND_RESULT: _read_command_result,
    TopicKind.DOOR_COUNT: _read_door_count,
    TopicKind.GATE_PASSAGE: _read_gate_passage,
    TopicKind.ZIGBEE: _read_zigbee,
    TopicKind.COMMAND: _read_command,
}
_ONLINE_TOPIC_KINDS = {v: k for k, v in ONLINE_KINDS.items()}


def _read_online(ref: TopicRef, value: Any) -> OnlineMessage:
    if type(value) is not bool:
        raise _shape(None, "an online payload is the JSON literal true or false")
    return OnlineMessage(device_kind=ref.device_kind, station=ref.station, device_id=ref.device_id, online=value)


# --------------------------------------------------------------------------- parse


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _shape(key[:64], "appears twice in one object")
        obj[key] = value
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _decode(payload: bytes | bytearray | memoryview) -> str:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError("payload must be bytes")
    raw = bytes(payload)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise BadMessage("too_large", f"{len(raw)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadMessage("bad_encoding", f"not UTF-8 (byte {e.start})") from None
    return text[1:] if text.startswith("\ufeff") else text


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
    except BadMessage:
        raise
    except (ValueError, RecursionError) as e:
        raise BadMessage("not_json", str(e)[:120]) from None


def is_skewed(
    device_ts: datetime,
    received_at: datetime,
    *,
    skew_tolerance: timedelta = DEFAULT_SKEW_TOLERANCE,
    previous_ts: datetime | None = None,
) -> bool:
    """True when a device ts is impossible: over the tolerance after received_at, before 2020-01-01 UTC, or before previous_ts; late (old) ts are normal."""
    return (
        device_ts > received_at + skew_tolerance
        or device_ts < EARLIEST_PLAUSIBLE_TS
        or (previous_ts is not None and device_ts < previous_ts)
    )


def parse_message(
    topic: str,
    payload: bytes,
    received_at: datetime,
    *,
    skew_tolerance: timedelta = DEFAULT_SKEW_TOLERANCE,
    previous_ts: datetime | None = None,
) -> Message:
    """The typed message of one MQTT publish, or BadMessage with a reason code; received_at (aware) becomes effective_ts when the device ts is skewed or absent.

    ``previous_ts`` is the device ts of the previous message of the same device and
    boot in seq order (the highest seq below this one), not the last one received.
    Empty payloads on retained topics give RetainedCleared. Commands parse too (for
    chargers and simulators).
    """
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError("received_at must be timezone-aware")
    if previous_ts is not None and (previous_ts.tzinfo is None or previous_ts.utcoffset() is None):
        raise ValueError("previous_ts must be timezone-aware")
    ref = parse_topic(topic)
    text = _decode(payload)
    if text == "" and ref.retained:
        return RetainedCleared(ref, received_at)
    value = _load_json(text)
    if ref.kind in _ONLINE_TOPIC_KINDS:
        return replace(_read_online(ref, value), received_at=received_at)
    if not isinstance(value, dict):
        raise BadMessage("not_object", f"payload is a JSON {type(value).__name__}, not an object")
    fields = _Fields(value)
    message = _READERS[ref.kind](ref, fields)
    if isinstance(message, DeviceMessage):
        skewed = is_skewed(message.device_ts, received_at, skew_tolerance=skew_tolerance, previous_ts=previous_ts)
        return replace(message, received_at=received_at, skewed=skewed, unknown_fields=fields.unknown())
    return replace(message, received_at=received_at, unknown_fields=fields.unknown())


def seq_gap(previous: tuple[int, int] | None, boot: int, seq: int) -> int:
    """How many messages are missing between the device's previous (boot, seq) and this one; 0 for the first, a duplicate or an older message.

    In a new boot the messages 1..seq-1 of that boot are missing (the tail of the
    old boot cannot be known). A gap may fill later if messages arrive out of order.
    """
    if previous is None:
        return 0
    prev_boot, prev_seq = previous
    if boot < prev_boot or (boot == prev_boot and seq <= prev_seq):
        return 0
    return seq - prev_seq - 1 if boot == prev_boot else seq - 1


# --------------------------------------------------------------------------- format

Formattable = Union[DeviceMessage, OnlineMessage, ZigbeeContact, Command]


def payload_of(message: Formattable) -> Any:
    """The JSON value a message is sent as (a dict, or a bool for online)."""
    return message._wire()  # type: ignore[union-attr]


def format_message(message: Formattable) -> tuple[str, bytes]:
    """(topic, UTF-8 JSON bytes) of a message, validated against the contract exactly as parse_message would; raises BadMessage (a ValueError) if invalid."""
    ref = message.topic_ref
    topic = ref.topic
    value = payload_of(message)
    try:
        payload = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError) as e:
        raise _shape(None, f"cannot be encoded: {e}") from None
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise BadMessage("too_large", f"{len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
    if ref.kind in _ONLINE_TOPIC_KINDS:
        _read_online(ref, value)
    else:
        _READERS[ref.kind](ref, _Fields(value))
    return topic, payload


def format_command(command: Command) -> tuple[str, bytes]:
    """(topic, payload) the bridge publishes for one command (QoS 1, not retained)."""
    if not isinstance(command, Command):
        raise TypeError(f"not a command: {type(command).__name__}")
    return format_message(command)


def online_payload(online: bool) -> bytes:
    """The retained online payload: b"true" or b"false"."""
    return b"true" if online else b"false"


class LastWill(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    retain: bool


def last_will(device_kind: DeviceKind | str, station: str, device_id: str) -> LastWill:
    """The last will every station device sets: ``false`` retained at QoS 1 on its online topic."""
    return LastWill(online_topic(device_kind, station, device_id), online_payload(False), QOS, True)

