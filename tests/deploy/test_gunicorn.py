"""gunicorn.conf.py: the settings it resolves from the environment, and the real thing serving the app.

The end-to-end test migrates a SQLite file with `chargeapp db upgrade` (a
subprocess, as an operator runs it), starts `gunicorn -c gunicorn.conf.py
wsgi:app` on a free loopback port, checks /healthz and /api/v1/stations, and
stops it with SIGTERM. Every wait is bounded.
"""
from __future__ import annotations

import contextlib
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from concurrent.futures import ThreadPoolExecutor

from tests.deploy.support import ROOT, free_port, wait_for

CONF = ROOT / "gunicorn.conf.py"
START_TIMEOUT = 90.0  # seconds for gunicorn to import the app and answer (cold imports; 30 s failed at load 13 on 2 cores)


def load_conf(monkeypatch, **env) -> dict:
    for key in [k for k in os.environ if k.startswith("CHARGEAPP_WEB_") or k == "CHARGEAPP_BIND"]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(CONF))


@pytest.mark.integration
def test_defaults_threaded_workers_loopback_no_preload(monkeypatch):
    conf = load_conf(monkeypatch)
    assert conf["worker_class"] == "gthread"
    assert conf["bind"] == ["127.0.0.1:8000"]
    assert conf["preload_app"] is False
    assert 2 <= conf["workers"] <= 8 and conf["threads"] == 16
    assert conf["accesslog"] == "-" and conf["errorlog"] == "-"
    assert 0 < conf["timeout"] <= 60 and 0 < conf["graceful_timeout"] <= 60


@pytest.mark.integration
def test_environment_overrides(monkeypatch):
    conf = load_conf(monkeypatch, CHARGEAPP_BIND="0.0.0.0:9000, unix:/run/chargeapp/web.sock", CHARGEAPP_WEB_WORKERS="5",
                     CHARGEAPP_WEB_THREADS="32", CHARGEAPP_WEB_TIMEOUT="45")
    assert conf["bind"] == ["0.0.0.0:9000", "unix:/run/chargeapp/web.sock"]
    assert (conf["workers"], conf["threads"], conf["timeout"]) == (5, 32, 45)
    with pytest.raises(ValueError, match="CHARGEAPP_WEB_WORKERS"):
        load_conf(monkeypatch, CHARGEAPP_WEB_WORKERS="0")


@pytest.mark.integration
def test_gunicorn_accepts_the_file(monkeypatch):
    out = subprocess.run([sys.executable, "-m", "gunicorn", "-c", str(CONF), "--check-config", "wsgi:app"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "CHARGEAPP_DATABASE_URL": "sqlite:///:memory:"})
    assert out.returncode == 0, out.stdout + out.stderr


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@contextlib.contextmanager
def running_gunicorn(tmp_path, *, workers: int, threads: int, **extra_env: str):
    """A migrated and seeded SQLite database, and gunicorn with gunicorn.conf.py on a free port; yields (base URL, log path)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHARGEAPP_")}
    env.update({
        "CHARGEAPP_DATABASE_URL": f"sqlite:///{tmp_path}/chargeapp.db",
        "CHARGEAPP_SECRET_KEY": "test-only-secret",
        "CHARGEAPP_BIND": f"127.0.0.1:{port}",
        "CHARGEAPP_WEB_WORKERS": str(workers),
        "CHARGEAPP_WEB_THREADS": str(threads),
        **extra_env,
    })
    for args in (["db", "upgrade"], ["seed", "--demo"]):
        done = subprocess.run([sys.executable, "-m", "chargeapp.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", str(CONF), "wsgi:app"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        def healthy():
            if proc.poll() is not None:
                raise AssertionError(f"gunicorn exited {proc.returncode}:\n{log_path.read_text()}")
            try:
                return _get(f"{base}/healthz", timeout=1)[0] == 200
            except OSError:
                return False

        assert wait_for(healthy, START_TIMEOUT, interval=0.1), log_path.read_text()
        yield base, log_path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    assert proc.returncode == 0, log_path.read_text()


@pytest.mark.e2e
def test_gunicorn_serves_the_app_from_a_migrated_database(tmp_path):
    with running_gunicorn(tmp_path, workers=2, threads=4) as (base, log_path):
        status, body = _get(f"{base}/healthz")
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, body = _get(f"{base}/api/v1/stations")
        assert status == 200
        codes = {s["code"] for s in json.loads(body)}
        assert "yangpu-liaoyuan" in codes, codes
        # Requests in parallel, across both workers and their threads, all succeed.
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: _get(f"{base}/api/v1/stations")[0], range(16)))
        assert statuses == [200] * 16
    log = log_path.read_text()
    assert "Using worker: gthread" in log
    assert log.count("Booting worker with pid") >= 2
    assert '"GET /api/v1/stations HTTP/1.1" 200' in log  # access log on stdout
    assert "Shutting down: Master" in log


def _bad_login(base: str, client_ip: str, email: str = "driver@demo.chargeapp") -> int:
    req = urllib.request.Request(f"{base}/api/v1/auth/login", method="POST",
                                 data=json.dumps({"email": email, "password": "wrong-password"}).encode(),
                                 headers={"Content-Type": "application/json", "X-Forwarded-For": client_ip})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.e2e
def test_login_rate_limit_is_per_client_behind_the_proxy(tmp_path):
    """As deployed (docs/deploy.md): nginx sets X-Forwarded-For, the app trusts one proxy hop; the address bound
    counts one client's refused logins over every account (lowered to 8 here to keep the test short)."""
    with running_gunicorn(tmp_path, workers=1, threads=4, CHARGEAPP_TRUSTED_PROXIES="1",
                          CHARGEAPP_LOGIN_ADDRESS_RATE_LIMIT="8 per minute") as (base, _):
        first = [_bad_login(base, "203.0.113.7", f"guess{i}@example.com") for i in range(9)]
        assert first[:8] == [401] * 8 and first[8] == 429  # the ninth refused login of this client in a minute
        assert _bad_login(base, "198.51.100.23", "guess0@example.com") == 401  # another client is not locked out


# --------------------------------------------------------------------------- login limits across workers

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
LIMIT_WORKERS = 3
# The access log with the serving worker's pid (GUNICORN_CMD_ARGS overrides gunicorn.conf.py's format).
PID_LOG = "--access-logformat '%(p)s %({x-forwarded-for}i)s \"%(r)s\" %(s)s'"


@contextlib.contextmanager
def running_redis(workdir):
    """redis-server on a free 127.0.0.1 port, nothing saved to disk; yields its URL and process."""
    if not os.path.exists(REDIS_SERVER):
        pytest.fail("redis-server is not installed (Debian: apt-get install redis-server)", pytrace=False)
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"redis-server exited {proc.returncode}")
            try:
                return client.ping()
            except redis.exceptions.ConnectionError:
                return False

        assert wait_for(ready, 10, interval=0.05), "redis-server did not answer PING within 10 s"
        client.close()
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _spread_bad_logins(base: str, log_path, client_ip: str, email: str, n: int) -> tuple[list[int], set[str]]:
    """``n`` bad logins of one account from one client, sent at once on separate connections; (statuses, pids of the
    workers that served them)."""
    with ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(lambda _: _bad_login(base, client_ip, email), range(n)))
    pids: set[str] = set()

    def logged() -> bool:
        lines = [line for line in log_path.read_text().splitlines()
                 if f" {client_ip} " in line and "POST /api/v1/auth/login" in line]
        pids.clear()
        pids.update(line.split()[0] for line in lines)
        return len(lines) >= n

    assert wait_for(logged, 15), "the access log lacks the logins"
    return statuses, pids


def _logins_over_several_workers(base: str, log_path, n: int) -> tuple[list[int], set[str], str, str]:
    """Bad logins of one account from one client that reached at least two workers (each try a new client address
    and account, at most 10); (statuses, pids, client address, account)."""
    for attempt in range(10):
        client_ip, email = f"203.0.113.{10 + attempt}", f"guess{attempt}@example.com"
        statuses, pids = _spread_bad_logins(base, log_path, client_ip, email, n)
        if len(pids) >= 2:
            return statuses, pids, client_ip, email
    raise AssertionError(f"10 bursts of {n} logins all went to one worker")


@pytest.mark.e2e
def test_login_rate_limit_is_counted_across_gunicorn_workers_in_redis(tmp_path):
    """docs/deploy.md: CHARGEAPP_RATELIMIT_STORAGE_URL=redis://...; five bad logins of one account spread over workers,
    the sixth is 429."""
    with running_redis(tmp_path / "redis") as (redis_url, _), running_gunicorn(
            tmp_path, workers=LIMIT_WORKERS, threads=4, CHARGEAPP_TRUSTED_PROXIES="1",
            CHARGEAPP_RATELIMIT_STORAGE_URL=redis_url, GUNICORN_CMD_ARGS=PID_LOG) as (base, log_path):
        statuses, pids, client_ip, email = _logins_over_several_workers(base, log_path, 5)
        assert statuses == [401] * 5, statuses
        sixth = [_bad_login(base, client_ip, email) for _ in range(LIMIT_WORKERS)]  # whichever worker takes it
        assert sixth == [429] * LIMIT_WORKERS
        assert _bad_login(base, client_ip, "manager@demo.chargeapp") == 401  # another account is not locked out
    print(f"\nredis: 5 bad logins over workers {sorted(pids)}: 401; the next {LIMIT_WORKERS}: 429")


@pytest.mark.e2e
def test_memory_storage_counts_login_attempts_per_worker(tmp_path):
    """Why production needs Redis: with the default memory:// each worker counts alone, so a client gets more tries."""
    with running_gunicorn(tmp_path, workers=LIMIT_WORKERS, threads=16, CHARGEAPP_TRUSTED_PROXIES="1",
                          GUNICORN_CMD_ARGS=PID_LOG) as (base, log_path):
        statuses, pids, _, _ = _logins_over_several_workers(base, log_path, 15)
    accepted = statuses.count(401)
    print(f"\nmemory://: of 15 bad logins over workers {sorted(pids)}, {accepted} were tried (limit 5)")
    assert accepted > 5 and set(statuses) <= {401, 429}


@pytest.mark.e2e
def test_logins_answer_and_stay_limited_per_worker_while_redis_hangs(tmp_path):
    """Redis stopped (SIGSTOP: connections open, no answer): no 500 and no hang; each worker counts in memory."""
    with running_redis(tmp_path / "redis") as (redis_url, redis_proc), running_gunicorn(
            tmp_path, workers=LIMIT_WORKERS, threads=4, CHARGEAPP_TRUSTED_PROXIES="1",
            CHARGEAPP_RATELIMIT_STORAGE_URL=redis_url) as (base, log_path):
        assert _bad_login(base, "203.0.113.50") == 401  # Redis in use
        redis_proc.send_signal(signal.SIGSTOP)
        try:
            timed = []
            for _ in range(5 * LIMIT_WORKERS + 1):  # more than every worker's own allowance
                started = time.monotonic()
                timed.append((_bad_login(base, "203.0.113.51"), time.monotonic() - started))
        finally:
            redis_proc.send_signal(signal.SIGCONT)
    statuses = [status for status, _ in timed]
    print(f"\nredis hung: statuses {statuses}, slowest {max(s for _, s in timed):.2f} s")
    assert set(statuses) <= {401, 429} and 429 in statuses, statuses
    assert max(seconds for _, seconds in timed) < 5  # socket timeouts of 1 s, then the fallback
