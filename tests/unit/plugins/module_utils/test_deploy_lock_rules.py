"""Unit tests for the private module_utils.deploy_lock: the rules with ``now`` under control,
and the file functions on real files in tmp_path (including a real race between processes)."""

from __future__ import annotations

import datetime
import fcntl
import json
import multiprocessing
import os
import stat

import pytest

from ansible_collections.vmfleet.deploy.plugins.module_utils.deploy_lock import (
    CorruptLock,
    LockError,
    acquire,
    describe_holder,
    lock_paths,
    lock_status,
    parse_lock,
    plan_acquire,
    plan_release,
    query,
    release,
    render_lock,
    to_epoch,
    utc_stamp,
)

T0_DT = datetime.datetime(2026, 11, 28, 13, 0, 0, tzinfo=datetime.UTC)
T0 = T0_DT.timestamp()
INFO = dict(owner="alice@ctl", job_id="42", strategy="rolling", version="1.1.0")


def held_lock(token="tok-alice", ttl=300, now=T0, **info):
    fields = dict(INFO)
    fields.update(info)
    lock, _changed = plan_acquire(None, "catalog", token, ttl, now, **fields)
    return lock


# --- time and format -----------------------------------------------------------------------


def test_to_epoch_accepts_numbers_and_datetimes():
    assert to_epoch(T0) == T0
    assert to_epoch(int(T0)) == T0
    assert to_epoch(T0_DT) == T0
    assert to_epoch(T0_DT.replace(tzinfo=None)) == T0  # naive means UTC
    with pytest.raises(LockError):
        to_epoch("now")


def test_utc_stamp():
    assert utc_stamp(T0) == "2026-11-28T13:00:00Z"
    assert utc_stamp(T0 + 0.9) == "2026-11-28T13:00:00Z"


def test_render_and_parse_round_trip():
    lock = held_lock()
    text = render_lock(lock)
    assert text.endswith("}\n")
    assert text == json.dumps(lock, indent=2, sort_keys=True) + "\n"
    assert parse_lock(text, "/x/catalog.lock") == lock
    assert parse_lock(None, "/x/catalog.lock") is None


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "is empty"),
        ("  \n", "is empty"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not a JSON object but list"),
        ('"locked"', "is not a JSON object but str"),
        ("{}", "has no token"),
        ('{"token": "", "expires_at_epoch": 1}', "has no token"),
        ('{"token": "t"}', "has no number expires_at_epoch"),
        ('{"token": "t", "expires_at_epoch": "soon"}', "has no number expires_at_epoch"),
        ('{"token": "t", "expires_at_epoch": true}', "has no number expires_at_epoch"),
        ('{"token": "t", "expires_at_epoch": NaN}', "has no number expires_at_epoch"),
    ],
)
def test_parse_lock_rejects_what_is_not_a_lock(text, message):
    with pytest.raises(CorruptLock) as info:
        parse_lock(text, "/x/catalog.lock")
    msg = str(info.value)
    assert "/x/catalog.lock" in msg and message in msg and "never overwritten" in msg, msg


def test_lock_status():
    lock = held_lock(ttl=300)
    assert lock_status(None, T0) == dict(held=False, expired=False, expires_in=None)
    assert lock_status(lock, T0) == dict(held=True, expired=False, expires_in=300)
    assert lock_status(lock, T0 + 59.5) == dict(held=True, expired=False, expires_in=241)  # rounded up
    assert lock_status(lock, T0 + 299.99) == dict(held=True, expired=False, expires_in=1)
    assert lock_status(lock, T0 + 300) == dict(held=False, expired=True, expires_in=0)  # expiry is exclusive
    assert lock_status(lock, T0 + 9999) == dict(held=False, expired=True, expires_in=0)


def test_describe_holder():
    assert describe_holder(held_lock()) == "alice@ctl (AWX job 42, rolling 1.1.0)"
    assert describe_holder(held_lock(job_id="")) == "alice@ctl (rolling 1.1.0)"
    assert describe_holder(held_lock(job_id=None, strategy=None)) == "alice@ctl (1.1.0)"
    anonymous = held_lock(token="0123456789abcdef", owner=None, job_id=None, strategy=None, version=None)
    assert describe_holder(anonymous) == "an unnamed holder (token 01234567...)"


# --- plan_acquire --------------------------------------------------------------------------


def test_acquire_free_lock():
    lock, took_over = plan_acquire(None, "catalog", "tok", 1800, T0, **INFO)
    assert took_over is None
    assert lock == dict(
        service="catalog",
        token="tok",
        owner="alice@ctl",
        job_id="42",
        strategy="rolling",
        version="1.1.0",
        ttl=1800,
        acquired_at="2026-11-28T13:00:00Z",
        acquired_at_epoch=T0,
        refreshed_at="2026-11-28T13:00:00Z",
        expires_at="2026-11-28T13:30:00Z",
        expires_at_epoch=T0 + 1800,
    )


def test_acquire_held_lock_with_another_token_fails_naming_the_holder():
    current = held_lock(ttl=300)
    with pytest.raises(LockError) as info:
        plan_acquire(current, "catalog", "tok-bob", 1800, T0 + 60, owner="bob@ctl")
    assert str(info.value) == (
        "catalog is locked by alice@ctl (AWX job 42, rolling 1.1.0) since 2026-11-28T13:00:00Z, for 240 s more; "
        "wait, or release it with vmfleet.deploy.deploy_lock state=released force=true if that run is gone"
    )
    assert info.value.result == dict(lock=current, held=True, expired=False, expires_in=240)


def test_refresh_with_the_same_token_extends_the_expiry_and_keeps_the_start():
    current = held_lock(ttl=300)
    lock, took_over = plan_acquire(current, "catalog", "tok-alice", 600, T0 + 200, version="1.1.1", job_id="")
    assert took_over is None
    assert lock["expires_at_epoch"] == T0 + 800
    assert lock["expires_at"] == "2026-11-28T13:13:20Z"
    assert lock["refreshed_at"] == "2026-11-28T13:03:20Z" and lock["ttl"] == 600
    assert lock["acquired_at"] == "2026-11-28T13:00:00Z" and lock["acquired_at_epoch"] == T0
    # fields given replace the old ones (even empty), fields left out are kept
    assert lock["version"] == "1.1.1" and lock["job_id"] == ""
    assert lock["owner"] == "alice@ctl" and lock["strategy"] == "rolling"
    assert current["expires_at_epoch"] == T0 + 300  # the input is not modified


def test_refresh_of_own_expired_lock_is_not_a_take_over():
    current = held_lock(ttl=300)
    lock, took_over = plan_acquire(current, "catalog", "tok-alice", 300, T0 + 1000)
    assert took_over is None and lock["expires_at_epoch"] == T0 + 1300
    assert lock["acquired_at_epoch"] == T0


def test_expired_lock_is_taken_over():
    current = held_lock(ttl=300)
    # still held one instant before the expiry
    with pytest.raises(LockError):
        plan_acquire(current, "catalog", "tok-bob", 60, T0 + 299.999, owner="bob@ctl")
    lock, took_over = plan_acquire(current, "catalog", "tok-bob", 60, T0 + 300, owner="bob@ctl", strategy="canary")
    assert took_over == current
    assert lock["token"] == "tok-bob" and lock["owner"] == "bob@ctl" and lock["strategy"] == "canary"
    assert lock["job_id"] is None and lock["version"] is None  # nothing inherited from alice
    assert lock["acquired_at_epoch"] == T0 + 300 and lock["expires_at_epoch"] == T0 + 360


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(service="../etc"), "service must be a name like catalog"),
        (dict(service=""), "service must be a name like catalog"),
        (dict(ttl=0), "ttl must be a whole number of seconds, at least 1"),
        (dict(ttl=-5), "ttl must be"),
        (dict(ttl=True), "ttl must be"),
        (dict(ttl=1.5), "ttl must be"),
        (dict(token=""), "token must be a non-empty string"),
        (dict(token=None), "token is required"),
    ],
)
def test_plan_acquire_rejects_bad_input(kwargs, message):
    args = dict(current=None, service="catalog", token="tok", ttl=60, now=T0)
    args.update(kwargs)
    with pytest.raises(LockError) as info:
        plan_acquire(**args)
    assert message in str(info.value)


# --- plan_release --------------------------------------------------------------------------


def test_release_rules():
    current = held_lock(ttl=300)
    assert plan_release(None, "catalog", "tok-alice", False, T0) is False
    assert plan_release(None, "catalog", None, False, T0) is False
    assert plan_release(current, "catalog", "tok-alice", False, T0 + 10) is True
    assert plan_release(current, "catalog", "tok-alice", False, T0 + 1000) is True  # own expired lock
    assert plan_release(current, "catalog", "other", True, T0 + 10) is True
    assert plan_release(current, "catalog", None, True, T0 + 10) is True
    assert plan_release(current, "catalog", "other", False, T0 + 1000) is False  # expired: blocks nobody


@pytest.mark.parametrize(
    "token, why", [("tok-bob", "the token given is not the holder's"), (None, "no token was given")]
)
def test_release_of_another_holders_lock_fails(token, why):
    current = held_lock(ttl=300)
    with pytest.raises(LockError) as info:
        plan_release(current, "catalog", token, False, T0 + 100)
    assert str(info.value) == (
        "catalog is locked by alice@ctl (AWX job 42, rolling 1.1.0) since 2026-11-28T13:00:00Z, for 200 s more, "
        "and %s: not released; release it with vmfleet.deploy.deploy_lock state=released force=true "
        "if that run is gone" % why
    )
    assert info.value.result["lock"] == current and info.value.result["held"] is True


# --- the lock file -------------------------------------------------------------------------


def listing(directory):
    return sorted(os.listdir(directory))


def test_acquire_creates_dir_file_and_guard_with_modes(tmp_path):
    lock_dir = tmp_path / "var" / "locks"
    old_umask = os.umask(0o077)
    try:
        result = acquire(str(lock_dir), "catalog", ttl=600, now=T0, **INFO)
    finally:
        os.umask(old_umask)
    path, guard_path = lock_paths(str(lock_dir), "catalog")
    assert path == str(lock_dir / "catalog.lock") and guard_path == str(lock_dir / ".catalog.lock.guard")
    assert result["changed"] is True and result["held"] is True and result["expires_in"] == 600
    assert result["path"] == path and result["before"] is None and result["took_over"] is None
    token = result["token"]
    assert len(token) == 32 and int(token, 16) >= 0  # secrets.token_hex(16)
    on_disk = json.loads((lock_dir / "catalog.lock").read_text())
    assert on_disk == result["lock"] and on_disk["token"] == token
    assert (lock_dir / "catalog.lock").read_text() == render_lock(on_disk)
    assert stat.S_IMODE((lock_dir / "catalog.lock").stat().st_mode) == 0o644
    assert stat.S_IMODE((lock_dir / ".catalog.lock.guard").stat().st_mode) == 0o644
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o755
    assert stat.S_IMODE(lock_dir.parent.stat().st_mode) == 0o755
    assert listing(lock_dir) == [".catalog.lock.guard", "catalog.lock"]  # no temp file left


def test_tokens_are_random(tmp_path):
    first = acquire(str(tmp_path), "catalog", now=T0)["token"]
    second = acquire(str(tmp_path), "cart", now=T0)["token"]
    assert first != second


def test_file_life_cycle_with_controlled_time(tmp_path):
    lock_dir = str(tmp_path)
    first = acquire(lock_dir, "catalog", token="tok-alice", ttl=300, now=T0, **INFO)
    assert first["lock"]["expires_at_epoch"] == T0 + 300

    with pytest.raises(LockError) as info:
        acquire(lock_dir, "catalog", token="tok-bob", ttl=300, now=T0 + 60, owner="bob@ctl")
    assert "catalog is locked by alice@ctl (AWX job 42, rolling 1.1.0)" in str(info.value)
    assert "for 240 s more" in str(info.value)
    assert info.value.result["lock"] == first["lock"]
    assert json.loads((tmp_path / "catalog.lock").read_text()) == first["lock"]  # untouched

    refreshed = acquire(lock_dir, "catalog", token="tok-alice", ttl=300, now=T0 + 200)
    assert refreshed["changed"] is True and refreshed["before"] == first["lock"]
    assert refreshed["lock"]["expires_at_epoch"] == T0 + 500 and refreshed["expires_in"] == 300

    held = query(lock_dir, "catalog", now=T0 + 400)
    assert held["held"] is True and held["expires_in"] == 100 and held["changed"] is False
    expired = query(lock_dir, "catalog", now=T0 + 500)
    assert expired["held"] is False and expired["expired"] is True and expired["expires_in"] == 0
    assert expired["lock"] == refreshed["lock"]

    taken = acquire(lock_dir, "catalog", token="tok-bob", ttl=300, now=T0 + 500, owner="bob@ctl")
    assert taken["took_over"] == refreshed["lock"] and taken["lock"]["owner"] == "bob@ctl"

    with pytest.raises(LockError):
        release(lock_dir, "catalog", token="tok-alice", now=T0 + 510)
    gone = release(lock_dir, "catalog", token="tok-bob", now=T0 + 510)
    assert gone["changed"] is True and gone["lock"] is None and gone["held"] is False
    assert gone["released"] == taken["lock"] and gone["corrupt"] is False
    assert listing(tmp_path) == [".catalog.lock.guard"]
    free = query(lock_dir, "catalog", now=T0 + 520)
    assert free["lock"] is None and free["held"] is False and free["expires_in"] is None


def test_release_of_expired_lock_with_another_token_leaves_it(tmp_path):
    acquire(str(tmp_path), "catalog", token="tok-alice", ttl=300, now=T0)
    result = release(str(tmp_path), "catalog", token="tok-bob", now=T0 + 301)
    assert result["changed"] is False and result["released"] is None
    assert result["held"] is False and result["expired"] is True and result["lock"]["token"] == "tok-alice"
    assert (tmp_path / "catalog.lock").exists()


def test_release_and_query_create_nothing_when_there_is_no_directory(tmp_path):
    lock_dir = tmp_path / "locks"
    result = release(str(lock_dir), "catalog", token="tok", now=T0)
    assert result["changed"] is False and result["lock"] is None and result["released"] is None
    assert query(str(lock_dir), "catalog", now=T0)["lock"] is None
    assert not lock_dir.exists()


def test_check_mode_writes_nothing(tmp_path):
    lock_dir = tmp_path / "locks"
    result = acquire(str(lock_dir), "catalog", token="tok", now=T0, check_mode=True)
    assert result["changed"] is True and result["held"] is True and result["lock"]["token"] == "tok"
    assert not lock_dir.exists()

    acquire(str(lock_dir), "catalog", token="tok", ttl=300, now=T0)
    before = (lock_dir / "catalog.lock").read_text()
    refreshed = acquire(str(lock_dir), "catalog", token="tok", ttl=300, now=T0 + 100, check_mode=True)
    assert refreshed["lock"]["expires_at_epoch"] == T0 + 400
    released = release(str(lock_dir), "catalog", token="tok", now=T0 + 100, check_mode=True)
    assert released["changed"] is True and released["lock"] is None
    forced = release(str(lock_dir), "catalog", force=True, now=T0 + 100, check_mode=True)
    assert forced["changed"] is True
    assert (lock_dir / "catalog.lock").read_text() == before


def test_corrupt_file_is_never_overwritten_and_only_a_forced_release_removes_it(tmp_path):
    path = tmp_path / "catalog.lock"
    path.write_text("[]\n")
    for call in (
        lambda: acquire(str(tmp_path), "catalog", token="tok", now=T0),
        lambda: query(str(tmp_path), "catalog", now=T0),
        lambda: release(str(tmp_path), "catalog", token="tok", now=T0),
    ):
        with pytest.raises(CorruptLock) as info:
            call()
        assert str(path) in str(info.value)
        assert path.read_text() == "[]\n"
    result = release(str(tmp_path), "catalog", force=True, now=T0)
    assert result["changed"] is True and result["corrupt"] is True and result["released"] is None
    assert not path.exists()


def test_undecodable_file_is_corrupt(tmp_path):
    path = tmp_path / "catalog.lock"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(CorruptLock) as info:
        query(str(tmp_path), "catalog")
    assert "not UTF-8" in str(info.value)
    assert release(str(tmp_path), "catalog", force=True)["corrupt"] is True
    assert not path.exists()


def test_wall_clock_is_used_when_now_is_not_given(tmp_path):
    result = acquire(str(tmp_path), "catalog", ttl=60)
    assert result["held"] is True and result["expires_in"] in (59, 60)
    assert result["lock"]["acquired_at"].endswith("Z")
    assert abs(result["lock"]["expires_at_epoch"] - to_epoch(None) - 60) < 5


# --- a real race ---------------------------------------------------------------------------


def _contend(lock_dir, index, barrier, results):
    barrier.wait()
    try:
        result = acquire(lock_dir, "catalog", token="tok-%d" % index, ttl=600, owner="run%d" % index)
    except LockError as exc:
        results.put((index, "lost", str(exc)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        results.put((index, "error", repr(exc)))
    else:
        results.put((index, "won", result["token"]))


@pytest.mark.parametrize("dir_exists", [True, False], ids=["dir-exists", "dir-missing"])
def test_eight_processes_racing_for_one_lock_exactly_one_wins(tmp_path, dir_exists):
    lock_dir = tmp_path / "locks"
    if dir_exists:
        lock_dir.mkdir()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    results = ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(str(lock_dir), i, barrier, results)) for i in range(8)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _proc in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    assert not [o for o in outcomes if o[1] == "error"], outcomes
    winners = [o for o in outcomes if o[1] == "won"]
    assert len(winners) == 1, outcomes
    winner = winners[0][0]
    on_disk = json.loads((lock_dir / "catalog.lock").read_text())
    assert on_disk["token"] == "tok-%d" % winner and on_disk["owner"] == "run%d" % winner
    for index, _won, msg in outcomes:
        if index != winner:
            assert msg.startswith("catalog is locked by run%d since " % winner), msg
    assert listing(lock_dir) == [".catalog.lock.guard", "catalog.lock"]


def test_a_stuck_guard_fails_clearly_after_the_timeout(tmp_path):
    guard_path = lock_paths(str(tmp_path), "catalog")[1]
    with open(guard_path, "w") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        with pytest.raises(LockError) as info:
            acquire(str(tmp_path), "catalog", token="tok", now=T0, guard_timeout=0.2)
        with pytest.raises(LockError):
            release(str(tmp_path), "catalog", token="tok", now=T0, guard_timeout=0.2)
    assert "another run held the guard file %s" % guard_path in str(info.value)
    assert not (tmp_path / "catalog.lock").exists()
    # once the guard is free again, the acquire goes through
    assert acquire(str(tmp_path), "catalog", token="tok", now=T0)["held"] is True
