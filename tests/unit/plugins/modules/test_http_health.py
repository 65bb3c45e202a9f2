"""Unit tests for vmfleet.deploy.http_health, against real HTTP(S) servers on 127.0.0.1."""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import ssl
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.vmfleet.deploy.plugins.modules import http_health

# Generous slack on top of `timeout + interval` for thread start-up, a slow CI
# machine, ...: these bounds check correctness, they are not benchmarks.
SLACK = 1.5


# --------------------------------------------------------------------------- servers


class _Handler(BaseHTTPRequestHandler):
    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        with server.lock:
            index = len(server.requests)
            server.requests.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers.items()), "body": body}
            )
        status, payload, headers = server.responder(index, self)
        if not isinstance(payload, (str, bytes)):
            payload = json.dumps(payload)
        payload = payload.encode() if isinstance(payload, str) else payload
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", "application/json")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

    def log_message(self, format, *args):  # keep pytest output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, responder, tls=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.responder = responder
        self.requests = []
        self.lock = threading.Lock()
        self.scheme = "http"
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"

    def handle_error(self, request, client_address):  # failed TLS handshakes etc. are expected here
        pass

    def url(self, path="/healthz", host="127.0.0.1"):
        return "%s://%s:%d%s" % (self.scheme, host, self.server_address[1], path)


@pytest.fixture
def serve():
    """serve(responder, tls=None) starts a server; responder(index, handler) -> (status, body, headers)."""
    servers = []

    def start(responder, tls=None):
        server = _Server(responder, tls)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def static(status, body, headers=None):
    """Always the same answer; a body that is not str/bytes is sent as JSON."""
    return lambda index, handler: (status, body, headers)


def sequence(*statuses):
    """Answers with the given statuses in order, then repeats the last one."""

    def responder(index, handler):
        status = statuses[min(index, len(statuses) - 1)]
        return status, {"status": "ok" if status == 200 else "unhealthy"}, None

    return responder


@pytest.fixture
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- PKI


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, key, issuer, issuer_key, ca=False, san=None, usage=None):
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path, cert=None, key=None):
    data = b""
    if cert is not None:
        data += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        data += key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    path.write_bytes(data)
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway CA with a server and a client certificate, and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key, client_key = _key(), _key(), _key(), _key()
    ca = _cert("vmfleet test CA", ca_key, "vmfleet test CA", ca_key, ca=True)
    other = _cert("unknown CA", other_key, "unknown CA", other_key, ca=True)
    server = _cert(
        "localhost",
        server_key,
        "vmfleet test CA",
        ca_key,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = _cert("monitor", client_key, "vmfleet test CA", ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    return {
        "ca": _write(d / "ca.crt", ca),
        "other_ca": _write(d / "other-ca.crt", other),
        "server_cert": _write(d / "server.crt", server),
        "server_key": _write(d / "server.key", key=server_key),
        "client_cert": _write(d / "client.crt", client),
        "client_key": _write(d / "client.key", key=client_key),
    }


def server_tls(pki, require_client_cert=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(pki["ca"])
    return ctx


# --------------------------------------------------------------------------- health


def test_healthy_at_once(run_module, serve):
    server = serve(static(200, {"status": "ok", "version": "1.1.0"}))
    result = run_module(
        http_health, {"url": server.url(), "json_query": "status == 'ok' && version == '1.1.0'", "timeout": 5}
    )
    assert not result.failed, result
    assert result["healthy"] is True
    assert result["changed"] is False
    assert result["attempts"] == 1
    assert result["status"] == 200
    assert result["reason"] == "healthy"
    assert result["url"] == server.url()
    assert result["json"] == {"status": "ok", "version": "1.1.0"}
    assert result["body_excerpt"] == '{"status": "ok", "version": "1.1.0"}'
    assert isinstance(result["elapsed"], float) and result["elapsed"] < 2


def test_healthy_after_server_switches(run_module, serve):
    switch_at = time.monotonic() + 2.0

    def responder(index, handler):
        if time.monotonic() < switch_at:
            return 503, {"status": "starting"}, None
        return 200, {"status": "ok"}, None

    server = serve(responder)
    result = run_module(
        http_health, {"url": server.url(), "json_query": "status == 'ok'", "interval": 0.25, "timeout": 10}
    )
    assert not result.failed, result
    assert result["healthy"] is True
    assert result["attempts"] > 2
    assert 1.7 <= result["elapsed"] < 2.0 + 0.25 + SLACK
    assert result["json"] == {"status": "ok"}


def test_never_healthy_fails_within_timeout(run_module, serve):
    server = serve(static(503, {"status": "unhealthy"}))
    timeout, interval = 2.0, 0.5
    started = time.monotonic()
    result = run_module(
        http_health,
        {"url": server.url(), "json_query": "status == 'ok'", "interval": interval, "timeout": timeout},
    )
    took = time.monotonic() - started
    assert result.failed
    assert took < timeout + interval + SLACK
    assert result["elapsed"] >= timeout
    assert result["healthy"] is False
    assert result["changed"] is False
    assert result["attempts"] >= 4
    assert result["status"] == 503
    # a 4xx/5xx body is read and parsed like any other answer
    assert result["json"] == {"status": "unhealthy"}
    assert result["reason"] == "status 503 not in [200]; json_query `status == 'ok'` evaluated to false"
    msg = result["msg"]
    assert msg.startswith("%s not healthy after " % server.url())
    assert "(%d attempts)" % result["attempts"] in msg
    assert "expected status in [200] and json_query `status == 'ok'` true" in msg
    assert 'last seen status 503, body \'{"status": "unhealthy"}\'' in msg
    assert "exception" not in result  # an unhealthy service is not a crash


def test_hanging_server_cannot_overrun_timeout(run_module):
    # Accepts connections (through the listen backlog) and never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = "http://127.0.0.1:%d/healthz" % listener.getsockname()[1]
        timeout, interval = 1.0, 0.5
        started = time.monotonic()
        result = run_module(http_health, {"url": url, "timeout": timeout, "interval": interval, "request_timeout": 30})
        took = time.monotonic() - started
    assert result.failed
    assert took < timeout + interval + SLACK
    assert result["status"] is None
    assert result["reason"].startswith("timed out after ")
    assert "last seen timed out after" in result["msg"]


def test_wrong_status(run_module, serve):
    server = serve(static(404, "no such page", {"Content-Type": "text/plain"}))
    result = run_module(http_health, {"url": server.url(), "timeout": 0})
    assert result.failed
    assert result["attempts"] == 1
    assert result["status"] == 404
    assert result["reason"] == "status 404 not in [200]"
    assert result["json"] is None
    assert "expected status in [200]; last seen status 404, body 'no such page'" in result["msg"]


def test_other_expected_status_codes(run_module, serve):
    server = serve(static(204, b""))
    result = run_module(http_health, {"url": server.url(), "status_code": [200, 204], "timeout": 0})
    assert not result.failed, result
    assert result["status"] == 204
    assert result["body_excerpt"] == ""


def test_json_query_false(run_module, serve):
    server = serve(static(200, {"status": "ok", "version": "1.0.0"}))
    query = "status == 'ok' && version == '1.1.0'"
    result = run_module(http_health, {"url": server.url(), "json_query": query, "timeout": 0.3, "interval": 0.1})
    assert result.failed
    assert result["status"] == 200
    assert result["json"] == {"status": "ok", "version": "1.0.0"}
    assert result["reason"] == "json_query `%s` evaluated to false" % query
    assert "expected status in [200] and json_query `%s` true" % query in result["msg"]


def test_json_query_uses_jmespath_truth(run_module, serve):
    # In JMESPath, 0 is true and an empty list is false.
    server = serve(static(200, {"failed": 0, "checks": []}))
    assert not run_module(http_health, {"url": server.url(), "json_query": "failed", "timeout": 0}).failed
    result = run_module(http_health, {"url": server.url(), "json_query": "checks", "timeout": 0})
    assert result.failed
    assert result["reason"] == "json_query `checks` evaluated to []"


def test_invalid_json_body(run_module, serve):
    server = serve(static(200, "<html>ok</html>", {"Content-Type": "text/html"}))
    result = run_module(http_health, {"url": server.url(), "json_query": "status == 'ok'", "timeout": 0})
    assert result.failed
    assert "exception" not in result
    assert result["status"] == 200
    assert result["json"] is None
    assert result["body_excerpt"] == "<html>ok</html>"
    assert result["reason"].startswith("body is not JSON: ")


@pytest.mark.parametrize(
    "regex, healthy", [(r'"status":\s*"ok"', True), (r"^ready$", False)], ids=["matches", "does-not-match"]
)
def test_body_regex(run_module, serve, regex, healthy):
    server = serve(static(200, {"status": "ok"}))
    result = run_module(http_health, {"url": server.url(), "body_regex": regex, "timeout": 0})
    assert result.failed is (not healthy)
    if not healthy:
        assert result["reason"] == "body does not match '^ready$'"


def test_body_excerpt_is_cut_at_512_chars(run_module, serve):
    server = serve(static(503, "x" * 2000, {"Content-Type": "text/plain"}))
    result = run_module(http_health, {"url": server.url(), "timeout": 0})
    assert result["body_excerpt"] == "x" * 512
    assert "x" * 200 + "'..." in result["msg"]
    assert "x" * 201 not in result["msg"]


# --------------------------------------------------------------------------- TLS


def test_tls_trusted_ca_accepted(run_module, serve, pki):
    server = serve(static(200, {"status": "ok"}), tls=server_tls(pki))
    result = run_module(http_health, {"url": server.url(), "ca_path": pki["ca"], "timeout": 0})
    assert not result.failed, result
    assert result["status"] == 200
    # the certificate names localhost too
    assert not run_module(http_health, {"url": server.url(host="localhost"), "ca_path": pki["ca"], "timeout": 0}).failed


def test_tls_unknown_ca_rejected(run_module, serve, pki):
    server = serve(static(200, {"status": "ok"}), tls=server_tls(pki))
    result = run_module(http_health, {"url": server.url(), "ca_path": pki["other_ca"], "timeout": 0.3, "interval": 0.1})
    assert result.failed
    assert result["status"] is None
    assert result["reason"].startswith("TLS: certificate verify failed: "), result["reason"]
    assert "last seen TLS: certificate verify failed" in result["msg"]
    # the system CAs do not know the throwaway CA either
    result = run_module(http_health, {"url": server.url(), "timeout": 0})
    assert result["reason"].startswith("TLS: certificate verify failed: "), result["reason"]


def test_tls_validate_certs_false_accepts_unknown_ca(run_module, serve, pki):
    server = serve(static(200, {"status": "ok"}), tls=server_tls(pki))
    result = run_module(http_health, {"url": server.url(), "validate_certs": False, "timeout": 0})
    assert not result.failed, result


def test_tls_client_cert_sent(run_module, serve, pki):
    server = serve(static(200, {"status": "ok"}), tls=server_tls(pki, require_client_cert=True))
    args = {
        "url": server.url(),
        "ca_path": pki["ca"],
        "client_cert": pki["client_cert"],
        "client_key": pki["client_key"],
        "timeout": 0,
    }
    result = run_module(http_health, args)
    assert not result.failed, result
    assert result["status"] == 200


def test_tls_client_cert_missing_is_unhealthy(run_module, serve, pki):
    server = serve(static(200, {"status": "ok"}), tls=server_tls(pki, require_client_cert=True))
    result = run_module(http_health, {"url": server.url(), "ca_path": pki["ca"], "timeout": 0})
    assert result.failed
    assert result["status"] is None
    assert "exception" not in result
    # TLS 1.3 reports the missing certificate after the handshake, as an alert
    # or as a closed connection depending on timing.
    assert result["reason"].startswith(("TLS: ", "connection ")), result["reason"]


# --------------------------------------------------------------------------- behaviour


def test_check_mode_runs_the_same_checks(run_module, serve):
    server = serve(static(200, {"status": "ok"}))
    args = {"url": server.url(), "json_query": "status == 'ok'", "timeout": 2}
    normal = run_module(http_health, args)
    checked = run_module(http_health, args, check_mode=True)
    assert len(server.requests) == 2  # check mode really probes
    for result in (normal, checked):
        result.pop("elapsed")
        result.pop("invocation", None)
    assert checked == normal
    assert checked["changed"] is False and checked["healthy"] is True

    down = serve(static(503, {"status": "down"}))
    result = run_module(http_health, {"url": down.url(), "timeout": 0}, check_mode=True)
    assert result.failed and result["changed"] is False


def test_consecutive_successes_reset_on_failure(run_module, serve):
    server = serve(sequence(200, 200, 503, 200, 200, 200, 503))
    result = run_module(http_health, {"url": server.url(), "consecutive_successes": 3, "interval": 0.05, "timeout": 5})
    assert not result.failed, result
    assert result["attempts"] == 6
    assert len(server.requests) == 6


def test_consecutive_successes_never_reached_on_flapping_server(run_module, serve):
    server = serve(lambda index, handler: (200 if index % 2 else 503, "{}", None))
    result = run_module(
        http_health, {"url": server.url(), "consecutive_successes": 2, "interval": 0.05, "timeout": 0.8}
    )
    assert result.failed
    assert "expected status in [200], 2 times in a row" in result["msg"]
    assert result["reason"] in ("status 503 not in [200]", "healthy, but only 1 of 2 consecutive successes")


def test_connection_refused(run_module, free_port):
    url = "http://127.0.0.1:%d/healthz" % free_port
    result = run_module(http_health, {"url": url, "timeout": 0.3, "interval": 0.1})
    assert result.failed
    assert result["reason"] == "connection refused"
    assert result["status"] is None
    assert result["body_excerpt"] is None
    assert result["json"] is None
    assert result["attempts"] >= 2
    assert result["msg"].endswith("expected status in [200]; last seen connection refused")


def test_headers_and_method_are_sent(run_module, serve):
    server = serve(static(201, {"status": "ok"}))
    result = run_module(
        http_health,
        {
            "url": server.url("/internal/ready?deep=1"),
            "method": "post",
            "headers": {"X-Probe-Token": "s3cret", "Content-Type": "application/json"},
            "body": '{"deep": true}',
            "status_code": [201],
            "timeout": 0,
        },
    )
    assert not result.failed, result
    [request] = server.requests
    assert request["method"] == "POST"
    assert request["path"] == "/internal/ready?deep=1"
    assert request["headers"]["X-Probe-Token"] == "s3cret"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["User-Agent"] == "vmfleet.deploy-http_health"
    assert request["body"] == b'{"deep": true}'

    run_module(
        http_health,
        {
            "url": server.url(),
            "method": "HEAD",
            "headers": {"User-Agent": "lb-probe"},
            "status_code": [201],
            "timeout": 0,
        },
    )
    assert server.requests[-1]["method"] == "HEAD"
    assert server.requests[-1]["headers"]["User-Agent"] == "lb-probe"


def _redirecting(index, handler):
    if handler.path == "/healthz":
        return 302, "", {"Location": "/real-healthz"}
    return 200, {"status": "ok"}, None


def test_redirect_not_followed_by_default(run_module, serve):
    server = serve(_redirecting)
    result = run_module(http_health, {"url": server.url(), "timeout": 0})
    assert result.failed
    assert result["status"] == 302
    assert result["reason"] == "status 302 not in [200] (redirect to /real-healthz; follow_redirects is false)"
    assert [r["path"] for r in server.requests] == ["/healthz"]


def test_redirect_followed_when_asked(run_module, serve):
    server = serve(_redirecting)
    result = run_module(http_health, {"url": server.url(), "follow_redirects": True, "timeout": 0})
    assert not result.failed, result
    assert result["json"] == {"status": "ok"}
    assert [r["path"] for r in server.requests] == ["/healthz", "/real-healthz"]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, message",
    [
        ({"timeout": -5}, "timeout must be >= 0, got -5"),
        ({"interval": 0}, "interval must be > 0, got 0"),
        ({"request_timeout": 0}, "request_timeout must be > 0, got 0"),
        ({"consecutive_successes": 0}, "consecutive_successes must be >= 1, got 0"),
        ({"status_code": []}, "status_code must list at least one HTTP status code"),
        ({"body_regex": "("}, "body_regex '(' is not a valid regular expression"),
        ({"json_query": "status =="}, "json_query `status ==` is not a valid JMESPath expression"),
        ({"url": "ftp://127.0.0.1/x"}, "url must be an http:// or https:// URL with a host, got 'ftp://127.0.0.1/x'"),
        ({"url": "127.0.0.1:8080/healthz"}, "url must be an http:// or https:// URL"),
        ({"method": "GET /"}, "method must be an HTTP method"),
        ({"ca_path": "/nonexistent/ca.crt"}, "ca_path /nonexistent/ca.crt does not exist"),
        ({"client_key": "/nonexistent/client.key"}, "client_key requires client_cert"),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) else None,
)
def test_bad_input_fails_naming_the_option(run_module, free_port, args, message):
    base = {"url": "http://127.0.0.1:%d/healthz" % free_port}
    base.update(args)
    started = time.monotonic()
    result = run_module(http_health, base)
    assert result.failed
    assert message in result["msg"], result["msg"]
    assert time.monotonic() - started < 1  # rejected before any polling


def test_bad_client_cert_fails_at_once(run_module, free_port, tmp_path):
    junk = tmp_path / "client.crt"
    junk.write_text("not a certificate\n")
    result = run_module(http_health, {"url": "https://127.0.0.1:%d/" % free_port, "client_cert": str(junk)})
    assert result.failed
    assert result["msg"].startswith("cannot set up TLS from ca_path=None client_cert=%s" % junk)


def test_missing_jmespath_only_matters_for_json_query(run_module, serve, monkeypatch):
    monkeypatch.setattr(http_health, "HAS_JMESPATH", False)
    server = serve(static(200, {"status": "ok"}))
    result = run_module(http_health, {"url": server.url(), "json_query": "status == 'ok'", "timeout": 0})
    assert result.failed
    assert "jmespath" in result["msg"]
    assert not run_module(http_health, {"url": server.url(), "timeout": 0}).failed


def _basic_auth(user, password):
    """Answers 200 to `user:password` sent as basic authentication, 401 to anything else."""
    expected = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()

    def responder(index, handler):
        if handler.headers.get("Authorization") == expected:
            return 200, {"status": "ok"}, None
        return 401, {"status": "who are you"}, {"WWW-Authenticate": 'Basic realm="probe"'}

    return responder


@pytest.mark.parametrize("healthy", [True, False], ids=["healthy", "unhealthy"])
def test_credentials_in_the_url_are_sent_and_never_shown(run_module, serve, healthy):
    # "p@ss:w/rd" is percent-encoded in the URL; both forms must stay out of the output.
    secret = "p@ss:w/rd-9f3c"
    server = serve(_basic_auth("probe", secret if healthy else "another"))
    url = server.url().replace("://", "://probe:%s@" % quote(secret, safe=""))
    result = run_module(http_health, {"url": url, "timeout": 0, "headers": {"Authorization-Hint": "none"}})
    output = json.dumps(result)
    assert result.failed is not healthy, result
    assert secret not in output and quote(secret, safe="") not in output, output
    assert "probe:********@127.0.0.1" in result["url"]
    assert "probe:********@127.0.0.1" in result["invocation"]["module_args"]["url"]
    if not healthy:
        assert result["msg"].startswith("http://probe:********@127.0.0.1") and "status 401" in result["msg"]
    assert server.requests[-1]["headers"]["Authorization"].startswith("Basic ")  # after the 401 challenge


def test_credential_headers_are_sent_and_never_shown(run_module, serve):
    server = serve(static(503, {"status": "starting"}))
    headers = {"Authorization": "Bearer tok-51e2a7", "cookie": "session=c00k1e-88", "X-Trace": "visible-1"}
    result = run_module(http_health, {"url": server.url(), "timeout": 0, "headers": headers})
    output = json.dumps(result)
    assert result.failed
    assert "tok-51e2a7" not in output and "c00k1e-88" not in output, output
    assert "visible-1" in output  # other headers are not secrets
    request = server.requests[0]["headers"]
    assert request["Authorization"] == "Bearer tok-51e2a7" and request["Cookie"] == "session=c00k1e-88"
