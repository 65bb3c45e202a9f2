"""The strategies' job interface, with no lab: the result artifact and the checks before any change.

Runs the real playbooks and task files through ansible-runner (as AWX runs a job) on an
inventory whose hosts are all the local machine; only steps that change nothing are reached.
The lab tests (molecule/rolling/tests/test_runner.py) run whole jobs against the fleet.
"""

from __future__ import annotations

import yaml
from playjob import ROOT, failure_text


def test_result_artifact_carries_what_a_workflow_branches_on(job, tmp_path):
    playbook = tmp_path / "result.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "A strategy's last play, with one failed host",
        "hosts": "app_hosts",
        "gather_facts": False,
        "tasks": [
            {"name": "The facts a strategy leaves on localhost",
             "ansible.builtin.set_fact": {
                 "__vmfleet_started": "{{ now(utc=true).timestamp() - 42.5 }}",
                 "__vmfleet_failures": [{"host": "app2", "task": "Gate on HTTP health", "msg": " got 500 "}]},
             "delegate_to": "localhost", "delegate_facts": True, "run_once": True},
            {"name": "Publish", "ansible.builtin.include_tasks": str(ROOT / "playbooks" / "tasks" / "result.yml"),
             "vars": {"__vmfleet_result_default": "rolling", "__vmfleet_result_service": "catalog",
                      "__vmfleet_result_changed": ["app1"], "__vmfleet_result_rolled_back": ["app2"]}},
        ],
    }]))
    runner, result = job(playbook, {"version": "1.1.0", "awx_job_id": 77, "vmfleet_deploy_id": "{{ awx_job_id }}"})
    assert runner.status == "successful", runner.stdout.read()[-3000:]
    assert result == {
        "result": "failed", "strategy": "rolling", "service": "catalog", "version": "1.1.0",
        "hosts": ["app1", "app2"], "hosts_changed": ["app1"], "hosts_rolled_back": ["app2"],
        "failed_hosts": [{"host": "app2", "reason": "Gate on HTTP health: got 500"}],
        "rollout_seconds": result["rollout_seconds"], "started": result["started"], "deploy_id": "77",
    }
    assert 42.5 <= result["rollout_seconds"] < 100, result
    assert result["started"].endswith("Z"), result


def test_a_slice_of_a_sliced_awx_job_stops_before_any_change(job):
    runner, result = job(ROOT / "playbooks" / "rolling.yml", {
        "service": "catalog", "version": "1.1.0", "awx_job_id": 9, "awx_job_launch_type": "workflow",
        "awx_job_template_name": "Deploy (rolling)", "awx_workflow_job_name": "Deploy (rolling)"})
    assert runner.status == "failed" and runner.rc != 0
    message = failure_text(runner)
    assert "one slice of a sliced AWX job" in message and "job_slice_count to 1" in message, message
    assert result is None
    assert not [e for e in runner.events if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("changed")]


def test_a_workflow_node_of_another_name_is_not_a_slice(job):
    # The same job run by a workflow of its own (not a slice) passes that check; on this
    # inventory it then stops at the first step that needs HAProxy, which is not a slice error.
    runner, _result = job(ROOT / "playbooks" / "rolling.yml", {
        "service": "nosuch", "version": "1.1.0", "awx_job_launch_type": "workflow",
        "awx_job_template_name": "Deploy (rolling)", "awx_workflow_job_name": "Release train"})
    message = failure_text(runner)
    assert "slice" not in message and "nosuch are not in vmfleet_services" in message, message
