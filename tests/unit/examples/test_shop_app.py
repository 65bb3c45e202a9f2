"""Tests for the demo shop service (examples/shop/app).

Each test runs shop.py as a real subprocess on a free 127.0.0.1 port and talks
HTTP to it; only the standard library and pytest are needed.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[3] / "examples" / "shop" / "app"
SHOP = APP_DIR / "shop.py"
HEALTHCHECK = APP_DIR / "healthcheck.py"
CONFIG_VARS = (
    "SERVICE_NAME",
    "VERSION",
    "PORT",
    "BIND",
    "HOST_NAME",
    "FAIL_HEALTH",
    "ERROR_RATE",
    "START_DELAY",
    "LATENCY_MS",
    "LATENCY_JITTER_MS",
    "SHUTDOWN_TIMEOUT",
    "IDLE_TIMEOUT",
    "ACCESS_LOG",
)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Shop:
    """One shop.py process."""

    def __init__(self, port, proc):
        self.port = port
        self.proc = proc

    def connection(self, timeout=5.0):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path="/", method="GET", conn=None):
        """Return (status, headers, parsed JSON body or None, seconds)."""
        own = conn is None
        conn = conn or self.connection()
        try:
            started = time.monotonic()
            conn.request(method, path)
            response = conn.getresponse()
            raw = response.read()
            elapsed = time.monotonic() - started
            body = json.loads(raw) if raw else None
            return response.status, response.headers, body, elapsed
        finally:
            if own:
                conn.close()

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"shop.py exited early with {self.proc.returncode}: {self.output()}")
            if is_listening(self.port):
                return
            time.sleep(0.02)
        raise AssertionError(f"shop.py did not listen on port {self.port} within {timeout}s")

    def output(self):
        if self.proc.poll() is None:
            return ""
        out, err = self.proc.communicate()
        return (out or "") + (err or "")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def start_shop():
    """Factory: start_shop(wait=True, **env) -> Shop; every process is killed at teardown."""
    started = []

    def start(wait=True, **env):
        port = free_port()
        full_env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
        full_env.update(
            {"PORT": str(port), "BIND": "127.0.0.1", "ACCESS_LOG": "0", "SERVICE_NAME": "catalog", "VERSION": "1.0.0"}
        )
        full_env.update({k: str(v) for k, v in env.items()})
        proc = subprocess.Popen(
            [sys.executable, str(SHOP)], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        shop = Shop(port, proc)
        started.append(shop)
        if wait:
            shop.wait_ready()
        return shop

    yield start
    for shop in started:
        shop.stop()


def test_root_reports_service_version_and_hostname(start_shop):
    shop = start_shop(SERVICE_NAME="cart", VERSION="1.1.0", HOST_NAME="vm-07")
    status, headers, body, _unused = shop.get("/")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert body == {"service": "cart", "version": "1.1.0", "hostname": socket.gethostname(), "host": "vm-07"}
    # Query strings are ignored; HEAD has the headers and no body.
    assert shop.get("/?x=1")[2]["service"] == "cart"
    status, headers, body, _unused = shop.get("/", method="HEAD")
    assert status == 200 and body is None and int(headers["Content-Length"]) > 0
    # Unknown paths and methods answer in JSON too.
    assert shop.get("/nope")[:1] == (404,)
    status, headers, body, _unused = shop.get("/", method="POST")
    assert (status, headers["Allow"], headers["Connection"]) == (405, "GET, HEAD", "close")


def test_healthz_ok_and_fail_health(start_shop):
    good = start_shop(VERSION="1.1.0")
    bad = start_shop(VERSION="1.2.0-bad", FAIL_HEALTH="1")
    status, _unused, body, _unused = good.get("/healthz")
    assert (status, body) == (200, {"status": "ok", "service": "catalog", "version": "1.1.0"})
    for _unused in range(3):
        status, _unused, body, _unused = bad.get("/healthz")
        assert status == 503
        assert body["status"] == "unhealthy" and body["version"] == "1.2.0-bad"
    # FAIL_HEALTH only breaks the health check; the service itself still answers.
    assert bad.get("/")[0] == 200


def test_healthcheck_script(start_shop):
    good = start_shop()
    bad = start_shop(FAIL_HEALTH="true")

    def run(port):
        return subprocess.run(
            [sys.executable, "-I", "-S", str(HEALTHCHECK), str(port)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )

    result = run(good.port)
    assert result.returncode == 0, result.stdout
    assert '"status": "ok"' in result.stdout
    result = run(bad.port)
    assert result.returncode == 1 and "503" in result.stdout
    assert run(free_port()).returncode == 1  # nothing listening


def test_error_rate(start_shop):
    always = start_shop(ERROR_RATE="1.0")
    status, _unused, body, _unused = always.get("/")
    assert status == 500
    assert body["service"] == "catalog" and "error" in body
    assert always.get("/healthz")[0] == 200  # errors are injected on / only

    half = start_shop(ERROR_RATE="0.5")
    conn = half.connection()
    statuses = [half.get("/", conn=conn)[0] for _unused in range(200)]
    conn.close()
    assert set(statuses) == {200, 500}
    assert 50 < statuses.count(500) < 150  # binomial(200, 0.5): outside this is ~1e-12


def test_start_delay_postpones_listening(start_shop):
    started = time.monotonic()
    shop = start_shop(wait=False, START_DELAY="1.5")
    time.sleep(0.5)
    assert shop.proc.poll() is None
    assert not is_listening(shop.port)
    shop.wait_ready()
    assert time.monotonic() - started >= 1.4
    assert shop.get("/healthz")[0] == 200


def test_latency_is_added_to_root_only(start_shop):
    baseline = start_shop()
    slow = start_shop(LATENCY_MS="300")
    jittery = start_shop(LATENCY_MS="100", LATENCY_JITTER_MS="100")
    base_time = min(baseline.get("/")[3] for _unused in range(3))
    slow_time = min(slow.get("/")[3] for _unused in range(3))
    assert slow_time >= 0.29
    assert slow_time - base_time >= 0.2
    assert slow.get("/healthz")[3] < 0.2
    jitter_times = [jittery.get("/")[3] for _unused in range(5)]
    assert all(0.099 <= t < 1.0 for t in jitter_times)


def test_keep_alive(start_shop):
    shop = start_shop()
    conn = shop.connection()
    conn.request("GET", "/")
    conn.getresponse().read()
    sock = conn.sock
    assert sock is not None
    started = time.monotonic()
    for path in ["/", "/healthz"] * 25:
        status, headers, body, _unused = shop.get(path, conn=conn)
        assert status == 200 and body["service"] == "catalog"
        assert headers.get("Connection", "").lower() != "close"
        assert conn.sock is sock  # the same TCP connection every time
    # 50 small requests on one connection are fast: no delayed-ACK stall (about 40 ms each).
    assert time.monotonic() - started < 1.5
    conn.close()


def test_sigterm_finishes_inflight_request_then_exits_zero(start_shop):
    shop = start_shop(LATENCY_MS="1500", ACCESS_LOG="1")
    result = {}

    def slow_request():
        result["response"] = shop.get("/", conn=shop.connection(timeout=10))

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)  # the request is now being served
    shop.proc.send_signal(signal.SIGTERM)
    # New connections are refused soon, while the in-flight request is still running.
    deadline = time.monotonic() + 1.0
    while is_listening(shop.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_listening(shop.port)
    assert shop.proc.poll() is None
    worker.join(timeout=10)
    status, headers, body, _unused = result["response"]
    assert status == 200 and body["version"] == "1.0.0"
    assert headers["Connection"] == "close"
    assert shop.proc.wait(timeout=5) == 0
    out = shop.output()
    assert "SIGTERM received, draining (in-flight=1" in out
    assert '"GET /" 200' in out  # the access log line
    assert "shop: stopped" in out


def test_sigterm_when_idle_and_during_start_delay(start_shop):
    idle = start_shop()
    conn = idle.connection()
    assert idle.get("/", conn=conn)[0] == 200  # an idle keep-alive connection must not hold shutdown
    waiting = start_shop(wait=False, START_DELAY="30")
    time.sleep(0.3)
    started = time.monotonic()
    idle.proc.send_signal(signal.SIGTERM)
    waiting.proc.send_signal(signal.SIGTERM)
    assert idle.proc.wait(timeout=5) == 0
    assert waiting.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0
    conn.close()


def test_shutdown_timeout_bounds_the_drain(start_shop):
    shop = start_shop(LATENCY_MS="5000", SHUTDOWN_TIMEOUT="0.5")
    conn = shop.connection(timeout=10)
    conn.request("GET", "/")
    time.sleep(0.2)
    started = time.monotonic()
    shop.proc.send_signal(signal.SIGTERM)
    assert shop.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.5
    assert "abandoning 1 in-flight request" in shop.output()
    conn.close()


@pytest.mark.parametrize("env", [{"ERROR_RATE": "2"}, {"LATENCY_MS": "-1"}, {"PORT": "http"}, {"FAIL_HEALTH": "maybe"}])
def test_invalid_configuration_exits_2(env):
    full_env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARS}
    full_env.update(env)
    result = subprocess.run(
        [sys.executable, str(SHOP)], env=full_env, capture_output=True, text=True, timeout=10, check=False
    )
    assert result.returncode == 2
    assert f"configuration error: {next(iter(env))}" in result.stderr
