"""The application factory: nothing connects to anything at import time."""
from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from chargeapp.clock import clock_from_config
from chargeapp.config import Settings
from chargeapp.extensions import api, db, limiter, migrate

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """SQLite: WAL and a busy timeout, since the web service and the bridge both write."""
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


@event.listens_for(Engine, "begin")
def _sqlite_begin_immediate(conn):
    """SQLite: take the write lock at BEGIN, so a transaction that reads then writes
    waits for the busy timeout instead of failing with 'database is locked'."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class BoundedIntConverter(IntegerConverter):
    """``<int:...>`` in every route: 0 .. 2**31-1 (the range of an integer key on every
    backend), so a huge id in a URL is a 404, not a database overflow."""

    def __init__(self, map, fixed_digits=0, min=0, max=2**31 - 1, signed=False):  # noqa: A002 (werkzeug's names)
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


def create_app(overrides: dict | None = None) -> Flask:
    """Build the Flask app from the environment's settings, then ``overrides`` (tests)."""
    app = Flask(__name__)
    app.url_map.converters["int"] = BoundedIntConverter
    app.config.update(Settings.from_env().flask_config())
    app.config.update(
        API_TITLE="chargeapp",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_REDOC_PATH="/docs",
        OPENAPI_REDOC_URL="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js",
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}
            }
        },
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        JSON_SORT_KEYS=False,
    )
    if overrides:
        app.config.update(overrides)
    if app.config.get("CHARGEAPP_TRUSTED_PROXIES"):
        # Behind nginx the peer is the proxy: take the client from X-Forwarded-For,
        # so login rate limits are per client, not one bucket for everyone.
        hops = int(app.config["CHARGEAPP_TRUSTED_PROXIES"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    app.json.ensure_ascii = False  # Chinese names as text, not \u escapes
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        Path(app.config["SQLALCHEMY_DATABASE_URI"][len("sqlite:///"):]).parent.mkdir(
            parents=True, exist_ok=True
        )
    app.extensions["chargeapp.clock"] = app.config.get("CHARGEAPP_CLOCK") or clock_from_config(app.config)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    limiter.init_app(app)
    api.init_app(app)

    from chargeapp.web import errors, routes

    errors.register(app)
    routes.register(app, api)

    from chargeapp.web import pages

    pages.init_app(app)

    from chargeapp import cli

    cli.register(app)
    return app
