"""Simulated drivers use the real driver API over HTTP: log in (or register), book, cancel."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from werkzeug.serving import make_server

from simulators.bookings import HttpBookings
from simulators.ev import VEHICLE_MODELS
from simulators.population import DriverProfile, SimDriver

pytestmark = pytest.mark.integration


@pytest.fixture
def api_url(app, station):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def sim_driver(n: int) -> SimDriver:
    profile = DriverProfile(email=f"s1.{n:03d}@sim.demo.chargeapp", password="sim-pass-123", name=f"Sim {n}",
                            id_tag=f"D-SIM{n:03d}", plate=f"沪AD{n:05d}", vehicle=VEHICLE_MODELS[0], home_station="s1")
    return SimDriver(profile, profile.id_tag)


def test_a_new_driver_registers_books_and_cancels_and_then_presents_the_app_tag(api_url, clock):
    client = HttpBookings(api_url)
    driver = sim_driver(1)
    slot = clock.now() + timedelta(hours=1)  # 15:00 in Shanghai, on the grid
    ticket = client.book(driver, "s1", slot)
    assert ticket is not None and ticket.booking_id > 0 and ticket.charger and ticket.slot_start == slot
    assert driver.token and driver.id_tag.startswith("APP-")  # the tag the service knows for this account
    assert client.counts == {"registrations": 1, "booked": 1}
    assert client.cancel(driver, ticket.booking_id)

    again = HttpBookings(api_url)  # a new run: the account exists, so it logs in
    driver2 = sim_driver(1)
    assert again.book(driver2, "s1", slot + timedelta(minutes=30)) is not None
    assert again.counts["logins"] == 1 and driver2.id_tag == driver.id_tag


def test_a_refused_booking_is_none_and_counted(api_url, clock):
    client = HttpBookings(api_url)
    driver = sim_driver(2)
    assert client.book(driver, "s1", clock.now() + timedelta(hours=1, minutes=10)) is None  # off the grid
    assert client.book(driver, "nowhere", clock.now() + timedelta(hours=1)) is None
    assert sum(v for k, v in client.counts.items() if k.startswith("book_refused")) == 2


def test_an_unreachable_service_is_a_booking_that_did_not_happen(clock):
    client = HttpBookings("http://127.0.0.1:9", timeout=1)
    assert client.book(sim_driver(3), "s1", clock.now() + timedelta(hours=1)) is None
    assert client.counts == {"book_failed": 1}
