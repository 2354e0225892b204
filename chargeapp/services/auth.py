"""Accounts: registration, password checks (Argon2id) and roles."""
from __future__ import annotations

import secrets
from datetime import datetime

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.errors import DomainError
from chargeapp.domain.plates import registrable_plate
from chargeapp.services.registry import create_user


class InvalidCredentials(DomainError):
    """Wrong email or password."""

    code = "invalid_credentials"
    kind = "unauthorized"


def password_hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    """An Argon2id hasher; production uses at least OWASP's m=19 MiB, t=2, p=1."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)


def register_driver(session: Session, now: datetime, hasher: PasswordHasher, *, email: str, password: str,
                    name: str = "", plate: str | None = None) -> m.User:
    """A new driver account with an app id tag (for remote start) and optionally a plate.

    The plate must be registrable (``domain.plates.registrable_plate``: an ordinary or
    new-energy mainland plate); a refusal names the rule broken. Raises EmailTaken too.
    """
    plates = (registrable_plate(plate),) if plate and plate.strip() else ()
    tag = "APP-" + secrets.token_hex(6).upper()
    return create_user(session, email=email, password_hash=hasher.hash(password), now=now, name=name,
                       id_tags=(tag,), plates=plates)


def authenticate(session: Session, hasher: PasswordHasher, email: str, password: str) -> m.User:
    """The user with these credentials, or InvalidCredentials (same error for unknown email)."""
    user = session.scalar(select(m.User).where(m.User.email == email.strip().lower()))
    if user is None:
        hasher.hash(password)  # same work either way: no timing oracle for known emails
        raise InvalidCredentials()
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise InvalidCredentials() from None
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    return user
