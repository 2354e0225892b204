"""Browser tests: Playwright driving Debian's Chromium against the real app on loopback.

The app runs in this process on werkzeug's threaded server (a free port on
127.0.0.1), on a SQLite file seeded with the demo stations and logins, with a
FixedClock at 2026-11-22 14:00 Shanghai, so a test can write through the services
(``live.write``) and see the pages follow. Playwright's own browser download does
not work here: the tests use /usr/bin/chromium (``.ci/run`` installs Debian's
``chromium`` and ``fonts-noto-cjk``) and are skipped without it. Each test gets a
fresh browser context; every console message about the Content-Security-Policy and
every uncaught script error fails the test. Screenshots go to
test-artifacts/pages/ (gitignored) for a person to look at.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHARGEAPP_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pages"
T0 = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)  # 14:00 in Shanghai
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Records violations in the page itself too (init scripts are not subject to the page's CSP).
CSP_PROBE = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""

@dataclass
class Live:
    """The running app: its base URL, the app object (for ``write``) and its clock."""

    url: str
    app: object
    clock: object

    @contextmanager
    def write(self):
        """A database session in the app's context, committed at the end (what the bridge would write)."""
        from chargeapp.db import db

        with self.app.app_context():
            yield db.session
            db.session.commit()


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    from werkzeug.serving import make_server

    from chargeapp.app import create_app
    from chargeapp.clock import FixedClock
    from chargeapp.db import db
    from chargeapp.seed import seed_demo
    from chargeapp.services.auth import password_hasher

    clock = FixedClock(T0)
    db_path = tmp_path_factory.mktemp("pages") / "pages.db"
    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{db_path}",
        "CHARGEAPP_CLOCK": clock,
        "CHARGEAPP_ARGON2": (1, 1024, 1),
        "CHARGEAPP_LOGIN_RATE_LIMIT": "1000 per minute",
        "CHARGEAPP_SESSION_COOKIE_SECURE": "0",  # plain http on 127.0.0.1
        "CHARGEAPP_BOARD_STREAM_SECONDS": 30,
    })
    with app.app_context():
        db.create_all()
        seed_demo(db.session, clock.now(), password_hasher(1, 1024, 1))
        db.session.commit()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="pages-server", daemon=True)
    thread.start()
    yield Live(f"http://127.0.0.1:{server.server_port}", app, clock)
    server.shutdown()
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        # launch() starts Chromium on a new, temporary user-data-dir of its own.
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@dataclass
class Watched:
    """A page whose CSP violations and script errors are collected."""

    page: object
    csp: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def shot(self, name: str, full_page: bool = True) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def assert_clean(self):
        in_page = self.page.evaluate("window.__cspViolations || []")
        assert not self.csp and not in_page, f"CSP violations: {self.csp + in_page}"
        assert not self.errors, f"script errors: {self.errors}"


def _watched(context) -> Watched:
    page = context.new_page()
    w = Watched(page)
    page.on("console", lambda msg: w.csp.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.on("pageerror", lambda exc: w.errors.append(str(exc)))
    page.set_default_timeout(5000)
    return w


@pytest.fixture
def phone(browser):
    """A phone-sized page (390x844, touch), Chinese by default like the demo."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                  is_mobile=True, has_touch=True, locale="zh-CN")
    context.add_init_script(CSP_PROBE)
    w = _watched(context)
    yield w
    w.assert_clean()
    context.close()


@pytest.fixture
def tv(browser):
    """A TV-sized page for the lounge board."""
    context = browser.new_context(viewport={"width": 1280, "height": 720}, locale="zh-CN")
    context.add_init_script(CSP_PROBE)
    w = _watched(context)
    yield w
    w.assert_clean()
    context.close()
