"""Helpers of the bridge's end-to-end tests: the embedded amqtt broker, reading counts while the bridge writes, polling."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
import time
import traceback
from pathlib import Path


class EmbeddedAmqtt:
    """amqtt (MQTT 3.1.1 only) on its own event loop thread, as ``chargeapp demo`` embeds it."""

    def __init__(self, port: int, allow_anonymous: bool = True):
        self.port = port
        self.allow_anonymous = allow_anonymous
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="amqtt", daemon=True)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _run(self) -> None:
        from amqtt.broker import Broker

        async def main():
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            broker = Broker({
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                # amqtt forgets an anonymous client's session at disconnect: persistent sessions need usernames.
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {
                    "allow_anonymous": self.allow_anonymous}},
            })
            await broker.start()
            self._ready.set()
            await self._stop.wait()
            await broker.shutdown()

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    def start(self, timeout: float = 10.0) -> "EmbeddedAmqtt":
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"amqtt did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def sqlite_path(app) -> str | None:
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


def read_count(app, sql: str) -> int:
    """A committed count, read without taking SQLite's write lock (the bridge is writing meanwhile)."""
    path = sqlite_path(app)
    if path is None:
        from sqlalchemy import create_engine, text

        engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
        try:
            with engine.connect() as conn:
                return conn.execute(text(sql)).scalar()
        finally:
            engine.dispose()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds, saying where every thread was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{thread_stacks()}")


def thread_stacks(frames: int = 8) -> str:
    """The innermost ``frames`` frames of every other thread: where a bridge, gateway or client thread was stuck."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = "".join(traceback.format_stack(frame)[-frames:])
        parts.append(f"--- thread {names.get(ident, ident)}\n{stack}")
    return "\n".join(parts)


REPO = Path(__file__).resolve().parents[2]
PYTHON_ENV = {**os.environ, "PYTHONPATH": str(REPO)}
