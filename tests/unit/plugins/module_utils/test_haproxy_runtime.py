"""Tests for plugins/module_utils/haproxy_runtime.py.

Parsers are checked on output recorded from HAProxy 2.6.12 (below); the client
itself against a real HAProxy that ``haproxy_lab`` starts (tests/unit/haproxy_fixture.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from haproxy_fixture import haproxy_lab_fixture

from ansible_collections.vmfleet.deploy.plugins.module_utils import haproxy_runtime as rt
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import (
    HAProxyConnectionError,
    HAProxyNotFoundError,
    HAProxyRuntime,
    HAProxyRuntimeError,
)

# The real-HAProxy fixture (tests/unit/haproxy_fixture.py), found by pytest under this name.
haproxy_lab = haproxy_lab_fixture

# ---------------------------------------------------------------------------
# Recorded from HAProxy 2.6.12 (Debian 12): backend svc_blue in HTTP mode with
# a: UP, weight 5; b: DRAIN; c: DOWN (connection refused); d: MAINT, no check;
# and a TCP-mode proxy tcpx (no request or HTTP response counters).
# ---------------------------------------------------------------------------
SHOW_STAT = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,s"
    "tatus,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,"
    "type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hr"
    "sp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp"
    "_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_cod"
    "e,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,"
    "agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,c"
    "onnect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,"
    "eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_serve"
    "r_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,"
    "h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors"
    ",h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backe"
    "nd_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_stream"
    "s,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_"
    "bytes_out,\n"
    "fe,FRONTEND,,,0,1,9983,6,492,894,0,0,0,,,,,OPEN,,,,,,,,,1,2,0,,,,0,2,0,3,,,,0,4,0,0,2,0,,2,3,6,,"
    ",0,0,0,0,,,,,,,,,,,,,,,,,,,,,http,,2,3,6,0,0,0,0,,,0,0,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0"
    ",0,0,0,0,0,0,6,6,474,876,0,0,\n"
    "svc_blue,a,0,0,0,1,,2,164,230,,0,,0,0,0,0,UP,5,1,0,1,1,7,0,,1,3,1,,2,,2,1,,1,L7OK,200,0,0,2,0,0,"
    "0,0,,,,2,0,0,,,,,0,,,0,0,0,0,,,,Layer7 check passed,,1,2,2,,,,127.0.0.1:18101,,http,,,,,,,,0,2,0"
    ",,,2,,0,0,0,0,0,2,0,0,1,5,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "svc_blue,b,0,0,0,1,,2,164,230,,0,,0,0,0,0,DRAIN,1,1,0,1,1,0,0,,1,3,2,,2,,2,1,,1,L7OK,200,0,0,2,0"
    ",0,0,0,,,,2,0,0,,,,,0,,,0,0,0,0,,,,Layer7 check passed,,1,2,2,,,,127.0.0.1:18102,,http,,,,,,,,0,"
    "2,0,,,2,,0,0,0,0,0,2,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "svc_blue,c,0,0,0,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,7,7,,1,3,3,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,"
    ",,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,1,2,0,,,,127.0.0.1:181"
    "03,,http,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "svc_blue,d,0,0,0,1,,8,164,434,,0,,2,0,6,0,MAINT,1,1,0,,,0,,,1,3,4,,2,,2,1,,2,,,,0,0,0,0,0,0,,,,0"
    ",0,0,,,,,0,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:18104,,http,,,,,,,,0,8,0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-"
    ",0,0,0,,,,,,,,,,,,,,,,,,,,,,\n"
    "svc_blue,BACKEND,0,0,0,1,1,6,492,894,0,0,,2,0,6,0,UP,5,1,0,,0,8,0,,1,3,0,,6,,1,2,,3,,,,0,4,0,0,2"
    ",0,,,,6,0,0,0,0,0,0,0,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,12,0,0,0,,,0,0,0,0,0,,,,,5,"
    "0,0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,4,0,126,126,8711,2166,0,0,\n"
    "tcpx,FRONTEND,,,0,0,9983,0,0,0,0,0,0,,,,,OPEN,,,,,,,,,1,4,0,,,,0,0,0,0,,,,,,,,,,,0,0,0,,,0,0,0,0"
    ",,,,,,,,,,,,,,,,,,,,,tcp,,0,0,0,,0,0,0,,,,,,,,,,,0,,,,,,,,,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0"
    ",0,0,0,0,0,0,\n"
    "tcpx,t,0,0,0,0,,0,0,0,,0,,0,0,0,0,no check,1,1,0,,,8,,,1,4,1,,0,,2,0,,0,,,,,,,,,,,,,,0,0,,,,,-1,"
    ",,0,0,0,0,,,,,,,,,,,,127.0.0.1:18101,,tcp,,,,,,,,0,0,0,,,0,,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,"
    ",,,,,,,,,,,,,,,,\n"
    "tcpx,BACKEND,0,0,0,0,999,0,0,0,0,0,,0,0,0,0,UP,1,1,0,,0,8,0,,1,4,0,,0,,1,0,,0,,,,,,,,,,,,,,0,0,0"
    ",0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,tcp,roundrobin,,,,,,,0,0,0,,,,,0,0,0,0,0,,,,,1,0,0,0,-,0,0,0,0,"
    "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,\n"
    "\n"
)

SHOW_SERVERS_STATE = (
    "1\n"
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight sr"
    "v_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_"
    "agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_por"
    "t srv_check_addr srv_agent_addr srv_agent_port\n"
    "3 svc_blue 1 a 127.0.0.1 2 0 5 1 7 15 3 2 6 0 0 0 - 18101 - 0 0 - - 0\n"
    "3 svc_blue 2 b 127.0.0.1 2 8 1 1 0 15 3 2 6 0 0 0 - 18102 - 0 0 - - 0\n"
    "3 svc_blue 3 c 127.0.0.1 0 0 1 1 7 8 2 0 6 0 0 0 - 18103 - 0 0 - - 0\n"
    "3 svc_blue 4 d 127.0.0.1 0 1 1 1 0 1 0 0 0 0 0 0 - 18104 - 0 0 - - 0\n"
    "4 tcpx 1 t 127.0.0.1 2 0 1 1 8 1 0 2 0 0 0 0 - 18101 - 0 0 - - 0\n"
    "\n"
)

SHOW_MAP = "0x55e2517d39f0 active svc_blue\n0x55e2517d3a80 other value with spaces\n\n"

SHOW_MAP_LIST = (
    "# id (file) description\n"
    "2 (/etc/haproxy/maps/backend.map) pattern loaded from file '/etc/haproxy/maps/backend.map' used "
    "by map at file 'cfg' line 11. curr_ver=0 next_ver=0 entry_cnt=2\n"
    "\n"
)


# ------------------------------------------------------------------ parsers
def test_parse_show_stat_real_output():
    rows = rt.parse_show_stat(SHOW_STAT)
    by_name = {(r["pxname"], r["svname"]): r for r in rows}
    assert len(rows) == 9
    a = by_name[("svc_blue", "a")]
    assert a["status"] == "UP" and a["weight"] == 5 and a["uweight"] == 5
    assert a["req_tot"] == 2 and a["hrsp_2xx"] == 2 and a["hrsp_5xx"] == 0 and a["scur"] == 0
    assert a["check_status"] == "L7OK" and a["check_code"] == 200
    assert a["addr"] == "127.0.0.1:18101"
    assert by_name[("svc_blue", "b")]["status"] == "DRAIN"
    c = by_name[("svc_blue", "c")]
    assert c["status"] == "DOWN" and c["check_status"] == "L4CON" and c["last_chk"] == "Connection refused"
    assert by_name[("svc_blue", "d")]["status"] == "MAINT"
    backend = by_name[("svc_blue", "BACKEND")]
    assert backend["req_tot"] == 6 and backend["hrsp_2xx"] == 4 and backend["hrsp_5xx"] == 2
    assert backend["weight"] == 5 and backend["algo"] == "roundrobin"
    # TCP mode: no request / HTTP response counters (empty -> None), rtime exists
    tcp = by_name[("tcpx", "t")]
    assert tcp["status"] == "no check" and tcp["mode"] == "tcp"
    assert tcp["req_tot"] is None and tcp["hrsp_2xx"] is None and tcp["rtime"] == 0
    assert "-" not in a and "" not in a


def test_parse_show_stat_rejects_error_text():
    with pytest.raises(HAProxyRuntimeError, match="unexpected answer to 'show stat': No such proxy"):
        rt.parse_show_stat("No such proxy.\n")


def test_parse_servers_state_real_output():
    rows = rt.parse_servers_state(SHOW_SERVERS_STATE)
    assert [r["srv_name"] for r in rows] == ["a", "b", "c", "d", "t"]
    a, b, c, d, _t = rows
    assert a["be_name"] == "svc_blue" and a["be_id"] == 3 and a["srv_uweight"] == 5 and a["srv_iweight"] == 1
    assert a["srv_fqdn"] is None and a["srv_port"] == 18101
    assert [rt.admin_state_name(r["srv_admin_state"]) for r in rows] == ["ready", "drain", "ready", "maint", "ready"]
    assert c["srv_op_state"] == 0 and a["srv_op_state"] == 2
    assert d["srv_check_state"] == 0 and b["srv_check_state"] == 6


def test_parse_servers_state_needs_version_1():
    with pytest.raises(HAProxyRuntimeError, match="format version 1"):
        rt.parse_servers_state("Can't find backend.\n")


def test_parse_map_entries_and_list_real_output():
    assert rt.parse_map_entries(SHOW_MAP) == [
        {"id": "0x55e2517d39f0", "key": "active", "value": "svc_blue"},
        {"id": "0x55e2517d3a80", "key": "other", "value": "value with spaces"},
    ]
    maps = rt.parse_map_list(SHOW_MAP_LIST)
    assert maps == [
        {
            "id": 2,
            "file": "/etc/haproxy/maps/backend.map",
            "description": maps[0]["description"],
        }
    ]
    assert maps[0]["description"].endswith("entry_cnt=2")
    assert rt.parse_map_list("# id (file) description\n\n") == []
    with pytest.raises(HAProxyRuntimeError):
        rt.parse_map_entries("Unknown map identifier. Please use #<id> or <file>.\n")


def test_merge_server_view():
    stat = {(r["pxname"], r["svname"]): r for r in rt.parse_show_stat(SHOW_STAT)}
    state = {r["srv_name"]: r for r in rt.parse_servers_state(SHOW_SERVERS_STATE)}
    b = rt.merge_server(stat[("svc_blue", "b")], state["b"])
    assert b["admin_state"] == "drain" and b["status"] == "DRAIN" and b["checks_enabled"] is True
    d = rt.merge_server(stat[("svc_blue", "d")], state["d"])
    assert d["admin_state"] == "maint" and d["checks_enabled"] is False
    c = rt.merge_server(stat[("svc_blue", "c")], state["c"])
    assert rt.is_down(c) and not rt.is_up(c) and c["operational_state"] == "stopped"
    assert rt.is_up({"status": "no check"}) and not rt.is_up({"status": "UP 1/2"})


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("No such backend.\n", "No such backend."),
        ("No such server.\n", "No such server."),
        ("Require 'backend/server'.\n", "Require 'backend/server'."),
        ("Permission denied\n", "Permission denied"),
        ("Unknown command, but maybe one of the following ones is a better match:\n  help\n", "Unknown command"),
        (
            "'set map' expects three parameters: map identifier, key and value.\n",
            "'set map' expects three parameters: map identifier, key and value.",
        ),
        ("Absolute weight can only be between 0 and 256 inclusive.\n", "Absolute weight can only be"),
        ("", None),
        ("0x55e2517d39f0 active svc_blue\n", None),
        ("1 (initial 1)\n", None),
    ],
)
def test_error_in_answer(answer, expected):
    found = rt.error_in_answer(answer)
    if expected is None:
        assert found is None
    else:
        assert found.startswith(expected)


@pytest.mark.parametrize(
    "address, family, sockaddr",
    [
        ("/run/haproxy/admin.sock", socket.AF_UNIX, "/run/haproxy/admin.sock"),
        ("unix:///run/haproxy/admin.sock", socket.AF_UNIX, "/run/haproxy/admin.sock"),
        ("tcp://127.0.0.1:9999", socket.AF_INET, ("127.0.0.1", 9999)),
        ("127.0.0.1:9999", socket.AF_INET, ("127.0.0.1", 9999)),
        ("tcp://[::1]:9999", socket.AF_INET6, ("::1", 9999)),
        ("relative.sock", socket.AF_UNIX, "relative.sock"),
    ],
)
def test_parse_address(address, family, sockaddr):
    assert rt.parse_address(address)[:2] == (family, sockaddr)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1", "tcp://127.0.0.1:99999", "", "tcp://:80"])
def test_parse_address_invalid(address):
    with pytest.raises(HAProxyConnectionError):
        rt.parse_address(address)


def test_escape_and_checks():
    assert rt.escape_arg("va;l ue") == "va\\;l\\ ue"
    assert rt.escape_arg("a\\b") == "a\\\\b"
    with pytest.raises(HAProxyRuntimeError, match="newline"):
        rt.escape_arg("a\nshow stat")
    with pytest.raises(HAProxyRuntimeError, match="weight must be between 0 and 256, got 300"):
        rt.check_weight(300)
    with pytest.raises(HAProxyRuntimeError, match="weight must be an integer"):
        rt.check_weight("ten")
    assert rt.check_weight(0) == 0 and rt.check_weight(256) == 256
    with pytest.raises(HAProxyRuntimeError, match="invalid HAProxy backend name"):
        rt.check_name("backend", "svc_blue/x")
    with pytest.raises(HAProxyRuntimeError, match="timeout must be a positive"):
        HAProxyRuntime("/x.sock", timeout=0)


def test_wait_until_is_bounded():
    calls = []

    def fetch():
        calls.append(time.monotonic())
        return len(calls)

    ok, value, elapsed = rt.wait_until(fetch, lambda v: v >= 3, timeout=5, interval=0.01)
    assert ok and value == 3 and elapsed < 1
    calls.clear()
    started = time.monotonic()
    ok, value, elapsed = rt.wait_until(fetch, lambda v: False, timeout=0.3, interval=0.05)
    assert not ok and 0.25 <= elapsed < 1.0 and time.monotonic() - started < 1.0
    assert 3 <= len(calls) <= 10


def test_wait_until_asks_again_after_a_tolerated_error_until_its_deadline():
    answers = iter([rt.HAProxyConnectionError("away"), rt.HAProxyConnectionError("away"), 7])

    def fetch():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    ok, value, _elapsed = rt.wait_until(fetch, lambda v: v == 7, timeout=5, interval=0.01,
                                        tolerate=(rt.HAProxyConnectionError,))
    assert ok and value == 7

    def away():
        raise rt.HAProxyConnectionError("cannot reach HAProxy runtime API at /x.sock: No such file or directory")

    started = time.monotonic()
    with pytest.raises(rt.HAProxyConnectionError, match="No such file"):
        rt.wait_until(away, lambda v: True, timeout=0.3, interval=0.05, tolerate=(rt.HAProxyConnectionError,))
    assert 0.25 <= time.monotonic() - started < 1.0
    with pytest.raises(rt.HAProxyConnectionError):  # not tolerated: the first error ends it
        rt.wait_until(away, lambda v: True, timeout=5, interval=0.05)


# ------------------------------------------------------- against real HAProxy
def test_live_show_stat_and_servers_state(haproxy_lab):
    client = HAProxyRuntime(haproxy_lab.socket)
    rows = client.show_stat()
    names = {(r["pxname"], r["svname"]) for r in rows}
    assert {("fe_svc", "FRONTEND"), ("svc_blue", "blue1"), ("svc_green", "BACKEND")} <= names
    blue = client.show_stat("svc_blue")
    assert {r["svname"] for r in blue} == {"blue1", "blue2", "BACKEND"}
    state = client.show_servers_state("svc_green")
    assert [r["srv_name"] for r in state] == ["green1", "green2"]
    view = client.server("svc_blue", "blue1")
    assert view["status"] == "UP" and view["admin_state"] == "ready" and view["weight"] == 1
    assert view["check_status"] == "L7OK" and view["scur"] == 0


def test_live_tcp_socket(haproxy_lab):
    client = HAProxyRuntime(haproxy_lab.tcp_socket)
    assert client.server("svc_green", "green2")["status"] == "UP"


def test_live_several_commands_in_one_connection(haproxy_lab):
    client = HAProxyRuntime(haproxy_lab.socket)

    def cum_conns(text):
        return int(next(line for line in text.splitlines() if line.startswith("CumConns:")).split(":")[1])

    answers = client.execute(
        ["show info", "set server svc_blue/blue1 weight 7", "get weight svc_blue/blue1", "show map", "show info"]
    )
    assert len(answers) == 5
    assert answers[1] == ""
    assert answers[2].startswith("7 (initial 1)")
    assert answers[3].startswith("# id (file) description")
    # the same connection: HAProxy counted no new connection between the two
    assert cum_conns(answers[0]) == cum_conns(answers[4])
    # and answers are split at the prompt, not mixed
    assert "Name: HAProxy" in answers[0] and "# pxname" not in answers[0]


def test_live_server_state_and_weight(haproxy_lab):
    client = HAProxyRuntime(haproxy_lab.socket)
    client.set_server_state("svc_blue", "blue2", "drain")
    client.set_weight("svc_blue", "blue2", 42)
    view = client.server("svc_blue", "blue2")
    assert view["admin_state"] == "drain" and view["status"] == "DRAIN" and view["weight"] == 42
    client.set_server_state("svc_blue", "blue2", "maint")
    assert client.server("svc_blue", "blue2")["status"] == "MAINT"
    client.set_server_state("svc_blue", "blue2", "ready")
    ok, view, _elapsed = client.wait_server("svc_blue", "blue2", rt.is_up, timeout=5, interval=0.05)
    assert ok, view


def test_live_maps(haproxy_lab):
    client = HAProxyRuntime(haproxy_lab.socket)
    path = str(haproxy_lab.map_file)
    maps = client.show_maps()
    assert [m["file"] for m in maps] == [path]
    assert client.resolve_map_file("#%d" % maps[0]["id"]) == path
    assert client.get_map_value(path, "active") == "svc_blue"
    assert client.get_map_value(path, "other") == "value with spaces"
    assert client.get_map_value(path, "missing") is None
    # existing key -> set map
    assert client.set_map(path, "active", "svc_green") is True
    assert client.set_map(path, "active", "svc_green") is False
    assert haproxy_lab.map_value("active") == "svc_green"
    assert haproxy_lab.get()[1].startswith("green")
    # new key -> add map, values with blanks and ';' are escaped
    assert client.set_map("#%d" % maps[0]["id"], "new", "a value; with blanks") is True
    assert client.get_map_value(path, "new") == "a value; with blanks"
    assert len(client.show_map(path)) == 3
    assert client.del_map(path, "new") is True
    assert client.del_map(path, "new") is False
    assert client.get_map_value(path, "new") is None


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda c: c.server("nope", "blue1"), "HAProxy has no backend 'nope'"),
        (
            lambda c: c.server("svc_blue", "zz"),
            "HAProxy backend 'svc_blue' has no server 'zz' (its servers: blue1, blue2)",
        ),
        (
            lambda c: c.set_server_state("nope", "blue1", "drain"),
            "HAProxy runtime API command 'set server nope/blue1 state drain' failed: No such backend.",
        ),
        (
            lambda c: c.set_server_state("svc_blue", "zz", "maint"),
            "HAProxy runtime API command 'set server svc_blue/zz state maint' failed: No such server.",
        ),
        (
            lambda c: c.command("set server svc_blue state drain"),
            "command 'set server svc_blue state drain' failed: Require 'backend/server'.",
        ),
        (lambda c: c.command("frobnicate"), "command 'frobnicate' failed: Unknown command"),
        (lambda c: c.command("set map #999 a b"), "failed: Unknown map identifier"),
        (lambda c: c.command("set map #-1"), "'set map' expects three parameters"),
        (lambda c: c.command("set weight svc_blue/blue1 300"), "Absolute weight can only be between 0 and 256"),
        (lambda c: c.show_map("/etc/nope.map"), "command 'show map /etc/nope.map' failed: Unknown map identifier"),
    ],
)
def test_live_errors_name_the_command(haproxy_lab, call, message):
    with pytest.raises(HAProxyRuntimeError) as info:
        call(HAProxyRuntime(haproxy_lab.socket))
    assert message in str(info.value)


def test_live_unknown_names_are_not_found_errors(haproxy_lab):
    client = HAProxyRuntime(haproxy_lab.socket)
    with pytest.raises(HAProxyNotFoundError):
        client.server("nope", "blue1")
    with pytest.raises(HAProxyNotFoundError):
        client.set_server_state("svc_blue", "zz", "drain")


def test_live_permission_denied_on_user_socket(haproxy_lab):
    client = HAProxyRuntime(haproxy_lab.user_socket)
    assert client.server("svc_blue", "blue1")["status"] == "UP"  # reading is allowed
    with pytest.raises(HAProxyRuntimeError) as info:
        client.set_server_state("svc_blue", "blue1", "drain")
    assert str(info.value) == (
        "HAProxy runtime API command 'set server svc_blue/blue1 state drain' failed: Permission denied"
        " (the runtime API socket needs 'level admin' for this command)"
    )


def test_missing_socket_file_fails_fast(tmp_path):
    path = str(tmp_path / "missing.sock")
    started = time.monotonic()
    with pytest.raises(HAProxyConnectionError) as info:
        HAProxyRuntime(path, timeout=2).show_stat()
    assert str(info.value) == "cannot reach HAProxy runtime API at %s: No such file or directory" % path
    assert time.monotonic() - started < 0.5


def test_refused_tcp_port_fails_fast():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        started = time.monotonic()
        with pytest.raises(HAProxyConnectionError) as info:
            HAProxyRuntime("tcp://127.0.0.1:%d" % port, timeout=2).show_stat()
    assert str(info.value) == "cannot reach HAProxy runtime API at tcp://127.0.0.1:%d: Connection refused" % port
    assert time.monotonic() - started < 0.5


def test_not_a_socket_fails_clearly(tmp_path):
    path = tmp_path / "plain-file"
    path.write_text("")
    with pytest.raises(HAProxyConnectionError, match="cannot reach HAProxy runtime API at .*plain-file: "):
        HAProxyRuntime(str(path)).show_stat()


# test_socket_permission_denied needs an unprivileged caller: root is never
# refused by file modes, and CI runs as root. There the client runs as nobody.
_AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
# argv: the client's file (haproxy_runtime.py, stdlib only), an open socket, a locked socket.
# Exit 77: this user cannot load the client or reach the sockets' directory at all.
_CONNECT_TO_LOCKED_SOCKET = """
import importlib.util, socket, sys
spec = importlib.util.spec_from_file_location("haproxy_runtime", sys.argv[1])
rt = importlib.util.module_from_spec(spec)
try:
    spec.loader.exec_module(rt)
    control = socket.socket(socket.AF_UNIX)
    control.connect(sys.argv[2])  # beside the locked one, mode 0777: only the mode can refuse
    control.close()
except OSError as exc:
    print("cannot load the client or reach the socket directory: %s" % exc)
    sys.exit(77)
try:
    rt.HAProxyRuntime(sys.argv[3], timeout=2).show_stat()
except rt.HAProxyConnectionError as exc:
    print(exc)
else:
    sys.exit("no error from a socket with mode 0")
"""


def test_socket_permission_denied():
    prefix = list(_AS_NOBODY) if os.geteuid() == 0 else []
    if prefix and not shutil.which(prefix[0]):
        pytest.skip("running as root without setpriv (util-linux): no way to connect as an unprivileged user")
    started = subprocess.run(prefix + [sys.executable, "-c", "pass"], capture_output=True, text=True, timeout=30,
                             check=False)
    if started.returncode != 0:
        pytest.skip("Python cannot start as an unprivileged user here: %s" % started.stderr.strip())
    # Not tmp_path: pytest's base directory is mode 0700, closed to nobody.
    directory = tempfile.mkdtemp(prefix="vmfleet-test-")
    os.chmod(directory, 0o755)
    paths = {mode: os.path.join(directory, "%s.sock" % name) for mode, name in ((0o777, "open"), (0, "locked"))}
    servers = []
    try:
        for mode, path in paths.items():
            server = socket.socket(socket.AF_UNIX)
            servers.append(server)
            server.bind(path)
            server.listen(1)
            os.chmod(path, mode)
        argv = [sys.executable, "-c", _CONNECT_TO_LOCKED_SOCKET, rt.__file__, paths[0o777], paths[0]]
        child = subprocess.run(prefix + argv, capture_output=True, text=True, timeout=30, check=False)
        if child.returncode == 77:
            pytest.skip(child.stdout.strip())
        assert child.returncode == 0, child.stdout + child.stderr
        assert child.stdout.strip() == "cannot reach HAProxy runtime API at %s: Permission denied" % paths[0]
    finally:
        for server in servers:
            server.close()
        shutil.rmtree(directory)


def test_silent_server_times_out(tmp_path):
    """A socket that accepts and never answers: bounded by ``timeout``."""
    path = str(tmp_path / "silent.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(HAProxyConnectionError, match="did not answer 'prompt' within 0.3 s"):
            HAProxyRuntime(path, timeout=0.3).show_stat()
        assert time.monotonic() - started < 1.5
    finally:
        thread.join(2)
        for conn, _address in accepted:
            conn.close()
        server.close()


# ------------------------------------------------ several maps, map files
def test_map_file_parse_and_render():
    text = "# comment\n\n  a   one\r\nb two words  \n#c three\nd\na again\n"
    assert rt.MapFile.parse(text) == [("a", "one"), ("b", "two words"), ("d", ""), ("a", "again")]
    mapfile = rt.MapFile("/nonexistent/x.map")
    assert mapfile.exists is False and mapfile.text == "" and mapfile.entries() == []
    assert mapfile.value("a", text) == "one"
    rendered = mapfile.render("a", "1", text)
    assert rendered == "# comment\n\n  a   1\r\nb two words  \n#c three\nd\na 1\n"
    assert mapfile.render("a", None, text) == "# comment\n\nb two words  \n#c three\nd\n"
    assert mapfile.render("e", "5", "x 1") == "x 1\ne 5\n"


def test_live_read_maps_in_one_connection(haproxy_lab):
    client = HAProxyRuntime(haproxy_lab.socket)
    path = str(haproxy_lab.map_file)
    map_id = "#%d" % client.show_maps()[0]["id"]
    maps = client.read_maps([path, map_id, path])
    assert list(maps) == [path, map_id]
    assert [(e["key"], e["value"]) for e in maps[path]] == [("active", "svc_blue"), ("other", "value with spaces")]
    assert maps[map_id] == maps[path]
    assert list(client.read_maps()) == [path]
    expected = r"^HAProxy has no map '/etc/nope.map' \(its maps: #\d+ %s\)$" % path
    with pytest.raises(HAProxyNotFoundError, match=expected):
        client.read_maps([path, "/etc/nope.map"])


def test_live_apply_map_changes_back_to_back(haproxy_lab, monkeypatch):
    client = HAProxyRuntime(haproxy_lab.socket)
    path = str(haproxy_lab.map_file)
    sessions = []
    original = rt.HAProxyRuntime.session
    monkeypatch.setattr(rt.HAProxyRuntime, "session", lambda self: sessions.append(1) or original(self))
    applied = client.apply_map_changes(
        [
            (path, "active", "svc_green"),  # set
            (path, "new", "a; b"),  # add
            (path, "other", None),  # del
            (path, "gone", None),  # nothing to do
            (path, "new", "a; b"),  # nothing to do
        ]
    )
    assert applied == [True, True, True, False, False]
    assert len(sessions) == 1
    assert haproxy_lab.map_value("active") == "svc_green"
    assert haproxy_lab.map_value("new") == "a; b"
    assert haproxy_lab.map_value("other") is None
    assert client.apply_map_changes([(path, "active", "svc_green")]) == [False]


def test_live_apply_map_changes_undoes_on_failure(haproxy_lab, monkeypatch):
    client = HAProxyRuntime(haproxy_lab.socket)
    path = str(haproxy_lab.map_file)
    with pytest.raises(HAProxyRuntimeError) as failure:
        client.apply_map_changes([(path, "active", "svc_green"), (path, "other", None), ("#999", "a", "b")])
    # An unknown map is found while reading, before any change.
    assert str(failure.value).startswith("HAProxy has no map '#999'")
    assert haproxy_lab.map_value("active") == "svc_blue"

    # A command HAProxy refuses: the earlier changes are undone.
    client.apply_map_changes([(path, "num", "1")])
    real_change = rt._Session.change

    def refuse_third(session, command):
        if command.startswith("set map") and " num " in command:
            raise rt._error(command, "Failed to set an entry.\n")
        return real_change(session, command)

    monkeypatch.setattr(rt._Session, "change", refuse_third)
    with pytest.raises(HAProxyRuntimeError) as failure:
        client.apply_map_changes([(path, "active", "svc_green"), (path, "other", None), (path, "num", "2")])
    monkeypatch.setattr(rt._Session, "change", real_change)
    assert str(failure.value) == (
        "HAProxy runtime API command 'set map %s num 2' failed: Failed to set an entry.; "
        "the 2 live change(s) already made were undone" % path
    )
    assert haproxy_lab.map_value("active") == "svc_blue"
    assert haproxy_lab.map_value("other") == "value with spaces"
    assert haproxy_lab.map_value("num") == "1"
