"""Booking use cases (being written)."""
from __future__ import annotations


def check_in_from_session(session, now, charging_session):
    """Match a started (or late-arriving) charging session to its driver's booking."""
    return None


def rehome_after_fault(session, now, charger):
    """Move or disrupt the bookings of a charger that went Faulted or Unavailable."""
    return []
