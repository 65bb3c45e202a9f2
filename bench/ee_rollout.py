"""A rolling deploy inside the execution environment, as AWX runs it, under the two load probes.

ansible-runner with container isolation (the way AWX runs a job in an execution
environment): the image vmfleet-ee:latest (scripts/ee.sh), the private data dir mounted at
/runner, the project as AWX syncs it (tests/integration/awxjob.py), the survey answers in
env/extravars. The container uses the host's network (the lab's hosts are reached from the
host) and sees the lab's keys and CA at the same paths, read-only.

Runs on the strategy scenarios' lab (`molecule create -s rolling && molecule converge -s
rolling`), moving catalog between two versions, and prints the job's status, its
vmfleet_result artifact and both probes' failed requests. --record adds a row to
bench/RESULTS.md.

    .venv/bin/python bench/ee_rollout.py [--versions 1.1.0 1.0.0] [--record]
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from awxjob import make_private_data_dir, run_job  # noqa: E402
from fleet import INVENTORY, assert_no_failures, probes, served_versions  # noqa: E402
from loadprobe import format_summary  # noqa: E402

IMAGE = "vmfleet-ee:latest"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="+", default=["1.1.0", "1.0.0"])
    parser.add_argument("--batch", default="1")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    image = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}} {{.Size}}", IMAGE],
                           capture_output=True, text=True, check=False)
    if image.returncode != 0:
        sys.exit(f"{IMAGE} is missing: build it with scripts/ee.sh")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vmfleet-ee-") as tmp:
        pdd = make_private_data_dir(Path(tmp), INVENTORY, container=True)
        for job_id, version in enumerate(args.versions, start=7001):
            started = time.monotonic()
            with probes() as running:
                runner, result, _written = run_job(
                    pdd, "rolling.yml", {"service": "catalog", "version": version, "vmfleet_batch": args.batch},
                    job_id=job_id, process_isolation=True, process_isolation_executable="docker",
                    container_image=IMAGE, container_options=["--network=host"],
                    container_volume_mounts=[f"{ROOT / '.lab'}:{ROOT / '.lab'}:ro"])
            wall = time.monotonic() - started
            stdout = runner.stdout.read()
            if runner.status != "successful":
                print(stdout[-5000:])
                sys.exit(f"job {job_id} ({version}): {runner.status}, rc {runner.rc}")
            results = assert_no_failures(*running)
            assert served_versions() == dict.fromkeys(served_versions(), version)
            rows.append((version, wall, result, results))
            print(f"job {job_id}: catalog {version} in {IMAGE}: {runner.status}, rc {runner.rc}, "
                  f"{wall:.1f} s; vmfleet_result {result}")
            for r in results:
                print("  " + format_summary(r))
    if args.record:
        today = datetime.date.today().isoformat()
        probes_text = "; ".join(
            f"{v}: " + ", ".join(f"{'keep-alive' if i == 0 else 'new connection'} {r['failed']} failed of "
                                 f"{r['total']} at {r['rps']:.0f} req/s" for i, r in enumerate(res))
            for v, _w, _r, res in rows)
        walls = [w for _v, w, _r, _res in rows]
        median = sorted(walls)[len(walls) // 2]
        line = (f"| {today} | rolling.yml in the execution environment ({IMAGE}, ansible-runner container "
                f"isolation), batch {args.batch}, 4 hosts | {median:.1f} s "
                f"| {', '.join(f'{w:.1f}' for w in walls)} | {probes_text} | issue 10: 0 failed requests |\n")
        results_md = ROOT / "bench" / "RESULTS.md"
        text = results_md.read_text()
        marker = "\n\nNotes on the rolling rows"
        results_md.write_text(text.replace(marker, "\n" + line.rstrip("\n") + marker, 1))
        print("recorded in bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
