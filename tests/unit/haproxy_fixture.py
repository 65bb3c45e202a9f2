"""A real HAProxy for the tests of the HAProxy runtime client and modules.

``haproxy_lab`` starts, in the test's ``tmp_path``:

* four stdlib HTTP/1.1 servers on 127.0.0.1 (``blue1``, ``blue2``, ``green1``,
  ``green2``) that answer with their own name as a JSON ``version``
  (``{"version": "blue1"}``, what tests/integration/loadprobe.py reads),
  ``/healthz`` for the checks and ``/slow?ms=N`` for a request that stays in
  flight;
* an HAProxy 2.6 in master-worker mode with an admin socket (``expose-fd
  listeners``), a ``level user`` socket, a TCP admin socket, a server-state
  file and one frontend whose backend (``svc_blue`` or ``svc_green``) is
  chosen by the key ``active`` of ``backend.map``.

A request with the header ``x-server: <name>`` goes to that server, so a test
can keep a session open on one server. ``FrontendLoad`` sends a bounded load
through the frontend with the project's one load probe,
tests/integration/loadprobe.py (half keep-alive, half new-connection clients),
and counts every failed request.

``haproxy_role_lab`` is the same HAProxy, but with the frontend and backends
that the haproxy role writes: ``roles/haproxy/templates/haproxy.cfg.j2`` is
rendered by Ansible's own template module (``render_role_config``) for one
service ``svc`` whose single host ``app1`` (127.0.0.1) serves the app servers
``blue1`` (blue slot) and ``green1`` (green slot), with the role's two maps,
``vmfleet-active.map`` and ``vmfleet-split.map``, in the lab's directory. Only
the ``global`` section is the test's own (sockets and files in the lab's
directory, no chroot, no user switch).

Only 127.0.0.1 is used. Every wait and loop is bounded in time and count.
A test module makes the fixture available with::

    from haproxy_fixture import haproxy_lab_fixture

    haproxy_lab = haproxy_lab_fixture
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

# The project's one load probe lives with the integration tests; the path is
# relative to this file, so it also holds in ansible-test's mirror of the checkout.
_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.append(str(_INTEGRATION))
from loadprobe import LoadProbe, version_of  # noqa: E402

HAPROXY = "/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else shutil.which("haproxy")
SERVERS = {"svc_blue": ("blue1", "blue2"), "svc_green": ("green1", "green2")}
ROOT = Path(__file__).resolve().parents[2]
ROLE_DIR = ROOT / "roles" / "haproxy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate()`` until it returns a true value; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1f s waiting for %s (last: %r)" % (timeout, what, last))


# --------------------------------------------------------------- app servers
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15  # an idle keep-alive connection never keeps a thread forever

    def setup(self):
        super().setup()
        self.server.app.connections.add(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.app.connections.discard(self.connection)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        app = self.server.app
        url = urlsplit(self.path)
        if url.path == "/healthz":
            body, content_type = b"ok", "text/plain"
        else:
            ms = int(parse_qs(url.query).get("ms", ["0"])[0]) if url.path == "/slow" else 0
            delay = ms / 1000.0 or app.delay
            if delay:
                time.sleep(min(delay, 10.0))
            body, content_type = json.dumps({"version": app.name}).encode(), "application/json"
            app.hits += 1
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # HAProxy closes its health check connections with a reset: not an error.
        pass


class AppServer:
    """One threaded HTTP/1.1 server on 127.0.0.1 that answers ``{"version": "<its name>"}``."""

    def __init__(self, name: str, port: int | None = None, delay: float = 0.0):
        self.name = name
        # None until the first start() binds port 0 and keeps the port the kernel gave: a port
        # found free beforehand (free_port()) can be taken by another process before the bind.
        # Later starts (after stop(), a server coming back) bind the same port again.
        self.port = port
        self.delay = delay
        self.hits = 0
        self.connections: set = set()
        self.httpd = None
        self.thread = None

    def start(self):
        self.httpd = _Server(("127.0.0.1", self.port or 0), _Handler)
        self.port = self.httpd.server_address[1]
        self.httpd.app = self
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True, name="app-" + self.name
        )
        self.thread.start()
        return self

    def stop(self):
        """Stop listening and cut every open connection (HAProxy sees a dead server)."""
        if self.httpd is None:
            return
        self.httpd.shutdown()
        self.httpd.server_close()
        for conn in list(self.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(5)
        self.httpd = None


# -------------------------------------------------------------------- haproxy
CONFIG = """\
global
    master-worker
    pidfile {tmp}/haproxy.pid
    stats socket {tmp}/admin.sock mode 600 level admin expose-fd listeners
    stats socket {tmp}/user.sock mode 600 level user
    stats socket 127.0.0.1:{cli_port} level admin
    stats timeout 30s
    server-state-file {tmp}/server-state

defaults
    mode http
    timeout connect 1s
    timeout client 10s
    timeout server 10s
    timeout http-keep-alive 10s
    option redispatch
    retries 3
    option idle-close-on-response
    load-server-state-from-file global

frontend fe_svc
    bind 127.0.0.1:{port}
    use_backend %[str(active),map({tmp}/backend.map,svc_blue)]
{backends}"""

BACKEND = """
backend {backend}
    option httpchk GET /healthz
{use_server}{servers}"""

MAP_FILE = """\
# Active backend of the test service: vmfleet.deploy.haproxy_map flips it.
active svc_blue

# another key, kept as it is
other value with spaces
"""


def cli(address, command: str, timeout: float = 5.0) -> str:
    """One raw runtime API command (its own connection), independent of the client under test."""
    if isinstance(address, tuple):
        sock = socket.create_connection(address, timeout=timeout)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(str(address))
    with sock:
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks).decode()


class HAProxyLab:
    def __init__(self, tmp_path: Path):
        self.tmp = Path(tmp_path)
        self.port = free_port()
        self.cli_port = free_port()
        self.socket = str(self.tmp / "admin.sock")
        self.user_socket = str(self.tmp / "user.sock")
        self.tcp_socket = "tcp://127.0.0.1:%d" % self.cli_port
        self.map_file = self.tmp / "backend.map"
        self.state_file = self.tmp / "server-state"
        self.config_file = self.tmp / "haproxy.cfg"
        self.log_file = self.tmp / "haproxy.log"
        self.apps = {name: AppServer(name) for names in SERVERS.values() for name in names}
        self.servers = SERVERS  # backend -> its servers' names in HAProxy
        self.proc = None

    # -- set-up
    def config(self) -> str:
        backends = ""
        for backend, names in SERVERS.items():
            use_server = "".join(f"    use-server {name} if {{ req.hdr(x-server) -m str {name} }}\n" for name in names)
            servers = "".join(
                "    server %s 127.0.0.1:%d check inter 200ms fall 2 rise 1\n" % (name, self.apps[name].port)
                for name in names
            )
            backends += BACKEND.format(backend=backend, use_server=use_server, servers=servers)
        return CONFIG.format(tmp=self.tmp, port=self.port, cli_port=self.cli_port, backends=backends)

    def write_maps(self):
        self.map_file.write_text(MAP_FILE)

    # The ports HAProxy itself binds: free_port() only finds a port free at that moment, and another
    # process (a client's ephemeral port) may take it before HAProxy binds it; start() then picks anew.
    _bound_ports = ("port", "cli_port")

    def start(self):
        for app in self.apps.values():
            app.start()
        self.write_maps()
        for attempt in range(3):
            self.config_file.write_text(self.config())
            self._log = open(self.log_file, "ab")
            self.proc = subprocess.Popen(
                [HAPROXY, "-f", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=str(self.tmp),
            )
            try:
                wait_for(self._answers, 10, what="the HAProxy runtime API")
                wait_for(self.all_up, 10, what="all servers UP")
                return self
            except AssertionError:
                log = self.log_file.read_text()
                if "Address already in use" in log and attempt < 2:
                    self._stop_haproxy()
                    self.log_file.write_text("")
                    for name in self._bound_ports:
                        setattr(self, name, free_port())
                    continue
                self.stop()
                raise AssertionError("HAProxy did not start:\n" + log) from None
        return self

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError("haproxy exited with %s:\n%s" % (self.proc.returncode, self.log_file.read_text()))
        try:
            return "Pid:" in cli(self.socket, "show info", timeout=1)
        except OSError:
            return False

    def _stop_haproxy(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            self._log.close()

    def stop(self):
        self._stop_haproxy()
        for app in self.apps.values():
            app.stop()

    # -- runtime API, raw
    def cli(self, command: str) -> str:
        return cli(self.socket, command)

    def worker_pid(self) -> int:
        for line in self.cli("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise AssertionError("no Pid in show info")

    def stats(self) -> dict:
        """``{(backend, server): row}`` of ``show stat``, as strings."""
        lines = self.cli("show stat").splitlines()
        header = lines[0][2:].split(",")
        rows = {}
        for line in lines[1:]:
            if line.strip():
                row = dict(zip(header, line.split(","), strict=False))
                rows[(row["pxname"], row["svname"])] = row
        return rows

    def status(self, backend: str, server: str) -> str:
        return self.stats()[(backend, server)]["status"]

    def all_up(self) -> bool:
        stats = self.stats()
        return all(stats[(b, s)]["status"] == "UP" for b, names in self.servers.items() for s in names)

    def wait_status(self, backend: str, server: str, status: str, timeout: float = 5.0):
        return wait_for(
            lambda: self.status(backend, server) == status, timeout, what="%s/%s %s" % (backend, server, status)
        )

    def map_value(self, key: str = "active"):
        for line in self.cli("show map %s" % self.map_file).splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3 and parts[1] == key:
                return parts[2]
        return None

    # -- reload, as the haproxy role does it
    def save_state(self):
        """``show servers state > server-state-file``, right before a reload."""
        text = self.cli("show servers state")
        assert text.startswith("1\n"), text
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.state_file)

    def reload(self, timeout: float = 10.0):
        """Save the server state, ``kill -USR2`` the master, wait for the new worker."""
        self.save_state()
        old = self.worker_pid()
        os.kill(self.proc.pid, signal.SIGUSR2)

        def new_worker():
            try:
                return self.worker_pid() != old
            except (OSError, AssertionError):
                return False

        wait_for(new_worker, timeout, what="a new HAProxy worker after reload")

    def restart(self, timeout: float = 10.0):
        """Stop HAProxy (SIGTERM to the master: every connection is closed) and start it again with the
        same configuration and maps, as ``systemctl restart`` or a crash and a restart by systemd do. Nothing
        is saved first: HAProxy loads whatever the server-state-file holds. The apps keep running."""
        old = self.worker_pid()
        self._stop_haproxy()
        self._log = open(self.log_file, "ab")
        self.proc = subprocess.Popen([HAPROXY, "-f", str(self.config_file)], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=str(self.tmp))

        def new_worker():
            try:
                return self._answers() and self.worker_pid() != old
            except (OSError, AssertionError):
                return False

        wait_for(new_worker, timeout, what="HAProxy answering after a restart")

    # -- HTTP through the frontend
    def get(self, path: str = "/", headers: dict | None = None, timeout: float = 5.0, port: int | None = None):
        """One request through the frontend: ``(status, answer)``.

        ``answer`` is the JSON body's ``version``, i.e. the name of the app
        server that answered (``"blue1"``), or the body's text when it has no
        ``version`` (an HAProxy error page, ``/healthz``).
        """
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
            version = version_of(body)
            return response.status, body.decode() if version is None else version
        finally:
            conn.close()

    def hold_session(self, server: str, seconds: float) -> threading.Thread:
        """Keep one request in flight on ``server`` for ``seconds`` (in a thread)."""
        result = {}

        def run():
            try:
                result["answer"] = self.get(
                    "/slow?ms=%d" % int(seconds * 1000), {"x-server": server}, timeout=seconds + 10
                )
            except OSError as exc:  # reported through the thread's result
                result["answer"] = (None, repr(exc))

        thread = threading.Thread(target=run, daemon=True, name="hold-" + server)
        thread.result = result
        thread.start()
        return thread


# ------------------------------------------------- the haproxy role's config
def render_role_config(tmp: Path, role_vars: dict, app_hosts: dict) -> str:
    """``roles/haproxy/templates/haproxy.cfg.j2`` rendered by Ansible's template module.

    The variables are the role's (defaults/main.yml, vars/main.yml,
    vars/Debian.yml) with ``role_vars`` over them; the inventory's group
    ``app_hosts`` holds ``app_hosts`` (``{hostname: address}``).
    """
    tmp = Path(tmp)
    inventory = {
        "all": {
            "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
            "children": {
                "app_hosts": {"hosts": {name: {"ansible_host": address} for name, address in app_hosts.items()}}
            },
        }
    }
    dest = tmp / "role-haproxy.cfg"
    playbook = [
        {
            "name": "Render the haproxy role's configuration",
            "hosts": "localhost",
            "gather_facts": False,
            "vars_files": [str(ROLE_DIR / f) for f in ("defaults/main.yml", "vars/main.yml", "vars/Debian.yml")],
            "tasks": [
                {
                    "name": "Render haproxy.cfg.j2",
                    "ansible.builtin.template": {"src": str(ROLE_DIR / "templates/haproxy.cfg.j2"), "dest": str(dest)},
                }
            ],
        }
    ]
    (tmp / "render-inventory.json").write_text(json.dumps(inventory))
    (tmp / "render-play.json").write_text(json.dumps(playbook))
    (tmp / "render-vars.json").write_text(json.dumps(role_vars))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        PATH="%s%s%s" % (Path(sys.executable).parent, os.pathsep, os.environ.get("PATH", "")),
    )
    proc = subprocess.run(
        [
            "ansible-playbook",
            "-i",
            str(tmp / "render-inventory.json"),
            "-e",
            "@%s" % (tmp / "render-vars.json"),
            str(tmp / "render-play.json"),
        ],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError("rendering haproxy.cfg.j2 failed:\n%s\n%s" % (proc.stdout, proc.stderr))
    return dest.read_text()


ACTIVE_MAP_FILE = """\
# Active backend of each vmfleet service: "<service> <service>_blue|green".
svc svc_blue
"""
SPLIT_MAP_FILE = """\
# Share of each vmfleet service's new requests sent to its idle slot: "<service> <percent>".
svc 0
"""


class RoleHAProxyLab(HAProxyLab):
    """HAProxy with the haproxy role's frontend, preview frontend and backends for one service ``svc``."""

    def __init__(self, tmp_path: Path):
        super().__init__(tmp_path)
        self.map_file = self.tmp / "vmfleet-active.map"
        self.split_map_file = self.tmp / "vmfleet-split.map"
        self.sticky_map_file = self.tmp / "vmfleet-sticky.map"
        self.preview_port = free_port()
        self._bound_ports = ("port", "cli_port", "preview_port")
        self.servers = {"svc_blue": ("app1",), "svc_green": ("app1",)}
        self.role_config = None  # the template as rendered, global section included

    def write_maps(self):
        self.map_file.write_text(ACTIVE_MAP_FILE)
        self.split_map_file.write_text(SPLIT_MAP_FILE)
        self.sticky_map_file.write_text("svc 0\n")

    # Rendering through ansible-playbook takes seconds: the template is rendered
    # once per test session with stand-ins for the lab's directory and ports
    # (valid values, so the template sees what it would see), which each lab
    # then replaces with its own.
    _STAND_INS = {"tmp": "/vmfleet-role-lab", "port": 60601, "preview": 60602, "blue": 60603, "green": 60604}
    _rendered: dict = {}

    @classmethod
    def role_vars(cls) -> dict:
        tmp = cls._STAND_INS["tmp"]
        return {
            "haproxy_services": [
                {
                    "name": "svc",
                    "frontend_port": cls._STAND_INS["port"],
                    "preview_port": cls._STAND_INS["preview"],
                    "ports": {"blue": cls._STAND_INS["blue"], "green": cls._STAND_INS["green"]},
                    "health": {"path": "/healthz", "status_code": [200]},
                }
            ],
            "haproxy_frontend_bind_address": "127.0.0.1",
            "haproxy_preview_bind_address": "127.0.0.1",
            "haproxy_tls_cert_file": "",
            "haproxy_tls_key_file": "",
            "haproxy_map_dir": tmp,
            "haproxy_active_map_file": tmp + "/vmfleet-active.map",
            "haproxy_split_map_file": tmp + "/vmfleet-split.map",
            "haproxy_sticky_map_file": tmp + "/vmfleet-sticky.map",
            "haproxy_runtime_socket": tmp + "/admin.sock",
            "haproxy_server_state_file": tmp + "/server-state",
            "haproxy_timeout_connect": "1s",
            "haproxy_check_inter": "200ms",
            "haproxy_check_fastinter": "200ms",
            "haproxy_check_downinter": "200ms",
            "haproxy_check_fall": 2,
            "haproxy_check_rise": 1,
            "__haproxy_version": "2.6",
        }

    def config(self) -> str:
        if "text" not in self._rendered:
            render_dir = Path(tempfile.mkdtemp(prefix="hxrender-"))
            try:
                self._rendered["text"] = render_role_config(render_dir, self.role_vars(), {"app1": "127.0.0.1"})
            finally:
                shutil.rmtree(render_dir, ignore_errors=True)
        text = self._rendered["text"]
        stand_ins = self._STAND_INS
        for name, value in (
            ("port", self.port),
            ("preview", self.preview_port),
            ("blue", self.apps["blue1"].port),
            ("green", self.apps["green1"].port),
        ):
            assert text.count(":%d" % stand_ins[name]) == 1, "the template should render port %s once" % name
            text = text.replace(":%d" % stand_ins[name], ":%d" % value)
        self.role_config = text.replace(stand_ins["tmp"] + "/", str(self.tmp) + "/")
        # The test's own global section (the fixture's), then the role's defaults, frontends and backends.
        own_global = CONFIG.format(tmp=self.tmp, port=self.port, cli_port=self.cli_port, backends="")
        own_global = own_global[: own_global.index("\ndefaults\n")]
        return own_global + self.role_config[self.role_config.index("\ndefaults\n") :]

    def get_preview(self, timeout: float = 5.0):
        """One request through the preview frontend: ``(status, answer)`` as ``get()``."""
        return self.get(timeout=timeout, port=self.preview_port)


# ----------------------------------------------------------------- load probe
class FrontendLoad:
    """Bounded load through a lab's frontend, by two tests/integration/loadprobe.py probes.

    Half the ``threads`` (rounded up) keep their connection alive, half open
    one per request; all together send at most ``rate`` requests per second,
    ``max_requests`` requests and for ``seconds`` seconds. A request fails when
    the probe counts it as failed or its status is not 200.

    The moments the tests pass (``answers_after(moment)``...) are
    ``time.monotonic()`` values.
    """

    def __init__(
        self, port: int, threads: int = 4, rate: float = 100.0, max_requests: int = 2000, seconds: float = 15.0
    ):
        if threads < 2:
            raise ValueError("FrontendLoad needs at least 2 threads (one keep-alive, one new-connection)")
        url = "http://127.0.0.1:%d/" % port
        self.probes = tuple(
            LoadProbe(
                url,
                threads=share,
                keepalive=keepalive,
                seconds=seconds,
                max_requests=max(1, max_requests * share // threads),
                rate=rate * share / threads,
            )
            for keepalive, share in ((True, threads - threads // 2), (False, threads // 2))
        )

    def __enter__(self):
        for probe in self.probes:
            probe.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        for probe in self.probes:
            probe.stop()

    # -- results
    def requests(self) -> list:
        """Every request as ``(start, end, record)``: ``time.monotonic()`` values and its loadprobe ``Record``."""
        timeline = [
            (probe.monotonic_start + record.start, probe.monotonic_start + record.end, record)
            for probe in self.probes
            for record in probe.records()
        ]
        timeline.sort(key=lambda request: request[0])
        return timeline

    @property
    def total(self) -> int:
        return sum(len(probe.records()) for probe in self.probes)

    @property
    def failures(self) -> list:
        """The failed requests' records (an error, or a status other than 200)."""
        return [record for _start, _end, record in self.requests() if not record.ok or record.status != 200]

    @property
    def rps(self) -> float:
        """Requests per second, both probes together."""
        return sum(probe.snapshot()["rps"] for probe in self.probes)

    def answers_after(self, moment: float) -> list:
        """Answers (the app server's name) of the requests that started after ``moment``."""
        return [record.version for start, _end, record in self.requests() if start > moment]

    def answers_before(self, moment: float) -> list:
        """Answers of the requests that ended before ``moment``."""
        return [record.version for _start, end, record in self.requests() if end < moment]

    def wait_requests(self, count: int, timeout: float = 10.0):
        """Wait until each probe has sent its share of ``count`` requests; fail after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        for probe in self.probes:
            share = -(-count * probe.threads // sum(p.threads for p in self.probes))  # rounded up
            if not probe.wait_requests(share, max(0.0, deadline - time.monotonic())):
                raise AssertionError(
                    "timed out after %.1f s waiting for %d probe requests (%s)" % (timeout, count, probe.snapshot())
                )


# -------------------------------------------------------------------- fixture
@pytest.fixture(name="haproxy_lab")
def haproxy_lab_fixture():
    yield from _lab(HAProxyLab)


@pytest.fixture(name="haproxy_role_lab")
def haproxy_role_lab_fixture():
    yield from _lab(RoleHAProxyLab)


def _lab(cls):
    if not HAPROXY or not os.access(HAPROXY, os.X_OK):
        # Fail, not skip: a missing haproxy must not let the whole suite pass unseen.
        pytest.fail("HAProxy is not installed (/usr/sbin/haproxy); `make test` (scripts/host-deps.sh) installs it")
    # Unix socket paths are limited to 107 bytes, pytest's tmp_path can be
    # longer: use a short private directory.
    short = tempfile.mkdtemp(prefix="hxlab-")
    if len(short) > 80:
        shutil.rmtree(short)
        short = tempfile.mkdtemp(prefix="hxlab-", dir="/tmp")
    lab = cls(Path(short))
    try:
        lab.start()
        yield lab
    finally:
        lab.stop()
        if os.environ.get("HAPROXY_LAB_KEEP"):
            print("kept", short)
        else:
            shutil.rmtree(short, ignore_errors=True)
