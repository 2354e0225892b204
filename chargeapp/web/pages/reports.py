"""The managers' reports as pages: any date range in the station's time zone, charts,
a CSV of every table and a printable layout. The numbers come from ``services.reports``,
exactly as the API's reports.
"""
from __future__ import annotations

from flask import Blueprint

from chargeapp.web.pages.common import register_error_pages

bp = Blueprint("pages_reports", __name__, url_prefix="/manage")
register_error_pages(bp)
