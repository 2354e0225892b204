"""The app as gunicorn serves it in production, plus one bench-only route: ``gunicorn bench.webapp:app``.

``GET /bench/static`` answers a small constant JSON without touching the
database: the yardstick the booking API is measured against (same app, same
gunicorn settings, same middleware and error handlers, same run). It exists only
in this wrapper, never in the production app.
"""
from __future__ import annotations

from chargeapp.app import create_app as create_production_app


def create_app(overrides: dict | None = None):
    app = create_production_app(overrides)

    @app.get("/bench/static")
    def bench_static():
        return {"status": "ok", "what": "no database"}

    return app


app = create_app()
