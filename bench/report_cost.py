"""Benchmark: the cost of the callback vmfleet.deploy.deploy_report at 64 hosts, without a lab.

A local-connection inventory of 64 hosts (ansible_connection=local) and a serial playbook (batch 25 %:
4 batches of 16) of 15 trivial tasks per host, named as the collection's phases are (controller-side
set_fact, debug and assert, and one task skipped on every host), so the run is mostly Ansible's own work
per task and host: the part of a deployment the callback adds to. It runs the playbook with and without
the callback, alternating, `--runs` times each, and reports the median wall times and their ratio, the
median CPU time of the run (user + system, the controller and its workers) and its ratio, and the peak
RSS of the run's largest process (the controller; its forked workers start as copies of it): from GNU
time (%M, %U, %S) when /usr/bin/time is there, else from getrusage(RUSAGE_CHILDREN) in a wrapper process.

On a busy machine the wall times vary more than the callback costs, so it also measures the callback's
own CPU time on the controller: ansible-playbook runs in a small wrapper (the same in both modes) that
times, with the calling thread's CPU clock, each call of the callback's methods and every callback
dispatch of ansible-core (all plugins; it also copies each result once per plugin).

    .venv/bin/python bench/report_cost.py [--hosts 64] [--runs 3] [--record]

With --record it adds a row to the first table of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from benchlib import RESULTS, ansible_env, spread

TIME = Path("/usr/bin/time")
RUN_TIMEOUT = 600
# ansible-playbook (as .venv/bin/ansible-playbook runs it), with the CPU time of the callback's methods and of
# ansible-core's callback dispatch written to argv[1] at exit.
WRAPPER = """
import atexit, json, sys, time
from ansible.executor.task_queue_manager import TaskQueueManager
spent = {"callback_cpu": 0.0, "callback_calls": 0, "dispatch_cpu": 0.0}

def timed(method, key):
    def call(*args, **kwargs):
        start = time.thread_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[key] += time.thread_time() - start
            if key == "callback_cpu":
                spent["callback_calls"] += 1
    call.timed = True
    return call

load_callbacks = TaskQueueManager.load_callbacks

def load_and_time(self):  # called again for each play and batch: time each method once
    load_callbacks(self)
    for plugin in self._callback_plugins:
        if getattr(plugin, "CALLBACK_NAME", "") == "vmfleet.deploy.deploy_report":
            for name in plugin._implemented_callback_methods:
                if not getattr(getattr(plugin, name), "timed", False):
                    setattr(plugin, name, timed(getattr(plugin, name), "callback_cpu"))

TaskQueueManager.load_callbacks = load_and_time
TaskQueueManager.send_callback = timed(TaskQueueManager.send_callback, "dispatch_cpu")
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(spent)))
sys.argv[0] = "ansible-playbook"
from ansible.cli.playbook import main
sys.exit(main())
"""
PHASE_TASKS = [
    "Pull the image with Docker: bench", "Drain the server on every load balancer: bench",
    "Check whether the slot's container must be replaced", "Stop the unit of the container being replaced",
    "Ensure the slot's container runs the image with Docker", "Ensure the container's systemd unit",
    "Run the image's own health check", "Gate on HTTP health of the slot", "Gate on HTTP health from the LB",
    "Read the container's state", "Set the server ready", "Check that every load balancer reports the server UP",
    "Record the release in the ledger", "Roll back the slot",
]


def playbook() -> list[dict]:
    tasks = []
    for number, name in enumerate(PHASE_TASKS):
        kind = number % 3
        if name.startswith("Roll back"):
            tasks.append({"name": name, "ansible.builtin.debug": {"msg": "never"}, "when": "bench_fail | bool"})
        elif kind == 0:
            tasks.append({"name": name, "ansible.builtin.set_fact": {f"bench_{number}": "{{ inventory_hostname }}"}})
        elif kind == 1:
            tasks.append({"name": name, "ansible.builtin.debug": {"msg": "{{ inventory_hostname }} %d" % number}})
        else:
            tasks.append({"name": name, "ansible.builtin.assert": {"that": "inventory_hostname is string",
                                                                   "quiet": True}})
    tasks.append({"name": "Record this host's step", "ansible.builtin.set_fact": {"bench_done": True}})
    return [{"name": "Roll out in batches", "hosts": "fleet", "gather_facts": False, "serial": "25%",
             "vars": {"bench_fail": False}, "tasks": tasks}]


def run_once(tmp: Path, hosts: int, callback: bool, number: int) -> tuple[float, int, dict]:
    """Wall seconds, peak RSS (KiB) and CPU times (the run's; the wrapper's) of one ansible-playbook run."""
    env = ansible_env()
    env.pop("ANSIBLE_CALLBACKS_ENABLED", None)  # an empty value is an error
    if callback:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "vmfleet.deploy.deploy_report"
    env.update(VMFLEET_REPORT_DIR=str(tmp / f"reports-{number}"), ANSIBLE_FORCE_COLOR="0")
    command = [sys.executable, "-c", WRAPPER, str(tmp / f"cpu-{number}"), "-i", str(tmp / "hosts.yml"),
               str(tmp / "play.yml")]
    rss_file = tmp / f"rss-{number}"
    if TIME.exists():
        command = [str(TIME), "-f", "%M %U %S", "-o", str(rss_file), *command]
    else:
        command = [sys.executable, "-c", "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
                   "r = resource.getrusage(resource.RUSAGE_CHILDREN); "
                   "open(sys.argv[1], 'w').write('%d %f %f' % (r.ru_maxrss, r.ru_utime, r.ru_stime)); "
                   "sys.exit(rc)", str(rss_file), *command]
    start = time.monotonic()
    proc = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, check=False,
                          timeout=RUN_TIMEOUT)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"run {number} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    reports = list((tmp / f"reports-{number}").glob("play-*.json"))
    if callback != bool(reports) or callback != ("[vmfleet] report:" in proc.stdout):
        sys.exit(f"run {number}: the callback was {'not ' if callback else ''}expected, reports: {reports}")
    if reports:
        report = json.loads(reports[0].read_text())["hosts"]
        if len(report) != hosts or any(len(h["spans"]) != len(PHASE_TASKS) for h in report.values()):
            sys.exit(f"run {number}: the report has not every host's tasks")
    peak, user, system = rss_file.read_text().split()[-3:]
    spent = json.loads((tmp / f"cpu-{number}").read_text())
    spent["run_cpu"] = float(user) + float(system)
    return seconds, int(peak), spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="add the result to bench/RESULTS.md")
    args = parser.parse_args()
    times: dict[bool, list[float]] = {True: [], False: []}
    rss: dict[bool, list[int]] = {True: [], False: []}
    cpu: dict[bool, list[dict]] = {True: [], False: []}
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vmfleet-report-cost-") as tmp_name:
        tmp = Path(tmp_name)
        hosts = {f"app{n:02d}": None for n in range(1, args.hosts + 1)}
        (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "children": {"fleet": {"hosts": hosts}}}}))
        (tmp / "play.yml").write_text(yaml.safe_dump(playbook(), sort_keys=False))
        number = 0
        for round_ in range(args.runs):
            # Alternate which goes first, so a drift in the machine's load falls on both.
            for callback in (False, True) if round_ % 2 == 0 else (True, False):
                number += 1
                seconds, peak, spent = run_once(tmp, args.hosts, callback, number)
                times[callback].append(seconds)
                rss[callback].append(peak)
                cpu[callback].append(spent)
                print(f"run {number}: {'with' if callback else 'without'} the callback {seconds:.1f} s, "
                      f"peak RSS {peak / 1024:.0f} MiB, CPU in the callback {spent['callback_cpu']:.2f} s "
                      f"({spent['callback_calls']} calls), in callback dispatch {spent['dispatch_cpu']:.2f} s, "
                      f"run CPU {spent['run_cpu']:.1f} s",
                      flush=True)
        report_kib = sum(p.stat().st_size for p in tmp.glob("reports-*/play-*")) / 1024 / args.runs
    (on, on_min, on_max), (off, off_min, off_max) = spread(times[True]), spread(times[False])
    ratio = on / off
    rss_on, rss_off = max(rss[True]) / 1024, max(rss[False]) / 1024
    tasks = len(PHASE_TASKS) + 1
    own = spread([c["callback_cpu"] for c in cpu[True]])[0]
    run_on, run_off = (spread([c["run_cpu"] for c in cpu[flag]])[0] for flag in (True, False))
    dispatch = spread([c["dispatch_cpu"] for c in cpu[True]])[0] - spread([c["dispatch_cpu"] for c in cpu[False]])[0]
    summary = (f"with {on:.1f} s ({on_min:.1f}–{on_max:.1f}), without {off:.1f} s ({off_min:.1f}–{off_max:.1f}); "
               f"ratio {ratio:.3f} ({on - off:+.1f} s); run CPU (user+sys) with {run_on:.1f} s, without "
               f"{run_off:.1f} s, ratio {run_on / run_off:.3f}; CPU in the callback's methods {own:.2f} s "
               f"({1000 * own / (args.hosts * tasks):.2f} ms per task and host, {100 * own / off:.1f} % of the "
               f"wall time without it), callback dispatch {dispatch:+.2f} s with it; "
               f"peak RSS {rss_on:.0f} MiB with, {rss_off:.0f} MiB without; report JSON+HTML {report_kib:.0f} KiB")
    print(f"deploy_report at {args.hosts} local hosts, {tasks} tasks each, batch 25 %: {summary} "
          f"(bench {time.monotonic() - began:.0f} s)")
    if args.record:
        runs = "; ".join(f"{label}: {', '.join(f'{t:.1f}' for t in times[flag])}"
                         for label, flag in (("with", True), ("without", False)))
        row = (f"| {datetime.date.today()} | deploy_report callback cost, {args.hosts} local hosts, {tasks} tasks "
               f"each, batch 25% | with {on:.1f} s, without {off:.1f} s | {runs} | {summary} | - |\n")
        lines = RESULTS.read_text().splitlines(keepends=True)
        last = max(i for i, line in enumerate(lines) if line.startswith("| 20") and i < next(
            (j for j, text in enumerate(lines) if text.startswith("## ")), len(lines)))
        lines.insert(last + 1, row)
        RESULTS.write_text("".join(lines))
        print(f"recorded in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
