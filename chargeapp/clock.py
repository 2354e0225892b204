"""Clocks: the only place that reads the time. Services take a clock; rules take ``now``."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that moves only when told to; for tests."""

    def __init__(self, at: datetime):
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._at = at
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        with self._lock:
            self._at = at

    def advance(self, **kwargs) -> datetime:
        with self._lock:
            self._at += timedelta(**kwargs)
            return self._at


class AcceleratedClock:
    """Simulated time: starts at ``start`` and runs ``speed`` times faster than the wall clock.

    Every process of the demo builds one from the same start, speed and epoch,
    so device timestamps, bookings and receipts agree.
    """

    def __init__(self, start: datetime, speed: float, epoch: float | None = None):
        self.start = start
        self.speed = speed
        self.epoch = time.time() if epoch is None else epoch

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.time() - self.epoch) * self.speed)


class Pacer:
    """How long-lived loops (the board's stream) measure their age and wait between rounds: the monotonic clock,
    and a wait that returns True when the loop must stop now. The default is real time; tests pass FakePacer so a
    stream's rounds, heartbeats and end do not depend on how busy the machine is."""

    def __init__(self, stop: threading.Event | None = None):
        self._stop = stop or threading.Event()

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float) -> bool:
        return self._stop.wait(seconds)


class FakePacer(Pacer):
    """Monotonic time that moves only by the loop's own waits (each wait returns at once); for tests."""

    def __init__(self, stop: threading.Event | None = None):
        super().__init__(stop)
        self.elapsed = 0.0
        self.waits = 0

    def monotonic(self) -> float:
        return self.elapsed

    def wait(self, seconds: float) -> bool:
        self.elapsed += seconds
        self.waits += 1
        return self._stop.is_set()


def clock_from_config(config) -> "SystemClock | AcceleratedClock":
    """The clock the deployment configured (real time unless a demo start is set)."""
    start = config.get("CHARGEAPP_CLOCK_START")
    if not start:
        return SystemClock()
    start_dt, _, epoch = start.partition("@")
    return AcceleratedClock(
        datetime.fromisoformat(start_dt), float(config.get("CHARGEAPP_CLOCK_SPEED") or 1.0),
        float(epoch) if epoch else None,
    )
