"""A bounded HTTP load probe for zero-downtime tests (stdlib only).

It sends requests to one URL from a few threads, for a bounded time and a
bounded number of requests, optionally at a capped rate, and records for every
request its outcome (the HTTP status, or the kind of error), the ``version``
field of a JSON body when there is one, and its latency. The summary says how
many requests failed and how, which versions answered, and how fast.

Two connection modes:

- new connection per request (the default): every request opens a connection
  and sends ``Connection: close``. It sees refused and reset connections, and
  listeners that accept but never answer. Over HTTPS, each thread resumes its
  previous TLS session, as browsers do: a resumed handshake skips the
  certificate signature and its verification, which on a 2-core lab leaves
  CPU for the deployment under test (the summary counts ``resumed``);
- keep-alive (``keepalive=True``): each thread keeps one connection open and
  reuses it, and opens a new one only after the server closed it. It sees what
  long-lived clients see, e.g. an idle connection closed without a response by
  a load balancer reload.

A request never retries: every failure is counted once.

As a library::

    from tests.integration.loadprobe import LoadProbe

    with LoadProbe("https://10.77.103.10:8001/", threads=4, keepalive=True,
                   cafile=".lab/pki/ca.crt", rate=100) as probe:
        ...  # deploy, reload, flip
    summary = probe.result()        # a dict, see LoadProbe.result()
    assert summary["failed"] == 0, summary["errors"]

``with`` starts the threads and stops them at the end of the block; the probe
also stops by itself when ``seconds`` or ``max_requests`` is reached.

To tell which requests came before or after an event timed with
``time.monotonic()`` (a flip, a drain, a reload), add ``probe.monotonic_start``
to a record's ``start`` or ``end``; ``probe.wait_requests(n)`` waits until the
load is flowing::

    with LoadProbe(url, threads=2, rate=50) as probe:
        probe.wait_requests(20, timeout=10)
        flip()
        flipped_at = time.monotonic()
    after = [r.version for r in probe.records() if probe.monotonic_start + r.start > flipped_at]

As a command (exit status 1 when any request failed)::

    python tests/integration/loadprobe.py URL --threads 4 --seconds 20 \\
        --max-requests 20000 [--keepalive] [--cafile CA] [--rate N] [--json]
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["LoadProbe", "Record", "classify_error", "format_summary", "main", "version_of"]

#: Error kinds, as they appear in ``result()["errors"]``.
ERROR_KINDS = (
    "refused",  # connection refused (nothing listening)
    "reset",  # connection reset by the peer
    "broken-pipe",  # the peer closed while the request was being sent
    "closed-without-response",  # connection closed before any response byte
    "incomplete-body",  # response shorter than its Content-Length
    "timeout",  # no connection or no answer within the timeout
    "tls",  # TLS handshake or certificate failure
    "unreachable",  # no route to the host or network
    "protocol",  # not a valid HTTP response
    "http-4xx",  # an answer with a 4xx status
    "http-5xx",  # an answer with a 5xx status (e.g. 502/503 from a load balancer)
)


@dataclass(frozen=True)
class Record:
    """One request: when it started (seconds since the probe started), how long it took, what came back."""

    start: float
    latency: float
    status: int | None  # HTTP status, None when no response was read
    error: str | None  # an ERROR_KINDS entry, or None when the request succeeded
    version: str | None  # "version" of the JSON body, when present
    thread: int
    detail: str = ""  # the exception text, for errors

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def end(self) -> float:
        """When the request ended (seconds since the probe started, like ``start``)."""
        return self.start + self.latency


def classify_error(exc: BaseException) -> str:
    """Map an exception raised by http.client / socket / ssl to an error kind."""
    # Order matters: RemoteDisconnected is both a ConnectionResetError and a BadStatusLine,
    # and ssl errors are OSErrors.
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed-without-response"
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete-body"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if isinstance(exc, ssl.SSLError):  # handshake failures, certificate errors, EOF during the handshake
        return "tls"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError):
        return "reset"
    if isinstance(exc, BrokenPipeError):
        return "broken-pipe"
    if isinstance(exc, http.client.HTTPException):
        return "protocol"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        if exc.errno == errno.ECONNABORTED:
            return "reset"
        return f"os-{errno.errorcode.get(exc.errno or 0, 'error').lower()}"
    return type(exc).__name__


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list (0.0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * fraction // 1))  # ceil(n * fraction), at least 1
    return sorted_values[int(rank) - 1]


class _Pacer:
    """Spaces request starts across all threads so that at most ``rate`` start per second.

    A late request does not earn a burst later: the rate is a cap, not a target.
    """

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self, stop: threading.Event) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self._interval
        delay = slot - time.monotonic()
        if delay > 0:
            stop.wait(delay)


class LoadProbe:
    """Send requests to ``url`` from background threads until stopped or a bound is hit.

    Args:
        url: ``http://`` or ``https://`` URL; its path and query are requested.
        threads: number of client threads (each has at most one request in flight).
        keepalive: reuse one connection per thread (True) or open one per request (False).
        seconds: stop after this long.
        max_requests: stop after this many requests (over all threads).
        rate: at most this many requests per second over all threads (None: as fast as possible).
        cafile: CA bundle to verify an HTTPS server with (None: the system's CAs).
        insecure: do not verify the HTTPS server's certificate at all.
        timeout: socket timeout of each connect and read, in seconds.
        headers: extra request headers.
        slow: latency (seconds) from which a request counts as slow in the summary.
        method: HTTP method.
    """

    def __init__(
        self,
        url: str,
        *,
        threads: int = 4,
        keepalive: bool = False,
        seconds: float = 30.0,
        max_requests: int = 20000,
        rate: float | None = None,
        cafile: str | None = None,
        insecure: bool = False,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
        slow: float = 0.5,
        method: str = "GET",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http:// or https:// with a host, got {url!r}")
        if threads < 1 or seconds <= 0 or max_requests < 1 or (rate is not None and rate <= 0) or timeout <= 0:
            raise ValueError("threads, seconds, max_requests, rate and timeout must be positive")
        self.url = url
        self.threads = threads
        self.keepalive = keepalive
        self.seconds = seconds
        self.max_requests = max_requests
        self.rate = rate
        self.timeout = timeout
        self.slow = slow
        self.method = method
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"User-Agent": "vmfleet-loadprobe", "Accept": "application/json", **(headers or {})}
        if not keepalive:
            self._headers["Connection"] = "close"
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(cafile=cafile)
            if insecure:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._issued = 0
        self._connections = 0
        self._resumed = 0  # TLS handshakes that resumed a session
        self._sessions: list[ssl.SSLSession | None] = [None] * threads
        self._records: list[list[Record]] = [[] for _thread in range(threads)]
        self._workers: list[threading.Thread] = []
        self._pacer = _Pacer(rate) if rate else None
        self._started_at = 0.0
        self._recorded = 0  # requests recorded so far, all threads
        self._stopped_at: float | None = None
        self._wall_start = 0.0

    # -- lifecycle -------------------------------------------------------

    def start(self) -> LoadProbe:
        """Start the client threads (once) and return the probe."""
        if self._workers:
            raise RuntimeError("this probe was already started")
        self._started_at = time.monotonic()
        self._wall_start = time.time()
        self._deadline = self._started_at + self.seconds
        for index in range(self.threads):
            worker = threading.Thread(target=self._run, args=(index,), name=f"loadprobe-{index}", daemon=True)
            self._workers.append(worker)
            worker.start()
        return self

    def stop(self) -> None:
        """Stop the threads, letting in-flight requests finish (at most ``timeout`` seconds each)."""
        self._stop.set()
        for worker in self._workers:
            worker.join(self.timeout * 2 + 1)
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the probe ends by itself (time or request bound); True when it has ended."""
        end = None if timeout is None else time.monotonic() + timeout
        for worker in self._workers:
            worker.join(None if end is None else max(0.0, end - time.monotonic()))
        done = not any(worker.is_alive() for worker in self._workers)
        if done and self._stopped_at is None:
            self._stopped_at = time.monotonic()
        return done

    def wait_requests(self, count: int, timeout: float | None = None) -> bool:
        """Block until at least ``count`` requests have been recorded (failed ones included).

        True when they have; False when ``timeout`` seconds passed or the probe ended first.
        """
        end = None if timeout is None else time.monotonic() + timeout
        while self._recorded < count:
            if not self.running or (end is not None and time.monotonic() >= end):
                return self._recorded >= count
            time.sleep(0.01)
        return True

    @property
    def running(self) -> bool:
        return any(worker.is_alive() for worker in self._workers)

    @property
    def monotonic_start(self) -> float | None:
        """``time.monotonic()`` when the probe started (None before ``start()``).

        ``monotonic_start + record.start`` (or ``+ record.end``) puts a request on the
        clock of ``time.monotonic()``, to compare it with events timed with it.
        """
        return self._started_at if self._workers else None

    def __enter__(self) -> LoadProbe:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- results ---------------------------------------------------------

    def records(self) -> list[Record]:
        """Every request so far, in start order."""
        merged = [record for per_thread in self._records for record in list(per_thread)]
        merged.sort(key=lambda record: record.start)
        return merged

    def result(self) -> dict:
        """Stop the probe and return its summary (see ``snapshot()``)."""
        self.stop()
        return self.snapshot()

    def snapshot(self) -> dict:
        """The summary so far, without stopping. A JSON-serialisable dict:

        url, mode ("keepalive" or "new-connection"), threads, rate_limit, duration_s,
        total, ok, failed, errors {kind: count}, statuses {"200": count},
        versions {version: count} (of successful responses), version_spans
        {version: [first_start_s, last_start_s]}, latency_ms {p50, p95, p99, max, mean}
        (over every request, failed ones included), rps (requests per second),
        slow (requests slower than ``slow``), connections (opened), error_samples
        (the first 10 failures: t, kind, detail).
        """
        records = self.records()
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        duration = max(end - self._started_at, 1e-9) if self._started_at else 0.0
        latencies = sorted(record.latency for record in records)
        errors = Counter(record.error for record in records if record.error)
        statuses = Counter(str(record.status) for record in records if record.status is not None)
        versions = Counter(record.version for record in records if record.ok and record.version is not None)
        spans: dict[str, list[float]] = {}
        for record in records:
            if record.ok and record.version is not None:
                span = spans.setdefault(record.version, [record.start, record.start])
                span[1] = record.start
        failures = [record for record in records if not record.ok]
        return {
            "url": self.url,
            "mode": "keepalive" if self.keepalive else "new-connection",
            "threads": self.threads,
            "rate_limit": self.rate,
            "started_at": self._wall_start,
            "duration_s": round(duration, 3),
            "total": len(records),
            "ok": len(records) - len(failures),
            "failed": len(failures),
            "errors": dict(sorted(errors.items())),
            "statuses": dict(sorted(statuses.items())),
            "versions": dict(sorted(versions.items())),
            "version_spans": {version: [round(a, 3), round(b, 3)] for version, (a, b) in sorted(spans.items())},
            "latency_ms": {
                "p50": round(_percentile(latencies, 0.50) * 1000, 2),
                "p95": round(_percentile(latencies, 0.95) * 1000, 2),
                "p99": round(_percentile(latencies, 0.99) * 1000, 2),
                "max": round((latencies[-1] if latencies else 0.0) * 1000, 2),
                "mean": round((sum(latencies) / len(latencies) if latencies else 0.0) * 1000, 2),
            },
            "rps": round(len(records) / duration, 1) if duration else 0.0,
            "slow": sum(1 for latency in latencies if latency >= self.slow),
            "connections": self._connections,
            "resumed": self._resumed,
            "error_samples": [
                {"t": round(record.start, 3), "kind": record.error, "detail": record.detail} for record in failures[:10]
            ],
        }

    # -- the client threads ----------------------------------------------

    def _take_ticket(self) -> bool:
        """Reserve the next request; False when a bound is reached."""
        if self._stop.is_set() or time.monotonic() >= self._deadline:
            return False
        with self._lock:
            if self._issued >= self.max_requests:
                return False
            self._issued += 1
            return True

    def _connect(self, index: int) -> http.client.HTTPConnection:
        with self._lock:
            self._connections += 1
        if self._tls is not None:
            return _ResumingHTTPSConnection(self, index)
        return http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _tls_connected(self, index: int, sock: ssl.SSLSocket) -> None:
        if sock.session_reused:
            with self._lock:
                self._resumed += 1

    def _tls_closing(self, index: int, sock: ssl.SSLSocket) -> None:
        try:
            self._sessions[index] = sock.session
        except (OSError, ValueError):  # closed before a session was set up
            pass

    def _run(self, index: int) -> None:
        out = self._records[index]
        conn: http.client.HTTPConnection | None = None
        try:
            while True:
                if self._pacer is not None:
                    self._pacer.wait(self._stop)
                if not self._take_ticket():
                    return
                if conn is None:
                    conn = self._connect(index)
                began = time.monotonic()
                status = version = error = None
                detail = ""
                try:
                    conn.request(self.method, self._path, headers=self._headers)
                    response = conn.getresponse()
                    body = response.read()
                    status = response.status
                    version = version_of(body)
                    if status >= 500:
                        error = "http-5xx"
                    elif status >= 400:
                        error = "http-4xx"
                    if not self.keepalive or response.will_close:
                        conn.close()
                        conn = None
                except Exception as exc:  # noqa: BLE001 - every failure is a data point
                    error = classify_error(exc)
                    detail = f"{type(exc).__name__}: {exc}"[:200]
                    conn.close()
                    conn = None
                ended = time.monotonic()
                out.append(
                    Record(
                        start=round(began - self._started_at, 6),
                        latency=ended - began,
                        status=status,
                        error=error,
                        version=version,
                        thread=index,
                        detail=detail,
                    )
                )
                with self._lock:
                    self._recorded += 1
        finally:
            if conn is not None:
                conn.close()


class _ResumingHTTPSConnection(http.client.HTTPSConnection):
    """An HTTPS connection that offers its thread's last TLS session and keeps the new one.

    http.client has no way to pass ``session=`` to ``wrap_socket``, hence this class.
    """

    def __init__(self, probe: LoadProbe, index: int) -> None:
        super().__init__(probe._host, probe._port, timeout=probe.timeout, context=probe._tls)
        self._probe = probe
        self._index = index

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(
            self.sock, server_hostname=self.host, session=self._probe._sessions[self._index]
        )
        self._probe._tls_connected(self._index, self.sock)

    def close(self) -> None:
        if isinstance(self.sock, ssl.SSLSocket):
            self._probe._tls_closing(self._index, self.sock)
        super().close()


def version_of(body: bytes) -> str | None:
    """The ``version`` field of a JSON object body, as a string; None for any other body."""
    if not body or body[:1] not in (b"{", b" ", b"\n"):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    version = payload.get("version") if isinstance(payload, dict) else None
    return None if version is None else str(version)


def format_summary(summary: dict) -> str:
    """A short human-readable report of a ``result()`` dict."""
    lat = summary["latency_ms"]
    lines = [
        f"{summary['url']} ({summary['mode']}, {summary['threads']} threads"
        + (f", <= {summary['rate_limit']:g} req/s" if summary["rate_limit"] else "")
        + f"): {summary['duration_s']:.1f} s",
        f"  requests  total={summary['total']} ok={summary['ok']} failed={summary['failed']}"
        f" rps={summary['rps']} connections={summary['connections']} resumed={summary.get('resumed', 0)}"
        f" slow={summary['slow']}",
        f"  latency   p50={lat['p50']}ms p95={lat['p95']}ms p99={lat['p99']}ms max={lat['max']}ms",
        "  statuses  " + (", ".join(f"{k}: {v}" for k, v in summary["statuses"].items()) or "none"),
        "  versions  " + (", ".join(f"{k}: {v}" for k, v in summary["versions"].items()) or "none"),
    ]
    if summary["errors"]:
        lines.append("  errors    " + ", ".join(f"{k}: {v}" for k, v in summary["errors"].items()))
        lines.extend(f"    t={s['t']}s {s['kind']} {s['detail']}" for s in summary["error_samples"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bounded HTTP load probe: counts every failed request.")
    parser.add_argument("url")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0, help="stop after this long (default 20)")
    parser.add_argument("--max-requests", type=int, default=20000, help="stop after this many (default 20000)")
    parser.add_argument("--rate", type=float, default=None, help="cap on requests per second, all threads together")
    parser.add_argument("--keepalive", action="store_true", help="reuse one connection per thread")
    parser.add_argument("--cafile", help="CA bundle that signs the HTTPS server's certificate")
    parser.add_argument("--insecure", action="store_true", help="do not verify the HTTPS certificate")
    parser.add_argument("--timeout", type=float, default=5.0, help="connect/read timeout in seconds (default 5)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        probe = LoadProbe(
            args.url,
            threads=args.threads,
            keepalive=args.keepalive,
            seconds=args.seconds,
            max_requests=args.max_requests,
            rate=args.rate,
            cafile=args.cafile,
            insecure=args.insecure,
            timeout=args.timeout,
        )
    except (ValueError, OSError) as exc:  # bad URL or bounds, unreadable CA file
        parser.error(str(exc))
    probe.start()
    try:
        probe.wait()
    except KeyboardInterrupt:
        pass
    summary = probe.result()
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
