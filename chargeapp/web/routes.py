"""Registers every blueprint of the HTTP API."""


def register(app, api) -> None:
    from chargeapp.web.api import auth, bookings, manage, me, reports, stations

    for module in (auth, stations, bookings, me, manage, reports):
        api.register_blueprint(module.blp)

    @app.get("/healthz")
    def healthz():
        from sqlalchemy import text

        from chargeapp.db import db

        db.session.execute(text("SELECT 1"))
        return {"status": "ok"}
