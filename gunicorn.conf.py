"""Gunicorn settings for the chargeapp web service: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Every value can be changed from the environment (the systemd unit and the
compose file set them), so the same file serves a 2-core VM and a bigger host.

- Threaded workers (``gthread``). The live board and dashboards hold a
  Server-Sent Events stream open for as long as a page is open; each open stream
  keeps one thread. With the default sync workers a handful of open boards would
  take every worker and starve ordinary requests. Threads are cheap for this
  I/O-bound app (the database and the broker do the work), and the
  workers x threads product bounds concurrent requests plus open streams. The
  live state reaches every worker through the database or the broker, never one
  process's memory, so any number of workers sees the same board.
- Defaults for 2 cores: 3 workers (cores + 1, at most 8 by default) x 16
  threads = 48 concurrent requests or open streams, in ~3 x 100 MB of memory.
  Past that, raise the threads first (streams mostly wait), then the workers.
- ``timeout`` is the worker heartbeat: a gthread worker's main loop keeps
  heartbeating while its threads serve requests, so a long SSE stream is not
  killed by it; a worker stuck for 30 s (a deadlock, a CPU loop) is.
  ``graceful_timeout`` bounds a restart or reload: open streams are cut after
  it, and browsers' EventSource reconnects on its own.
- Board streams are capped per worker at ``threads`` minus a reserve (a quarter,
  at least 2): 12 of 16 by default. Past the cap a board is answered 503 at once
  and retries, so pages and the API always find a free thread; without the cap a
  worker whose threads all hold streams would queue every other request behind
  streams that last minutes (``CHARGEAPP_WEB_BOARD_STREAMS`` overrides it).
- On SIGTERM (stop, reload, restart) the worker ends its open board streams
  within a poll (each says ``bye`` and the browser reconnects to a new worker), so
  a reload with lounge TVs open takes a second, not the whole graceful timeout.
- No ``preload_app``: each worker imports the app after the fork, so no
  database connection (or pool) is ever shared between processes, and a
  ``kill -HUP`` reload picks up new code (see docs/deploy.md, upgrades).
- Access and error logs to stdout/stderr (the journal, or ``docker logs``);
  ``CHARGEAPP_WEB_ACCESS_LOG=`` (empty) turns the access log off.
"""
from __future__ import annotations

import os
import signal


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = int(raw)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _cores() -> int:
    """CPUs this process may run on (a container's or a systemd CPUAffinity's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 2

# Where to listen: nginx proxies to this. Several addresses: comma-separated.
bind = [b.strip() for b in os.environ.get("CHARGEAPP_BIND", "127.0.0.1:8000").split(",") if b.strip()]

worker_class = "gthread"
workers = _int("CHARGEAPP_WEB_WORKERS", min(_cores() + 1, 8))
threads = _int("CHARGEAPP_WEB_THREADS", 16, minimum=2)  # one thread would be a board's alone

timeout = _int("CHARGEAPP_WEB_TIMEOUT", 30)
graceful_timeout = _int("CHARGEAPP_WEB_GRACEFUL_TIMEOUT", 30)
# Idle keep-alive connections from nginx; with gthread they wait without holding a thread.
keepalive = _int("CHARGEAPP_WEB_KEEPALIVE", 5)

# Restart each worker after this many requests (with jitter, so not all at once): bounds slow leaks.
max_requests = _int("CHARGEAPP_WEB_MAX_REQUESTS", 5000, minimum=0)
max_requests_jitter = max_requests // 10

preload_app = False

# The proxy in front (nginx on the same host) is trusted for X-Forwarded-* headers.
forwarded_allow_ips = os.environ.get("CHARGEAPP_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The access log: stdout by default; CHARGEAPP_WEB_ACCESS_LOG names a file, or is empty for none (the demo).
accesslog = os.environ.get("CHARGEAPP_WEB_ACCESS_LOG", "-") or None
errorlog = "-"
loglevel = os.environ.get("CHARGEAPP_WEB_LOG_LEVEL", "info")
# Client (as forwarded by nginx), request, status, bytes, duration in ms, user agent.
access_log_format = '%({x-forwarded-for}i)s %(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'

# The heartbeat file on a memory file system: a slow disk must not look like a stuck worker.
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"

proc_name = "chargeapp-web"

# Board streams one worker may hold at once; the rest of its threads stay free for pages and the API.
board_streams = _int("CHARGEAPP_WEB_BOARD_STREAMS", max(1, threads - max(2, threads // 4)))
if board_streams >= threads:
    raise ValueError(f"CHARGEAPP_WEB_BOARD_STREAMS ({board_streams}) must leave threads for other requests "
                     f"(CHARGEAPP_WEB_THREADS is {threads})")


def post_worker_init(worker):
    """Tell the app in this worker how many board streams it may hold, and end them when the worker must stop."""
    from chargeapp.web.pages import board

    config = getattr(worker.wsgi, "config", None)  # the Flask app (wsgi:app)
    if config is not None:
        config["CHARGEAPP_BOARD_MAX_STREAMS"] = board_streams
    graceful_exit = signal.getsignal(signal.SIGTERM)  # the worker's own handler: stop accepting, finish requests

    def exit_ending_streams(sig, frame):
        board.stop_streams()
        graceful_exit(sig, frame)

    signal.signal(signal.SIGTERM, exit_ending_streams)

    from chargeapp.runtime import freeze_startup_objects

    freeze_startup_objects()  # the app is loaded: later collections skip it (a full one paused the worker ~90 ms)


# gunicorn 25.1+ opens a control socket for gunicornc at $XDG_RUNTIME_DIR or ~/.gunicorn/gunicorn.ctl,
# one path shared by every gunicorn of the same user: two instances (tests in parallel, two sites
# under one account) take it from each other. The service is managed through systemd, not gunicornc.
control_socket_disable = True
