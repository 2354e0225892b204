"""Browser tests: Playwright driving Debian's Chromium against the real app on loopback.

The app runs in this process on werkzeug's threaded server (a free port on
127.0.0.1), on a SQLite file seeded with the demo stations and logins, with a
FixedClock at 2026-11-22 14:00 Shanghai, so a test can write through the services
(``live.write``) and see the pages follow. ``station_over_mqtt`` adds what a
station really goes through: a private Mosquitto on a free loopback port, the MQTT
bridge (in this process, on the live app, so on its database and its clock) and a
charger publishing contract messages with paho. Playwright's own browser download
does not work here: the tests use /usr/bin/chromium (``.ci/run`` installs Debian's
``chromium`` and ``fonts-noto-cjk``) and fail without it (a skipped browser test
would look like a pass). Each test gets a fresh browser context; every console
message about the Content-Security-Policy and every uncaught script error fails the
test. Screenshots go to test-artifacts/pages/ (gitignored) for a person to look at.
"""
from __future__ import annotations

import os
import threading
import time
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


class Charger:
    """A charger of the live app's demo station speaking the telemetry contract to the broker, as a real one would."""

    def __init__(self, port: int, station: str, code: str, clock):
        import paho.mqtt.client as mqtt

        self.station, self.code, self.clock = station, code, clock
        self.boot, self.seq = 1, 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{station}.{code}",
                                  protocol=mqtt.MQTTv311)
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def publish_status(self, status: str, connector: int = 1) -> float:
        """Publish a StatusNotification (retained, QoS 1) stamped with the app's clock; the monotonic time it was sent.

        The live app's clock is fixed (2026-11-22), so the device time is that clock's
        now: the bridge, on the same clock, then takes it as it is (not skewed, not late).
        """
        from chargeapp import telemetry as t

        self.seq += 1
        message = t.StatusMessage(station=self.station, device_id=self.code, device_ts=self.clock.now(),
                                  boot=self.boot, seq=self.seq, connector=connector, status=status)
        topic, payload = t.format_message(message)
        sent = time.monotonic()
        info = self.client.publish(topic, payload, qos=t.QOS, retain=True)
        info.wait_for_publish(5)
        assert info.is_published(), f"the broker did not acknowledge {topic} within 5 s"
        return sent

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class StationOverMqtt:
    """Mosquitto, the bridge writing into the live app's database, and chargers publishing to the broker."""

    port: int
    station: str
    clock: object
    bridge: object
    chargers: dict = field(default_factory=dict)

    def charger(self, code: str) -> Charger:
        if code not in self.chargers:
            self.chargers[code] = Charger(self.port, self.station, code, self.clock)
        return self.chargers[code]


@pytest.fixture
def station_over_mqtt(live, tmp_path):
    """A private Mosquitto on a free 127.0.0.1 port and the real bridge (in this process, on ``live.app``: the
    same SQLite file and FixedClock); ``.charger("F2").publish_status("Charging")`` sends what the charger would."""
    from mqtt_bridge.bridge import Bridge, BridgeOptions
    from mqtt_bridge.measure import MOSQUITTO, Mosquitto
    from mqtt_bridge.worker import WorkerOptions

    if not os.path.exists(MOSQUITTO):
        pytest.fail(f"no Mosquitto at {MOSQUITTO}: apt-get install mosquitto (the board test needs a real broker)")
    broker = Mosquitto(tmp_path / "mosquitto").start()
    bridge = None
    station = StationOverMqtt(broker.port, "yangpu-liaoyuan", live.clock, None)
    try:
        # Telemetry only: no periodic work (holds, no-shows, receipts) or outbox behind the other tests' backs.
        options = BridgeOptions(mqtt_url=f"mqtt://127.0.0.1:{broker.port}?client_id=pages-bridge&protocol=5",
                                metrics_port=0, worker=WorkerOptions(periodic_seconds=0, outbox_seconds=0))
        bridge = station.bridge = Bridge(live.app, options).start()
        assert bridge.client.wait_subscribed(10), f"the bridge did not subscribe:\n{broker.log_path.read_text()}"
        yield station
    finally:
        for charger in station.chargers.values():
            charger.close()
        if bridge is not None:
            bridge.stop()
        broker.stop()


@pytest.fixture(scope="session")
def browser():
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("Playwright is not installed: pip install -e '.[test]' (and apt-get install chromium)")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium fonts-noto-cjk "
                    "(or point CHARGEAPP_CHROMIUM at one); the browser tests need a real browser")
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


@pytest.fixture
def tv_1080(browser):
    """The lounge TV most lounges have: 1920x1080."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080}, locale="zh-CN")
    context.add_init_script(CSP_PROBE)
    w = _watched(context)
    yield w
    w.assert_clean()
    context.close()
