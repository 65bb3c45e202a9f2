"""The demo's rollout: roll catalog on the lab fleet while load probes run.

Runs playbooks/rolling.yml (service catalog, version 1.1.0 unless given)
against the lab inventory while two bounded load probes, one keep-alive and
one opening a new connection per request, go through HAProxy's HTTPS
frontend. Prints the failed requests, the rollout time, how many hosts were
replaced (a second run replaces none and says "0 hosts replaced, nothing to
do") and the per-batch timeline, with a line per host and batch as they finish
and the path of the HTML timeline report (callback vmfleet.deploy.deploy_report,
reports in .lab/reports). Exit status 1 when a request failed or the
rollout failed.

    .venv/bin/python scripts/demo_rollout.py [--version 1.1.0] [--batch 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from loadprobe import LoadProbe, format_summary  # noqa: E402


def replaced_hosts(timeline: list[str]) -> int | None:
    """Hosts the rollout replaced, from its timeline ("... (2 replaced)"); None without a timeline."""
    counts = [int(n) for line in timeline for n in re.findall(r"\((\d+) replaced\)", line)]
    return sum(counts) if timeline else None


def outcome(ok: bool, elapsed: float, replaced: int | None, failed: int, total: int) -> str:
    """The demo's one-line verdict: the rollout, what it replaced, and every failed request of the probes."""
    if replaced is None:
        hosts = "hosts replaced: unknown (no timeline in the playbook's output)"
    elif replaced == 0 and ok:
        hosts = "0 hosts replaced, nothing to do"
    else:
        hosts = f"{replaced} host{'' if replaced == 1 else 's'} replaced"
    return f"Rollout: {'ok' if ok else 'FAILED'} in {elapsed:.1f} s; {hosts}; failed requests: {failed} of {total}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="catalog")
    parser.add_argument("--version", default="1.1.0")
    parser.add_argument("--batch", default="1", help='a number, a percentage or a JSON list such as [1, "50%%"]')
    parser.add_argument("--rate", type=float, default=100, help="requests per second per probe (default 100)")
    parser.add_argument("--inventory", default=str(ROOT / "inventories" / "lab"))
    args = parser.parse_args()

    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    inventory = json.loads(
        subprocess.run(["ansible-inventory", "-i", args.inventory, "--list"], env=env, cwd=ROOT,
                       capture_output=True, text=True, check=True).stdout
    )
    hostvars = inventory["_meta"]["hostvars"]
    lb = inventory["loadbalancers"]["hosts"][0]
    service = next(s for s in hostvars[lb]["vmfleet_services"] if s["name"] == args.service)
    url = f"https://{hostvars[lb]['ansible_host']}:{service['frontend_port']}/"
    cafile = hostvars[lb]["vmfleet_registry_ca_file"]
    batch = json.loads(args.batch) if args.batch.startswith("[") else args.batch

    print(f"Rolling {args.service} to {args.version} (batch {batch}) while probing {url}", flush=True)
    bounds = {"seconds": 900, "max_requests": 200000, "rate": args.rate, "cafile": cafile}
    with LoadProbe(url, threads=3, keepalive=True, **bounds) as keepalive, \
            LoadProbe(url, threads=3, keepalive=False, **bounds) as fresh:
        time.sleep(1)
        started = time.monotonic()
        # The collection's deploy_report callback prints a line per host and batch as they finish
        # (shown here as they come) and writes the HTML timeline whose path it prints last.
        rollout = subprocess.Popen(
            ["ansible-playbook", "-i", args.inventory, "playbooks/rolling.yml", "-e", f"service={args.service}",
             "-e", f"version={args.version}", "-e", json.dumps({"vmfleet_batch": batch})],
            cwd=ROOT, env=dict(env, ANSIBLE_CALLBACKS_ENABLED="vmfleet.deploy.deploy_report",
                               VMFLEET_REPORT_DIR=str(ROOT / ".lab" / "reports")),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        output = []
        for line in rollout.stdout:
            output.append(line)
            if line.startswith("[vmfleet] "):
                print(f"  {line.rstrip()}", flush=True)
        rollout.wait()
        stdout = "".join(output)
        elapsed = time.monotonic() - started
        time.sleep(1)

    # The playbook's own per-batch timeline ("batch 1: app1  +0.4 s .. +9.8 s (1 replaced)").
    lines = (line.strip().strip("-' ") for line in stdout.splitlines())
    timeline = [line for line in lines if line.startswith("batch ") and (" s .. " in line or "not run" in line)]
    summaries = [keepalive.result(), fresh.result()]
    failed = sum(s["failed"] for s in summaries)
    print()
    print("\n".join(format_summary(s) for s in summaries))
    print()
    print(outcome(rollout.returncode == 0, elapsed, replaced_hosts(timeline), failed,
                  sum(s["total"] for s in summaries)))
    print("Timeline:")
    print("\n".join(f"  {line}" for line in timeline))
    if rollout.returncode != 0:
        print(stdout[-4000:])
    return 0 if failed == 0 and rollout.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
