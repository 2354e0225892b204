"""The pages' security: session login, the session cookie's flags and the response headers.

The pages log in with a session cookie (the API keeps its bearer tokens). The
cookie holds the user id and the tail of the password hash, exactly as an API
token does, so changing a password logs out every browser too.
"""
from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from flask import current_app, redirect, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from chargeapp.db import db
from chargeapp.db import models as m

SESSION_UID = "uid"
SESSION_HASH = "pwh"
# A visitor's choices that outlive logging in and out: the language and the care mode.
KEPT_CHOICES = ("lang", "care")
PAGE_USER_KEY = "chargeapp.page_user"


# -- login ------------------------------------------------------------------------------


def log_in(user: m.User) -> None:
    """Start a fresh session for ``user`` (the old one is dropped: no session fixation)."""
    kept = _kept_choices()
    session.clear()
    session.permanent = True
    session[SESSION_UID] = user.id
    session[SESSION_HASH] = user.password_hash[-8:]
    session.update(kept)  # the language and care mode chosen before logging in stay


def log_out() -> None:
    kept = _kept_choices()
    session.clear()
    session.update(kept)


def _kept_choices() -> dict:
    return {key: session[key] for key in KEPT_CHOICES if session.get(key)}


def care_mode() -> bool:
    """Whether this visitor chose the care mode (larger type, stronger contrast) with the switch in the header."""
    return session.get("care") is True


def page_user() -> m.User | None:
    """The logged-in user of this request, or None.

    Cached per request in its environ, not on ``g``: an app context can outlive one request.
    """
    if PAGE_USER_KEY in request.environ:
        return request.environ[PAGE_USER_KEY]
    user = None
    uid = session.get(SESSION_UID)
    if isinstance(uid, int):
        user = db.session.get(m.User, uid)
        if user is not None and user.password_hash[-8:] != session.get(SESSION_HASH):
            user = None  # password changed since this session began
    request.environ[PAGE_USER_KEY] = user
    return user


def login_required(view):
    """Pages for logged-in users: others go to the login page and come back afterwards."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if page_user() is None:
            return redirect(url_for("pages_account.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper


def manager_required(view):
    """Manager pages: anonymous visitors go to the login page, drivers get a 403 page.

    What a manager may see within these pages is scoped by the services
    (``services.manage.managed_station``: another manager's station is a 404).
    """
    from flask import abort

    @wraps(view)
    def wrapper(*args, **kwargs):
        user = page_user()
        if user is None:
            return redirect(url_for("pages_account.login", next=request.full_path.rstrip("?")))
        if user.role not in ("manager", "admin"):
            abort(403)
        return view(*args, **kwargs)

    return wrapper


def safe_next(target: str | None, default: str) -> str:
    """Only a path on this site (no scheme, no host, no ``//``): never an open redirect."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    return target


# -- the session cookie --------------------------------------------------------------------


class PageSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session whose Secure flag may follow the request's scheme.

    ``CHARGEAPP_SESSION_COOKIE_SECURE``: "1" always Secure, "0" never (plain-http demos
    and tests on 127.0.0.1), "auto" Secure whenever the request came over HTTPS (behind
    nginx, through X-Forwarded-Proto and ``CHARGEAPP_TRUSTED_PROXIES``). A session is
    only ever set over HTTPS in production, since nginx answers plain http with a redirect.
    """

    def get_cookie_secure(self, app) -> bool:
        mode = str(app.config.get("CHARGEAPP_SESSION_COOKIE_SECURE", "auto")).strip().lower()
        if mode in ("1", "true", "yes", "on"):
            return True
        if mode in ("0", "false", "no", "off"):
            return False
        return bool(request) and request.is_secure


# -- response headers ----------------------------------------------------------------------


def tile_source(template: str) -> str | None:
    """The CSP source of a Leaflet tile URL template: ``https://webrd0{s}.is.autonavi.com/...``
    gives ``https://*.is.autonavi.com`` (a placeholder in a host label widens that label and
    those left of it to ``*``); None for a relative template (served by this site)."""
    parts = urlsplit(template.replace("{s}", "s-placeholder"))
    if not parts.scheme or not parts.netloc:
        return None
    host = template.split("://", 1)[1].split("/", 1)[0]
    labels = host.split(".")
    last = max((i for i, label in enumerate(labels) if "{" in label), default=-1)
    if last >= 0:
        labels = ["*"] + labels[last + 1:]
    return f"{parts.scheme}://{'.'.join(labels)}"


def content_security_policy(app) -> str:
    """The pages' policy: everything from this origin, no inline script or style, tiles from the configured host."""
    img = ["'self'", "data:"]
    tiles = tile_source(app.config.get("CHARGEAPP_MAP_TILES") or "")
    if tiles:
        img.append(tiles)
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src " + " ".join(img),
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


# The OpenAPI reader (ReDoc, /api/v1/docs) is served entirely by this site (its bundle is vendored under
# /static/vendor/redoc-*), so its scripts, fonts, images and requests stay 'self' like every page's. It alone
# may apply inline styles: ReDoc draws with styled-components, which writes <style> elements at run time (no
# nonce reaches them in the standalone bundle: tried, every rule was refused); and it builds its search
# worker from a blob: URL. Its sidebar's "API docs by Redocly" logo points at the vendor's CDN: img-src
# refuses it (the link stays, the image hides itself) rather than let the page reach another site.
API_DOCS_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "font-src 'self'",
    "img-src 'self' data:",
    "worker-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def add_security_headers(response):
    """Every response: CSP, no MIME sniffing, no framing, referrers only to this site."""
    app = current_app
    docs_path = app.config.get("OPENAPI_URL_PREFIX", "/api/v1").rstrip("/") + app.config.get(
        "OPENAPI_REDOC_PATH", "/docs")
    if request.path == docs_path:
        policy = API_DOCS_POLICY
    else:
        policy = app.extensions["chargeapp.csp"]
    response.headers.setdefault("Content-Security-Policy", policy)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    # same-origin: the CSRF check on HTTPS compares the Referer with the host; tile
    # servers get no Referer at all.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "geolocation=(self), camera=(), microphone=()")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if response.mimetype == "text/html" and session.get(SESSION_UID) is not None:
        # A driver's bookings and receipts are nobody else's: not kept by shared caches.
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response
