"""Tests for vmfleet.deploy.haproxy_map against a real HAProxy (haproxy_lab)."""

from __future__ import annotations

import os
import time

from haproxy_fixture import MAP_FILE, LoadProbe, haproxy_lab_fixture, wait_for

from ansible_collections.vmfleet.deploy.plugins.modules import haproxy_map, haproxy_server

# The real-HAProxy fixture (tests/unit/haproxy_fixture.py), found by pytest under this name.
haproxy_lab = haproxy_lab_fixture


def flip(lab, value, **extra):
    params = {"socket": lab.socket, "map": str(lab.map_file), "key": "active", "value": value}
    params.update(extra)
    return params


def test_flip_under_load_moves_all_new_requests(haproxy_lab, run_module, capsys):
    lab = haproxy_lab
    with LoadProbe(lab.port, threads=4, interval=0.04, max_requests=2000, max_seconds=15) as probe:
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
    last_blue = max(r[1] for r in probe.records if r[3].startswith("blue"))
    with capsys.disabled():
        print(
            "\n[flip] %d requests at %.0f rps, %d failed; %d/%d after the flip on green; last blue answer %+.0f ms"
            % (
                len(probe.records),
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

    with LoadProbe(lab.port, threads=4, interval=0.04, max_requests=2000, max_seconds=15) as probe:
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
        print("\n[reload] %d requests at %.0f rps, %d failed" % (len(probe.records), probe.rps, len(probe.failures)))

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
