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

Each open stream holds a thread of its worker. ``CHARGEAPP_BOARD_MAX_STREAMS`` (per
process; unset: no limit) caps them, so a worker whose threads are all held by boards
never leaves a page or API request waiting minutes for one: past the cap a stream is
answered 503 at once and the board retries, likely on another worker. gunicorn.conf.py
sets it per worker from its thread count, and calls ``stop_streams`` when the worker is
told to stop, so open streams say ``bye`` within a poll instead of holding a restart
for its whole graceful timeout.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime

from flask import Blueprint, Response, current_app, render_template, stream_with_context, url_for
from flask_babel import gettext

from chargeapp.clock import Pacer
from chargeapp.db import db
from chargeapp.services import stations as station_service
from chargeapp.services.common import station_by_code, station_tz
from chargeapp.web.pages import i18n
from chargeapp.web.pages.common import now, register_error_pages
from chargeapp.web.pages.qr import qr_data_uri

bp = Blueprint("pages_board", __name__)
register_error_pages(bp)

# Set when this process is told to stop (gunicorn.conf.py): every open stream ends within a poll.
_stopping = threading.Event()
BUSY_RETRY_SECONDS = 5  # Retry-After of a stream refused at the cap (board.js reconnects after 5 s too)


def pacer() -> Pacer:
    """The stream's clock and wait (chargeapp.clock.Pacer): real time on this process's stop event, unless the app
    was given one (``app.extensions["chargeapp.board_pacer"]``, tests)."""
    return current_app.extensions.get("chargeapp.board_pacer") or Pacer(_stopping)


def stop_streams() -> None:
    """End every open board stream of this process (with ``bye``) within one poll; for a worker that is stopping."""
    _stopping.set()


class _StreamCount:
    """Open streams of one app in this process, against CHARGEAPP_BOARD_MAX_STREAMS."""

    def __init__(self):
        self.open = 0
        self._lock = threading.Lock()

    def take(self, limit) -> bool:
        with self._lock:
            if limit is not None and self.open >= int(limit):
                return False
            self.open += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.open -= 1


_count_lock = threading.Lock()


def _stream_count(app) -> _StreamCount:
    with _count_lock:
        return app.extensions.setdefault("chargeapp.board_streams", _StreamCount())


def snapshot(code: str, at: datetime) -> dict:
    """What the board shows, in the page's language; the same dict renders the page and each event."""
    st = station_by_code(db.session, code)
    tz = station_tz(st)
    info = station_service.detail(db.session, st, at)
    chargers = []
    for c in info["chargers"]:
        state = i18n.connector_state(c)
        chargers.append({"code": c["code"], "kind": c["kind"], "level": i18n.floor_short(c["level"]),
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
        "next_free_slot": i18n.hhmm(info["next_free_slot"], tz),
        "next_free_day": i18n.slot_day(info["next_free_slot"], tz, at),  # "" when today
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
    # The QR code opens this station in the driver app, at the address the TV reached (behind nginx: the
    # public one, through ProxyFix); no ?lang=, so the phone keeps its own language.
    station_url = url_for("pages_driver.station", code=code, _external=True)
    return render_template("board/board.html", snap=snap, code=code, as_of=i18n.hhmm(at, tz),
                           legend=[(css, str(label)) for css, label in i18n.STATUS_LEGEND],
                           station_url=station_url, qr=qr_data_uri(station_url),
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
    count = _stream_count(current_app)
    if _stopping.is_set() or not count.take(config.get("CHARGEAPP_BOARD_MAX_STREAMS")):
        # Every stream thread of this worker is taken (or it is stopping): refuse now rather than queue the
        # request behind streams that last minutes. EventSource gives up on a 503; board.js tries again.
        busy = Response("busy: too many open boards on this worker\n", status=503, mimetype="text/plain")
        busy.headers["Retry-After"] = str(BUSY_RETRY_SECONDS)
        busy.headers["Cache-Control"] = "no-store"
        return busy

    pace = pacer()

    def stream():
        started = pace.monotonic()
        last_sent = started
        previous = None
        yield "retry: 2000\n\n"
        while pace.monotonic() - started < lifetime and not _stopping.is_set():
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
                last_sent = pace.monotonic()
                yield _event("snapshot", {**snap, "as_of": as_of})
            elif pace.monotonic() - last_sent >= heartbeat:
                last_sent = pace.monotonic()
                yield _event("heartbeat", {"as_of": as_of})
            if pace.wait(poll):
                break
        yield _event("bye", {"reason": gettext("reconnecting")})

    response = Response(stream_with_context(stream()), mimetype="text/event-stream")
    # The server closes the response when the stream ends, the client goes away, or it never started.
    response.call_on_close(count.give_back)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
