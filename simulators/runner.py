"""Running a simulation: against the shared accelerated clock with a broker, or in virtual time.

Real time: the simulation runs every step due by the clock's ``now``, then
waits on the broker sockets until the next step is due (at most 0.2 s of wall
time, so a command is acted on promptly); a command is handled at the clock's
``now``. Device timestamps are the simulated time of each step, so they agree
with the service when both read the same ``CHARGEAPP_CLOCK_START`` and speed.
"""
from __future__ import annotations

import signal
import sys
import time
from datetime import datetime, timedelta
from typing import IO

from simulators.mqtt import MqttNetwork
from simulators.simulation import Simulation


class Progress:
    """A status line: simulated time, speed, message totals and rates, what the stations are doing."""

    def __init__(self, sim: Simulation, *, speed: float, stream: IO[str] | None = None, interval: float | None = None,
                 extra=None):
        self.sim = sim
        self.speed = speed
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (1.0 if self.tty else 10.0)
        self.extra = extra
        self._last_wall = time.monotonic()
        self._last_messages = 0
        self._last_sim = sim.now

    def line(self) -> str:
        now_wall = time.monotonic()
        counts = self.sim.counts
        messages = counts.get("messages", 0)
        wall = max(now_wall - self._last_wall, 1e-6)
        sim_minutes = max((self.sim.now - self._last_sim).total_seconds() / 60, 1e-6)
        rate = (messages - self._last_messages) / wall
        per_sim_minute = (messages - self._last_messages) / sim_minutes
        self._last_wall, self._last_messages, self._last_sim = now_wall, messages, self.sim.now
        g = self.sim.gauges()
        tz = next(iter(self.sim.lives.values())).layout.tz if self.sim.lives else None
        shown = self.sim.now.astimezone(tz) if tz else self.sim.now
        parts = [
            f"{shown:%Y-%m-%d %H:%M:%S} x{self.speed:g}",
            f"{messages} msgs ({rate:.1f}/s, {per_sim_minute:.0f}/sim-min)",
            f"charging {g['charging']} plugged {g['plugged']} reserved {g['reserved']} waiting {g['waiting']}",
            f"lounge {g['lounge']}",
            f"faulted {g['faulted']} offline {g['down']}",
            f"bookings {counts.get('bookings', 0)} refused {counts.get('bookings_refused', 0)}"
            f" cancelled {counts.get('bookings_cancelled', 0)}",
            f"commands {counts.get('commands', 0)}",
        ]
        if self.extra is not None:
            parts.append(self.extra())
        return " | ".join(parts)

    def maybe_print(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_wall < self.interval:
            return
        text = self.line()
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def done(self) -> None:
        self.maybe_print(force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


class _Stop(Exception):
    pass


def _raise_stop(signum, frame):
    raise _Stop()


def run_realtime(sim: Simulation, clock, network: MqttNetwork, *, speed: float, until: datetime | None = None,
                 progress: Progress | None = None) -> None:
    """Run ``sim`` against ``clock`` until ``until`` (simulated) or SIGINT/SIGTERM; then every device goes offline cleanly."""
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        sim.start()
        while True:
            now = clock.now()
            if until is not None and now >= until:
                sim.run_until(until)
                break
            sim.run_until(now)
            if sim.collect_api_results():
                sim.run_until(clock.now())
            nxt = sim.next_time()
            wait = 0.2 if nxt is None else (nxt - clock.now()).total_seconds() / max(speed, 1e-9)
            network.poll(min(max(wait, 0.0), 0.2))
            if progress is not None:
                progress.maybe_print()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        try:
            sim.shutdown()
            network.drain(timeout=3.0)
        finally:
            network.close()
            if progress is not None:
                progress.done()


def run_virtual(sim: Simulation, until: datetime, *, progress: Progress | None = None,
                step: timedelta = timedelta(minutes=10)) -> None:
    """Run ``sim`` to ``until`` as fast as the CPU allows (no broker, no wall clock)."""
    sim.start()
    at = sim.now
    while at < until:
        at = min(at + step, until)
        sim.run_until(at)
        if progress is not None:
            progress.maybe_print()
    if progress is not None:
        progress.done()
