"""The gateway's end-to-end fixtures: a private Mosquitto, the real bridge and the gateway in threads, loopback only."""
from __future__ import annotations

import re

import pytest

from ocpp_gateway.gateway import Gateway, GatewayOptions
from tests.bridge.conftest import mosquitto  # noqa: F401  (fixture: a private Mosquitto on 127.0.0.1)
from tests.bridge.test_e2e_mosquitto import run_in_thread
from tests.ocpp.support import ChargePointClient


def set_password(runner, station: str, charger: str, *extra: str) -> tuple[str, str]:
    """``chargeapp ocpp-password`` for a charger: (chargePointId, generated password)."""
    from chargeapp.db import db

    r = runner.invoke(args=["ocpp-password", station, charger, *extra])
    db.session.remove()  # the test's session must not hold SQLite's write lock while the gateway runs
    assert r.exit_code == 0, r.output
    ocpp_id = re.search(r"username: (\S+)", r.output).group(1)
    password = re.search(r"password \(AuthorizationKey\): (\S+)", r.output).group(1)
    return ocpp_id, password


@pytest.fixture
def f1_credentials(runner, station):
    return set_password(runner, "s1", "F1")


@pytest.fixture
def bridge(app, mosquitto):  # noqa: F811
    bridge = run_in_thread(app, mosquitto, "ocpp-e2e-bridge", periodic_seconds=0.1, outbox_seconds=0.05)
    yield bridge
    bridge.stop()


@pytest.fixture
def start_gateway(app, mosquitto):  # noqa: F811
    """Start a gateway on a free port (call again after stopping one: a restart); all are stopped at teardown."""
    started: list[Gateway] = []

    def start(**options) -> Gateway:
        options = {"port": 0, "mqtt_url": f"{mosquitto.url}?client_id=ocpp-gateway", "call_timeout": 5,
                   "puback_timeout": 5, **options}
        gateway = Gateway(app, GatewayOptions(**options)).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def charge_points():
    """Make simulated charge points; every one is closed at teardown."""
    made: list[ChargePointClient] = []

    def make(port: int, ocpp_id: str, password: str, **kw) -> ChargePointClient:
        cp = ChargePointClient(port, ocpp_id, password, **kw)
        made.append(cp)
        return cp

    yield make
    for cp in made:
        cp.close()
