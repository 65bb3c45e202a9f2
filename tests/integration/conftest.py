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
from pathlib import Path

import pytest

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


def docker_snapshot() -> dict[str, list[str]]:
    """What `docker ps -a`, `docker network ls` and `docker volume ls` show."""

    def lines(*argv: str) -> list[str]:
        return sorted(subprocess.run(["docker", *argv], capture_output=True, text=True, check=True).stdout.split())

    return {
        "containers": lines("ps", "-a", "--format", "{{.ID}}:{{.Names}}"),
        "networks": lines("network", "ls", "--format", "{{.ID}}:{{.Name}}"),
        "volumes": lines("volume", "ls", "--format", "{{.Name}}"),
    }
