# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One HTTP health probe: send one request, read the answer, judge it.

Private to the vmfleet.deploy collection: no compatibility promise is made to
anything outside it. The polling loop lives in the ``http_health`` module;
this file holds what another gate (a preview-port check, a canary verdict)
would reuse:

* ``REQUEST_ARGUMENT_SPEC``: the request options (url, method, headers, TLS ...);
* ``HttpProber``: sends one request through ``ansible.module_utils.urls.Request``
  and returns a ``ProbeResult``; it never raises for network or HTTP errors,
  they become the result's ``error``;
* ``HealthCriteria``: expected status codes, a body regex and a JMESPath
  expression, and the reasons a result does not meet them;
* ``describe_error``: a short human reason for a connection-level exception
  ("connection refused", "TLS: certificate verify failed: ...").

Runs on managed hosts: Python 3.8 syntax only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import http.client
import json
import os
import re
import socket
import ssl
import time
import traceback
import urllib.error
from http import cookiejar
from urllib.parse import unquote, urlsplit

from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.module_utils.urls import Request, make_context

try:
    import jmespath

    HAS_JMESPATH = True
    JMESPATH_IMPORT_ERROR = None
except ImportError:
    jmespath = None
    HAS_JMESPATH = False
    JMESPATH_IMPORT_ERROR = traceback.format_exc()


# The request options, shared by every module that probes HTTP. The module
# documents them; validate-modules checks that docs and spec agree.
REQUEST_ARGUMENT_SPEC = dict(
    url=dict(type="str", required=True),
    method=dict(type="str", default="GET"),
    headers=dict(type="dict", default={}),
    body=dict(type="str"),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    client_cert=dict(type="path"),
    client_key=dict(type="path"),
    request_timeout=dict(type="float", default=5.0),
    follow_redirects=dict(type="bool", default=False),
    use_proxy=dict(type="bool", default=True),
)

# Bodies larger than this are cut: a health endpoint that answers with more
# than 1 MiB is misconfigured, and the probe must not fill the host's memory.
MAX_BODY_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024
USER_AGENT = "vmfleet.deploy-http_health"
# HTTP method token (RFC 9110 section 5.6.2).
_METHOD_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_SSL_NOISE_RE = re.compile(r"^\[SSL: [A-Z0-9_]+\] |\s*\(_ssl\.c:\d+\)$")


class ProbeConfigError(Exception):
    """The probe cannot be set up at all (bad URL, unreadable certificate ...).

    Distinct from an unhealthy answer: retrying cannot fix it."""


class ProbeResult(object):
    """What one request saw. ``status`` is None when no HTTP answer came back."""

    def __init__(self):
        self.status = None
        self.body = None  # decoded text, or None without an answer
        self.truncated = False
        self.json = None  # parsed body when ``is_json``
        self.is_json = False
        self.json_error = None
        self.location = None  # Location header of a 3xx answer
        self.error = None  # connection-level failure reason
        self.duration = 0.0

    def parse_json(self):
        if self.body is None:
            return
        if self.truncated:
            self.json_error = "body is larger than %d bytes and was cut" % MAX_BODY_BYTES
            return
        if not self.body.strip():
            self.json_error = "empty body"
            return
        try:
            self.json = json.loads(self.body)
            self.is_json = True
        except ValueError as e:
            self.json_error = to_native(e)


def _tls_reason(exc):
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or _SSL_NOISE_RE.sub("", to_native(exc.reason or exc))
        return "TLS: certificate verify failed: %s" % detail
    text = exc.strerror if isinstance(exc.strerror, str) and exc.strerror else to_native(exc)
    return "TLS: %s" % _SSL_NOISE_RE.sub("", text)


def describe_error(exc, timeout=None):
    """A short reason for a connection-level exception from urllib/http.client/ssl."""
    # urllib wraps errors raised while connecting/sending into URLError(reason);
    # errors raised while reading the answer come through unwrapped.
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        if isinstance(exc.reason, BaseException):
            exc = exc.reason
        else:
            return to_native(exc.reason)
    if isinstance(exc, ssl.SSLError):  # includes SSLCertVerificationError
        return _tls_reason(exc)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        if timeout is not None:
            return "timed out after %.1f s" % timeout
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):  # before ConnectionResetError, its parent
        return "connection closed without response"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, ConnectionAbortedError):
        return "connection aborted"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve host: %s" % to_native(exc.strerror or exc)
    if isinstance(exc, http.client.IncompleteRead):
        return "incomplete response (got %d bytes, %s more expected)" % (len(exc.partial), exc.expected)
    if isinstance(exc, http.client.HTTPException):
        return "invalid HTTP response: %s: %s" % (type(exc).__name__, to_native(exc))
    if isinstance(exc, OSError) and exc.strerror:
        return to_native(exc.strerror)
    return "%s: %s" % (type(exc).__name__, to_native(exc))


# Request headers whose values are credentials.
SECRET_HEADERS = ("authorization", "proxy-authorization", "cookie")


def request_secrets(url, headers=None):
    """The credentials in a request's options: the password in the URL (as written and decoded) and
    the values of SECRET_HEADERS. A module adds them to ``no_log_values``, so AnsibleModule masks
    them as ******** in its result, messages and ``invocation``."""
    secrets = set()
    try:
        password = urlsplit(url or "").password
    except ValueError:  # a malformed port; the prober refuses the URL with its own message
        password = None
    if password:
        secrets.update((password, unquote(password)))
    for name, value in (headers or {}).items():
        if to_native(name).strip().lower() in SECRET_HEADERS and value:
            secrets.add(to_native(value))
    return secrets


def _check_file(option, path):
    if path and not os.path.isfile(path):
        raise ProbeConfigError("%s %s does not exist or is not a file" % (option, path))


class HttpProber(object):
    """Sends one request per ``probe()`` call.

    The TLS context (system or ``ca_path`` CAs, client certificate) is built once
    and reused: ``Request`` would otherwise rescan the system CA directories on
    every attempt, and a broken certificate file is a configuration error that
    should fail at once rather than look like an unhealthy service for the whole
    timeout.
    """

    def __init__(
        self,
        url,
        method="GET",
        headers=None,
        body=None,
        validate_certs=True,
        ca_path=None,
        client_cert=None,
        client_key=None,
        follow_redirects=False,
        use_proxy=True,
    ):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProbeConfigError("url must be an http:// or https:// URL with a host, got %r" % url)
        if not method or not _METHOD_RE.match(method):
            raise ProbeConfigError("method must be an HTTP method such as GET or HEAD, got %r" % method)
        if client_key and not client_cert:
            raise ProbeConfigError("client_key requires client_cert")
        _check_file("ca_path", ca_path)
        _check_file("client_cert", client_cert)
        _check_file("client_key", client_key)
        try:
            self.context = make_context(
                cafile=ca_path, validate_certs=validate_certs, client_cert=client_cert, client_key=client_key
            )
        except (OSError, ssl.SSLError, ValueError) as e:
            raise ProbeConfigError(
                "cannot set up TLS from ca_path=%s client_cert=%s client_key=%s: %s"
                % (ca_path, client_cert, client_key, to_native(e))
            ) from e
        self.url = url
        self.method = method.upper()
        self.headers = dict((to_native(k), to_native(v)) for k, v in (headers or {}).items())
        self.data = to_bytes(body, errors="surrogate_or_strict") if body is not None else None
        # 'all' rather than 'safe': asking to follow redirects means following
        # them for every method, the way a browser or curl -L would.
        self.follow_redirects = "all" if follow_redirects else "none"
        self.use_proxy = use_proxy

    def probe(self, timeout):
        """One request with a socket timeout of ``timeout`` seconds.

        The same bound also applies to reading the body as a whole, so a server
        that trickles bytes cannot hold the attempt open for long."""
        result = ProbeResult()
        start = time.monotonic()
        deadline = start + timeout
        request = Request(
            headers=self.headers,
            use_proxy=self.use_proxy,
            timeout=timeout,
            http_agent=USER_AGENT,
            follow_redirects=self.follow_redirects,
            cookies=cookiejar.CookieJar(),  # nothing carries over from one attempt to the next
            context=self.context,
        )
        response = None
        try:
            try:
                response = request.open(self.method, self.url, data=self.data)
            except urllib.error.HTTPError as e:
                # 4xx/5xx (and 3xx when redirects are not followed) are answers,
                # not errors: a 503 with a JSON body is a normal unhealthy reply.
                response = e
            result.status = response.code
            if 300 <= result.status < 400:
                result.location = response.headers.get("Location")
            result.body, result.truncated = self._read_body(response, deadline)
            result.parse_json()
        except Exception as e:  # any failure of the attempt is an unhealthy attempt
            result.error = describe_error(e, timeout)
            if result.status is not None and isinstance(e, (socket.timeout, TimeoutError)):
                result.error = "timed out after %.1f s reading the body" % timeout
        finally:
            if response is not None:
                try:
                    response.close()
                except Exception:
                    pass
            result.duration = time.monotonic() - start
        return result

    @staticmethod
    def _read_body(response, deadline):
        if getattr(response, "fp", True) is None:  # HTTPError without a body
            return "", False
        read = getattr(response, "read1", None) or response.read
        chunks = []
        size = 0
        while size <= MAX_BODY_BYTES:
            if time.monotonic() > deadline:
                raise socket.timeout("body not complete in time")
            chunk = read(min(_READ_CHUNK, MAX_BODY_BYTES + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        raw = b"".join(chunks)
        truncated = len(raw) > MAX_BODY_BYTES
        charset = None
        try:
            charset = response.headers.get_content_charset()
        except Exception:
            pass
        try:
            text = to_text(raw[:MAX_BODY_BYTES], encoding=charset or "utf-8", errors="replace")
        except LookupError:  # unknown charset name
            text = to_text(raw[:MAX_BODY_BYTES], encoding="utf-8", errors="replace")
        return text, truncated


def jmespath_truthy(value):
    """JMESPath's own notion of truth: false, null, '' and empty lists and
    objects are false; every number, 0 included, is true. The same rule that
    ``&&``, ``||`` and ``!`` use inside an expression."""
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)) and not value:
        return False
    return True


def _short(value, limit=100):
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


class HealthCriteria(object):
    """What makes an answer healthy. Compiles the regex and the JMESPath
    expression once; raises ``ProbeConfigError`` when either is invalid."""

    def __init__(self, status_codes, body_regex=None, json_query=None):
        if not status_codes:
            raise ProbeConfigError("status_code must list at least one HTTP status code")
        self.status_codes = list(status_codes)
        self.body_regex = body_regex
        self.json_query = json_query
        self._regex = None
        self._query = None
        if body_regex is not None:
            try:
                self._regex = re.compile(body_regex)
            except re.error as e:
                raise ProbeConfigError("body_regex %r is not a valid regular expression: %s" % (body_regex, e)) from e
        if json_query is not None:
            if not HAS_JMESPATH:
                raise ProbeConfigError("json_query needs the jmespath Python library")
            try:
                self._query = jmespath.compile(json_query)
            except jmespath.exceptions.JMESPathError as e:
                raise ProbeConfigError(
                    "json_query `%s` is not a valid JMESPath expression: %s"
                    % (json_query, to_native(e).replace("\n", " "))
                ) from e

    def describe(self):
        parts = ["status in %s" % self.status_codes]
        if self.body_regex is not None:
            parts.append("body matching %r" % self.body_regex)
        if self.json_query is not None:
            parts.append("json_query `%s` true" % self.json_query)
        return " and ".join(parts)

    def problems(self, result):
        """Every reason ``result`` is not healthy; an empty list means healthy."""
        if result.error is not None:
            return [result.error]
        problems = []
        if result.status not in self.status_codes:
            problem = "status %s not in %s" % (result.status, self.status_codes)
            if result.location:
                problem += " (redirect to %s; follow_redirects is false)" % result.location
            problems.append(problem)
        if self._regex is not None and not self._regex.search(result.body or ""):
            problems.append("body does not match %r" % self.body_regex)
        if self._query is not None:
            if not result.is_json:
                problems.append("body is not JSON: %s" % (result.json_error or "no body"))
            else:
                try:
                    value = self._query.search(result.json)
                except jmespath.exceptions.JMESPathError as e:
                    problems.append("json_query `%s` failed: %s" % (self.json_query, to_native(e)))
                else:
                    if not jmespath_truthy(value):
                        problems.append("json_query `%s` evaluated to %s" % (self.json_query, _short(value)))
        return problems
