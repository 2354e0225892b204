"""The login limits, shared by the API's login and the pages' (docs/deploy.md, "Settings and secrets").

Only refused attempts count, in two buckets:

- per account (``CHARGEAPP_LOGIN_RATE_LIMIT``, default 5 a minute and 20 an hour, so
  guessing backs off from a minute's wait to the rest of the hour): one account's
  wrong passwords never block another account, whoever sends them;
- per address (``CHARGEAPP_LOGIN_ADDRESS_RATE_LIMIT``, default 50 a minute): one
  client trying many accounts. Far above the account bound, because a mobile
  carrier puts many drivers behind one address.

A login with the right password is never refused unless its own account is being
guessed at, or its address has failed 50 times in the minute.
"""
from __future__ import annotations

from flask import current_app, request
from flask_limiter.util import get_remote_address

from chargeapp.extensions import limiter


def account_key() -> str:
    """The account a login names (the email as the login looks it up), else the client's address."""
    body = request.get_json(silent=True) if request.is_json else request.form
    email = body.get("email") if hasattr(body, "get") else None
    if isinstance(email, str) and email.strip():
        return "account:" + email.strip().lower()[:254]
    return "address:" + get_remote_address()


def _account_limit() -> str:
    return current_app.config["CHARGEAPP_LOGIN_RATE_LIMIT"]


def _address_limit() -> str:
    return current_app.config["CHARGEAPP_LOGIN_ADDRESS_RATE_LIMIT"]


def login_limited(refused):
    """Decorate a login view: ``refused(response)`` says whether an answer was a refused login (it counts)."""
    per_account = limiter.shared_limit(_account_limit, scope="login-account", key_func=account_key,
                                       methods=["POST"], deduct_when=refused)
    per_address = limiter.shared_limit(_address_limit, scope="login-address", methods=["POST"], deduct_when=refused)
    return lambda view: per_address(per_account(view))


def address_limited(view):
    """Decorate an account-creating view: every attempt counts against the address's bound."""
    return limiter.shared_limit(_address_limit, scope="register-address", methods=["POST"])(view)
