"""The bridge's word on a broker without its session: news on a first connection, a warning when a running bridge's
session was lost."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from mqtt_bridge.bridge import Bridge
from mqtt_bridge.metrics import BridgeMetrics

pytestmark = pytest.mark.unit


def _bridge() -> SimpleNamespace:
    return SimpleNamespace(metrics=BridgeMetrics(), settings=SimpleNamespace(username="bridge", client_id="b-1"),
                           _connections=0)


def test_a_first_connection_without_a_broker_session_is_not_reported_as_data_loss(caplog):
    caplog.set_level(logging.INFO, logger="mqtt_bridge")
    Bridge._session(_bridge(), False)
    [record] = [r for r in caplog.records if r.name == "mqtt_bridge"]
    assert record.levelno == logging.INFO
    assert "expected on a first start" in record.getMessage() and "lost" not in record.getMessage()


def test_a_reconnection_that_finds_its_session_gone_warns_that_messages_were_lost(caplog):
    caplog.set_level(logging.INFO, logger="mqtt_bridge")
    bridge = _bridge()
    Bridge._session(bridge, False)
    Bridge._session(bridge, True)  # resumed: nothing to say
    Bridge._session(bridge, False)
    records = [r for r in caplog.records if r.name == "mqtt_bridge"]
    assert [r.levelno for r in records] == [logging.INFO, logging.WARNING]
    assert "lost" in records[1].getMessage()
