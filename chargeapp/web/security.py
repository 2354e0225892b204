"""Bearer tokens and role checks for the API."""
from __future__ import annotations

from functools import wraps

from flask import current_app, request
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from chargeapp.db import db
from chargeapp.db import models as m
from chargeapp.domain.errors import DomainError, Forbidden
from chargeapp.services.auth import password_hasher


class Unauthorized(DomainError):
    """Log in first (Authorization: Bearer <token>)."""

    code = "unauthorized"
    kind = "unauthorized"


class ManagerOnly(Forbidden):
    """This needs a manager account."""

    code = "manager_only"


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="chargeapp-api-token")


def issue_token(user: m.User) -> str:
    return _serializer().dumps({"uid": user.id, "h": user.password_hash[-8:]})


def hasher():
    return password_hasher(*current_app.config["CHARGEAPP_ARGON2"])


def clock():
    return current_app.extensions["chargeapp.clock"]


def current_user() -> m.User:
    """The user of the request's bearer token, or Unauthorized."""
    # Cached per request (not on ``g``: an app context can outlive one request).
    cached = request.environ.get("chargeapp.user")
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise Unauthorized()
    try:
        data = _serializer().loads(header[7:].strip(), max_age=current_app.config["CHARGEAPP_TOKEN_MAX_AGE"])
    except SignatureExpired:
        raise Unauthorized("Your session expired; log in again.") from None
    except BadSignature:
        raise Unauthorized() from None
    user = db.session.get(m.User, data.get("uid")) if isinstance(data, dict) else None
    # A changed password invalidates the old tokens.
    if user is None or user.password_hash[-8:] != data.get("h"):
        raise Unauthorized()
    request.environ["chargeapp.user"] = user
    return user


def login_required(fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        current_user()
        return fn(*args, **kwargs)
    return wrapper


def manager_required(fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        if current_user().role not in ("manager", "admin"):
            raise ManagerOnly()
        return fn(*args, **kwargs)
    return wrapper
