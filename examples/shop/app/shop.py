#!/usr/bin/env python3
"""Demo shop microservice for vmfleet.deploy.

One stdlib-only HTTP service, parameterised by environment variables, that plays
catalog, cart, search or payment. It exists so that rolling, blue-green and canary
deployments have something realistic to move around: it reports its name and
version, has a health endpoint, can be told to misbehave, and shuts down
gracefully on SIGTERM.

Environment (see examples/shop/README.md for the full table):

  SERVICE_NAME      service name reported in responses (default "shop")
  VERSION           version reported in responses (default "0.0.0")
  PORT              TCP port to listen on (default 8080; 0 picks a free port)
  BIND              address to bind (default 0.0.0.0; "::" for IPv6)
  HOST_NAME         optional; reported as "host" by GET /
  FAIL_HEALTH       1/true/yes/on: GET /healthz always answers 503
  ERROR_RATE        0.0..1.0: fraction of GET / answered with 500
  START_DELAY       seconds to sleep before binding the listening socket
  LATENCY_MS        added latency on GET /, in milliseconds
  LATENCY_JITTER_MS extra random latency on GET /, uniform in 0..N ms
  SHUTDOWN_TIMEOUT  seconds to wait for in-flight requests on SIGTERM (default 8)
  IDLE_TIMEOUT      seconds before an idle keep-alive connection is closed (default 75)
  ACCESS_LOG        1 (default): one stdout line per request except /healthz;
                    all: health checks too; 0: off

The process never writes to disk, so it runs as an unprivileged user on a
read-only root filesystem.
"""

import json
import math
import os
import random
import signal
import socket
import socketserver
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")

_log_lock = threading.Lock()


def log(message):
    """Write one line to stdout, unbuffered and whole (threads never interleave)."""
    with _log_lock:
        sys.stdout.write(message + "\n")
        sys.stdout.flush()


class ConfigError(ValueError):
    """An environment variable has a value the service cannot use."""


def _env_float(env, name, default, low=0.0, high=None):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if math.isnan(value) or value < low or (high is not None and value > high):  # NaN or out of range
        bounds = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(f"{name} must be {bounds}, got {raw!r}")
    return value


def _env_bool(env, name):
    raw = env.get(name, "").strip().lower()
    if raw in TRUE_WORDS:
        return True
    if raw in FALSE_WORDS:
        return False
    choices = "/".join(TRUE_WORDS + FALSE_WORDS[1:])
    raise ConfigError(f"{name} must be one of {choices}, got {raw!r}")


class Config:
    """Settings read once from the environment at start-up."""

    def __init__(self, env=None):
        env = os.environ if env is None else env
        self.service = env.get("SERVICE_NAME", "").strip() or "shop"
        self.version = env.get("VERSION", "").strip() or "0.0.0"
        self.host_name = env.get("HOST_NAME", "").strip()
        self.bind = env.get("BIND", "").strip() or "0.0.0.0"
        port = env.get("PORT", "").strip() or "8080"
        if not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"PORT must be an integer 0..65535, got {port!r}")
        self.port = int(port)
        self.fail_health = _env_bool(env, "FAIL_HEALTH")
        self.error_rate = _env_float(env, "ERROR_RATE", 0.0, 0.0, 1.0)
        self.start_delay = _env_float(env, "START_DELAY", 0.0)
        self.latency = _env_float(env, "LATENCY_MS", 0.0) / 1000.0
        self.jitter = _env_float(env, "LATENCY_JITTER_MS", 0.0) / 1000.0
        self.shutdown_timeout = _env_float(env, "SHUTDOWN_TIMEOUT", 8.0)
        self.idle_timeout = _env_float(env, "IDLE_TIMEOUT", 75.0, low=0.1)
        access_log = env.get("ACCESS_LOG", "1").strip().lower()
        if access_log == "all":
            self.access_log, self.log_health = True, True
        else:
            self.access_log, self.log_health = _env_bool({"ACCESS_LOG": access_log}, "ACCESS_LOG"), False

    def describe(self):
        parts = [f"service={self.service}", f"version={self.version}"]
        if self.fail_health:
            parts.append("fail_health=1")
        if self.error_rate:
            parts.append(f"error_rate={self.error_rate:g}")
        if self.latency or self.jitter:
            parts.append(f"latency_ms={self.latency * 1000:g}+0..{self.jitter * 1000:g}")
        return " ".join(parts)


class ShopServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that counts in-flight requests and knows when it is draining."""

    daemon_threads = True
    # Do not join handler threads in server_close(): idle keep-alive connections
    # would hold shutdown for IDLE_TIMEOUT. In-flight requests are tracked instead.
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address, handler, config):
        self.config = config
        self.hostname = socket.gethostname()
        self.draining = False
        self._inflight = 0
        self._lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind() resolves the bind address with getfqdn(), a reverse
        # DNS lookup that can stall start-up for seconds on hosts with broken DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def request_started(self):
        with self._lock:
            self._inflight += 1

    def request_finished(self):
        with self._lock:
            self._inflight -= 1

    @property
    def inflight(self):
        with self._lock:
            return self._inflight

    def handle_error(self, request, client_address):
        # A client that goes away mid-response is routine for a load-balanced service.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class ShopHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response carries Content-Length
    server_version = "shop"
    sys_version = ""
    # Headers and body are separate writes: without TCP_NODELAY, keep-alive clients
    # would wait for a delayed ACK (about 40 ms) on every response.
    disable_nagle_algorithm = True

    def setup(self):
        self.timeout = self.server.config.idle_timeout
        super().setup()

    # -- responses -------------------------------------------------------

    def _send_json(self, code, payload, close=False, headers=()):
        body = (json.dumps(payload) + "\n").encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        if close or self.server.draining:
            self.send_header("Connection", "close")  # also sets self.close_connection
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._status = code

    def send_error(self, code, message=None, explain=None):
        """Protocol errors (400, 414, 501, ...) as JSON, closing the connection."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self.log_error("code %d, message %s", code, message or phrase)
        self._send_json(code, {"error": message or phrase, "code": code}, close=True)

    def log_request(self, code="-", size="-"):
        pass  # replaced by the access log line in _handle()

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    # -- dispatch --------------------------------------------------------

    def do_GET(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    def _method_not_allowed(self):
        # The request may carry a body that is not read: close the connection after answering.
        self._send_json(405, {"error": "method not allowed", "code": 405}, close=True, headers=[("Allow", "GET, HEAD")])

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _method_not_allowed

    def _handle(self):
        server = self.server
        server.request_started()
        started = time.monotonic()
        self._status = 0
        path = urlsplit(self.path).path
        try:
            if path == "/healthz":
                self._health()
            elif path == "/":
                self._root()
            else:
                self._send_json(404, {"error": "not found", "path": path})
        finally:
            config = server.config
            if config.access_log and (path != "/healthz" or config.log_health):
                elapsed_ms = (time.monotonic() - started) * 1000.0
                log(f'{self.client_address[0]} "{self.command} {self.path}" {self._status} {elapsed_ms:.1f}ms')
            server.request_finished()  # last: a draining server may exit as soon as this runs

    def _identity(self):
        config = self.server.config
        return {"service": config.service, "version": config.version}

    def _health(self):
        if self.server.draining:
            status, code, reason = "draining", 503, "shutting down"
        elif self.server.config.fail_health:
            status, code, reason = "unhealthy", 503, "FAIL_HEALTH is set"
        else:
            status, code, reason = "ok", 200, None
        payload = {"status": status}
        payload.update(self._identity())
        if reason:
            payload["reason"] = reason
        self._send_json(code, payload)

    def _root(self):
        config = self.server.config
        delay = config.latency + (random.uniform(0.0, config.jitter) if config.jitter else 0.0)
        if delay > 0:
            time.sleep(delay)
        payload = self._identity()
        if config.error_rate and random.random() < config.error_rate:
            payload["error"] = f"injected failure (ERROR_RATE={config.error_rate:g})"
            self._send_json(500, payload)
            return
        payload["hostname"] = self.server.hostname
        if config.host_name:
            payload["host"] = config.host_name
        self._send_json(200, payload)


def serve(config):
    """Run until SIGTERM or SIGINT, then drain. Returns the process exit code."""
    # Block the stop signals in every thread and collect them synchronously in this
    # one: no handler runs at an arbitrary point, and it works as PID 1 in a container.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    if config.start_delay > 0:
        log(f"shop: {config.describe()} starting in {config.start_delay:g}s (START_DELAY)")
        if signal.sigtimedwait(STOP_SIGNALS, config.start_delay) is not None:
            log("shop: stop signal during start delay, exiting")
            return 0

    try:
        server = ShopServer((config.bind, config.port), ShopHandler, config)
    except OSError as exc:
        log(f"shop: cannot listen on {config.bind}:{config.port}: {exc}")
        return 1
    host, port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, name="accept", daemon=True)
    thread.start()
    log(f"shop: {config.describe()} listening on {host}:{port} pid={os.getpid()}")

    received = signal.sigwait(STOP_SIGNALS)
    log(
        f"shop: {signal.Signals(received).name} received, draining"
        f" (in-flight={server.inflight}, timeout={config.shutdown_timeout:g}s)"
    )
    # From here responses carry "Connection: close" and /healthz answers 503.
    server.draining = True
    server.shutdown()  # stop the accept loop (returns within its 0.5 s poll interval)
    server.server_close()  # close the listening socket: new connections are refused

    deadline = time.monotonic() + config.shutdown_timeout
    while server.inflight:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log(f"shop: shutdown timeout, abandoning {server.inflight} in-flight request(s)")
            break
        # Poll briefly, so a second stop signal forces an immediate exit.
        if signal.sigtimedwait(STOP_SIGNALS, min(0.05, remaining)) is not None:
            log("shop: second stop signal, exiting now")
            return 1
    log("shop: stopped")
    return 0


def main():
    try:
        config = Config()
    except ConfigError as exc:
        sys.stderr.write(f"shop: configuration error: {exc}\n")
        return 2
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
