"""SQLite: writers wait their turn in a queue instead of in SQLite's busy handler.

SQLite has one write lock. A writer that finds it taken is put to sleep by the
busy handler for 1, 2, 5, 10 ... then 100 ms between tries, and is not woken
when the lock frees: under a dozen concurrent POSTs the lock sat free while
waiters slept, and a booking's p99 reached 1.4 s (docs/performance.md). Here a
writing transaction (``BEGIN IMMEDIATE``, chargeapp/app.py) first takes

1. a lock of its process (one per database file), so the threads of a gunicorn
   worker, or of the bridge, queue on a mutex that hands over at once;
2. then an exclusive ``flock`` on ``<database>-writers`` beside the database,
   so one thread per process competes across processes (web workers, bridge,
   CLI), retrying every 0.2-2 ms rather than SQLite's up to 100 ms;

and gives both back when the transaction commits, rolls back or the connection
closes. SQLite's own lock still guards the data: the queue only decides who
asks next, and a writer outside it (the sqlite3 shell) still meets the busy
timeout. Waiting longer than the busy timeout raises SQLite's own "database is
locked" ``OperationalError`` (a 503 in the API, a retry in the bridge). Reads
(GET requests' deferred transactions) never queue.
"""
from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time

WAIT_SECONDS = 15.0  # as PRAGMA busy_timeout (chargeapp/app.py)

_process_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def _process_lock(path: str) -> threading.Lock:
    with _guard:
        return _process_locks.setdefault(path, threading.Lock())


def _database_file(database) -> str | None:
    name = os.fspath(database) if not isinstance(database, str) else database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None  # in-memory or URI databases: nobody else to queue with
    return os.path.abspath(name)


class QueuedWriterConnection(sqlite3.Connection):
    """A sqlite3 connection whose writing transactions take a turn first (``acquire_write``); see the module doc."""

    def __init__(self, database, *args, **kwargs):
        super().__init__(database, *args, **kwargs)
        self._path = _database_file(database)
        self._fd: int | None = None
        self._held = False

    @property
    def holds_write_turn(self) -> bool:
        return self._held

    def acquire_write(self, timeout: float = WAIT_SECONDS) -> None:
        """Wait for this connection's turn to write (before ``BEGIN IMMEDIATE``)."""
        if self._path is None or self._held:
            return
        deadline = time.monotonic() + timeout
        lock = _process_lock(self._path)
        if not lock.acquire(timeout=timeout):
            raise sqlite3.OperationalError("database is locked (waited for this process's other writers)")
        try:
            if self._fd is None:
                self._fd = os.open(self._path + "-writers", os.O_RDWR | os.O_CREAT, 0o644)
            delay = 0.0002
            while True:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise sqlite3.OperationalError("database is locked (waited for another process's writer)")
                    time.sleep(delay)
                    delay = min(delay * 2, 0.002)
        except BaseException:
            lock.release()
            raise
        self._held = True

    def release_write(self) -> None:
        if not self._held:
            return
        self._held = False
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            _process_lock(self._path).release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self.release_write()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.release_write()

    def close(self) -> None:
        try:
            self.release_write()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            super().close()
