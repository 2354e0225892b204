"""Fast-charge slot booking rules: the grid, who gets which charger, holds,
check-in, no-shows and suspension. Pure: time is always passed in.

All instants are timezone-aware; the grid and opening hours are read in the
station's time zone.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from enum import Enum
from typing import Iterable, Sequence
from zoneinfo import ZoneInfo

from chargeapp.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from chargeapp.domain.intervals import Interval


class BookingStatus(str, Enum):
    BOOKED = "booked"  # a charger is assigned; the hold is not due yet
    HELD = "held"  # the charger is held (reserve_now) for the driver
    WAITING = "waiting"  # hold due but no fast charger free: delayed
    CHECKED_IN = "checked_in"  # the driver's session was open inside the window
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"
    DISRUPTED = "disrupted"  # the charger broke and no other could take it


ACTIVE = frozenset({BookingStatus.BOOKED, BookingStatus.HELD, BookingStatus.WAITING})


@dataclass(frozen=True)
class BookingRules:
    """The booking numbers of one station (the brief's defaults)."""

    slot: timedelta = timedelta(minutes=30)
    horizon: timedelta = timedelta(hours=24)
    hold_lead: timedelta = timedelta(minutes=10)
    checkin_before: timedelta = timedelta(minutes=10)
    checkin_grace: timedelta = timedelta(minutes=10)
    no_show_limit: int = 3
    no_show_window: timedelta = timedelta(days=30)
    suspension: timedelta = timedelta(days=7)
    walkin_reserved_fast: int = 0
    fault_lookahead: timedelta = timedelta(hours=2)


@dataclass(frozen=True)
class OpeningHours:
    """Daily opening hours in station wall time; both None means around the clock.

    ``closes_at`` <= ``opens_at`` means the station closes after midnight.
    """

    opens_at: time | None = None
    closes_at: time | None = None

    @property
    def always_open(self) -> bool:
        return self.opens_at is None or self.closes_at is None or self.opens_at == self.closes_at

    def open_intervals(self, day: date, tz: ZoneInfo) -> list[Interval]:
        """The open periods that start on local ``day`` (an overnight one runs into the next day)."""
        if self.always_open:
            return [Interval(_local(day, time(0), tz), _local(day + timedelta(days=1), time(0), tz))]
        start = _local(day, self.opens_at, tz)
        end_day = day if self.closes_at > self.opens_at else day + timedelta(days=1)
        return [Interval(start, _local(end_day, self.closes_at, tz))]

    def covers(self, span: Interval, tz: ZoneInfo) -> bool:
        """True when the whole span lies inside one open period."""
        if self.always_open:
            return True
        local_day = span.start.astimezone(tz).date()
        for d in (local_day - timedelta(days=1), local_day):
            for iv in self.open_intervals(d, tz):
                if iv.start <= span.start and span.end <= iv.end:
                    return True
        return False


def _local(day: date, t: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, t, tzinfo=tz)


# -- errors -----------------------------------------------------------------


class SlotNotOnGrid(InvalidRequest):
    """Slots start on the station's grid (:00 and :30 local time)."""

    code = "slot_not_on_grid"


class SlotInPast(InvalidRequest):
    """That slot has already started."""

    code = "slot_in_past"


class SlotTooFarAhead(InvalidRequest):
    """Slots can be booked at most 24 hours ahead."""

    code = "slot_too_far_ahead"


class StationClosed(InvalidRequest):
    """The station is closed at that time."""

    code = "station_closed"


class StationInMaintenance(InvalidRequest):
    """The station has a maintenance window at that time."""

    code = "station_maintenance"


class SlotUnavailable(Conflict):
    """No fast charger is free for that slot."""

    code = "slot_unavailable"


class ChargerNotBookable(InvalidRequest):
    """That charger cannot be booked (not a fast charger of this station, or out of service)."""

    code = "charger_not_bookable"


class ActiveBookingExists(Conflict):
    """You already have an active booking; cancel it first."""

    code = "active_booking_exists"


class DriverSuspended(Forbidden):
    """Booking is suspended after repeated no-shows."""

    code = "driver_suspended"


class BookingNotFound(NotFound):
    """No such booking."""

    code = "booking_not_found"


class BookingNotCancellable(Conflict):
    """This booking can no longer be cancelled."""

    code = "booking_not_cancellable"


class IdempotencyKeyReused(InvalidRequest):
    """This Idempotency-Key was already used for a different request."""

    code = "idempotency_key_reused"


# -- the grid -----------------------------------------------------------------


def slot_span(slot_start: datetime, rules: BookingRules) -> Interval:
    """The slot [start, start + slot length)."""
    return Interval(slot_start, slot_start + rules.slot)


def on_grid(slot_start: datetime, tz: ZoneInfo, rules: BookingRules) -> bool:
    """True when the slot starts on the grid in station wall time (:00/:30 for 30 min slots)."""
    local = slot_start.astimezone(tz)
    minutes = local.hour * 60 + local.minute
    step = int(rules.slot.total_seconds() // 60)
    return local.second == 0 and local.microsecond == 0 and minutes % step == 0


def validate_slot(
    slot_start: datetime,
    now: datetime,
    tz: ZoneInfo,
    rules: BookingRules,
    opening: OpeningHours,
    maintenance: Iterable[Interval] = (),
) -> Interval:
    """Check that a slot can be booked at ``now``; returns its span or raises the reason."""
    if not on_grid(slot_start, tz, rules):
        raise SlotNotOnGrid(
            f"Slots start at :00 or :30 station time ({tz.key}); "
            f"{slot_start.astimezone(tz).strftime('%H:%M:%S')} is not on the grid."
        )
    if slot_start <= now:
        raise SlotInPast()
    if slot_start > now + rules.horizon:
        hours = int(rules.horizon.total_seconds() // 3600)
        raise SlotTooFarAhead(f"Slots can be booked at most {hours} hours ahead.")
    span = slot_span(slot_start, rules)
    if not opening.covers(span, tz):
        raise StationClosed()
    for window in maintenance:
        if window.overlaps(span):
            raise StationInMaintenance(
                "The station has maintenance from "
                f"{window.start.astimezone(tz):%Y-%m-%d %H:%M} to {window.end.astimezone(tz):%H:%M}."
            )
    return span


def day_slot_starts(day: date, tz: ZoneInfo, rules: BookingRules) -> list[datetime]:
    """Every grid slot start of the station-local calendar day, as UTC instants (DST-safe)."""
    starts = []
    cursor = datetime.combine(day, time(0), tzinfo=tz).astimezone(timezone.utc)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(timezone.utc)
    while cursor < end:
        if on_grid(cursor, tz, rules):
            starts.append(cursor)
        cursor += rules.slot
    return starts


def bookable_slot_starts(
    day: date, now: datetime, tz: ZoneInfo, rules: BookingRules, opening: OpeningHours,
    maintenance: Sequence[Interval] = (),
) -> list[datetime]:
    """The slot starts of a local day that ``validate_slot`` accepts at ``now``."""
    out = []
    for start in day_slot_starts(day, tz, rules):
        try:
            validate_slot(start, now, tz, rules, opening, maintenance)
        except InvalidRequest:
            continue
        out.append(start)
    return out



# When a whole day has no bookable slot, the reason a driver can act on first: tomorrow
# opening for booking later beats maintenance, which beats opening hours, which beats the past.
_DAY_REASON_ORDER = ("slot_too_far_ahead", "station_maintenance", "station_closed", "slot_in_past")


def day_unbookable_reason(
    day: date, now: datetime, tz: ZoneInfo, rules: BookingRules, opening: OpeningHours,
    maintenance: Sequence[Interval] = (),
) -> InvalidRequest | None:
    """Why no slot of the station-local ``day`` can be booked at ``now`` (None when one can).

    A day refused only for being too far ahead gets a ``SlotTooFarAhead`` whose ``opens_at``
    detail (ISO, UTC) is when its first open slot comes within the horizon.
    """
    refusals: dict[str, InvalidRequest] = {}
    first_open: datetime | None = None
    for start in day_slot_starts(day, tz, rules):
        try:
            validate_slot(start, now, tz, rules, opening, maintenance)
        except SlotTooFarAhead as err:
            try:  # is it open then, once within the horizon?
                validate_slot(start, start - rules.horizon, tz, rules, opening, maintenance)
            except InvalidRequest as later:
                refusals.setdefault(later.code, later)
            else:
                refusals.setdefault(err.code, err)
                first_open = first_open or start
        except InvalidRequest as err:
            refusals.setdefault(err.code, err)
        else:
            return None
    for code in _DAY_REASON_ORDER:
        if code in refusals:
            if code == "slot_too_far_ahead" and first_open is not None:
                hours = int(rules.horizon.total_seconds() // 3600)
                return SlotTooFarAhead(
                    f"Slots can be booked at most {hours} hours ahead: this day opens for booking at "
                    f"{(first_open - rules.horizon).astimezone(tz):%H:%M}.",
                    opens_at=(first_open - rules.horizon).astimezone(timezone.utc).isoformat())
            return refusals[code]
    return next(iter(refusals.values()), None)


# -- who gets which charger ---------------------------------------------------


@dataclass(frozen=True)
class ChargerCandidate:
    """A charger of the station as booking sees it."""

    id: int
    code: str
    fast: bool = True
    in_service: bool = True

    @property
    def bookable(self) -> bool:
        return self.fast and self.in_service


def chargers_taken(span: Interval, bookings: Iterable[tuple[int, Interval]]) -> set[int]:
    """The chargers with a booking whose time overlaps ``span`` (half-open: one ending at its start does not).

    Overlap, not equal starts: after a manager changes the slot length, a 60-minute
    slot 07:00-08:00 is taken on a charger booked 07:30-08:00 on the old grid.
    """
    return {charger_id for charger_id, booked in bookings if booked.overlaps(span)}


def booking_capacity(candidates: Sequence[ChargerCandidate], rules: BookingRules) -> int:
    """How many bookings one slot may have: bookable fast chargers less those kept for walk-ins."""
    return max(0, sum(1 for c in candidates if c.bookable) - rules.walkin_reserved_fast)


def choose_charger(
    requested_id: int | None,
    candidates: Sequence[ChargerCandidate],
    taken_ids: Iterable[int],
    rules: BookingRules,
) -> int:
    """The charger to assign for a slot: the one named, or the first free bookable by code.

    ``taken_ids`` are chargers holding a booking that overlaps the slot. Walk-in
    reservation is a count per slot, not particular chargers: at most
    ``booking_capacity`` bookings share one slot.
    """
    taken = set(taken_ids)
    bookable = sorted((c for c in candidates if c.bookable), key=lambda c: c.code)
    if requested_id is not None and requested_id not in {c.id for c in bookable}:
        raise ChargerNotBookable()
    if len(taken & {c.id for c in bookable}) >= booking_capacity(candidates, rules):
        raise SlotUnavailable("Every bookable fast charger is taken for that slot.")
    if requested_id is not None:
        if requested_id in taken:
            raise SlotUnavailable("That charger is already booked for that slot.")
        return requested_id
    for c in bookable:
        if c.id not in taken:
            return c.id
    raise SlotUnavailable("Every bookable fast charger is taken for that slot.")


# -- no-shows and suspension --------------------------------------------------


def suspended_until(no_show_times: Iterable[datetime], now: datetime, rules: BookingRules) -> datetime | None:
    """End of the booking suspension in force at ``now``, or None.

    Each no-show that makes ``no_show_limit`` no-shows within ``no_show_window``
    (itself included) suspends booking for ``suspension`` from that no-show.
    """
    times = sorted(t for t in no_show_times if t <= now)
    until = None
    for i, t in enumerate(times):
        recent = [u for u in times[: i + 1] if u > t - rules.no_show_window]
        if len(recent) >= rules.no_show_limit:
            end = t + rules.suspension
            if end > now and (until is None or end > until):
                until = end
    return until


# -- holds, check-in and no-show ----------------------------------------------


def hold_due_at(slot_start: datetime, rules: BookingRules) -> datetime:
    """When the charger is held for the slot (slot start less the hold lead)."""
    return slot_start - rules.hold_lead


def checkin_window(slot_start: datetime, rules: BookingRules, held_at: datetime | None = None) -> tuple[datetime, datetime]:
    """First and last instant (both inclusive) at which a session counts as check-in.

    For a delayed booking (held after its slot started) the grace runs from the
    moment the charger was held, so the driver never loses the slot to our delay.
    """
    end = slot_start + rules.checkin_grace
    if held_at is not None and held_at > slot_start:
        end = held_at + rules.checkin_grace
    return slot_start - rules.checkin_before, end


def counts_as_checkin(
    slot_start: datetime, session_start: datetime, session_end: datetime | None,
    rules: BookingRules, held_at: datetime | None = None,
) -> bool:
    """True when a session is open at any moment of the check-in window (device time).

    A session started earlier and still running at the window's start counts.
    """
    first, last = checkin_window(slot_start, rules, held_at)
    return session_start <= last and (session_end is None or session_end >= first)


def no_show_due(slot_start: datetime, now: datetime, rules: BookingRules, held_at: datetime | None = None) -> bool:
    """True once the check-in window has closed (strictly after its last instant)."""
    return now > checkin_window(slot_start, rules, held_at)[1]


@dataclass(frozen=True)
class ChargerNow:
    """A charger's live state as the hold decision sees it."""

    id: int
    code: str
    status: str  # OCPP 1.6 status of its connector
    in_service: bool = True
    online: bool = True
    fast: bool = True

    @property
    def free(self) -> bool:
        return self.fast and self.in_service and self.online and self.status == "Available"


@dataclass(frozen=True)
class HoldPlan:
    """What to do when a hold is due: ``hold`` on the assigned charger, ``move`` to another, or ``wait``."""

    action: str
    charger_id: int | None


def plan_hold(assigned_id: int | None, chargers: Sequence[ChargerNow], claimed_ids: Iterable[int]) -> HoldPlan:
    """Hold the assigned charger if it is free; else move to the first free one by code; else wait.

    ``claimed_ids`` are chargers other bookings of the same slot hold or are
    assigned. Nobody is ever cut off: a busy charger is never taken.
    """
    claimed = set(claimed_ids) - ({assigned_id} if assigned_id is not None else set())
    by_id = {c.id: c for c in chargers}
    if assigned_id in by_id and by_id[assigned_id].free and assigned_id not in claimed:
        return HoldPlan("hold", assigned_id)
    for c in sorted(chargers, key=lambda c: c.code):
        if c.free and c.id not in claimed and c.id != assigned_id:
            return HoldPlan("move", c.id)
    return HoldPlan("wait", None)


def rehome_on_fault(
    slot_start: datetime, now: datetime, candidates: Sequence[ChargerCandidate],
    broken_id: int, taken_ids: Iterable[int], rules: BookingRules,
) -> HoldPlan:
    """A booking on a charger that just went Faulted/Unavailable: ``move`` to another
    bookable charger with no booking for that slot, ``wait`` if its hold is already
    due (delayed as at hold time), or ``disrupted``; ``keep`` if beyond the look-ahead."""
    if slot_start > now + rules.fault_lookahead:
        return HoldPlan("keep", broken_id)
    taken = set(taken_ids)
    for c in sorted(candidates, key=lambda c: c.code):
        if c.bookable and c.id != broken_id and c.id not in taken:
            return HoldPlan("move", c.id)
    if now >= hold_due_at(slot_start, rules):
        return HoldPlan("wait", None)
    return HoldPlan("disrupted", None)
