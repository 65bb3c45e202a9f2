"""Run a job the way AWX runs it: ansible-runner, a private data dir, survey answers as extra vars.

The private data dir is what AWX hands ansible-runner:
- ``project/``: the project as AWX syncs it from its SCM, here the tracked files of this
  checkout (no .venv, no .cache link), and the collections of its
  ``collections/requirements.yml`` installed as AWX's project update does
  (awx/playbooks/project_update.yml: ``ansible-galaxy collection install -r ...`` run in the
  project, into ``requirements_collections``);
- ``inventory/``: the fleet's inventory (AWX writes its own from its database);
- ``env/extravars``: the survey answers and the ``awx_*`` job variables AWX adds;
- ``env/envvars``: ANSIBLE_COLLECTIONS_PATH as AWX sets it.

Used by molecule/rolling/tests/test_runner.py (process isolation off) and by
bench/ee_rollout.py (the job inside the execution environment image).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ansible_runner
import yaml

ROOT = Path(__file__).resolve().parents[2]
# Where AWX mounts the private data dir inside an execution environment.
CONTAINER_ROOT = "/runner"


def clean_env() -> dict[str, str]:
    """The environment of a job: none of this checkout's ANSIBLE_* settings (make and molecule export some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "MOLECULE_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def make_private_data_dir(pdd: Path, inventory: Path, container: bool = False) -> Path:
    """Lay out ``pdd`` as AWX does for a job of this project on ``inventory``; return it."""
    project = pdd / "project"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        src = ROOT / name
        if src.is_file():
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, project / name)
    assert not (project / ".cache").exists()
    collections = pdd / "requirements_collections"
    env = clean_env()
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_PATHS=str(collections))
    sync = subprocess.run([str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "install",
                           "-r", "collections/requirements.yml"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert sync.returncode == 0, sync.stdout + sync.stderr
    assert (collections / "ansible_collections" / "vmfleet" / "deploy" / "MANIFEST.json").exists(), sync.stdout
    shutil.copytree(inventory, pdd / "inventory")
    (pdd / "env").mkdir()
    where = f"{CONTAINER_ROOT}/requirements_collections" if container else str(collections)
    (pdd / "env" / "envvars").write_text(yaml.safe_dump({
        "ANSIBLE_COLLECTIONS_PATH": f"{where}:~/.ansible/collections:/usr/share/ansible/collections",
        "ANSIBLE_NOCOLOR": "1",
    }))
    return pdd


def run_job(pdd: Path, playbook: str, answers: dict, job_id: int, verbosity: int = 0, **runner_args) -> tuple:
    """Run one job as AWX does; return (runner, vmfleet_result or None, all the files the job wrote)."""
    extravars = {"awx_job_id": job_id, "awx_job_launch_type": "manual", "awx_job_template_name": playbook,
                 "tower_job_id": job_id, **answers}
    (pdd / "env" / "extravars").write_text(json.dumps(extravars))
    saved, job_env = dict(os.environ), clean_env()
    os.environ.clear()
    os.environ.update(job_env)
    try:
        runner = ansible_runner.run(private_data_dir=str(pdd), playbook=f"playbooks/{playbook}",
                                    inventory=str(pdd / "inventory") if not runner_args.get("process_isolation")
                                    else f"{CONTAINER_ROOT}/inventory",
                                    ident=str(job_id), verbosity=verbosity, quiet=True, timeout=900, **runner_args)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    stats = [e for e in runner.events if e["event"] == "playbook_on_stats"]
    artifact = (stats[-1]["event_data"].get("artifact_data") or {}).get("vmfleet_result") if stats else None
    written = "\n".join(p.read_text(errors="replace") for p in (pdd / "artifacts" / str(job_id)).rglob("*")
                        if p.is_file())
    return runner, artifact, written
