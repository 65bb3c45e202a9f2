"""Shared helpers for the tests that need the lab fleet (marker ``lab``).

They drive the real playbooks with ``ansible-playbook`` and read results
through the ``ansible.posix.json`` callback, so what they check is what a user
running the same command would get.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def ansible_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The ansible tools of the interpreter running pytest (the project's .venv).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        ANSIBLE_NOCOLOR="1",
    )
    env.update(extra)
    return env


def run_json(argv: list[str], timeout: float = 600, check: bool = True) -> dict:
    """Run an ansible command with the json callback and return its parsed output."""
    env = ansible_env()
    argv = [shutil.which(argv[0], path=env["PATH"]) or argv[0], *argv[1:]]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    try:
        result = json.loads(proc.stdout[proc.stdout.index("{") :])
    except ValueError:
        pytest.fail(f"{' '.join(argv)} printed no JSON (rc={proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed (rc={proc.returncode}):\n{json.dumps(result, indent=1)[-6000:]}")
    result["rc"] = proc.returncode
    return result


def docker_snapshot(lab: str) -> dict[str, list[str]]:
    """What `docker ps -a`, `docker network ls` and `docker volume ls` show, except other labs' objects.

    Objects labelled ``io.vmfleet.lab`` for another lab are left out: `make test` runs the
    smoke tests beside the Molecule `default` scenario, whose lab comes and goes meanwhile.
    Everything else, unlabelled objects and lab ``lab``'s own, is listed.
    """

    def lines(*argv: str) -> list[str]:
        out = subprocess.run(["docker", *argv], capture_output=True, text=True, check=True).stdout.split()
        return sorted(line.rsplit("|", 1)[0] for line in out if line.rsplit("|", 1)[1] in ("", lab))

    label = '|{{.Label "io.vmfleet.lab"}}'
    return {
        "containers": lines("ps", "-a", "--format", "{{.ID}}:{{.Names}}" + label),
        "networks": lines("network", "ls", "--format", "{{.ID}}:{{.Name}}" + label),
        "volumes": lines("volume", "ls", "--format", "{{.Name}}" + label),
    }


# ----------------------------------------------------------------------------
# Helpers for tests that make a lab of their own and drive roles on it.


def create_lab(base: Path, name: str, subnet_prefix: str, app_hosts: int) -> dict:
    """Create a lab named ``name`` on ``<subnet_prefix>.0/24`` with its own state and inventory under ``base``.

    Returns vars_file, inventory, state and the playbook result (``first``). The inventory
    gets a copy of inventories/lab/group_vars, as test_lab.py does.
    """
    if shutil.which("docker") is None:
        pytest.fail("docker is not installed; run `make deps` (scripts/host-deps.sh)")
    inventory = base / "inventory"
    shutil.copytree(ROOT / "inventories" / "lab" / "group_vars", inventory / "group_vars")
    state = base / "state"
    vars_file = base / f"{name}.yml"
    vars_file.write_text(
        yaml.safe_dump(
            {
                "lab_name": name,
                "lab_subnet": f"{subnet_prefix}.0/24",
                "lab_app_hosts": app_hosts,
                "lab_state_dir": str(state),
                "lab_inventory_dir": str(inventory),
            }
        )
    )
    first = run_json(["ansible-playbook", "playbooks/lab.yml", "-e", f"@{vars_file}"])
    return {"name": name, "vars_file": vars_file, "inventory": inventory, "state": state, "first": first}


# The one lab the smoke tests share (test_haproxy_role.py, then test_lab.py, which
# ends by removing it with `make clean`): its own name and subnet, so it can live
# beside a demo lab and the Molecule labs.
SMOKE_LAB = {"name": "vmfleet-smoke", "subnet_prefix": "10.77.101", "app_hosts": 2}


@pytest.fixture(scope="session")
def smoke_lab(tmp_path_factory):
    """Docker's state before, then the lab (create_lab()); removed at the end unless a test did."""
    before = docker_snapshot(SMOKE_LAB["name"])
    base = tmp_path_factory.mktemp("smoke-lab")
    start = time.monotonic()
    info = create_lab(base, SMOKE_LAB["name"], SMOKE_LAB["subnet_prefix"], SMOKE_LAB["app_hosts"])
    info.update(create_seconds=time.monotonic() - start, before=before, cleaned=False, **SMOKE_LAB)
    try:
        yield info
    finally:
        if not info["cleaned"]:
            destroy_lab(info["vars_file"])


def destroy_lab(vars_file: Path) -> None:
    """Remove a lab made by create_lab() with ``make clean`` (as a user would)."""
    subprocess.run(
        ["make", "--no-print-directory", "clean", f"LAB_ARGS=-e @{vars_file}"],
        cwd=ROOT, env=ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default"), check=True, timeout=300,
    )


def lab_objects(name: str) -> dict[str, list[str]]:
    """The containers, networks and volumes that carry the label of lab ``name``."""

    def lines(*argv: str) -> list[str]:
        return sorted(subprocess.run(["docker", *argv], capture_output=True, text=True, check=True).stdout.split())

    label = f"label=io.vmfleet.lab={name}"
    return {
        "containers": lines("ps", "-a", "--filter", label, "--format", "{{.Names}}"),
        "networks": lines("network", "ls", "--filter", label, "--format", "{{.Name}}"),
        "volumes": lines("volume", "ls", "--filter", label, "--format", "{{.Name}}"),
    }


def lab_shell(inventory: Path, pattern: str, command: str, check: bool = True) -> dict[str, dict]:
    """Run a shell command on the lab hosts matching ``pattern``; per-host results (stdout, rc ...)."""
    argv = ["ansible", "-i", str(inventory), pattern, "-m", "ansible.builtin.shell", "-a", command]
    result = run_json(argv, check=check)
    return result["plays"][0]["tasks"][0]["hosts"]


def changed_tasks(result: dict, host: str) -> list[str]:
    """Names of the tasks of an ansible-playbook json result that changed ``host``."""
    return [
        task["task"]["name"]
        for play in result["plays"]
        for task in play["tasks"]
        if task["hosts"].get(host, {}).get("changed")
    ]


def failure_messages(result: dict, host: str) -> list[str]:
    """The messages of the tasks (and loop items) that failed on ``host``."""
    messages = []
    for play in result["plays"]:
        for task in play["tasks"]:
            outcome = task["hosts"].get(host, {})
            if outcome.get("failed"):
                items = [r for r in outcome.get("results", []) if r.get("failed")] or [outcome]
                messages.extend(f"{task['task']['name']}: {item.get('msg', '')}" for item in items)
    return messages
