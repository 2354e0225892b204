"""The managers' reports as pages: any date range in the station's time zone, charts,
a CSV of every table and a printable layout. The numbers come from ``services.reports``,
exactly as the API's reports.
"""
from __future__ import annotations

from flask import Blueprint, render_template

from chargeapp.db import db
from chargeapp.services import manage as manage_service
from chargeapp.web.pages.common import register_error_pages
from chargeapp.web.pages.security import manager_required, page_user

bp = Blueprint("pages_reports", __name__, url_prefix="/manage")
register_error_pages(bp)


@bp.get("/<code>/reports")
@manager_required
def report(code: str):
    station = manage_service.managed_station(db.session, page_user(), code)
    return render_template("manage/report.html", station=station)
