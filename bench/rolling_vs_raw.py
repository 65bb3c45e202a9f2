"""Benchmark: playbooks/rolling.yml (batch 1) against the same rollout done by hand
with the fewest steps, on one lab, in one run, under the same two load probes.

The reference ("by hand") is what an operator who knows HAProxy's runtime API
and Docker would type, one SSH command per step, host after host:

  1. on the load balancer: set the server to drain, and poll until it has 0
     sessions (every 0.1 s);
  2. on the app host: pull the image unless it is there, stop and remove the
     slot's container, and run the new one with the same options the service
     role gives it (image, port, env, labels, read-only root, capabilities,
     memory and CPU limits, logging, stop timeout, restart policy);
  3. on the app host: poll the container's HTTP health every 0.1 s until it
     answers 200;
  4. on the load balancer: set the server ready, and poll until HAProxy says UP.

It makes a lab of its own (vmfleet-raw, 4 app hosts), bootstraps catalog
1.0.0 behind HAProxy and puts both versions in every host's image cache, so
neither side pays for a pull. Then it alternates, CYCLES times: by hand to
1.1.0, by hand back to 1.0.0, rolling.yml to 1.1.0, rolling.yml back to 1.0.0
(each run moves all 4 hosts; the ledgers, which the reference does not write,
say 1.0.0 whenever rolling.yml starts). A keep-alive probe and a probe opening
a new connection per request go through HAProxy during every timed run, each
at up to 125 requests/s. Where the time goes comes from the step timings of
the reference and from the json callback's task timings of rolling.yml.

Each figure is the median over the runs, with min and max. Nothing is
recorded when any request failed, a probe stayed under 100 requests/s, a
probe stopped before the run ended, or a run left a host on the wrong
version. The lab is removed at the end.

    .venv/bin/python bench/rolling_vs_raw.py [--cycles 2] [--record] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from benchlib import FULL_LOAD, PROBE_MODES, RESULTS, ROOT, Probes, bench_lab, finish, play, probe_problems, spread
from rollout import updated_results

LAB = "vmfleet-raw"
SUBNET = "10.77.113"
STATE = ROOT / ".lab" / "raw"
HOSTS = [f"app{i}" for i in range(1, 5)]
VERSIONS = ("1.0.0", "1.1.0")
SERVICE = "catalog"
SLOT = "blue"
MIN_RPS = 100
# Per probe, as the strategy scenarios run them (tests/integration/fleet.py): at most 125
# requests/s, bounded in time and requests.
# Where the time of rolling.yml goes: the task names (without the role prefix) that start
# with these, per phase; the rest of the wall time is the phase "other".
ROLLING_PHASES = {
    "drain": ("Drain the server on every load balancer",),
    "pull": ("Pull the image with Docker",),
    "replace": ("Ensure the slot's container runs the image with Docker",),
    "health": ("Run the image's own health check until it passes", "Gate on HTTP health of the slot",
               "Gate on HTTP health from the load balancer"),
    "up": ("Set the server ready and wait until it is UP",),
}
PHASES = ("drain", "pull", "replace", "health", "up", "other")


@dataclass
class Run:
    """One timed rollout of every host, by hand or by rolling.yml."""

    how: str  # "raw" or "rolling"
    version: str
    wall: float
    phases: dict[str, float]  # phase -> seconds, summed over the hosts
    probes: dict[str, dict] = field(default_factory=dict)  # probe mode -> summary, plus "covered"
    served: dict[str, str | None] = field(default_factory=dict)  # host -> version its slot answers after the run


# ------------------------------------------------------------------ pure functions


def run_plan(cycles: int) -> list[tuple[str, str]]:
    """(how, version) of every timed run: per cycle, by hand there and back, then rolling.yml there and back."""
    if cycles < 1:
        raise ValueError("cycles must be at least 1")
    there, back = VERSIONS[1], VERSIONS[0]
    return [step for _cycle in range(cycles) for step in
            (("raw", there), ("raw", back), ("rolling", there), ("rolling", back))]


def docker_run_argv(spec: dict, defaults: dict, host: str, version: str, slot: str = SLOT) -> list[str]:
    """The `docker run` the service role's docker_container task amounts to (roles/service/tasks/run-docker.yml),
    for service `spec` (an item of vmfleet_services) with the role's `defaults`."""
    resources = spec.get("resources", {})
    env = {**{k: str(v) for k, v in spec.get("env", {}).items()}, "HOST_NAME": host}
    labels = {"io.vmfleet.service": spec["name"], "io.vmfleet.slot": slot, "io.vmfleet.version": version}
    argv = ["docker", "run", "--detach", "--name", f"{spec['name']}-{slot}", "--restart", "unless-stopped",
            "--publish", f"{spec['ports'][slot]}:{spec['port']}"]
    argv += [a for k, v in sorted(env.items()) for a in ("--env", f"{k}={v}")]
    argv += [a for k, v in sorted(labels.items()) for a in ("--label", f"{k}={v}")]
    if spec.get("read_only", defaults["service_read_only"]):
        argv.append("--read-only")
    argv += [a for t in spec.get("tmpfs", []) for a in ("--tmpfs", t)]
    argv += ["--security-opt", "no-new-privileges", "--cap-drop", "ALL"]
    argv += [a for c in spec.get("cap_add", defaults["service_cap_add"]) for a in ("--cap-add", c)]
    argv += ["--memory", str(resources.get("memory", defaults["service_memory"])),
             "--cpus", str(float(resources.get("cpus", defaults["service_cpus"]))),
             "--log-driver", "json-file", "--log-opt", f"max-size={defaults['service_log_max_size']}",
             "--log-opt", f"max-file={defaults['service_log_max_file']}",
             "--stop-timeout", str(defaults["service_stop_timeout"]), f"{spec['image']}:{version}"]
    return argv


def raw_steps(spec: dict, defaults: dict, host: str, version: str, socket: str, slot: str = SLOT,
              timeout: int = 90) -> list[tuple[str, str, str]]:
    """(phase, where, shell command) of the reference's steps for one host; `where` is "lb" or "app".

    Each waiting command polls every 0.1 s and gives up (exit 1) after `timeout` seconds."""
    backend, image = f"{spec['name']}_{slot}", shlex.quote(f"{spec['image']}:{version}")
    admin = f"socat stdio {shlex.quote(socket)}"
    container = f"{spec['name']}-{slot}"
    health = f"http://127.0.0.1:{spec['ports'][slot]}{spec.get('health', {}).get('path', '/')}"
    stat = f"echo 'show stat {backend} 4 -1' | {admin}"
    deadline = f"end=$(( $(date +%s) + {timeout} ))"
    give_up = '[ "$(date +%s)" -lt "$end" ] || exit 1; sleep 0.1'
    return [
        ("drain", "lb", f"echo 'set server {backend}/{host} state drain' | {admin} >/dev/null; {deadline}; "
                        f"until [ \"$({stat} | awk -F, '$2==\"{host}\" {{print $5}}')\" = 0 ]; do {give_up}; done"),
        ("replace", "app", f"docker image inspect {image} >/dev/null 2>&1 || docker pull -q {image}; "
                           f"docker stop {container} >/dev/null && docker rm {container} >/dev/null && "
                           f"{shlex.join(docker_run_argv(spec, defaults, host, version, slot))} >/dev/null"),
        ("health", "app", f"{deadline}; until curl -fsS -o /dev/null --max-time 1 {health}; do {give_up}; done"),
        ("up", "lb", f"echo 'set server {backend}/{host} state ready' | {admin} >/dev/null; {deadline}; "
                     f"until [ \"$({stat} | awk -F, '$2==\"{host}\" {{print $18}}')\" = UP ]; do {give_up}; done"),
    ]


def rolling_phases(result: dict, wall: float) -> dict[str, float]:
    """Seconds per phase of one rolling.yml run, from the json callback's `result`; "other" is the rest of `wall`."""
    phases = dict.fromkeys(PHASES, 0.0)
    for play_result in result["plays"]:
        for task in play_result["tasks"]:
            name = task["task"]["name"].split(" : ")[-1]
            phase = next((p for p, prefixes in ROLLING_PHASES.items() if name.startswith(prefixes)), None)
            if phase is None:
                continue
            span = task["task"]["duration"]
            start = datetime.datetime.fromisoformat(span["start"].replace("Z", "+00:00"))
            end = datetime.datetime.fromisoformat(span["end"].replace("Z", "+00:00"))
            phases[phase] += (end - start).total_seconds()
    phases["other"] = max(wall - sum(phases.values()), 0.0)
    return phases


def problems(runs: list[Run]) -> list[str]:
    """Why the runs cannot be recorded, one sentence each."""
    found = [] if runs else ["no timed run"]
    for run in runs:
        where = f"{run.how} -> {run.version}"
        wrong = {h: v for h, v in run.served.items() if v != run.version}
        if wrong or not run.served:
            found.append(f"{where}: hosts not on {run.version} afterwards: {wrong or 'none checked'}")
        for mode, probe in run.probes.items():
            found += probe_problems(f"{where}, {mode} probe", probe, MIN_RPS)
    return found


def result_rows(runs: list[Run], date: datetime.date) -> list[str]:
    """The RESULTS.md row: medians (min-max) of both sides, the ratio of the medians, and the phases."""
    def side(how: str) -> tuple[list[Run], tuple[float, float, float]]:
        mine = [run for run in runs if run.how == how]
        return mine, spread([run.wall for run in mine])

    raw_runs, (raw, raw_min, raw_max) = side("raw")
    rolling_runs, (rolling, rolling_min, rolling_max) = side("rolling")

    def phases(mine: list[Run]) -> str:
        return ", ".join(f"{p} {spread([r.phases[p] for r in mine])[0]:.1f}" for p in PHASES
                         if any(r.phases[p] for r in mine))

    requests = "; ".join(f"{mode} {sum(r.probes[mode]['failed'] for r in runs)} of "
                         f"{sum(r.probes[mode]['total'] for r in runs)}, min "
                         f"{min(r.probes[mode]['rps'] for r in runs):.0f} req/s" for mode in PROBE_MODES)
    return [
        f"| {date} | rolling vs by hand, batch 1, {len(HOSTS)} hosts | rolling.yml {rolling:.1f} s "
        f"({rolling_min:.1f}–{rolling_max:.1f}); by hand {raw:.1f} s ({raw_min:.1f}–{raw_max:.1f}) "
        f"| {len(rolling_runs)} + {len(raw_runs)} | ratio rolling/by hand {rolling / raw:.2f}; "
        f"median s per phase, rolling.yml: {phases(rolling_runs)}; by hand: {phases(raw_runs)}; "
        f"failed requests: {requests} | - |"
    ]


# ------------------------------------------------------------------ the bench


class Ssh:
    """One SSH command per step, over a persistent connection per host (as Ansible's ControlPersist)."""

    def __init__(self, key: Path, control_dir: Path) -> None:
        self.base = ["ssh", "-F", "/dev/null", "-i", str(key), "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C", "-o", "ControlPersist=300"]

    def __call__(self, address: str, command: str) -> None:
        proc = subprocess.run([*self.base, f"root@{address}", command], capture_output=True, text=True,
                              timeout=180, check=False)
        if proc.returncode != 0:
            sys.exit(f"by hand, on {address}: `{command}` failed ({proc.returncode}): {proc.stderr[-2000:]}")


def address(host: str) -> str:
    """The lab's address of lb1 or app<N> (roles/lab/vars/main.yml)."""
    return f"{SUBNET}.10" if host == "lb1" else f"{SUBNET}.{20 + int(host.removeprefix('app'))}"


def served(spec: dict) -> dict[str, str | None]:
    """{host: version} the slot answers on each app host, asked directly (not through HAProxy)."""
    versions = {}
    for host in HOSTS:
        try:
            with urllib.request.urlopen(f"http://{address(host)}:{spec['ports'][SLOT]}/", timeout=3) as answer:
                versions[host] = json.loads(answer.read()).get("version")
        except OSError:
            versions[host] = None
    return versions


def probed(action, url: str, cafile: str) -> tuple[float, object, dict[str, dict]]:
    """Run `action()` under both probes: (its wall time, its result, the probes' summaries)."""
    with Probes(url, cafile, FULL_LOAD) as probes:
        started = time.monotonic()
        result = action()
        wall = time.monotonic() - started
    return wall, result, probes.summaries()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2, help="cycles of 2 runs by hand and 2 of rolling.yml")
    parser.add_argument("--record", action="store_true", help="put the result into bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the bench lab")
    args = parser.parse_args()
    plan = run_plan(args.cycles)
    shop = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/shop.yml").read_text())
    defaults = yaml.safe_load((ROOT / "roles/service/defaults/main.yml").read_text())
    socket = yaml.safe_load((ROOT / "roles/haproxy/defaults/main.yml").read_text())["haproxy_runtime_socket"]
    registry = f"{SUBNET}.11:5000"
    spec = next(s for s in shop["vmfleet_services"] if s["name"] == SERVICE)
    spec = dict(spec, image=f"{registry}/shop/{SERVICE}")
    url, cafile = f"https://{SUBNET}.10:{spec['frontend_port']}/", str(STATE / "pki" / "ca.crt")

    runs: list[Run] = []
    with bench_lab(LAB, SUBNET, len(HOSTS), STATE, VERSIONS, keep=args.keep) as inv, \
            tempfile.TemporaryDirectory(prefix="vmfleet-raw-ssh-") as tmp:
        ssh = Ssh(STATE / "id_ed25519", Path(tmp))
        # Untimed: both versions in every host's image cache, for both sides alike.
        for version in VERSIONS:
            play(*inv, "-m", "community.docker.docker_image", "-a",
                 json.dumps({"name": f"{spec['image']}:{version}", "source": "pull"}), "app_hosts",
                 command="ansible")
        for how, version in plan:
            if how == "raw":
                def action(version=version):
                    phases = dict.fromkeys(PHASES, 0.0)
                    for host in HOSTS:
                        for phase, where, command in raw_steps(spec, defaults, host, version, socket):
                            started = time.monotonic()
                            ssh(address("lb1" if where == "lb" else host), command)
                            phases[phase] += time.monotonic() - started
                    return phases
                wall, phases, summaries = probed(action, url, cafile)
            else:
                wall, proc, summaries = probed(
                    lambda version=version: play(*inv, "playbooks/rolling.yml", "-e", f"service={SERVICE}",
                                                 "-e", f"version={version}", "-e", '{"vmfleet_batch": 1}',
                                                 json_output=True), url, cafile)
                phases = rolling_phases(json.loads(proc.stdout[proc.stdout.index("{"):]), wall)
            if how == "raw":
                phases["other"] = max(wall - sum(phases.values()), 0.0)
            run = Run(how, version, wall, phases, summaries, served(spec))
            runs.append(run)
            print(f"{how} -> {version}: {wall:.1f} s ("
                  + ", ".join(f"{p} {s:.1f}" for p, s in phases.items() if s) + "); "
                  + ", ".join(f"{m} {p['failed']} failed of {p['total']}, {p['rps']} req/s"
                              for m, p in summaries.items()), flush=True)

    rows = result_rows(runs, datetime.date.today())
    print("\n".join(rows))
    return finish(problems(runs), record=args.record, update=lambda text: updated_results(text, rows),
                  refusal="not a fair zero-downtime comparison", results=RESULTS)


if __name__ == "__main__":
    sys.exit(main())
