"""A discrete-event scheduler over simulated time.

Everything the simulators do is an action scheduled at a simulated instant.
Actions at the same instant run in the order they were scheduled, so a run is a
pure function of its start, its seed and the commands fed in: the same inputs
give the same messages whether time is driven by a wall clock or by a test.
"""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


@dataclass(order=True)
class Event:
    """A scheduled action; ``cancel()`` it to skip it."""

    at: datetime
    order: int
    action: Callable[..., Any] = field(compare=False)
    args: tuple = field(compare=False, default=())
    cancelled: bool = field(compare=False, default=False)

    def cancel(self) -> None:
        """Skip this action when its time comes (harmless if it already ran)."""
        self.cancelled = True


class Scheduler:
    """Runs actions in simulated-time order; ``now`` is the time of the action running (aware datetime)."""

    def __init__(self, start: datetime):
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("the scheduler needs a timezone-aware start")
        self.start = start
        self.now = start
        self._queue: list[Event] = []
        self._order = itertools.count()
        self.executed = 0

    def at(self, when: datetime, action: Callable[..., Any], *args: Any) -> Event:
        """Run ``action(*args)`` at ``when``; a time in the past runs at ``now`` (actions never go back in time)."""
        event = Event(max(when, self.now), next(self._order), action, args)
        heapq.heappush(self._queue, event)
        return event

    def after(self, delay: timedelta | float, action: Callable[..., Any], *args: Any) -> Event:
        """Run ``action(*args)`` ``delay`` (a timedelta or seconds, at least 0) after now."""
        if not isinstance(delay, timedelta):
            delay = timedelta(seconds=float(delay))
        return self.at(self.now + max(delay, timedelta(0)), action, *args)

    def next_time(self) -> datetime | None:
        """The time of the next pending action, or None when nothing is scheduled."""
        while self._queue and self._queue[0].cancelled:
            heapq.heappop(self._queue)
        return self._queue[0].at if self._queue else None

    def run_until(self, until: datetime) -> int:
        """Run every action due at or before ``until``, in order, then set ``now`` to ``until``; returns how many ran."""
        ran = 0
        while True:
            due = self.next_time()
            if due is None or due > until:
                break
            event = heapq.heappop(self._queue)
            self.now = event.at
            event.action(*event.args)
            ran += 1
        self.now = max(self.now, until)
        self.executed += ran
        return ran

    def __len__(self) -> int:
        return sum(1 for e in self._queue if not e.cancelled)
