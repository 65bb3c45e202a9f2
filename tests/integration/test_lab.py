"""Smoke test of the lab fleet (`vmfleet.deploy.lab`).

It runs on the smoke tests' own lab (conftest.smoke_lab: name ``vmfleet-smoke``,
its own subnet, state and inventory directories, so it can run beside a demo
lab), which test_haproxy_role.py uses first. It checks the lab and ends by
removing it with ``make clean`` and comparing Docker's state with what it was
before the lab was made. The tests run in file order.
"""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
from base64 import b64encode
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, SMOKE_LAB, changed_tasks, destroy_lab, docker_snapshot, lab_objects, run_json

pytestmark = pytest.mark.lab

SUBNET_PREFIX = SMOKE_LAB["subnet_prefix"]
REGISTRY = f"{SUBNET_PREFIX}.11:5000"
APP_HOSTS = SMOKE_LAB["app_hosts"]
SUDO_USER = "vmfleet"  # the default lab_sudo_user


@pytest.fixture(scope="module")
def lab(smoke_lab):
    return smoke_lab


def per_host(result: dict) -> dict[str, dict]:
    return result["plays"][0]["tasks"][0]["hosts"]


def test_lab_is_created_with_every_host(lab):
    assert lab["first"]["stats"]["localhost"]["failures"] == 0
    hosts = yaml.safe_load((lab["inventory"] / "hosts.yml").read_text())
    groups = hosts["all"]["children"]
    assert sorted(groups["app_hosts"]["hosts"]) == [f"app{i}" for i in range(1, APP_HOSTS + 1)]
    assert list(groups["loadbalancers"]["hosts"]) == ["lb1"]
    assert list(groups["registry"]["hosts"]) == ["registry1"]
    # Root login by default; the non-root sudo user is named for runs that switch to it.
    assert hosts["all"]["vars"]["ansible_user"] == "root"
    assert hosts["all"]["vars"]["vmfleet_lab_sudo_user"] == SUDO_USER
    print(f"lab of {APP_HOSTS + 2} hosts created in {lab['create_seconds']:.1f} s")


def test_second_present_reports_no_change(lab):
    second = run_json(["ansible-playbook", "playbooks/lab.yml", "-e", f"@{lab['vars_file']}"])
    stats = second["stats"]["localhost"]
    assert stats["failures"] == 0
    changed = [
        task["task"]["name"]
        for play in second["plays"]
        for task in play["tasks"]
        if task["hosts"].get("localhost", {}).get("changed")
    ]
    assert stats["changed"] == 0, f"second run changed: {changed}"


def test_every_host_answers_ansible_ping_over_ssh(lab):
    result = run_json(["ansible", "-i", str(lab["inventory"]), "all", "-m", "ansible.builtin.ping"])
    replies = {host: r.get("ping") for host, r in per_host(result).items()}
    assert len(replies) == APP_HOSTS + 2
    assert set(replies.values()) == {"pong"}, replies
    # Reached over SSH, as a VM would be, not through the Docker API.
    connections = run_json(
        ["ansible", "-i", str(lab["inventory"]), "all", "-m", "ansible.builtin.debug", "-a", "var=ansible_connection"]
    )
    assert {r.get("ansible_connection") for r in per_host(connections).values()} == {"ssh"}


def test_every_host_runs_systemd_as_pid_1(lab):
    pid1 = run_json(["ansible", "-i", str(lab["inventory"]), "all", "-m", "command", "-a", "ps -o comm= -p 1"])
    assert {h: r["stdout"] for h, r in per_host(pid1).items()} == {h: "systemd" for h in per_host(pid1)}
    state = run_json(
        ["ansible", "-i", str(lab["inventory"]), "all", "-m", "command", "-a", "systemctl is-system-running --wait"],
        check=False,
    )
    assert {h: r["stdout"] for h, r in per_host(state).items()} == {h: "running" for h in per_host(state)}


def as_sudo_user(lab: dict, *args: str, check: bool = True) -> dict[str, dict]:
    """Run an ad-hoc module on every host, logged in as the lab's non-root user.

    The user is the inventory's ``vmfleet_lab_sudo_user``, passed as ``-e ansible_user=...``
    because the inventory's ``ansible_user: root`` outranks ``-u``.
    """
    hosts = yaml.safe_load((lab["inventory"] / "hosts.yml").read_text())
    user = hosts["all"]["vars"]["vmfleet_lab_sudo_user"]
    argv = ["ansible", "-i", str(lab["inventory"]), "all", "-e", f"ansible_user={user}", *args]
    return per_host(run_json(argv, check=check))


def test_sudo_user_logs_in_over_ssh_without_privileges(lab):
    ids = as_sudo_user(lab, "-m", "ansible.builtin.command", "-a", "id -un")
    assert {h: r["stdout"] for h, r in ids.items()} == {h: SUDO_USER for h in ids}
    assert len(ids) == APP_HOSTS + 2
    uids = as_sudo_user(lab, "-m", "ansible.builtin.command", "-a", "id -u")
    assert all(r["stdout"].isdigit() and r["stdout"] != "0" for r in uids.values()), uids
    home = as_sudo_user(lab, "-m", "ansible.builtin.stat", "-a", f"path=/home/{SUDO_USER}/.ssh/authorized_keys")
    assert {(r["stat"]["pw_name"], r["stat"]["mode"]) for r in home.values()} == {(SUDO_USER, "0600")}


def test_sudo_user_has_passwordless_sudo(lab):
    # -n: sudo fails rather than asking for a password.
    uids = as_sudo_user(lab, "-m", "ansible.builtin.command", "-a", "sudo -n id -u")
    assert {h: r["stdout"] for h, r in uids.items()} == {h: "0" for h in uids}
    # The rule lives in sudoers.d, owned by root, mode 0440, and the whole sudoers passes visudo.
    check = as_sudo_user(lab, "-b", "-m", "ansible.builtin.command", "-a", "visudo -c")
    assert all(r["rc"] == 0 for r in check.values()), check
    rule = as_sudo_user(lab, "-m", "ansible.builtin.stat", "-a", "path=/etc/sudoers.d/vmfleet-lab")
    assert {(r["stat"]["pw_name"], r["stat"]["mode"]) for r in rule.values()} == {("root", "0440")}


def test_become_works_for_the_sudo_user(lab):
    # `ansible all -u vmfleet -b -m command -a 'id -u'` (the -e of as_sudo_user makes -u take effect).
    uids = as_sudo_user(lab, "-u", SUDO_USER, "-b", "-m", "ansible.builtin.command", "-a", "id -u")
    assert {h: r["stdout"] for h, r in uids.items()} == {h: "0" for h in uids}
    shadow = as_sudo_user(lab, "-b", "-m", "ansible.builtin.slurp", "-a", "src=/etc/shadow")
    assert all(not r.get("failed") and r["content"] for r in shadow.values()), shadow


def test_sudo_user_cannot_read_root_only_files_without_become(lab):
    # The login really is unprivileged: the same read as above, without become, fails everywhere.
    shadow = as_sudo_user(lab, "-m", "ansible.builtin.slurp", "-a", "src=/etc/shadow", check=False)
    assert len(shadow) == APP_HOSTS + 2
    assert all(r.get("failed") for r in shadow.values()), shadow
    assert {r["msg"] for r in shadow.values()} == {"File is not readable: /etc/shadow"}


def test_a_login_user_the_lab_does_not_make_is_refused_before_any_change(lab):
    before = docker_snapshot(lab["name"])
    refused = run_json(
        ["ansible-playbook", "playbooks/lab.yml", "-e", f"@{lab['vars_file']}", "-e", "lab_login_user=alice"],
        check=False,
    )
    assert refused["rc"] != 0
    stats = refused["stats"]["localhost"]
    assert stats["failures"] == 1 and stats["changed"] == 0
    messages = [
        outcome["msg"]
        for play in refused["plays"]
        for task in play["tasks"]
        if (outcome := task["hosts"].get("localhost", {})).get("failed")
    ]
    assert len(messages) == 1 and "lab_login_user=alice" in messages[0] and "'root'" in messages[0], messages
    assert docker_snapshot(lab["name"]) == before


def _registry_request(path: str, context: ssl.SSLContext, auth: str | None = None) -> http.client.HTTPResponse:
    host, port = REGISTRY.split(":")
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    headers = {"Authorization": f"Basic {b64encode(auth.encode()).decode()}"} if auth else {}
    conn.request("GET", path, headers=headers)
    return conn.getresponse()


def test_registry_tls_verifies_with_the_lab_ca_only(lab):
    ca = lab["state"] / "pki" / "ca.crt"
    with_lab_ca = ssl.create_default_context(cafile=str(ca))
    response = _registry_request("/v2/", with_lab_ca)
    assert response.status == 401
    assert response.getheader("WWW-Authenticate", "").startswith("Basic")
    # The system's trust store does not know the lab CA: the handshake fails.
    with pytest.raises(ssl.SSLCertVerificationError):
        _registry_request("/v2/", ssl.create_default_context())
    password = (lab["state"] / "registry_password").read_text().strip()
    assert _registry_request("/v2/", with_lab_ca, auth=f"vmfleet:{password}").status == 200
    assert _registry_request("/v2/", with_lab_ca, auth="vmfleet:wrong-password").status == 401


def _push(image: str, docker_config: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "--config", str(docker_config), "push", image],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_registry_refuses_an_unauthenticated_push(lab, tmp_path):
    image = f"{REGISTRY}/smoke/empty:1"
    # The smallest image there is: one empty layer.
    subprocess.run(f"tar -cf - -T /dev/null | docker import - {image}", shell=True, check=True, capture_output=True)
    try:
        anonymous = tmp_path / "anonymous"
        anonymous.mkdir()
        refused = _push(image, anonymous)
        assert refused.returncode != 0
        assert "no basic auth credentials" in refused.stderr or "unauthorized" in refused.stderr, refused.stderr
        # The same push with the lab's credentials succeeds, so the refusal was about auth.
        accepted = _push(image, lab["state"] / "docker-config")
        assert accepted.returncode == 0, accepted.stderr
    finally:
        subprocess.run(["docker", "rmi", image], capture_output=True, check=False)


def test_inventory_can_log_in_as_the_sudo_user(lab, tmp_path):
    # The same lab, its inventory written elsewhere with lab_login_user set to the sudo user.
    inventory = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventories" / "lab" / "group_vars", inventory / "group_vars")
    result = run_json(
        [
            "ansible-playbook", "playbooks/lab.yml", "-e", f"@{lab['vars_file']}",
            "-e", f"lab_login_user={SUDO_USER}", "-e", f"lab_inventory_dir={inventory}",
        ]
    )
    # The users are in place already: only the new inventory and the env file pointing at it change.
    changed = {name.split(" : ", 1)[-1] for name in changed_tasks(result, "localhost")}
    assert changed <= {
        "Write the lab inventory",
        "Write the lab's environment file for shell tools (make images, tests)",
    }
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    assert hosts["all"]["vars"]["ansible_user"] == SUDO_USER
    ids = per_host(run_json(["ansible", "-i", str(inventory), "all", "-m", "ansible.builtin.command", "-a", "id -un"]))
    assert {h: r["stdout"] for h, r in ids.items()} == {h: SUDO_USER for h in ids}
    assert len(ids) == APP_HOSTS + 2


def test_make_clean_restores_docker_state(lab):
    destroy_lab(lab["vars_file"])
    lab["cleaned"] = True
    assert lab_objects(lab["name"]) == {"containers": [], "networks": [], "volumes": []}
    assert docker_snapshot(lab["name"]) == lab["before"]
    assert not (lab["inventory"] / "hosts.yml").exists()
    assert not Path(f"/etc/docker/certs.d/{REGISTRY}").exists()
