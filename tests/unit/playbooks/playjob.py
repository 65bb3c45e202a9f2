"""Running the real playbooks with no lab: every host of the inventory is the local machine.

The ``job`` fixture runs a playbook through ansible-runner, as AWX runs a job (extra vars in
env/extravars), and returns the runner and its ``vmfleet_result`` artifact. Only steps that
work without a fleet are reached: the input checks, the deploy lock (its directory is under
the test's tmp_path), the result; a strategy stops at its first read of HAProxy.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}


def inventory(lock_dir: Path) -> dict:
    return {
        "all": {
            "vars": {
                "vmfleet_services": [
                    {"name": "catalog", "image": "registry.invalid/shop/catalog", "version": "1.0.0", "port": 8080,
                     "ports": {"blue": 8101, "green": 8102}, "frontend_port": 8001, "preview_port": 9001},
                    {"name": "cart", "image": "registry.invalid/shop/cart", "version": "1.0.0", "port": 8080,
                     "ports": {"blue": 8111, "green": 8112}, "frontend_port": 8002, "preview_port": 9002},
                ],
                "vmfleet_lock_dir": str(lock_dir),
                "vmfleet_haproxy_socket": str(lock_dir.parent / "no-haproxy.sock"),
            },
            "children": {
                "app_hosts": {"hosts": {"app1": LOCAL, "app2": LOCAL}},
                "loadbalancers": {"hosts": {"lb1": LOCAL}},
            },
        },
    }


def failure_text(runner) -> str:
    """The messages of the failed tasks, whitespace collapsed."""
    return " ".join(" ".join(e["stdout"].split()) for e in runner.events
                    if e["event"] in ("runner_on_failed", "runner_item_on_failed"))


def ran(runner, task_prefix: str) -> list[str]:
    """The hosts on which a task whose name starts with ``task_prefix`` ran (ok or changed)."""
    return [e["event_data"]["host"] for e in runner.events if e["event"] == "runner_on_ok"
            and e["event_data"].get("task", "").split(" : ")[-1].startswith(task_prefix)]


def debug_msg(runner, task_prefix: str):
    """The ``msg`` of the first debug task whose name starts with ``task_prefix``."""
    return next(e["event_data"]["res"]["msg"] for e in runner.events if e["event"] == "runner_on_ok"
                and e["event_data"].get("task", "").split(" : ")[-1].startswith(task_prefix))
