"""Tests for vmfleet.deploy.haproxy_map_info against a real HAProxy (haproxy_lab, haproxy_role_lab)."""

from __future__ import annotations

import time

from haproxy_fixture import haproxy_lab_fixture, haproxy_role_lab_fixture

from ansible_collections.vmfleet.deploy.plugins.module_utils import haproxy_runtime
from ansible_collections.vmfleet.deploy.plugins.modules import haproxy_map, haproxy_map_info

# The real-HAProxy fixtures (tests/unit/haproxy_fixture.py), found by pytest under these names.
haproxy_lab = haproxy_lab_fixture
haproxy_role_lab = haproxy_role_lab_fixture


def map_ids(lab) -> dict:
    """{file: "#<id>"} from a raw `show map`."""
    ids = {}
    for line in lab.cli("show map").splitlines()[1:]:
        if line.strip():
            number, path = line.split(" ")[:2]
            ids[path.strip("()")] = "#" + number
    return ids


def test_reads_live_and_file_values(haproxy_role_lab, run_module):
    lab = haproxy_role_lab
    active, split = str(lab.map_file), str(lab.split_map_file)
    result = run_module(haproxy_map_info, {"socket": lab.socket, "maps": [active, split]})
    assert not result.failed, result
    assert result["changed"] is False
    assert result["maps"] == {active: {"svc": "svc_blue"}, split: {"svc": "0"}}
    assert result["files"] == result["maps"]
    assert result["map_files"] == {active: active, split: split}

    # A change made only at runtime: the live map and the file disagree, and both are shown.
    assert lab.cli("set map %s svc 40" % split).strip() == ""
    result = run_module(haproxy_map_info, {"socket": lab.socket, "maps": [split]})
    assert result["maps"] == {split: {"svc": "40"}}
    assert result["files"] == {split: {"svc": "0"}}

    # After haproxy_map they agree again.
    run_module(haproxy_map, {"socket": lab.socket, "map": split, "key": "svc", "value": "40"})
    result = run_module(haproxy_map_info, {"socket": lab.socket, "maps": [split]})
    assert result["maps"] == result["files"] == {split: {"svc": "40"}}


def test_all_maps_when_none_is_named(haproxy_lab, run_module):
    lab = haproxy_lab
    path = str(lab.map_file)
    result = run_module(haproxy_map_info, {"socket": lab.socket})
    assert not result.failed, result
    assert result["maps"] == {path: {"active": "svc_blue", "other": "value with spaces"}}
    assert result["files"] == result["maps"]


def test_map_by_id_and_level_user_socket(haproxy_lab, run_module):
    lab = haproxy_lab
    path = str(lab.map_file)
    map_id = map_ids(lab)[path]
    result = run_module(haproxy_map_info, {"socket": lab.user_socket, "maps": [map_id]})
    assert not result.failed, result
    assert result["maps"] == {map_id: {"active": "svc_blue", "other": "value with spaces"}}
    assert result["files"] == result["maps"]
    assert result["map_files"] == {map_id: path}


def test_check_mode_changes_nothing(haproxy_role_lab, run_module, monkeypatch):
    lab = haproxy_role_lab
    changes = []
    monkeypatch.setattr(haproxy_runtime._Session, "change", lambda session, command: changes.append(command))
    before = (lab.map_file.read_text(), lab.split_map_file.read_text(), lab.cli("show map %s" % lab.map_file))
    result = run_module(haproxy_map_info, {"socket": lab.socket, "maps": [str(lab.map_file)]}, check_mode=True)
    assert not result.failed and result["changed"] is False
    assert result["maps"] == {str(lab.map_file): {"svc": "svc_blue"}}
    assert changes == []
    assert (lab.map_file.read_text(), lab.split_map_file.read_text(), lab.cli("show map %s" % lab.map_file)) == before


def test_missing_file_is_left_out_of_files(haproxy_role_lab, run_module):
    lab = haproxy_role_lab
    lab.split_map_file.unlink()
    result = run_module(haproxy_map_info, {"socket": lab.socket, "maps": [str(lab.split_map_file)]})
    assert not result.failed, result
    assert result["maps"] == {str(lab.split_map_file): {"svc": "0"}}
    assert result["files"] == {}


def test_duplicate_keys_give_the_first_value(haproxy_lab, run_module):
    lab = haproxy_lab
    assert lab.cli("add map %s active svc_green" % lab.map_file).strip() == ""
    lab.map_file.write_text(lab.map_file.read_text() + "active svc_green\n")
    result = run_module(haproxy_map_info, {"socket": lab.socket, "maps": [str(lab.map_file)]})
    assert result["maps"][str(lab.map_file)]["active"] == "svc_blue"
    assert result["files"][str(lab.map_file)]["active"] == "svc_blue"


def test_unknown_map_lists_the_maps_haproxy_has(haproxy_role_lab, run_module):
    lab = haproxy_role_lab
    ids = map_ids(lab)
    result = run_module(haproxy_map_info, {"socket": lab.socket, "maps": [str(lab.map_file), "/etc/haproxy/nope.map"]})
    assert result.failed
    assert result["msg"] == "HAProxy has no map '/etc/haproxy/nope.map' (its maps: %s)" % ", ".join(
        "%s %s" % (map_id, path) for path, map_id in sorted(ids.items(), key=lambda item: int(item[1][1:]))
    )
    result = run_module(haproxy_map_info, {"socket": lab.socket, "maps": ["#999"]})
    assert result.failed and result["msg"].startswith("HAProxy has no map '#999' (its maps: #")


def test_unreachable_socket(run_module, tmp_path):
    started = time.monotonic()
    result = run_module(haproxy_map_info, {"socket": str(tmp_path / "gone.sock")})
    assert time.monotonic() - started < 1.0
    assert result.failed
    assert result["msg"] == "cannot reach HAProxy runtime API at %s: No such file or directory" % (
        tmp_path / "gone.sock"
    )
