"""The built collection artifact: what `ansible-galaxy collection build` puts in it."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> set[str]:
    out = tmp_path_factory.mktemp("dist")
    galaxy = Path(sys.executable).parent / "ansible-galaxy"
    subprocess.run([str(galaxy), "collection", "build", "--force", "--output-path", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True, timeout=300)
    [artifact] = out.glob("vmfleet-deploy-*.tar.gz")
    with tarfile.open(artifact) as tar:
        return {m.name for m in tar.getmembers()}


def top(members: set[str]) -> set[str]:
    return {name.split("/")[0] for name in members}


def test_the_artifact_holds_what_users_run(members):
    assert {"roles", "playbooks", "plugins", "meta", "README.md", "MANIFEST.json", "FILES.json"} <= top(members)
    for name in ("playbooks/rolling.yml", "playbooks/blue_green.yml", "playbooks/canary.yml",
                 "playbooks/rollback.yml", "plugins/modules/http_health.py", "roles/traffic/meta/argument_specs.yml"):
        assert name in members, name


def test_tests_labs_and_the_demo_shop_stay_out(members):
    # The Molecule scenarios, the demo shop, the benches and the developer files are the project's, not the
    # collection's; the lab's generated inventory and every dot-file (.venv, .lab, .cache) too.
    left_in = top(members) & {"molecule", "examples", "tests", "bench", "scripts", "Makefile", "requirements.txt",
                              "pyproject.toml", "ansible.cfg", ".venv", ".lab", ".cache", ".ci", ".git"}
    assert not left_in
    assert "inventories/lab/hosts.yml" not in members
    assert not [name for name in members if "__pycache__" in name]


def test_the_dependencies_are_those_the_shipped_content_uses(members):
    deps = set(yaml.safe_load((ROOT / "galaxy.yml").read_text())["dependencies"])
    shipped = "\n".join(p.read_text(errors="replace") for d in ("roles", "playbooks", "plugins")
                        for p in (ROOT / d).rglob("*") if p.is_file() and p.suffix in (".yml", ".py", ".j2"))
    used = {dep for dep in deps if dep + "." in shipped}
    assert used == deps, f"declared but not used by roles, playbooks or plugins: {sorted(deps - used)}"


def test_requires_ansible_is_the_ansible_core_the_tests_run_with():
    """meta/runtime.yml names as its lowest ansible-core the one every test runs with (requirements.txt's):
    a lower bound that no test runs against is a claim nobody checked."""
    from ansible.module_utils.ansible_release import __version__ as core
    from ansible.module_utils.compat.version import LooseVersion

    spec = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"]
    assert spec.startswith(">="), spec
    lowest = LooseVersion(spec[2:])
    running = LooseVersion(core)
    assert running >= lowest, f"ansible-core {core} is below requires_ansible {spec}"
    assert lowest.version[:2] == running.version[:2], (
        f"requires_ansible {spec}, but the tests run ansible-core {core}: "
        "test the lowest version it names, or raise it")
