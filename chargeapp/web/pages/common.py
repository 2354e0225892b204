"""What every page blueprint shares: the clock, the hasher, error pages and refusals."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask_babel import gettext
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from chargeapp.db import db
from chargeapp.domain.errors import DomainError
from chargeapp.services.auth import password_hasher
from chargeapp.web.errors import STATUS_BY_KIND
from chargeapp.web.pages import i18n


def clock():
    return current_app.extensions["chargeapp.clock"]


def now():
    return clock().now()


def hasher():
    return password_hasher(*current_app.config["CHARGEAPP_ARGON2"])


def clock_speed() -> float:
    """How fast the app's clock runs against the wall clock (the demo's is accelerated), for countdowns."""
    return float(getattr(clock(), "speed", 1.0) or 1.0)


def status_of(err: DomainError) -> int:
    return STATUS_BY_KIND.get(err.kind, 400)


def error_page(status: int, message: str, title: str | None = None):
    return render_template("errors/error.html", status=status, message=message,
                           title=title or gettext("Sorry")), status


def register_error_pages(bp: Blueprint) -> None:
    """HTML error pages for the blueprint's routes (the API keeps its JSON errors)."""

    @bp.errorhandler(DomainError)
    def _domain(err: DomainError):
        db.session.rollback()
        status = status_of(err)
        title = gettext("Not found") if status == 404 else gettext("Sorry")
        return error_page(status, i18n.refusal(err), title)

    @bp.errorhandler(DataError)
    @bp.errorhandler(OverflowError)
    def _unstorable(err):
        # A value the form let through but the database cannot hold (a NUL character or a
        # number out of range on PostgreSQL): the page's own 422, not the API's JSON.
        db.session.rollback()
        return error_page(422, gettext("A value in the form cannot be stored: check the numbers and "
                                       "remove any unusual characters."))

    @bp.errorhandler(OperationalError)
    @bp.errorhandler(PoolTimeout)
    def _database_unavailable(err):
        db.session.rollback()
        current_app.logger.warning("database unavailable, page answered 503: %s",
                                   (str(err).splitlines() or [type(err).__name__])[0][:300])
        return error_page(503, gettext("The service is busy or briefly unavailable. Try again in a moment."),
                          gettext("Please try again"))

    @bp.errorhandler(CSRFError)
    def _csrf(err: CSRFError):
        return error_page(400, gettext("This form has expired or did not come from this site. "
                                       "Go back, reload the page and try again."), gettext("Please try again"))

    @bp.errorhandler(HTTPException)
    def _http(err: HTTPException):
        if err.code == 404:
            return error_page(404, gettext("There is no such page."), gettext("Not found"))
        if err.code == 403:
            return error_page(403, gettext("This page is for station managers."), gettext("Not allowed"))
        if err.code == 429:
            return error_page(429, gettext("Too many attempts: wait a minute and try again."))
        return error_page(err.code or 400, gettext("The request could not be handled."))
