"""Simulated OCPP 1.6J charge points for the gateway's tests, built with the same ``ocpp`` library.

Each runs on an event loop thread of its own so a test drives it synchronously,
like the scripted-day devices: ``cp.send(call.StartTransaction(...))`` returns the
gateway's answer (or raises its CALLERROR); CALLs from the gateway (commands) are
answered from ``answers`` and queued in ``received`` for the test to inspect.
"""
from __future__ import annotations

import asyncio
import base64
import queue
import threading
from datetime import datetime
from typing import Any

from ocpp.exceptions import NotImplementedError as OcppNotImplemented
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ocpp_gateway.translate import ocpp_time
from tests.bridge.support import read_count, wait_for

# Bounds, not timings: a passing wait ends as soon as its condition holds (~0.1 s for a message applied), so a
# generous bound costs nothing, and a 2-core CI box running heavy end-to-end tests beside these stalls for
# seconds now and then: 5 s was once not enough for a command on PostgreSQL, and once for a start applied.
WAIT = 15.0  # seconds: the bound of every wait on a charge point
# A command crosses the bridge's periodic work, its outbox, Mosquitto and the gateway.
COMMAND_WAIT = 20.0
F1_ONLINE = "SELECT online FROM chargers WHERE code = 'F1'"


def wait_offline_at_start(app) -> None:
    """Wait until the bridge has applied the 'false' a starting gateway publishes for every charger (none is connected
    yet). F1 is online in a new registry, so without this a wait for it to be online after it connects can pass
    before that 'false' arrives, which then takes it offline again for a while (a hold due then moves its booking)."""
    wait_for(lambda: read_count(app, F1_ONLINE) == 0, WAIT, "the gateway to say F1 is offline at start")


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


class SimChargePoint(ChargePoint):
    """The charge point's OCPP side: answers the central system's CALLs as told and records them."""

    def __init__(self, ocpp_id: str, connection, answers: dict[str, str], received: queue.Queue):
        super().__init__(ocpp_id, connection, response_timeout=WAIT)
        self.answers = answers
        self.received = received

    def _answer(self, action: str, payload: dict[str, Any]) -> str:
        self.received.put((action, payload))
        answer = self.answers.get(action, "Accepted")
        if answer == "CALLERROR":
            raise OcppNotImplemented(description=f"{action} is not implemented here")
        return answer

    @on(Action.reserve_now)
    def on_reserve_now(self, **payload):
        return call_result.ReserveNow(status=self._answer("ReserveNow", payload))

    @on(Action.cancel_reservation)
    def on_cancel_reservation(self, **payload):
        return call_result.CancelReservation(status=self._answer("CancelReservation", payload))

    @on(Action.remote_start_transaction)
    def on_remote_start(self, **payload):
        return call_result.RemoteStartTransaction(status=self._answer("RemoteStartTransaction", payload))

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, **payload):
        return call_result.RemoteStopTransaction(status=self._answer("RemoteStopTransaction", payload))

    @on(Action.change_availability)
    def on_change_availability(self, **payload):
        return call_result.ChangeAvailability(status=self._answer("ChangeAvailability", payload))


class ChargePointClient:
    """One simulated charger: connect, send CALLs, disconnect and reconnect; its own event loop thread."""

    def __init__(self, port: int, ocpp_id: str, password: str, answers: dict[str, str] | None = None):
        self.url = f"ws://127.0.0.1:{port}/ocpp/{ocpp_id}"
        self.ocpp_id, self.password = ocpp_id, password
        self.answers = answers or {}
        self.received: queue.Queue = queue.Queue()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"cp-{ocpp_id}", daemon=True)
        self.thread.start()
        self.ws = None
        self.cp: SimChargePoint | None = None
        self._reader: asyncio.Future | None = None

    def _run(self, coro, timeout: float = WAIT):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def connect(self) -> "ChargePointClient":
        async def opening():
            self.ws = await connect(self.url, subprotocols=["ocpp1.6"], open_timeout=WAIT,
                                    additional_headers={"Authorization": basic(self.ocpp_id, self.password)})
            self.cp = SimChargePoint(self.ocpp_id, self.ws, self.answers, self.received)
            self._reader = asyncio.ensure_future(self._read(self.cp))

        self._run(opening())
        assert self.ws.subprotocol == "ocpp1.6"
        return self

    @staticmethod
    async def _read(cp: SimChargePoint) -> None:
        try:
            await cp.start()
        except ConnectionClosed:
            pass

    def send(self, payload) -> Any:
        """Send one CALL and return the gateway's CALLRESULT payload (a CALLERROR raises)."""
        return self._run(self.cp.call(payload, suppress=False), timeout=WAIT + 1)

    def command(self, action: str) -> dict[str, Any]:
        """The next CALL of the gateway this charger answered (bounded wait)."""
        got, payload = self.received.get(timeout=COMMAND_WAIT)
        assert got == action, (got, payload)
        return payload

    def disconnect(self) -> None:
        if self.ws is not None:
            self._run(self.ws.close())
            self.ws = None

    def close(self) -> None:
        try:
            self.disconnect()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)


def at(moment: datetime) -> str:
    """An OCPP timestamp (UTC, Z) of an instant."""
    return ocpp_time(moment)
