"""Unit tests for the private module_utils.http_probe helpers."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error

import pytest

from ansible_collections.vmfleet.deploy.plugins.module_utils import http_probe
from ansible_collections.vmfleet.deploy.plugins.module_utils.http_probe import (
    MAX_BODY_BYTES,
    HealthCriteria,
    HttpProber,
    ProbeConfigError,
    ProbeResult,
    describe_error,
    jmespath_truthy,
)


@pytest.fixture
def raw_server():
    """raw_server(script) serves one connection: script(conn) writes whatever it likes."""
    listeners = []

    def start(script):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        listeners.append(listener)

        def run():
            try:
                conn = listener.accept()[0]
            except OSError:
                return
            with conn:
                conn.recv(65536)  # the request
                try:
                    script(conn)
                except OSError:
                    pass

        threading.Thread(target=run, daemon=True).start()
        return "http://127.0.0.1:%d/healthz" % listener.getsockname()[1]

    yield start
    for listener in listeners:
        listener.close()


def _cert_error():
    e = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    e.verify_message = "unable to get local issuer certificate"
    e.reason = "CERTIFICATE_VERIFY_FAILED"
    return e


@pytest.mark.parametrize(
    "exc, reason",
    [
        (urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")), "connection refused"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection reset by peer"),
        (http.client.RemoteDisconnected("Remote end closed connection"), "connection closed without response"),
        (urllib.error.URLError(TimeoutError("timed out")), "timed out after 2.5 s"),
        (TimeoutError("timed out"), "timed out after 2.5 s"),
        (
            urllib.error.URLError(_cert_error()),
            "TLS: certificate verify failed: unable to get local issuer certificate",
        ),
        (
            ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required (_ssl.c:2580)"),
            "TLS: tlsv13 alert certificate required",
        ),
        (
            urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
            "cannot resolve host: Name or service not known",
        ),
        (urllib.error.URLError("unknown url type: gopher"), "unknown url type: gopher"),
        (http.client.BadStatusLine("SSH-2.0-OpenSSH_9.2"), "invalid HTTP response: BadStatusLine: SSH-2.0-OpenSSH_9.2"),
        (OSError(113, "No route to host"), "No route to host"),
        (RuntimeError("boom"), "RuntimeError: boom"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_describe_error(exc, reason):
    assert describe_error(exc, 2.5) == reason


@pytest.mark.parametrize(
    "value, truth",
    [
        (None, False),
        (False, False),
        ("", False),
        ([], False),
        ({}, False),
        (True, True),
        (0, True),
        (0.0, True),
        ("ok", True),
        ([0], True),
        ({"a": None}, True),
    ],
)
def test_jmespath_truthy(value, truth):
    assert jmespath_truthy(value) is truth


def _result(status=200, body='{"status": "ok"}', error=None):
    result = ProbeResult()
    result.status = status
    result.body = body
    result.error = error
    result.parse_json()
    return result


def test_criteria_describe_and_all_problems_listed():
    criteria = HealthCriteria([200, 204], body_regex="ready", json_query="status == 'ok'")
    assert criteria.describe() == "status in [200, 204] and body matching 'ready' and json_query `status == 'ok'` true"
    assert criteria.problems(_result(503, '{"status": "down"}')) == [
        "status 503 not in [200, 204]",
        "body does not match 'ready'",
        "json_query `status == 'ok'` evaluated to false",
    ]
    assert criteria.problems(_result(200, '{"status": "ok", "ready": true}')) == []


def test_criteria_connection_error_is_the_only_problem():
    criteria = HealthCriteria([200], json_query="status")
    assert criteria.problems(_result(None, None, error="connection refused")) == ["connection refused"]


def test_criteria_empty_body_is_not_json():
    criteria = HealthCriteria([200], json_query="status")
    assert criteria.problems(_result(200, "")) == ["body is not JSON: empty body"]


def test_prober_cuts_large_bodies(raw_server):
    body = json.dumps({"pad": "x" * MAX_BODY_BYTES}).encode()

    def script(conn):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    result = HttpProber(raw_server(script)).probe(5)
    assert result.error is None
    assert result.truncated is True
    assert len(result.body) == MAX_BODY_BYTES
    assert result.is_json is False
    assert HealthCriteria([200], json_query="pad").problems(result) == [
        "body is not JSON: body is larger than %d bytes and was cut" % MAX_BODY_BYTES
    ]


def test_prober_bounds_a_trickling_body(raw_server):
    def script(conn):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _byte in range(100):  # one byte every 50 ms: each read is well inside the socket timeout
            conn.sendall(b"x")
            time.sleep(0.05)

    started = time.monotonic()
    result = HttpProber(raw_server(script)).probe(0.5)
    assert time.monotonic() - started < 1.5
    assert result.status == 200
    assert result.error == "timed out after 0.5 s reading the body"


def test_prober_decodes_with_the_declared_charset(raw_server):
    def script(conn):
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=latin-1\r\n\r\ncaf\xe9")

    assert HttpProber(raw_server(script)).probe(2).body == "caf\u00e9"


def test_criteria_without_jmespath(monkeypatch):
    monkeypatch.setattr(http_probe, "HAS_JMESPATH", False)
    with pytest.raises(ProbeConfigError, match="jmespath"):
        HealthCriteria([200], json_query="status")
    HealthCriteria([200], body_regex="ok")  # fine without it
