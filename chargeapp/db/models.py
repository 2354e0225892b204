"""Persistent model. Instants are UTC (``UTCDateTime``); money is integer fen;
prices are integer 1/10,000 CNY per kWh; energy is integer Wh.

Per-station rules and prices live here (``StationRules``, ``TariffVersion``),
editable by managers; the environment configures only the deployment.
"""
from __future__ import annotations

from datetime import date, datetime, time
from typing import Optional

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Time,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import ExcludeConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chargeapp.db import UTCDateTime, db
from chargeapp.domain import usage

# Booking statuses that hold a charger for their time: the exclusion constraint
# (PostgreSQL) and triggers (SQLite) below make the database itself refuse a
# second one overlapping it on the same charger, whatever the application does.
CHARGER_HOLDING_STATUSES = ("booked", "held", "checked_in")
# Statuses in which a booking is still ahead of the driver (one per driver).
ACTIVE_BOOKING_STATUSES = ("booked", "held", "waiting")
# The name the database's refusal of overlapping bookings carries on both engines.
BOOKING_OVERLAP = "ex_bookings_charger_overlap"


def _in_list(statuses, column: str = "status") -> str:
    return f"{column} IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


class Station(db.Model):
    __tablename__ = "stations"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[Optional[str]] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300), default="")
    district: Mapped[str] = mapped_column(String(100), default="")
    # WGS-84; the map shows GCJ-02 (converted at display time).
    latitude: Mapped[float] = mapped_column()
    longitude: Mapped[float] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    amenities: Mapped[list] = mapped_column(JSON, default=list)
    # Opening hours in station wall time; both None means open around the clock.
    opens_at: Mapped[Optional[time]] = mapped_column(Time)
    closes_at: Mapped[Optional[time]] = mapped_column(Time)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)

    rules: Mapped["StationRules"] = relationship(back_populates="station", uselist=False, lazy="joined")
    chargers: Mapped[list["Charger"]] = relationship(back_populates="station", order_by="Charger.code")
    zones: Mapped[list["Zone"]] = relationship(back_populates="station", order_by="Zone.id")


class StationRules(db.Model):
    """Every number of the brief's rules, per station, with the brief's defaults."""

    __tablename__ = "station_rules"
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)
    slot_minutes: Mapped[int] = mapped_column(default=30)
    booking_horizon_minutes: Mapped[int] = mapped_column(default=24 * 60)
    hold_lead_minutes: Mapped[int] = mapped_column(default=10)
    checkin_before_minutes: Mapped[int] = mapped_column(default=10)
    checkin_grace_minutes: Mapped[int] = mapped_column(default=10)
    no_show_limit: Mapped[int] = mapped_column(default=3)
    no_show_window_days: Mapped[int] = mapped_column(default=30)
    suspension_days: Mapped[int] = mapped_column(default=7)
    walkin_reserved_fast: Mapped[int] = mapped_column(default=0)
    fault_lookahead_minutes: Mapped[int] = mapped_column(default=120)
    free_parking_qualify_minutes: Mapped[int] = mapped_column(default=15)
    free_parking_minutes: Mapped[int] = mapped_column(default=120)
    parking_block_minutes: Mapped[int] = mapped_column(default=30)
    receipt_settle_minutes: Mapped[int] = mapped_column(default=10)
    lounge_reset_time: Mapped[Optional[time]] = mapped_column(Time, default=time(4, 0))
    skew_tolerance_seconds: Mapped[int] = mapped_column(default=120)
    plate_retention_days: Mapped[int] = mapped_column(default=180)
    max_report_days: Mapped[int] = mapped_column(default=400)

    station: Mapped[Station] = relationship(back_populates="rules")


class TariffVersion(db.Model):
    """All the prices of a station from ``effective_from`` on; never edited once in effect."""

    __tablename__ = "tariff_versions"
    __table_args__ = (UniqueConstraint("station_id", "effective_from"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    effective_from: Mapped[datetime] = mapped_column(UTCDateTime)
    # [{"start": "08:00", "end": "11:00", "band": "peak"}, ...] in station wall time
    periods: Mapped[list] = mapped_column(JSON)
    peak_price: Mapped[int] = mapped_column()  # 1/10,000 CNY per kWh
    flat_price: Mapped[int] = mapped_column()
    valley_price: Mapped[int] = mapped_column()
    service_fee: Mapped[int] = mapped_column()  # 1/10,000 CNY per kWh
    idle_grace_minutes: Mapped[int] = mapped_column(default=10)
    idle_fee_per_minute_fen: Mapped[int] = mapped_column(default=0)
    idle_fee_cap_fen: Mapped[Optional[int]] = mapped_column()
    parking_block_fen: Mapped[int] = mapped_column(default=0)
    parking_daily_cap_fen: Mapped[Optional[int]] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MaintenanceWindow(db.Model):
    __tablename__ = "maintenance_windows"
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(300), default="")


class Charger(db.Model):
    __tablename__ = "chargers"
    __table_args__ = (
        UniqueConstraint("station_id", "code"),
        CheckConstraint("kind IN ('fast', 'slow')", name="kind"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    level: Mapped[str] = mapped_column(String(16), default="")
    max_power_kw: Mapped[int] = mapped_column(default=0)
    in_service: Mapped[bool] = mapped_column(Boolean, default=True)
    online: Mapped[bool] = mapped_column(Boolean, default=True)
    mqtt_username: Mapped[Optional[str]] = mapped_column(String(140), unique=True)

    station: Mapped[Station] = relationship(back_populates="chargers")
    connectors: Mapped[list["Connector"]] = relationship(
        back_populates="charger", order_by="Connector.number", lazy="selectin"
    )


class Connector(db.Model):
    __tablename__ = "connectors"
    __table_args__ = (UniqueConstraint("charger_id", "number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(default=1)
    status: Mapped[str] = mapped_column(String(16), default="Available")
    error_code: Mapped[str] = mapped_column(String(32), default="NoError")
    status_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)  # when the current state began
    # Device time of the newest status report applied, repeats included: a report
    # older than this arrived late and does not move the current state.
    reported_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    charger: Mapped[Charger] = relationship(back_populates="connectors")


class StatusChange(db.Model):
    """The raw status history of a connector (the source of every utilization figure)."""

    __tablename__ = "status_changes"
    __table_args__ = (Index("ix_status_changes_connector_at", "connector_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    connector_id: Mapped[int] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str] = mapped_column(String(32), default="NoError")
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # validated device time
    device_ts: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    received_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    skewed: Mapped[bool] = mapped_column(Boolean, default=False)


# The hourly figures a heat map sums: in-service, occupied and charging microseconds per local hour.
ROLLUP_HOURLY = usage.HOURLY


class ConnectorDayRollup(db.Model):
    """One connector's figures of one station-local day, summed from its status history and sessions
    (services/rollups.py); the reports read these for whole days that are clean (``dirty`` 0).

    Times are integer microseconds, so sums are exact. The idle columns describe the occupied runs that
    touch the day's start (``lead``: 0 none, 1 ends inside the day, 2 the whole day) and end (``trail``),
    so runs crossing midnight are joined when days are summed (domain/usage.py, ``fold_idle``).
    """

    __tablename__ = "connector_day_rollups"
    __table_args__ = (
        Index("ix_connector_day_rollups_station_day", "station_id", "day"),
        # The periodic pass looks for dirty rows of every station: only those are in this index.
        Index("ix_connector_day_rollups_dirty", "station_id", "day",
              sqlite_where=text("dirty > 0"), postgresql_where=text("dirty > 0")),
    )
    connector_id: Mapped[int] = mapped_column(ForeignKey("connectors.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)  # station-local
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"))
    weekday: Mapped[int] = mapped_column()  # 0 Monday .. 6 Sunday
    known_us: Mapped[int] = mapped_column(BigInteger)
    faulted_us: Mapped[int] = mapped_column(BigInteger)
    unavailable_us: Mapped[int] = mapped_column(BigInteger)
    occupied_us: Mapped[int] = mapped_column(BigInteger)
    charging_us: Mapped[int] = mapped_column(BigInteger)
    lead: Mapped[int] = mapped_column()
    lead_charging: Mapped[bool] = mapped_column(Boolean)
    lead_tail_us: Mapped[int] = mapped_column(BigInteger)
    lead_occupied_us: Mapped[int] = mapped_column(BigInteger)
    lead_after_us: Mapped[int] = mapped_column(BigInteger)
    mid_idle_us: Mapped[int] = mapped_column(BigInteger)
    trail: Mapped[bool] = mapped_column(Boolean)
    trail_charging: Mapped[bool] = mapped_column(Boolean)
    trail_tail_us: Mapped[int] = mapped_column(BigInteger)
    energy_wh: Mapped[int] = mapped_column(BigInteger)  # sessions' Wh apportioned to the day
    sessions: Mapped[int] = mapped_column()  # sessions started in the day
    lengths_us: Mapped[list] = mapped_column(JSON)  # lengths of the closed ones
    # Marks of late telemetry since the figures were computed (0: clean); see services/rollups.py.
    dirty: Mapped[int] = mapped_column(default=0)
    revision: Mapped[int] = mapped_column(default=1)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    for _kind in ROLLUP_HOURLY:
        for _h in range(24):
            vars()[f"{_kind}_h{_h:02d}"] = mapped_column(BigInteger, nullable=False)
    del _kind, _h


class Zone(db.Model):
    __tablename__ = "zones"
    __table_args__ = (UniqueConstraint("station_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[Optional[str]] = mapped_column(String(200))
    capacity: Mapped[int] = mapped_column()
    # The manager's last set count: a baseline at its time.
    baseline_count: Mapped[Optional[int]] = mapped_column()
    baseline_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)

    station: Mapped[Station] = relationship(back_populates="zones")


class DoorSensor(db.Model):
    __tablename__ = "door_sensors"
    __table_args__ = (UniqueConstraint("station_id", "code"), UniqueConstraint("vendor_topic", "vendor_line"))
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    zone_in_id: Mapped[int] = mapped_column(ForeignKey("zones.id"))
    zone_out_id: Mapped[Optional[int]] = mapped_column(ForeignKey("zones.id"))
    online: Mapped[bool] = mapped_column(Boolean, default=True)
    # The last applied cumulative reading (see domain.occupancy.CounterState).
    boot: Mapped[Optional[int]] = mapped_column(BigInteger)
    seq: Mapped[Optional[int]] = mapped_column(BigInteger)
    in_total: Mapped[Optional[int]] = mapped_column(BigInteger)
    out_total: Mapped[Optional[int]] = mapped_column(BigInteger)
    mqtt_username: Mapped[Optional[str]] = mapped_column(String(140), unique=True)
    # A counter that speaks its vendor's format instead of the contract (chargeapp.adapters):
    # adapter "people_counter", the topic it publishes on and the counting line this door is;
    # vendor_ts is the effective time of the last reading applied (older readings are stale).
    adapter: Mapped[Optional[str]] = mapped_column(String(32))
    vendor_topic: Mapped[Optional[str]] = mapped_column(String(600))
    vendor_line: Mapped[Optional[str]] = mapped_column(String(64))
    vendor_ts: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class OccupancyChange(db.Model):
    """A raw change of a zone's count: door passages, or a baseline (set/reset)."""

    __tablename__ = "occupancy_changes"
    __table_args__ = (Index("ix_occupancy_changes_zone_at", "zone_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    zone_id: Mapped[int] = mapped_column(ForeignKey("zones.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    delta: Mapped[int] = mapped_column(default=0)
    source: Mapped[str] = mapped_column(String(16))  # door | set | reset | baseline (services/lounge.py)
    sensor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("door_sensors.id"))
    count_after: Mapped[Optional[int]] = mapped_column()


class Gate(db.Model):
    __tablename__ = "gates"
    __table_args__ = (UniqueConstraint("station_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    online: Mapped[bool] = mapped_column(Boolean, default=True)
    mqtt_username: Mapped[Optional[str]] = mapped_column(String(140), unique=True)


class User(db.Model):
    """A driver, a station manager or a network administrator."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('driver', 'manager', 'admin')", name="role"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100), default="")
    role: Mapped[str] = mapped_column(String(8), default="driver")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    suspended_until: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)

    stations: Mapped[list[Station]] = relationship(secondary="manager_stations")  # managers only: loaded on use


class ManagerStation(db.Model):
    __tablename__ = "manager_stations"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), primary_key=True)


class IdTag(db.Model):
    """An RFID card or app token that identifies a driver at a charger."""

    __tablename__ = "id_tags"
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)


class PlateRegistration(db.Model):
    """A plate registered to a driver from ``valid_from`` until ``valid_to`` (open when None)."""

    __tablename__ = "plate_registrations"
    __table_args__ = (Index("ix_plate_registrations_plate", "plate"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    plate: Mapped[str] = mapped_column(String(16))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class Booking(db.Model):
    __tablename__ = "bookings"
    __table_args__ = (
        # The database refuses two bookings holding one charger for one slot.
        Index(
            "uq_bookings_charger_slot_active", "charger_id", "slot_start", unique=True,
            sqlite_where=text(_in_list(CHARGER_HOLDING_STATUSES)),
            postgresql_where=text(_in_list(CHARGER_HOLDING_STATUSES)),
        ),
        # Two bookings holding one charger at overlapping times (a grid change leaves
        # bookings of the old length whose starts the index above does not compare).
        # Charger equality as overlap of one-point ranges: no btree_gist extension.
        # charger_id IS NOT NULL matters: int4range(NULL, NULL) is unbounded.
        ExcludeConstraint(
            (text("int4range(charger_id, charger_id, '[]')"), "&&"),
            (text("tsrange(slot_start, slot_end)"), "&&"),  # naive UTC columns: tsrange, '[)'
            name=BOOKING_OVERLAP, using="gist",
            where=text(_in_list(CHARGER_HOLDING_STATUSES) + " AND charger_id IS NOT NULL"),
        ).ddl_if(dialect="postgresql"),
        # ...and two bookings ahead of one driver.
        Index(
            "uq_bookings_driver_active", "driver_id", unique=True,
            sqlite_where=text(_in_list(ACTIVE_BOOKING_STATUSES)),
            postgresql_where=text(_in_list(ACTIVE_BOOKING_STATUSES)),
        ),
        UniqueConstraint("driver_id", "idempotency_key"),
        Index("ix_bookings_station_slot", "station_id", "slot_start"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    driver_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    # The charger holding the slot now (None while waiting for one to free up).
    charger_id: Mapped[Optional[int]] = mapped_column(ForeignKey("chargers.id"))
    # The charger assigned at booking time, and the one the driver named (if any).
    booked_charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id"))
    requested_charger_id: Mapped[Optional[int]] = mapped_column(ForeignKey("chargers.id"))
    slot_start: Mapped[datetime] = mapped_column(UTCDateTime)
    slot_end: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="booked")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    held_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    delay_started_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    delay_seconds: Mapped[int] = mapped_column(default=0)
    checked_in_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    session_id: Mapped[Optional[int]] = mapped_column(ForeignKey("charging_sessions.id"))
    cancelled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    no_show_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    disrupted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(100))
    request_fingerprint: Mapped[Optional[str]] = mapped_column(String(64))

    station: Mapped[Station] = relationship(lazy="joined")
    charger: Mapped[Optional[Charger]] = relationship(foreign_keys=[charger_id], lazy="joined")


def _sqlite_overlap_trigger(when: str) -> DDL:
    """SQLite's stand-in for the exclusion constraint: ``when`` is "insert" or "update"."""
    holding = _in_list(CHARGER_HOLDING_STATUSES)
    update = when == "update"
    return DDL(f"""
CREATE TRIGGER tr_bookings_charger_overlap_{when}
BEFORE {"UPDATE OF charger_id, status, slot_start, slot_end" if update else "INSERT"} ON bookings
FOR EACH ROW WHEN NEW.charger_id IS NOT NULL AND {_in_list(CHARGER_HOLDING_STATUSES, "NEW.status")}
    AND NEW.slot_start < NEW.slot_end
BEGIN
    SELECT RAISE(ABORT, '{BOOKING_OVERLAP}: that charger has a booking at an overlapping time')
    WHERE EXISTS (
        SELECT 1 FROM bookings WHERE charger_id = NEW.charger_id AND {holding}
        AND slot_start < NEW.slot_end AND NEW.slot_start < slot_end{" AND id != NEW.id" if update else ""}
    );
END""")


# The instants are compared as stored: SQLAlchemy writes them as fixed-width
# 'YYYY-MM-DD HH:MM:SS.ffffff' text, which sorts as time does (as every query here assumes).
for _when in ("insert", "update"):
    event.listen(Booking.__table__, "after_create", _sqlite_overlap_trigger(_when).execute_if(dialect="sqlite"))


class ChargingSession(db.Model):
    """A charger transaction (OCPP): start to stop, however it was closed."""

    __tablename__ = "charging_sessions"
    __table_args__ = (
        UniqueConstraint("charger_id", "transaction_id"),
        Index("ix_charging_sessions_started", "charger_id", "started_at"),
        Index("ix_charging_sessions_station_stopped", "station_id", "stopped_at"),
        # The periodic pass looks for closed sessions without their receipt (receipts._issue_charging): only
        # those are in this index, so the pass does not read every session ever closed.
        Index("ix_charging_sessions_unreceipted", "stopped_at",
              sqlite_where=text("receipted_at IS NULL AND stopped_at IS NOT NULL"),
              postgresql_where=text("receipted_at IS NULL AND stopped_at IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id"))
    connector_id: Mapped[int] = mapped_column(ForeignKey("connectors.id"))
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    id_tag: Mapped[Optional[str]] = mapped_column(String(64))
    driver_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"), index=True)
    reservation_id: Mapped[Optional[int]] = mapped_column()
    started_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    start_meter_wh: Mapped[Optional[int]] = mapped_column(BigInteger)
    stopped_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    stop_meter_wh: Mapped[Optional[int]] = mapped_column(BigInteger)
    stop_reason: Mapped[Optional[str]] = mapped_column(String(32))
    # stop | new_start | available | manager ; None while open
    closed_by: Mapped[Optional[str]] = mapped_column(String(16))
    # When its charging receipt (the original) was issued; None before. Only for finding the ones still due.
    receipted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # Set when the stop came without its start (start_* stay None until it arrives).
    flags: Mapped[list] = mapped_column(JSON, default=list)

    charger: Mapped[Charger] = relationship(lazy="joined")
    station: Mapped[Station] = relationship(lazy="joined", viewonly=True)


class MeterReading(db.Model):
    __tablename__ = "meter_readings"
    __table_args__ = (Index("ix_meter_readings_session_at", "session_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("charging_sessions.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    energy_wh: Mapped[int] = mapped_column(BigInteger)
    power_w: Mapped[Optional[int]] = mapped_column()
    soc: Mapped[Optional[int]] = mapped_column()


class ParkingStay(db.Model):
    __tablename__ = "parking_stays"
    __table_args__ = (
        Index("ix_parking_stays_station_plate", "station_id", "plate", "entry_at"),
        # Exited stays not settled yet, for the periodic pass (receipts._settle_exited): not every stay ever.
        Index("ix_parking_stays_unsettled", "exit_at",
              sqlite_where=text("settled_at IS NULL AND exit_at IS NOT NULL"),
              postgresql_where=text("settled_at IS NULL AND exit_at IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    plate: Mapped[str] = mapped_column(String(64))
    entry_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    exit_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    entry_gate_id: Mapped[Optional[int]] = mapped_column(ForeignKey("gates.id"))
    exit_gate_id: Mapped[Optional[int]] = mapped_column(ForeignKey("gates.id"))
    # out_without_in | in_while_open | plate_fixed | anonymised
    flags: Mapped[list] = mapped_column(JSON, default=list)
    settled_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class Receipt(db.Model):
    """A receipt (charging session or parking stay); corrections point at what they correct."""

    __tablename__ = "receipts"
    __table_args__ = (
        Index("ix_receipts_station_issued", "station_id", "issued_at"),
        # One original receipt per session and per stay; later changes are corrections.
        Index("uq_receipts_charging_session", "session_id", unique=True,
              sqlite_where=text("kind = 'charging'"), postgresql_where=text("kind = 'charging'")),
        Index("uq_receipts_parking_stay", "stay_id", unique=True,
              sqlite_where=text("kind = 'parking'"), postgresql_where=text("kind = 'parking'")),
        Index("ix_receipts_corrects", "corrects_id"),
        # The periodic pass reads the originals of the last 24 h (receipts.settle_due), of every station.
        Index("ix_receipts_issued", "issued_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # charging | parking | correction
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"), index=True)
    driver_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"), index=True)
    session_id: Mapped[Optional[int]] = mapped_column(ForeignKey("charging_sessions.id"))
    stay_id: Mapped[Optional[int]] = mapped_column(ForeignKey("parking_stays.id"))
    tariff_version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("tariff_versions.id"))
    corrects_id: Mapped[Optional[int]] = mapped_column(ForeignKey("receipts.id"))
    energy_wh: Mapped[int] = mapped_column(BigInteger, default=0)
    energy_fen: Mapped[int] = mapped_column(default=0)
    service_fen: Mapped[int] = mapped_column(default=0)
    idle_fen: Mapped[int] = mapped_column(default=0)
    parking_fen: Mapped[int] = mapped_column(default=0)
    total_fen: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    explanation: Mapped[str] = mapped_column(Text, default="")
    # The explanation as lines [{"code", "params"}] rendered in the reader's language (chargeapp.web.messages);
    # None on an old receipt whose English explanation could not be read: it is shown as stored.
    explanation_lines: Mapped[Optional[list]] = mapped_column(JSON)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    superseded: Mapped[bool] = mapped_column(Boolean, default=False)

    station: Mapped[Station] = relationship(lazy="joined", viewonly=True)


class ReceiptCheck(db.Model):
    """What the receipt of a charging session or parking stay was last priced from: a digest of its inputs
    (services/receipts.py, ``settle_due``), so the periodic pass prices again only what changed since.

    Bookkeeping, not part of any receipt (receipts stay write-once): a missing or deleted row only
    means the item is priced again at the next pass. Rows older than the recheck window are pruned.
    """

    __tablename__ = "receipt_checks"
    # The pass drops rows older than the window after every save: by this index, not by reading the table.
    __table_args__ = (Index("ix_receipt_checks_checked_at", "checked_at"),)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # charging (a session) | parking (a stay)
    item_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)  # the session's or stay's id
    inputs: Mapped[str] = mapped_column(String(64))
    # Price again from this instant even with the same inputs: a fast charger's receipt waiting for
    # Available is issued without an idle fee once IDLE_WAIT_LIMIT has passed (None: never).
    due_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PeriodicCursor(db.Model):
    """Where a periodic job that works through a large set in turns stopped last time (the last id it looked at).

    ``receipts.settle_due`` looks at the receipts of its 24-hour window a bounded number per pass, from here on;
    written under the periodic lease, so by one worker at a time. A missing row means: from the start.
    """

    __tablename__ = "periodic_cursors"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Notification(db.Model):
    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    booking_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bookings.id"))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    # What happened, to be rendered in the reader's language (chargeapp.web.messages); None on an
    # old row whose English sentence could not be parsed: it is shown as stored.
    code: Mapped[Optional[str]] = mapped_column(String(48))
    params: Mapped[Optional[dict]] = mapped_column(JSON)
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class CommandOutbox(db.Model):
    """Commands to chargers; the MQTT bridge alone sends them."""

    __tablename__ = "command_outbox"
    __table_args__ = (Index("ix_command_outbox_pending", "status", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id"))
    name: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSON)
    booking_id: Mapped[Optional[int]] = mapped_column(ForeignKey("bookings.id"))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|sent|answered|failed
    attempts: Mapped[int] = mapped_column(default=0)
    result: Mapped[Optional[str]] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    answered_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class DeadLetter(db.Model):
    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    topic: Mapped[str] = mapped_column(Text)
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")
    station_code: Mapped[Optional[str]] = mapped_column(String(64), index=True)


class DeadLetterCount(db.Model):
    """Per source (a device's topic prefix) and UTC hour: messages refused, and how many of them were dropped
    (counted, not stored) over the per-hour cap (``services.dead_letters``); pruned with the dead letters."""

    __tablename__ = "dead_letter_counts"
    source: Mapped[str] = mapped_column(String(200), primary_key=True)  # "stations/s1/chargers/F1"
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    station_code: Mapped[Optional[str]] = mapped_column(String(64), index=True)
    messages: Mapped[int] = mapped_column(Integer, default=0)
    dropped: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntry(db.Model):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    station_id: Mapped[Optional[int]] = mapped_column(ForeignKey("stations.id"), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[Optional[int]] = mapped_column()
    reason: Mapped[str] = mapped_column(Text)
    before: Mapped[Optional[dict]] = mapped_column(JSON)
    after: Mapped[Optional[dict]] = mapped_column(JSON)


class DeviceSequence(db.Model):
    """Per device: the boot and highest seq applied, for duplicate and gap detection."""

    __tablename__ = "device_sequences"
    device: Mapped[str] = mapped_column(String(200), primary_key=True)  # "charger:station/F1"
    boot: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_ts: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)  # device time of last_seq
    missing: Mapped[int] = mapped_column(BigInteger, default=0)  # seqs skipped and not (yet) seen
    gaps: Mapped[int] = mapped_column(BigInteger, default=0)  # gap events ever detected
    skewed: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    gap_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)  # receive time of the last gap found


class AppliedMessage(db.Model):
    """One row per device message applied: (device, boot, seq) is applied at most once."""

    __tablename__ = "applied_messages"
    __table_args__ = (UniqueConstraint("device", "boot", "seq"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    device: Mapped[str] = mapped_column(String(200))
    boot: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Lease(db.Model):
    """A named lease so that periodic work runs in one worker at a time."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DoorContact(db.Model):
    """A door contact sensor (zigbee2mqtt): door open or closed, never a head count."""

    __tablename__ = "door_contacts"
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id", ondelete="CASCADE"), index=True)
    # The device's address for its adapter (chargeapp.adapters): the zigbee2mqtt friendly name,
    # or a Shelly Gen2 "<topic prefix>/input:<id>".
    friendly_name: Mapped[str] = mapped_column(String(200), unique=True)
    adapter: Mapped[str] = mapped_column(String(32), default="zigbee2mqtt", server_default="zigbee2mqtt")
    name: Mapped[str] = mapped_column(String(200), default="")
    # zigbee2mqtt says contact=true for CLOSED; a sensor mounted the other way round inverts it.
    inverted: Mapped[bool] = mapped_column(Boolean, default=False)
    is_open: Mapped[Optional[bool]] = mapped_column(Boolean)
    open_since: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    state_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    battery: Mapped[Optional[float]] = mapped_column()
    linkquality: Mapped[Optional[int]] = mapped_column()


class OcppCharger(db.Model):
    """A charger that speaks OCPP 1.6J through ``chargeapp ocpp-gateway``: its identity and Basic-auth password
    (security profile 1/2), and the gateway's per-charger state, persisted so a gateway restart continues it."""

    __tablename__ = "ocpp_chargers"
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"), primary_key=True)
    # The chargePointId in ws(s)://host/ocpp/<ocpp_id> and the Basic-auth username.
    ocpp_id: Mapped[str] = mapped_column(String(48), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))  # Argon2id
    password_set_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The contract's boot/seq the gateway stamps on this charger's messages, and the
    # device time of the last one published (a replay older than it starts a new boot).
    boot: Mapped[int] = mapped_column(BigInteger, default=0)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_ts: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    # The highest transaction id ever assigned to this charger (never reused).
    last_transaction_id: Mapped[int] = mapped_column(BigInteger, default=0)
    boot_info: Mapped[dict] = mapped_column(JSON, default=dict)  # vendor, model, serials, firmware
    booted_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)


class OcppTransaction(db.Model):
    """A transaction the gateway assigned an id to: lets a replayed StartTransaction get the same id back, and
    gives StopTransaction (which names no connector) its connector."""

    __tablename__ = "ocpp_transactions"
    __table_args__ = (
        UniqueConstraint("charger_id", "transaction_id"),
        Index("ix_ocpp_transactions_start", "charger_id", "connector", "started_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    charger_id: Mapped[int] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    transaction_id: Mapped[int] = mapped_column(BigInteger)
    connector: Mapped[int] = mapped_column()
    id_tag: Mapped[str] = mapped_column(String(20))
    meter_start: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the charger's timestamp
    reservation_id: Mapped[Optional[int]] = mapped_column()
    start_published: Mapped[bool] = mapped_column(Boolean, default=False)
    stopped_at: Mapped[Optional[datetime]] = mapped_column(UTCDateTime)
    meter_stop: Mapped[Optional[int]] = mapped_column(BigInteger)
    stop_published: Mapped[bool] = mapped_column(Boolean, default=False)
