"""Tests for vmfleet.deploy.release_ledger, driven through main() on real files in tmp_path."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ansible_collections.vmfleet.deploy.plugins.modules import release_ledger


def rel(version, slot="blue", digest=None, **extra):
    release = {
        "version": version,
        "image": "registry.example.com/catalog:%s" % version,
        "digest": digest if digest is not None else "sha256:%s" % version.replace(".", ""),
        "image_id": "sha256:id%s" % version.replace(".", ""),
        "slot": slot,
        "runtime": "docker",
        "strategy": "rolling",
        "deploy_id": "awx-%s" % version,
    }
    release.update(extra)
    return release


@pytest.fixture
def ledger(tmp_path, run_module):
    """ledger(event, release, reason=None, **args) runs the module on tmp_path/ledgers for catalog."""

    class Ledger:
        dir = tmp_path / "ledgers"
        path = tmp_path / "ledgers" / "catalog" / "ledger.json"

        def __call__(self, event="read", release=None, reason=None, check_mode=False, diff=False, **args):
            params = {"service": "catalog", "ledger_dir": str(self.dir), "event": event}
            if release is not None:
                params["release"] = release
            if reason is not None:
                params["reason"] = reason
            params.update(args)
            return run_module(release_ledger, params, check_mode=check_mode, diff=diff)

        def load(self):
            return json.loads(self.path.read_text())

        def write_raw(self, text):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(text)

    return Ledger()


def ok(result):
    assert not result.failed, result
    return result


def events(history):
    return [(e.get("event"), e["version"]) for e in history]


def test_read_of_missing_file_returns_empty_ledger_and_creates_nothing(ledger):
    result = ok(ledger())
    assert result["changed"] is False
    assert result["exists"] is False
    assert result["path"] == str(ledger.path)
    assert result["ledger"] == {
        "service": "catalog",
        "slot": None,
        "current": None,
        "previous": None,
        "history": [],
        "updated_at": None,
    }
    assert result["current"] is None and result["previous"] is None
    assert not ledger.dir.exists()


def test_first_served_writes_the_file(ledger):
    result = ok(ledger("served", rel("1.0.0")))
    assert result["changed"] is True and result["exists"] is False
    on_disk = ledger.load()
    assert on_disk == result["ledger"]
    current = on_disk["current"]
    assert current["version"] == "1.0.0" and current["deploy_id"] == "awx-1.0.0"
    assert current["deployed_at"].endswith("Z") and current["deployed_at"] == on_disk["updated_at"]
    assert on_disk["slot"] == "blue" and on_disk["previous"] is None
    assert events(on_disk["history"]) == [("served", "1.0.0")]
    assert result["current"] == current
    # file format: sorted keys, indent 2, trailing newline, mode 0644 in a 0755 directory
    text = ledger.path.read_text()
    assert text == json.dumps(on_disk, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o644
    assert stat.S_IMODE(ledger.path.parent.stat().st_mode) == 0o755
    assert stat.S_IMODE(ledger.dir.stat().st_mode) == 0o755
    assert os.listdir(ledger.path.parent) == ["ledger.json"]  # no temp file left
    # read returns what was written
    read = ok(ledger())
    assert read["changed"] is False and read["exists"] is True and read["ledger"] == on_disk


def test_modes_do_not_depend_on_umask_or_old_file(ledger):
    ledger.write_raw("")
    ledger.path.chmod(0o600)
    old_umask = os.umask(0o077)
    try:
        ok(ledger("served", rel("1.0.0")))
        ok(ledger("served", rel("1.0.0"), service="cart"))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o644
    cart = ledger.dir / "cart"
    assert stat.S_IMODE(cart.stat().st_mode) == 0o755
    assert stat.S_IMODE((cart / "ledger.json").stat().st_mode) == 0o644


def test_served_without_deploy_id_gets_a_timestamp_id(ledger):
    result = ok(ledger("served", rel("1.0.0", deploy_id="")))
    deploy_id = result["current"]["deploy_id"]
    assert len(deploy_id) == 16 and deploy_id[8] == "T" and deploy_id.endswith("Z"), deploy_id
    assert deploy_id.replace("T", "").rstrip("Z").isdigit()


def test_served_same_release_again_does_not_write(ledger):
    ok(ledger("served", rel("1.0.0")))
    before = ledger.path.read_text()
    os.utime(ledger.path, (1_000_000_000, 1_000_000_000))
    result = ok(ledger("served", rel("1.0.0", deploy_id="awx-other"), diff=True))
    assert result["changed"] is False
    assert ledger.path.stat().st_mtime == 1_000_000_000
    assert ledger.path.read_text() == before
    assert result["diff"]["before"] == result["diff"]["after"] == before


def test_served_new_version_makes_old_current_previous(ledger):
    first = ok(ledger("served", rel("1.0.0")))["current"]
    result = ok(ledger("served", rel("1.1.0", slot="green")))
    assert result["changed"] is True
    assert result["current"]["version"] == "1.1.0"
    assert result["previous"] == first
    on_disk = ledger.load()
    assert on_disk["slot"] == "green" and on_disk["previous"] == first
    assert events(on_disk["history"]) == [("served", "1.1.0"), ("served", "1.0.0")]


def test_failed_keeps_current_and_previous_and_records_reason(ledger):
    ok(ledger("served", rel("1.0.0")))
    before = ok(ledger("served", rel("1.1.0", slot="green")))["ledger"]
    result = ok(ledger("failed", rel("1.2.0-bad", slot="blue"), reason="HTTP health gate failed on app2"))
    assert result["changed"] is True
    on_disk = ledger.load()
    assert on_disk["current"] == before["current"] and on_disk["previous"] == before["previous"]
    assert on_disk["slot"] == "green"
    entry = on_disk["history"][0]
    assert entry["event"] == "failed" and entry["version"] == "1.2.0-bad"
    assert entry["reason"] == "HTTP health gate failed on app2" and entry["at"].endswith("Z")
    # each failure is an event
    ok(ledger("failed", rel("1.2.0-bad", slot="blue"), reason="again"))
    assert events(ledger.load()["history"])[:2] == [("failed", "1.2.0-bad"), ("failed", "1.2.0-bad")]


def test_after_failed_release_previous_is_still_the_last_good_one(ledger):
    ok(ledger("served", rel("1.0.0")))
    ok(ledger("served", rel("1.1.0", slot="green")))
    ok(ledger("failed", rel("1.2.0-bad", slot="blue"), reason="gate"))
    result = ok(ledger("served", rel("1.2.0", slot="blue")))
    assert result["current"]["version"] == "1.2.0"
    assert result["previous"]["version"] == "1.1.0"


def test_rolled_back_never_makes_the_bad_release_previous(ledger):
    ok(ledger("served", rel("1.0.0")))
    ok(ledger("served", rel("1.1.0", slot="green")))
    target = ledger.load()["previous"]
    result = ok(ledger("rolled_back", target, reason="5xx rate 12 % after the flip"))
    assert result["changed"] is True
    on_disk = ledger.load()
    assert on_disk["current"]["version"] == "1.0.0" and on_disk["slot"] == "blue"
    assert on_disk["previous"] is None  # not 1.1.0: it was rolled back
    # the history rules are tested in test_release_ledger_rules.py; here: the module wrote them to disk
    rolled = on_disk["history"][1]
    assert (rolled["event"], rolled["version"], rolled["slot"]) == ("rolled_back", "1.1.0", "green")
    assert rolled["reason"] == "5xx rate 12 % after the flip"
    # rolling back again to the same target changes nothing
    again = ok(ledger("rolled_back", target, reason="retry"))
    assert again["changed"] is False and ledger.load() == on_disk


def test_rolled_back_previous_is_an_older_good_release(ledger):
    ok(ledger("served", rel("0.9.0", slot="green")))
    ok(ledger("served", rel("1.0.0", slot="blue")))
    ok(ledger("served", rel("1.1.0", slot="green")))
    result = ok(ledger("rolled_back", rel("1.0.0", slot="blue"), reason="errors"))
    assert result["current"]["version"] == "1.0.0"
    assert result["previous"]["version"] == "0.9.0"


def test_redeployed_rolled_back_release_is_a_valid_previous_after_a_newer_deploy(ledger):
    ok(ledger("served", rel("1.0.0")))
    ok(ledger("served", rel("1.1.0", slot="green")))
    ok(ledger("rolled_back", rel("1.0.0"), reason="errors"))
    assert ok(ledger("served", rel("1.1.0", slot="green")))["previous"]["version"] == "1.0.0"
    result = ok(ledger("served", rel("1.2.0", slot="blue")))
    assert result["previous"]["version"] == "1.1.0"


def test_digest_decides_identity_only_when_both_sides_have_one(ledger):
    ok(ledger("served", rel("1.0.0", digest="sha256:aaa")))
    # same version, no digest given: the same release, nothing to write
    assert ok(ledger("served", rel("1.0.0", digest="")))["changed"] is False
    # same version, another digest: a rebuilt image is another release
    result = ok(ledger("served", rel("1.0.0", digest="sha256:bbb")))
    assert result["changed"] is True
    assert result["current"]["digest"] == "sha256:bbb"
    assert result["previous"]["digest"] == "sha256:aaa"


def test_history_is_trimmed(ledger):
    for patch in range(5):
        ok(ledger("served", rel("1.0.%d" % patch), history_size=3))
    on_disk = ledger.load()
    assert [e["version"] for e in on_disk["history"]] == ["1.0.4", "1.0.3", "1.0.2"]
    assert on_disk["previous"]["version"] == "1.0.3"


def test_check_mode_writes_nothing_and_predicts(ledger):
    result = ok(ledger("served", rel("1.0.0"), check_mode=True, diff=True))
    assert result["changed"] is True and result["current"]["version"] == "1.0.0"
    assert not ledger.dir.exists()
    assert result["diff"]["before"] == ""
    assert json.loads(result["diff"]["after"]) == result["ledger"]

    ok(ledger("served", rel("1.0.0")))
    before = ledger.path.read_text()
    result = ok(ledger("failed", rel("1.1.0"), reason="gate", check_mode=True, diff=True))
    assert result["changed"] is True and result["ledger"]["history"][0]["event"] == "failed"
    assert ledger.path.read_text() == before
    assert result["diff"]["before"] == before and result["diff"]["after"] != before
    result = ok(ledger("rolled_back", rel("0.9.0"), reason="x", check_mode=True))
    assert result["changed"] is True and result["current"]["version"] == "0.9.0"
    assert ledger.path.read_text() == before
    assert os.listdir(ledger.path.parent) == ["ledger.json"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "is not valid JSON"),
        ('["catalog"]', "is not a JSON object but a list"),
        ('{"history": "none"}', "has a history that is a string, expected a list"),
    ],
)
@pytest.mark.parametrize("event", ["read", "served"])
def test_corrupt_ledger_fails_and_is_left_alone(ledger, text, message, event):
    ledger.write_raw(text)
    os.utime(ledger.path, (1_000_000_000, 1_000_000_000))
    result = ledger(event, rel("1.0.0") if event == "served" else None)
    assert result.failed
    assert str(ledger.path) in result["msg"] and message in result["msg"], result["msg"]
    assert ledger.path.read_text() == text
    assert ledger.path.stat().st_mtime == 1_000_000_000


def test_empty_file_is_the_empty_ledger(ledger):
    ledger.write_raw("")
    result = ok(ledger())
    assert result["exists"] is True and result["ledger"]["current"] is None
    ok(ledger("served", rel("1.0.0")))
    assert ledger.load()["current"]["version"] == "1.0.0"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            {"event": "failed", "release": rel("1.1.0")},
            "reason is required with event=failed",
        ),
        (
            {"event": "rolled_back", "release": rel("1.0.0"), "reason": ""},
            "reason is required with event=rolled_back",
        ),
        (
            {"event": "served", "release": {"slot": "blue"}},
            "release.version must be a non-empty string, got None",
        ),
        (
            {"event": "served", "release": {"version": ""}},
            "release.version must be a non-empty string, got ''",
        ),
        (
            {"event": "served", "release": rel("1.1.0", slot="purple")},
            "release.slot must be blue or green, got 'purple'",
        ),
        (
            {"event": "served", "service": "../x", "release": rel("1.1.0")},
            "service must be a name like catalog, got '../x'",
        ),
        (
            {"event": "served", "release": rel("1.1.0"), "history_size": 0},
            "history_size must be at least 1, got 0",
        ),
        (
            {"event": "served"},
            "event is served but all of the following are missing: release",
        ),
    ],
)
def test_bad_inputs_fail_clearly_and_write_nothing(ledger, args, message):
    ok(ledger("served", rel("1.0.0")))
    before = ledger.path.read_text()
    os.utime(ledger.path, (1_000_000_000, 1_000_000_000))
    params = dict(args)
    event = params.pop("event")
    result = ledger(event, params.pop("release", None), params.pop("reason", None), **params)
    assert result.failed
    assert message in result["msg"], result["msg"]
    assert ledger.path.read_text() == before
    assert ledger.path.stat().st_mtime == 1_000_000_000
    assert sorted(p.name for p in ledger.dir.iterdir()) == ["catalog"]


def test_legacy_ledger_is_read_and_updated(ledger):
    v1 = {
        "version": "1.0.0",
        "image": "reg/catalog:1.0.0",
        "digest": "sha256:a",
        "image_id": "sha256:i1",
        "slot": "green",
        "runtime": "docker",
        "deploy_id": "20260101T000000Z",
        "deployed_at": "2026-01-01T00:00:00Z",
    }
    v2 = dict(v1, version="1.1.0", digest="sha256:b", slot="blue", deployed_at="2026-01-02T00:00:00Z")
    legacy = {
        "service": "catalog",
        "slot": "blue",
        "current": v2,
        "previous": v1,
        "history": [v2, v1],
        "updated_at": "2026-01-02T00:00:00Z",
    }
    ledger.write_raw(json.dumps(legacy, indent=2))
    read = ok(ledger())
    assert read["ledger"] == legacy and read["current"] == v2 and read["previous"] == v1
    # the same release again: still nothing to write, and the file is not reformatted
    same = ok(ledger("served", dict(v2, deploy_id="x"), diff=True))
    assert same["changed"] is False
    assert same["diff"]["before"] == same["diff"]["after"] == json.dumps(legacy, indent=2)
    assert ledger.path.read_text() == json.dumps(legacy, indent=2)
    # a new release: the legacy current becomes previous
    result = ok(ledger("served", rel("1.2.0", slot="green")))
    assert result["previous"] == v2
    assert events(ledger.load()["history"]) == [("served", "1.2.0"), (None, "1.1.0"), (None, "1.0.0")]
    # roll back to it; the legacy 1.0.0 is the rollback target after that
    result = ok(ledger("rolled_back", result["previous"], reason="errors"))
    assert result["current"]["version"] == "1.1.0" and result["current"]["slot"] == "blue"
    assert result["previous"] == v1


def test_each_service_has_its_own_ledger_and_read_works_in_check_mode(ledger, run_module):
    ok(ledger("served", rel("1.0.0")))
    params = {"service": "cart.api-v2_x", "ledger_dir": str(ledger.dir), "event": "served", "release": rel("2.0.0")}
    result = ok(run_module(release_ledger, params))
    assert result["path"] == str(ledger.dir / "cart.api-v2_x" / "ledger.json")
    assert result["ledger"]["service"] == "cart.api-v2_x"
    read = ok(ledger(check_mode=True))
    assert read["changed"] is False and read["current"]["version"] == "1.0.0"
