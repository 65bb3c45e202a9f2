"""What the benches share: paths, the environment they run Ansible in, a lab of their own
with catalog behind HAProxy, the load probe, median/min/max, and the rule that a run with a
problem records nothing.

The benches run as scripts (`.venv/bin/python bench/<name>.py`), so this folder is on
sys.path; the unit tests add it through pytest's `pythonpath`.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"

__all__ = ["FULL_LOAD", "PROBE_MODES", "RESULTS", "ROOT", "LoadProbe", "Probes", "ansible_env", "bench_lab", "finish",
           "play", "probe_problems", "spread"]

# The one load probe (tests/integration/loadprobe.py), shared with the tests.
if str(ROOT / "tests" / "integration") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
from loadprobe import LoadProbe  # noqa: E402  (re-exported for the benches: see __all__)

# Both probe modes, as LoadProbe's `keepalive`.
PROBE_MODES = {"keep-alive": True, "new connection": False}
# The load of the benches that count failed requests: per mode, enough threads for 125 req/s while
# hosts change slots on the 2-core machine, bounded in time and requests.
FULL_LOAD = {mode: {"threads": threads, "rate": 125, "seconds": 600, "max_requests": 60000}
             for mode, threads in (("keep-alive", 10), ("new connection", 28))}


class Probes:
    """Both load probes (keep-alive, new connection) on `url` around a `with` block.

    They start `lead` seconds before the block's body and stop `tail` seconds after it, so
    the body's first and last moments are under load. `covered` says, per mode, whether the
    probe still ran when the body ended (a probe that stopped early on its bounds did not
    cover it); `summaries()` is each probe's result with it."""

    def __init__(self, url: str, cafile: str, bounds: dict[str, dict], lead: float = 1.0, tail: float = 1.0):
        self.probes = {mode: LoadProbe(url, keepalive=keepalive, cafile=cafile, **bounds[mode])
                       for mode, keepalive in PROBE_MODES.items()}
        self.lead, self.tail = lead, tail
        self.covered: dict[str, bool] = {}

    def __enter__(self) -> Probes:
        for probe in self.probes.values():
            probe.start()
        try:
            time.sleep(self.lead)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.covered = {mode: probe.running for mode, probe in self.probes.items()}
        try:
            if exc[0] is None:
                time.sleep(self.tail)
        finally:
            self._stop()

    def _stop(self) -> None:
        for probe in self.probes.values():
            probe.stop()

    def summaries(self) -> dict[str, dict]:
        return {mode: dict(probe.result(), covered=self.covered[mode]) for mode, probe in self.probes.items()}


def ansible_env(json_output: bool = False) -> dict[str, str]:
    """The environment for ansible-playbook: the checkout's ansible.cfg and the venv's tools first on PATH;
    with json_output, the json callback (so task timings and messages can be read)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    return env


def play(*argv: str, json_output: bool = False, command: str = "ansible-playbook") -> subprocess.CompletedProcess:
    """Run ansible-playbook (or `command`, such as ansible) from the checkout; exit the bench when it fails."""
    proc = subprocess.run([command, *argv], cwd=ROOT, env=ansible_env(json_output), capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{command} {' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return proc


@contextlib.contextmanager
def bench_lab(name: str, subnet: str, app_hosts: int, state: Path, versions: tuple[str, ...],
              keep: bool = False, timings: dict[str, float] | None = None) -> Iterator[list[str]]:
    """A lab of the bench's own (playbooks/lab.yml: `name`, `subnet` such as "10.77.112", state in `state`),
    with catalog's `versions` pushed to its registry, HAProxy, and catalog versions[0] on every app host.
    Yields the inventory arguments (["-i", dir]); removes the lab at the end unless `keep`.
    With `timings`, it records there the seconds of "lab" (playbooks/lab.yml), "setup" (images pushed,
    HAProxy, engines and catalog on every host) and "destroy"."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        inventory = Path(tmp) / "inventory"
        (inventory / "group_vars" / "all").mkdir(parents=True)
        # The lab inventory's shared settings (connection, registry, the shop's services).
        for shared in sorted((ROOT / "inventories/lab/group_vars/all").glob("*.yml")):
            (inventory / "group_vars" / "all" / shared.name).symlink_to(shared)
        lab = Path(tmp) / "lab.yml"
        lab.write_text(f"lab_name: {name}\nlab_subnet: {subnet}.0/24\nlab_app_hosts: {app_hosts}\n"
                       f"lab_state_dir: {state}\nlab_inventory_dir: {inventory}\n")
        inv = ["-i", str(inventory)]
        timings = {} if timings is None else timings
        try:
            started = time.monotonic()
            play("playbooks/lab.yml", "-e", f"@{lab}")
            timings["lab"] = time.monotonic() - started
            lab_env = dict(line.split("=", 1) for line in (state / "lab.env").read_text().split())
            subprocess.run(["examples/shop/build.sh"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                           env=dict(os.environ, REGISTRY=lab_env["LAB_REGISTRY"], PUSH="1", SERVICES="catalog",
                                    VERSIONS=" ".join(versions), DOCKER_CONFIG=lab_env["LAB_DOCKER_CONFIG"]))
            play(*inv, "playbooks/loadbalancers.yml")
            play(*inv, "playbooks/bootstrap.yml", "-e", '{"vmfleet_only": ["catalog"]}')
            # Every host on versions[0], whatever an earlier (kept) bench left.
            play(*inv, "playbooks/rolling.yml", "-e", "service=catalog", "-e", f"version={versions[0]}", "-e",
                 '{"vmfleet_batch": "100%"}')
            timings["setup"] = time.monotonic() - started - timings["lab"]
            yield inv
        finally:
            if not keep:
                started = time.monotonic()
                play("playbooks/lab.yml", "-e", f"@{lab}", "-e", "lab_state=absent")
                timings["destroy"] = time.monotonic() - started


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of the values."""
    if not values:
        raise ValueError("no values")
    return statistics.median(values), min(values), max(values)


def probe_problems(where: str, probe: dict, min_rps: float | None = None) -> list[str]:
    """Why a probe's summary (LoadProbe.result(), plus "covered": still running when the measured run
    ended) spoils a measurement: failed requests, a rate under `min_rps`, a run it did not cover."""
    found = []
    if probe["failed"]:
        errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(probe.get("errors", {}).items()))
        found.append(f"{where}: {probe['failed']} of {probe['total']} requests failed ({errors})")
    if min_rps is not None and probe["rps"] < min_rps:
        found.append(f"{where}: {probe['rps']} requests/s, under {min_rps}")
    if not probe.get("covered", True):
        found.append(f"{where}: the probe hit its bound before the run ended")
    return found


def finish(problems: list[str], *, record: bool, update: Callable[[str], str], refusal: str,
           results: Path = RESULTS) -> int:
    """End a bench: with any problem, print them and exit 1, recording nothing (`refusal` says why);
    otherwise, with `record`, rewrite `results` (RESULTS.md) with `update(old text)`. Returns 0."""
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(f"{refusal}: nothing recorded" if record else refusal)
    if record:
        results.write_text(update(results.read_text()))
        print(f"recorded in {results}")
    return 0
