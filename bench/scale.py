"""Benchmark: rolling.yml at batch 25 % on labs of 8, 16, 32 and 64 app hosts, under the two load
probes: lab creation time, total time, time per batch and the part of it that is Ansible's own
overhead, the time outside the batches, and the controller's memory.

For each size it makes a lab of its own (vmfleet-scale, one at a time), bootstraps catalog 1.0.0
behind HAProxy on every host, then times RUNS rollouts of every host (1.0.0 -> 1.1.0, then back,
and so on) with `vmfleet_batch: 25%`, so every size has 4 batches. A keep-alive probe and a probe
opening a new connection per request go through HAProxy's HTTPS frontend during every timed run.
The deploy_report callback's JSON gives each batch's start and end and each host's phases.

Per batch, "platform" is the longest time any host of the batch spent in its own drain, replace,
gate and enable tasks (what the hosts must wait for, done in parallel); "overhead" is the rest of
the batch's time: Ansible's per-task cost for the batch's hosts, on the controller's 2 cores.
"Before" the first batch is the plan (the lock, the reads, and the image pulled on every host at
once); "after" the last is the end play (prune, result, lock). The reports stay in .lab/scale/reports.

The controller's memory is sampled every 0.2 s: the resident memory of ansible-playbook and its
descendants (the forked workers and the ssh clients they start; the ControlPersist masters detach,
and are not counted), summed, and its largest process alone.

Nothing is recorded when any request failed, a probe stopped before the run ended, or a run did not
replace every host. Each lab is removed after its runs.

    .venv/bin/python bench/scale.py [--hosts 8 16 32 64] [--runs 1] [--record] [--keep]
"""

from __future__ import annotations

import argparse
import configparser
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchlib import (
    FULL_LOAD,
    PROBE_MODES,
    RESULTS,
    ROOT,
    Probes,
    ansible_env,
    bench_lab,
    finish,
    probe_problems,
    spread,
)
from rollout import updated_results

LAB = "vmfleet-scale"
SUBNET = "10.77.114"
STATE = ROOT / ".lab" / "scale"
VERSIONS = ("1.0.0", "1.1.0")
BATCH = "25%"
PLATFORM_PHASES = ("drain", "replace", "gate", "enable")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Run:
    """One timed rollout of a lab of `hosts` app hosts."""

    hosts: int
    version: str
    wall: float
    batches: list[dict]  # {"hosts": n, "seconds", "platform", "overhead"}
    before: float  # seconds before the first batch (the plan: lock, reads, the image pulled on every host)
    pull: float  # of which the longest pull of one host
    after: float  # seconds after the last batch (the end play: prune, result, lock)
    peak_tree: int  # bytes
    peak_process: int  # bytes
    replaced: int
    probes: dict[str, dict]


# ------------------------------------------------------------------ pure functions


def batch_figures(report: dict, play: str = "Roll") -> list[dict]:
    """Per batch of the report's serial play (its name starts with `play`): its hosts, its seconds,
    the longest time one of its hosts spent in the platform phases within the batch, and the rest."""
    figures = []
    for batch in report["batches"]:
        if not batch["hosts"] or batch["end"] is None or not batch["play"].startswith(play):
            continue
        start, end = batch["start"], batch["end"]
        platform = 0.0
        for host in batch["hosts"]:
            spans = report["hosts"].get(host, {}).get("spans", [])
            platform = max(platform, sum(min(e, end) - max(s, start) for phase, s, e, *_task in spans
                                         if phase in PLATFORM_PHASES and e > start and s < end))
        seconds = end - start
        figures.append({"hosts": len(batch["hosts"]), "seconds": round(seconds, 3), "platform": round(platform, 3),
                        "overhead": round(seconds - platform, 3)})
    return figures


def forks() -> int:
    """The forks setting of the checkout's ansible.cfg (Ansible's default, 5, when it has none)."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "ansible.cfg")
    return config.getint("defaults", "forks", fallback=5)


def problems(runs: list[Run]) -> list[str]:
    found = [problem for run in runs for mode, probe in run.probes.items()
             for problem in probe_problems(f"{run.hosts} hosts -> {run.version}, {mode} probe", probe)]
    found += [f"{run.hosts} hosts -> {run.version}: {run.replaced} hosts replaced, not {run.hosts}"
              for run in runs if run.replaced != run.hosts]
    return found + ([] if runs else ["no timed run"])


def result_rows(runs: list[Run], labs: dict[int, dict[str, float]], date: datetime.date) -> list[str]:
    rows = []
    for hosts in sorted({run.hosts for run in runs}):
        mine = [run for run in runs if run.hosts == hosts]
        wall = spread([run.wall for run in mine])
        per_batch = spread([b["seconds"] for run in mine for b in run.batches])
        overhead = spread([b["overhead"] for run in mine for b in run.batches])
        platform = spread([b["platform"] for run in mine for b in run.batches])
        before = spread([run.before for run in mine])
        pull = spread([run.pull for run in mine])
        after = spread([run.after for run in mine])
        batches = sorted({len(run.batches) for run in mine})
        requests = "; ".join(
            f"{mode} {sum(run.probes[mode]['failed'] for run in mine)} of "
            f"{sum(run.probes[mode]['total'] for run in mine)} "
            f"(min {min(run.probes[mode]['rps'] for run in mine):.0f} req/s)"
            for mode in PROBE_MODES
        )
        lab = labs.get(hosts, {})
        rows.append(
            f"| {date} | rolling at batch {BATCH}, {hosts} hosts | {wall[0]:.1f} s ({wall[1]:.1f}–{wall[2]:.1f}) "
            f"| {', '.join(f'{run.wall:.1f}' for run in mine)} "
            f"| {'/'.join(map(str, batches))} batches of {mine[0].batches[0]['hosts']} hosts; "
            f"per batch {per_batch[0]:.1f} s ({per_batch[1]:.1f}–{per_batch[2]:.1f}), of which platform "
            f"{platform[0]:.1f} s and overhead {overhead[0]:.1f} s ({overhead[1]:.1f}–{overhead[2]:.1f}); "
            f"before the first batch {before[0]:.1f} s (pull {pull[0]:.1f} s), after the last {after[0]:.1f} s; "
            f"forks {forks()}; controller peak RSS "
            f"{max(run.peak_tree for run in mine) / 2**20:.0f} MiB in all, largest process "
            f"{max(run.peak_process for run in mine) / 2**20:.0f} MiB; lab create {lab.get('lab', 0):.0f} s, "
            f"setup {lab.get('setup', 0):.0f} s; failed requests: {requests} | - |"
        )
    return rows


# ------------------------------------------------------------------ the bench


class MemorySampler(threading.Thread):
    """The peak resident memory of a process and its descendants, summed, and of its largest process."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_tree = self.peak_process = 0
        self.done = threading.Event()

    @staticmethod
    def _processes() -> dict[int, tuple[int, int]]:
        """pid -> (parent pid, resident bytes) of every process."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                rss = int(Path(f"/proc/{entry}/statm").read_text().split()[1]) * PAGE
            except (OSError, IndexError, ValueError):
                continue
            found[int(entry)] = (int(stat[stat.rindex(")") + 2:].split()[1]), rss)
        return found

    def sample(self) -> None:
        processes = self._processes()
        tree, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(child for child, (parent, _rss) in processes.items() if parent == pid)
        sizes = [processes[pid][1] for pid in tree if pid in processes]
        self.peak_tree = max(self.peak_tree, sum(sizes))
        self.peak_process = max([self.peak_process, *sizes])

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.sample()


def timed_rollout(inv: list[str], hosts: int, version: str, report_dir: Path) -> Run:
    env = ansible_env()
    env.update(ANSIBLE_CALLBACKS_ENABLED="vmfleet.deploy.deploy_report", VMFLEET_REPORT_DIR=str(report_dir),
               VMFLEET_REPORT_PROGRESS="true")
    argv = ["ansible-playbook", *inv, "playbooks/rolling.yml", "-e", "service=catalog", "-e", f"version={version}",
            "-e", json.dumps({"vmfleet_batch": BATCH})]
    before = set(report_dir.glob("*.json"))
    with Probes(f"https://{SUBNET}.10:8001/", str(STATE / "pki" / "ca.crt"), FULL_LOAD, lead=0, tail=0) as probes, \
            tempfile.TemporaryFile("w+") as out:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        sampler = MemorySampler(proc.pid)
        sampler.start()
        rc = proc.wait()
        wall = time.monotonic() - started
        sampler.done.set()
        sampler.join()
        out.seek(0)
        output = out.read()
    if rc != 0:
        sys.exit(f"{hosts} hosts -> {version}: rolling.yml failed (rc {rc}):\n{output[-4000:]}")
    (path,) = set(report_dir.glob("*.json")) - before
    report = json.loads(path.read_text())
    batches = batch_figures(report)
    first = min(b["start"] for b in report["batches"] if b["hosts"] and b["play"].startswith("Roll"))
    last = max(b["end"] for b in report["batches"] if b["hosts"] and b["play"].startswith("Roll"))
    before, after = first - report["started"], report["ended"] - last
    pull = max((sum(e - s for phase, s, e, *_task in record.get("spans", []) if phase == "pull")
                for record in report["hosts"].values()), default=0.0)
    replaced = sum(int(n) for n in re.findall(r"\((\d+) replaced\)", output))
    return Run(hosts, version, wall, batches, before, pull, after, sampler.peak_tree, sampler.peak_process, replaced,
               probes.summaries())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[8, 16, 32, 64], help="lab sizes, in order")
    parser.add_argument("--runs", type=int, default=1, help="timed rollouts per size (default 1)")
    parser.add_argument("--record", action="store_true", help="put the result into bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the last lab")
    args = parser.parse_args()

    runs: list[Run] = []
    labs: dict[int, dict[str, float]] = {}
    reports = STATE / "reports"  # kept, to look into after the bench
    reports.mkdir(parents=True, exist_ok=True)
    for size in args.hosts:
        labs[size] = {}
        keep = args.keep and size == args.hosts[-1]
        with bench_lab(LAB, SUBNET, size, STATE, VERSIONS, keep=keep, timings=labs[size]) as inv:
            print(f"{size} hosts: lab created in {labs[size]['lab']:.1f} s, set up in {labs[size]['setup']:.1f} s",
                  flush=True)
            current = VERSIONS[0]
            for _run in range(args.runs):
                current = VERSIONS[1] if current == VERSIONS[0] else VERSIONS[0]
                run = timed_rollout(inv, size, current, reports)
                runs.append(run)
                probes = ", ".join(f"{mode} {p['failed']} of {p['total']} ({p['rps']} req/s)"
                                   for mode, p in run.probes.items())
                each = ", ".join(f"{b['seconds']:.1f}/{b['platform']:.1f}" for b in run.batches)
                print(f"{size} hosts -> {current}: {run.wall:.1f} s, {len(run.batches)} batches ({each} s "
                      f"batch/platform), before {run.before:.1f} s (pull {run.pull:.1f}), after {run.after:.1f} s, "
                      f"{run.replaced} replaced, peak RSS "
                      f"{run.peak_tree / 2**20:.0f} MiB (largest {run.peak_process / 2**20:.0f}); "
                      f"failed requests: {probes}", flush=True)

    rows = result_rows(runs, labs, datetime.date.today())
    print("\n".join(rows))
    return finish(problems(runs), record=args.record, update=lambda text: updated_results(text, rows),
                  refusal="not a zero-downtime rollout", results=RESULTS)


if __name__ == "__main__":
    sys.exit(main())
