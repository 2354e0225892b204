"""Staff help with drivers' accounts: a one-time password reset link (there is no mail).

A manager issues links for drivers, an administrator for anyone (``services.accounts``);
the link is shown once, to hand to the driver in person or by message, and every link
issued is in the audit log with who issued it and why (docs/pages.md, "Password reset").
"""
from __future__ import annotations

from flask import Blueprint, current_app, make_response, render_template, request, url_for
from flask_babel import gettext, lazy_gettext as _l

from chargeapp.db import db
from chargeapp.domain.errors import DomainError
from chargeapp.services import accounts
from chargeapp.web.pages import i18n
from chargeapp.web.pages.common import now, register_error_pages, status_of
from chargeapp.web.pages.security import manager_required, page_user
from chargeapp.web.transaction import transaction

bp = Blueprint("pages_manage_accounts", __name__, url_prefix="/manage")
register_error_pages(bp)

REFUSALS = {
    "account_not_found": _l("No account has that email address: check it with the driver."),
    "reset_not_allowed": _l("A manager issues reset links for drivers only; ask a network administrator "
                            "for a manager's account."),
}


def _page(status: int = 200, **context):
    resp = make_response(render_template("manage/password_reset.html", **context), status)
    resp.headers["Cache-Control"] = "private, no-store"  # a link shown here is a key to an account
    return resp


@bp.get("/password-reset")
@manager_required
def password_reset():
    """The form: the driver's email and why."""
    return _page(email="", reason="")


@bp.post("/password-reset")
@manager_required
def issue_password_reset():
    """Issue a link; show it once with its expiry."""
    email = (request.form.get("email") or "").replace("\x00", "").strip()[:254]
    reason = (request.form.get("reason") or "").replace("\x00", "").strip()[:500]
    if not email or not reason:
        return _page(422, email=email, reason=reason,
                     error=gettext("Give the driver's email and say why (kept in the audit log)."))
    try:
        with transaction():
            token, user, expires = accounts.issue_reset_link(
                db.session, now(), page_user(), email, current_app.config["SECRET_KEY"], reason=reason)
    except DomainError as err:
        db.session.rollback()
        message = err.message if i18n.is_english() or err.code not in REFUSALS else str(REFUSALS[err.code])
        return _page(status_of(err), email=email, reason=reason, error=message)
    link = url_for("pages_profile.reset_password", token=token, _external=True)
    return _page(email="", reason="", link=link, for_email=user.email,
                 expires=i18n.local_datetime(expires, current_app.config["BABEL_DEFAULT_TIMEZONE"]))
