"""Tests for tests/integration/loadprobe.py, the project's one load probe, against
a stdlib HTTP server on 127.0.0.1 (no lab needed).

They cover what the unit tests' ``FrontendLoad`` (tests/unit/haproxy_fixture.py)
relies on: ``Record.end``, ``LoadProbe.monotonic_start``, ``wait_requests`` and
``version_of``, and the basics of both connection modes.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.append(str(_INTEGRATION))
from loadprobe import LoadProbe, Record, version_of  # noqa: E402


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5

    def do_GET(self):  # noqa: N802 (http.server's naming)
        status, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """``(url, httpd)``; set ``httpd.answer = (status, body)`` to change what it answers."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.answer = (200, json.dumps({"version": "1.2.0"}).encode())
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d/" % httpd.server_address[1], httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.mark.parametrize(
    "body, expected",
    [
        (b'{"version": "blue1"}', "blue1"),
        (b'\n{"version": 2}', "2"),
        (b'{"name": "x"}', None),
        (b"[1, 2]", None),
        (b"blue1", None),
        (b"{not json", None),
        (b"", None),
    ],
)
def test_version_of(body, expected):
    assert version_of(body) == expected


def test_record_end_is_start_plus_latency():
    record = Record(start=1.5, latency=0.25, status=200, error=None, version="1", thread=0)
    assert record.end == 1.75 and record.ok


@pytest.mark.parametrize("keepalive", [True, False])
def test_bounded_run_records_versions(server, keepalive):
    url, _httpd = server
    probe = LoadProbe(url, threads=2, keepalive=keepalive, max_requests=30, seconds=10)
    assert probe.monotonic_start is None
    before = time.monotonic()
    probe.start()
    after = time.monotonic()
    assert probe.wait(10)
    summary = probe.result()
    assert summary["total"] == 30 and summary["failed"] == 0, summary
    assert summary["versions"] == {"1.2.0": 30}
    assert summary["mode"] == ("keepalive" if keepalive else "new-connection")
    assert summary["connections"] == (2 if keepalive else 30)
    # monotonic_start puts the records on the clock of time.monotonic()
    assert before <= probe.monotonic_start <= after
    records = probe.records()
    assert all(before <= probe.monotonic_start + r.start <= probe.monotonic_start + r.end for r in records)
    assert max(probe.monotonic_start + r.end for r in records) <= time.monotonic()


def test_wait_requests(server):
    url, _httpd = server
    with LoadProbe(url, threads=2, rate=200, max_requests=50, seconds=10) as probe:
        assert probe.wait_requests(10, timeout=5) is True
        assert len(probe.records()) >= 10
    # the probe ended at max_requests before the count was reached
    assert probe.wait_requests(51, timeout=5) is False
    # a count that cannot be reached in time
    with LoadProbe(url, threads=1, rate=5, max_requests=100, seconds=10) as slow:
        started = time.monotonic()
        assert slow.wait_requests(100, timeout=0.3) is False
        assert time.monotonic() - started < 2
    # before start: nothing runs, nothing to wait for
    assert LoadProbe(url).wait_requests(1, timeout=1) is False


def test_http_errors_are_failures_without_version(server):
    url, httpd = server
    httpd.answer = (503, b"<html>no server</html>")
    probe = LoadProbe(url, threads=1, max_requests=5, seconds=10)
    probe.start()
    assert probe.wait(10)
    summary = probe.result()
    assert summary["failed"] == 5 and summary["errors"] == {"http-5xx": 5}
    assert all(r.status == 503 and r.version is None and not r.ok for r in probe.records())


@pytest.fixture
def tls_server(tmp_path):
    """The ``server`` fixture's handler behind TLS, with a certificate for 127.0.0.1; ``(url, cafile)``."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.answer = (200, json.dumps({"version": "1.2.0"}).encode())
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield "https://127.0.0.1:%d/" % httpd.server_address[1], str(cert)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_new_connections_resume_their_thread_s_tls_session(tls_server):
    url, cafile = tls_server
    probe = LoadProbe(url, threads=2, keepalive=False, max_requests=20, seconds=20, cafile=cafile)
    probe.start()
    assert probe.wait(20)
    summary = probe.result()
    assert summary["total"] == 20 and summary["failed"] == 0, summary
    assert summary["connections"] == 20
    # Every thread's first handshake is a full one; the others resume (TLS 1.3 tickets).
    assert summary["resumed"] == 18, summary


def test_a_certificate_the_ca_does_not_sign_still_fails(tls_server, tmp_path):
    url, _cafile = tls_server
    other = tmp_path / "other.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(tmp_path / "other.key"), "-out", str(other), "-days", "1", "-subj", "/CN=other"],
        check=True, capture_output=True, timeout=30,
    )
    probe = LoadProbe(url, threads=1, keepalive=False, max_requests=3, seconds=10, cafile=str(other))
    probe.start()
    assert probe.wait(10)
    summary = probe.result()
    assert summary["failed"] == 3 and summary["resumed"] == 0, summary
