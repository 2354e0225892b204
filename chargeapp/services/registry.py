"""The device registry and accounts: stations with their chargers, zones, sensors
and gates; drivers with id tags and plates; managers."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chargeapp import telemetry as t
from chargeapp.db import models as m
from chargeapp.domain.errors import Conflict, InvalidRequest
from chargeapp.domain.plates import normalise_plate


class EmailTaken(Conflict):
    """An account with that email already exists."""

    code = "email_taken"


@dataclass
class ChargerSpec:
    code: str
    kind: str = "fast"
    level: str = ""
    max_power_kw: int = 120
    connectors: int = 1


@dataclass
class ZoneSpec:
    code: str
    name: str
    capacity: int
    name_en: str | None = None


@dataclass
class SensorSpec:
    code: str
    zone_in: str
    zone_out: str | None = None


@dataclass
class TariffSpec:
    """Default prices: Shanghai-style bands, 1/10,000 CNY per kWh."""

    effective_from: datetime
    periods: list = field(default_factory=lambda: [
        {"start": "00:00", "end": "06:00", "band": "valley"},
        {"start": "06:00", "end": "08:00", "band": "flat"},
        {"start": "08:00", "end": "11:00", "band": "peak"},
        {"start": "11:00", "end": "18:00", "band": "flat"},
        {"start": "18:00", "end": "21:00", "band": "peak"},
        {"start": "21:00", "end": "22:00", "band": "flat"},
        {"start": "22:00", "end": "00:00", "band": "valley"},
    ])
    peak_price: int = 10755
    flat_price: int = 6655
    valley_price: int = 3055
    service_fee: int = 8000
    idle_grace_minutes: int = 10
    idle_fee_per_minute_fen: int = 50
    idle_fee_cap_fen: int | None = 3000
    parking_block_fen: int = 500
    parking_daily_cap_fen: int | None = 6000


@dataclass
class StationSpec:
    code: str
    name: str
    latitude: float
    longitude: float
    timezone: str = "Asia/Shanghai"
    name_en: str | None = None
    address: str = ""
    district: str = ""
    amenities: list = field(default_factory=list)
    opens_at: time | None = None
    closes_at: time | None = None
    chargers: list[ChargerSpec] = field(default_factory=list)
    zones: list[ZoneSpec] = field(default_factory=list)
    sensors: list[SensorSpec] = field(default_factory=list)
    gates: list[str] = field(default_factory=list)
    rules: dict = field(default_factory=dict)
    tariff: TariffSpec | None = None
    is_demo: bool = False


def build_station(session: Session, spec: StationSpec, now: datetime) -> m.Station:
    """Create a station with everything in its spec (registry data, rules, first tariff)."""
    station = m.Station(
        code=spec.code, name=spec.name, name_en=spec.name_en, address=spec.address,
        district=spec.district, latitude=spec.latitude, longitude=spec.longitude,
        timezone=spec.timezone, amenities=list(spec.amenities), opens_at=spec.opens_at,
        closes_at=spec.closes_at, is_demo=spec.is_demo,
    )
    session.add(station)
    session.flush()
    session.add(m.StationRules(station_id=station.id, **spec.rules))
    for c in spec.chargers:
        charger = m.Charger(station_id=station.id, code=c.code, kind=c.kind, level=c.level,
                            max_power_kw=c.max_power_kw, mqtt_username=f"{spec.code}.{c.code}")
        session.add(charger)
        session.flush()
        for n in range(1, c.connectors + 1):
            session.add(m.Connector(charger_id=charger.id, number=n, status="Available"))
    zones = {}
    for z in spec.zones:
        zone = m.Zone(station_id=station.id, code=z.code, name=z.name, name_en=z.name_en, capacity=z.capacity)
        session.add(zone)
        session.flush()
        zones[z.code] = zone
    for s in spec.sensors:
        session.add(m.DoorSensor(
            station_id=station.id, code=s.code, zone_in_id=zones[s.zone_in].id,
            zone_out_id=zones[s.zone_out].id if s.zone_out else None,
            mqtt_username=f"{spec.code}.{s.code}",
        ))
    for g in spec.gates:
        session.add(m.Gate(station_id=station.id, code=g, name=g, mqtt_username=f"{spec.code}.{g}"))
    tariff = spec.tariff or TariffSpec(effective_from=datetime(2020, 1, 1, tzinfo=now.tzinfo))
    session.add(m.TariffVersion(station_id=station.id, created_at=now, **tariff.__dict__))
    session.flush()
    session.refresh(station)
    return station


def create_user(session: Session, *, email: str, password_hash: str, now: datetime, name: str = "",
                role: str = "driver", id_tags: tuple[str, ...] = (), plates: tuple[str, ...] = (),
                stations: tuple[m.Station, ...] = (), is_demo: bool = False) -> m.User:
    """Create an account (driver, manager or admin) with its id tags, plates and stations."""
    email = email.strip().lower()
    if session.scalar(select(m.User.id).where(m.User.email == email)) is not None:
        raise EmailTaken()
    user = m.User(email=email, password_hash=password_hash, name=name, role=role,
                  created_at=now, is_demo=is_demo)
    user.stations = list(stations)
    session.add(user)
    session.flush()
    for tag in id_tags:
        session.add(m.IdTag(tag=tag, user_id=user.id))
    for plate in plates:
        session.add(m.PlateRegistration(user_id=user.id, plate=normalise_plate(plate), valid_from=now))
    session.flush()
    return user


class InvalidOcppId(InvalidRequest):
    """An OCPP chargePointId is 1-48 characters of [A-Za-z0-9._-] (it is a URL segment and a Basic-auth username)."""

    code = "invalid_ocpp_id"


class OcppIdTaken(Conflict):
    """Another charger already has that OCPP chargePointId."""

    code = "ocpp_id_taken"


_OCPP_ID = re.compile(r"[A-Za-z0-9._-]{1,48}")


def set_ocpp_credentials(session: Session, *, station_code: str, charger_code: str, ocpp_id: str | None,
                         password_hash: str, now: datetime) -> m.OcppCharger:
    """Let a charger connect to the OCPP gateway as ``ocpp_id`` (default ``<station>.<charger>``) with this password hash.

    A second call replaces the password (and the id, if given) and keeps the gateway's
    counters, so boot, seq and transaction ids carry on. Raises ChargerNotFound,
    InvalidOcppId, OcppIdTaken.
    """
    from chargeapp.services.common import ChargerNotFound, station_by_code

    station = station_by_code(session, station_code)
    charger = session.scalar(select(m.Charger).where(m.Charger.station_id == station.id,
                                                     m.Charger.code == charger_code))
    if charger is None:
        raise ChargerNotFound(f"No charger {charger_code} at {station_code}.", charger=charger_code)
    row = session.get(m.OcppCharger, charger.id)
    ocpp_id = ocpp_id or (row.ocpp_id if row is not None else f"{station_code}.{charger_code}")
    if not _OCPP_ID.fullmatch(ocpp_id):
        raise InvalidOcppId(f"OCPP id {ocpp_id[:60]!r} is not 1-48 characters of [A-Za-z0-9._-]: give --ocpp-id.")
    taken = session.scalar(select(m.OcppCharger.charger_id).where(m.OcppCharger.ocpp_id == ocpp_id))
    if taken is not None and taken != charger.id:
        raise OcppIdTaken(f"Another charger already connects as {ocpp_id}.", ocpp_id=ocpp_id)
    if row is None:
        row = m.OcppCharger(charger_id=charger.id, boot=0, seq=0, last_transaction_id=0, boot_info={})
        session.add(row)
    row.ocpp_id = ocpp_id
    row.password_hash = password_hash
    row.password_set_at = now
    session.flush()
    return row


@dataclass(frozen=True)
class ChargerIdentity:
    """A charger with OCPP credentials: its chargePointId, contract codes, password hash, number of connectors and
    rated power (0: not known)."""

    charger_id: int
    ocpp_id: str
    station: str
    charger: str
    password_hash: str
    connectors: int
    max_power_kw: int = 0

    def __repr__(self) -> str:  # keep the hash out of logs
        return f"ChargerIdentity({self.ocpp_id!r} = {self.station}/{self.charger})"


def _ocpp_identities(session: Session, *where) -> list[ChargerIdentity]:
    connectors = (select(func.count(m.Connector.id)).where(m.Connector.charger_id == m.Charger.id)
                  .correlate(m.Charger).scalar_subquery())
    rows = session.execute(
        select(m.OcppCharger.charger_id, m.OcppCharger.ocpp_id, m.Station.code, m.Charger.code,
               m.OcppCharger.password_hash, connectors, m.Charger.max_power_kw)
        .join(m.Charger, m.Charger.id == m.OcppCharger.charger_id)
        .join(m.Station, m.Station.id == m.Charger.station_id)
        .where(*where).order_by(m.OcppCharger.ocpp_id)
    ).all()
    return [ChargerIdentity(*row) for row in rows if t.is_valid_id(row[2]) and t.is_valid_id(row[3])]


def charger_by_ocpp_id(session: Session, ocpp_id: str) -> ChargerIdentity | None:
    """The charger with OCPP credentials that connects as this chargePointId, or None."""
    found = _ocpp_identities(session, m.OcppCharger.ocpp_id == ocpp_id)
    return found[0] if found else None


def ocpp_chargers(session: Session) -> list[ChargerIdentity]:
    """Every charger with OCPP credentials whose station and charger codes are contract ids, by chargePointId."""
    return _ocpp_identities(session)


# --------------------------------------------------------------------------- device adapters


class InvalidDeviceAddress(InvalidRequest):
    """A vendor device's adapter or address cannot be used (unknown adapter, or an address its topics cannot hold)."""

    code = "invalid_device_address"


class DeviceAddressTaken(Conflict):
    """Another door contact or counting line already has that vendor address."""

    code = "device_address_taken"


def _vendor_topics(adapter_name: str, address: str) -> tuple[str, ...]:
    from chargeapp import adapters, telemetry

    try:
        return adapters.adapter(adapter_name).topics(address)
    except KeyError:
        raise InvalidDeviceAddress(f"No device adapter {adapter_name[:40]!r}.", adapter=adapter_name[:40]) from None
    except telemetry.BadMessage as exc:
        raise InvalidDeviceAddress(f"{adapter_name}: {exc.detail}", adapter=adapter_name) from None


def map_door_contact(session: Session, *, station_code: str, address: str, adapter: str = "zigbee2mqtt",
                     name: str = "", inverted: bool = False) -> m.DoorContact:
    """Map a door contact sensor to a station: ``address`` is its zigbee2mqtt friendly name or its Shelly Gen2
    ``<topic prefix>/input:<id>``; ``inverted`` for a sensor that reports closed when the door is open.

    Mapping an address again moves it (station, adapter, name, polarity). Raises
    StationNotFound, InvalidDeviceAddress.
    """
    from chargeapp import adapters
    from chargeapp.services.common import station_by_code

    if adapter not in adapters.CONTACT_ADAPTERS:
        raise InvalidDeviceAddress(f"{adapter[:40]!r} is not a door contact adapter "
                                   f"({', '.join(adapters.CONTACT_ADAPTERS)}).", adapter=adapter[:40])
    _vendor_topics(adapter, address)
    station = station_by_code(session, station_code)
    door = session.scalar(select(m.DoorContact).where(m.DoorContact.friendly_name == address))
    if door is None:
        door = m.DoorContact(friendly_name=address)
        session.add(door)
    door.station_id, door.adapter, door.name, door.inverted = station.id, adapter, name, inverted
    session.flush()
    return door


def map_counting_line(session: Session, *, station_code: str, sensor_code: str, topic: str, line: str,
                      adapter: str = "people_counter") -> m.DoorSensor:
    """Let a door sensor's readings come from a people counter's counting line (``topic``, ``line``) in its vendor's
    format instead of the contract; ``adapter=None`` maps it back to the contract.

    Raises StationNotFound, SensorNotFound, InvalidDeviceAddress, DeviceAddressTaken.
    """
    from chargeapp import adapters
    from chargeapp.adapters import people_counter
    from chargeapp.services.common import station_by_code
    from chargeapp.services.lounge import SensorNotFound

    station = station_by_code(session, station_code)
    sensor = session.scalar(select(m.DoorSensor).where(m.DoorSensor.station_id == station.id,
                                                       m.DoorSensor.code == sensor_code))
    if sensor is None:
        raise SensorNotFound(f"No door sensor {sensor_code} at {station_code}.")
    if adapter is None:
        sensor.adapter = sensor.vendor_topic = sensor.vendor_line = sensor.vendor_ts = None
        session.flush()
        return sensor
    if adapter not in adapters.COUNTER_ADAPTERS:
        raise InvalidDeviceAddress(f"{adapter[:40]!r} is not a people counter adapter "
                                   f"({', '.join(adapters.COUNTER_ADAPTERS)}).", adapter=adapter[:40])
    _vendor_topics(adapter, topic)
    try:
        people_counter.check_line(line)
    except Exception:
        raise InvalidDeviceAddress("A counting line is named by 1-64 characters.", adapter=adapter) from None
    taken = session.scalar(select(m.DoorSensor.id).where(m.DoorSensor.vendor_topic == topic,
                                                         m.DoorSensor.vendor_line == line))
    if taken is not None and taken != sensor.id:
        raise DeviceAddressTaken(f"Counting line {line!r} of {topic!r} is already mapped to another door sensor.")
    if (sensor.vendor_topic, sensor.vendor_line) != (topic, line):
        sensor.vendor_ts = None
    sensor.adapter, sensor.vendor_topic, sensor.vendor_line = adapter, topic, line
    session.flush()
    return sensor
