"""Sinks without a broker: memory (tests) and JSON lines (``simulate --dry-run``)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from chargeapp import telemetry as t
from simulators.devices import Device


@dataclass(frozen=True)
class Record:
    """One thing a device sent (or the broker sent for it): simulated time, topic, payload, retain, and whether it was queued."""

    at: datetime
    device: str
    topic: str
    payload: bytes
    retain: bool
    queued: bool = False  # published while the link was down: it reaches the broker later
    will: bool = False    # the broker's last-will publication for the device


class MemorySink:
    """Keeps everything in a list, in publish order; ``retained`` holds the last retained payload per topic, as a broker would."""

    def __init__(self, scheduler=None):
        self.scheduler = scheduler
        self.records: list[Record] = []
        self.retained: dict[str, bytes] = {}

    def _now(self, device: Device) -> datetime:
        return device.now

    def _add(self, device: Device, topic: str, payload: bytes, retain: bool, *, will: bool = False) -> None:
        self.records.append(Record(self._now(device), device.key, topic, payload, retain,
                                   queued=not device.link_up and not will, will=will))
        if retain:
            self.retained[topic] = payload

    def connect(self, device: Device) -> None:
        self._add(device, device.online_topic, t.online_payload(True), True)

    def disconnect(self, device: Device, *, abrupt: bool) -> None:
        will = device.last_will
        self._add(device, will.topic, will.payload, will.retain, will=abrupt)

    def publish(self, device: Device, topic: str, payload: bytes, retain: bool) -> None:
        self._add(device, topic, payload, retain)

    def of(self, device_key: str) -> list[Record]:
        """The records of one device (``station.device``)."""
        return [r for r in self.records if r.device == device_key]


class JsonLinesSink:
    """Writes one JSON object per message: simulated time, topic, payload (as JSON), retain."""

    def __init__(self, out: IO[str]):
        self.out = out

    def _write(self, device: Device, topic: str, payload: bytes, retain: bool, **extra) -> None:
        line = {"at": device.now.isoformat(), "topic": topic, "payload": json.loads(payload), "retain": retain, **extra}
        self.out.write(json.dumps(line, ensure_ascii=False) + "\n")

    def connect(self, device: Device) -> None:
        self._write(device, device.online_topic, t.online_payload(True), True)

    def disconnect(self, device: Device, *, abrupt: bool) -> None:
        will = device.last_will
        self._write(device, will.topic, will.payload, True, will=abrupt)

    def publish(self, device: Device, topic: str, payload: bytes, retain: bool) -> None:
        self._write(device, topic, payload, retain, **({} if device.link_up else {"queued": True}))
