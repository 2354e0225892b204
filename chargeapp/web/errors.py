"""Every error leaves as JSON ``{"code", "status", "message", "errors"?}``; never an HTML page, never a 500 for bad input."""
from __future__ import annotations

import logging

from flask import jsonify
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from chargeapp.domain.errors import DomainError

log = logging.getLogger(__name__)

STATUS_BY_KIND = {"invalid": 422, "not_found": 404, "conflict": 409, "forbidden": 403, "unauthorized": 401}


def domain_error_response(err: DomainError):
    status = STATUS_BY_KIND.get(err.kind, 400)
    body = {"code": err.code, "status": status, "message": err.message}
    if err.details:
        body["details"] = err.details
    return jsonify(body), status


def register(app) -> None:
    app.register_error_handler(DomainError, domain_error_response)

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        body = {"code": (err.name or "error").lower().replace(" ", "_"), "status": err.code,
                "message": err.description}
        data = getattr(err, "data", None)
        if isinstance(data, dict):
            if "messages" in data:
                body["errors"] = data["messages"]
            if "message" in data:
                body["message"] = data["message"]
        resp = jsonify(body)
        resp.status_code = err.code
        for k, v in (getattr(err, "get_headers", lambda: [])() or []):
            if k.lower() not in ("content-type", "content-length"):
                resp.headers[k] = v
        return resp

    @app.errorhandler(DataError)
    @app.errorhandler(OverflowError)  # SQLite: a Python int beyond 64 bits
    def value_out_of_range(err):
        # A number the schema accepted but the column cannot hold (PostgreSQL integer range).
        from chargeapp.db import db

        db.session.rollback()
        return jsonify({"code": "value_out_of_range", "status": 422,
                        "message": "A number in the request is out of range."}), 422

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeout)  # every pooled connection busy for CHARGEAPP_DB_POOL_TIMEOUT (a hung database)
    def db_unavailable(err):
        # One line, no traceback: an outage answers every request with this, and the cause is the database's.
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        log.warning("database unavailable, answered 503: %s", first_line[:300])
        return jsonify({"code": "database_unavailable", "status": 503,
                        "message": "The database is busy or unavailable; try again shortly."}), 503
