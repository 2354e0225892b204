"""Contract messages for the bridge tests, built with chargeapp.telemetry (no topic strings written here)."""
from __future__ import annotations

from datetime import datetime, timedelta

from chargeapp import telemetry as t
from mqtt_bridge.client import Received
from tests.conftest import T0

STATION = "s1"


class Device:
    """A device that numbers its messages like the contract says: seq +1 per message within a boot."""

    def __init__(self, kind: str, device_id: str, station: str = STATION, boot: int = 1, seq: int = 0):
        self.kind, self.device_id, self.station, self.boot, self.seq = kind, device_id, station, boot, seq

    def _next(self, ts: datetime | None, seq: int | None):
        self.seq = seq if seq is not None else self.seq + 1
        return {"station": self.station, "device_id": self.device_id, "device_ts": ts or T0,
                "boot": self.boot, "seq": self.seq}

    def reboot(self) -> None:
        self.boot += 1
        self.seq = 0

    def status(self, status: str, connector: int = 1, ts=None, seq=None, error_code="NoError"):
        return t.StatusMessage(**self._next(ts, seq), connector=connector, status=status, error_code=error_code)

    def start(self, tx: int, meter_wh: int = 1_000_000, connector: int = 1, id_tag: str = "TAG-X", ts=None,
              seq=None, reservation_id=None):
        return t.TransactionEvent(**self._next(ts, seq), event="start", connector=connector, transaction_id=tx,
                                  meter_wh=meter_wh, id_tag=id_tag, reservation_id=reservation_id)

    def stop(self, tx: int, meter_wh: int = 1_010_000, connector: int = 1, ts=None, seq=None,
             reason="EVDisconnected"):
        return t.TransactionEvent(**self._next(ts, seq), event="stop", connector=connector, transaction_id=tx,
                                  meter_wh=meter_wh, id_tag="TAG-X", reason=reason)

    def meter(self, tx: int, energy_wh: int, power_w=50_000, connector: int = 1, ts=None, seq=None, soc=50):
        return t.MeterSample(**self._next(ts, seq), connector=connector, transaction_id=tx, energy_wh=energy_wh,
                             power_w=power_w, soc=soc)

    def result(self, request_id: str, command: str, status: str, ts=None, seq=None):
        return t.CommandResult(**self._next(ts, seq), request_id=request_id, command=command, status=status)

    def count(self, in_total: int, out_total: int, ts=None, seq=None):
        return t.DoorCount(**self._next(ts, seq), in_total=in_total, out_total=out_total)

    def passage(self, plate: str, direction: str, ts=None, seq=None):
        return t.GatePassage(**self._next(ts, seq), plate=plate, direction=direction)

    def online(self, online: bool):
        return t.OnlineMessage(device_kind=t.DeviceKind(self.kind), station=self.station, device_id=self.device_id,
                               online=online)


def charger(code="F1", **kw) -> Device:
    return Device("charger", code, **kw)


def sensor(code="D1", **kw) -> Device:
    return Device("door_sensor", code, **kw)


def gate(code="G-in", **kw) -> Device:
    return Device("gate", code, **kw)


_mid = {"n": 0}


def rx(message, received_at: datetime | None = None, retain: bool | None = None, connection: int = 1) -> Received:
    """The Received record of a contract message, as the MQTT client would hand it over."""
    topic, payload = t.format_message(message)
    if received_at is None and getattr(message, "device_ts", None) is not None:
        received_at = max(message.device_ts, T0) + timedelta(seconds=1)  # a moment after it was sent
    return raw(topic, payload, received_at, retain=t.parse_topic(topic).retained if retain is None else retain,
               connection=connection)


def raw(topic: str, payload: bytes, received_at: datetime | None = None, retain: bool = False,
        connection: int = 1) -> Received:
    _mid["n"] = _mid["n"] % 65535 + 1
    return Received(topic=topic, payload=payload, qos=1, retain=retain, received_at=received_at or T0 + timedelta(seconds=1),
                    mid=_mid["n"], connection=connection)
