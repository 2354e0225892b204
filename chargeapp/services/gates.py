"""Garage gates: plate passages to parking stays.

A stay runs from an ``in`` to the next ``out`` of the same plate at the same
station. Passages are matched by their device time, not by arrival order, so
a message delayed by an outage lands where it belongs, and the same passage
applied twice (same plate, direction and instant) has one effect. Functions
take a session and never commit.

Anomalies are recorded and flagged, never dropped (docs/rules.md, "Parking stays"):

- ``in`` while a stay is open (the earlier in's out was missed): the open stay
  is kept with ``exit_at`` None and flagged ``in_while_open``, and a new stay
  starts. Example: in 08:00, in 09:00, out 10:00 -> [08:00, open] flagged,
  [09:00, 10:00]. If the 09:00 in arrives last, the 10:00 out moves from the
  08:00 stay to the new one, so the result is the same.
- ``out`` with no open stay: a stay with ``entry_at`` None flagged
  ``out_without_in``. If its in arrives later (it was only delayed), the in
  fills ``entry_at`` and the flag goes: out 10:00 arrives, then in 08:00 -> one
  stay [08:00, 10:00], unflagged. Likewise a late out that closes a stay flagged
  ``in_while_open`` clears that flag. The flags describe the stays as the
  passages now show them, so stays never depend on the arrival order (unlike
  charging sessions, whose flags record that a half came first).
- An ``out`` earlier than the recorded exit of the stay it belongs to takes its
  place; the later exit becomes an ``out_without_in`` stay.
- A change to a stay already settled (receipt issued) flags it
  ``changed_after_settled`` so the parking receipts can issue a correction.

Plates are normalised (``domain.plates.normalise_plate``): NFKC (full-width
letters and digits become ASCII), spaces and the separators · • ・ - . 。 _ removed,
latin letters upper-cased, CJK kept as is. "沪a·12345 " -> "沪A12345". A gate
records any reading; only a driver's registration is held to the plate format.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.errors import InvalidRequest, NotFound
from chargeapp.domain.plates import InvalidPlate, normalise_plate  # noqa: F401  (InvalidPlate: callers' name)
from chargeapp.services.common import station_by_code


class GateNotFound(NotFound):
    """No such gate at this station."""

    code = "gate_not_found"


class InvalidDirection(InvalidRequest):
    """A gate passage is "in" or "out"."""

    code = "invalid_direction"


def _locked_station_gate(session: Session, station_code: str, gate_code: str) -> tuple[m.Station, m.Gate]:
    """The station (its row locked on PostgreSQL, so one station's passages apply one at a time) and the gate."""
    station = station_by_code(session, station_code)
    if session.get_bind().dialect.name == "postgresql":  # SQLite: the transaction holds the one write lock already
        session.execute(select(m.Station.id).where(m.Station.id == station.id).with_for_update())
    gate = session.scalar(select(m.Gate).where(m.Gate.station_id == station.id, m.Gate.code == gate_code))
    if gate is None:
        raise GateNotFound(f"No gate '{gate_code}' at {station.code}.")
    return station, gate


def _flag(stay: m.ParkingStay, flag: str) -> None:
    if flag not in (stay.flags or []):
        stay.flags = [*(stay.flags or []), flag]  # reassigned so the JSON column is seen as changed


def _unflag(stay: m.ParkingStay, flag: str) -> None:
    if flag in (stay.flags or []):
        stay.flags = [f for f in stay.flags if f != flag]


def _touch(stay: m.ParkingStay) -> None:
    if stay.settled_at is not None:
        _flag(stay, "changed_after_settled")


def _stays(station_id: int, plate: str):
    return select(m.ParkingStay).where(m.ParkingStay.station_id == station_id, m.ParkingStay.plate == plate)


def record_gate_passage(session: Session, *, station_code: str, gate_code: str, plate: str, direction: str,
                        at: datetime, now: datetime) -> m.ParkingStay:
    """Apply a plate passage at device time ``at`` (aware); returns the stay it belongs to (see the module doc for anomalies).

    Raises StationNotFound, GateNotFound, InvalidPlate, InvalidDirection.
    """
    if direction not in ("in", "out"):
        raise InvalidDirection(f"Unknown direction {direction!r}.", direction=str(direction))
    plate = normalise_plate(plate)
    station, gate = _locked_station_gate(session, station_code, gate_code)
    if direction == "in":
        stay = _apply_in(session, station, gate, plate, at)
    else:
        stay = _apply_out(session, station, gate, plate, at)
    session.flush()
    return stay


def _previous_entry(session: Session, station: m.Station, plate: str, at: datetime) -> m.ParkingStay | None:
    """The stay with the latest entry at or before ``at``."""
    return session.scalar(
        _stays(station.id, plate).where(m.ParkingStay.entry_at <= at)
        .order_by(m.ParkingStay.entry_at.desc(), m.ParkingStay.id.desc()).limit(1)
    )


def _new_stay(session: Session, station: m.Station, plate: str, flags: list[str]) -> m.ParkingStay:
    stay = m.ParkingStay(station_id=station.id, plate=plate, flags=flags)
    session.add(stay)
    return stay


def _apply_in(session: Session, station: m.Station, gate: m.Gate, plate: str, at: datetime) -> m.ParkingStay:
    same = session.scalar(_stays(station.id, plate).where(m.ParkingStay.entry_at == at).limit(1))
    if same is not None:
        return same  # redelivered
    previous = _previous_entry(session, station, plate, at)
    if previous is not None and (previous.exit_at is None or previous.exit_at > at):
        # The previous stay was open when this in happened: its out was missed.
        _flag(previous, "in_while_open")
        stay = _new_stay(session, station, plate, [])
        stay.entry_at, stay.entry_gate_id = at, gate.id
        if previous.exit_at is not None:
            # That exit is the next out after this in, so it ends the new stay.
            _touch(previous)
            stay.exit_at, stay.exit_gate_id = previous.exit_at, previous.exit_gate_id
            previous.exit_at, previous.exit_gate_id = None, None
        return stay

    next_entry = session.scalar(
        select(func.min(m.ParkingStay.entry_at)).where(
            m.ParkingStay.station_id == station.id, m.ParkingStay.plate == plate, m.ParkingStay.entry_at > at,
        )
    )
    orphan_out = session.scalar(
        _stays(station.id, plate).where(m.ParkingStay.entry_at.is_(None), m.ParkingStay.exit_at >= at)
        .order_by(m.ParkingStay.exit_at, m.ParkingStay.id).limit(1)
    )
    if orphan_out is not None and (next_entry is None or orphan_out.exit_at < next_entry):
        # The out came first (this in was delayed): complete that stay.
        _touch(orphan_out)
        orphan_out.entry_at, orphan_out.entry_gate_id = at, gate.id
        _unflag(orphan_out, "out_without_in")
        return orphan_out

    stay = _new_stay(session, station, plate, [])
    stay.entry_at, stay.entry_gate_id = at, gate.id
    if next_entry is not None:
        # A later in is already recorded and no out lies between: this stay was open when it came.
        _flag(stay, "in_while_open")
    return stay


def _apply_out(session: Session, station: m.Station, gate: m.Gate, plate: str, at: datetime) -> m.ParkingStay:
    same = session.scalar(_stays(station.id, plate).where(m.ParkingStay.exit_at == at).limit(1))
    if same is not None:
        return same  # redelivered
    previous = _previous_entry(session, station, plate, at)
    if previous is not None and previous.exit_at is None:
        _touch(previous)
        previous.exit_at, previous.exit_gate_id = at, gate.id
        # Its out was only late: the later in no longer came while it was open.
        _unflag(previous, "in_while_open")
        return previous
    if previous is not None and previous.exit_at > at:
        # This out is the next one after the entry; the later exit had no in of its own.
        _touch(previous)
        orphan = _new_stay(session, station, plate, ["out_without_in"])
        orphan.exit_at, orphan.exit_gate_id = previous.exit_at, previous.exit_gate_id
        previous.exit_at, previous.exit_gate_id = at, gate.id
        return previous
    stay = _new_stay(session, station, plate, ["out_without_in"])
    stay.exit_at, stay.exit_gate_id = at, gate.id
    return stay


def open_stay(session: Session, station_id: int, plate: str) -> m.ParkingStay | None:
    """The plate's current stay at the station: the one with the latest entry if it has no exit yet, else None.

    An older stay left open by a missed out (flagged in_while_open) is not current. The plate is normalised first.
    """
    latest = session.scalar(
        _stays(station_id, normalise_plate(plate))
        .where(m.ParkingStay.entry_at.is_not(None))
        .order_by(m.ParkingStay.entry_at.desc(), m.ParkingStay.id.desc()).limit(1)
    )
    return latest if latest is not None and latest.exit_at is None else None


def driver_stays(session: Session, driver_id: int, since: datetime) -> list[m.ParkingStay]:
    """Stays running at or after ``since`` (aware) of plates registered to the driver during the stay, newest first.

    A registration counts when [valid_from, valid_to) overlaps the stay
    [entry or exit, exit or still open]; registrations are compared by normalised plate.
    """
    registrations = list(session.scalars(
        select(m.PlateRegistration).where(m.PlateRegistration.user_id == driver_id)
    ))
    by_plate: dict[str, list[m.PlateRegistration]] = {}
    for reg in registrations:
        try:
            by_plate.setdefault(normalise_plate(reg.plate), []).append(reg)
        except InvalidPlate:
            continue
    if not by_plate:
        return []
    stays = session.scalars(
        select(m.ParkingStay).where(
            m.ParkingStay.plate.in_(by_plate),
            or_(m.ParkingStay.exit_at.is_(None), m.ParkingStay.exit_at >= since),
        )
    )
    out = [s for s in stays if any(_registered_during(r, s) for r in by_plate[s.plate])]
    out.sort(key=lambda s: (s.entry_at or s.exit_at, s.id), reverse=True)
    return out


def _registered_during(reg: m.PlateRegistration, stay: m.ParkingStay) -> bool:
    begin = stay.entry_at or stay.exit_at
    end = stay.exit_at
    starts_in_time = end is None or reg.valid_from <= end
    not_ended_before = reg.valid_to is None or reg.valid_to > begin
    return starts_in_time and not_ended_before


def set_gate_online(session: Session, *, station_code: str, gate_code: str, online: bool, now: datetime) -> bool:
    """Record the gate's retained ``online`` flag; True if it changed."""
    station = station_by_code(session, station_code)
    gate = session.scalar(select(m.Gate).where(m.Gate.station_id == station.id, m.Gate.code == gate_code))
    if gate is None:
        raise GateNotFound(f"No gate '{gate_code}' at {station.code}.")
    if gate.online == bool(online):
        return False
    gate.online = bool(online)
    session.flush()
    return True
