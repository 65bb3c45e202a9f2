"""Benchmark: time to create the lab fleet (N app hosts + 1 LB + 1 registry)
from cached images, and time of the no-change second run.

It uses a lab of its own (vmfleet-bench, 10.77.102.0/24, a temporary state
directory) so a demo lab can stay up, and removes it at the end. The images
must already be cached: it runs `present` once as warm-up (which builds any
missing image), destroys the lab, then times ROUNDS cold creations.

    .venv/bin/python bench/lab_create.py [--app-hosts 4] [--rounds 3] [--record]

With --record it appends a row to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0


def playbook(vars_file: Path, *extra: str) -> float:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    start = time.monotonic()
    subprocess.run(
        ["ansible-playbook", "playbooks/lab.yml", "-e", f"@{vars_file}", *extra],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-hosts", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="vmfleet-bench-") as tmp:
        (Path(tmp) / "inventory").mkdir()
        vars_file = Path(tmp) / "bench.yml"
        vars_file.write_text(
            f"lab_name: vmfleet-bench\nlab_subnet: 10.77.102.0/24\nlab_app_hosts: {args.app_hosts}\n"
            f"lab_state_dir: {tmp}/state\nlab_inventory_dir: {tmp}/inventory\n"
        )
        playbook(vars_file)  # warm-up: builds missing images, makes keys and CA
        playbook(vars_file, "-e", "lab_state=absent")
        creates, noops = [], []
        for _round in range(args.rounds):
            creates.append(playbook(vars_file))
            noops.append(playbook(vars_file))
            playbook(vars_file, "-e", "lab_state=absent")

    hosts = f"{args.app_hosts}+1+1"
    create = statistics.median(creates)
    noop = statistics.median(noops)
    verdict = "meets" if create < TARGET_SECONDS else "MISSES"
    print(f"lab {hosts} hosts from cached images: create median {create:.1f} s "
          f"(runs {', '.join(f'{t:.1f}' for t in creates)}), second run median {noop:.1f} s; "
          f"{verdict} the {TARGET_SECONDS:.0f} s target; create/no-op ratio {create / noop:.2f}")
    if args.record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as results:
            results.write(
                f"| {datetime.date.today()} | lab create {hosts} (cached images) | {create:.1f} s "
                f"| {', '.join(f'{t:.1f}' for t in creates)} | no-op rerun {noop:.1f} s, ratio {create / noop:.2f} "
                f"| < {TARGET_SECONDS:.0f} s: {verdict} |\n"
            )
    return 0 if create < TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
