"""The rolling strategy's logic, run for real with no Docker: batches, max-fail, rollback policies, the report.

The real playbooks/rolling.yml (and rollback.yml) run through ansible-runner, as AWX runs them, on the stub
fleet of stubfleet.py: every host is the local machine with an address of its own on the loopback network;
the container engine is a set of test-only community.docker stand-ins put first on ANSIBLE_COLLECTIONS_PATH
(scriptable per host: a pull that fails, a container that never gets healthy ...); the containers' HTTP
health is served by real HTTP servers from the stubs' state.

HAProxy is the real one, with the haproxy role's own config (as tests/unit/haproxy_fixture.py's
``haproxy_role_lab``): it costs about 0.1 s per test to start, and a stubbed runtime socket would have to
re-implement what the strategy relies on (drain, MAINT, ready, the checks that make a server UP or DOWN,
``set map``) and could agree with the playbooks where HAProxy does not. So the drain, the wait until UP and
the maps are exercised against HAProxy itself; only the engine is a stub.

What the tests read: Ansible's own batches (one ``playbook_on_play_start`` event per batch of the serial
play), the stubs' log of replaced containers, the release ledgers, HAProxy's server states, the deploy lock
file, the ``vmfleet_result`` artifact and the printed timeline and failure message.
"""

from __future__ import annotations

import json

import pytest
import yaml
from playjob import ROOT, debug_msg, failure_text
from stubfleet import UNREACHABLE, Fleet, Ports, collections_path, render, wait_all_up

ROLLING = ROOT / "playbooks" / "rolling.yml"
ROLLBACK = ROOT / "playbooks" / "rollback.yml"
APPS4 = ["app1", "app2", "app3", "app4"]


@pytest.fixture(scope="module")
def rendered():
    ports = Ports()
    return ports, render(ports)


@pytest.fixture
def fleet(job, tmp_path, rendered, monkeypatch, request):
    """``fleet(hosts=..., seed=...)``: the stub fleet, started; ``fleet.run(playbook, extravars)`` runs a job on it."""
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", collections_path())
    # Modules run on the local connection without a temporary directory each (3 processes fewer per task).
    monkeypatch.setenv("ANSIBLE_PIPELINING", "true")
    started = []

    def make(hosts=tuple(APPS4), seed=("1.0.0",), lb_unreachable=False, **group_vars):
        ports, text = rendered
        stub = Fleet(tmp_path, text, ports, list(hosts))
        stub.seed(seed)
        inventory = stub.inventory(lb_unreachable=lb_unreachable, **group_vars)
        (tmp_path / "inventory" / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        started.append(stub.start())
        wait_all_up(stub.lb, stub.reachable)
        stub.run = job
        return stub

    yield make
    for stub in started:
        stub.stop()


# ------------------------------------------------------------------ reading a run
def batches(runner, play="Roll out in batches") -> list[list[str]]:
    """The hosts of each batch of the serial play, as Ansible ran them (a ``playbook_on_play_start`` per batch)."""
    out, current = [], None
    for event in runner.events:
        data = event.get("event_data", {})
        if event["event"] == "playbook_on_play_start":
            current = set() if data.get("play") == play else None
            if current is not None:
                out.append(current)
        elif current is not None and event["event"].startswith("runner_on_") and data.get("host"):
            current.add(data["host"])
    return [sorted(b) for b in out]


def timeline(runner) -> list[str]:
    return debug_msg(runner, "Print the per-batch timeline")


def timeline_batches(runner) -> list[tuple[str, str]]:
    """(hosts, what) of each batch line of the timeline: ("app1, app2", "2 replaced") or (..., "not run")."""
    out = []
    for line in timeline(runner):
        if line.startswith("  batch "):
            hosts, rest = line.split(": ", 1)[1].split("  ", 1)
            out.append((hosts, "not run" if rest.strip() == "not run" else rest.split("(")[-1].rstrip(")")))
    return out


def lock_file(stub):
    path = stub.lock_dir / "catalog.lock"
    return json.loads(path.read_text()) if path.exists() else None


def events_of(stub, host):
    return [(e["event"], e["version"]) for e in stub.ledger(host)["history"]]


def current(stub, host):
    return stub.ledger(host)["current"]["version"]


def deploy(stub, **extravars):
    return stub.run(ROLLING, dict({"service": "catalog", "version": "1.1.0"}, **extravars))


# ------------------------------------------------------------------------- tests
def test_a_rollout_in_25_percent_batches_changes_every_host_one_by_one_and_reports_it(fleet):
    # 25% of 3 hosts is less than one: Ansible's serial makes it 1, and the plan must agree.
    stub = fleet(hosts=APPS4[:3])
    runner, result = deploy(stub, vmfleet_batch="25%")
    assert runner.status == "successful" and runner.rc == 0, failure_text(runner)
    assert batches(runner) == [["app1"], ["app2"], ["app3"]]
    assert stub.replaced() == [("app1", "1.1.0"), ("app2", "1.1.0"), ("app3", "1.1.0")]
    for host in APPS4[:3]:
        assert stub.version(host) == "1.1.0" and current(stub, host) == "1.1.0"
        assert stub.ledger(host)["previous"]["version"] == "1.0.0"
    assert stub.lb.statuses() | {} == {"app1": "UP", "app2": "UP", "app3": "UP", "app4": "DOWN", "app5": "DOWN",
                                       "app9": "DOWN"}
    assert {h: s for h, s in stub.lb.admin_states().items() if h in APPS4[:3]} == dict.fromkeys(APPS4[:3], 0)
    assert result["result"] == "succeeded" and result["strategy"] == "rolling" and result["version"] == "1.1.0"
    assert (result["hosts_changed"], result["hosts_rolled_back"], result["failed_hosts"]) == (APPS4[:3], [], [])
    assert timeline_batches(runner) == [("app1", "1 replaced"), ("app2", "1 replaced"), ("app3", "1 replaced")]
    assert lock_file(stub) is None


def test_under_max_fail_percentage_the_failed_host_goes_back_and_the_rollout_continues(fleet):
    stub = fleet()
    stub.script("app2", unhealthy=["1.1.0"])
    runner, result = deploy(stub, vmfleet_batch="50%", vmfleet_max_fail_percentage=50)
    message = failure_text(runner)
    assert runner.status == "failed" and runner.rc != 0
    assert batches(runner) == [["app1", "app2"], ["app3", "app4"]]
    assert [stub.version(h) for h in APPS4] == ["1.1.0", "1.0.0", "1.1.0", "1.1.0"]
    assert events_of(stub, "app2")[:2] == [("failed", "1.1.0"), ("served", "1.0.0")]  # 1.1.0 never served
    assert current(stub, "app2") == "1.0.0" and stub.lb.statuses()["app2"] == "UP"
    assert result["result"] == "failed"
    assert (result["hosts_changed"], result["hosts_rolled_back"]) == (["app1", "app3", "app4"], ["app2"])
    [failed] = result["failed_hosts"]
    assert failed["host"] == "app2", failed
    assert failed["reason"].startswith("Gate on HTTP health from the load balancer"), failed
    assert "app2 failed" in message and "and was stopped" not in message, message
    # app2 counts as replaced in its batch too: its rollback replaced its container again.
    assert timeline_batches(runner) == [("app1, app2", "2 replaced"), ("app3, app4", "2 replaced")]
    assert lock_file(stub) is None


def test_over_max_fail_percentage_the_batch_goes_back_and_later_batches_never_run(fleet):
    stub = fleet(hosts=APPS4[:3])
    stub.script("app1", start_fails=["1.1.0"])
    runner, result = deploy(stub, vmfleet_batch=2)
    message = failure_text(runner)
    assert runner.status == "failed" and runner.rc != 0
    assert batches(runner) == [["app1", "app2"]]  # the second batch's play never started
    assert stub.replaced() == [("app2", "1.1.0"), ("app2", "1.0.0")]  # app1's start failed: its 1.0.0 runs on
    # app3 got the image before the first drain (every host does), and nothing else.
    assert [c["action"] for c in stub.calls() if c["host"] == "app3"] == ["pulled"]
    assert [stub.version(h) for h in APPS4[:3]] == ["1.0.0"] * 3
    assert events_of(stub, "app1")[0] == ("failed", "1.1.0") and current(stub, "app1") == "1.0.0"
    assert events_of(stub, "app2")[:2] == [("served", "1.0.0"), ("rolled_back", "1.1.0")]
    assert events_of(stub, "app3") == [("served", "1.0.0")]
    assert {h: stub.lb.statuses()[h] for h in APPS4[:3]} == dict.fromkeys(APPS4[:3], "UP")
    assert result["result"] == "failed" and result["hosts_changed"] == []
    assert result["hosts_rolled_back"] == ["app1", "app2"]
    assert [f["host"] for f in result["failed_hosts"]] == ["app1"]
    assert "port is already allocated" in result["failed_hosts"][0]["reason"]
    assert "failed and was stopped" in message and "policy batch" in message, message
    assert timeline_batches(runner)[1] == ("app3", "not run")
    assert lock_file(stub) is None


def test_rollback_all_also_puts_back_the_earlier_batches(fleet):
    stub = fleet(hosts=APPS4[:3])
    stub.script("app3", exits=["1.1.0"])
    runner, result = deploy(stub, vmfleet_batch=1, vmfleet_rollback="all")
    assert runner.status == "failed" and runner.rc != 0
    assert batches(runner) == [["app1"], ["app2"], ["app3"]]
    replaced = stub.replaced()
    assert replaced[:4] == [("app1", "1.1.0"), ("app2", "1.1.0"), ("app3", "1.1.0"), ("app3", "1.0.0")]
    assert sorted(replaced[4:]) == [("app1", "1.0.0"), ("app2", "1.0.0")]
    assert [stub.version(h) for h in APPS4[:3]] == ["1.0.0"] * 3
    assert all(current(stub, h) == "1.0.0" for h in APPS4[:3])
    assert result["hosts_changed"] == [] and result["hosts_rolled_back"] == APPS4[:3]
    [failed] = result["failed_hosts"]
    assert failed["host"] == "app3" and "not running (exit code 1)" in failed["reason"], failed
    assert lock_file(stub) is None


def test_rollback_none_leaves_the_failed_host_out_of_rotation_and_the_rest_on_the_release(fleet):
    stub = fleet()
    stub.script("app2", unhealthy=["1.1.0"])
    runner, result = deploy(stub, vmfleet_batch="100%", vmfleet_rollback="none")
    message = failure_text(runner)
    assert runner.status == "failed" and runner.rc != 0
    assert batches(runner) == [APPS4]
    assert sorted(stub.replaced()) == [(h, "1.1.0") for h in APPS4]  # nothing went back
    assert stub.lb.admin_states()["app2"] & 1 == 1  # MAINT
    assert {h: stub.lb.statuses()[h] for h in ("app1", "app3", "app4")} == dict.fromkeys(("app1", "app3", "app4"), "UP")
    assert events_of(stub, "app2")[0] == ("failed", "1.1.0") and current(stub, "app2") == "1.0.0"
    assert result["hosts_changed"] == ["app1", "app3", "app4"] and result["hosts_rolled_back"] == []
    assert [f["host"] for f in result["failed_hosts"]] == ["app2"]
    assert "Failed hosts are left in MAINT (policy none)" in message, message
    assert lock_file(stub) is None


def test_rollback_playbook_redeploys_the_previous_release_with_the_rolling_strategy(fleet):
    stub = fleet(hosts=APPS4[:3], seed=("1.0.0", "1.1.0"), vmfleet_batch="100%")
    runner, result = stub.run(ROLLBACK, {"service": "catalog"})
    assert runner.status == "successful", failure_text(runner)
    assert debug_msg(runner, "Show the plan").startswith("Rollback of catalog to 1.0.0 on app1, app2, app3")
    assert batches(runner) == [APPS4[:3]]
    assert sorted(stub.replaced()) == [(h, "1.0.0") for h in APPS4[:3]]
    for host in APPS4[:3]:
        assert current(stub, host) == "1.0.0"
        assert events_of(stub, host)[:2] == [("served", "1.0.0"), ("rolled_back", "1.1.0")]
    assert result["strategy"] == "rollback" and result["result"] == "succeeded" and result["version"] == "1.0.0"
    assert result["hosts_changed"] == APPS4[:3]
    assert lock_file(stub) is None


def test_bad_input_fails_before_any_change(fleet):
    stub = fleet(hosts=APPS4[:2])
    runner, result = deploy(stub, vmfleet_rollback="sometimes")
    message = failure_text(runner)
    assert runner.status == "failed" and "vmfleet_rollback" in message and "sometimes" in message, message
    assert stub.calls() == [] and result is None and lock_file(stub) is None
    assert not (stub.lock_dir.exists() and list(stub.lock_dir.iterdir()))


# ------------------------------------------------------ unreachable and failed hosts
def test_an_unreachable_host_alone_in_its_batch_stops_the_rollout_with_a_report(fleet):
    stub = fleet(hosts=["app1", UNREACHABLE, "app2"])
    runner, result = deploy(stub, vmfleet_batch=1)
    message = failure_text(runner)
    assert runner.status == "failed" and runner.rc != 0
    assert "(unreachable: counts as a failed host of its batch)" in " ".join(debug_msg(runner, "Show the plan"))
    assert batches(runner) == [["app1"], [UNREACHABLE]]  # app2's batch never ran
    assert stub.replaced() == [("app1", "1.1.0")] and stub.version("app2") == "1.0.0"
    assert stub.version("app1") == "1.1.0"  # policy batch: the earlier batch stays
    assert result["result"] == "failed" and result["hosts_changed"] == ["app1"] and result["hosts_rolled_back"] == []
    [failed] = result["failed_hosts"]
    assert failed["host"] == UNREACHABLE and failed["unreachable"] is True and failed["outcome"] == "untouched"
    assert "Connection refused" in failed["reason"], failed
    assert f"{UNREACHABLE} was unreachable" in message and "(untouched)" in message, message
    lines = timeline(runner)
    assert any(line.startswith(f"  {UNREACHABLE} unreachable: Reach the host: ") and line.endswith("-> untouched")
               for line in lines), lines
    assert timeline_batches(runner)[2] == ("app2", "not run")
    assert lock_file(stub) is None


def test_an_unreachable_host_under_max_fail_percentage_lets_the_ramp_go_on(fleet):
    stub = fleet(hosts=["app1", "app2", UNREACHABLE, "app3"])
    runner, result = deploy(stub, vmfleet_batch=[1, "50%"], vmfleet_max_fail_percentage=50)
    assert runner.status == "failed" and runner.rc != 0
    assert batches(runner) == [["app1"], ["app2", UNREACHABLE], ["app3"]]
    assert sorted(stub.replaced()) == [("app1", "1.1.0"), ("app2", "1.1.0"), ("app3", "1.1.0")]
    assert result["hosts_changed"] == ["app1", "app2", "app3"]
    assert [(f["host"], f["unreachable"], f["outcome"]) for f in result["failed_hosts"]] == [
        (UNREACHABLE, True, "untouched")]
    assert timeline_batches(runner) == [("app1", "1 replaced"), (f"app2, {UNREACHABLE}", "1 replaced"),
                                        ("app3", "1 replaced")]
    assert lock_file(stub) is None


def test_a_failing_rollback_is_reported_and_leaves_the_host_out_of_rotation(fleet):
    stub = fleet(hosts=APPS4[:2])
    stub.script("app2", unhealthy=["1.1.0"], start_fails=["1.0.0"])
    runner, result = deploy(stub, vmfleet_batch="100%")
    message = failure_text(runner)
    assert runner.status == "failed" and runner.rc != 0
    assert stub.version("app1") == "1.0.0" and current(stub, "app1") == "1.0.0"  # the batch went back
    assert stub.lb.admin_states()["app2"] & 1 == 1 and stub.lb.statuses()["app1"] == "UP"  # app2 in MAINT
    assert result["hosts_rolled_back"] == ["app1"] and result["hosts_changed"] == []
    [failed] = result["failed_hosts"]
    assert failed["host"] == "app2" and failed["unreachable"] is False
    assert failed["outcome"].startswith("rollback failed (") and "port is already allocated" in failed["outcome"]
    assert failed["outcome"].endswith("left out of rotation (MAINT)"), failed
    assert "app2 failed" in message and "rollback failed" in message and "MAINT" in message, message
    assert lock_file(stub) is None


def test_an_unreachable_load_balancer_stops_rollback_yml_with_a_clear_message(fleet):
    stub = fleet(hosts=APPS4[:2], seed=("1.0.0", "1.1.0"), lb_unreachable=True)
    runner, result = stub.run(ROLLBACK, {"service": "catalog"})
    message = failure_text(runner)
    assert runner.status == "failed" and runner.rc != 0
    assert "The first load balancer, lb1, could not be reached to take the deploy lock of catalog" in message, message
    assert "Nothing was changed" in message and "__vmfleet_rollback" not in message, message
    assert stub.calls() == [] and result is None and lock_file(stub) is None
