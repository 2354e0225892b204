"""The application factory: nothing connects to anything at import time."""
from __future__ import annotations

import weakref
from pathlib import Path

from flask import Flask, current_app, has_request_context, request
from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from chargeapp.clock import clock_from_config
from chargeapp.config import Settings
from chargeapp.db.sqlite_writers import QueuedWriterConnection
from chargeapp.extensions import api, db, limiter, migrate

MIGRATIONS_DIR = str(Path(__file__).parent / "migrations")
REDOC_URL = "/static/vendor/redoc-2.5.4/redoc.standalone.js"  # the version in the path is its cache-buster


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


READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
_QUERY_ONLY = "chargeapp.query_only"  # in the pooled connection's info: PRAGMA query_only is ON
_READ_TRANSACTION = "chargeapp.read_transaction"  # in the request's environ: a deferred BEGIN was sent


class WriteInReadOnlyRequest(RuntimeError):
    """A GET or HEAD request tried to write (a bug: reads must not change anything); answered 500, not 503."""


def read_only_request() -> bool:
    """Whether the transaction being begun belongs to a GET or HEAD request (the board's stream included)."""
    return has_request_context() and request.method in READ_ONLY_METHODS


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn):
    """SQLite: a writer takes the write lock at BEGIN; a GET or HEAD request reads without it.

    Writers begin IMMEDIATE, so a transaction that reads then writes waits for the
    busy timeout instead of failing with 'database is locked' (SQLite cannot upgrade
    a read transaction once another connection has committed). Read-only requests
    begin DEFERRED: in WAL they read their snapshot without waiting for, or holding
    up, the bridge and the other requests. Such a transaction must not write, and
    SQLite enforces it: ``PRAGMA query_only`` is ON for it, so a write fails at once
    (``WriteInReadOnlyRequest``, see ``_write_in_read_only``) instead of sometimes.
    """
    if conn.dialect.name != "sqlite":
        return
    read_only = read_only_request()
    if conn.info.get(_QUERY_ONLY, False) != read_only:
        conn.exec_driver_sql(f"PRAGMA query_only={'ON' if read_only else 'OFF'}")
        conn.info[_QUERY_ONLY] = read_only
    if read_only:
        conn.exec_driver_sql("BEGIN")
        request.environ[_READ_TRANSACTION] = True
        return
    raw = conn.connection.dbapi_connection
    queued = isinstance(raw, QueuedWriterConnection)
    if queued:
        raw.acquire_write()  # this process's writers, then the other processes', take turns (sqlite_writers)
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        if queued:
            raw.release_write()
        raise


def _end_read_transaction(exc) -> None:
    """At the end of a GET or HEAD request, end its read-only transaction (a server removes the session
    with its app context anyway; a test's app context outlives its requests, and the next request or the
    test itself must not go on in a transaction that cannot write)."""
    if request.environ.pop(_READ_TRANSACTION, False):
        db.session.rollback()


@event.listens_for(Engine, "handle_error")
def _write_in_read_only(context):
    """A write in a read-only request's transaction is a bug in that request's handler: say so (500,
    with a traceback), rather than the 503 'database busy' an OperationalError answers."""
    if context.engine is None or context.engine.dialect.name != "sqlite" or context.connection is None:
        return None
    if "readonly database" in str(context.original_exception) and context.connection.info.get(_QUERY_ONLY):
        method = request.method if has_request_context() else "?"
        return WriteInReadOnlyRequest(
            f"a {method} request tried to write ({(context.statement or '')[:120]!r}); reads begin a deferred "
            "transaction that must not write (chargeapp/app.py: _sqlite_begin): make the change a POST")
    return None


# PostgreSQL: how long an idle pooled connection may take to answer a ping at checkout (it
# normally takes well under a millisecond; a hung server must not hold the request), and how
# much longer than the server's statement_timeout the client waits for any answer at all.
PING_TIMEOUT = 2.0
REPLY_MARGIN = 3.0


def engine_options(config) -> dict:
    """SQLAlchemy engine options: on PostgreSQL, bounded connect, statement, lock and pool waits (seconds in
    ``CHARGEAPP_DB_TIMEOUTS``); SQLite keeps its busy timeout (see ``_sqlite_pragmas``)."""
    url = make_url(config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        # Writers queue for their turn instead of sleeping in SQLite's busy handler (chargeapp/db/sqlite_writers.py).
        return {"pool_pre_ping": True, "connect_args": {"factory": QueuedWriterConnection}}
    if url.get_backend_name() != "postgresql":
        return {"pool_pre_ping": True}
    t = config["CHARGEAPP_DB_TIMEOUTS"]
    server = [f"-c {name}={int(seconds * 1000)}" for name, seconds in
              (("statement_timeout", t["statement"]), ("lock_timeout", t["lock"])) if seconds > 0]
    options = " ".join(([str(url.query["options"])] if "options" in url.query else []) + server)
    connect_args = {"connect_timeout": max(2, int(t["connect"]))} if t["connect"] > 0 else {}
    if options:
        connect_args["options"] = options
    # No pool_pre_ping: _bound_postgres pings at checkout with its own short limit.
    return {"pool_pre_ping": False, "pool_timeout": t["pool"], "connect_args": connect_args}


def _bounded_connection_class():
    """psycopg's Connection, giving up on a server that sends no answer within ``reply_timeout`` seconds.

    statement_timeout is enforced by the server, so a server that is hung (stopped,
    a frozen VM or disk, a dropped network path) would keep a worker waiting for
    ever; the kernel still acknowledges what we send, so TCP timeouts never fire.
    The connection is closed on timeout (its protocol state is unknown), which
    SQLAlchemy sees as a disconnect: the pool drops it and the caller gets an
    OperationalError (the API answers 503, the bridge rolls back and retries).
    """
    import psycopg  # 3.2+ (pyproject): Connection.wait takes a timeout

    class BoundedConnection(psycopg.Connection):
        reply_timeout: float | None = None

        def wait(self, gen, interval=0.1, timeout=None):
            limit = self.reply_timeout if timeout is None else timeout
            try:
                return super().wait(gen, interval=interval, timeout=limit)
            except psycopg.OperationalError as exc:
                if type(exc).__name__ != "_WaitTimeout":
                    raise
                self.pgconn.finish()
                raise psycopg.OperationalError(f"the database server did not answer within {limit:g} s") from None

    return BoundedConnection


def _bound_postgres(app, engine) -> None:
    """Connections from ``BoundedConnection``; a ping bounded by PING_TIMEOUT at every checkout."""
    statement = app.config["CHARGEAPP_DB_TIMEOUTS"]["statement"]
    reply = statement + REPLY_MARGIN if statement > 0 else None
    connection_class = _bounded_connection_class()
    # Weakly: this listener lives in the dialect's dispatch, and SQLAlchemy's PostgreSQL dialect keeps up to 128
    # dialects in lru_caches of its own. Held strongly, every app ever created in the process stayed alive with its
    # routes, templates, engine and pooled connection (the test suite: millions of objects, idle server connections).
    app_ref = weakref.ref(app)

    @event.listens_for(engine, "do_connect")
    def connect(dialect, connection_record, cargs, cparams):
        owner = app_ref()
        migrating = owner is not None and owner.extensions.get("chargeapp.migrating")
        if migrating:  # schema changes (an index on a big table) may run long; the last -c wins
            cparams["options"] = (cparams.get("options", "") + " -c statement_timeout=0").strip()
        conn = connection_class.connect(*cargs, **cparams)
        conn.reply_timeout = None if migrating else reply
        return conn

    @event.listens_for(engine, "checkout")
    def ping(dbapi_connection, connection_record, connection_proxy):
        saved = getattr(dbapi_connection, "reply_timeout", None)
        if hasattr(dbapi_connection, "reply_timeout"):
            dbapi_connection.reply_timeout = PING_TIMEOUT
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(";")
        except Exception as exc:  # psycopg.Error: the pool replaces the connection (and fails if it cannot)
            raise DisconnectionError(f"the pooled connection did not answer a ping: {exc}") from exc
        finally:
            if hasattr(dbapi_connection, "reply_timeout"):
                dbapi_connection.reply_timeout = saved


@migrate.configure
def _migrations_run_unlimited(config):
    """`chargeapp db ...`: connections opened from now on have no statement_timeout (see _bound_postgres)."""
    current_app.extensions["chargeapp.migrating"] = True
    db.engine.dispose()
    return config


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
        # Served by the app itself (chargeapp/static/vendor/README.md): no CDN, which is slow or
        # blocked in mainland China and absent on an offline station's network.
        OPENAPI_REDOC_URL=REDOC_URL,
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}
            }
        },
        JSON_SORT_KEYS=False,
    )
    if overrides:
        app.config.update(overrides)
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(app.config))
    if app.config.get("RATELIMIT_STORAGE_URI", "").startswith(("redis://", "rediss://", "redis+")):
        # Redis down or hung must not take logins with it: bounded waits, then each worker counts
        # in memory (stricter than no limit) until Redis answers again.
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": 1, "socket_connect_timeout": 1})
        app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
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
    app.teardown_request(_end_read_transaction)
    if make_url(app.config["SQLALCHEMY_DATABASE_URI"]).get_backend_name() == "postgresql":
        with app.app_context():
            _bound_postgres(app, db.engine)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    limiter.init_app(app)
    api.init_app(app)

    from chargeapp.web import errors, routes

    errors.register(app)
    routes.register(app, api)

    from chargeapp.web import pages

    pages.init_app(app)

    from chargeapp import commands

    commands.register(app)

    from chargeapp.web import bodies

    bodies.init_app(app)  # last: its check goes first, before every other before_request hook
    return app
