"""A driver's own account, phone first: name, plates (free parking follows them) and password;
and the page a password reset link opens.

Each form posts to its own URL and calls one ``services.accounts`` function, the same
as ``/api/v1/me/...``; a refusal re-shows the profile with what was typed, the reason in
the driver's language (the plate refusals name the rule and give an example) and the
status the API would give.
"""
from __future__ import annotations

from flask import Blueprint, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext

from chargeapp.db import db
from chargeapp.domain.errors import DomainError
from chargeapp.services import accounts
from chargeapp.web.login_limits import login_limited
from chargeapp.web.pages import i18n
from chargeapp.web.pages.common import hasher, now, register_error_pages, status_of
from chargeapp.web.pages.security import log_in, login_required, page_user
from chargeapp.web.transaction import transaction

bp = Blueprint("pages_profile", __name__)
register_error_pages(bp)


def _field(name: str, max_len: int = 200) -> str:
    return (request.form.get(name) or "").replace("\x00", "")[:max_len]


def _profile_page(status: int = 200, *, form: str | None = None, error: str | None = None,
                  values: dict | None = None):
    """The profile; ``form`` names the form a refusal belongs to (name, plate, password)."""
    user = page_user()
    return render_template("account/profile.html", profile=accounts.profile(db.session, user),
                           failed=form, error=error, values=values or {}, plates_max=accounts.PLATES_MAX), status


def _refused(form: str, err: DomainError, values: dict | None = None):
    db.session.rollback()
    return _profile_page(status_of(err), form=form, error=i18n.refusal(err), values=values)


@bp.get("/profile")
@login_required
def profile():
    """My account: name, plates, password."""
    return _profile_page()


@bp.post("/profile/name")
@login_required
def rename():
    name = _field("name", 400).strip()
    if len(name) > accounts.NAME_MAX:
        return _profile_page(422, form="name", values={"name": name},
                             error=gettext("A name has at most %(n)d characters.", n=accounts.NAME_MAX))
    try:
        with transaction():
            accounts.rename(db.session, page_user(), name)
    except DomainError as err:
        return _refused("name", err, {"name": name})
    flash(gettext("Name saved."), "ok")
    return redirect(url_for(".profile"))


@bp.post("/profile/plates")
@login_required
def add_plate():
    """Register a plate from now (the plate rule of domain.plates)."""
    plate = _field("plate", 64).strip()
    if not plate:
        return _profile_page(422, form="plate", values={"plate": plate},
                             error=gettext("Enter the plate of the car you drive, such as 沪A12345."))
    try:
        with transaction():
            added = accounts.add_plate(db.session, now(), page_user(), plate)
    except DomainError as err:
        return _refused("plate", err, {"plate": plate})
    flash(gettext("Plate %(plate)s registered: charging here now earns its free parking.", plate=added.plate), "ok")
    return redirect(url_for(".profile"))


@bp.post("/profile/plates/remove")
@login_required
def remove_plate():
    plate = _field("plate", 64)
    try:
        with transaction():
            accounts.remove_plate(db.session, now(), page_user(), plate)
    except DomainError as err:
        return _refused("plates", err)
    flash(gettext("Plate %(plate)s removed.", plate=plate), "ok")
    return redirect(url_for(".profile"))


@bp.post("/profile/password")
@login_required
@login_limited(lambda resp: resp.status_code == 422)  # guessing the current password backs off like a login
def change_password():
    """The current password and a new one; other browsers and apps are logged out, this one stays in."""
    current, new = _field("current_password"), _field("new_password", 400)
    if not accounts.PASSWORD_MIN <= len(new) <= accounts.PASSWORD_MAX:
        return _profile_page(422, form="password", error=gettext("A new password has 8 to 200 characters."))
    try:
        with transaction():
            user = accounts.change_password(db.session, hasher(), page_user(), current, new)
    except DomainError as err:
        return _refused("password", err)
    log_in(user)  # this browser carries on with the new hash; every other session has ended
    flash(gettext("Password changed. You are logged out on every other phone and app."), "ok")
    return redirect(url_for(".profile"))


# -- the reset link ---------------------------------------------------------------------------


def _no_store(resp):
    resp = make_response(resp)
    resp.headers["Cache-Control"] = "private, no-store"  # the link is a key to the account
    return resp


@bp.route("/reset-password/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """Set a new password through a link staff issued (docs/pages.md, "Password reset"): once, before it expires."""
    secret = current_app.config["SECRET_KEY"]
    try:
        user = accounts.user_for_reset(db.session, now(), token, secret)
    except DomainError as err:
        return _no_store((render_template("account/reset.html", token=None, error=i18n.refusal(err)),
                          status_of(err)))
    if request.method == "GET":
        return _no_store(render_template("account/reset.html", token=token, email=user.email))
    new = _field("new_password", 400)
    if not accounts.PASSWORD_MIN <= len(new) <= accounts.PASSWORD_MAX:
        return _no_store((render_template("account/reset.html", token=token, email=user.email,
                                          error=gettext("A new password has 8 to 200 characters.")), 422))
    with transaction():
        user = accounts.reset_password(db.session, now(), hasher(), token, secret, new)
    log_in(user)
    flash(gettext("Your new password is set and you are logged in."), "ok")
    return redirect(url_for(".profile"))
