"""Benchmark: rolling deployment wall time for 4 and 8 hosts, against the
sum of the waits no rollout can avoid (drain, container health, HTTP gates,
waiting for UP), measured in the same run.

It makes a lab of its own (vmfleet-bench, 8 app hosts), bootstraps catalog
1.0.0 behind HAProxy, then times playbooks/rolling.yml (batch 1) RUNS times
over 8 hosts and RUNS times over 4 of them (--limit), each run moving every
host in its scope to the other version (1.0.0 <-> 1.1.0). Two load probes go
through HAProxy during every timed run: one keep-alive, one opening a new
connection per request. The time in waiting tasks comes from the json callback's
task timings. The lab is removed at the end.

Each figure is the median over the runs, with min and max. When any request
of either probe failed, or a probe stopped before the rollout ended, the
bench says so, exits 1 and records nothing.

    .venv/bin/python bench/rollout.py [--runs 3] [--record] [--keep]

--record puts the two rows into the table of bench/RESULTS.md, replacing the
earlier rows of the same benchmark.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
import time
from dataclasses import dataclass

from benchlib import PROBE_MODES, RESULTS, ROOT, Probes, bench_lab, finish, play, probe_problems, spread

SUBNET = "10.77.112"
# Tasks that wait for something (a drain, a health check, HAProxy's UP). They are not a
# lower bound: bench/rolling_vs_raw.py measures the same job done by hand.
WAITS = (
    "Drain the server on every load balancer",
    "Run the image's own health check until it passes",
    "Gate on HTTP health of the slot",
    "Gate on HTTP health from the load balancer",
    "Set the server ready and wait until it is UP",
)
# Per probe: 2 threads at <= 25 req/s (50 req/s in all), bounded in time and requests.
PROBE_BOUNDS = dict.fromkeys(PROBE_MODES, {"threads": 2, "rate": 25, "seconds": 600, "max_requests": 20000})
SCOPES = (8, 4)  # hosts per timed run, in this order
VERSIONS = ("1.0.0", "1.1.0")


@dataclass(frozen=True)
class Run:
    """One timed rollout and what the load probes saw during it."""

    hosts: int
    version: str
    wall: float  # seconds
    waits: float  # seconds in waiting tasks, summed over hosts
    # probe mode -> the probe's summary: at least total, failed, errors; covered (still running when the
    # rollout ended, so it saw all of it).
    probes: dict[str, dict]


# ------------------------------------------------------------------ pure functions


def run_plan(runs: int) -> list[tuple[int, str]]:
    """(hosts, version) of every timed run: `runs` over each scope, each moving the scope to the other version.

    Every host starts on VERSIONS[0]; the 4-host scope is the first half of the 8 hosts.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    plan, current = [], VERSIONS[0]
    for hosts in SCOPES:
        for _run in range(runs):
            current = VERSIONS[1] if current == VERSIONS[0] else VERSIONS[0]
            plan.append((hosts, current))
    return plan


def failures(runs: list[Run]) -> list[str]:
    """Why the runs cannot be recorded: one sentence per probe that failed requests or missed part of a rollout."""
    problems = [problem for run in runs for mode, probe in run.probes.items()
                for problem in probe_problems(f"{run.hosts} hosts -> {run.version}, {mode} probe", probe)]
    if not runs:
        problems.append("no timed run")
    return problems


def result_rows(runs: list[Run], date: datetime.date) -> list[str]:
    """The RESULTS.md table rows, one per scope: medians (min-max) over the runs of that scope."""
    rows = []
    for hosts in sorted({run.hosts for run in runs}):
        mine = [run for run in runs if run.hosts == hosts]
        wall, wall_min, wall_max = spread([run.wall for run in mine])
        wait, wait_min, wait_max = spread([run.waits for run in mine])
        requests = "; ".join(
            f"{mode} {sum(run.probes[mode]['failed'] for run in mine)} of "
            f"{sum(run.probes[mode]['total'] for run in mine)}"
            for mode in PROBE_MODES
        )
        ratio = f"{wall / wait:.2f}" if wait else "n/a"
        rows.append(
            f"| {date} | rolling, batch 1, {hosts} hosts | {wall:.1f} s ({wall_min:.1f}–{wall_max:.1f}) "
            f"| {', '.join(f'{run.wall:.1f}' for run in mine)} "
            f"| waiting tasks {wait:.1f} s ({wait_min:.1f}–{wait_max:.1f}), median wall/waits {ratio}, "
            f"failed requests: {requests} | - |"
        )
    return rows


def benchmark_of(row: str) -> str | None:
    """The benchmark column of a RESULTS.md table row, None for other lines (header, rule, text)."""
    if not row.startswith("|"):
        return None
    cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
    if len(cells) < 2 or cells[0] == "date" or set(cells[0]) <= set("-: "):
        return None
    return cells[1]


def updated_results(text: str, rows: list[str]) -> str:
    """RESULTS.md's text with `rows` in its (first) table.

    A row replaces the table's row of the same benchmark, where there is one, in place;
    the others go after the table's last row. Everything else is kept as it is.
    """
    lines = text.splitlines()
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    if not table:
        raise ValueError("RESULTS.md has no table")
    end = table[0]
    while end + 1 < len(lines) and lines[end + 1].startswith("|"):
        end += 1
    new = {benchmark_of(row): row for row in rows}
    for i in range(table[0], end + 1):
        benchmark = benchmark_of(lines[i])
        if benchmark in new:
            lines[i] = new.pop(benchmark)
    lines[end + 1 : end + 1] = list(new.values())
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the bench


def waits(result: dict) -> float:
    """Seconds spent in waiting tasks, per host, summed over hosts."""
    total = 0.0
    for p in result["plays"]:
        for task in p["tasks"]:
            if not task["task"]["name"].split(" : ")[-1].startswith(WAITS):
                continue
            start = datetime.datetime.fromisoformat(task["task"]["duration"]["start"].replace("Z", "+00:00"))
            end = datetime.datetime.fromisoformat(task["task"]["duration"]["end"].replace("Z", "+00:00"))
            total += (end - start).total_seconds()
    return total


def timed_rollout(inv: list[str], hosts: int, version: str, url: str, cafile: str) -> Run:
    limit = ["--limit", ",".join(f"app{i}" for i in range(1, hosts + 1))]
    with Probes(url, cafile, PROBE_BOUNDS, lead=0, tail=0) as probes:
        started = time.monotonic()
        proc = play(*inv, "playbooks/rolling.yml", *limit, "-e", "service=catalog", "-e", f"version={version}",
                    json_output=True)
        wall = time.monotonic() - started
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    # The playbook's timeline says how many hosts each batch replaced.
    replaced = sum(int(n) for n in re.findall(r"\((\d+) replaced\)", proc.stdout))
    if replaced != hosts:
        timeline = [m for p in result["plays"] for t in p["tasks"]
                    for m in t["hosts"].get("localhost", {}).get("msg", []) if "batch" in str(m)]
        sys.exit(f"{hosts} hosts -> {version}: {replaced} replaced, so the bench measured the wrong"
                 f" thing:\n{timeline}")
    return Run(hosts, version, wall, waits(result), probes.summaries())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per scope (default 3)")
    parser.add_argument("--record", action="store_true", help="put the result into bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the bench lab")
    args = parser.parse_args()
    plan = run_plan(args.runs)

    runs: list[Run] = []
    with bench_lab("vmfleet-bench", SUBNET, 8, ROOT / ".lab/bench", VERSIONS, keep=args.keep) as inv:
        for hosts, version in plan:
            run = timed_rollout(inv, hosts, version, f"https://{SUBNET}.10:8001/", str(ROOT / ".lab/bench/pki/ca.crt"))
            runs.append(run)
            probes = ", ".join(f"{mode} {p['failed']} of {p['total']}" for mode, p in run.probes.items())
            print(f"{hosts} hosts -> {version}: wall {run.wall:.1f} s, waiting tasks {run.waits:.1f} s, "
                  f"failed requests: {probes}", flush=True)

    rows = result_rows(runs, datetime.date.today())
    print("\n".join(rows))
    return finish(failures(runs), record=args.record, update=lambda text: updated_results(text, rows),
                  refusal="not a zero-downtime rollout", results=RESULTS)


if __name__ == "__main__":
    sys.exit(main())
