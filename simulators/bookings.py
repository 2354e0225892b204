"""Simulated drivers book and cancel through the service's HTTP API, like the phone app.

Standard library only (urllib). A driver logs in once (registering first if the
account does not exist: the demo creates them, another server may not) and
keeps the token; the id tag the service knows for the account becomes the tag
the driver presents at chargers. Any failure is a booking that did not happen:
the driver comes as a walk-in, and the run goes on.
"""
from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from simulators.population import SimDriver

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ticket:
    """A booking the service accepted: its id (also the reservation id at the charger), charger and slot."""

    booking_id: int
    slot_start: datetime
    charger: str | None
    status: str


class BookingClient(Protocol):
    def book(self, driver: SimDriver, station: str, slot_start: datetime) -> Ticket | None:
        """Book a fast-charge slot; None when refused or the service is unreachable."""

    def cancel(self, driver: SimDriver, booking_id: int) -> bool:
        """Cancel a booking; False when it failed."""


class ApiError(Exception):
    def __init__(self, status: int, body: dict | None):
        self.status = status
        self.body = body or {}
        super().__init__(f"HTTP {status}: {self.body.get('code') or self.body.get('message') or ''}")


class HttpBookings:
    """The driver API over HTTP: ``/api/v1/auth/login|register``, ``/api/v1/bookings``, ``.../cancel``."""

    def __init__(self, api_url: str, timeout: float = 20.0):
        self.base = api_url.rstrip("/")
        self.timeout = timeout
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()  # calls run on worker threads in real-time runs

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1

    def _call(self, method: str, path: str, body: dict | None = None, token: str | None = None,
              headers: dict | None = None) -> dict:
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            request.add_header(k, v)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
                return json.loads(raw) if raw else {}
        except urllib.error.HTTPError as e:
            try:
                payload = json.loads(e.read() or b"{}")
            except ValueError:
                payload = None
            raise ApiError(e.code, payload if isinstance(payload, dict) else None) from None

    def _login(self, driver: SimDriver) -> None:
        p = driver.profile
        try:
            answer = self._call("POST", "/api/v1/auth/login", {"email": p.email, "password": p.password})
            self._count("logins")
        except ApiError as e:
            if e.status != 401:
                raise
            answer = self._call("POST", "/api/v1/auth/register",
                                {"email": p.email, "password": p.password, "name": p.name, "plate": p.plate})
            self._count("registrations")
        driver.token = answer["token"]
        tags = (answer.get("user") or {}).get("id_tags") or []
        if tags and driver.id_tag not in tags:
            driver.id_tag = tags[0]

    def _authed(self, driver: SimDriver, method: str, path: str, body: dict | None = None,
                headers: dict | None = None) -> dict:
        if driver.token is None:
            self._login(driver)
        try:
            return self._call(method, path, body, driver.token, headers)
        except ApiError as e:
            if e.status != 401:
                raise
            driver.token = None  # expired or the server's key changed: log in again, once
            self._login(driver)
            return self._call(method, path, body, driver.token, headers)

    def book(self, driver: SimDriver, station: str, slot_start: datetime) -> Ticket | None:
        """Book ``slot_start`` (aware, on the :00/:30 grid) at ``station``; None if refused or unreachable."""
        try:
            answer = self._authed(
                driver, "POST", "/api/v1/bookings",
                {"station": station, "slot_start": slot_start.isoformat()},
                headers={"Idempotency-Key": f"sim-{driver.email}-{slot_start.isoformat()}"[:100]},
            )
        except ApiError as e:
            self._count(f"book_refused_{e.body.get('code') or e.status}")
            log.info("booking refused for %s at %s %s: %s", driver.email, station, slot_start.isoformat(), e)
            return None
        except (OSError, ValueError, KeyError) as e:
            self._count("book_failed")
            log.warning("booking failed for %s: %s", driver.email, e)
            return None
        self._count("booked")
        return Ticket(int(answer["id"]), slot_start, answer.get("charger"), answer.get("status", "booked"))

    def cancel(self, driver: SimDriver, booking_id: int) -> bool:
        """Cancel one of the driver's bookings; False if the call failed."""
        try:
            self._authed(driver, "POST", f"/api/v1/bookings/{booking_id}/cancel")
        except (ApiError, OSError, ValueError, KeyError) as e:
            self._count("cancel_failed")
            log.info("cancel failed for %s booking %s: %s", driver.email, booking_id, e)
            return False
        self._count("cancelled")
        return True
