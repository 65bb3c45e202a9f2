"""Benchmark: how fast a failing canary stops getting requests, from the analysis' verdict to its last response.

On a lab of its own (vmfleet-canary, 4 app hosts, HAProxy), catalog 1.0.0 runs in
every host's live slot. Each run deploys catalog 1.1.0-errors with
playbooks/canary.yml: its health checks pass, but 30 % of its answers to GET /
are 500s (examples/shop, ERROR_RATE). The canary runs on app1, one step sends it
20 % of new requests, and the analysis (min_requests 100) fails it; the play
aborts: the split goes back to 0, the canary is drained and stopped.

A keep-alive probe and a probe opening a new connection per request go through
HAProxy's HTTPS frontend during every run, each at up to 125 requests/s. The
play reports when the verdict was given (decided_at: the controller's clock
right after the analysis that failed the step); the probes record when each
request started and ended, and which version answered (same machine, same
clock). Per run, the bench takes the canary's answers (version 1.1.0-errors)
and reports, from the verdict:

- to the start of the last one (negative when none started after the verdict);
- to the end of the last one;
- how many started after the verdict.

Each figure is the median over the runs, with min and max. Nothing is recorded
when a request failed other than by the canary's own 500s, a probe stayed under
100 requests/s or stopped before the run ended, a run did not fail at step 1,
or the fleet did not answer with 1.0.0 only after the play.

    .venv/bin/python bench/canary_abort.py [--runs 3] [--record] [--keep]
    .venv/bin/python bench/canary_abort.py --inventory molecule/shared/fleet/inventory --cafile .lab/.../ca.crt

--inventory uses a lab that is there (such as the strategy scenarios'), which
must run catalog 1.0.0 and have catalog 1.1.0-errors in its registry; the bench
then neither makes nor removes a lab. --record puts the row "canary abort" into
bench/RESULTS.md, replacing an earlier one.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
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

LAB = "vmfleet-canary"
SUBNET = "10.77.114"
STATE = ROOT / ".lab" / "canary"
STABLE, CANARY = "1.0.0", "1.1.0-errors"
MIN_RPS = 100
STEPS = [{"weight": 20, "pause": 60}]
INPUTS = {"vmfleet_canary_steps": STEPS, "vmfleet_canary_interval": 2, "vmfleet_scale_down_delay": 2,
          "vmfleet_canary_analysis": {"min_requests": 100}}
BENCHMARK = "canary abort, verdict to last canary response"


@dataclass
class Run:
    """One aborted canary: the play's verdict and what the probes saw."""

    decided_at: float  # epoch seconds, the controller's clock
    report: list[dict]  # the play's verdicts, one per step run
    # probe mode -> (start, end, status, version) of every request, in epoch seconds
    answers: dict[str, list[tuple[float, float, int, str | None]]]
    probes: dict[str, dict]  # probe mode -> the probe's summary, plus "covered"
    after: dict[str, set]  # probe mode -> the versions that answered after the play ended


# ------------------------------------------------------------------ pure functions


def late(run: Run) -> dict[str, float]:
    """From the verdict: the start and the end of the canary's last answer (s), and how many started after it."""
    canary = [a for answers in run.answers.values() for a in answers if a[3] == CANARY]
    if not canary:
        return {"last_start": float("nan"), "last_end": float("nan"), "started_after": 0}
    return {"last_start": max(a[0] for a in canary) - run.decided_at,
            "last_end": max(a[1] for a in canary) - run.decided_at,
            "started_after": sum(1 for a in canary if a[0] > run.decided_at)}


def problems(runs: list[Run]) -> list[str]:
    """Why these runs cannot be recorded (empty when they can)."""
    found = []
    for number, run in enumerate(runs, start=1):
        where = f"run {number}"
        steps = [(v.get("step"), v.get("verdict")) for v in run.report]
        if steps != [(1, "fail")]:
            found.append(f"{where}: the canary did not fail at step 1 alone: {steps}")
        for mode, probe in run.probes.items():
            others = [a for a in run.answers[mode] if a[2] != 200 and not (a[2] == 500 and a[3] == CANARY)]
            if others:
                found.append(f"{where}, {mode} probe: {len(others)} requests failed other than the canary's 500s, "
                             f"such as {others[0]}")
            found += probe_problems(f"{where}, {mode} probe", dict(probe, failed=0), MIN_RPS)
            if run.after[mode] != {STABLE}:
                came = sorted(map(str, run.after[mode]))
                found.append(f"{where}, {mode} probe: after the play, answers came from {came}, not {STABLE} alone")
        if not any(a[3] == CANARY for answers in run.answers.values() for a in answers):
            found.append(f"{where}: no request reached the canary: nothing was measured")
    return found


def result_row(runs: list[Run], date: datetime.date) -> str:
    figures = [late(run) for run in runs]
    start = spread([f["last_start"] for f in figures])
    end = spread([f["last_end"] for f in figures])
    after = spread([float(f["started_after"]) for f in figures])
    total = {mode: sum(r.probes[mode]["total"] for r in runs) for mode in PROBE_MODES}
    canary = sum(1 for r in runs for answers in r.answers.values() for a in answers if a[3] == CANARY)
    return (f"| {date.isoformat()} | {BENCHMARK} | {end[0]:.2f} s ({end[1]:.2f}–{end[2]:.2f}) | "
            + ", ".join(f"{f['last_end']:.2f}" for f in figures)
            + f" | end of the last canary answer after the verdict; its start {start[0]:.2f} s "
            f"({start[1]:.2f}–{start[2]:.2f}); canary answers started after the verdict {after[0]:.0f} "
            f"({after[1]:.0f}–{after[2]:.0f}); canary answers in all {canary}; requests: "
            + "; ".join(f"{mode} {total[mode]}" for mode in PROBE_MODES)
            + ", no failed request but the canary's own 500s | issue 9: no canary response started more than 1 s "
            "after the verdict |")


# ------------------------------------------------------------------ the bench


def report_of(stdout: str) -> list[dict]:
    """The verdicts canary.yml prints (base64 JSON after vmfleet-canary-report=)."""
    for line in stdout.splitlines():
        if "vmfleet-canary-report=" in line:
            encoded = line.split("vmfleet-canary-report=")[1].split()[0].strip("\"',")
            return json.loads(base64.b64decode(encoded))
    return []


def aborted_canary(inv: list[str], url: str, cafile: str) -> Run:
    with Probes(url, cafile, FULL_LOAD, tail=2) as probing:
        proc = subprocess.run(["ansible-playbook", *inv, "playbooks/canary.yml", "-e", "service=catalog",
                               "-e", f"version={CANARY}", "-e", json.dumps(INPUTS)], cwd=ROOT, env=ansible_env(),
                              capture_output=True, text=True, check=False, timeout=900)
        ended = time.time()
    probes = probing.probes
    report = report_of(proc.stdout)
    if proc.returncode == 0 or not report:
        sys.exit(f"canary.yml of {CANARY} did not fail with a report (rc {proc.returncode}):\n{proc.stdout[-4000:]}")
    answers, after = {}, {}
    for mode, probe in probes.items():
        t0 = probe.result()["started_at"]
        answers[mode] = [(t0 + r.start, t0 + r.end, r.status, r.version) for r in probe.records()]
        after[mode] = {a[3] for a in answers[mode] if a[0] > ended}
    return Run(float(report[-1]["decided_at"]), report, answers, probing.summaries(), after)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="aborted canaries (default 3)")
    parser.add_argument("--record", action="store_true", help="put the result into bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the bench lab")
    parser.add_argument("--inventory", type=Path, help="a lab that is there, instead of a lab of the bench's own")
    parser.add_argument("--cafile", type=Path, help="with --inventory: the lab's CA certificate")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be 1 or more")
    if bool(args.inventory) != bool(args.cafile):
        parser.error("--inventory and --cafile go together: a lab that is there, and its CA certificate")
    shop = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/shop.yml").read_text())
    port = next(s for s in shop["vmfleet_services"] if s["name"] == "catalog")["frontend_port"]

    runs: list[Run] = []

    def measure(inv: list[str], lb: str, cafile: Path) -> None:
        for number in range(1, args.runs + 1):
            run = aborted_canary(inv, f"https://{lb}:{port}/", str(cafile))
            runs.append(run)
            figures = late(run)
            print(f"run {number}: last canary answer started {figures['last_start']:+.2f} s and ended "
                  f"{figures['last_end']:+.2f} s from the verdict; {figures['started_after']} started after it; "
                  + ", ".join(f"{m} {p['total']} requests, {p['rps']} req/s" for m, p in run.probes.items()),
                  flush=True)

    if args.inventory:
        hosts = yaml.safe_load(subprocess.run(["ansible-inventory", "-i", str(args.inventory), "--list", "--yaml"],
                                              cwd=ROOT, env=ansible_env(), capture_output=True, text=True,
                                              check=True).stdout)
        lbs = hosts["all"]["children"]["loadbalancers"]["hosts"]
        lb = next(iter(lbs.values()))["ansible_host"]
        measure(["-i", str(args.inventory)], lb, args.cafile)
    else:
        with bench_lab(LAB, SUBNET, 4, STATE, (STABLE, CANARY), keep=args.keep) as inv:
            measure(inv, f"{SUBNET}.10", STATE / "pki" / "ca.crt")

    row = result_row(runs, datetime.date.today())
    print(row)
    return finish(problems(runs), record=args.record, update=lambda text: updated_results(text, [row]),
                  refusal="not a clean abort", results=RESULTS)


if __name__ == "__main__":
    sys.exit(main())
