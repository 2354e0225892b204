"""A driver's own account: name, plates and password; password reset links issued by staff.

Plates are registrations over time (``PlateRegistration`` [valid_from, valid_to)), because
the free-parking rule counts a driver's charging only while the plate was registered to
them (docs/rules.md, "Whose charging counts"). Adding a plate opens a registration now;
removing one closes it now and keeps it, so stays already parked are settled as they were.

A password change or reset replaces the Argon2id hash, and API tokens and page sessions
carry the hash's tail, so every other token and browser is logged out by it.

Reset links (docs/pages.md, "Password reset"): there is no mail, so a manager (for a
driver), an administrator (for anyone) or an operator on the server
(``chargeapp reset-password EMAIL``) issues a link and hands it over. The link is
signed with the app's secret and carries the account, the tail of its current hash and
an expiry (24 hours by default): it works once, because setting the password changes
the hash, and not after it expires. Functions take a session and never commit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from sqlalchemy.orm import Session

from chargeapp.db import models as m
from chargeapp.domain.errors import Conflict, Forbidden, InvalidRequest, NotFound
from chargeapp.domain.plates import normalise_plate, registrable_plate
from chargeapp.services.common import audit

NAME_MAX = 100
PASSWORD_MIN, PASSWORD_MAX = 8, 200
PLATES_MAX = 5  # a driver's cars at once: their own, a shift partner's, a rental
RESET_LINK_HOURS = 24
_RESET_SALT = "chargeapp-password-reset"


class NameTooLong(InvalidRequest):
    """A name has at most 100 characters."""

    code = "name_too_long"


class PasswordTooShort(InvalidRequest):
    """A password has 8 to 200 characters."""

    code = "password_length"


class CurrentPasswordWrong(InvalidRequest):
    """The current password is not right: the password was not changed."""

    code = "current_password_wrong"


class PlateAlreadyRegistered(Conflict):
    """That plate is already registered to your account."""

    code = "plate_already_registered"


class TooManyPlates(Conflict):
    """At most 5 plates are registered to one account at a time: remove one first."""

    code = "too_many_plates"


class PlateNotRegistered(NotFound):
    """That plate is not registered to your account."""

    code = "plate_not_registered"


class AccountNotFound(NotFound):
    """No account has that email address."""

    code = "account_not_found"


class ResetNotAllowed(Forbidden):
    """A manager issues reset links for drivers only; an administrator for anyone."""

    code = "reset_not_allowed"


class ResetLinkInvalid(InvalidRequest):
    """This password reset link is not valid: ask the station staff for a new one."""

    code = "reset_link_invalid"


class ResetLinkExpired(ResetLinkInvalid):
    """This password reset link has expired: ask the station staff for a new one."""

    code = "reset_link_expired"


class ResetLinkUsed(ResetLinkInvalid):
    """This password reset link was already used (or the password changed since): ask for a new one."""

    code = "reset_link_used"


# -- profile --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plate:
    plate: str
    since: datetime


def current_plates(session: Session, user_id: int) -> list[Plate]:
    """The plates registered to the driver now (open registrations), oldest first."""
    rows = session.scalars(
        select(m.PlateRegistration)
        .where(m.PlateRegistration.user_id == user_id, m.PlateRegistration.valid_to.is_(None))
        .order_by(m.PlateRegistration.valid_from, m.PlateRegistration.id)
    )
    return [Plate(r.plate, r.valid_from) for r in rows]


def profile(session: Session, user: m.User) -> dict:
    """The account as its owner sees it: email, name, role, current plates, id tags."""
    tags = session.scalars(select(m.IdTag.tag).where(m.IdTag.user_id == user.id).order_by(m.IdTag.tag))
    return {"id": user.id, "email": user.email, "name": user.name, "role": user.role,
            "plates": current_plates(session, user.id), "id_tags": list(tags),
            "suspended_until": user.suspended_until}


def rename(session: Session, user: m.User, name: str) -> m.User:
    """Set the account's name (trimmed, at most 100 characters; empty is allowed)."""
    name = (name or "").strip()
    if len(name) > NAME_MAX:
        raise NameTooLong()
    user.name = name
    session.flush()
    return user


def _open_registration(session: Session, user_id: int, plate: str) -> m.PlateRegistration | None:
    return session.scalar(
        select(m.PlateRegistration)
        .where(m.PlateRegistration.user_id == user_id, m.PlateRegistration.plate == plate,
               m.PlateRegistration.valid_to.is_(None))
        .order_by(m.PlateRegistration.id).limit(1)
    )


def add_plate(session: Session, now: datetime, user: m.User, plate: str) -> Plate:
    """Register a plate to the driver from ``now`` (aware); its charging counts for that plate's stays from then.

    The plate must be registrable (domain.plates; the refusal names the rule).
    Raises PlateAlreadyRegistered, TooManyPlates.
    """
    plate = registrable_plate(plate)
    if _open_registration(session, user.id, plate) is not None:
        raise PlateAlreadyRegistered(plate=plate)
    if len(current_plates(session, user.id)) >= PLATES_MAX:
        raise TooManyPlates(limit=PLATES_MAX)
    session.add(m.PlateRegistration(user_id=user.id, plate=plate, valid_from=now))
    session.flush()
    return Plate(plate, now)


def remove_plate(session: Session, now: datetime, user: m.User, plate: str) -> None:
    """End the plate's registration at ``now``; kept as history, so stays parked before are settled as they were.

    The plate is normalised first ("沪a 12345" removes 沪A12345). Raises PlateNotRegistered.
    """
    try:
        plate = normalise_plate(plate)
    except InvalidRequest:
        raise PlateNotRegistered() from None
    reg = _open_registration(session, user.id, plate)
    if reg is None:
        raise PlateNotRegistered(plate=plate)
    reg.valid_to = max(now, reg.valid_from)
    session.flush()


# -- passwords ------------------------------------------------------------------------------


def _check_new_password(password: str) -> None:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise PasswordTooShort()


def change_password(session: Session, hasher: PasswordHasher, user: m.User, current: str, new: str) -> m.User:
    """Replace the password after checking the current one; every other token and session ends.

    Raises CurrentPasswordWrong, PasswordTooShort.
    """
    try:
        hasher.verify(user.password_hash, current or "")
    except (VerificationError, InvalidHashError):
        raise CurrentPasswordWrong() from None
    _check_new_password(new)
    user.password_hash = hasher.hash(new)
    session.flush()
    return user


def _serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt=_RESET_SALT)


def issue_reset_link(session: Session, now: datetime, actor: m.User | None, email: str, secret: str, *,
                     reason: str = "", hours: int = RESET_LINK_HOURS) -> tuple[str, m.User, datetime]:
    """A signed reset token for the account with ``email``, its user and when it expires (``now`` + ``hours``).

    ``actor`` None is an operator on the server (the CLI). A manager may reset drivers only,
    an administrator anyone; a driver no one (ResetNotAllowed). Audited as "user.reset_link".
    Raises AccountNotFound.
    """
    if actor is not None and actor.role not in ("manager", "admin"):
        raise ResetNotAllowed()
    user = session.scalar(select(m.User).where(m.User.email == (email or "").strip().lower()))
    if user is None:
        raise AccountNotFound()
    if actor is not None and actor.role == "manager" and user.role != "driver":
        raise ResetNotAllowed()
    expires = now + timedelta(hours=hours)
    token = _serializer(secret).dumps({"uid": user.id, "h": user.password_hash[-8:],
                                       "exp": int(expires.timestamp())})
    audit(session, now, actor, "user.reset_link", "user", user.id, reason or "password reset link issued",
          after={"email": user.email, "expires_at": expires.astimezone(timezone.utc).isoformat()})
    session.flush()
    return token, user, expires


def user_for_reset(session: Session, now: datetime, token: str, secret: str) -> m.User:
    """The account a reset token is for, if it is still good at ``now``.

    Raises ResetLinkInvalid (forged or garbled), ResetLinkExpired, ResetLinkUsed (the password changed since).
    """
    try:
        data = _serializer(secret).loads(token or "")
    except BadSignature:
        raise ResetLinkInvalid() from None
    if not isinstance(data, dict) or not isinstance(data.get("uid"), int) or not isinstance(data.get("exp"), int):
        raise ResetLinkInvalid()
    if now.timestamp() >= data["exp"]:
        raise ResetLinkExpired()
    user = session.get(m.User, data["uid"])
    if user is None:
        raise ResetLinkInvalid()
    if user.password_hash[-8:] != data.get("h"):
        raise ResetLinkUsed()
    return user


def reset_password(session: Session, now: datetime, hasher: PasswordHasher, token: str, secret: str,
                   new: str) -> m.User:
    """Set a new password through a reset link (which then stops working); every token and session ends."""
    user = user_for_reset(session, now, token, secret)
    _check_new_password(new)
    user.password_hash = hasher.hash(new)
    audit(session, now, user, "user.password_reset", "user", user.id, "password set through a reset link")
    session.flush()
    return user
