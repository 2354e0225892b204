"""The handshake: only registered chargers with their own password get a WebSocket (OCPP security profiles 1 and 2)."""
from __future__ import annotations

import asyncio
import ssl
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import InvalidStatus
from websockets.asyncio.client import connect
from websockets.sync.client import connect as connect_blocking

from tests.bridge.support import read_count, wait_for
from tests.ocpp.support import F1_ONLINE, WAIT, basic, wait_offline_at_start

pytestmark = pytest.mark.e2e


def open_handshake(url: str, authorization: str | None, subprotocols=("ocpp1.6",), tls: ssl.SSLContext | None = None):
    """(status, subprotocol) of a WebSocket handshake with the gateway: 101 and the agreed subprotocol when it opens.

    The asyncio client, not websockets' sync one: the sync client reads on a thread of its own while the caller
    writes, and one ``ssl.SSLSocket`` used from two threads at once fails now and then ("[SSL] internal error" in
    ``sendall``, seen once in CI). A charge point's own stack is one event loop, like this."""
    headers = {"Authorization": authorization} if authorization else {}

    async def attempt():
        try:
            async with connect(url, ssl=tls, subprotocols=list(subprotocols) or None,
                               additional_headers=headers, open_timeout=WAIT) as ws:
                return 101, ws.subprotocol
        except InvalidStatus as exc:
            return exc.response.status_code, None

    # On a thread of its own, as the simulated charge points run: in this process the browser tests' Playwright
    # (sync API) may hold a running event loop in the main thread, where asyncio.run() refuses to start.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, attempt()).result()


def handshake_status(port: int, path: str, authorization: str | None, subprotocols=("ocpp1.6",)) -> int:
    """The HTTP status the gateway answers a WebSocket handshake with (101 when it opens)."""
    return open_handshake(f"ws://127.0.0.1:{port}{path}", authorization, subprotocols)[0]


def test_wrong_password_unknown_charger_and_borrowed_identity_are_refused_with_401(
        app, start_gateway, f1_credentials):
    ocpp_id, password = f1_credentials
    port = start_gateway().port
    path = f"/ocpp/{ocpp_id}"
    assert handshake_status(port, path, basic(ocpp_id, password)) == 101
    assert handshake_status(port, path, basic(ocpp_id, password + "x")) == 401
    assert handshake_status(port, path, None) == 401
    assert handshake_status(port, "/ocpp/s1.F9", basic("s1.F9", password)) == 401  # not in the registry
    assert handshake_status(port, "/ocpp/s1.F2", basic("s1.F2", password)) == 401  # registered, but no OCPP password
    assert handshake_status(port, path, basic("s1.F2", password)) == 401  # username is not the chargePointId
    assert handshake_status(port, path, basic(ocpp_id, password), subprotocols=()) == 400
    assert handshake_status(port, f"/other/{ocpp_id}", basic(ocpp_id, password)) == 404


def test_a_wrong_password_leaves_the_charger_offline_and_a_right_one_brings_it_online(
        app, start_gateway, f1_credentials, bridge):
    ocpp_id, password = f1_credentials
    gateway = start_gateway()
    online = F1_ONLINE
    wait_offline_at_start(app)
    assert handshake_status(gateway.port, f"/ocpp/{ocpp_id}", basic(ocpp_id, "wrong-password-123")) == 401
    assert gateway.counters.get("refused_401") == 1 and gateway.counters.get("connections") == 0
    with connect_blocking(f"ws://127.0.0.1:{gateway.port}/ocpp/{ocpp_id}", subprotocols=["ocpp1.6"],
                 additional_headers={"Authorization": basic(ocpp_id, password)}, open_timeout=WAIT):
        wait_for(lambda: read_count(app, online) == 1, WAIT, "F1 online while its WebSocket is open")
    wait_for(lambda: read_count(app, online) == 0, WAIT, "F1 offline once its WebSocket closed")


def test_security_profile_2_is_the_same_basic_auth_over_wss(app, tmp_path, start_gateway, f1_credentials):
    cert, key = tmp_path / "gateway.pem", tmp_path / "gateway.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    ocpp_id, password = f1_credentials
    port = start_gateway(certfile=str(cert), keyfile=str(key)).port
    trust = ssl.create_default_context(cafile=str(cert))
    url = f"wss://127.0.0.1:{port}/ocpp/{ocpp_id}"
    assert open_handshake(url, basic(ocpp_id, password), tls=trust) == (101, "ocpp1.6")
    assert open_handshake(url, basic(ocpp_id, "not-the-password-at-all"), tls=trust) == (401, None)
