"""What the benches share: paths, the environment they run Ansible in, the load probe,
median/min/max, and the rule that a run with a problem records nothing.

The benches run as scripts (`.venv/bin/python bench/<name>.py`), so this folder is on
sys.path; the unit tests add it through pytest's `pythonpath`.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"

__all__ = ["RESULTS", "ROOT", "LoadProbe", "ansible_env", "finish", "probe_problems", "spread"]

# The one load probe (tests/integration/loadprobe.py), shared with the tests.
if str(ROOT / "tests" / "integration") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
from loadprobe import LoadProbe  # noqa: E402  (re-exported for the benches: see __all__)


def ansible_env(json_output: bool = False) -> dict[str, str]:
    """The environment for ansible-playbook: the checkout's ansible.cfg and the venv's tools first on PATH;
    with json_output, the json callback (so task timings and messages can be read)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if json_output:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    return env


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
