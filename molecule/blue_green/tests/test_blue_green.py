"""Verify of the Molecule scenario "blue_green": blue_green.yml and rollback.yml under load.

Converge left catalog 1.0.0 in the blue slot of four app hosts behind HAProxy.
These tests deploy it with the real playbooks while two load probes (one
keep-alive, one new connection per request, each >= 100 requests/s through
HAProxy's HTTPS frontend) count every failed request. They run in file order:
each starts from the state the previous one left.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

# tests/integration is on sys.path through pyproject.toml's pytest `pythonpath`.
from fleet import (
    CA,
    HOSTS,
    INVENTORY,
    MIN_RPS,
    PORT,
    REGISTRY,
    ROOT,
    adhoc,
    ansible_env,
    assert_no_failures,
    containers,
    flat,
    ledgers,
    live_maps,
    playbook,
    probes,
    recap,
    served_versions,
    servers,
    started_after,
)

# Request-rate floors of the (keep-alive, new connection) probes: 100 each, as issue 8
# asks. (The new-connection probe was held to 85 while the strategies were slower: it
# measured 89-97 req/s while four hosts failed their health gate at once; since fewer
# steps per host, it measured 107.8-118.7 in every test of a clean-clone run.)
FLOORS = (MIN_RPS, MIN_RPS)


def blue_green(version: str, *extra: str, check: bool = True, delay: float = 3) -> subprocess.CompletedProcess:
    return playbook("blue_green.yml", "-e", "service=catalog", "-e", f"version={version}",
                    "-e", f"vmfleet_scale_down_delay={delay}", *extra, check=check)


def rollback(*extra: str, check: bool = True) -> subprocess.CompletedProcess:
    return playbook("rollback.yml", "-e", "service=catalog", *extra, check=check)


def flip_epoch(proc_stdout: str) -> float:
    """The controller's time right after the flip task returned, from the play's own report."""
    for line in proc_stdout.splitlines():
        if "vmfleet-flipped-at=" in line:
            return float(line.split("vmfleet-flipped-at=")[1].split()[0].strip("\",')"))
    raise AssertionError("the play printed no flip time:\n" + proc_stdout[-3000:])


def assert_serving(version: str, slot: str, previous: str | None = "any") -> None:
    """catalog <version> serves from <slot> everywhere: HAProxy's map, the slot's port, the ledgers."""
    active, split = live_maps()
    assert (active, split) == (f"catalog_{slot}", 0)
    assert served_versions(PORT[slot]) == dict.fromkeys(HOSTS, version)
    for host, ledger in ledgers().items():
        assert ledger["current"]["version"] == version, (host, ledger)
        assert ledger["slot"] == slot, (host, ledger)
        if previous != "any":
            assert (ledger["previous"] or {}).get("version") == previous, (host, ledger["previous"])
    state = {h: (s["status"], s["admin_state"]) for h, s in servers(f"catalog_{slot}").items()}
    assert state == dict.fromkeys(HOSTS, ("UP", "ready")), state


@pytest.fixture(autouse=True, scope="module")
def _lab_is_there():
    if not CA.exists():
        pytest.fail(f"{CA} is missing: run `molecule create -s blue_green` first")


def test_blue_green_deploy_under_load():
    with probes() as running:
        proc = blue_green("1.1.0")
    results = assert_no_failures(*running, min_rps=FLOORS)
    flipped = flip_epoch(proc.stdout)
    for probe in running:
        after = started_after(probe, flipped)
        assert after, "no request started after the flip"
        assert {r.version for r in after} == {"1.1.0"}, "an old response after the flip"
    assert {v for r in results for v in r["versions"]} == {"1.0.0", "1.1.0"}
    assert_serving("1.1.0", "green", previous="1.0.0")
    # The old slot was drained and stopped after the scale-down delay; its image stays.
    assert containers("blue") == dict.fromkeys(HOSTS, None)
    state = {h: s["admin_state"] for h, s in servers("catalog_blue").items()}
    assert state == dict.fromkeys(HOSTS, "maint"), state


def test_same_version_again_flips_and_restarts_nothing():
    before = containers("green")
    proc = blue_green("1.1.0")
    lines = recap(proc)
    assert lines and all("changed=0" in line for line in lines), lines
    assert "Nothing to do" in proc.stdout
    assert containers("green") == before
    assert_serving("1.1.0", "green")


def test_check_mode_prints_the_plan_and_changes_nothing():
    before = containers("green")
    proc = blue_green("1.3.0", "--check")
    assert "live slot green -> new slot blue" in flat(proc.stdout), proc.stdout[-3000:]
    assert "app1       catalog    1.1.0        -> 1.3.0" in proc.stdout, proc.stdout[-3000:]
    assert containers("green") == before and containers("blue") == dict.fromkeys(HOSTS, None)
    assert_serving("1.1.0", "green")


def test_group_vars_set_the_strategy_inputs(tmp_path):
    """An inventory's group_vars set vmfleet_batch; extra vars still override it."""
    inventory = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inventory)
    (inventory / "group_vars" / "app_hosts.yml").write_text("---\nvmfleet_batch: 2\n")
    argv = ["ansible-playbook", "-i", str(inventory), "playbooks/rolling.yml", "-e", "service=catalog",
            "-e", "version=1.3.0", "--check"]
    proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "batch 2," in proc.stdout and "batch 1/2" in proc.stdout and "batch 2/2" in proc.stdout, proc.stdout[-3000:]
    proc = subprocess.run([*argv, "-e", "vmfleet_batch=1"], cwd=ROOT, env=ansible_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0 and "batch 4/4" in proc.stdout, proc.stdout[-3000:]


def test_rollback_after_the_scale_down_redeploys_the_previous_release():
    with probes() as running:
        proc = rollback("-e", "vmfleet_batch=2")
    assert_no_failures(*running, min_rps=FLOORS)
    # 1.0.0 was deployed by bootstrap, in place: it is deployed again the same way, in the live slot.
    assert "deploy it again with rolling.yml" in flat(proc.stdout), proc.stdout[-3000:]
    # 1.1.0 was rolled back: history, never previous.
    assert_serving("1.0.0", "green", previous=None)
    for host, ledger in ledgers().items():
        assert ledger["history"][1]["event"] == "rolled_back", (host, ledger["history"][:2])
        assert ledger["history"][1]["version"] == "1.1.0", (host, ledger["history"][:2])


def test_rollback_while_warm_is_a_flip_back():
    argv = ["ansible-playbook", "-i", str(INVENTORY), "playbooks/blue_green.yml", "-e", "service=catalog",
            "-e", "version=1.1.0", "-e", "vmfleet_scale_down_delay=20"]
    # The deploy gives its lock back for the warm window, and the rollback takes it. The
    # window is shorter than the rollback: the scale-down wakes while the rollback flips
    # back, waits for the lock, then sees the flip back and leaves that slot running.
    with probes() as running:
        deploy = subprocess.Popen(argv, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            seen = []
            deadline = time.monotonic() + 400
            for line in deploy.stdout:
                seen.append(line)
                if "stays warm for" in line or time.monotonic() > deadline:
                    break
            assert live_maps() == ("catalog_blue", 0), "".join(seen[-50:])
            started = time.monotonic()
            proc = rollback()
            flip_back = time.monotonic() - started
            rest = deploy.communicate(timeout=300)[0]
        finally:
            if deploy.poll() is None:  # never leave a deploy running behind the next test
                os.killpg(deploy.pid, signal.SIGKILL)
                deploy.communicate()
    assert_no_failures(*running, min_rps=FLOORS)
    assert deploy.returncode == 0, rest[-3000:]
    assert "gate it and flip back" in flat(proc.stdout), proc.stdout[-3000:]
    # The deploy's scale-down saw the flip back and left the serving slot alone.
    assert "serves from the green slot again" in flat(rest), rest[-3000:]
    assert "Take the deploy lock again before the scale-down" in flat(rest), rest[-3000:]
    print(f"rollback by flip: {flip_back:.1f} s")
    assert_serving("1.0.0", "green", previous=None)
    assert containers("blue") == dict.fromkeys(HOSTS, None)


def test_bad_version_never_flips_and_is_cleaned_up():
    blue_green("1.3.0")  # a good release first, so the ledger has a previous one
    assert_serving("1.3.0", "blue", previous="1.0.0")
    with probes() as running:
        proc = blue_green("1.2.0-bad", check=False)
    assert proc.returncode != 0
    message = flat(proc.stdout)[flat(proc.stdout).index("Blue-green deployment of catalog 1.2.0-bad failed"):]
    gate = "Fail when the container's own health check does not pass: catalog-green"
    assert f'app1 failed "{gate}"' in message, message
    assert "unhealthy" in message and "The map was not flipped" in message, message
    results = assert_no_failures(*running, min_rps=FLOORS)
    assert {v for r in results for v in r["versions"]} == {"1.3.0"}
    # Live traffic untouched, the idle slot cleaned up, and the failure is history.
    assert_serving("1.3.0", "blue", previous="1.0.0")
    assert containers("green") == dict.fromkeys(HOSTS, None)
    for host, ledger in ledgers().items():
        assert ledger["history"][0]["event"] == "failed", (host, ledger["history"][0])
        assert ledger["history"][0]["version"] == "1.2.0-bad"
        assert "health" in ledger["history"][0]["reason"]


def test_rollback_after_a_failed_release_goes_to_the_last_good_one_as_a_non_root_user():
    """Also issue 8's non-root run: this rollback redeploys with rolling.yml, logged in as the
    lab's sudo user, so every play's `become` is exercised on the app hosts and the load balancer."""
    user = adhoc("app1", "ansible.builtin.command", "id -u", become=False)
    assert user["app1"]["stdout"] == "0"  # the lab's own login stays root ...
    lab_user = "vmfleet"
    check = adhoc("app1,lb1", "ansible.builtin.command", f"id -u {lab_user}")
    assert all(r.get("rc") == 0 and r["stdout"] != "0" for r in check.values()), check
    with probes() as running:
        proc = rollback("-e", f"ansible_user={lab_user}", "-e", "vmfleet_batch=2")
    assert_no_failures(*running, min_rps=FLOORS)
    assert "deploy it again with rolling.yml" in flat(proc.stdout), proc.stdout[-3000:]
    assert "batch 2/2" in proc.stdout, proc.stdout[-3000:]
    assert_serving("1.0.0", "blue")
    history = ledgers()["app1"]["history"]
    assert [(e["event"], e["version"]) for e in history[:3]] == [
        ("served", "1.0.0"), ("rolled_back", "1.3.0"), ("failed", "1.2.0-bad")], history[:3]
    # ... and this run really was unprivileged until sudo: the admin socket is root only.
    denied = subprocess.run(["ansible", "-i", str(INVENTORY), "lb1", "-e", f"ansible_user={lab_user}",
                             "-m", "ansible.builtin.command",
                             "-a", "test -r /run/haproxy/admin.sock"], cwd=ROOT, env=ansible_env(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert denied.returncode != 0, denied.stdout


def test_overlap_cutover_serves_both_versions_then_flips():
    with probes() as running:
        proc = blue_green("1.1.0", "-e", "vmfleet_cutover=overlap", "-e", "vmfleet_overlap_seconds=12")
    results = assert_no_failures(*running, min_rps=FLOORS)
    flipped = flip_epoch(proc.stdout)
    for probe in running:
        t0 = probe.result()["started_at"]
        window = [r.version for r in probe.records() if r.ok and flipped - 10 < t0 + r.start < flipped - 1]
        assert {"1.0.0", "1.1.0"} <= set(window), set(window)
        assert {r.version for r in started_after(probe, flipped)} == {"1.1.0"}
    assert {v for r in results for v in r["versions"]} == {"1.0.0", "1.1.0"}
    assert_serving("1.1.0", "green")


@pytest.mark.parametrize("action", ["reload", "restart"])
def test_haproxy_reload_and_restart_keep_the_live_slot(action):
    adhoc("loadbalancers", "vmfleet.deploy.haproxy_map", {"map": "/etc/haproxy/maps/vmfleet-split.map",
                                                          "key": "catalog", "value": "0"})
    result = adhoc("loadbalancers", "ansible.builtin.systemd_service", {"name": "haproxy", "state": f"{action}ed"})
    assert not result["lb1"].get("failed"), result
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            up = all(s["status"] == "UP" for s in servers("catalog_green").values())
            if up and live_maps() == ("catalog_green", 0):
                break
        except (KeyError, ValueError, StopIteration):
            pass
        time.sleep(0.5)
    assert_serving("1.1.0", "green")


def test_nothing_was_left_behind():
    # No image of the ledger's current or previous release was pruned: rollback needs them.
    out = adhoc("app_hosts", "ansible.builtin.command", f"docker images {REGISTRY}:5000/shop/catalog")
    releases = ledgers()
    for host, result in out.items():
        tags = {line.split()[1] for line in result["stdout"].splitlines()[1:]}
        wanted = {releases[host]["current"]["version"], releases[host]["previous"]["version"]}
        assert wanted == {"1.1.0", "1.0.0"} and wanted <= tags, (host, wanted, tags)
