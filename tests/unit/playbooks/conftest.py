"""Fixtures for running the real playbooks with no lab (helpers in playjob.py)."""

from __future__ import annotations

import os
from pathlib import Path

import ansible_runner
import pytest
import yaml
from awxjob import clean_env
from playjob import ROOT, inventory


@pytest.fixture
def lock_dir(tmp_path) -> Path:
    return tmp_path / "locks"


@pytest.fixture
def job(tmp_path, lock_dir, monkeypatch):
    """Run a playbook as AWX would; return (runner, vmfleet_result artifact or None)."""
    env = clean_env()
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".cache" / "collections"))
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory(lock_dir)))
    (tmp_path / "env").mkdir()

    def run(playbook: str | Path, extravars: dict, cmdline: str | None = None) -> tuple:
        (tmp_path / "env" / "extravars").write_text(yaml.safe_dump(extravars))
        runner = ansible_runner.run(private_data_dir=str(tmp_path), playbook=str(playbook),
                                    inventory=str(tmp_path / "inventory"), quiet=True, timeout=300, cmdline=cmdline)
        stats = [e for e in runner.events if e["event"] == "playbook_on_stats"]
        artifact = (stats[-1]["event_data"].get("artifact_data") or {}).get("vmfleet_result") if stats else None
        return runner, artifact

    return run
