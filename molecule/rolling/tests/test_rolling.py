"""Verify of the Molecule scenario "rolling": playbooks/rolling.yml under load.

The scenario's converge left catalog 1.0.0 in blue on four app hosts behind
HAProxy. These tests roll it with the real playbook while two load probes
(one keep-alive, one new connection per request; together >= 100 req/s
through HAProxy's HTTPS frontend) count every failed request. They run in
file order: each starts from the state the previous one left.
"""

from __future__ import annotations

import json
import time

import pytest
from awxjob import run_job
from conftest import SECRET

# tests/integration is on sys.path through pyproject.toml's pytest `pythonpath`.
from fleet import (
    CA,
    HOSTS,
    REGISTRY,
    adhoc,
    assert_fleet_on,
    assert_no_failures,
    ledgers,
    probes,
    rolling,
    start_times,
)


def test_rolling_batch_1_under_load():
    with probes() as running:
        started = time.monotonic()
        proc = rolling("1.1.0", 1)
        elapsed = time.monotonic() - started
    assert_no_failures(*running)
    print(f"rollout 4 hosts batch 1: {elapsed:.1f} s")
    print("\n".join(line for line in proc.stdout.splitlines() if "batch " in line))
    assert_fleet_on("1.1.0", previous="1.0.0")


def test_same_version_again_changes_nothing():
    before = start_times()
    proc = rolling("1.1.0", 1)
    recap = [line for line in proc.stdout.splitlines() if line.startswith("app")]
    assert recap and all("changed=0" in line for line in recap), recap
    assert start_times() == before


def test_check_mode_prints_the_plan_and_changes_nothing():
    before = start_times()
    proc = rolling("1.0.0", "50%", "--check")
    assert "batch 1/2" in proc.stdout and "batch 2/2" in proc.stdout, proc.stdout[-3000:]
    assert "app1       catalog    1.1.0        -> 1.0.0" in proc.stdout
    assert start_times() == before
    assert_fleet_on("1.1.0", previous="1.0.0")


def test_rolling_batch_50_percent_as_an_awx_job_at_vvv_under_load(awx_job_dir):
    """Back to 1.0.0, two hosts at a time, as AWX runs the job (ansible-runner, survey answers in
    env/extravars, the project as AWX syncs it). The job's status, rc and vmfleet_result artifact are
    what a workflow branches on. catalog has a secret_env in this job's inventory: the containers get
    it, and at -vvv nothing the job wrote (stdout, job events) holds it."""
    with probes() as running:
        started = time.monotonic()
        runner, result, written = run_job(awx_job_dir, "rolling.yml",
                                          {"service": "catalog", "version": "1.0.0", "vmfleet_batch": "50%"},
                                          job_id=4242, verbosity=3)
        elapsed = time.monotonic() - started
    stdout = runner.stdout.read()
    assert (runner.status, runner.rc) == ("successful", 0), stdout[-5000:]
    assert_no_failures(*running)
    print(f"rollout 4 hosts batch 50% (AWX job, -vvv): {elapsed:.1f} s")
    assert "batch 2/2" in stdout, stdout[-3000:]
    assert_fleet_on("1.0.0", previous="1.1.0")
    assert result is not None, "no vmfleet_result artifact"
    assert (result["result"], result["strategy"], result["service"], result["version"], result["deploy_id"]) == (
        "succeeded", "rolling", "catalog", "1.0.0", "4242"), result
    assert sorted(result["hosts_changed"]) == HOSTS and result["failed_hosts"] == [], result
    assert 0 < result["rollout_seconds"] <= elapsed, result
    # -vvv really was verbose (module arguments in the output), and the secret is nowhere.
    assert "module_args" in written
    assert SECRET not in stdout and SECRET not in written
    inspected = adhoc("app_hosts", "ansible.builtin.command", "docker inspect catalog-blue")
    assert all(f"SHOP_API_TOKEN={SECRET}" in json.loads(r["stdout"])[0]["Config"]["Env"]
               for r in inspected.values()), "secret_env not applied"


def test_bad_version_as_an_awx_job_rolls_back_the_first_batch_and_reports_it(awx_job_dir):
    with probes() as running:
        answers = {"service": "catalog", "version": "1.2.0-bad", "vmfleet_batch": "1"}
        runner, result, _written = run_job(awx_job_dir, "rolling.yml", answers, job_id=4243)
    stdout = runner.stdout.read()
    assert runner.status == "failed" and runner.rc != 0, stdout[-3000:]
    assert "Rolling deployment of catalog 1.2.0-bad failed and was stopped: app1 failed" in stdout, stdout[-3000:]
    assert "health gate" in stdout
    assert_no_failures(*running)
    # The fleet is on 1.0.0 and the last good release before it is still previous:
    # on app1 the bad version never became current, and its failure is history.
    assert_fleet_on("1.0.0", previous="1.1.0")
    failed = ledgers()["app1"]["history"][0]
    assert (failed["event"], failed["version"]) == ("failed", "1.2.0-bad"), failed
    assert "health" in failed["reason"], failed
    results = running[0].result()["versions"] | running[1].result()["versions"]
    assert set(results) == {"1.0.0"}, results
    # What an AWX workflow branches on: the artifact names the failed host and why.
    assert result is not None and (result["result"], result["version"], result["deploy_id"]) == (
        "failed", "1.2.0-bad", "4243"), result
    assert [f["host"] for f in result["failed_hosts"]] == ["app1"], result
    assert "health" in result["failed_hosts"][0]["reason"], result
    assert (result["hosts_rolled_back"], result["hosts_changed"]) == (["app1"], []), result


@pytest.fixture(autouse=True, scope="module")
def _lab_is_there():
    if not CA.exists():
        pytest.fail(f"{CA} is missing: run `molecule create -s rolling` first")


def test_policy_all_rolls_back_every_host_this_run_changed():
    # A fault on app3 only, after the image step: app3's 1.3.0 is a broken build (the
    # tag points at 1.2.0-bad in app3's image cache, which the image step keeps, as it
    # keeps any tag already there), so app3 fails its health gate after app1 and app2
    # were already moved.
    bad = f"{REGISTRY}:5000/shop/catalog:1.2.0-bad"
    fake = adhoc("app3", "ansible.builtin.shell",
                 f"docker pull -q {bad} && docker tag {bad} {REGISTRY}:5000/shop/catalog:1.3.0")["app3"]
    assert fake.get("rc") == 0, fake
    try:
        with probes() as running:
            proc = rolling("1.3.0", 1, "-e", "vmfleet_rollback=all", check=False)
    finally:
        adhoc("app3", "ansible.builtin.command", f"docker rmi {REGISTRY}:5000/shop/catalog:1.3.0")
    assert proc.returncode != 0
    assert "app3 failed" in proc.stdout and "policy all" in proc.stdout, proc.stdout[-3000:]
    assert_no_failures(*running)
    # app1 and app2 had reached 1.3.0; all four are back on 1.0.0, and 1.3.0,
    # rolled back, is history and never previous.
    assert_fleet_on("1.0.0", previous="1.1.0")
    current = ledgers()
    for host in ("app1", "app2"):
        rolled = [e for e in current[host]["history"] if e["event"] == "rolled_back"]
        assert rolled and rolled[0]["version"] == "1.3.0", current[host]["history"][:3]
    assert current["app3"]["history"][0]["event"] == "failed"
    assert not [e for e in current["app4"]["history"] if e.get("version") == "1.3.0"]  # app4 was never touched
