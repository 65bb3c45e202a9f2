"""Tests for vmfleet.deploy.deploy_lock, driven through main() on real files in tmp_path."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from ansible_collections.vmfleet.deploy.plugins.modules import deploy_lock

INFO = dict(owner="alice@ctl", job_id="42", strategy="rolling", version="1.1.0")


@pytest.fixture
def lock(tmp_path, run_module):
    """lock(state, **args) runs the module on tmp_path/locks for catalog."""

    class Lock:
        dir = tmp_path / "locks"
        path = tmp_path / "locks" / "catalog.lock"
        guard = tmp_path / "locks" / ".catalog.lock.guard"

        def __call__(self, state="acquired", check_mode=False, diff=False, **args):
            params = {"service": "catalog", "lock_dir": str(self.dir), "state": state}
            params.update(args)
            return run_module(deploy_lock, params, check_mode=check_mode, diff=diff)

        def load(self):
            return json.loads(self.path.read_text())

        def write(self, data):
            self.dir.mkdir(parents=True, exist_ok=True)
            self.path.write_text(data if isinstance(data, str) else json.dumps(data))

        def held_by_bob(self, expires_in):
            """A lock file of another run, expiring ``expires_in`` seconds from now (negative: expired)."""
            now = time.time()
            data = dict(
                service="catalog",
                token="tok-bob",
                owner="bob@ctl",
                job_id="41",
                strategy="canary",
                version="1.0.9",
                ttl=600,
                acquired_at="2026-11-28T12:00:00Z",
                acquired_at_epoch=now - 600,
                refreshed_at="2026-11-28T12:00:00Z",
                expires_at="2026-11-28T12:10:00Z",
                expires_at_epoch=now + expires_in,
            )
            self.write(data)
            return data

    return Lock()


def ok(result):
    assert not result.failed, result
    assert not result.get("warnings"), result
    return result


def failed(result, *messages):
    assert result.failed, result
    for message in messages:
        assert message in result["msg"], result["msg"]
    return result


def test_acquire_free_lock_writes_the_file(lock):
    result = ok(lock(ttl=600, **INFO))
    assert result["changed"] is True and result["held"] is True and result["expired"] is False
    assert 599 <= result["expires_in"] <= 600
    assert result["took_over"] is None and result["path"] == str(lock.path)
    token = result["token"]
    assert len(token) == 32 and int(token, 16) >= 0
    on_disk = lock.load()
    assert on_disk == result["lock"]
    assert on_disk["token"] == token and on_disk["service"] == "catalog" and on_disk["ttl"] == 600
    for key, value in INFO.items():
        assert on_disk[key] == value
    assert on_disk["acquired_at"].endswith("Z") and on_disk["expires_at"].endswith("Z")
    assert on_disk["expires_at_epoch"] == pytest.approx(on_disk["acquired_at_epoch"] + 600)
    assert abs(on_disk["expires_at_epoch"] - time.time() - 600) < 10
    # file format and modes; no temp file left
    assert lock.path.read_text() == json.dumps(on_disk, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    assert stat.S_IMODE(lock.path.stat().st_mode) == 0o644
    assert stat.S_IMODE(lock.dir.stat().st_mode) == 0o755
    assert sorted(os.listdir(lock.dir)) == [".catalog.lock.guard", "catalog.lock"]


def test_modes_do_not_depend_on_umask(lock):
    old_umask = os.umask(0o077)
    try:
        ok(lock(**INFO))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(lock.path.stat().st_mode) == 0o644
    assert stat.S_IMODE(lock.guard.stat().st_mode) == 0o644
    assert stat.S_IMODE(lock.dir.stat().st_mode) == 0o755


def test_second_acquire_with_another_token_fails_naming_the_holder(lock):
    first = ok(lock(token="tok-alice", ttl=300, **INFO))
    before = lock.path.read_text()
    result = failed(
        lock(token="tok-bob", owner="bob@ctl", strategy="canary", version="1.2.0"),
        "catalog is locked by alice@ctl (AWX job 42, rolling 1.1.0) since %s, for " % first["lock"]["acquired_at"],
        " s more; wait, or release it with vmfleet.deploy.deploy_lock state=released force=true if that run is gone",
    )
    assert result["lock"] == first["lock"] and result["held"] is True
    assert 0 < result["expires_in"] <= 300
    assert lock.path.read_text() == before
    # without a token, a new one is made up: it conflicts too
    failed(lock(**INFO), "catalog is locked by alice@ctl")


def test_acquire_with_the_same_token_refreshes_the_lock(lock):
    old = lock.held_by_bob(expires_in=30)
    result = ok(lock(token="tok-bob", ttl=1800, version="1.1.0"))
    assert result["changed"] is True and result["took_over"] is None and result["token"] == "tok-bob"
    on_disk = lock.load()
    assert on_disk == result["lock"]
    assert on_disk["expires_at_epoch"] > old["expires_at_epoch"] + 1700
    assert 1799 <= result["expires_in"] <= 1800 and on_disk["ttl"] == 1800
    assert on_disk["version"] == "1.1.0"  # given: replaced
    assert on_disk["owner"] == "bob@ctl" and on_disk["job_id"] == "41" and on_disk["strategy"] == "canary"  # kept
    assert on_disk["acquired_at"] == old["acquired_at"] and on_disk["refreshed_at"] != old["refreshed_at"]


def test_expired_lock_is_taken_over(lock):
    old = lock.held_by_bob(expires_in=-5)
    result = ok(lock(token="tok-alice", **INFO))
    assert result["changed"] is True and result["took_over"] == old
    assert result["held"] is True and lock.load()["token"] == "tok-alice"
    assert lock.load()["owner"] == "alice@ctl"


def test_release_with_the_right_token(lock):
    acquired = ok(lock(**INFO))
    result = ok(lock("released", token=acquired["token"]))
    assert result["changed"] is True and result["held"] is False and result["lock"] is None
    assert result["released"] == acquired["lock"] and result["corrupt"] is False
    assert not lock.path.exists()
    assert os.listdir(lock.dir) == [".catalog.lock.guard"]


def test_release_with_a_wrong_or_no_token_fails(lock):
    old = lock.held_by_bob(expires_in=300)
    result = failed(
        lock("released", token="tok-alice"),
        "catalog is locked by bob@ctl (AWX job 41, canary 1.0.9) since 2026-11-28T12:00:00Z, for ",
        "the token given is not the holder's: not released; "
        "release it with vmfleet.deploy.deploy_lock state=released force=true",
    )
    assert result["lock"] == old and result["held"] is True
    failed(lock("released"), "catalog is locked by bob@ctl", "no token was given")
    assert lock.load() == old


def test_release_force_removes_whoever_holds_it(lock):
    old = lock.held_by_bob(expires_in=300)
    result = ok(lock("released", force=True))
    assert result["changed"] is True and result["released"] == old and result["lock"] is None
    assert not lock.path.exists()


def test_release_when_free_is_unchanged(lock):
    result = ok(lock("released", token="tok-alice"))
    assert result["changed"] is False and result["held"] is False and result["lock"] is None
    assert result["released"] is None
    assert not lock.dir.exists()  # nothing created
    lock.dir.mkdir()
    result = ok(lock("released", force=True))
    assert result["changed"] is False and not lock.path.exists()


def test_release_of_an_expired_lock_with_another_token_leaves_it(lock):
    old = lock.held_by_bob(expires_in=-5)
    result = ok(lock("released", token="tok-alice"))
    assert result["changed"] is False and result["expired"] is True and result["lock"] == old
    assert lock.load() == old


def test_query_free_held_and_expired(lock):
    free = ok(lock("query"))
    assert free["changed"] is False and free["held"] is False and free["expired"] is False
    assert free["lock"] is None and free["expires_in"] is None
    assert "token" not in free and "took_over" not in free
    assert not lock.dir.exists()  # query never writes

    old = lock.held_by_bob(expires_in=120)
    held = ok(lock("query"))
    assert held["held"] is True and held["expired"] is False and held["lock"] == old
    assert 119 <= held["expires_in"] <= 120

    old = lock.held_by_bob(expires_in=-1)
    expired = ok(lock("query"))
    assert expired["held"] is False and expired["expired"] is True and expired["expires_in"] == 0
    assert expired["lock"] == old
    assert os.listdir(lock.dir) == ["catalog.lock"]  # not even the guard file


def test_check_mode_writes_nothing(lock):
    result = ok(lock(check_mode=True, **INFO))
    assert result["changed"] is True and result["held"] is True and result["lock"]["owner"] == "alice@ctl"
    assert result["token"] == result["lock"]["token"]
    assert not lock.dir.exists()

    old = lock.held_by_bob(expires_in=-5)
    result = ok(lock(check_mode=True, token="tok-alice"))
    assert result["took_over"] == old and result["lock"]["token"] == "tok-alice"
    assert lock.load() == old

    old = lock.held_by_bob(expires_in=300)
    result = ok(lock(check_mode=True, token="tok-bob", ttl=3600))
    assert result["changed"] is True and result["lock"]["expires_at_epoch"] > old["expires_at_epoch"]
    result = ok(lock("released", check_mode=True, token="tok-bob"))
    assert result["changed"] is True and result["released"] == old and result["lock"] is None
    result = ok(lock("released", check_mode=True, force=True))
    assert result["changed"] is True
    failed(lock(check_mode=True, token="tok-alice"), "catalog is locked by bob@ctl")
    assert lock.load() == old
    assert os.listdir(lock.dir) == ["catalog.lock"]


def test_diff(lock):
    result = ok(lock(diff=True, token="tok-alice", **INFO))
    assert result["diff"]["before"] == "" and json.loads(result["diff"]["after"]) == lock.load()
    assert result["diff"]["before_header"] == str(lock.path)
    before = lock.path.read_text()
    result = ok(lock("released", diff=True, token="tok-alice"))
    assert result["diff"]["before"] == before and result["diff"]["after"] == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (dict(ttl=0), "ttl must be a whole number of seconds, at least 1, got 0"),
        (dict(ttl=-1), "ttl must be a whole number of seconds, at least 1"),
        (dict(state="released", ttl=0), "ttl must be"),
        (dict(service="../etc"), "service must be a name like catalog, got '../etc'"),
        (dict(service=""), "service must be a name like catalog"),
        (dict(service=".hidden"), "service must be a name like catalog"),
        (dict(service="cat/alog", state="query"), "service must be a name like catalog"),
        (dict(force=True), "force is only for state=released"),
        (dict(token=""), "token must be a non-empty string"),
        (dict(state="released", token="  "), "token must be a non-empty string"),
        (dict(state="locked"), "value of state must be one of: acquired, released, query"),
    ],
)
def test_bad_input_fails_and_writes_nothing(lock, args, message):
    failed(lock(**args), message)
    assert not lock.dir.exists()


@pytest.mark.parametrize("text", ["", "not json\n", "[]\n", '{"owner": "alice@ctl"}\n'])
def test_corrupt_file_fails_and_is_never_overwritten(lock, text):
    lock.write(text)
    for args in (dict(), dict(token="tok"), dict(state="query"), dict(state="released", token="tok")):
        failed(lock(**args), "the lock file %s " % lock.path, "never overwritten", "force=true")
        assert lock.path.read_text() == text
    failed(lock(force=True), "force is only for state=released")
    assert lock.path.read_text() == text
    result = ok(lock("released", force=True, check_mode=True))
    assert result["changed"] is True and result["corrupt"] is True and lock.path.read_text() == text
    result = ok(lock("released", force=True))
    assert result["changed"] is True and result["corrupt"] is True and result["released"] is None
    assert not lock.path.exists()
    ok(lock(**INFO))


def test_locks_of_different_services_are_independent(lock):
    ok(lock(token="tok-alice", **INFO))
    other = ok(lock(token="tok-bob", service="cart"))
    assert other["held"] is True and (lock.dir / "cart.lock").exists()
    assert lock.load()["token"] == "tok-alice"
