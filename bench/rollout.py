"""Benchmark: rolling deployment wall time for 4 and 8 hosts, against the
sum of the waits no rollout can avoid (drain, container health, HTTP gates,
waiting for UP), measured in the same run.

It makes a lab of its own (vmfleet-bench, 8 app hosts), bootstraps catalog
1.0.0 behind HAProxy, then times playbooks/rolling.yml (batch 1) over 8 hosts
and over 4 of them (--limit), each run moving every host in its scope to the
other version (1.0.0 <-> 1.1.0), with a load probe running. The unavoidable
waits come from the json callback's task timings.
The lab is removed at the end.

    .venv/bin/python bench/rollout.py [--record] [--keep]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from loadprobe import LoadProbe  # noqa: E402

SUBNET = "10.77.112"
# Tasks that only wait for something the rollout cannot go faster than.
WAITS = (
    "Drain the server on every load balancer",
    "Wait until Docker reports the container healthy or unhealthy",
    "Gate on HTTP health of the slot",
    "Gate on HTTP health from the load balancer",
    "Set the server ready and wait until it is UP",
)


def env(json_output: bool = False) -> dict[str, str]:
    e = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    if json_output:
        e.update(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json")
    return e


def play(*argv: str, json_output: bool = False) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ansible-playbook", *argv], cwd=ROOT, env=env(json_output), capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"ansible-playbook {' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return proc


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the bench lab")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vmfleet-bench-") as tmp:
        inventory = Path(tmp) / "inventory"
        (inventory / "group_vars" / "all").mkdir(parents=True)
        for name in ("connection.yml", "registry.yml", "shop.yml"):
            (inventory / "group_vars" / "all" / name).symlink_to(ROOT / "inventories/lab/group_vars/all" / name)
        lab = Path(tmp) / "lab.yml"
        lab.write_text(f"lab_name: vmfleet-bench\nlab_subnet: {SUBNET}.0/24\nlab_app_hosts: 8\n"
                       f"lab_state_dir: {ROOT}/.lab/bench\nlab_inventory_dir: {inventory}\n")
        inv = ["-i", str(inventory)]
        try:
            play("playbooks/lab.yml", "-e", f"@{lab}")
            lab_env = dict(line.split("=", 1) for line in (ROOT / ".lab/bench/lab.env").read_text().split())
            subprocess.run(["examples/shop/build.sh"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, REGISTRY=lab_env["LAB_REGISTRY"], PUSH="1", SERVICES="catalog",
                                    VERSIONS="1.0.0 1.1.0", DOCKER_CONFIG=lab_env["LAB_DOCKER_CONFIG"]))
            play(*inv, "playbooks/loadbalancers.yml")
            play(*inv, "playbooks/bootstrap.yml", "-e", '{"vmfleet_only": ["catalog"]}')
            # Untimed: every host on 1.0.0, whatever an earlier (kept) bench left.
            play(*inv, "playbooks/rolling.yml", "-e", "service=catalog", "-e", "version=1.0.0", "-e",
                 '{"vmfleet_batch": "100%"}')
            url = f"https://{SUBNET}.10:8001/"
            rows = []
            # Every run moves every host in its scope to the other version.
            for hosts, version in ((8, "1.1.0"), (8, "1.0.0"), (4, "1.1.0"), (4, "1.0.0")):
                limit = ["--limit", ",".join(f"app{i}" for i in range(1, hosts + 1))]
                with LoadProbe(url, threads=2, keepalive=True, seconds=600, max_requests=100000, rate=50,
                               cafile=str(ROOT / ".lab/bench/pki/ca.crt")) as probe:
                    started = time.monotonic()
                    proc = play(*inv, "playbooks/rolling.yml", *limit, "-e", "service=catalog", "-e",
                                f"version={version}", json_output=True)
                    wall = time.monotonic() - started
                result = json.loads(proc.stdout[proc.stdout.index("{"):])
                # The playbook's timeline says how many hosts each batch replaced.
                replaced = sum(int(n) for n in re.findall(r"\((\d+) replaced\)", proc.stdout))
                if replaced != hosts:
                    timeline = [m for p in result["plays"] for t in p["tasks"]
                                for m in t["hosts"].get("localhost", {}).get("msg", []) if "batch" in str(m)]
                    sys.exit(f"{hosts} hosts -> {version}: {replaced} replaced, so the bench measured the wrong"
                             f" thing:\n{timeline}")
                rows.append((hosts, version, wall, waits(result), probe.result()["failed"]))
                print(f"{hosts} hosts -> {version}: wall {wall:.1f} s, unavoidable waits {rows[-1][3]:.1f} s, "
                      f"ratio {wall / rows[-1][3]:.2f}, failed requests {rows[-1][4]}", flush=True)
        finally:
            if not args.keep:
                play("playbooks/lab.yml", "-e", f"@{lab}", "-e", "lab_state=absent")

    for hosts in (4, 8):
        mine = [r for r in rows if r[0] == hosts]
        wall = sum(r[2] for r in mine) / len(mine)
        wait = sum(r[3] for r in mine) / len(mine)
        line = (f"| {datetime.date.today()} | rolling, batch 1, {hosts} hosts | {wall:.1f} s "
                f"| {', '.join(f'{r[2]:.1f}' for r in mine)} | unavoidable waits {wait:.1f} s, wall/waits "
                f"{wall / wait:.2f}, failed requests {sum(r[4] for r in mine)} | - |")
        print(line)
        if args.record:
            with open(ROOT / "bench" / "RESULTS.md", "a") as results:
                results.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
