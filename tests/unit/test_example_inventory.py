"""inventories/example, the inventory for a real fleet: what Ansible loads from it, and what the playbooks need.

Everything goes through the project's own ansible tools (ANSIBLE_CONFIG=ansible.cfg):
``ansible-inventory --list`` for what the inventory holds, ``ansible-playbook
--syntax-check`` for the playbooks against it, and one ``debug`` task (it
connects to nothing) with the placeholder secrets of vault.yml.example, for
the templates of group_vars/all/main.yml. No vault password is needed: the
vault file is an example, which Ansible does not load.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventories" / "example"
VAULT_EXAMPLE = EXAMPLE / "group_vars" / "all" / "vault.yml.example"
BIN = Path(sys.executable).parent
# The playbooks a user runs against a fleet (lab.yml and lab_status.yml are for the lab).
FLEET_PLAYBOOKS = ["bootstrap.yml", "loadbalancers.yml", "rolling.yml", "blue_green.yml", "canary.yml", "rollback.yml"]


def ansible(tool: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)  # the example must load without one
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.fixture(scope="module")
def inventory() -> dict:
    proc = ansible("ansible-inventory", "-i", str(EXAMPLE), "--list")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def hosts_of(inventory: dict, group: str) -> set[str]:
    """The hosts of a group, its children's included."""
    body = inventory.get(group, {})
    hosts = set(body.get("hosts", []))
    for child in body.get("children", []):
        hosts |= hosts_of(inventory, child)
    return hosts


def hostvars(inventory: dict) -> dict[str, dict]:
    return inventory["_meta"]["hostvars"]


def groups_the_playbooks_use() -> set[str]:
    """The groups that the fleet playbooks' plays target (``hosts:``), with the defaults of templated ones."""
    groups = set()
    for name in FLEET_PLAYBOOKS:
        for play in yaml.safe_load((ROOT / "playbooks" / name).read_text()):
            pattern = play.get("hosts")
            if pattern is None:  # import_playbook
                continue
            default = re.search(r"default\('([^']+)'\)", pattern)
            groups.add(default.group(1) if default else re.sub(r"\[\d+\]$", "", pattern))
    return groups


def test_the_groups_the_playbooks_target_have_hosts(inventory):
    wanted = groups_the_playbooks_use()
    assert {"app_hosts", "loadbalancers"} <= wanted, wanted
    for group in wanted:
        assert hosts_of(inventory, group), f"the playbooks target {group}, which has no hosts in the example"


def test_app_hosts_run_docker_and_podman(inventory):
    engines = {host: hostvars(inventory)[host].get("container_engine_runtime", "docker")
               for host in hosts_of(inventory, "app_hosts")}
    assert set(engines.values()) == {"docker", "podman"}, engines


def test_the_login_user_is_not_root_and_become_is_left_to_the_plays(inventory):
    for host, hv in hostvars(inventory).items():
        assert hv.get("ansible_user") not in (None, "", "root"), f"{host}: ansible_user {hv.get('ansible_user')!r}"
        # As a variable, ansible_become would outrank the plays' `become: false` on their controller tasks.
        assert "ansible_become" not in hv, f"{host}: ansible_become is set"


def test_every_play_that_touches_the_fleet_becomes_root():
    for name in FLEET_PLAYBOOKS:
        for play in yaml.safe_load((ROOT / "playbooks" / name).read_text()):
            if play.get("hosts") not in (None, "localhost"):  # a play on the controller needs no root
                assert play.get("become") is True, f"{name}: play {play.get('name')!r} does not set become: true"


def required_keys(options: dict, prefix: str = "") -> set[str]:
    """Dotted names of the required options, nested ones (under a given parent) included."""
    keys = set()
    for name, spec in options.items():
        if spec.get("required"):
            keys.add(prefix + name)
        if spec.get("options"):
            keys |= required_keys(spec["options"], prefix + name + ".")
    return keys


def has(entry: dict, dotted: str) -> bool:
    *parents, last = dotted.split(".")
    for parent in parents:
        if parent not in entry:  # an optional parent that is left out needs none of its keys
            return True
        entry = entry[parent]
    return last in entry


@pytest.mark.parametrize(("role", "option"), [("haproxy", "haproxy_services"), ("service", "service_spec")])
def test_every_service_has_the_keys_the_roles_require(inventory, role, option):
    spec = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())
    required = required_keys(spec["argument_specs"]["main"]["options"][option]["options"])
    assert "name" in required
    services = hostvars(inventory)["lb1"]["vmfleet_services"]
    assert [s["name"] for s in services] == ["catalog", "cart", "search", "payment"]
    for service in services:
        missing = sorted(key for key in required if not has(service, key))
        assert not missing, f"{service['name']}: no {missing} (required by the {role} role's {option})"


def test_tls_is_given_as_content_from_the_vault(inventory):
    for host in hosts_of(inventory, "loadbalancers"):
        hv = hostvars(inventory)[host]
        vaulted = re.compile(r"\{\{ *vault_\w+ *\}\}")
        assert vaulted.fullmatch(hv.get("vmfleet_lb_tls_cert", "")), hv.get("vmfleet_lb_tls_cert")
        assert vaulted.fullmatch(hv.get("vmfleet_lb_tls_key", "")), "the key is not a vault variable"
        for files in ("vmfleet_lb_tls_cert_file", "vmfleet_lb_tls_key_file", "haproxy_tls_cert_file",
                      "haproxy_tls_key_file"):
            assert files not in hv, f"{host}: {files} is set too (the role takes one way)"


def vault_references(inventory: dict) -> set[str]:
    return set(re.findall(r"\bvault_\w+", json.dumps(hostvars(inventory))))


def test_the_vault_example_is_not_loaded_and_names_every_vaulted_variable(inventory):
    text = VAULT_EXAMPLE.read_text()
    example = yaml.safe_load(text)
    assert "ansible-vault encrypt" in text
    referenced = vault_references(inventory)
    assert referenced >= {"vault_registry_password", "vault_lb_tls_cert", "vault_lb_tls_key"}, referenced
    assert referenced <= set(example), f"not in vault.yml.example: {referenced - set(example)}"
    for host, hv in hostvars(inventory).items():
        assert not [name for name in hv if name.startswith("vault_")], f"{host} loaded the example's secrets"
    # Placeholders, not secrets: no base64 body in the PEM blocks.
    assert not re.search(r"^[A-Za-z0-9+/=]{40,}$", text, re.MULTILINE)
    assert not (EXAMPLE / "group_vars" / "all" / "vault.yml").exists(), "a real vault file is in the checkout"


def test_the_variables_resolve_with_the_vault_values(tmp_path):
    """group_vars/all/main.yml's templates, rendered for an app host and a load balancer with the example's
    placeholder secrets (the debug action runs on the controller and connects to nothing)."""
    expression = ("{{ {'registries': vmfleet_registries, 'cert': vmfleet_lb_tls_cert, 'key': vmfleet_lb_tls_key,"
                  " 'images': vmfleet_services | map(attribute='image') | list} | to_json }}")
    proc = ansible("ansible", "-i", str(EXAMPLE), "app3,lb1", "-m", "ansible.builtin.debug",
                   "-a", f"msg={expression}", "-e", f"@{VAULT_EXAMPLE}", "--one-line")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    example = yaml.safe_load(VAULT_EXAMPLE.read_text())
    lines = [line for line in proc.stdout.splitlines() if " | SUCCESS" in line]
    assert len(lines) == 2, proc.stdout
    for line in lines:
        values = json.loads(json.loads(line.split("=> ", 1)[1])["msg"])
        assert values["registries"] == [{"name": "registry.example.com:5000", "username": "deploy",
                                         "password": example["vault_registry_password"]}]
        assert values["cert"].startswith("-----BEGIN CERTIFICATE-----")
        assert values["key"].startswith("-----BEGIN PRIVATE KEY-----")
        assert all(image.startswith("registry.example.com:5000/shop/") for image in values["images"])


def test_the_fleet_playbooks_pass_a_syntax_check_with_the_example():
    proc = ansible("ansible-playbook", "-i", str(EXAMPLE), "--syntax-check",
                   *(str(ROOT / "playbooks" / name) for name in FLEET_PLAYBOOKS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "playbook: " in proc.stdout and "rolling.yml" in proc.stdout
