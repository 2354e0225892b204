"""The manager dashboard: a manager's stations, each live with what needs attention,
its configuration, fix-ups (each with a reason) and the audit log.

Every view is ``manager_required`` (a driver gets a 403 page) and reaches a station
only through ``services.manage`` (another manager's station is a 404, as in the API).
The reports are in ``reports.py``.
"""
from __future__ import annotations

from flask import Blueprint, render_template

from chargeapp.db import db
from chargeapp.services import manage as manage_service
from chargeapp.web.pages.common import register_error_pages
from chargeapp.web.pages.security import manager_required, page_user

bp = Blueprint("pages_manage", __name__, url_prefix="/manage")
register_error_pages(bp)


@bp.get("/")
@manager_required
def index():
    stations = manage_service.list_stations(db.session, page_user())
    return render_template("manage/index.html", stations=stations)
