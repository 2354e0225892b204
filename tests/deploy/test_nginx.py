"""deploy/nginx/chargeapp.conf run by a real nginx (ports, certificate and upstream swapped for test ones):
Server-Sent Events under /board/ reach the browser one by one, not when nginx's buffer fills; other paths
are proxied with the forwarded headers; plain HTTP redirects to HTTPS."""
from __future__ import annotations

import http.server
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.deploy.support import ROOT, WAIT, free_port, wait_for

pytestmark = pytest.mark.e2e

SHIPPED = ROOT / "deploy" / "nginx" / "chargeapp.conf"


class _Upstream(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int):
        self.release = threading.Event()
        self.seen_headers: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    """/board/...: one event, then (once released, at most WAIT s later) a second one; anything else: JSON."""

    def do_GET(self):
        self.server.seen_headers.append({k.lower(): v for k, v in self.headers.items()})
        if self.path.startswith("/board/") or self.path.startswith("/buffered/"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            self.server.release.wait(WAIT)
            self.wfile.write(b"data: second\n\n")
            self.wfile.flush()
            return
        body = b'{"status": "ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _config(tmp: Path, *, http_port: int, https_port: int, upstream_port: int, cert: Path, key: Path) -> str:
    site = SHIPPED.read_text()
    assert "proxy_buffering off;" in site
    site = re.sub(r"^\s*listen \[::\]:\d+.*\n", "", site, flags=re.M)  # no IPv6 on every test host
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    site = site.replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    site = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", site)
    site = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", site)
    # A control location on the same server with nginx's default (buffered) proxying.
    site = site.replace("    location / {\n", "    location /buffered/ {\n        proxy_pass http://chargeapp_web;\n    }\n\n"
                        "    location / {\n", 1)
    (tmp / "site.conf").write_text(site)
    temp = tmp / "temp"
    temp.mkdir()
    return (
        f"daemon off;\nmaster_process off;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"  access_log {tmp}/access.log;\n"
        f"  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fastcgi;\n"
        f"  uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;\n"
        f"  include {tmp}/site.conf;\n"
        "}\n"
    )


@pytest.fixture
def proxy(tmp_path):
    nginx, openssl = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("openssl")
    if not Path(nginx).exists() or openssl is None:
        pytest.fail("nginx or openssl is not installed", pytrace=False)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    upstream = _Upstream(free_port())
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    http_port, https_port = free_port(), free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(_config(tmp_path, http_port=http_port, https_port=https_port,
                            upstream_port=upstream.server_address[1], cert=cert, key=key))
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def listening():
        try:
            socket.create_connection(("127.0.0.1", https_port), timeout=0.2).close()
            return True
        except OSError:
            return False

    try:
        assert wait_for(listening, WAIT), (tmp_path / "error.log").read_text()
        yield {"http": http_port, "https": https_port, "upstream": upstream}
    finally:
        upstream.release.set()
        proc.terminate()
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT)
        upstream.shutdown()
        upstream.server_close()


def _tls(port: int) -> ssl.SSLSocket:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the throw-away certificate
    raw = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _first_event_seconds(port: int, path: str, upstream: _Upstream, window: float) -> float | None:
    """Seconds until the first event's bytes reach the client while the upstream holds the stream open (it sends
    the rest only after this returns); None if not within ``window`` seconds."""
    upstream.release.clear()
    s = _tls(port)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: chargeapp.example.com\r\nAccept: text/event-stream\r\n\r\n".encode())
        s.settimeout(0.1)
        start = time.monotonic()
        data = b""
        while time.monotonic() - start < window:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            if not chunk:
                break
            data += chunk
            if b"data: first" in data:
                return time.monotonic() - start
        return None
    finally:
        upstream.release.set()
        s.close()


def test_board_events_are_not_buffered(proxy):
    # Arrived while the upstream still holds the rest back: nginx passed it on (it takes a few ms; the window is
    # only a bound for a slow moment on a busy machine, the buffered control below never gets it at all).
    seconds = _first_event_seconds(proxy["https"], "/board/yangpu-liaoyuan/stream", proxy["upstream"], window=10.0)
    assert seconds is not None


def test_control_default_proxying_holds_the_event_back(proxy):
    """Without `proxy_buffering off` nginx sits on the first event until more arrives: the setting matters."""
    assert _first_event_seconds(proxy["https"], "/buffered/stream", proxy["upstream"], window=1.5) is None


def test_api_is_proxied_with_forwarded_headers_and_http_redirects(proxy):
    s = _tls(proxy["https"])
    try:
        s.sendall(b"GET /api/v1/stations HTTP/1.1\r\nHost: chargeapp.example.com\r\nConnection: close\r\n"
                  b"X-Forwarded-For: 6.6.6.6\r\n\r\n")
        response = b""
        while chunk := s.recv(65536):
            response += chunk
    finally:
        s.close()
    assert response.startswith(b"HTTP/1.1 200") and b'{"status": "ok"}' in response
    assert b"strict-transport-security" in response.lower()
    seen = proxy["upstream"].seen_headers[-1]
    assert seen["x-forwarded-for"] == "127.0.0.1"  # the real peer, not what the client claimed
    assert seen["x-forwarded-proto"] == "https" and seen["host"] == "chargeapp.example.com"
    plain = socket.create_connection(("127.0.0.1", proxy["http"]), timeout=WAIT)
    try:
        plain.sendall(b"GET /api/v1/stations HTTP/1.1\r\nHost: chargeapp.example.com\r\nConnection: close\r\n\r\n")
        answer = plain.recv(65536)
    finally:
        plain.close()
    assert answer.startswith(b"HTTP/1.1 301") and b"Location: https://chargeapp.example.com/api/v1/stations" in answer
