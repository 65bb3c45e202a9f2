"""Helpers for the Molecule scenarios that deploy to the four-host lab fleet.

The rolling and blue_green scenarios share one lab (``vmfleet-roll``, see
molecule/shared/vars/lab_fleet.yml) and one inventory
(molecule/shared/fleet/inventory). These helpers drive the real playbooks and
ad-hoc modules through that inventory, and run the two bounded load probes
(keep-alive, and a new connection per request) through HAProxy.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from loadprobe import LoadProbe, format_summary

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[2]))
INVENTORY = ROOT / "molecule" / "shared" / "fleet" / "inventory"
LB = "10.77.111.10"
REGISTRY = "10.77.111.11"
FRONTEND = f"https://{LB}:8001/"
CA = ROOT / ".lab" / "molecule-rolling" / "pki" / "ca.crt"
HOSTS = ["app1", "app2", "app3", "app4"]
MIN_RPS = 100  # per probe, over the whole run
ACTIVE_MAP = "/etc/haproxy/maps/vmfleet-active.map"
SPLIT_MAP = "/etc/haproxy/maps/vmfleet-split.map"
# The port of each slot on the app hosts.
PORT = {"blue": 8101, "green": 8102}


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(ROOT / "ansible.cfg")
    env.pop("ANSIBLE_STDOUT_CALLBACK", None)
    # Plain text: the tests read the play recap.
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return env


def adhoc(pattern: str, module: str, args: str | dict, become: bool = False) -> dict[str, dict]:
    """Run an ad-hoc module and return {host: result}."""
    env = ansible_env()
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    argv = ["ansible", "-i", str(INVENTORY), pattern, "-m", module, "-a",
            args if isinstance(args, str) else json.dumps(args)] + (["--become"] if become else [])
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    return result["plays"][0]["tasks"][0]["hosts"]


def deploy_lock(action: str = "show") -> list[str]:
    """Run playbooks/lock.yml for catalog (show, release or force_release); return what it shows."""
    argv = ["ansible-playbook", "-i", str(INVENTORY), "playbooks/lock.yml", "-e", "service=catalog",
            "-e", f"lock_action={action}"]
    env = ansible_env()
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1")
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    tasks = json.loads(proc.stdout[proc.stdout.index("{"):])["plays"][0]["tasks"]
    shown = next(t for t in tasks if t["task"]["name"] == "Show the locks")
    return next(iter(shown["hosts"].values()))["msg"]


def playbook(name: str, *extra: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run playbooks/<name> on the fleet inventory; assert rc 0 unless check=False."""
    argv = ["ansible-playbook", "-i", str(INVENTORY), f"playbooks/{name}", *extra]
    proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)
    if check:
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return proc


def flat(text: str) -> str:
    """Text with every run of white space as one blank: Ansible's YAML output folds long messages."""
    return " ".join(text.split())


def recap(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.startswith(("app", "lb1", "localhost")) and "ok=" in line]


@contextmanager
def probes(seconds: float = 600, rate: float = 125):
    """Two bounded probes through HAProxy's HTTPS frontend for the duration of the block.

    Each is capped at ``rate`` requests per second. The thread counts leave headroom: on
    the 2-core machine a request waits for the CPU while four hosts change slots at
    once. Each thread has at most one request in flight, so the rate is what the fleet
    answers, up to the cap: with 8 threads the new-connection probe fell to 84-98 req/s,
    with 20 to 89 once (p50 131 ms) while four hosts' health checks failed at once.
    """
    keepalive = LoadProbe(FRONTEND, threads=10, keepalive=True, seconds=seconds, max_requests=150000,
                          rate=rate, cafile=str(CA))
    fresh = LoadProbe(FRONTEND, threads=28, keepalive=False, seconds=seconds, max_requests=150000,
                      rate=rate, cafile=str(CA))
    with keepalive, fresh:
        time.sleep(1)
        yield keepalive, fresh
        time.sleep(1)


def assert_no_failures(*probe_list: LoadProbe, min_rps: float | tuple[float, ...] = MIN_RPS) -> list[dict]:
    """0 failed requests on every probe, and each probe's rate at least its floor (one for all, or one each)."""
    results = [p.result() for p in probe_list]
    floors = min_rps if isinstance(min_rps, tuple) else (min_rps,) * len(results)
    assert len(floors) == len(results), (floors, len(results))
    for r, floor in zip(results, floors, strict=True):
        print(format_summary(r))
        assert r["failed"] == 0, format_summary(r)
        assert r["rps"] >= floor, f"below the floor of {floor} req/s:\n" + format_summary(r)
    return results


def started_after(probe: LoadProbe, epoch: float) -> list:
    """The probe's successful records that started after the wall-clock time ``epoch``."""
    t0 = probe.result()["started_at"]
    return [r for r in probe.records() if r.ok and t0 + r.start > epoch]


def ledgers() -> dict[str, dict]:
    found = adhoc("app_hosts", "ansible.builtin.slurp", "src=/var/lib/vmfleet/catalog/ledger.json")
    return {h: json.loads(base64.b64decode(r["content"])) for h, r in found.items()}


def served_versions(port: int = 8101) -> dict[str, str | None]:
    """{host: version} the slot on ``port`` answers on each app host (None when nothing answers)."""
    answers = adhoc("app_hosts", "ansible.builtin.uri", f"url=http://127.0.0.1:{port}/ return_content=true timeout=3")
    return {h: (r.get("json") or {}).get("version") for h, r in answers.items()}


def containers(slot: str) -> dict[str, str | None]:
    """{host: StartedAt of catalog-<slot>, or None when there is no such container}."""
    out = adhoc("app_hosts", "ansible.builtin.command", f"docker inspect catalog-{slot}")
    return {h: (json.loads(r["stdout"])[0]["State"]["StartedAt"] if r.get("rc") == 0 else None)
            for h, r in out.items()}


def servers(backend: str = "catalog_blue") -> dict[str, dict]:
    stats = adhoc("loadbalancers", "vmfleet.deploy.haproxy_stats", {"backends": [backend]})
    return next(iter(stats.values()))["backends"][backend]["servers"]


def live_maps() -> tuple[str, int]:
    """(active backend, split percent) of catalog, live in HAProxy."""
    info = adhoc("loadbalancers", "vmfleet.deploy.haproxy_map_info", {"maps": [ACTIVE_MAP, SPLIT_MAP]})
    maps = next(iter(info.values()))["maps"]
    return maps[ACTIVE_MAP]["catalog"], int(maps[SPLIT_MAP]["catalog"])


# ---------------------------------------------------------------- rollouts, and the state they leave
def rolling(version: str, batch, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """playbooks/rolling.yml for catalog at `version`, batch `batch`; assert rc 0 unless check=False."""
    return playbook("rolling.yml", "-e", "service=catalog", "-e", f"version={version}", "-e",
                    json.dumps({"vmfleet_batch": batch}), *extra, check=check)


def start_rolling(version: str, batch, *extra: str) -> subprocess.Popen:
    """rolling.yml started in the background, in a session of its own (so it can get Ctrl-C), its output
    on a pipe (read it with read_until)."""
    argv = ["ansible-playbook", "-i", str(INVENTORY), "playbooks/rolling.yml", "-e", "service=catalog",
            "-e", f"version={version}", "-e", json.dumps({"vmfleet_batch": batch}), *extra]
    return subprocess.Popen(argv, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def read_until(proc: subprocess.Popen, found, seconds: float) -> list[str]:
    """Read a running playbook's output, line by line, until `found(line)` is true for a line, the output
    ends, or `seconds` pass (checked at each line). Returns the lines read."""
    seen = []
    deadline = time.monotonic() + seconds
    for line in proc.stdout:
        seen.append(line)
        if found(line) or time.monotonic() > deadline:
            break
    return seen


def start_times() -> dict[str, str]:
    """{host: StartedAt of catalog-blue}."""
    out = adhoc("app_hosts", "ansible.builtin.command", "docker inspect catalog-blue")
    return {h: json.loads(r["stdout"])[0]["State"]["StartedAt"] for h, r in out.items()}


def assert_fleet_on(version: str, previous: str | None) -> None:
    """Every host serves `version` from blue, its ledger says so (and `previous` before it, unless None),
    and every blue server is UP and ready."""
    assert served_versions() == dict.fromkeys(HOSTS, version)
    for host, ledger in ledgers().items():
        assert ledger["current"]["version"] == version, host
        if previous is not None:
            assert ledger["previous"]["version"] == previous, host
    state = {h: (s["status"], s["admin_state"]) for h, s in servers("catalog_blue").items()}
    assert state == dict.fromkeys(HOSTS, ("UP", "ready")), state


# ---------------------------------------------------------------- the lab's machines, as machines
LAB_NAME = "vmfleet-roll"


def lab_host(host: str, *command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `command` on a lab host's machine from outside it (`docker exec`), as a console would: it works
    whatever sshd, the network or Ansible think of the host."""
    return subprocess.run(["docker", "exec", f"{LAB_NAME}-{host}", *command], capture_output=True, text=True,
                          timeout=timeout, check=check)


def kill_host(host: str) -> tuple[float, float]:
    """Pull the plug on a lab host: SIGKILL to its machine (systemd, sshd, the engine and its containers go
    at once; no reset is sent for its connections). Returns the wall-clock times just before `docker kill`
    was sent and just after it returned: the kill happened between them."""
    sent = time.time()
    subprocess.run(["docker", "kill", f"{LAB_NAME}-{host}"], check=True, capture_output=True, timeout=60)
    return sent, time.time()


def boot_host(host: str, seconds: float = 120) -> None:
    """Start a killed lab host again and wait until Ansible reaches it and its engine runs."""
    subprocess.run(["docker", "start", f"{LAB_NAME}-{host}"], check=True, capture_output=True, timeout=60)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = adhoc(host, "ansible.builtin.command", "systemctl is-active docker")
        if answer[host].get("rc") == 0:
            return
        time.sleep(2)
    raise AssertionError(f"{host} did not come back within {seconds} s: {answer}")
