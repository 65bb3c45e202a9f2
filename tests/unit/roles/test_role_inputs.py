"""Bad input to a role fails before any change, naming the variable.

Each case runs the real role through ansible-playbook on localhost with a
bad variable and checks, from the json callback's output, that the play
failed in the role's input checks, that the message names the variable, and
that no task ran past the checks (so nothing on the host was touched).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]

GOOD_SERVICE = {
    "name": "catalog",
    "image": "registry.example:5000/shop/catalog",
    "version": "1.0.0",
    "port": 8080,
    "ports": {"blue": 8101, "green": 8102},
}

# Tasks that only check inputs; anything else running means the role went too far.
CHECK_TASKS = ("Validating arguments against arg spec", "Check the inputs")


def run_role(tmp_path: Path, role: str, role_vars: dict) -> dict:
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Apply the role with bad input",
                    "hosts": "localhost",
                    "connection": "local",
                    "gather_facts": False,
                    "tasks": [
                        {"name": "Run the role", "ansible.builtin.include_role": {"name": role}, "vars": role_vars}
                    ],
                }
            ]
        )
    )
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    proc = subprocess.run(
        ["ansible-playbook", "-i", "localhost,", str(playbook)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode != 0, proc.stdout
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def failure(result: dict) -> tuple[str, str, list[str]]:
    tasks = [t for play in result["plays"] for t in play["tasks"]]
    # Role tasks are named "<role> : <task>".
    ran = [t["task"]["name"].split(" : ", 1)[-1] for t in tasks if t["task"]["name"] != "Run the role"]
    failed = [t for t in tasks if t["hosts"].get("localhost", {}).get("failed")]
    assert failed, "no task failed"
    host = failed[0]["hosts"]["localhost"]
    messages = [host.get("msg", "")] + [r.get("msg", "") for r in host.get("results", []) if r.get("failed")]
    return failed[0]["task"]["name"].split(" : ", 1)[-1], " ".join(messages), ran


@pytest.mark.parametrize(
    ("case", "role_vars", "expected"),
    [
        ("service without image", {"service_spec": {k: v for k, v in GOOD_SERVICE.items() if k != "image"}}, "image"),
        ("slot other than blue or green", {"service_spec": GOOD_SERVICE, "service_slot": "red"}, "service_slot"),
        ("negative timeout", {"service_spec": GOOD_SERVICE, "service_health_timeout": -5}, "service_health_timeout"),
        ("service without ports", {"service_spec": {k: v for k, v in GOOD_SERVICE.items() if k != "ports"}}, "ports"),
        ("unknown image source", {"service_spec": GOOD_SERVICE, "service_image_source": "ftp"}, "service_image_source"),
        (
            "archive without a file",
            {"service_spec": GOOD_SERVICE, "service_image_source": "archive"},
            "service_image_archive",
        ),
    ],
)
def test_service_role_rejects_bad_input_before_any_change(tmp_path, case, role_vars, expected):
    task, message, ran = failure(run_role(tmp_path, "vmfleet.deploy.service", role_vars))
    assert task.startswith(CHECK_TASKS), f"{case}: failed in {task!r}, not in the input checks"
    assert expected in message, f"{case}: {message!r} does not name {expected}"
    assert all(name.startswith(CHECK_TASKS) for name in ran), f"{case}: tasks ran past the checks: {ran}"


def test_service_negative_timeout_message_says_what_was_expected(tmp_path):
    _task, message, _ran = failure(
        run_role(tmp_path, "vmfleet.deploy.service", {"service_spec": GOOD_SERVICE, "service_health_timeout": -5})
    )
    assert "service_health_timeout must be >= 0, got -5" in message


@pytest.mark.parametrize(
    ("role_vars", "expected"),
    [
        ({"container_engine_runtime": "rkt"}, "container_engine_runtime"),
        ({"container_engine_registries": [{"username": "x"}]}, "name"),
    ],
)
def test_container_engine_role_rejects_bad_input_before_any_change(tmp_path, role_vars, expected):
    task, message, ran = failure(run_role(tmp_path, "vmfleet.deploy.container_engine", role_vars))
    assert task.startswith(CHECK_TASKS), f"failed in {task!r}"
    assert expected in message
    assert all(name.startswith(CHECK_TASKS) for name in ran), ran
