"""The lounge board (``/board/<station>``): a TV in the lounge, live through Server-Sent Events.

The stream (``/board/<station>/events``) polls the database about once a second
and sends a ``snapshot`` event whenever what the board shows has changed, and a
``heartbeat`` event every few seconds otherwise (an SSE comment line would keep a
proxy's connection alive too, but the page cannot see comments, and it needs to
tell a quiet stream from a dead one to show "stale"). Each poll ends its database
transaction, so no transaction (nor SQLite's write lock) is held between polls.
A stream ends after ``CHARGEAPP_BOARD_STREAM_SECONDS`` (default 300), so a worker
thread is never pinned for ever; the browser's EventSource reconnects by itself.
Any worker can serve any board: the state is read from the database, never from one
process's memory.
"""
from __future__ import annotations

import json
import time
from datetime import datetime

from flask import Blueprint, Response, current_app, render_template, stream_with_context
from flask_babel import gettext

from chargeapp.db import db
from chargeapp.services import stations as station_service
from chargeapp.services.common import station_by_code, station_tz
from chargeapp.web.pages import i18n
from chargeapp.web.pages.common import now, register_error_pages

bp = Blueprint("pages_board", __name__)
register_error_pages(bp)


def snapshot(code: str, at: datetime) -> dict:
    """What the board shows, in the page's language; the same dict renders the page and each event."""
    st = station_by_code(db.session, code)
    tz = station_tz(st)
    info = station_service.detail(db.session, st, at)
    chargers = []
    for c in info["chargers"]:
        state = i18n.connector_state(c)
        chargers.append({"code": c["code"], "kind": c["kind"], "level": c["level"],
                         "state": state, "css": i18n.status_class(state), "label": i18n.status_label(state)})
    zones = [{
        "code": z["code"], "name": i18n.zone_name(z), "count": z["count"], "capacity": z["capacity"],
        "free": z["free"], "uncertain": z["uncertain"], "full": z["count"] >= z["capacity"] > 0,
    } for z in info["zones"]]
    return {
        "station": code,
        "name": i18n.station_name(info),
        "fast_free": info["fast_free"], "fast_total": info["fast_total"],
        "slow_free": info["slow_free"], "slow_total": info["slow_total"],
        "next_free_slot": i18n.when(info["next_free_slot"], tz, at) if info["next_free_slot"] else "",
        "lounge_free": info["lounge_free"], "lounge_capacity": info["lounge_capacity"],
        "chargers": chargers,
        "zones": zones,
        "amenities": [i18n.amenity_label(a) for a in info["amenities"]],
    }


@bp.get("/board/<code>")
def board(code: str):
    at = now()
    snap = snapshot(code, at)
    tz = station_tz(station_by_code(db.session, code))
    return render_template("board/board.html", snap=snap, code=code, as_of=i18n.hhmm(at, tz),
                           stale_after=int(current_app.config["CHARGEAPP_BOARD_HEARTBEAT_SECONDS"] * 3 + 2))


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


@bp.get("/board/<code>/events")
def events(code: str):
    """The board's live stream: ``snapshot`` on change, ``heartbeat`` when quiet; ends after a bounded time."""
    station_by_code(db.session, code)  # 404 before the stream starts
    db.session.remove()
    config = current_app.config
    poll = float(config["CHARGEAPP_BOARD_POLL_SECONDS"])
    heartbeat = float(config["CHARGEAPP_BOARD_HEARTBEAT_SECONDS"])
    lifetime = float(config["CHARGEAPP_BOARD_STREAM_SECONDS"])

    def stream():
        started = time.monotonic()
        last_sent = 0.0
        previous = None
        yield "retry: 2000\n\n"
        while time.monotonic() - started < lifetime:
            try:
                at = now()
                snap = snapshot(code, at)
                as_of = i18n.hhmm(at, station_tz(station_by_code(db.session, code)))
            except Exception:  # a database hiccup: say nothing this round, try again
                current_app.logger.exception("board %s: snapshot failed", code)
                snap = as_of = None
            finally:
                db.session.remove()  # end the transaction: nothing is held between polls
            if snap is not None and snap != previous:
                previous = snap
                last_sent = time.monotonic()
                yield _event("snapshot", {**snap, "as_of": as_of})
            elif time.monotonic() - last_sent >= heartbeat:
                last_sent = time.monotonic()
                yield _event("heartbeat", {"as_of": as_of})
            time.sleep(poll)
        yield _event("bye", {"reason": gettext("reconnecting")})

    response = Response(stream_with_context(stream()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
