"""The deploy lock as the strategies take it, with no lab (every host is the local machine).

Each strategy takes the lock of its services on the first load balancer before it reads
anything, and gives it back when it stops. Here the strategies stop at their first read of
HAProxy (there is none), which is after the lock: so a free lock is taken and given back, and
a held one stops the run before that read.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from playjob import ROOT, debug_msg, failure_text, ran

from ansible_collections.vmfleet.deploy.plugins.module_utils import deploy_lock

STRATEGIES = {
    "rolling.yml": {"service": "catalog", "version": "1.2.0"},
    "blue_green.yml": {"service": "catalog", "version": "1.2.0"},
    "canary.yml": {"service": "catalog", "version": "1.2.0"},
    "rollback.yml": {"service": "catalog"},
}
FIRST_READ = "Read the active and split maps on every load balancer"


def hold(lock_dir, service="catalog", now=None, ttl=600):
    """A lock of another run: alice's AWX job 41, rolling 1.1.0."""
    return deploy_lock.acquire(str(lock_dir), service, token="alice-token", ttl=ttl, owner="alice@ctl", job_id="41",
                               strategy="rolling", version="1.1.0", now=now)


def lock_file(lock_dir, service="catalog"):
    path = lock_dir / f"{service}.lock"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.mark.parametrize("playbook", sorted(STRATEGIES))
def test_a_held_lock_stops_the_strategy_before_it_reads_anything(job, lock_dir, playbook):
    before = hold(lock_dir)["lock"]
    runner, result = job(ROOT / "playbooks" / playbook, STRATEGIES[playbook])
    message = failure_text(runner)
    assert runner.status == "failed", message
    assert "catalog is locked by alice@ctl (AWX job 41, rolling 1.1.0) since " + before["acquired_at"] in message
    assert "Nothing was changed" in message and "lock_action=force_release" in message, message
    assert not ran(runner, FIRST_READ)
    assert result is None
    assert lock_file(lock_dir) == before  # the holder's lock, untouched


@pytest.mark.parametrize("playbook", sorted(STRATEGIES))
def test_a_run_that_stops_after_taking_the_lock_gives_it_back(job, lock_dir, playbook):
    runner, _result = job(ROOT / "playbooks" / playbook, dict(STRATEGIES[playbook], awx_job_id=77))
    message = failure_text(runner)
    assert runner.status == "failed", message
    taken = ran(runner, "Take the deploy lock of each service on the first load balancer")
    assert taken, message
    assert "no-haproxy.sock" in message, message  # it stopped at its first read of HAProxy
    assert ran(runner, "Give back the deploy lock of each service")
    assert lock_file(lock_dir) is None
    # The lock recorded the run while it held it.
    take = "Take the deploy lock of each service on the first load balancer: catalog"
    took = next(e for e in runner.events if e["event"] == "runner_on_ok" and e["event_data"]["task"].endswith(take))
    lock = took["event_data"]["res"]["results"][0]["lock"]
    assert (lock["job_id"], lock["version"], lock["ttl"]) == ("77", STRATEGIES[playbook].get("version", ""), 1800)
    assert lock["strategy"] == {"rolling.yml": "rolling", "blue_green.yml": "blue_green", "canary.yml": "canary",
                                "rollback.yml": "rollback"}[playbook]


def test_a_conflict_on_the_second_service_gives_back_the_first(job, lock_dir):
    hold(lock_dir, "cart")
    runner, _result = job(ROOT / "playbooks" / "rolling.yml", {"service": "catalog,cart", "version": "1.2.0"})
    message = failure_text(runner)
    assert "cart is locked by alice@ctl" in message, message
    assert lock_file(lock_dir, "catalog") is None
    assert lock_file(lock_dir, "cart")["token"] == "alice-token"


def test_an_expired_lock_is_taken_over(job, lock_dir):
    hold(lock_dir, now=time.time() - 1000, ttl=60)
    runner, _result = job(ROOT / "playbooks" / "rolling.yml", STRATEGIES["rolling.yml"])
    message = failure_text(runner)
    assert "is locked by" not in message and "no-haproxy.sock" in message, message
    assert lock_file(lock_dir) is None


def test_check_mode_takes_no_lock(job, lock_dir):
    hold(lock_dir)
    runner, _result = job(ROOT / "playbooks" / "rolling.yml", STRATEGIES["rolling.yml"], cmdline="--check")
    assert "is locked by" not in failure_text(runner) and not ran(runner, "Take the deploy lock of each service")


def test_the_lock_playbook_shows_releases_and_force_releases(job, lock_dir):
    runner, _result = job(ROOT / "playbooks" / "lock.yml", {"service": "catalog,cart"})
    assert runner.status == "successful"
    assert debug_msg(runner, "Show the locks") == ["catalog: free", "cart: free"] and lock_file(lock_dir) is None

    held = hold(lock_dir)["lock"]
    runner, _result = job(ROOT / "playbooks" / "lock.yml", {"service": "catalog"})
    [shown] = debug_msg(runner, "Show the locks")
    assert shown.startswith(f"catalog: locked by alice@ctl, AWX job 41, rolling 1.1.0, since {held['acquired_at']}, "
                            f"expires {held['expires_at']} (in ") and shown.endswith(" s), token alice-token"), shown

    runner, _result = job(ROOT / "playbooks" / "lock.yml", {"service": "catalog", "lock_action": "release"})
    assert runner.status == "failed" and "needs the token of the holder" in failure_text(runner)
    runner, _result = job(ROOT / "playbooks" / "lock.yml",
                          {"service": "catalog", "lock_action": "release", "lock_token": "bob-token"})
    assert runner.status == "failed" and "catalog is locked by alice@ctl" in failure_text(runner)
    assert lock_file(lock_dir) == held
    runner, _result = job(ROOT / "playbooks" / "lock.yml",
                          {"service": "catalog", "lock_action": "release", "lock_token": "alice-token"})
    assert runner.status == "successful" and lock_file(lock_dir) is None

    hold(lock_dir)
    runner, _result = job(ROOT / "playbooks" / "lock.yml", {"service": "catalog", "lock_action": "force_release"})
    assert runner.status == "successful" and lock_file(lock_dir) is None


def test_traffic_lock_wait_waits_while_another_run_holds_the_lock(job, lock_dir, tmp_path):
    # The blue-green scale-down takes the lock again with a wait: here the holder's lock runs
    # out after 3 s, and the wait of 20 s gets it then (a release would do the same).
    playbook = tmp_path / "wait.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Take the lock, waiting", "hosts": "app_hosts", "gather_facts": False,
        "roles": [{"role": "vmfleet.deploy.traffic"}],
        "tasks": [{"name": "Take it", "ansible.builtin.include_role": {
            "name": "vmfleet.deploy.traffic", "tasks_from": "lock", "rolespec_validate": False},
            "vars": {"traffic_lock_wait": 20, "traffic_strategy": "blue_green"}}],
    }]))
    hold(lock_dir, ttl=3)
    started = time.monotonic()
    runner, _result = job(playbook, {"service": "catalog", "version": "1.2.0"})
    assert runner.status == "successful", failure_text(runner)
    assert time.monotonic() - started >= 2.0
    assert lock_file(lock_dir)["strategy"] == "blue_green"
