"""Bad survey answers, in jobs run the way AWX runs them (ansible-runner, tests/integration/awxjob.py).

Each fails in the input check, with a message a person understands, before any change: no
task reports a change, no result artifact is published, the ledgers are as before. The
whole jobs (a rolling deploy and one that fails its gate) are in test_rolling.py.
"""

from __future__ import annotations

import itertools

import pytest
from awxjob import run_job

# tests/integration is on sys.path through pyproject.toml's pytest `pythonpath`.
from fleet import CA, ledgers

JOB_IDS = itertools.count(4250)  # AWX's job ids: one per job, one artifacts dir each


@pytest.fixture(autouse=True, scope="module")
def _lab_is_there():
    if not CA.exists():
        pytest.fail(f"{CA} is missing: run `molecule create -s rolling` first")


@pytest.mark.parametrize(("answers", "words"), [
    ({"service": "catalog", "version": "1.3.0", "vmfleet_batch": "33.3%"}, ["33.3%", "vmfleet_batch"]),
    ({"service": "", "version": "1.3.0"}, ["service is required"]),
    ({"service": "nosuch", "version": "1.3.0"}, ["nosuch", "not in vmfleet_services"]),
    ({"service": "catalog", "version": "1.3.0", "awx_job_launch_type": "workflow",
      "awx_workflow_job_name": "rolling.yml"}, ["slice", "job_slice_count"]),
], ids=["batch 33.3%", "empty service", "unknown service", "a slice of a sliced job"])
def test_bad_survey_answers_fail_in_the_input_check_before_any_change(awx_job_dir, answers, words):
    before = ledgers()
    runner, result, _written = run_job(awx_job_dir, "rolling.yml", answers, job_id=next(JOB_IDS))
    stdout = runner.stdout.read()
    assert runner.status == "failed" and runner.rc != 0, stdout[-3000:]
    assert result is None, result  # it stopped before the rollout, which would have published one
    failed = [e for e in runner.events if e["event"] == "runner_on_failed"]
    assert failed, stdout[-3000:]
    message = " ".join(" ".join(e["stdout"].split()) for e in failed)
    assert all(w in message for w in words), message
    assert not [e for e in runner.events if e["event"] == "runner_on_ok" and e["event_data"]["res"].get("changed")]
    assert ledgers() == before
