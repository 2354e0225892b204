"""Log in, log out, create a driver account, choose the language."""
from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext

from chargeapp.db import db
from chargeapp.domain.errors import DomainError
from chargeapp.domain.plates import registrable_plate
from chargeapp.services import auth as auth_service
from chargeapp.web.login_limits import address_limited, login_limited
from chargeapp.web.pages import i18n
from chargeapp.web.pages.common import hasher, now, register_error_pages, status_of
from chargeapp.web.pages.security import log_in, log_out, page_user, safe_next
from chargeapp.web.transaction import transaction

bp = Blueprint("pages_account", __name__)
register_error_pages(bp)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _home() -> str:
    return url_for("pages_driver.finder")


def _landing(user) -> str:
    """Where a login without ``?next=`` leads: managers to their dashboard, drivers to the finder."""
    return url_for("pages_manage.index") if user.role in ("manager", "admin") else _home()


@bp.route("/login", methods=["GET", "POST"])
@login_limited(lambda resp: resp.status_code not in (302, 303))
def login():
    """The login form; Argon2id through services.auth, as the API's login."""
    target = safe_next(request.values.get("next"), "")  # "": none asked for, so by role
    if request.method == "GET":
        if page_user() is not None:
            return redirect(target or _landing(page_user()))
        return render_template("account/login.html", next=target, email="")
    email = (request.form.get("email") or "").strip()[:254]
    password = (request.form.get("password") or "")[:200]
    try:
        with transaction():  # a rehashed password is kept
            user = auth_service.authenticate(db.session, hasher(), email, password)
    except DomainError as err:
        return render_template("account/login.html", next=target, email=email,
                               error=i18n.refusal(err)), status_of(err)
    log_in(user)
    return redirect(target or _landing(user))


@bp.post("/logout")
def logout():
    log_out()
    flash(gettext("You are logged out."), "info")
    return redirect(_home())


@bp.route("/register", methods=["GET", "POST"])
@address_limited
def register():
    """A new driver account (the app id tag for remote start comes with it)."""
    form = {k: (request.form.get(k) or "").strip() for k in ("email", "name", "plate")}
    if request.method == "GET":
        return render_template("account/register.html", form=form, errors={})
    password = request.form.get("password") or ""
    errors = {}
    if not EMAIL.match(form["email"]) or len(form["email"]) > 254:
        errors["email"] = gettext("The email address format is wrong: write it like name@example.com.")
    if not 8 <= len(password) <= 200:
        errors["password"] = gettext("At least 8 characters.")
    if len(form["name"]) > 100:
        errors["name"] = gettext("At most 100 characters.")
    if form["plate"]:
        try:
            form["plate"] = registrable_plate(form["plate"][:64])
        except DomainError as err:  # the rule broken, with an example
            errors["plate"] = i18n.refusal(err)
    if errors:
        return render_template("account/register.html", form=form, errors=errors), 422
    try:
        with transaction():
            user = auth_service.register_driver(db.session, now(), hasher(), email=form["email"], password=password,
                                                name=form["name"], plate=form["plate"] or None)
    except DomainError as err:
        db.session.rollback()
        return render_template("account/register.html", form=form, errors={},
                               error=i18n.refusal(err)), status_of(err)
    log_in(user)
    flash(gettext("Welcome! Your account is ready."), "ok")
    return redirect(_home())


@bp.post("/care")
def care():
    """Turn the care mode on or off for this browser (kept in the session, like the language)."""
    if request.form.get("care") == "on":
        session["care"] = True
    else:
        session.pop("care", None)
    return redirect(safe_next(request.form.get("next"), _home()))


@bp.post("/language")
def language():
    """Remember the chosen language in the session (a POST form: it changes state)."""
    chosen = request.form.get("lang")
    if chosen in i18n.LANGUAGES:
        session["lang"] = chosen
    target = urlsplit(safe_next(request.form.get("next"), _home()))
    # A ?lang= in the page's own address would override the choice: drop it.
    query = urlencode([(k, v) for k, v in parse_qsl(target.query) if k != "lang"])
    return redirect(urlunsplit(("", "", target.path, query, "")))
