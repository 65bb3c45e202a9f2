"""Tests for vmfleet.deploy.haproxy_stats against a real HAProxy (haproxy_lab)."""

from __future__ import annotations

from haproxy_fixture import haproxy_lab_fixture

from ansible_collections.vmfleet.deploy.plugins.modules import haproxy_stats

# The real-HAProxy fixture (tests/unit/haproxy_fixture.py), found by pytest under this name.
haproxy_lab = haproxy_lab_fixture


def test_counters_per_backend_and_per_server(haproxy_lab, run_module):
    lab = haproxy_lab
    for _request in range(10):
        assert lab.get()[0] == 200
    lab.cli("set server svc_blue/blue2 state drain")
    result = run_module(haproxy_stats, {"socket": lab.socket})
    assert not result.failed, result
    assert result["changed"] is False
    backends = result["backends"]
    assert set(backends) == {"svc_blue", "svc_green"}  # frontends are not backends
    blue = backends["svc_blue"]
    assert blue["req_tot"] == 10 and blue["hrsp_2xx"] == 10 and blue["hrsp_5xx"] == 0
    assert blue["status"] == "UP" and blue["mode"] == "http"
    assert blue["weight"] == 1  # blue2 is drained: only usable servers count
    assert set(blue["servers"]) == {"blue1", "blue2"}
    blue1, blue2 = blue["servers"]["blue1"], blue["servers"]["blue2"]
    # on HAProxy 2.6 in HTTP mode every counter exists per server as well
    for server in (blue1, blue2):
        for counter in haproxy_stats.COUNTERS[1:]:  # all but status
            assert isinstance(server[counter], int), (counter, server)
    assert blue1["req_tot"] + blue2["req_tot"] == 10
    assert blue1["hrsp_2xx"] == blue1["req_tot"] == 5
    assert blue1["status"] == "UP" and blue1["admin_state"] == "ready" and blue1["check_status"] == "L7OK"
    assert blue2["status"] == "DRAIN" and blue2["admin_state"] == "drain"
    assert blue2["weight"] == 1  # HAProxy keeps showing the weight of a drained server
    assert backends["svc_green"]["req_tot"] == 0


def test_backend_filter_and_unknown_backend(haproxy_lab, run_module):
    lab = haproxy_lab
    result = run_module(haproxy_stats, {"socket": lab.socket, "backends": ["svc_green"]})
    assert list(result["backends"]) == ["svc_green"]
    assert set(result["backends"]["svc_green"]["servers"]) == {"green1", "green2"}

    result = run_module(haproxy_stats, {"socket": lab.socket, "backends": ["svc_green", "nope", "fe_svc"]})
    assert result.failed
    assert result["msg"] == "HAProxy has no backend 'nope', 'fe_svc' (its backends: svc_blue, svc_green)"


def test_check_mode_user_level_socket_and_tcp(haproxy_lab, run_module):
    lab = haproxy_lab
    normal = run_module(haproxy_stats, {"socket": lab.socket})
    checked = run_module(haproxy_stats, {"socket": lab.user_socket}, check_mode=True)
    assert checked["changed"] is False
    assert set(checked["backends"]) == set(normal["backends"])
    assert checked["backends"]["svc_blue"]["servers"]["blue1"]["admin_state"] == "ready"
    tcp = run_module(haproxy_stats, {"socket": lab.tcp_socket, "backends": ["svc_blue"]})
    assert tcp["backends"]["svc_blue"]["status"] == "UP"


def test_maint_and_down_servers(haproxy_lab, run_module):
    lab = haproxy_lab
    lab.cli("set server svc_green/green1 state maint")
    lab.apps["green2"].stop()
    lab.wait_status("svc_green", "green2", "DOWN")
    green = run_module(haproxy_stats, {"socket": lab.socket, "backends": ["svc_green"]})["backends"]["svc_green"]
    assert green["status"] == "DOWN" and green["weight"] == 0
    assert green["servers"]["green1"]["status"] == "MAINT" and green["servers"]["green1"]["admin_state"] == "maint"
    assert green["servers"]["green2"]["status"] == "DOWN" and green["servers"]["green2"]["admin_state"] == "ready"
    assert green["servers"]["green2"]["check_status"] == "L4CON"


def test_unreachable_socket(run_module, tmp_path):
    result = run_module(haproxy_stats, {"socket": str(tmp_path / "none.sock")})
    assert result.failed and result["msg"].startswith("cannot reach HAProxy runtime API at ")
