"""How connectors were used over a window of time: time by state, idle runs, a session's energy spread over
its duration, and the figures of one station-local day, which add up to any range of days.

Pure: no database and no clock; every window is a parameter. Datetimes are timezone-aware and all
arithmetic is on UTC instants; durations are summed as integer microseconds, so sums are exact. The rules
and their examples are in docs/rules.md ("Reports"); the decisions kept here are the ones that make a
range equal the sum of its days:

- A day is the station-local [midnight, next midnight) (``local_midnight``), so a day boundary is also a
  local-hour boundary and heat-map cells split at days add up.
- Energy is apportioned by differences of ``delivered_by``, which telescope: the parts of one session in
  adjacent windows add up to its total. A session stopped before it started has no energy.
- Sessions count on their start day.
- Idle time is the only figure crossing midnight: a day keeps the parts of the occupied runs touching its
  start and end (``IdleParts``) and ``fold_idle`` joins them as ``idle_time`` counts one window.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from typing import Iterable, NamedTuple, Sequence

from .charger import OCCUPIED_STATUSES, ConnectorStatus, StatusChange, status_intervals
from .intervals import Interval
from .tariff import round_half_up

UTC = timezone.utc
ZERO = timedelta()
HOUR = timedelta(hours=1)
US = timedelta(microseconds=1)
# The hourly figures of a day (a heat map sums them): in-service, occupied and charging microseconds per local hour.
HOURLY = ("in_service", "occupied", "charging")
# States that follow charging within a session (counted for a run carried into the window).
AFTER_CHARGING = frozenset({ConnectorStatus.SUSPENDED_EV, ConnectorStatus.SUSPENDED_EVSE, ConnectorStatus.FINISHING})

StatusIntervals = list[tuple[ConnectorStatus, Interval]]
DayWindow = tuple[date, datetime, datetime]  # a local day and its UTC window [lo, hi)


# -- days -------------------------------------------------------------------------------


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The UTC instant at which local ``day`` starts in ``tz``."""
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def day_windows(first: date, last: date, tz: tzinfo, start: datetime, end: datetime) -> list[DayWindow]:
    """Each local day ``first``..``last`` (inclusive) with its UTC window clipped to [start, end); days with
    nothing left (wholly after ``end``) are left out."""
    out = []
    day = first
    while day <= last:
        lo = max(local_midnight(day, tz), start)
        hi = min(local_midnight(day + timedelta(days=1), tz), end)
        if lo < hi:
            out.append((day, lo, hi))
        day += timedelta(days=1)
    return out


def whole_days(days: Iterable[DayWindow], tz: tzinfo) -> list[date]:
    """The days of ``days`` whose window runs to the next local midnight (not cut by the window's end)."""
    return [day for day, _, hi in days if hi == local_midnight(day + timedelta(days=1), tz)]


def adjacent_runs(days: Sequence[DayWindow]) -> list[list[DayWindow]]:
    """The day windows grouped into runs where each window starts where the previous one ends."""
    runs: list[list[DayWindow]] = []
    for d in days:
        if runs and runs[-1][-1][2] == d[1]:
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


def merged_windows(windows: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The union of the windows [lo, hi), sorted; overlapping or touching ones are joined."""
    out: list[list] = []
    for lo, hi in sorted(windows):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def hour_slots(start: datetime, end: datetime, tz: tzinfo) -> tuple[list[datetime], list[tuple[int, int]]]:
    """The local hours of [start, end): their UTC starts (then ``end``) and their (weekday, hour) in ``tz``."""
    starts, labels = [], []
    t = start
    while t < end:
        local = t.astimezone(tz)
        starts.append(t)
        labels.append((local.weekday(), local.hour))
        t = min(local.replace(minute=0, second=0, microsecond=0).astimezone(UTC) + HOUR, end)
    return starts + [end], labels


# -- time in states -----------------------------------------------------------------------


def minutes(delta: timedelta) -> float:
    """A duration in minutes, rounded to 2 decimals."""
    return round(delta.total_seconds() / 60, 2)


def share(part: timedelta, whole: timedelta) -> float | None:
    """``part / whole`` rounded to 4 decimals; None without any ``whole``."""
    return round(part / whole, 4) if whole > ZERO else None


@dataclass
class StateTime:
    """Time of one or more connectors in a window, by kind of state."""

    known: timedelta = ZERO
    faulted: timedelta = ZERO
    unavailable: timedelta = ZERO
    occupied: timedelta = ZERO
    charging: timedelta = ZERO
    idle: timedelta = ZERO

    @property
    def in_service(self) -> timedelta:
        """Known time less Faulted and Unavailable time."""
        return self.known - self.faulted - self.unavailable

    def count(self, status: ConnectorStatus, duration: timedelta) -> None:
        """Add ``duration`` spent in ``status`` (idle time is not a state: see ``idle_time``)."""
        self.known += duration
        if status == ConnectorStatus.FAULTED:
            self.faulted += duration
        elif status == ConnectorStatus.UNAVAILABLE:
            self.unavailable += duration
        if status in OCCUPIED_STATUSES:
            self.occupied += duration
        if status == ConnectorStatus.CHARGING:
            self.charging += duration

    def add(self, other: "StateTime") -> None:
        for k in ("known", "faulted", "unavailable", "occupied", "charging", "idle"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def share(self, measure: str) -> float | None:
        """The "occupied" or "charging" share of in-service time (0..1, 4 decimals; None without in-service time)."""
        return share(self.occupied if measure == "occupied" else self.charging, self.in_service)


def connector_time(intervals: StatusIntervals, window_start: datetime) -> StateTime:
    """One connector's time by state, and its idle time, from its status intervals inside a window that starts
    at ``window_start``."""
    t = StateTime()
    for status, iv in intervals:
        t.count(status, iv.duration)
    t.idle = idle_time(intervals, window_start)
    return t


def slot_times(connectors: Iterable[StatusIntervals], bounds: list[datetime]) -> dict[ConnectorStatus, list[int]]:
    """Every connector's time per status in each slot [bounds[k], bounds[k+1]) (ascending), in microseconds.

    Each interval adds its partial first and last slot directly and marks the whole slots
    between in a difference array, so the cost is a binary search per interval and a step
    per slot (not per slot of every interval). Integer microseconds from ``bounds[0]``:
    exact, and quick to compare. Intervals must lie inside bounds[0]..bounds[-1].
    """
    n = len(bounds) - 1
    origin = bounds[0]
    edges = [(b - origin) // US for b in bounds]
    partial: dict[ConnectorStatus, list[int]] = {}
    whole: dict[ConnectorStatus, list[int]] = {}
    for intervals in connectors:
        for status, iv in intervals:
            lo, hi = (iv.start - origin) // US, (iv.end - origin) // US
            if hi <= lo or n < 1:
                continue
            part = partial.get(status)
            if part is None:
                part = partial[status] = [0] * n
            i = bisect_right(edges, lo) - 1
            j = bisect_left(edges, hi) - 1
            if i == j:
                part[i] += hi - lo
                continue
            part[i] += edges[i + 1] - lo
            part[j] += hi - edges[j]
            if j > i + 1:
                diff = whole.get(status)
                if diff is None:
                    diff = whole[status] = [0] * (n + 1)
                diff[i + 1] += 1
                diff[j] -= 1
    for status, part in partial.items():
        diff, running = whole.get(status), 0
        if diff is None:
            continue
        for k in range(n):
            running += diff[k]
            if running:
                part[k] += (edges[k + 1] - edges[k]) * running
    return partial


def hour_cells(connectors: Iterable[StatusIntervals], start: datetime, end: datetime,
               tz: tzinfo) -> list[list[StateTime]]:
    """Every connector's time by state in [start, end), by local weekday (0 Monday) x hour in ``tz``."""
    bounds, labels = hour_slots(start, end, tz)
    cells = [[StateTime() for _ in range(24)] for _ in range(7)]
    for status, times in slot_times(connectors, bounds).items():
        for (weekday, hour), us in zip(labels, times):
            if us:
                cells[weekday][hour].count(status, timedelta(microseconds=us))
    return cells


def day_times(connectors: Iterable[StatusIntervals], days: Sequence[DayWindow]) -> dict[date, StateTime]:
    """Every connector's time by state per day of ``days`` (adjacent windows, ascending)."""
    times = {day: StateTime() for day, _, _ in days}
    if days:
        bounds = [lo for _, lo, _ in days] + [days[-1][2]]
        for status, per_day in slot_times(connectors, bounds).items():
            for (day, _, _), us in zip(days, per_day):
                if us:
                    times[day].count(status, timedelta(microseconds=us))
    return times


# -- idle runs ----------------------------------------------------------------------------


def occupied_runs(intervals: StatusIntervals) -> list[StatusIntervals]:
    """The occupied runs: maximal groups of adjacent intervals in occupied states."""
    runs, run = [], []
    for status, iv in intervals:
        if status in OCCUPIED_STATUSES and (not run or run[-1][1].end == iv.start):
            run.append((status, iv))
            continue
        if run:
            runs.append(run)
        run = [(status, iv)] if status in OCCUPIED_STATUSES else []
    if run:
        runs.append(run)
    return runs


def run_idle(run: StatusIntervals, window_start: datetime) -> timedelta:
    """Idle time of one occupied run: the time after its last Charging interval; with no Charging, a run
    starting at ``window_start`` (plugged in before the window: it may have charged then) counts its
    SuspendedEV/SuspendedEVSE/Finishing time, any other run nothing."""
    if not run:
        return ZERO
    charging_ends = [iv.end for status, iv in run if status == ConnectorStatus.CHARGING]
    if charging_ends:
        return run[-1][1].end - charging_ends[-1]
    if run[0][1].start == window_start:
        return sum((iv.duration for status, iv in run if status in AFTER_CHARGING), ZERO)
    return ZERO


def idle_time(intervals: StatusIntervals, window_start: datetime) -> timedelta:
    """Idle time of one connector's status intervals inside a window starting at ``window_start``: ``run_idle``
    summed over its occupied runs."""
    return sum((run_idle(run, window_start) for run in occupied_runs(intervals)), ZERO)


class IdleParts(NamedTuple):
    """One connector-day's idle time, in parts that join across midnight (microseconds)."""

    lead: int = 0  # an occupied run from the day's start: 0 none, 1 it ends inside the day, 2 it fills the day
    lead_charging: bool = False  # ...has Charging in it
    lead_tail_us: int = 0  # ...its time after its last Charging
    lead_occupied_us: int = 0  # ...its length
    lead_after_us: int = 0  # ...its SuspendedEV/SuspendedEVSE/Finishing time
    mid_idle_us: int = 0  # idle time of the runs touching neither end
    trail: bool = False  # an occupied run (not the lead) to the day's end
    trail_charging: bool = False
    trail_tail_us: int = 0


def run_facts(run: StatusIntervals) -> tuple[bool, int, int, int]:
    """(has Charging, time after its last Charging, length, SuspendedEV/SuspendedEVSE/Finishing time) in µs."""
    charging_ends = [iv.end for status, iv in run if status == ConnectorStatus.CHARGING]
    tail = (run[-1][1].end - charging_ends[-1]) // US if charging_ends else 0
    length = sum(iv.duration // US for _, iv in run)
    after = sum(iv.duration // US for status, iv in run if status in AFTER_CHARGING)
    return bool(charging_ends), tail, length, after


def idle_parts(intervals: StatusIntervals, lo: datetime, hi: datetime) -> IdleParts:
    """The idle parts of one connector's status intervals inside the day window [lo, hi)."""
    runs = occupied_runs(intervals)
    if not runs:
        return IdleParts()
    has_lead = runs[0][0][1].start == lo
    has_trail = runs[-1][-1][1].end == hi
    whole = has_lead and has_trail and len(runs) == 1
    inner = runs[1 if has_lead else 0:len(runs) - (1 if has_trail and not whole else 0)] if not whole else []
    mid = sum(run_idle(run, lo) // US for run in inner)  # an inner run never starts at lo
    lead_facts = run_facts(runs[0]) if has_lead else (False, 0, 0, 0)
    trail_facts = run_facts(runs[-1]) if has_trail and not whole else (False, 0, 0, 0)
    return IdleParts(
        lead=2 if whole else int(has_lead), lead_charging=lead_facts[0], lead_tail_us=lead_facts[1],
        lead_occupied_us=lead_facts[2], lead_after_us=lead_facts[3], mid_idle_us=mid,
        trail=has_trail and not whole, trail_charging=trail_facts[0], trail_tail_us=trail_facts[1],
    )


def fold_idle(parts: Iterable[IdleParts]) -> int:
    """Idle µs of one connector over consecutive days (the first starts the range), as ``idle_time`` counts the
    range in one window."""
    total, state = 0, None  # an open run: (has Charging, time after it, after-charging time, starts the range)

    def close(run) -> int:
        if run is None:
            return 0
        charged, tail, after, at_range_start = run
        return tail if charged else (after if at_range_start else 0)

    for i, p in enumerate(parts):
        if p.lead:
            if state is None:
                state = (p.lead_charging, p.lead_tail_us, p.lead_after_us, i == 0)
            else:
                charged, tail, after, at_range_start = state
                if p.lead_charging:
                    charged, tail = True, p.lead_tail_us
                elif charged:
                    tail += p.lead_occupied_us
                state = (charged, tail, after + p.lead_after_us, at_range_start)
            if p.lead == 2:
                continue
        total += close(state) + p.mid_idle_us
        state = (p.trail_charging, p.trail_tail_us, 0, False) if p.trail else None
    return total + close(state)


def fold_sparse(first: date, parts: Iterable[tuple[date, IdleParts]]) -> int:
    """``fold_idle`` of a range starting on ``first`` whose days not in ``parts`` have no idle parts.

    An empty day closes any open run and leaves nothing open, so a run of them folds like one: one empty
    part stands for each gap (and for the range's first day when it has none), and a year of a connector
    with a few runs over midnight folds a few parts, not 365.
    """
    seq, prev = [], -1
    for day, p in sorted(parts, key=lambda dp: dp[0]):
        i = (day - first).days
        if i > prev + 1:
            seq.append(IdleParts())
        seq.append(p)
        prev = i
    return fold_idle(seq)


# -- energy ---------------------------------------------------------------------------------


class SessionRecord(NamedTuple):
    """A recorded charging session as the usage rules read it (UTC times; meter values in Wh)."""

    id: int
    charger_id: int
    started_at: datetime
    stopped_at: datetime | None
    start_meter_wh: int | None
    stop_meter_wh: int | None
    connector_id: int


def metered_wh(s: SessionRecord) -> int | None:
    """Wh of a closed session with both meter values (a decreasing register counts 0); None otherwise.

    A session stopped before it started (a charger's clock jumped) has no energy: its Wh would otherwise
    land on its start day in one report and on no day in another, and days must add up to any range.
    """
    if s.stopped_at is None or s.start_meter_wh is None or s.stop_meter_wh is None:
        return None
    if s.stopped_at < s.started_at:
        return None
    return max(0, s.stop_meter_wh - s.start_meter_wh)


def delivered_by(s: SessionRecord, wh: int, t: datetime) -> int:
    """Of the session's ``wh``, the Wh delivered before ``t``: spread evenly over its duration, rounded half-up."""
    if t <= s.started_at:
        return 0
    if t >= s.stopped_at:
        return wh
    return round_half_up(wh * ((t - s.started_at) // US), (s.stopped_at - s.started_at) // US)


def wh_between(s: SessionRecord, start: datetime, end: datetime) -> int:
    """The session's metered Wh apportioned to [start, end); the parts of adjacent windows add up to its total."""
    wh = metered_wh(s)
    if wh is None:
        return 0
    return delivered_by(s, wh, end) - delivered_by(s, wh, start)


# -- the figures of a day -----------------------------------------------------------------------


@dataclass
class DayFigures:
    """One connector's figures of one station-local day window [lo, hi): what a rollup row holds (microseconds)."""

    known_us: int = 0
    faulted_us: int = 0
    unavailable_us: int = 0
    occupied_us: int = 0
    charging_us: int = 0
    idle: IdleParts = IdleParts()
    hours: dict[str, list[int]] = field(default_factory=lambda: {k: [0] * 24 for k in HOURLY})
    energy_wh: int = 0
    sessions: int = 0
    lengths_us: list[int] = field(default_factory=list)


def split_by_day(intervals: StatusIntervals, days: Sequence[DayWindow]) -> dict[date, StatusIntervals]:
    """The intervals (ascending) clipped to each day window (ascending, adjacent or not)."""
    out, i = {}, 0
    for day, lo, hi in days:
        while i < len(intervals) and intervals[i][1].end <= lo:
            i += 1
        part, j = [], i
        while j < len(intervals) and intervals[j][1].start < hi:
            clipped = intervals[j][1].clip(lo, hi)
            if clipped is not None:
                part.append((intervals[j][0], clipped))
            j += 1
        out[day] = part
    return out


def day_figures(intervals: StatusIntervals, lo: datetime, hi: datetime, tz: tzinfo,
                hours: bool = True) -> DayFigures:
    """A connector-day's times from its intervals inside [lo, hi): by kind, by local hour in ``tz`` (``hours``;
    zeros if False), idle parts. Energy and sessions are added by ``add_sessions``."""
    f = DayFigures(idle=idle_parts(intervals, lo, hi))
    for status, iv in intervals:
        us = iv.duration // US
        f.known_us += us
        f.faulted_us += us if status == ConnectorStatus.FAULTED else 0
        f.unavailable_us += us if status == ConnectorStatus.UNAVAILABLE else 0
        f.occupied_us += us if status in OCCUPIED_STATUSES else 0
        f.charging_us += us if status == ConnectorStatus.CHARGING else 0
    if not hours:
        return f
    bounds, labels = hour_slots(lo, hi, tz)
    in_service, occupied, charging = f.hours["in_service"], f.hours["occupied"], f.hours["charging"]
    for status, per_slot in slot_times([intervals], bounds).items():
        serving = status not in (ConnectorStatus.FAULTED, ConnectorStatus.UNAVAILABLE)
        for (_, hour), us in zip(labels, per_slot):
            if us:
                in_service[hour] += us if serving else 0
                occupied[hour] += us if status in OCCUPIED_STATUSES else 0
                charging[hour] += us if status == ConnectorStatus.CHARGING else 0
    return f


def span_day_figures(history: list[StatusChange], span: Sequence[DayWindow], tz: tzinfo,
                     hours: bool = True) -> dict[date, DayFigures]:
    """The figures of each day of ``span`` (adjacent day windows) from a connector's status history of it: the
    change in effect at the span's start, then the changes inside it, in order."""
    lo, hi = span[0][1], span[-1][2]
    intervals = status_intervals(history, lo, hi)
    return {day: day_figures(part, d_lo, d_hi, tz, hours)
            for (day, d_lo, d_hi), (_, part) in zip(span, split_by_day(intervals, span).items())}


def add_sessions(figures: dict[tuple[int, date], DayFigures],
                 windows: dict[tuple[int, date], tuple[datetime, datetime]],
                 sessions: Iterable[SessionRecord], tz: tzinfo, start: datetime, end: datetime) -> None:
    """Add each session's energy (apportioned), start and length to the (connector id, day) figures it touches
    in [start, end); ``windows`` are those figures' day windows. A session read twice must be passed once."""
    for s in sessions:
        wh = metered_wh(s)
        day = max(s.started_at, start).astimezone(tz).date()
        last = min(s.stopped_at, end).astimezone(tz).date() if wh is not None else day
        while day <= last:
            key = (s.connector_id, day)
            f = figures.get(key)
            if f is not None:
                lo, hi = windows[key]
                if wh is not None:
                    f.energy_wh += delivered_by(s, wh, hi) - delivered_by(s, wh, lo)
                if lo <= s.started_at < hi:
                    f.sessions += 1
                    if s.stopped_at is not None:
                        f.lengths_us.append((s.stopped_at - s.started_at) // US)
            day += timedelta(days=1)
