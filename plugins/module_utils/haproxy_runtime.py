# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Client for the HAProxy runtime API (the "stats socket").

This module is private to the vmfleet.deploy collection: its interface may
change in any release, and only the collection's own modules may import it.

Why our own client instead of ``community.general.haproxy``: that module hangs
on servers that are DOWN (its drain wait never sees the state it waits for on
a server whose checks fail) and has no map operations at all, while the
collection needs both: drain that skips DOWN servers straight to MAINT, and
atomic blue-green flips through ``set map``/``add map``.

Protocol choice: every connection switches the CLI to interactive mode with
``prompt`` and then sends one command at a time, reading each answer up to the
``"\\n> "`` prompt that HAProxy prints after it. On HAProxy 2.6 this is more
robust than sending ``cmd1; cmd2`` on one line, because:

* each answer is delimited by its own prompt, so an error answer is tied to
  the exact command that caused it (with ``;`` the answers are concatenated
  and every command still runs after an earlier one failed);
* the client can decide on the next command from an earlier answer in the
  same connection (``set map`` when the key exists, ``add map`` otherwise);
* no line length limit (one request line must fit in ``tune.bufsize``) and no
  need to escape ``;`` between commands.

HAProxy has no status code on the CLI. Commands that change something answer
with an empty text on success, so any text there is an error; ``show``
commands are checked against the format they must have, and known error
sentences ("No such backend.", "Unknown command", "Permission denied", ...)
are turned into ``HAProxyRuntimeError`` naming the command. Errors reaching
the socket become ``HAProxyConnectionError`` ("cannot reach HAProxy runtime
API at <socket>: <reason>").

Several map changes (a blue-green cutover sets a split map and flips the
active map) go through ``apply_map_changes``: one connection, every map read
first, then the commands back to back, then a check that HAProxy holds the
new values, with the earlier changes undone when one fails. ``MapFile`` reads
and edits map files the way HAProxy reads them, so the modules can keep a
file in step with the live map.

Everything here is stdlib only and keeps to Python 3.8 syntax, because it runs
on the managed load balancer hosts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import csv
import os
import re
import socket as _socket
import time

SERVER_STATES = ("ready", "drain", "maint")
MIN_WEIGHT = 0
MAX_WEIGHT = 256

# srv_admin_state flags of `show servers state` (include/haproxy/server-t.h).
ADMF_FMAINT = 0x01  # forced into maintenance (set server ... state maint)
ADMF_IMAINT = 0x02  # inherited from a tracked server
ADMF_CMAINT = 0x04  # `disabled` in the configuration
ADMF_FDRAIN = 0x08  # forced drain (set server ... state drain)
ADMF_IDRAIN = 0x10  # inherited drain
ADMF_RMAINT = 0x20  # address resolution failure
ADMF_MAINT_MASK = ADMF_FMAINT | ADMF_IMAINT | ADMF_CMAINT | ADMF_RMAINT
ADMF_DRAIN_MASK = ADMF_FDRAIN | ADMF_IDRAIN

# srv_op_state of `show servers state`.
OPERATIONAL_STATES = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}

PROMPT = b"\n> "

# Sentences HAProxy 2.6 answers with when a command fails (first line of the
# answer). Matched at the start of the answer.
_ERROR_PREFIXES = (
    "Unknown command",
    "Permission denied",
    "No such backend",
    "No such server",
    "No such proxy",
    "Can't find backend",
    "Require 'backend/server'",
    "Require backend",
    "Unknown map identifier",
    "Unknown ACL identifier",
    "entry not found",
    "Key not found",
    "Absolute weight",
    "Relative weight",
    "Backend is using a static LB algorithm",
    "Failed to",
    "Out of memory",
    "Missing argument",
    "Invalid",
    "Unknown",
)
# ... or anywhere in the first line ("'set map' expects three parameters ...").
_ERROR_WORDS = (" expects ", "is not supported", "not allowed", "Usage:")
_HINTS = {
    "Permission denied": "the runtime API socket needs 'level admin' for this command",
    "Unknown command": "this HAProxy version does not know the command, or the socket level hides it",
}

# Fields of `show stat` / `show servers state` that are text even when they look
# like numbers (names can be digits).
_STAT_TEXT_FIELDS = frozenset(
    (
        "pxname",
        "svname",
        "status",
        "check_status",
        "check_desc",
        "agent_status",
        "agent_desc",
        "last_chk",
        "last_agt",
        "addr",
        "cookie",
        "mode",
        "algo",
        "tracked",
    )
)
_STATE_TEXT_FIELDS = frozenset(
    ("be_name", "srv_name", "srv_addr", "srv_fqdn", "srvrecord", "srv_check_addr", "srv_agent_addr")
)
_INT_RE = re.compile(r"^-?[0-9]+$")
_NAME_RE = re.compile(r"^[^\s/]+$")
_MAP_ENTRY_RE = re.compile(r"^(0x[0-9a-fA-F]+) (\S+)(?: (.*))?$")
_MAP_LIST_RE = re.compile(r"^(-?[0-9]+) \(([^)]*)\)\s*(.*)$")


class HAProxyRuntimeError(Exception):
    """An error answer of the runtime API, or an unexpected answer."""

    def __init__(self, message, command=None, answer=None):
        super().__init__(message)
        self.command = command
        self.answer = answer


class HAProxyConnectionError(HAProxyRuntimeError):
    """The runtime API socket cannot be reached, or the connection broke."""


class HAProxyNotFoundError(HAProxyRuntimeError):
    """An unknown backend, server or map."""


# --------------------------------------------------------------------- helpers
def parse_address(address):
    """Return ``(family, sockaddr, display)`` for a socket option value.

    Accepts a unix socket path (``/run/haproxy/admin.sock``, ``unix:///path``)
    or a TCP address (``tcp://127.0.0.1:9999``, ``127.0.0.1:9999``,
    ``[::1]:9999``).
    """
    if not address or not isinstance(address, str):
        raise HAProxyConnectionError("the HAProxy runtime API socket must be a path or host:port, got %r" % (address,))
    value = address.strip()
    if value.startswith("unix://"):
        return _socket.AF_UNIX, value[len("unix://") :], address
    tcp = value.startswith("tcp://")
    if tcp:
        value = value[len("tcp://") :]
    if tcp or ("/" not in value and ":" in value):
        host, sep, port = value.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise HAProxyConnectionError(
                "the HAProxy runtime API socket %r is not a valid tcp://host:port address" % (address,)
            )
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        return family, (host, int(port)), address
    return _socket.AF_UNIX, value, address


def escape_arg(value):
    """Escape one CLI argument: HAProxy splits on blanks and ``;``."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise HAProxyRuntimeError("HAProxy runtime API arguments cannot contain a newline: %r" % (text,))
    if text == "":
        raise HAProxyRuntimeError("HAProxy runtime API arguments cannot be empty")
    return re.sub(r"([\\\s;])", r"\\\1", text)


def check_name(kind, value):
    """Backend and server names: no blanks, no ``/``."""
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise HAProxyRuntimeError(
            "invalid HAProxy %s name %r: it must be non-empty, without blanks or '/'" % (kind, value)
        )
    return value


def check_weight(weight, option="weight"):
    """Return ``weight`` as an int in 0..256, or raise naming the option."""
    try:
        if isinstance(weight, bool):
            raise ValueError()
        value = int(weight)
        if str(value) != str(weight).strip():
            raise ValueError()
    except (TypeError, ValueError):
        raise HAProxyRuntimeError(
            "%s must be an integer between %d and %d, got %r" % (option, MIN_WEIGHT, MAX_WEIGHT, weight)
        ) from None
    if not MIN_WEIGHT <= value <= MAX_WEIGHT:
        raise HAProxyRuntimeError("%s must be between %d and %d, got %d" % (option, MIN_WEIGHT, MAX_WEIGHT, value))
    return value


def _typed(value, text=False):
    if value == "" or value == "-":
        return None
    if not text and _INT_RE.match(value):
        return int(value)
    return value


def admin_state_name(flags):
    """``ready``, ``drain`` or ``maint`` from a srv_admin_state bit field."""
    if flags is None:
        return None
    flags = int(flags)
    if flags & ADMF_MAINT_MASK:
        return "maint"
    if flags & ADMF_DRAIN_MASK:
        return "drain"
    return "ready"


def first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def error_in_answer(answer):
    """Return the error sentence of an answer, or ``None``."""
    line = first_line(answer)
    if not line or line.startswith(("0x", "# ")):
        # map entries and CSV/state headers are never errors
        return None
    for prefix in _ERROR_PREFIXES:
        if line.startswith(prefix):
            if prefix == "Unknown command":
                return prefix
            return line
    for word in _ERROR_WORDS:
        if word in line:
            return line
    return None


def _error(command, answer, sentence=None):
    sentence = sentence or first_line(answer) or "empty answer"
    message = "HAProxy runtime API command '%s' failed: %s" % (command, sentence)
    for key, hint in _HINTS.items():
        if sentence.startswith(key):
            message += " (%s)" % hint
    cls = HAProxyRuntimeError
    if sentence.startswith(("No such", "Can't find", "Unknown map", "entry not found", "Key not found")):
        cls = HAProxyNotFoundError
    return cls(message, command=command, answer=answer)


# --------------------------------------------------------------------- parsers
def parse_show_stat(text):
    """Parse ``show stat`` CSV into a list of dicts (ints where numeric)."""
    lines = (text or "").splitlines()
    if not lines or not lines[0].startswith("# pxname"):
        raise HAProxyRuntimeError("unexpected answer to 'show stat': %s" % (first_line(text) or "empty answer"))
    header = lines[0][2:].split(",")
    rows = []
    for record in csv.reader(line for line in lines[1:] if line.strip()):
        row = {}
        for name, value in zip(header, record):
            if name in ("", "-"):
                continue
            row[name] = _typed(value, text=name in _STAT_TEXT_FIELDS)
        if row.get("check_status"):
            # "* L7OK": a check is running right now.
            row["check_status"] = row["check_status"].lstrip("* ").strip() or None
        rows.append(row)
    return rows


def parse_servers_state(text):
    """Parse ``show servers state`` (format version 1) into a list of dicts."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise HAProxyRuntimeError(
            "unexpected answer to 'show servers state' (expected format version 1): %s"
            % (first_line(text) or "empty answer")
        )
    if len(lines) < 2 or not lines[1].startswith("# be_id"):
        raise HAProxyRuntimeError("unexpected 'show servers state' header: %s" % (lines[1] if len(lines) > 1 else ""))
    header = lines[1][2:].split()
    rows = []
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        fields = line.split()
        row = {}
        for name, value in zip(header, fields):
            row[name] = _typed(value, text=name in _STATE_TEXT_FIELDS)
        rows.append(row)
    return rows


def parse_map_entries(text):
    """Parse ``show map <map>`` lines ``<ptr> <key> <value>``."""
    entries = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        match = _MAP_ENTRY_RE.match(line)
        if not match:
            raise HAProxyRuntimeError("unexpected line in a 'show map' answer: %s" % line)
        entries.append({"id": match.group(1), "key": match.group(2), "value": match.group(3) or ""})
    return entries


def parse_map_list(text):
    """Parse ``show map`` (the list of maps) into ``[{id, file, description}]``."""
    maps = []
    lines = (text or "").splitlines()
    if lines and lines[0].startswith("# id"):
        lines = lines[1:]
    for line in lines:
        if not line.strip():
            continue
        match = _MAP_LIST_RE.match(line.strip())
        if not match:
            raise HAProxyRuntimeError("unexpected line in the 'show map' list: %s" % line)
        maps.append({"id": int(match.group(1)), "file": match.group(2), "description": match.group(3)})
    return maps


# A map file line: key, blanks, value (the rest of the line, trailing blanks
# trimmed), as HAProxy reads it (pat_ref_read_from_file_smp).
_MAP_LINE_RE = re.compile(r"^(\s*)(\S+)(?:(\s+)(.*?))?(\s*)$")


class MapFile(object):
    """A map file on disk: its entries, and its text with the lines of one key changed.

    Comment lines (``#`` first), blank lines and the other keys are kept as
    they are, and so are each line's separator and line ending. A missing
    file reads as empty (``exists`` is false).
    """

    def __init__(self, path):
        self.path = path
        self.exists = os.path.exists(path)
        if self.exists:
            with open(path, "rb") as handle:
                self.text = handle.read().decode("utf-8", "surrogateescape")
        else:
            self.text = ""

    @staticmethod
    def _parse(line):
        body = line.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#"):
            return None
        return _MAP_LINE_RE.match(body)

    @classmethod
    def parse(cls, text):
        """``[(key, value)]`` of a map file's text, in file order."""
        entries = []
        for line in (text or "").splitlines():
            match = cls._parse(line)
            if match:
                entries.append((match.group(2), match.group(4) or ""))
        return entries

    def entries(self, text=None):
        return self.parse(self.text if text is None else text)

    def value(self, key, text=None):
        """The value of the first line of ``key``, or ``None``."""
        for name, value in self.entries(text):
            if name == key:
                return value
        return None

    def render(self, key, value, text=None):
        """The text (``text`` or the file's) with ``key`` set to ``value`` (``None``: removed)."""
        lines = (self.text if text is None else text).splitlines(True)
        out = []
        found = False
        for line in lines:
            match = self._parse(line)
            if not match or match.group(2) != key:
                out.append(line)
                continue
            found = True
            if value is None:
                continue
            ending = line[len(line.rstrip("\r\n")) :]
            out.append("%s%s%s%s%s" % (match.group(1), key, match.group(3) or " ", value, ending))
        if value is not None and not found:
            if out and not out[-1].endswith("\n"):
                out[-1] += "\n"
            out.append("%s %s\n" % (key, value))
        return "".join(out)


def merge_server(stat, state):
    """One view of a server from its ``show stat`` row and its state row."""
    state = state or {}
    stat = stat or {}
    admin_flags = state.get("srv_admin_state")
    status = stat.get("status")
    return {
        "backend": stat.get("pxname") or state.get("be_name"),
        "server": stat.get("svname") or state.get("srv_name"),
        "status": status,
        "admin_state": admin_state_name(admin_flags),
        "admin_flags": admin_flags,
        "operational_state": OPERATIONAL_STATES.get(state.get("srv_op_state")),
        "weight": state.get("srv_uweight", stat.get("uweight")),
        "initial_weight": state.get("srv_iweight"),
        "effective_weight": stat.get("weight"),
        "scur": stat.get("scur") or 0,
        "qcur": stat.get("qcur") or 0,
        "check_status": stat.get("check_status"),
        "check_desc": stat.get("check_desc"),
        "checks_enabled": _checks_configured(state, status),
        "addr": stat.get("addr"),
        "req_tot": stat.get("req_tot"),
        "hrsp_2xx": stat.get("hrsp_2xx"),
        "hrsp_5xx": stat.get("hrsp_5xx"),
        "rtime": stat.get("rtime"),
    }


def _checks_configured(state, status):
    # srv_check_state bit 0x04 is CHK_ST_CONFIGURED; in MAINT the stat status
    # hides whether the server has checks.
    if state.get("srv_check_state") is not None:
        return bool(int(state["srv_check_state"]) & 0x04)
    return status != "no check"


def status_word(status):
    """First word of a status: "UP 1/2" -> "UP", "no check" -> "no check"."""
    if not status:
        return ""
    if status.startswith("no check"):
        return "no check"
    return status.split()[0]


def is_down(view):
    """A server whose checks say DOWN (and that is not in MAINT)."""
    return status_word(view.get("status")) == "DOWN"


def is_up(view):
    """UP after a passed check ("UP", not the transitional "UP 1/2"), or no checks."""
    status = view.get("status") or ""
    return status == "UP" or status == "no check"


def wait_until(fetch, predicate, timeout, interval, clock=time.monotonic, sleep=time.sleep, tolerate=()):
    """Poll ``fetch()`` until ``predicate(value)`` or ``timeout`` seconds.

    Returns ``(ok, value, elapsed)``; ``fetch`` runs at least once, and the
    wait never goes beyond the deadline by more than one fetch. A ``fetch``
    that raises one of the ``tolerate`` exceptions is tried again at the next
    poll; when the deadline comes while it still raises, the last one is raised.
    """
    interval = max(float(interval), 0.01)
    started = clock()
    deadline = started + max(float(timeout), 0.0)
    while True:
        error = None
        try:
            value = fetch()
        except tolerate as exc:
            error = exc
        if error is None and predicate(value):
            return True, value, clock() - started
        remaining = deadline - clock()
        if remaining <= 0:
            if error is not None:
                raise error
            return False, value, clock() - started
        sleep(min(interval, remaining))


# ---------------------------------------------------------------------- client
class _Session(object):
    """One connection to the runtime API, in interactive (prompt) mode."""

    def __init__(self, address, timeout):
        self.family, self.sockaddr, self.display = parse_address(address)
        self.timeout = float(timeout)
        self.sock = None

    def open(self):
        sock = _socket.socket(self.family, _socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.sockaddr)
        except _socket.timeout:
            sock.close()
            raise HAProxyConnectionError(
                "cannot reach HAProxy runtime API at %s: no answer within %s s" % (self.display, _fmt(self.timeout))
            ) from None
        except (OSError, ValueError) as exc:
            sock.close()
            raise HAProxyConnectionError(
                "cannot reach HAProxy runtime API at %s: %s" % (self.display, _reason(exc))
            ) from exc
        self.sock = sock
        self._exchange("prompt")
        return self

    def close(self):
        if self.sock is None:
            return
        try:
            self.sock.sendall(b"quit\n")
        except OSError:
            pass
        try:
            self.sock.close()
        finally:
            self.sock = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _exchange(self, command):
        data = command.encode("utf-8") + b"\n"
        deadline = time.monotonic() + self.timeout
        try:
            self.sock.sendall(data)
            buf = b""
            while not buf.endswith(PROMPT):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _socket.timeout()
                self.sock.settimeout(remaining)
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise HAProxyConnectionError(
                        "HAProxy runtime API at %s closed the connection while answering '%s'"
                        % (self.display, command),
                        command=command,
                        answer=buf.decode("utf-8", "replace"),
                    )
                buf += chunk
        except _socket.timeout:
            raise HAProxyConnectionError(
                "HAProxy runtime API at %s did not answer '%s' within %s s"
                % (self.display, command, _fmt(self.timeout)),
                command=command,
            ) from None
        except OSError as exc:
            raise HAProxyConnectionError(
                "lost the connection to HAProxy runtime API at %s during '%s': %s"
                % (self.display, command, _reason(exc)),
                command=command,
            ) from exc
        # The answer ends with a blank line and then the prompt "> ".
        return buf[: -len(PROMPT)].decode("utf-8", "replace") if buf.endswith(PROMPT) else ""

    def command(self, command, check=True):
        """Send one command; return its answer text (without the prompt)."""
        if self.sock is None:
            raise HAProxyRuntimeError("the runtime API session is not open")
        if "\n" in command or "\r" in command:
            raise HAProxyRuntimeError("a runtime API command cannot contain a newline: %r" % (command,))
        answer = self._exchange(command)
        if check:
            sentence = error_in_answer(answer)
            if sentence:
                raise _error(command, answer, sentence)
        return answer

    def change(self, command):
        """Send a command that changes state: its answer must be empty."""
        answer = self.command(command)
        if answer.strip():
            raise _error(command, answer)
        return answer


def _fmt(seconds):
    return ("%.1f" % seconds).rstrip("0").rstrip(".")


def _reason(exc):
    return getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__


class HAProxyRuntime(object):
    """HAProxy runtime API client.

    ``address`` is a unix socket path or ``tcp://host:port`` / ``host:port``;
    ``timeout`` bounds connecting and every single answer, in seconds.
    """

    def __init__(self, address, timeout=5.0):
        parse_address(address)  # fail early on a malformed address
        self.address = address
        self.timeout = float(timeout)
        if self.timeout <= 0:
            raise HAProxyRuntimeError("timeout must be a positive number of seconds, got %r" % (timeout,))

    # -- connections
    def session(self):
        """A connection for several commands: ``with client.session() as s: s.command(...)``."""
        return _Session(self.address, self.timeout)

    def execute(self, commands, check=True):
        """Send several commands in one connection; return their answers in order."""
        if isinstance(commands, str):
            commands = [commands]
        with self.session() as session:
            return [session.command(command, check=check) for command in commands]

    def command(self, command, check=True):
        return self.execute([command], check=check)[0]

    # -- reading
    def show_info(self):
        answer = self.command("show info")
        info = {}
        for line in answer.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = _typed(value.strip())
        return info

    def show_stat(self, backend=None):
        """Rows of ``show stat``; with ``backend`` only that backend and its servers."""
        if backend is None:
            return parse_show_stat(self.command("show stat"))
        check_name("backend", backend)
        return parse_show_stat(self.command("show stat %s 6 -1" % backend))

    def show_servers_state(self, backend=None):
        """Rows of ``show servers state [backend]``."""
        if backend is None:
            return parse_servers_state(self.command("show servers state"))
        check_name("backend", backend)
        return parse_servers_state(self.command("show servers state %s" % backend))

    def save_servers_state(self, path):
        """Write ``show servers state`` (every backend) to ``path``, as the
        ``server-state-file`` that ``load-server-state-from-file global`` reads
        when HAProxy starts: the admin state (drain, maint) and weight of every
        server then survive a restart, also an unplanned one. The file is
        replaced atomically (a temporary file in the same directory, renamed),
        readable by its owner only. Returns the number of servers saved."""
        answer = self.command("show servers state")
        saved = len(parse_servers_state(answer))  # fails on anything but a state dump
        directory = os.path.dirname(os.path.abspath(path))
        tmp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(answer if answer.endswith("\n") else answer + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, path)
        except OSError as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise HAProxyRuntimeError("cannot write the server state file %s: %s" % (path, _reason(exc))) from exc
        return saved

    def backend(self, backend):
        """``{'stat': rows of show stat, 'state': rows of show servers state}`` in one connection."""
        check_name("backend", backend)
        with self.session() as session:
            state = session.command("show servers state %s" % backend)
            stat = session.command("show stat %s 6 -1" % backend)
        return {"stat": parse_show_stat(stat), "state": parse_servers_state(state)}

    def server(self, backend, server):
        """Merged ``show stat`` + ``show servers state`` view of one server."""
        check_name("server", server)
        try:
            data = self.backend(backend)
        except HAProxyNotFoundError as exc:
            raise HAProxyNotFoundError("HAProxy has no backend '%s'" % backend, command=exc.command) from exc
        stat = [row for row in data["stat"] if row.get("svname") == server and row.get("pxname") == backend]
        state = [row for row in data["state"] if row.get("srv_name") == server]
        if not stat or not state:
            names = sorted(row.get("srv_name") for row in data["state"])
            raise HAProxyNotFoundError(
                "HAProxy backend '%s' has no server '%s' (its servers: %s)"
                % (backend, server, ", ".join(names) or "none")
            )
        return merge_server(stat[0], state[0])

    def servers(self, backend):
        data = self.backend(backend)
        stat = dict((row["svname"], row) for row in data["stat"] if row.get("svname") not in ("BACKEND", "FRONTEND"))
        return [merge_server(stat.get(row["srv_name"]), row) for row in data["state"]]

    # -- servers
    def set_server_state(self, backend, server, state):
        if state not in SERVER_STATES:
            raise HAProxyRuntimeError("state must be one of %s, got %r" % (", ".join(SERVER_STATES), state))
        command = "set server %s/%s state %s" % (check_name("backend", backend), check_name("server", server), state)
        with self.session() as session:
            session.change(command)

    def set_weight(self, backend, server, weight):
        weight = check_weight(weight)
        command = "set server %s/%s weight %d" % (check_name("backend", backend), check_name("server", server), weight)
        with self.session() as session:
            session.change(command)

    # -- maps
    @staticmethod
    def _show_maps(session):
        answer = session.command("show map")
        if answer.strip() and not answer.startswith("# id"):
            raise _error("show map", answer)
        return parse_map_list(answer)

    def show_maps(self):
        """The maps HAProxy has loaded: ``[{id, file, description}]``."""
        with self.session() as session:
            return self._show_maps(session)

    def resolve_map_file(self, map_id):
        """The file behind a map identifier (``#<id>`` or a path), or ``None``."""
        for item in self.show_maps():
            if map_id == "#%d" % item["id"] or map_id == item["file"]:
                return item["file"]
        return None

    @staticmethod
    def _map_command(verb, map_id, *args):
        return " ".join([verb, "map", escape_arg(map_id)] + [escape_arg(arg) for arg in args])

    def _show_map(self, session, map_id):
        command = self._map_command("show", map_id)
        answer = session.command(command)
        try:
            return parse_map_entries(answer)
        except HAProxyRuntimeError as exc:
            raise _error(command, answer) from exc

    def show_map(self, map_id):
        """Entries of one map: ``[{id, key, value}]`` in HAProxy's order."""
        with self.session() as session:
            return self._show_map(session, map_id)

    def get_map_value(self, map_id, key):
        """The value of ``key`` (exact key, first entry), or ``None`` when absent."""
        for entry in self.show_map(map_id):
            if entry["key"] == key:
                return entry["value"]
        return None

    def set_map(self, map_id, key, value):
        """Set ``key`` to ``value``: ``set map`` when the key exists, ``add map`` otherwise.

        Reads and changes in one connection. Returns ``True`` when something
        changed. ``set map`` changes every entry with that key at once.
        """
        _check_map_key(key)
        with self.session() as session:
            values = [e["value"] for e in self._show_map(session, map_id) if e["key"] == key]
            if values and all(v == value for v in values):
                return False
            verb = "set" if values else "add"
            session.change(self._map_command(verb, map_id, key, value))
        return True

    def del_map(self, map_id, key):
        """Remove every entry of ``key``; returns ``True`` when one existed."""
        _check_map_key(key)
        with self.session() as session:
            if not any(e["key"] == key for e in self._show_map(session, map_id)):
                return False
            session.change(self._map_command("del", map_id, key))
        return True

    def _read_maps(self, session, map_ids):
        maps = {}
        for map_id in map_ids:
            if map_id in maps:
                continue
            try:
                maps[map_id] = self._show_map(session, map_id)
            except HAProxyNotFoundError as exc:
                known = ", ".join("#%d %s" % (m["id"], m["file"]) for m in self._show_maps(session)) or "none"
                raise HAProxyNotFoundError(
                    "HAProxy has no map '%s' (its maps: %s)" % (map_id, known), command=exc.command, answer=exc.answer
                ) from exc
        return maps

    def read_maps(self, map_ids=None):
        """Entries of several maps, read in one connection.

        Returns ``{map_id: [{id, key, value}]}``. Without ``map_ids``, every
        map HAProxy has loaded, keyed by its file (``#<id>`` when it has none).
        An unknown map raises ``HAProxyNotFoundError`` naming the maps HAProxy has.
        """
        with self.session() as session:
            if map_ids is None:
                map_ids = [m["file"] or "#%d" % m["id"] for m in self._show_maps(session)]
            return self._read_maps(session, map_ids)

    def apply_map_changes(self, changes):
        """Apply several map changes back to back, in order, in one connection.

        ``changes`` is a list of ``(map_id, key, value)``; a ``value`` of
        ``None`` removes every entry of ``key``. Name one map by one identifier
        throughout (its file or its ``#<id>``).

        The connection first reads every map concerned once. It then sends only
        the commands that change something (``set map`` for a key that exists,
        ``add map`` for a new one, ``del map``), each right after the answer to
        the one before, so they take effect within a fraction of a millisecond
        of each other. Last, it reads the maps again and checks that HAProxy
        holds every requested value: HAProxy 2.6 answers ``set map`` with
        success but keeps the old value when a converter of the map cannot
        parse the new one (a non-integer for ``map_str_int``).

        When a command fails, or a value was not taken, the changes already
        made are undone in reverse order (best effort) and
        ``HAProxyRuntimeError`` says so. Returns one bool per change: whether
        it changed the live map.
        """
        changes = [tuple(change) for change in changes]
        if any(len(change) != 3 for change in changes):
            raise HAProxyRuntimeError("every map change must be (map, key, value), got %r" % (changes,))
        for _map_id, key, value in changes:
            _check_map_key(key)
            if value is not None:
                escape_arg(value)
        with self.session() as session:
            live = {}
            for map_id, entries in self._read_maps(session, [c[0] for c in changes]).items():
                values = live[map_id] = {}
                for entry in entries:
                    values.setdefault(entry["key"], []).append(entry["value"])
            plan = []  # (index, command, map_id, key, values before, values after)
            for index, (map_id, key, value) in enumerate(changes):
                before = list(live[map_id].get(key, []))
                if value is None:
                    after = []
                    command = self._map_command("del", map_id, key) if before else None
                else:
                    after = [value] * (len(before) or 1)
                    command = None
                    if not before:
                        command = self._map_command("add", map_id, key, value)
                    elif any(v != value for v in before):
                        command = self._map_command("set", map_id, key, value)
                live[map_id][key] = after
                if command:
                    plan.append((index, command, map_id, key, before, after))
            done = []
            try:
                for step in plan:
                    session.change(step[1])
                    done.append(step)
                self._check_map_values(session, plan)
            except HAProxyConnectionError as exc:
                raise HAProxyConnectionError(
                    "%s; %d of the %d live change(s) had been made" % (exc, len(done), len(plan)),
                    command=exc.command,
                    answer=exc.answer,
                ) from exc
            except HAProxyRuntimeError as exc:
                raise HAProxyRuntimeError(
                    "%s; %s" % (exc, self._undo_map_changes(session, done)), command=exc.command, answer=exc.answer
                ) from exc
        applied = set(step[0] for step in plan)
        return [index in applied for index in range(len(changes))]

    def _check_map_values(self, session, plan):
        if not plan:
            return
        final = {}
        for _index, command, map_id, key, _before, after in plan:
            final[(map_id, key)] = (after, command)
        maps = self._read_maps(session, [step[2] for step in plan])
        for (map_id, key), (expected, command) in final.items():
            values = [e["value"] for e in maps[map_id] if e["key"] == key]
            if values != expected:
                raise HAProxyRuntimeError(
                    "HAProxy did not take '%s': key %s of map %s is %s, not %s (HAProxy keeps the old value when a "
                    "converter of the map cannot parse the new one, for example a non-integer in a map that "
                    "map_str_int reads)" % (command, key, map_id, _show_values(values), _show_values(expected)),
                    command=command,
                )

    def _undo_map_changes(self, session, done):
        """Undo applied map changes in reverse order; returns a sentence saying how it went."""
        if not done:
            return "no live change was made"
        try:
            for _index, _command, map_id, key, before, _after in reversed(done):
                current = [e["value"] for e in self._show_map(session, map_id) if e["key"] == key]
                if current == before:
                    continue
                if before and current and len(set(before)) == 1 and len(current) == len(before):
                    session.change(self._map_command("set", map_id, key, before[0]))
                    continue
                if current:
                    session.change(self._map_command("del", map_id, key))
                for value in before:
                    session.change(self._map_command("add", map_id, key, value))
        except HAProxyRuntimeError as exc:
            return "the %d live change(s) already made could not all be undone: %s" % (len(done), exc)
        return "the %d live change(s) already made were undone" % len(done)

    # -- waiting
    def wait(self, fetch, predicate, timeout, interval=0.2):
        """Poll ``fetch()`` every ``interval`` s until ``predicate`` or ``timeout`` s.

        Returns ``(ok, last value, elapsed seconds)``. A runtime API that does
        not answer for a while (HAProxy restarting) is asked again until the
        deadline; only then does its connection error end the wait.
        """
        return wait_until(fetch, predicate, timeout, interval, tolerate=(HAProxyConnectionError,))

    def wait_server(self, backend, server, predicate, timeout, interval=0.2):
        return self.wait(lambda: self.server(backend, server), predicate, timeout, interval)


def _show_values(values):
    if not values:
        return "absent"
    return " / ".join("'%s'" % v for v in values)


def _check_map_key(key):
    if not isinstance(key, str) or not key or re.search(r"\s", key):
        raise HAProxyRuntimeError("invalid map key %r: it must be non-empty and without blanks" % (key,))
