"""Tests for vmfleet.deploy.haproxy_server against a real HAProxy (haproxy_lab)."""

from __future__ import annotations

import threading
import time

import pytest
from haproxy_fixture import FrontendLoad, haproxy_lab_fixture, wait_for

from ansible_collections.vmfleet.deploy.plugins.modules import haproxy_server

# The real-HAProxy fixture (tests/unit/haproxy_fixture.py), found by pytest under this name.
haproxy_lab = haproxy_lab_fixture


def args(lab, **extra):
    params = {"socket": lab.socket, "backend": "svc_blue", "server": "blue1", "wait_interval": 0.05}
    params.update(extra)
    return params


def test_drain_under_load_has_no_failed_request(haproxy_lab, run_module, capsys):
    lab = haproxy_lab
    with FrontendLoad(lab.port, threads=4, rate=100, max_requests=2000, seconds=15) as probe:
        probe.wait_requests(40)
        # one request in flight on blue1 for 1.2 s: the drain must wait for it
        held = lab.hold_session("blue1", 1.2)
        wait_for(lambda: lab.stats()[("svc_blue", "blue1")]["scur"] != "0", 3, 0.02, "a session on blue1")
        started = time.monotonic()
        result = run_module(haproxy_server, args(lab, state="drain", drain_timeout=10))
        drained_at = time.monotonic()
        time.sleep(1.0)  # traffic keeps flowing after the drain
    held.join(5)

    assert not result.failed, result
    assert result["changed"] is True
    assert result["before"]["admin_state"] == "ready" and result["before"]["scur"] >= 1
    assert result["after"] == {
        "status": "DRAIN",
        "admin_state": "drain",
        "weight": 1,
        "scur": 0,
        "check_status": "L7OK",
    }
    # it waited for the held session, within its bounds
    assert 0.5 < result["elapsed"] < 5, result["elapsed"]
    assert drained_at - started >= 0.5
    assert held.result["answer"] == (200, "blue1")
    # zero failed requests while ~30+ requests per second flowed
    assert probe.failures == [], probe.failures[:5]
    assert probe.rps >= 30, probe.rps
    # no new request reached blue1 after the drain
    assert set(probe.answers_after(drained_at)) == {"blue2"}
    stats = lab.stats()[("svc_blue", "blue1")]
    assert stats["status"] == "DRAIN" and stats["scur"] == "0"
    with capsys.disabled():
        print(
            "\n[drain] %d requests at %.0f rps, %d failed; drain waited %.2f s"
            % (probe.total, probe.rps, len(probe.failures), result["elapsed"])
        )

    # idempotent
    again = run_module(haproxy_server, args(lab, state="drain"))
    assert again["changed"] is False and again["after"]["admin_state"] == "drain"

    # back to ready: waits until HAProxy reports UP
    ready = run_module(haproxy_server, args(lab, state="ready", wait_timeout=5))
    assert ready["changed"] is True and ready["after"]["status"] == "UP" and ready["after"]["admin_state"] == "ready"


def test_drain_timeout_fails_with_session_count(haproxy_lab, run_module):
    lab = haproxy_lab
    held = lab.hold_session("blue1", 1.5)
    wait_for(lambda: lab.stats()[("svc_blue", "blue1")]["scur"] != "0", 3, 0.02, "a session on blue1")
    started = time.monotonic()
    result = run_module(haproxy_server, args(lab, state="drain", drain_timeout=0.3))
    assert time.monotonic() - started < 1.5
    held.join(5)
    assert result.failed
    assert result["msg"] == "HAProxy server svc_blue/blue1 still has 1 sessions after 0.3 s drain"
    assert result["after"]["admin_state"] == "drain"  # left draining, reported
    assert held.result["answer"] == (200, "blue1")


def test_maint_on_down_server_returns_within_2s(haproxy_lab, run_module, capsys):
    lab = haproxy_lab
    lab.apps["blue2"].stop()
    lab.wait_status("svc_blue", "blue2", "DOWN", timeout=5)
    started = time.monotonic()
    result = run_module(haproxy_server, args(lab, server="blue2", state="maint", drain_timeout=30))
    took = time.monotonic() - started
    assert not result.failed, result
    assert took < 2.0, took
    assert result["changed"] is True
    assert result["before"]["status"] == "DOWN" and result["after"]["status"] == "MAINT"
    assert "was DOWN, set to maint without draining" in result["msg"]
    with capsys.disabled():
        print("\n[maint on DOWN] returned in %.3f s" % took)


def test_drain_on_down_server_goes_straight_to_maint(haproxy_lab, run_module):
    lab = haproxy_lab
    lab.apps["green1"].stop()
    lab.wait_status("svc_green", "green1", "DOWN", timeout=5)
    started = time.monotonic()
    result = run_module(haproxy_server, args(lab, backend="svc_green", server="green1", state="drain"))
    took = time.monotonic() - started
    assert not result.failed, result
    assert took < 2.0, took
    assert result["state"] == "maint" and result["after"]["admin_state"] == "maint"
    assert result["elapsed"] == 0
    assert lab.status("svc_green", "green1") == "MAINT"
    # running it again changes nothing
    again = run_module(haproxy_server, args(lab, backend="svc_green", server="green1", state="drain"))
    assert again["changed"] is False


def test_maint_on_up_server_drains_first(haproxy_lab, run_module):
    lab = haproxy_lab
    held = lab.hold_session("blue1", 0.8)
    wait_for(lambda: lab.stats()[("svc_blue", "blue1")]["scur"] != "0", 3, 0.02, "a session on blue1")
    result = run_module(haproxy_server, args(lab, state="maint", drain_timeout=5))
    held.join(5)
    assert not result.failed, result
    assert result["after"]["status"] == "MAINT" and result["after"]["scur"] == 0
    assert result["elapsed"] > 0.3
    assert held.result["answer"] == (200, "blue1")


def test_drain_leaves_a_maint_server_in_maint(haproxy_lab, run_module):
    lab = haproxy_lab
    assert run_module(haproxy_server, args(lab, state="maint", drain_timeout=0))["after"]["status"] == "MAINT"
    predicted = run_module(haproxy_server, args(lab, state="drain"), check_mode=True)
    assert predicted["changed"] is False and predicted["after"]["status"] == "MAINT"
    result = run_module(haproxy_server, args(lab, state="drain"))
    assert result["changed"] is False and result["state"] == "maint" and result["after"]["admin_state"] == "maint"
    assert "left in maint" in result["msg"]
    assert lab.status("svc_blue", "blue1") == "MAINT"


def test_ready_waits_for_up_and_fails_when_down(haproxy_lab, run_module):
    lab = haproxy_lab
    assert not run_module(haproxy_server, args(lab, state="maint", drain_timeout=0)).failed
    lab.apps["blue1"].stop()
    started = time.monotonic()
    result = run_module(haproxy_server, args(lab, state="ready", wait_timeout=1))
    assert time.monotonic() - started < 2.5
    assert result.failed
    assert result["msg"].startswith("HAProxy server svc_blue/blue1 is not UP after 1 s (status: DOWN")
    assert "L4CON" in result["msg"]
    lab.apps["blue1"].start()
    result = run_module(haproxy_server, args(lab, state="ready", wait_timeout=5))
    assert not result.failed and result["after"]["status"] == "UP"
    assert result["changed"] is False  # it was already ready; the module only waited


def test_weight_set_and_read_back(haproxy_lab, run_module):
    from ansible_collections.vmfleet.deploy.plugins.modules import haproxy_stats

    lab = haproxy_lab
    result = run_module(haproxy_server, args(lab, weight=5))
    assert result["changed"] is True
    assert result["before"]["weight"] == 1 and result["after"]["weight"] == 5
    stats = run_module(haproxy_stats, {"socket": lab.socket, "backends": ["svc_blue"]})
    assert stats["backends"]["svc_blue"]["servers"]["blue1"]["weight"] == 5
    assert stats["backends"]["svc_blue"]["weight"] == 6
    assert lab.cli("get weight svc_blue/blue1").startswith("5 (initial 1)")
    assert run_module(haproxy_server, args(lab, weight=5))["changed"] is False
    # weight with state in one call; weight 0 keeps the server UP
    both = run_module(haproxy_server, args(lab, server="blue2", state="ready", weight=0))
    assert both["changed"] is True and both["after"]["weight"] == 0 and both["after"]["status"] == "UP"


@pytest.mark.parametrize("weight", [300, -1])
def test_weight_out_of_range_names_the_option(haproxy_lab, run_module, weight):
    result = run_module(haproxy_server, args(haproxy_lab, weight=weight))
    assert result.failed
    assert result["msg"] == "weight must be between 0 and 256, got %d" % weight
    assert haproxy_lab.cli("get weight svc_blue/blue1").startswith("1 (initial 1)")


def test_unknown_backend_and_server(haproxy_lab, run_module):
    result = run_module(haproxy_server, args(haproxy_lab, backend="nope", state="drain"))
    assert result.failed and result["msg"] == "HAProxy has no backend 'nope'"
    result = run_module(haproxy_server, args(haproxy_lab, server="app3", state="drain"))
    assert result.failed
    assert result["msg"] == "HAProxy backend 'svc_blue' has no server 'app3' (its servers: blue1, blue2)"


def test_unreachable_socket_fails_quickly(run_module, tmp_path):
    path = str(tmp_path / "admin.sock")
    started = time.monotonic()
    result = run_module(haproxy_server, {"socket": path, "backend": "svc_blue", "server": "blue1", "state": "drain"})
    assert time.monotonic() - started < 1.0
    assert result.failed
    assert result["msg"] == "cannot reach HAProxy runtime API at %s: No such file or directory" % path


def test_state_or_weight_is_required(run_module):
    result = run_module(haproxy_server, {"backend": "svc_blue", "server": "blue1"})
    assert result.failed and "one of the following is required: state, weight" in result["msg"]


def test_check_mode_and_diff_change_nothing(haproxy_lab, run_module):
    lab = haproxy_lab
    result = run_module(haproxy_server, args(lab, state="drain", weight=9), check_mode=True, diff=True)
    assert not result.failed, result
    assert result["changed"] is True
    assert result["after"]["admin_state"] == "drain" and result["after"]["status"] == "DRAIN"
    assert result["after"]["weight"] == 9
    assert result["diff"]["before"]["admin_state"] == "ready" and result["diff"]["before"]["weight"] == 1
    assert result["diff"]["after"]["admin_state"] == "drain" and result["diff"]["after"]["weight"] == 9
    assert result["diff"]["before_header"] == "svc_blue/blue1 (before)"
    # nothing changed in HAProxy
    assert lab.status("svc_blue", "blue1") == "UP"
    assert lab.cli("get weight svc_blue/blue1").startswith("1 (initial 1)")
    # check mode on a server already in the state: no change predicted
    run_module(haproxy_server, args(lab, server="blue2", state="maint", drain_timeout=0))
    same = run_module(haproxy_server, args(lab, server="blue2", state="maint"), check_mode=True, diff=True)
    assert same["changed"] is False and same["diff"]["before"] == same["diff"]["after"]
    # check mode predicts ready -> UP from maint
    back = run_module(haproxy_server, args(lab, server="blue2", state="ready"), check_mode=True)
    assert back["changed"] is True and back["after"]["status"] == "UP" and lab.status("svc_blue", "blue2") == "MAINT"


# ---------------------------------------------------------------- restarts of HAProxy (issue 11, item 5)
def test_a_drain_saved_to_the_state_file_survives_a_restart(haproxy_lab, run_module):
    lab = haproxy_lab
    result = run_module(haproxy_server, args(lab, state="drain", state_file=str(lab.state_file)))
    assert not result.failed and result["changed"], result
    saved = lab.state_file.read_text()
    assert saved.startswith("1\n") and " blue1 " in saved
    assert oct(lab.state_file.stat().st_mode & 0o777) == "0o600"
    lab.restart()
    assert lab.status("svc_blue", "blue1") == "DRAIN"
    answers = {lab.get()[1] for _request in range(10)}
    assert answers == {"blue2"}, answers


def test_without_the_state_file_a_restart_undoes_the_drain(haproxy_lab, run_module):
    # The control for the test above: the restart really resets what the runtime API set.
    lab = haproxy_lab
    lab.save_state()  # the state before the drain, as a reload long ago left it
    result = run_module(haproxy_server, args(lab, state="drain"))
    assert not result.failed and result["changed"], result
    lab.restart()
    wait_for(lambda: lab.status("svc_blue", "blue1") == "UP", 5, what="blue1 UP after the restart")


def test_a_restart_while_it_drains_is_noticed_and_the_drain_set_again(haproxy_lab, run_module):
    lab = haproxy_lab
    lab.save_state()  # blue1 ready: what HAProxy loads when it restarts before the module saves
    held = lab.hold_session("blue1", 3.0)
    wait_for(lambda: lab.stats()[("svc_blue", "blue1")]["scur"] != "0", 3, 0.02, "a session on blue1")

    def restart_soon():
        time.sleep(0.5)
        lab.restart()

    # The module saves to another file, so the restart loads the state from before the drain.
    restarter = threading.Thread(target=restart_soon, daemon=True)
    restarter.start()
    result = run_module(haproxy_server, args(lab, state="drain", drain_timeout=10,
                                             state_file=str(lab.tmp / "elsewhere-state")))
    restarter.join(15)
    held.join(15)

    assert not result.failed, result
    assert "HAProxy lost the state drain of server svc_blue/blue1" in result["msg"], result
    assert result["after"]["admin_state"] == "drain" and result["after"]["scur"] == 0
    assert lab.status("svc_blue", "blue1") == "DRAIN"  # in the new HAProxy
    assert held.result["answer"][0] != 200  # the restart cut the held request: it did not drain, it was reset


def test_a_runtime_api_that_stays_away_fails_the_wait_with_its_connection_error(haproxy_lab, run_module):
    lab = haproxy_lab
    held = lab.hold_session("blue1", 3.0)
    wait_for(lambda: lab.stats()[("svc_blue", "blue1")]["scur"] != "0", 3, 0.02, "a session on blue1")
    threading.Timer(0.3, lab._stop_haproxy).start()
    started = time.monotonic()
    result = run_module(haproxy_server, args(lab, state="drain", drain_timeout=1.5))
    held.join(15)
    assert result.failed
    assert "cannot reach HAProxy runtime API" in result["msg"], result["msg"]
    assert 1.4 < time.monotonic() - started < 5  # it kept asking until the drain's deadline, not longer
