"""Half-open time intervals [start, end) on timezone-aware datetimes."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable


@dataclass(frozen=True, order=True)
class Interval:
    """A span of time [start, end); both ends timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self):
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("Interval needs timezone-aware datetimes")
        if self.end < self.start:
            raise ValueError(f"Interval ends before it starts: {self.start} > {self.end}")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def clip(self, start: datetime, end: datetime) -> "Interval | None":
        """The part of this interval inside [start, end), or None if they do not overlap."""
        s, e = max(self.start, start), min(self.end, end)
        return Interval(s, e) if s < e else None

    def overlaps(self, other: "Interval") -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, at: datetime) -> bool:
        return self.start <= at < self.end


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union of the intervals: overlapping or touching ones are joined."""
    out: list[Interval] = []
    for iv in sorted(intervals):
        if out and iv.start <= out[-1].end:
            if iv.end > out[-1].end:
                out[-1] = Interval(out[-1].start, iv.end)
        else:
            out.append(iv)
    return out


def total_duration(intervals: Iterable[Interval]) -> timedelta:
    """Length of the union of the intervals (overlaps counted once)."""
    return sum((iv.duration for iv in merge(intervals)), timedelta())
