"""Lounge occupancy: passages from cumulative door counters, zone counts, baselines.

Pure rules (stdlib only, no clock reads). Vocabulary:

- a *reading* is one ``doors/{sensor}/count`` message: cumulative ``in_total`` and
  ``out_total`` since the sensor's last reboot (``boot``), numbered by ``seq``;
- *passages* are the people a reading adds over the last applied reading;
- a *zone change* is the signed effect of passages on one zone, stamped with the
  reading's (effective) time; the raw changes are kept, the count is derived;
- a *baseline* is a known count at an instant (a manager's set, or the nightly
  reset to 0); changes stamped at or before it do not move it.

The rules, with worked examples and the decisions taken where the brief is
open, are in docs/rules.md ("Lounge occupancy").
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterable
from zoneinfo import ZoneInfo


def _require_aware(name: str, value: datetime) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _require_count(name: str, value: int) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


# --------------------------------------------------------------------------- counters


@dataclass(frozen=True)
class CounterReading:
    """One cumulative reading of a directional door counter (totals since its reboot ``boot``)."""

    boot: int
    seq: int
    in_total: int
    out_total: int
    at: datetime

    def __post_init__(self):
        for name in ("boot", "seq", "in_total", "out_total"):
            _require_count(name, getattr(self, name))
        _require_aware("at", self.at)


@dataclass(frozen=True)
class CounterState:
    """The last applied reading of one sensor: what the next reading is compared with."""

    boot: int
    seq: int
    in_total: int
    out_total: int

    @classmethod
    def of(cls, reading: CounterReading) -> "CounterState":
        """The state a reading leaves behind once applied."""
        return cls(reading.boot, reading.seq, reading.in_total, reading.out_total)


@dataclass(frozen=True)
class Passages:
    """People through one door: ``entered`` crossed in its "in" direction, ``left`` its "out"."""

    entered: int
    left: int

    @property
    def none(self) -> bool:
        """True when nobody passed in either direction."""
        return self.entered == 0 and self.left == 0


NO_PASSAGES = Passages(0, 0)


def _forward(old: int, new: int) -> int:
    # A total that went down without a reboot (drift, glitch, wrap) adds nothing;
    # the caller adopts the new total, so counting resumes from it.
    return new - old if new > old else 0


def passages_since(
    state: CounterState | None, reading: CounterReading
) -> tuple[CounterState, Passages] | None:
    """New passages a cumulative reading carries over ``state`` and the state to keep; None = stale or duplicate, apply nothing.

    Same boot and seq <= state.seq, or an older boot: None. Newer boot: all its
    totals are new (they count from zero since that reboot). Same boot, higher
    seq: the differences; a total that went down gives 0 and is adopted. No state
    yet (first reading ever from the sensor): a baseline with no passages, except
    seq == 1, whose totals (since a boot we saw from its start) are all passages.
    """
    if state is None:
        passages = Passages(reading.in_total, reading.out_total) if reading.seq == 1 else NO_PASSAGES
        return CounterState.of(reading), passages
    if reading.boot < state.boot:
        return None
    if reading.boot > state.boot:
        return CounterState.of(reading), Passages(reading.in_total, reading.out_total)
    if reading.seq <= state.seq:
        return None
    return CounterState.of(reading), Passages(
        _forward(state.in_total, reading.in_total), _forward(state.out_total, reading.out_total)
    )


# --------------------------------------------------------------------------- zones


@dataclass(frozen=True)
class ZoneChange:
    """A signed change of one zone's head count (people), stamped with the reading's time."""

    at: datetime
    delta: int

    def __post_init__(self):
        _require_aware("at", self.at)
        if type(self.delta) is not int:
            raise ValueError(f"delta must be an int, got {self.delta!r}")


@dataclass(frozen=True)
class Baseline:
    """A known head count of a zone at an instant: a manager's set count, or the nightly reset (0)."""

    at: datetime
    count: int

    def __post_init__(self):
        _require_aware("at", self.at)
        _require_count("count", self.count)


def zone_deltas(passages: Passages, zone_in: str, zone_out: str | None) -> dict[str, int]:
    """Net head-count change per zone for one door: "in" moves people into zone_in and out of zone_out (None = outside); zones with no net change are omitted."""
    if zone_in == zone_out:
        raise ValueError(f"a door cannot count into and out of the same zone {zone_in!r}")
    net = passages.entered - passages.left
    deltas: dict[str, int] = {}
    if net:
        deltas[zone_in] = net
        if zone_out is not None:
            deltas[zone_out] = -net
    return deltas


def door_changes(
    passages: Passages, at: datetime, zone_in: str, zone_out: str | None
) -> dict[str, ZoneChange]:
    """The zone changes one reading's passages make, stamped ``at`` (the reading's effective time); empty when nothing moved."""
    _require_aware("at", at)
    return {zone: ZoneChange(at, delta) for zone, delta in zone_deltas(passages, zone_in, zone_out).items()}


def _change_order(change: ZoneChange) -> tuple[datetime, int]:
    # Within one instant the true order is unknowable; entries first means the
    # zero floor never swallows a person who is counted as leaving at that instant.
    return (change.at, -change.delta)


def zone_count(baseline: Baseline | None, changes: Iterable[ZoneChange]) -> int:
    """Head count of a zone: the baseline (0 if none) plus later changes in time order, floored at 0 after every step.

    Changes stamped at or before the baseline's instant are ignored. Changes at
    the same instant apply increases first. Example: baseline 0, then -1 (an exit
    whose entry was missed), then +2: the count is 2, not 1.
    """
    count = baseline.count if baseline is not None else 0
    since = baseline.at if baseline is not None else None
    relevant = [c for c in changes if since is None or c.at > since]
    for change in sorted(relevant, key=_change_order):
        count = max(0, count + change.delta)
    return count


# --------------------------------------------------------------------------- baselines


def _local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    # fold=0 picks the first of a repeated wall time; a wall time skipped by a
    # DST jump maps (through UTC) to the same distance after the jump.
    wall = datetime.combine(day, at.replace(tzinfo=None, fold=0), tzinfo=tz)
    return wall.astimezone(timezone.utc).astimezone(tz)


def latest_reset(now: datetime, reset_at: time | None, tz: ZoneInfo) -> datetime | None:
    """Most recent nightly reset instant <= now, in ``tz`` (the station's zone), at wall time ``reset_at``; None when reset is off.

    A repeated wall time (DST fall-back) resets at its first occurrence; a skipped
    one (spring-forward) resets as many minutes after the jump as it lies into the gap.
    """
    _require_aware("now", now)
    if reset_at is None:
        return None
    if reset_at.tzinfo is not None:
        raise ValueError("reset_at is a wall time in the station's zone; pass it without tzinfo")
    today = now.astimezone(tz).date()
    candidate = _local_instant(today, reset_at, tz)
    if candidate > now:
        candidate = _local_instant(today - timedelta(days=1), reset_at, tz)
    return candidate


def effective_baseline(
    manual: Baseline | None, now: datetime, reset_at: time | None, tz: ZoneInfo
) -> Baseline | None:
    """The baseline in force at ``now``: the later of the manager's set count and the last nightly reset (count 0); the manager's wins a tie; a set stamped after ``now`` is not yet in force."""
    _require_aware("now", now)
    candidates: list[Baseline] = []
    reset = latest_reset(now, reset_at, tz)
    if reset is not None:
        candidates.append(Baseline(reset, 0))
    if manual is not None and manual.at <= now:
        candidates.append(manual)
    if not candidates:
        return None
    # The manual set is listed last and compared with >=, so it wins a tie: a
    # manager who counts heads at reset time knows better than the reset's 0.
    best = candidates[0]
    for candidate in candidates[1:]:
        if candidate.at >= best.at:
            best = candidate
    return best


# --------------------------------------------------------------------------- display


@dataclass(frozen=True)
class ZoneOccupancy:
    """What a zone shows: head count, capacity (people) and whether the count can be trusted."""

    count: int
    capacity: int
    uncertain: bool

    @property
    def free(self) -> int:
        """Places left (people), never negative: 0 when the zone is at or over capacity."""
        return max(0, self.capacity - self.count)

    @property
    def full(self) -> bool:
        """True when the count has reached or passed capacity."""
        return self.count >= self.capacity


def zone_occupancy(count: int, capacity: int, sensors_online: Iterable[bool]) -> ZoneOccupancy:
    """A zone's display state: ``count`` and ``capacity`` in people; uncertain while any of its sensors (counting into or out of it) is offline; a zone with no sensors is not uncertain."""
    _require_count("count", count)
    _require_count("capacity", capacity)
    return ZoneOccupancy(count, capacity, uncertain=not all(sensors_online))
