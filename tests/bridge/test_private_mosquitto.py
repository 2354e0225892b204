"""The tests' throw-away Mosquitto is ready only when it listens itself, never when someone else holds its port."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from mqtt_bridge import measure
from mqtt_bridge.measure import Mosquitto, free_port, listens

pytestmark = pytest.mark.e2e


def _listener() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_listens_is_true_for_the_process_holding_the_listener_and_false_for_another():
    with _listener() as s:
        port = s.getsockname()[1]
        holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], pass_fds=(s.fileno(),))
        other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert listens(holder, port)  # it inherited the listening socket
            assert not listens(other, port)  # the port accepts connections, but not through this process
            assert not listens(holder, free_port())  # nobody listens there
        finally:
            for p in (holder, other):
                p.kill()
                p.wait(5)


def test_a_restart_on_a_port_someone_else_took_fails_instead_of_using_their_listener(tmp_path):
    with _listener() as s:
        broker = Mosquitto(tmp_path / "broker", port=s.getsockname()[1])
        with pytest.raises(RuntimeError, match="Address already in use"):
            broker.start()
        broker.stop()


def test_an_auto_picked_port_lost_before_the_broker_bound_it_is_picked_again(tmp_path, monkeypatch):
    with _listener() as s:
        taken = s.getsockname()[1]
        picks = iter([taken, free_port()])
        monkeypatch.setattr(measure, "free_port", lambda: next(picks))
        broker = Mosquitto(tmp_path / "broker")
        assert broker.port == taken
        broker.start()
        try:
            assert broker.port != taken and listens(broker.proc, broker.port)
        finally:
            broker.stop()
