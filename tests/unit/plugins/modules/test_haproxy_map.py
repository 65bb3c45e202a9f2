"""Tests for vmfleet.deploy.haproxy_map against a real HAProxy (haproxy_lab, haproxy_role_lab).

The ``haproxy_role_lab`` tests also check the haproxy role's traffic-split rule,
with the role's own template: a split of 0 sends nothing to the idle slot, 100
everything, 30 about 30%, for keep-alive and new-connection clients.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import time

import pytest
from haproxy_fixture import (
    ACTIVE_MAP_FILE,
    HAPROXY,
    MAP_FILE,
    FrontendLoad,
    LoadProbe,
    haproxy_lab_fixture,
    haproxy_role_lab_fixture,
    version_of,
    wait_for,
)

from ansible_collections.vmfleet.deploy.plugins.module_utils import haproxy_runtime
from ansible_collections.vmfleet.deploy.plugins.modules import haproxy_map, haproxy_server

# The real-HAProxy fixtures (tests/unit/haproxy_fixture.py), found by pytest under these names.
haproxy_lab = haproxy_lab_fixture
haproxy_role_lab = haproxy_role_lab_fixture


def flip(lab, value, **extra):
    params = {"socket": lab.socket, "map": str(lab.map_file), "key": "active", "value": value}
    params.update(extra)
    return params


def test_flip_under_load_moves_all_new_requests(haproxy_lab, run_module, capsys):
    lab = haproxy_lab
    with FrontendLoad(lab.port, threads=4, rate=100, max_requests=2000, seconds=15) as probe:
        probe.wait_requests(40)
        result = run_module(haproxy_map, flip(lab, "svc_green"))
        flipped_at = time.monotonic()
        time.sleep(1.0)
    assert not result.failed, result
    assert result["changed"] is True and result["runtime_changed"] is True and result["file_changed"] is True
    assert result["before"] == {"runtime": "svc_blue", "file": "svc_blue"}
    assert result["after"] == {"runtime": "svc_green", "file": "svc_green"}

    before = probe.answers_before(flipped_at - 0.2)
    after = probe.answers_after(flipped_at)
    assert before and set(before) <= {"blue1", "blue2"}
    assert len(after) >= 20 and set(after) <= {"green1", "green2"}, after  # 100 % of new requests
    assert probe.failures == [], probe.failures[:5]
    assert probe.rps >= 30
    last_blue = max(end for _start, end, r in probe.requests() if (r.version or "").startswith("blue"))
    with capsys.disabled():
        print(
            "\n[flip] %d requests at %.0f rps, %d failed; %d/%d after the flip on green; last blue answer %+.0f ms"
            % (
                probe.total,
                probe.rps,
                len(probe.failures),
                sum(a.startswith("green") for a in after),
                len(after),
                (last_blue - flipped_at) * 1000,
            )
        )
    # the file on disk has the new value; comments, blank lines and other keys are kept
    assert lab.map_file.read_text() == MAP_FILE.replace("active svc_blue", "active svc_green")
    assert lab.map_value() == "svc_green"
    # idempotent
    again = run_module(haproxy_map, flip(lab, "svc_green"))
    assert again["changed"] is False and again["runtime_changed"] is False and again["file_changed"] is False


def test_reload_keeps_map_and_server_states(haproxy_lab, run_module, capsys):
    lab = haproxy_lab
    assert run_module(haproxy_map, flip(lab, "svc_green"))["changed"]
    common = {"socket": lab.socket, "wait_interval": 0.05}
    assert run_module(haproxy_server, dict(common, backend="svc_blue", server="blue1", state="drain"))["changed"]
    assert run_module(haproxy_server, dict(common, backend="svc_blue", server="blue2", state="maint"))["changed"]
    assert run_module(haproxy_server, dict(common, backend="svc_green", server="green1", weight=7))["changed"]
    old_worker = lab.worker_pid()

    with FrontendLoad(lab.port, threads=4, rate=100, max_requests=2000, seconds=15) as probe:
        probe.wait_requests(40)
        lab.reload()  # show servers state > server-state-file; kill -USR2 <master>
        reloaded_at = time.monotonic()
        time.sleep(1.0)
    assert lab.worker_pid() != old_worker
    state_file = lab.state_file.read_text()
    assert state_file.startswith("1\n# be_id be_name srv_id srv_name")

    assert lab.map_value() == "svc_green"
    stats = lab.stats()
    assert stats[("svc_blue", "blue1")]["status"] == "DRAIN"
    assert stats[("svc_blue", "blue2")]["status"] == "MAINT"
    assert stats[("svc_green", "green1")]["uweight"] == "7"
    assert lab.cli("get weight svc_green/green1").startswith("7 (initial 1)")
    after = probe.answers_after(reloaded_at)
    assert after and set(after) <= {"green1", "green2"}
    # a hitless reload: option idle-close-on-response, master-worker, expose-fd listeners
    assert probe.failures == [], probe.failures[:5]
    with capsys.disabled():
        print("\n[reload] %d requests at %.0f rps, %d failed" % (probe.total, probe.rps, len(probe.failures)))

    # and the module sees the restored state as already in place
    common_blue = dict(common, backend="svc_blue")
    assert run_module(haproxy_server, dict(common_blue, server="blue1", state="drain"))["changed"] is False
    assert run_module(haproxy_server, dict(common_blue, server="blue2", state="maint"))["changed"] is False
    assert run_module(haproxy_map, flip(lab, "svc_green"))["changed"] is False


def test_check_mode_and_diff_change_nothing(haproxy_lab, run_module):
    lab = haproxy_lab
    result = run_module(haproxy_map, flip(lab, "svc_green"), check_mode=True, diff=True)
    assert not result.failed, result
    assert result["changed"] is True and result["after"] == {"runtime": "svc_green", "file": "svc_green"}
    live, disk = result["diff"]
    assert live["before"] == "active svc_blue\n" and live["after"] == "active svc_green\n"
    assert disk["before_header"] == str(lab.map_file)
    assert disk["before"] == MAP_FILE
    assert disk["after"] == MAP_FILE.replace("active svc_blue", "active svc_green")
    # nothing changed
    assert lab.map_value() == "svc_blue"
    assert lab.map_file.read_text() == MAP_FILE
    assert lab.get()[1].startswith("blue")


def test_file_drift_is_repaired(haproxy_lab, run_module):
    lab = haproxy_lab
    lab.map_file.write_text(MAP_FILE.replace("active svc_blue", "active   svc_green"))
    result = run_module(haproxy_map, flip(lab, "svc_blue"), diff=True)
    assert result["changed"] is True and result["runtime_changed"] is False and result["file_changed"] is True
    assert result["before"] == {"runtime": "svc_blue", "file": "svc_green"}
    # the separator of the line is kept
    assert lab.map_file.read_text() == MAP_FILE.replace("active svc_blue", "active   svc_blue")


def test_add_and_remove_a_key(haproxy_lab, run_module):
    lab = haproxy_lab
    params = {"socket": lab.socket, "map": str(lab.map_file), "key": "canary", "value": "svc_green"}
    added = run_module(haproxy_map, params)
    assert added["changed"] is True and added["before"] == {"runtime": None, "file": None}
    assert lab.map_value("canary") == "svc_green"
    assert lab.map_file.read_text() == MAP_FILE + "canary svc_green\n"

    gone = run_module(haproxy_map, dict(params, state="absent", value=None), diff=True)
    assert gone["changed"] is True and gone["after"] == {"runtime": None, "file": None}
    assert gone["diff"][0]["after"] == ""
    assert lab.map_value("canary") is None
    assert lab.map_file.read_text() == MAP_FILE
    assert run_module(haproxy_map, dict(params, state="absent", value=None))["changed"] is False


def test_map_by_id_resolves_its_file(haproxy_lab, run_module):
    lab = haproxy_lab
    map_id = lab.cli("show map").splitlines()[1].split()[0]
    result = run_module(haproxy_map, flip(lab, "svc_green", map="#" + map_id))
    assert result["changed"] is True and result["map_file"] == str(lab.map_file)
    assert "active svc_green" in lab.map_file.read_text()
    assert lab.map_value() == "svc_green"


def test_explicit_map_file(haproxy_lab, run_module, tmp_path):
    lab = haproxy_lab
    other = tmp_path / "copy.map"
    other.write_bytes(b"# a copy\r\nactive svc_blue\r\n")
    result = run_module(haproxy_map, flip(lab, "svc_green", map_file=str(other)))
    assert result["changed"] is True and result["map_file"] == str(other)
    assert other.read_bytes() == b"# a copy\r\nactive svc_green\r\n"  # line endings kept
    assert lab.map_file.read_text() == MAP_FILE  # the runtime's own file was not given


def test_map_file_mode_is_kept(haproxy_lab, run_module):
    lab = haproxy_lab
    os.chmod(lab.map_file, 0o640)
    run_module(haproxy_map, flip(lab, "svc_green"))
    assert os.stat(lab.map_file).st_mode & 0o777 == 0o640
    assert not [p for p in os.listdir(lab.tmp) if p.endswith(".tmp")]


def test_unknown_map_and_bad_input(haproxy_lab, run_module):
    lab = haproxy_lab
    result = run_module(haproxy_map, flip(lab, "x", map="/etc/haproxy/nope.map"))
    assert result.failed
    assert result["msg"].startswith("HAProxy has no map '/etc/haproxy/nope.map' (its maps: #")
    assert str(lab.map_file) in result["msg"]

    result = run_module(haproxy_map, flip(lab, "x", key="two words"))
    assert result.failed and result["msg"] == "key must be non-empty and without blanks, got 'two words'"

    result = run_module(haproxy_map, {"socket": lab.socket, "map": str(lab.map_file), "key": "active"})
    assert result.failed and "state is present but all of the following are missing: value" in result["msg"]


def test_unwritable_map_file_fails_before_the_live_change(haproxy_lab, run_module):
    lab = haproxy_lab
    result = run_module(haproxy_map, flip(lab, "svc_green", map_file="/nonexistent-dir/backend.map"))
    assert result.failed
    assert result["msg"] == (
        "cannot write map file /nonexistent-dir/backend.map: directory /nonexistent-dir does not exist"
    )
    assert lab.map_value() == "svc_blue"


def test_unreachable_socket(run_module, tmp_path):
    started = time.monotonic()
    result = run_module(haproxy_map, {"socket": str(tmp_path / "gone.sock"), "map": "/x.map", "key": "a", "value": "b"})
    assert time.monotonic() - started < 1.0
    assert result.failed
    assert result["msg"] == "cannot reach HAProxy runtime API at %s: No such file or directory" % (
        tmp_path / "gone.sock"
    )


def test_flip_back_and_forth_is_instant(haproxy_lab, run_module):
    """Each flip takes effect for the very next request."""
    lab = haproxy_lab
    for value, prefix in (("svc_green", "green"), ("svc_blue", "blue"), ("svc_green", "green")):
        assert run_module(haproxy_map, flip(lab, value))["changed"]
        answers = [lab.get()[1] for _attempt in range(4)]
        assert all(a.startswith(prefix) for a in answers), answers
    wait_for(lambda: lab.map_value() == "svc_green", 1, what="map value")


# ----------------------------------------------------------------- entries
# haproxy_role_lab: the haproxy role's frontend for the service "svc", with its
# active-backend map (svc svc_blue) and its split map (svc 0).


def record_commands(monkeypatch):
    """Record every command that changes HAProxy: (session, command, time.monotonic())."""
    calls = []
    original = haproxy_runtime._Session.change

    def change(session, command):
        answer = original(session, command)
        calls.append((id(session), command, time.monotonic()))
        return answer

    monkeypatch.setattr(haproxy_runtime._Session, "change", change)
    return calls


def cutover(lab, split="0", active="svc_green", **extra):
    params = {
        "socket": lab.socket,
        "entries": [
            {"map": str(lab.split_map_file), "key": "svc", "value": split},
            {"map": str(lab.map_file), "key": "svc", "value": active},
        ],
    }
    params.update(extra)
    return params


def live(lab, path, key="svc"):
    for line in lab.cli("show map %s" % path).splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] == key:
            return parts[2]
    return None


def test_entries_apply_in_order_in_one_session(haproxy_role_lab, run_module, monkeypatch):
    lab = haproxy_role_lab
    assert run_module(haproxy_map, {"socket": lab.socket, "map": str(lab.split_map_file), "key": "svc",
                                    "value": "30"})["changed"]
    calls = record_commands(monkeypatch)
    result = run_module(haproxy_map, cutover(lab))
    assert not result.failed, result
    assert result["changed"] is True
    assert "map" not in result and "before" not in result  # the single form's keys only without entries
    assert result["results"] == [
        {
            "map": str(lab.split_map_file),
            "map_file": str(lab.split_map_file),
            "key": "svc",
            "before": {"runtime": "30", "file": "30"},
            "after": {"runtime": "0", "file": "0"},
            "runtime_changed": True,
            "file_changed": True,
        },
        {
            "map": str(lab.map_file),
            "map_file": str(lab.map_file),
            "key": "svc",
            "before": {"runtime": "svc_blue", "file": "svc_blue"},
            "after": {"runtime": "svc_green", "file": "svc_green"},
            "runtime_changed": True,
            "file_changed": True,
        },
    ]
    # Both live changes went through one connection, in the order given, back to back.
    assert [c[1] for c in calls] == [
        "set map %s svc 0" % lab.split_map_file,
        "set map %s svc svc_green" % lab.map_file,
    ]
    assert calls[0][0] == calls[1][0]
    assert calls[1][2] - calls[0][2] < 0.05
    # Both maps, live and on disk; comments kept.
    assert live(lab, lab.split_map_file) == "0" and live(lab, lab.map_file) == "svc_green"
    assert lab.split_map_file.read_text().endswith("\nsvc 0\n")
    assert lab.map_file.read_text().splitlines()[0].startswith("#")
    assert lab.map_file.read_text().endswith("\nsvc svc_green\n")
    assert {lab.get()[1] for _request in range(10)} == {"green1"}
    # Idempotent.
    again = run_module(haproxy_map, cutover(lab))
    assert again["changed"] is False
    assert [(r["runtime_changed"], r["file_changed"]) for r in again["results"]] == [(False, False)] * 2


def test_entries_on_one_key_follow_each_other(haproxy_role_lab, run_module, monkeypatch):
    lab = haproxy_role_lab
    calls = record_commands(monkeypatch)
    entries = [
        {"map": str(lab.map_file), "key": "canary", "value": "svc_green"},
        {"map": str(lab.map_file), "key": "canary", "value": "svc_blue"},
        {"map": str(lab.map_file), "key": "svc", "state": "absent"},
    ]
    result = run_module(haproxy_map, {"socket": lab.socket, "entries": entries}, diff=True)
    assert not result.failed, result
    first, second, third = result["results"]
    assert first["before"] == {"runtime": None, "file": None}
    assert first["after"] == {"runtime": "svc_green", "file": "svc_green"}
    assert second["before"] == {"runtime": "svc_green", "file": "svc_green"}
    assert second["after"] == {"runtime": "svc_blue", "file": "svc_blue"}
    assert third["before"] == {"runtime": "svc_blue", "file": "svc_blue"}
    assert third["after"] == {"runtime": None, "file": None}
    assert [c[1].split(" ", 1)[0] for c in calls] == ["add", "set", "del"]
    assert len({c[0] for c in calls}) == 1
    assert live(lab, lab.map_file, "canary") == "svc_blue" and live(lab, lab.map_file) is None
    assert lab.map_file.read_text() == ACTIVE_MAP_FILE.replace("svc svc_blue", "canary svc_blue")
    # One live diff per map (first value before, last value after), one diff per file.
    live_diff, file_diff = result["diff"]
    assert live_diff["before"] == "svc svc_blue\n"
    assert live_diff["after"] == "canary svc_blue\n"
    assert file_diff["before_header"] == str(lab.map_file)
    # Without an entry the frontend falls back to the default slot.
    assert lab.get()[1] == "blue1"


def test_entries_unwritable_file_fails_before_any_live_change(haproxy_role_lab, run_module, monkeypatch):
    lab = haproxy_role_lab
    calls = record_commands(monkeypatch)
    split_before, active_before = lab.split_map_file.read_text(), lab.map_file.read_text()
    params = cutover(lab, split="50")
    params["entries"][1]["map_file"] = "/nonexistent-dir/vmfleet-active.map"
    result = run_module(haproxy_map, params)
    assert result.failed
    assert result["msg"] == (
        "cannot write map file /nonexistent-dir/vmfleet-active.map: directory /nonexistent-dir does not exist"
    )
    assert calls == []
    assert live(lab, lab.split_map_file) == "0" and live(lab, lab.map_file) == "svc_blue"
    assert lab.split_map_file.read_text() == split_before and lab.map_file.read_text() == active_before


def test_entries_a_refused_value_undoes_the_earlier_changes(haproxy_role_lab, run_module, monkeypatch):
    """HAProxy keeps a split map value that map_str_int cannot parse: nothing is left half done."""
    lab = haproxy_role_lab
    calls = record_commands(monkeypatch)
    params = {
        "socket": lab.socket,
        "entries": [
            {"map": str(lab.map_file), "key": "svc", "value": "svc_green"},
            {"map": str(lab.split_map_file), "key": "svc", "value": "thirty"},
        ],
    }
    split_before, active_before = lab.split_map_file.read_text(), lab.map_file.read_text()
    result = run_module(haproxy_map, params)
    assert result.failed
    assert result["msg"].startswith(
        "HAProxy did not take 'set map %s svc thirty': key svc of map %s is '0', not 'thirty'"
        % (lab.split_map_file, lab.split_map_file)
    ), result["msg"]
    assert result["msg"].endswith("; the 2 live change(s) already made were undone"), result["msg"]
    assert [c[1] for c in calls][:2] == [
        "set map %s svc svc_green" % lab.map_file,
        "set map %s svc thirty" % lab.split_map_file,
    ]
    assert live(lab, lab.map_file) == "svc_blue" and live(lab, lab.split_map_file) == "0"
    assert lab.split_map_file.read_text() == split_before and lab.map_file.read_text() == active_before


def test_entries_check_mode_and_diff_change_nothing(haproxy_role_lab, run_module, monkeypatch):
    lab = haproxy_role_lab
    calls = record_commands(monkeypatch)
    split_before, active_before = lab.split_map_file.read_text(), lab.map_file.read_text()
    result = run_module(haproxy_map, cutover(lab, split="20"), check_mode=True, diff=True)
    assert not result.failed, result
    assert result["changed"] is True
    assert [r["after"] for r in result["results"]] == [
        {"runtime": "20", "file": "20"},
        {"runtime": "svc_green", "file": "svc_green"},
    ]
    assert [d["before_header"] for d in result["diff"]] == [
        "HAProxy map %s (live)" % lab.split_map_file,
        "HAProxy map %s (live)" % lab.map_file,
        str(lab.split_map_file),
        str(lab.map_file),
    ]
    assert result["diff"][0]["before"] == "svc 0\n" and result["diff"][0]["after"] == "svc 20\n"
    assert result["diff"][3]["after"] == active_before.replace("svc svc_blue", "svc svc_green")
    assert calls == []
    assert live(lab, lab.split_map_file) == "0" and live(lab, lab.map_file) == "svc_blue"
    assert lab.split_map_file.read_text() == split_before and lab.map_file.read_text() == active_before


def test_entries_by_map_id(haproxy_role_lab, run_module):
    lab = haproxy_role_lab
    ids = {line.split(" ")[1].strip("()"): line.split(" ")[0] for line in lab.cli("show map").splitlines()[1:] if line}
    params = cutover(lab, split="10")
    params["entries"][0]["map"] = "#" + ids[str(lab.split_map_file)]
    params["entries"].append({"map": str(lab.split_map_file), "key": "svc", "value": "15"})  # the same map by path
    result = run_module(haproxy_map, params)
    assert not result.failed, result
    assert result["results"][0]["map_file"] == str(lab.split_map_file)
    assert result["results"][2]["before"] == {"runtime": "10", "file": "10"}
    assert live(lab, lab.split_map_file) == "15" and lab.split_map_file.read_text().endswith("\nsvc 15\n")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"map": "/x.map", "entries": [{"map": "/x.map", "key": "a", "value": "b"}]},
         "parameters are mutually exclusive: entries|map"),
        ({"key": "a", "value": "b", "entries": [{"map": "/x.map", "key": "a", "value": "b"}]},
         "parameters are mutually exclusive: entries|key"),
        ({"state": "absent", "entries": [{"map": "/x.map", "key": "a", "value": "b"}]},
         "parameters are mutually exclusive: entries|state"),
        ({"map_file": "/x.map", "entries": [{"map": "/x.map", "key": "a", "value": "b"}]},
         "parameters are mutually exclusive: entries|map_file"),
        ({"key": "a", "value": "b"}, "one of the following is required: map, entries"),
        ({"map": "/x.map", "value": "b"}, "one of the following is required: key, entries"),
        ({"entries": [{"map": "/x.map", "value": "b"}]}, "missing required arguments: key found in entries"),
        ({"entries": [{"map": "/x.map", "key": "a", "value": "b"}, {"map": "/x.map", "key": "b"}]},
         "entries[1]: state is present but all of the following are missing: value"),
        ({"entries": [{"map": "/x.map", "key": "a b", "value": "b"}]},
         "entries[0]: key must be non-empty and without blanks, got 'a b'"),
        ({"entries": [{"map": "/x.map", "key": "a", "value": " b"}]},
         "entries[0]: value cannot start or end with blanks (HAProxy trims them in map files)"),
        ({"entries": []}, "entries must hold at least one change"),
    ],
)
def test_entries_bad_input(run_module, tmp_path, params, message):
    # Checked before HAProxy is reached: the socket does not even exist.
    result = run_module(haproxy_map, dict(params, socket=str(tmp_path / "gone.sock")))
    assert result.failed
    assert message in result["msg"], result["msg"]


def test_entries_unknown_map_names_the_maps(haproxy_role_lab, run_module, monkeypatch):
    lab = haproxy_role_lab
    calls = record_commands(monkeypatch)
    params = cutover(lab)
    params["entries"].append({"map": "/etc/haproxy/nope.map", "key": "svc", "value": "x"})
    result = run_module(haproxy_map, params)
    assert result.failed
    assert result["msg"].startswith("HAProxy has no map '/etc/haproxy/nope.map' (its maps: #")
    assert str(lab.split_map_file) in result["msg"] and str(lab.map_file) in result["msg"]
    assert calls == [] and live(lab, lab.map_file) == "svc_blue"


# ----------------------------------------------------- the role's split rule
def idle_share(lab, requests: int, keep_alive: bool, idle: str) -> float:
    """Share of ``requests`` (one client, one after the other) answered by the server ``idle``; all must succeed."""
    url = "http://127.0.0.1:%d/" % lab.port
    probe = LoadProbe(url, threads=1, keepalive=keep_alive, max_requests=requests, seconds=30)
    probe.start()
    assert probe.wait(40), "the probe did not end"
    records = probe.records()
    assert len(records) == requests, probe.result()
    assert all(r.ok and r.status == 200 for r in records), probe.result()["error_samples"]
    answers = [r.version for r in records]
    assert set(answers) <= {"blue1", "green1"}, set(answers)
    return answers.count(idle) / len(answers)


def set_split(lab, run_module, percent):
    result = run_module(
        haproxy_map, {"socket": lab.socket, "map": str(lab.split_map_file), "key": "svc", "value": str(percent)}
    )
    assert not result.failed, result


def test_role_config_passes_haproxy_check(haproxy_role_lab, tmp_path):
    """The template as rendered, global section included, is valid for HAProxy 2.6."""
    lab = haproxy_role_lab
    config = tmp_path / "haproxy.cfg"
    config.write_text(lab.role_config)
    checked = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "map_str_int(%s,0)" % lab.split_map_file in lab.role_config


@pytest.mark.parametrize("active", ["svc_blue", "svc_green"])
def test_role_split_rule_sends_the_share_to_the_idle_slot(haproxy_role_lab, run_module, capsys, active):
    lab = haproxy_role_lab
    assert not run_module(haproxy_map, {"socket": lab.socket, "map": str(lab.map_file), "key": "svc",
                                        "value": active}).failed
    idle = "blue1" if active == "svc_green" else "green1"
    shares = {}
    for percent, requests in ((0, 100), (100, 100), (30, 400)):
        set_split(lab, run_module, percent)
        for keep_alive in (True, False):
            shares[(percent, keep_alive)] = idle_share(lab, requests, keep_alive, idle)
    with capsys.disabled():
        print("\n[split, %s active] idle share by split and client (keep-alive, new connection): %s"
              % (active, ", ".join("%d%%: %.2f/%.2f" % (p, shares[(p, True)], shares[(p, False)])
                                   for p in (0, 100, 30))))
    for keep_alive in (True, False):
        assert shares[(0, keep_alive)] == 0.0
        assert shares[(100, keep_alive)] == 1.0
        assert 0.20 <= shares[(30, keep_alive)] <= 0.40, shares
    # The preview frontend ignores the split: it always serves the idle slot.
    assert {lab.get_preview()[1] for _request in range(10)} == {idle}


def test_role_split_without_an_entry_is_zero(haproxy_role_lab, run_module):
    lab = haproxy_role_lab
    set_split(lab, run_module, 100)
    assert idle_share(lab, 20, True, "green1") == 1.0
    result = run_module(haproxy_map, {"socket": lab.socket, "map": str(lab.split_map_file), "key": "svc",
                                      "state": "absent"})
    assert result["changed"] and "svc" not in lab.split_map_file.read_text().split("\n", 1)[1]
    assert idle_share(lab, 50, True, "green1") == 0.0


def test_role_canary_header_targets_the_idle_slot_only_while_split(haproxy_role_lab, run_module):
    lab = haproxy_role_lab
    header = {"X-Canary": "1"}
    set_split(lab, run_module, 0)
    # No split: the header changes nothing (the idle slot may not even run).
    assert {lab.get(headers=header)[1] for _request in range(20)} == {"blue1"}
    set_split(lab, run_module, 10)
    answers = [lab.get(headers=header)[1] for _request in range(100)]
    assert answers == ["green1"] * 100, answers
    # Without the header, the draw decides: most requests stay on the live slot.
    assert idle_share(lab, 200, True, "green1") < 0.25
    set_split(lab, run_module, 0)


def test_role_sticky_cookie_keeps_a_client_on_its_first_slot(haproxy_role_lab, run_module):
    lab = haproxy_role_lab
    set_split(lab, run_module, 50)

    def first_and_rest(cookie_jar: dict) -> list[str]:
        answers = []
        for _request in range(10):
            conn = http.client.HTTPConnection("127.0.0.1", lab.port, timeout=5)
            cookie = "; ".join(f"{k}={v}" for k, v in cookie_jar.items())
            conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
            response = conn.getresponse()
            answers.append(version_of(response.read()))
            for header, value in response.getheaders():
                if header.lower() == "set-cookie":
                    name, _eq, rest = value.partition("=")
                    cookie_jar[name] = rest.split(";")[0]
            conn.close()
        return answers

    # Not sticky (map entry 0): no cookie, and a client sees both slots.
    jar: dict = {}
    assert set(first_and_rest(jar)) == {"blue1", "green1"} and jar == {}
    assert not run_module(haproxy_map, {"socket": lab.socket, "map": str(lab.sticky_map_file), "key": "svc",
                                        "value": "1"}).failed
    seen = set()
    for _client in range(16):
        jar = {}
        answers = first_and_rest(jar)
        assert len(set(answers)) == 1, answers  # every request on the slot of the first answer
        assert jar == {"vmfleet_svc": {"blue1": "svc_blue", "green1": "svc_green"}[answers[0]]}
        seen.add(answers[0])
    assert seen == {"blue1", "green1"}, seen  # 16 clients at 50 %: both slots got some
    # Once the split is 0 again, a cookie for the idle slot is ignored.
    set_split(lab, run_module, 0)
    assert first_and_rest({"vmfleet_svc": "svc_green"}) == ["blue1"] * 10
    assert not run_module(haproxy_map, {"socket": lab.socket, "map": str(lab.sticky_map_file), "key": "svc",
                                        "value": "0"}).failed


def test_role_maps_survive_a_reload(haproxy_role_lab, run_module):
    lab = haproxy_role_lab
    result = run_module(haproxy_map, cutover(lab, split="100", active="svc_green"))
    assert not result.failed and result["changed"], result
    old = lab.worker_pid()
    lab.reload()
    assert lab.worker_pid() != old
    assert live(lab, lab.split_map_file) == "100" and live(lab, lab.map_file) == "svc_green"
    assert idle_share(lab, 20, False, "blue1") == 1.0
    assert run_module(haproxy_map, cutover(lab, split="100", active="svc_green"))["changed"] is False
