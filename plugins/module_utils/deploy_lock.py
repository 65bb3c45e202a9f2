# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The deploy lock: one lock file per service, and its rules.

Private to the vmfleet.deploy collection: no compatibility promise is made to
anything outside it. The ``deploy_lock`` module is a thin wrapper around this
file, which the unit tests drive directly (with ``now`` under their control):

* ``parse_lock`` / ``render_lock``: the JSON text of a lock, both ways;
* ``lock_status``: whether a lock is held at ``now``, and for how long;
* ``plan_acquire`` / ``plan_release``: the rules, without files;
* ``acquire``, ``release``, ``query``: the rules applied to
  ``<lock_dir>/<service>.lock``.

The rules:

* A lock is held until ``expires_at_epoch``; after that it is free, and the
  next acquire takes it over (and says whose lock it took over).
* Acquiring with the holder's token refreshes the lock: a new expiry, and the
  fields given. Acquiring a held lock with another token fails, naming the
  holder.
* Releasing needs the holder's token, unless forced.
* A lock file that is not a valid lock fails every call, and is never
  overwritten; only a forced release removes it.

``acquire`` and ``release`` hold an exclusive ``flock`` on the guard file
``<lock_dir>/.<service>.lock.guard`` from the read to the write, so runs on
the same host never both win. The guard file is never removed (removing it
would let two runs lock two different files). The lock is written to a
temporary file that is synced and renamed over the lock file.

Runs on managed hosts: Python 3.8 syntax and the standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import datetime
import errno
import fcntl
import json
import math
import os
import secrets
import tempfile
import time

from ansible_collections.vmfleet.deploy.plugins.module_utils.release_ledger import check_service as check_ledger_service
from ansible_collections.vmfleet.deploy.plugins.module_utils.release_ledger import make_dirs

STATES = ("acquired", "released", "query")
DEFAULT_LOCK_DIR = "/var/lib/vmfleet/locks"
DEFAULT_TTL = 1800
DIR_MODE = 0o755
FILE_MODE = 0o644
# How long acquire and release wait for another run's read-check-write on the
# same lock (a few milliseconds normally) before they give up.
GUARD_TIMEOUT = 30.0
GUARD_POLL = 0.01
# The fields a caller records in the lock.
INFO_KEYS = ("owner", "job_id", "strategy", "version")
HOW_TO_FORCE = "release it with vmfleet.deploy.deploy_lock state=released force=true"
CORRUPT_ADVICE = (
    "it is never overwritten: check it, then remove it with vmfleet.deploy.deploy_lock state=released force=true"
)


class LockError(Exception):
    """A lock call that cannot be done, with a message for the user.

    ``result`` holds what the caller should still see (the lock found, ...).
    """

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.result = result or {}


class CorruptLock(LockError):
    """A lock file that is not a valid lock: never overwritten, removed only by a forced release."""


def check_service(service):
    """Return ``service`` when it is a plain name (it becomes a file name); the ledger's rule."""
    return check_ledger_service(service, error=LockError)


def check_ttl(ttl):
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 1:
        raise LockError("ttl must be a whole number of seconds, at least 1, got %r" % (ttl,))
    return ttl


def check_token(token):
    """``None`` (no token) or a non-empty string."""
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip():
        raise LockError("token must be a non-empty string (omit it to get a new one on acquire), got %r" % (token,))
    return token


def new_token():
    return secrets.token_hex(16)


def lock_paths(lock_dir, service):
    """``(lock file, guard file)`` of ``service`` in ``lock_dir``."""
    return (
        os.path.join(lock_dir, "%s.lock" % service),
        os.path.join(lock_dir, ".%s.lock.guard" % service),
    )


def to_epoch(now):
    """Seconds since the epoch: ``now`` as given (a number, or a datetime, naive
    meaning UTC), or the wall clock when ``None``."""
    if now is None:
        return time.time()
    if isinstance(now, datetime.datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=datetime.timezone.utc)
        return now.timestamp()
    if isinstance(now, bool) or not isinstance(now, (int, float)):
        raise LockError("now must be a number of seconds or a datetime, got %r" % (now,))
    return float(now)


def utc_stamp(epoch):
    """``2026-11-28T13:00:00Z``: the lock's timestamps (UTC, whole seconds)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_lock(lock):
    """The file content: JSON, keys sorted, indent 2, trailing newline."""
    return json.dumps(lock, indent=2, sort_keys=True, separators=(",", ": "), ensure_ascii=False) + "\n"


def parse_lock(text, path):
    """The lock in ``text`` (the content of ``path``), or ``None`` (no file) when
    ``text`` is ``None``.

    Anything else that is not a JSON object with a non-empty string ``token``
    and a number ``expires_at_epoch`` (an empty file too) raises ``CorruptLock``.
    """
    if text is None:
        return None
    if not text.strip():
        raise CorruptLock("the lock file %s is empty; %s" % (path, CORRUPT_ADVICE))
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CorruptLock("the lock file %s is not valid JSON (%s); %s" % (path, exc, CORRUPT_ADVICE)) from None
    if not isinstance(data, dict):
        raise CorruptLock(
            "the lock file %s is not a JSON object but %s; %s" % (path, type(data).__name__, CORRUPT_ADVICE)
        )
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise CorruptLock("the lock file %s has no token; %s" % (path, CORRUPT_ADVICE))
    expires = data.get("expires_at_epoch")
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or math.isnan(expires):
        raise CorruptLock("the lock file %s has no number expires_at_epoch; %s" % (path, CORRUPT_ADVICE))
    return data


def lock_status(lock, now):
    """``dict(held, expired, expires_in)`` of ``lock`` at ``now`` (epoch seconds).

    ``expires_in`` is whole seconds, rounded up, while held; 0 once expired;
    ``None`` when there is no lock.
    """
    if lock is None:
        return dict(held=False, expired=False, expires_in=None)
    left = float(lock["expires_at_epoch"]) - now
    if left > 0:
        return dict(held=True, expired=False, expires_in=int(math.ceil(left)))
    return dict(held=False, expired=True, expires_in=0)


def describe_holder(lock):
    """``alice@ctl (AWX job 42, rolling 1.1.0)``: who holds ``lock``, for messages."""
    owner = lock.get("owner")
    who = str(owner) if owner else "an unnamed holder (token %s...)" % str(lock.get("token"))[:8]
    details = []
    if lock.get("job_id"):
        details.append("AWX job %s" % lock["job_id"])
    what = " ".join(str(lock[key]) for key in ("strategy", "version") if lock.get(key))
    if what:
        details.append(what)
    if details:
        who += " (%s)" % ", ".join(details)
    return who


def held_message(service, lock, now):
    """``catalog is locked by alice@ctl (AWX job 42, rolling 1.1.0) since ..., for 240 s more``."""
    since = lock.get("acquired_at") or "an unknown time"
    return "%s is locked by %s since %s, for %d s more" % (
        service,
        describe_holder(lock),
        since,
        lock_status(lock, now)["expires_in"],
    )


def plan_acquire(current, service, token, ttl, now, owner=None, job_id=None, strategy=None, version=None):
    """Return ``(new_lock, took_over)`` for an acquire of ``current`` (a lock or ``None``) at ``now``.

    * free (no lock): a new lock;
    * held with ``token``: refreshed, a new expiry, the fields given replace the old ones
      (fields not given, ``None``, are kept);
    * expired, held by another token: a new lock, and ``took_over`` is the old lock;
    * held by another token: ``LockError`` naming the holder.
    """
    check_service(service)
    check_ttl(ttl)
    if check_token(token) is None:
        raise LockError("token is required to acquire a lock")
    info = dict(owner=owner, job_id=job_id, strategy=strategy, version=version)
    status = lock_status(current, now)
    took_over = None
    if current is not None and current.get("token") == token:
        lock = dict(current)
        for key, value in info.items():
            if value is not None:
                lock[key] = value
    else:
        if status["held"]:
            raise LockError(
                "%s; wait, or %s if that run is gone" % (held_message(service, current, now), HOW_TO_FORCE),
                result=dict(lock=current, **status),
            )
        took_over = current
        lock = dict(info)
        lock["acquired_at"] = utc_stamp(now)
        lock["acquired_at_epoch"] = now
    lock["service"] = service
    lock["token"] = token
    lock["ttl"] = ttl
    lock["refreshed_at"] = utc_stamp(now)
    lock["expires_at_epoch"] = now + ttl
    lock["expires_at"] = utc_stamp(now + ttl)
    return lock, took_over


def plan_release(current, service, token, force, now):
    """Return whether releasing ``current`` (a lock or ``None``) at ``now`` removes it.

    * free (no lock): nothing to do;
    * ``force``: removed, whoever holds it;
    * the holder's ``token``: removed (expired or not);
    * expired, another token: nothing to do (it blocks nobody; the next acquire takes it over);
    * held by another token (or no token given): ``LockError`` naming the holder.
    """
    check_service(service)
    check_token(token)
    if current is None:
        return False
    if force or current.get("token") == token:
        return True
    status = lock_status(current, now)
    if not status["held"]:
        return False
    mismatch = "no token was given" if token is None else "the token given is not the holder's"
    raise LockError(
        "%s, and %s: not released; %s if that run is gone"
        % (held_message(service, current, now), mismatch, HOW_TO_FORCE),
        result=dict(lock=current, **status),
    )


def read_lock_text(path):
    """The text of the lock file ``path``, or ``None`` when it does not exist."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise LockError("cannot read the lock file %s: %s" % (path, exc)) from exc
    try:
        return data.decode("utf-8")
    except UnicodeError as exc:
        raise CorruptLock("the lock file %s is not UTF-8 text (%s); %s" % (path, exc, CORRUPT_ADVICE)) from exc


def open_guard(path):
    """A read-write descriptor of the guard file ``path``; a new one gets mode 0644 whatever the umask."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
        return os.open(path, os.O_RDWR)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def guard(path, timeout=GUARD_TIMEOUT):
    """Hold an exclusive ``flock`` on the guard file ``path`` (created, mode 0644)."""
    try:
        fd = open_guard(path)
    except OSError as exc:
        raise LockError("cannot open the lock guard file %s: %s" % (path, exc)) from exc
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise LockError("cannot lock the guard file %s: %s" % (path, exc)) from exc
            if time.monotonic() >= deadline:
                raise LockError(
                    "another run held the guard file %s for more than %d s; is a process stuck on it?" % (path, timeout)
                )
            time.sleep(GUARD_POLL)
        yield
    finally:
        # Closing the descriptor releases the flock.
        os.close(fd)


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_lock(path, lock):
    """Write ``lock`` to ``path`` atomically: temporary file, fsync, rename; mode 0644."""
    directory = os.path.dirname(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".tmp")
    except OSError as exc:
        raise LockError("cannot write the lock file %s: %s" % (path, exc)) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(render_lock(lock).encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
        fsync_dir(directory)
    except OSError as exc:
        raise LockError("cannot write the lock file %s: %s" % (path, exc)) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_lock(path):
    try:
        os.unlink(path)
        fsync_dir(os.path.dirname(path))
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise LockError("cannot remove the lock file %s: %s" % (path, exc)) from exc


def _result(path, before, after, changed, now):
    result = dict(changed=changed, path=path, lock=after, before=before)
    result.update(lock_status(after, now))
    return result


def query(lock_dir, service, now=None):
    """The lock of ``service`` at ``now``; never writes (no directory, no guard file).

    Returns ``dict(changed=False, path, lock, before, held, expired, expires_in)``;
    ``lock`` is the file's content, also when it has expired (``held`` is then false).
    """
    check_service(service)
    path = lock_paths(lock_dir, service)[0]
    lock = parse_lock(read_lock_text(path), path)
    return _result(path, lock, lock, False, to_epoch(now))


def acquire(
    lock_dir,
    service,
    token=None,
    ttl=DEFAULT_TTL,
    owner=None,
    job_id=None,
    strategy=None,
    version=None,
    now=None,
    check_mode=False,
    guard_timeout=GUARD_TIMEOUT,
):
    """Acquire (or refresh, with the holder's ``token``) the lock of ``service``.

    A missing ``token`` is made up (``secrets.token_hex``). ``now`` defaults to the
    wall clock read once the guard is held. In check mode nothing is created or
    written (and the guard is not taken).

    Returns ``dict(changed, path, lock, before, held, expired, expires_in, token,
    took_over)``; raises ``LockError`` (its ``result`` has the lock found) when
    another token holds the lock, or when the lock file is not a valid lock.
    """
    check_service(service)
    check_ttl(ttl)
    token = check_token(token)
    if token is None:
        token = new_token()
    path, guard_path = lock_paths(lock_dir, service)

    def attempt():
        epoch = to_epoch(now)
        before = parse_lock(read_lock_text(path), path)
        lock, took_over = plan_acquire(
            before, service, token, ttl, epoch, owner=owner, job_id=job_id, strategy=strategy, version=version
        )
        if not check_mode:
            write_lock(path, lock)
        result = _result(path, before, lock, True, epoch)
        result.update(token=token, took_over=took_over)
        return result

    if check_mode:
        return attempt()
    try:
        make_dirs(lock_dir, DIR_MODE)
    except OSError as exc:
        raise LockError("cannot create the lock directory %s: %s" % (lock_dir, exc)) from exc
    with guard(guard_path, guard_timeout):
        return attempt()


def release(lock_dir, service, token=None, force=False, now=None, check_mode=False, guard_timeout=GUARD_TIMEOUT):
    """Release the lock of ``service``: with the holder's ``token``, or anyone's with ``force``.

    ``force`` also removes a lock file that is not a valid lock (``corrupt`` is then
    true in the result). Nothing is created when there is no lock directory. In
    check mode nothing is removed (and the guard is not taken).

    Returns ``dict(changed, path, lock, before, held, expired, expires_in, released,
    corrupt)``, where ``released`` is the lock removed, or ``None``.
    """
    check_service(service)
    token = check_token(token)
    path, guard_path = lock_paths(lock_dir, service)

    def attempt():
        epoch = to_epoch(now)
        corrupt = False
        try:
            before = parse_lock(read_lock_text(path), path)
        except CorruptLock:
            if not force:
                raise
            before, corrupt = None, True
        changed = corrupt or plan_release(before, service, token, force, epoch)
        if changed and not check_mode:
            remove_lock(path)
        result = _result(path, before, None if changed else before, changed, epoch)
        result.update(released=before if changed else None, corrupt=corrupt)
        return result

    if check_mode or not os.path.isdir(lock_dir):
        # No directory, no lock: nothing to guard, and nothing is created.
        return attempt()
    with guard(guard_path, guard_timeout):
        return attempt()
