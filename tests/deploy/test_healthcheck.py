"""deploy/docker/healthcheck.sh, the images' HEALTHCHECK, against real HTTP
servers: 2xx is healthy; an error status, a closed port or silence is not."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time

import pytest
from conftest import ROOT

SCRIPT = ROOT / "deploy" / "docker" / "healthcheck.sh"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        status = {"/healthz": 200, "/readyz": 503}.get(self.path, 404)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def check(url: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), url], capture_output=True, text=True, timeout=20, env={"PATH": "/usr/bin:/bin", **env}
    )


def test_2xx_is_healthy(server):
    r = check(server + "/healthz")
    assert r.returncode == 0, r.stderr


def test_error_status_is_unhealthy_and_says_why(server):
    r = check(server + "/readyz")
    assert r.returncode == 1
    assert "503" in r.stderr
    assert check(server + "/nope").returncode == 1


def test_closed_port_is_unhealthy():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = check(f"http://127.0.0.1:{port}/healthz")
    assert r.returncode == 1
    assert "cannot connect" in r.stderr


def test_silent_server_times_out():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        started = time.monotonic()
        r = check(f"http://127.0.0.1:{s.getsockname()[1]}/healthz", TOLLGATE_HEALTHCHECK_TIMEOUT_SECS="1")
        assert r.returncode == 1
        assert "no answer" in r.stderr
        assert time.monotonic() - started < 10
    finally:
        s.close()


def test_usage_error_without_url():
    assert check("").returncode == 2
    assert check("https://example.com/").returncode == 2
