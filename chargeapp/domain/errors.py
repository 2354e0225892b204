"""Domain errors: nouns of the business, mapped to HTTP in one place (web/errors.py).

Each error carries a stable machine ``code`` and a ``kind`` that the edge maps to a
status: ``invalid`` -> 422, ``not_found`` -> 404, ``conflict`` -> 409,
``forbidden`` -> 403. The domain knows nothing of HTTP.
"""
from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation; ``code`` is stable, ``message`` is for people."""

    code = "domain_error"
    kind = "invalid"

    def __init__(self, message: str | None = None, **details):
        self.message = message or self.__class__.__doc__ or self.code
        self.details = details
        super().__init__(self.message)


class NotFound(DomainError):
    """The thing asked for does not exist (or is not yours)."""

    code = "not_found"
    kind = "not_found"


class Forbidden(DomainError):
    """You may not do this."""

    code = "forbidden"
    kind = "forbidden"


class Conflict(DomainError):
    """The request conflicts with the current state."""

    code = "conflict"
    kind = "conflict"


class InvalidRequest(DomainError):
    """The request breaks a rule."""

    code = "invalid"
    kind = "invalid"
