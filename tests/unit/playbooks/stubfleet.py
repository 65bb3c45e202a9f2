"""A fleet with no Docker for running the real strategies: the engine is a stub, HAProxy is real.

Every host of the inventory is the local machine (``ansible_connection=local``), each with an address of
its own on the loopback network (app1 is 127.0.0.21, app2 127.0.0.22 ...) and these parts:

* **The container engine: stubs.** ``engine_stub/`` is a collection directory put first on
  ANSIBLE_COLLECTIONS_PATH, so that the community.docker modules the service role calls (docker_image,
  docker_container, docker_container_info, docker_host_info) are test-only stand-ins. They keep every host's
  images and containers in one JSON state file (``Fleet.state_file``), which the test scripts per host
  (``Fleet.script``), and log each change (``Fleet.calls``). Each host's Python interpreter is a wrapper
  script that tells the stubs which host they run for, and puts a ``docker`` stand-in (engine_stub/docker_cli.py,
  for the strategies' ``docker inspect`` commands) first on the PATH. Only the Docker runtime is stubbed:
  the Podman path also drives systemd units through ansible.builtin.systemd_service, which no collection
  can shadow.
* **The containers' HTTP health: real HTTP servers** on each host's address and slot port, which answer
  ``/healthz`` from the state file: 200 ``{"status": "ok", "version": ...}`` while the slot's container runs and
  is healthy, else 503.
* **The load balancer: a real HAProxy** with the haproxy role's own frontends, backends and maps
  (roles/haproxy/templates/haproxy.cfg.j2 rendered by Ansible for these hosts, as tests/unit/haproxy_fixture.py
  does for one host), driven by the real modules through its admin socket. Its checks reach the HTTP servers
  above, so drain, MAINT, ready and UP are HAProxy's own.
* **An unreachable host:** ``app9`` is reached over SSH at 127.0.0.29 on a port nothing listens on; the
  connection is refused at once.

Nothing leaves the loopback network. The release ledgers and the deploy locks are files under the test's
tmp_path (``vmfleet_ledger_dir`` per host, ``vmfleet_lock_dir``).
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from haproxy_fixture import CONFIG, HAProxyLab, free_port, render_role_config, wait_for
from playjob import LOCAL, ROOT

from ansible_collections.vmfleet.deploy.plugins.module_utils import release_ledger

STUB_DIR = Path(__file__).resolve().parent / "engine_stub"
ADDRESSES = {"app1": "127.0.0.21", "app2": "127.0.0.22", "app3": "127.0.0.23", "app4": "127.0.0.24",
             "app5": "127.0.0.25", "app9": "127.0.0.29"}
UNREACHABLE = "app9"
IMAGE = "registry.invalid/shop/catalog"
SERVICE = "catalog"


def _load_engine_stub():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "engine_stub", STUB_DIR / "ansible_collections/community/docker/plugins/module_utils/engine_stub.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


engine_stub = _load_engine_stub()


def closed_port() -> int:
    """A port on 127.0.0.29 that nothing listens on (bound, then closed: a connection is refused)."""
    with socket.socket() as sock:
        sock.bind((ADDRESSES[UNREACHABLE], 0))
        return sock.getsockname()[1]


class Ports:
    """The service's ports, chosen once per test module (the rendered config holds them)."""

    def __init__(self):
        self.blue, self.green, self.frontend, self.preview = free_port(), free_port(), free_port(), free_port()

    def service(self) -> dict:
        return {"name": SERVICE, "image": IMAGE, "version": "1.0.0", "port": 8080,
                "ports": {"blue": self.blue, "green": self.green}, "frontend_port": self.frontend,
                "preview_port": self.preview,
                "health": {"path": "/healthz", "status_code": [200], "json_query": "status == 'ok'"}}


STAND_IN_DIR = "/vmfleet-stub-lb"


def render(ports: Ports) -> str:
    """The haproxy role's haproxy.cfg.j2 for the service on every host of ADDRESSES (seconds: once per module)."""
    role_vars = {
        "haproxy_services": [{k: v for k, v in ports.service().items()
                              if k in ("name", "frontend_port", "preview_port", "ports", "health")}],
        "haproxy_frontend_bind_address": "127.0.0.1", "haproxy_preview_bind_address": "127.0.0.1",
        "haproxy_tls_cert_file": "", "haproxy_tls_key_file": "",
        "haproxy_map_dir": STAND_IN_DIR,
        "haproxy_active_map_file": STAND_IN_DIR + "/vmfleet-active.map",
        "haproxy_split_map_file": STAND_IN_DIR + "/vmfleet-split.map",
        "haproxy_sticky_map_file": STAND_IN_DIR + "/vmfleet-sticky.map",
        "haproxy_runtime_socket": STAND_IN_DIR + "/admin.sock",
        "haproxy_server_state_file": STAND_IN_DIR + "/server-state",
        "haproxy_timeout_connect": "1s", "haproxy_check_inter": "200ms", "haproxy_check_fastinter": "100ms",
        "haproxy_check_downinter": "200ms", "haproxy_check_fall": 2, "haproxy_check_rise": 1,
        "__haproxy_version": "2.6",
    }
    render_dir = Path(tempfile.mkdtemp(prefix="vmfrender-"))
    try:
        return render_role_config(render_dir, role_vars, ADDRESSES)
    finally:
        shutil.rmtree(render_dir, ignore_errors=True)


class FleetLB(HAProxyLab):
    """A real HAProxy with the role's config for the fleet (no app servers of its own)."""

    def __init__(self, tmp_path: Path, rendered: str, ports: Ports, up: list[str]):
        super().__init__(tmp_path)
        self.apps = {}
        self.rendered, self.ports, self.up = rendered, ports, up
        self.map_file = self.tmp / "vmfleet-active.map"
        self.split_map_file = self.tmp / "vmfleet-split.map"
        self.sticky_map_file = self.tmp / "vmfleet-sticky.map"
        self.servers = {f"{SERVICE}_blue": tuple(up)}
        self._bound_ports = ("cli_port",)

    def config(self) -> str:
        own_global = CONFIG.format(tmp=self.tmp, port=self.port, cli_port=self.cli_port, backends="")
        own_global = own_global[: own_global.index("\ndefaults\n")]
        text = self.rendered.replace(STAND_IN_DIR + "/", str(self.tmp) + "/")
        return own_global + text[text.index("\ndefaults\n"):]

    def write_maps(self):
        self.map_file.write_text(f"{SERVICE} {SERVICE}_blue\n")
        self.split_map_file.write_text(f"{SERVICE} 0\n")
        self.sticky_map_file.write_text(f"{SERVICE} 0\n")

    def host_vars(self) -> dict:
        return {"haproxy_runtime_socket": self.socket, "haproxy_active_map_file": str(self.map_file),
                "haproxy_split_map_file": str(self.split_map_file),
                "haproxy_sticky_map_file": str(self.sticky_map_file)}

    def statuses(self, slot: str = "blue") -> dict:
        """``{host: status}`` of the slot's backend (UP, DOWN, MAINT, DRAIN ...)."""
        return {server: row["status"] for (backend, server), row in self.stats().items()
                if backend == f"{SERVICE}_{slot}" and server not in ("BACKEND", "FRONTEND")}

    def admin_states(self, slot: str = "blue") -> dict:
        """``{host: srv_admin_state}`` from ``show servers state`` (1: MAINT, 8: DRAIN, 0: ready)."""
        lines = self.cli(f"show servers state {SERVICE}_{slot}").splitlines()
        header = lines[1].lstrip("# ").split()
        rows = [dict(zip(header, line.split(), strict=False)) for line in lines[2:] if line.strip()]
        return {row["srv_name"]: int(row["srv_admin_state"]) for row in rows}


class _Health(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10

    def do_GET(self):  # noqa: N802 (http.server's naming)
        fleet, host, slot = self.server.fleet, self.server.host, self.server.slot
        container = fleet.state()["hosts"].get(host, {}).get("containers", {}).get(f"{SERVICE}-{slot}")
        ok = bool(container and container["running"] and container["healthy"])
        body = json.dumps({"status": "ok" if ok else "starting", "version": (container or {}).get("version"),
                           "host": host}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # HAProxy closes its checks with a reset


class Fleet:
    """The stub fleet of one test: its state file, HTTP servers, HAProxy and inventory."""

    def __init__(self, tmp_path: Path, rendered: str, ports: Ports, hosts: list[str]):
        self.tmp = Path(tmp_path)
        self.ports = ports
        self.hosts = hosts
        self.reachable = [h for h in hosts if h != UNREACHABLE]
        self.state_file = self.tmp / "engine-state.json"
        self.lock_dir = self.tmp / "locks"
        self.bin = self.tmp / "bin"
        self.lb = FleetLB(Path(tempfile.mkdtemp(prefix="vmflb-", dir="/tmp")), rendered, ports, self.reachable)
        self._http = []
        self._cache = (None, None)
        self._write({"hosts": {}, "script": {}, "calls": []})

    # -- state
    def _write(self, state: dict):
        tmp = self.state_file.with_suffix(".seed")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        os.replace(tmp, self.state_file)

    def state(self) -> dict:
        """The engine state (cached by mtime: HAProxy checks every server 5 times a second)."""
        mtime = self.state_file.stat().st_mtime_ns
        if self._cache[0] != mtime:
            self._cache = (mtime, json.loads(self.state_file.read_text()))
        return self._cache[1]

    def script(self, host: str, **behaviour):
        """Script a host: pull_fails, start_fails, exits, unhealthy (lists of versions)."""
        state = json.loads(self.state_file.read_text())
        assert set(behaviour) <= set(engine_stub.SCRIPT_KEYS), behaviour
        state["script"].setdefault(host, {}).update(behaviour)
        self._write(state)

    def calls(self, action: str | None = None) -> list[dict]:
        return [c for c in self.state()["calls"] if action is None or c["action"] == action]

    def replaced(self) -> list[tuple[str, str]]:
        """(host, version) of every container the engine replaced, in order."""
        return [(c["host"], c["version"]) for c in self.calls("replaced")]

    def version(self, host: str, slot: str = "blue") -> str | None:
        container = self.state()["hosts"].get(host, {}).get("containers", {}).get(f"{SERVICE}-{slot}")
        return container["version"] if container and container["running"] else None

    def ledger_dir(self, host: str) -> Path:
        return self.tmp / "hosts" / host / "ledger"

    def ledger(self, host: str) -> dict:
        return json.loads((self.ledger_dir(host) / SERVICE / "ledger.json").read_text())

    def seed(self, versions: tuple[str, ...] = ("1.0.0",)):
        """Every reachable host has served ``versions`` in turn from its blue slot; the last one runs there."""
        state = json.loads(self.state_file.read_text())
        for host in self.reachable:
            here = state["hosts"].setdefault(host, {"images": {}, "containers": {}})
            ledger = release_ledger.empty_ledger(SERVICE)
            for number, version in enumerate(versions):
                ref = f"{IMAGE}:{version}"
                here["images"][ref] = engine_stub.image(ref)
                img = here["images"][ref]
                release = {"version": version, "image": ref, "digest": img["RepoDigests"][0].split("@")[1],
                           "image_id": img["Id"], "slot": "blue", "runtime": "docker", "strategy": "rolling",
                           "deploy_id": f"seed-{number}"}
                served_at = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=600 - number)
                ledger, _changed = release_ledger.apply_event(ledger, "served", release, now=served_at)
                here["containers"][f"{SERVICE}-blue"] = {
                    "image": ref, "image_id": here["images"][ref]["Id"], "version": version, "running": True,
                    "healthy": True, "labels": {"io.vmfleet.service": SERVICE}, "started": time.time()}
            path = self.ledger_dir(host) / SERVICE / "ledger.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(release_ledger.render_ledger(ledger))
        self._write(state)

    # -- processes
    def start(self):
        for host in self.reachable:
            for slot in ("blue", "green"):
                server = _HealthServer((ADDRESSES[host], getattr(self.ports, slot)), _Health)
                server.fleet, server.host, server.slot = self, host, slot
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
                thread.start()
                self._http.append(server)
        self.lb.start()
        return self

    def stop(self):
        self.lb.stop()
        for server in self._http:
            server.shutdown()
            server.server_close()
        shutil.rmtree(self.lb.tmp, ignore_errors=True)

    # -- inventory
    def _wrapper(self, host: str) -> str:
        """The host's Python: the stubs learn the host and the state file from it; `docker` is the stand-in."""
        path = self.tmp / "hosts" / host / "python"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\nVMFLEET_STUB_HOST={host} VMFLEET_STUB_STATE={self.state_file} "
                        f'PATH={self.bin}:"$PATH"\nexport VMFLEET_STUB_HOST VMFLEET_STUB_STATE PATH\n'
                        f'exec {sys.executable} "$@"\n')
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
        return str(path)

    @staticmethod
    def unreachable_vars() -> dict:
        """SSH to 127.0.0.29 on a closed port: refused at once, nothing leaves the loopback network."""
        return {"ansible_connection": "ssh", "ansible_host": ADDRESSES[UNREACHABLE], "ansible_port": closed_port(),
                "ansible_user": "nobody", "ansible_ssh_common_args": "-o ConnectTimeout=3 -o BatchMode=yes"}

    def inventory(self, lb_unreachable: bool = False, **group_vars) -> dict:
        self.bin.mkdir(exist_ok=True)
        docker = self.bin / "docker"
        docker.write_text(f'#!/bin/sh\nexec {sys.executable} {STUB_DIR / "docker_cli.py"} "$@"\n')
        docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
        apps = {}
        for host in self.hosts:
            if host == UNREACHABLE:
                apps[host] = self.unreachable_vars()
            else:
                apps[host] = dict(LOCAL, ansible_host=ADDRESSES[host], ansible_python_interpreter=self._wrapper(host),
                                  vmfleet_ledger_dir=str(self.ledger_dir(host)))
        variables = {
            "vmfleet_services": [self.ports.service()],
            "vmfleet_lock_dir": str(self.lock_dir),
            "container_engine_runtime": "docker",
            # Short gates: a scripted failure costs seconds, not the 90 s of the defaults.
            "vmfleet_health_timeout": 3, "vmfleet_drain_timeout": 3, "vmfleet_health_interval": 0.1,
        }
        variables.update(group_vars)
        return {"all": {"vars": variables, "children": {
            "app_hosts": {"hosts": apps},
            "loadbalancers": {"hosts": {"lb1": dict(self.unreachable_vars(), **self.lb.host_vars()) if lb_unreachable
                                        else dict(LOCAL, ansible_python_interpreter=self._wrapper("lb1"),
                                                  **self.lb.host_vars())}},
        }}}


def collections_path() -> str:
    """The stubs first, then the collection itself (and, after them, the `ansible` package's collections)."""
    return os.pathsep.join([str(STUB_DIR), str(ROOT / ".cache" / "collections")])


def wait_all_up(lb: FleetLB, hosts: list[str], timeout: float = 10.0):
    wait_for(lambda: all(lb.statuses().get(h) == "UP" for h in hosts), timeout, what=f"blue UP on {hosts}")
