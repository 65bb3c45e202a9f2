"""Tests for vmfleet.deploy.haproxy_map_guard against a real HAProxy (the haproxy role's frontend)."""

from __future__ import annotations

import threading
import time

from haproxy_fixture import haproxy_role_lab_fixture

from ansible_collections.vmfleet.deploy.plugins.modules import haproxy_map, haproxy_map_guard

# The real-HAProxy fixture (tests/unit/haproxy_fixture.py), found by pytest under this name.
haproxy_role_lab = haproxy_role_lab_fixture


def live(lab, key="svc"):
    for line in lab.cli("show map %s" % lab.split_map_file).splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] == key:
            return parts[2]
    return None


def in_file(lab, key="svc"):
    for line in lab.split_map_file.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return parts[1]
    return None


def split(lab, run_module, percent):
    result = run_module(haproxy_map, {"socket": lab.socket, "map": str(lab.split_map_file), "key": "svc",
                                      "value": str(percent)})
    assert not result.failed, result


def guard(lab, lease, **extra):
    params = {"socket": lab.socket, "lease_file": str(lease), "interval": 0.1,
              "entries": [{"map": str(lab.split_map_file), "key": "svc", "value": "0"}]}
    params.update(extra)
    return params


def test_lease_running_out_sets_the_split_to_zero_live_and_on_disk(haproxy_role_lab, run_module, tmp_path):
    lab = haproxy_role_lab
    split(lab, run_module, 30)
    lease = tmp_path / "svc.lease"
    lease.write_text(str(time.time() + 1.0))
    started = time.monotonic()
    result = run_module(haproxy_map_guard, guard(lab, lease))
    took = time.monotonic() - started
    assert not result.failed, result
    assert result["fired"] is True and result["reason"] == "expired" and result["changed"] is True
    assert 0.8 <= took < 5, took
    assert live(lab) == "0" and in_file(lab) == "0"
    assert not lease.exists()
    assert result["results"][0]["before"] == {"runtime": "30", "file": "30"}


def test_a_renewed_lease_keeps_the_split_until_renewals_stop(haproxy_role_lab, run_module, tmp_path):
    lab = haproxy_role_lab
    split(lab, run_module, 25)
    lease = tmp_path / "svc.lease"
    lease.write_text(str(time.time() + 0.6))
    renewals_until = time.monotonic() + 2.0
    seen = []

    def renew():
        while time.monotonic() < renewals_until:
            seen.append(live(lab))
            tmp = lease.with_suffix(".tmp")
            tmp.write_text(str(time.time() + 0.6))
            tmp.replace(lease)  # one rename, as ansible.builtin.copy does
            time.sleep(0.2)

    renewer = threading.Thread(target=renew, daemon=True)
    renewer.start()
    started = time.monotonic()
    result = run_module(haproxy_map_guard, guard(lab, lease))
    took = time.monotonic() - started
    renewer.join(5)
    assert result["fired"] is True and result["reason"] == "expired", result
    assert took >= 2.0, took  # not before the renewals stopped
    assert set(seen) == {"25"}, seen  # the split stayed while the lease was renewed
    assert live(lab) == "0"


def test_a_released_lease_ends_the_guard_without_a_change(haproxy_role_lab, run_module, tmp_path):
    lab = haproxy_role_lab
    split(lab, run_module, 40)
    lease = tmp_path / "svc.lease"
    lease.write_text(str(time.time() + 60))
    threading.Timer(0.5, lease.unlink).start()
    result = run_module(haproxy_map_guard, guard(lab, lease))
    assert result == {**result, "changed": False, "fired": False, "reason": "released"}, result
    assert "results" not in result
    assert live(lab) == "40" and in_file(lab) == "40"
    # No lease at all: released at once.
    result = run_module(haproxy_map_guard, guard(lab, tmp_path / "none.lease"))
    assert result["reason"] == "released" and result["waited"] < 1
    split(lab, run_module, 0)


def test_a_garbled_lease_counts_as_run_out(haproxy_role_lab, run_module, tmp_path):
    lab = haproxy_role_lab
    split(lab, run_module, 10)
    lease = tmp_path / "svc.lease"
    lease.write_text("tomorrow")
    result = run_module(haproxy_map_guard, guard(lab, lease))
    assert result["fired"] is True and result["reason"] == "expired" and result["waited"] < 1
    assert live(lab) == "0"


def test_max_seconds_bounds_the_guard(haproxy_role_lab, run_module, tmp_path):
    lab = haproxy_role_lab
    split(lab, run_module, 50)
    lease = tmp_path / "svc.lease"
    lease.write_text(str(time.time() + 600))
    result = run_module(haproxy_map_guard, guard(lab, lease, max_seconds=1))
    assert result["fired"] is True and result["reason"] == "max_seconds" and 0.9 <= result["waited"] < 5
    assert live(lab) == "0" and not lease.exists()


def test_bad_input_fails_before_anything(haproxy_role_lab, run_module, tmp_path):
    lab = haproxy_role_lab
    split(lab, run_module, 20)
    lease = tmp_path / "svc.lease"
    lease.write_text("0")  # would fire at once
    for extra, message in (
        ({"entries": []}, "entries must hold at least one change"),
        ({"entries": [{"map": str(lab.split_map_file), "key": "svc"}]},
         "entries[0]: state is present but all of the following are missing: value"),
        ({"interval": 0}, "interval must be positive"),
        ({"max_seconds": 0}, "max_seconds must be at least 1"),
    ):
        result = run_module(haproxy_map_guard, guard(lab, lease, **extra))
        assert result.failed and message in result["msg"], (extra, result)
    assert live(lab) == "20" and lease.exists()
    # Check mode checks the entries and watches nothing.
    result = run_module(haproxy_map_guard, guard(lab, lease), check_mode=True)
    assert result["reason"] == "check_mode" and not result["changed"] and live(lab) == "20"
    split(lab, run_module, 0)


def test_haproxy_unreachable_when_firing_fails_clearly(haproxy_role_lab, run_module, tmp_path, monkeypatch):
    lab = haproxy_role_lab
    monkeypatch.setattr(haproxy_map_guard, "FIRE_RETRY_SECONDS", 1.5)
    lease = tmp_path / "svc.lease"
    lease.write_text("0")
    result = run_module(haproxy_map_guard, guard(lab, lease, socket=str(tmp_path / "no.sock"), timeout=0.5))
    assert result.failed and result["msg"].startswith("the lease ran out (expired) but the changes failed:"), result
    assert lease.exists()  # nothing was done: the lease still says so
