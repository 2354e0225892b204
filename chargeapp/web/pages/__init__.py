"""The web pages: the driver app, the lounge board and the manager dashboard.

Server-rendered Jinja pages with a little JavaScript, calling the same services
as the JSON API (never the API over HTTP). ``init_app`` sets up everything the
pages share: languages (Flask-Babel), CSRF protection of every form
(Flask-WTF; the bearer-token API under /api/ is exempt), the session cookie's
flags and the security headers of every response.
"""
from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from flask import Flask, g, request, url_for
import flask_babel
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect

from chargeapp.web import messages
from chargeapp.web.pages import i18n
from chargeapp.web.pages.security import (
    PageSessionInterface, add_security_headers, care_mode, content_security_policy, page_user,
)

TRANSLATIONS_DIR = Path(__file__).resolve().parents[2] / "translations"
babel = Babel()
csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    """Bind the pages to ``app``: Babel, CSRF, cookie flags, security headers and the blueprints."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", i18n.DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Asia/Shanghai")
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS_DIR))
    # The API (bearer tokens, no cookies) is exempt: the check runs for every other path.
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    # A token lives as long as the session: a booking form left open an hour still works.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    _unless_overridden(app, SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                       SESSION_COOKIE_NAME="chargeapp_session", PERMANENT_SESSION_LIFETIME=timedelta(days=14))
    app.config.setdefault("CHARGEAPP_BOARD_STREAM_SECONDS", 300)
    app.config.setdefault("CHARGEAPP_BOARD_POLL_SECONDS", 1.0)
    app.config.setdefault("CHARGEAPP_BOARD_HEARTBEAT_SECONDS", 5.0)

    babel.init_app(app, locale_selector=i18n.select_locale)
    csrf.init_app(app)
    app.session_interface = PageSessionInterface()
    app.extensions["chargeapp.csp"] = content_security_policy(app)

    @app.before_request
    def _csrf_for_pages():
        # Flask-WTF caches the token on ``g``; an app context can outlive one request
        # (tests, CLI), and a login clears the session the token was made from.
        g.pop(app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"), None)
        flask_babel.refresh()  # likewise the locale: chosen anew for each request
        if not request.path.startswith("/api/"):
            csrf.protect()

    app.after_request(add_security_headers)

    from chargeapp.web.pages import account, board, driver, manage, manage_accounts, profile, reports

    for module in (account, profile, driver, board, manage, manage_accounts, reports):
        app.register_blueprint(module.bp)

    _template_helpers(app)


def _unless_overridden(app: Flask, **values) -> None:
    """Set Flask's own settings where they still have Flask's default (``create_app`` overrides win)."""
    for key, value in values.items():
        if app.config.get(key) == Flask.default_config.get(key):
            app.config[key] = value


def _template_helpers(app: Flask) -> None:
    static_dir = Path(app.static_folder)
    versions: dict[str, str] = {}

    def static_url(filename: str) -> str:
        """A static file's URL with a content hash, so a new release is never served from an old cache."""
        if filename not in versions:
            try:
                versions[filename] = hashlib.sha256((static_dir / filename).read_bytes()).hexdigest()[:10]
            except OSError:
                versions[filename] = "0"
        return url_for("static", filename=filename, v=versions[filename])

    @app.context_processor
    def _helpers():
        return {
            "current_user": page_user(),
            "static_url": static_url,
            "languages": i18n.LANGUAGES,
            "current_lang": i18n.lang(),
            "care_mode": care_mode(),
            # Times not tied to one station (a network-wide suspension) are shown in this zone.
            "display_tz": app.config["BABEL_DEFAULT_TIMEZONE"],
            "html_lang": i18n.html_lang(),
            "status_label": i18n.status_label,
            "status_class": i18n.status_class,
            "connector_state": i18n.connector_state,
            "amenity_label": i18n.amenity_label,
            "station_name": i18n.station_name,
            "zone_name": i18n.zone_name,
            "hhmm": i18n.hhmm,
            "when": i18n.when,
            "local_date": i18n.local_date,
            "local_datetime": i18n.local_datetime,
            "money": i18n.money,
            "floor_short": i18n.floor_short,
            "day_count": i18n.day_count,
            "minute_count": i18n.minute_count,
            "suspension_rule": i18n.suspension_rule,
            "sentence_gap": i18n.sentence_gap,
            "floor_name": i18n.floor_name,
            "distance": i18n.distance,
            "minutes": i18n.minutes,
            "booking_status_label": lambda s: str(i18n.BOOKING_STATUS.get(s, s)),
            "notification_label": lambda k: str(i18n.NOTIFICATION_KIND.get(k, k)),
            "notification_text": messages.notification_text,
            "notification_lang": lambda n: messages.notification_lang(n, i18n.html_lang()),
            "attention_text": messages.attention_text,
            "receipt_lines": messages.receipt_lines,
            "receipt_lang": lambda r: i18n.html_lang() if messages.receipt_translated(r) else "en",
            "attention_lang": lambda item: messages.attention_lang(item, i18n.html_lang()),
            "receipt_kind_label": lambda k: str(i18n.RECEIPT_KIND.get(k, k)),
        }
