# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The rules of the release ledger, without files.

Private to the vmfleet.deploy collection: no compatibility promise is made to
anything outside it. The ``release_ledger`` module reads and writes the file
(``<ledger_dir>/<service>/ledger.json``); this file holds the rules, so that
they can be tested without files and reused by a filter:

* ``parse_ledger`` / ``render_ledger``: the JSON text of a ledger, both ways;
  a missing or empty file is ``empty_ledger(service)``;
* ``normalize_release``: checks a release given by a user and stores its values
  as strings;
* ``same_release``: the identity of a release, (version, digest), where digests
  count only when both sides have one;
* ``previous_release``: the rollback target, worked out from the history;
* ``apply_event``: the ledger after ``served``, ``failed`` or ``rolled_back``.

The rules:

* A release becomes ``current`` only once it serves traffic.
* A release that failed or was rolled back never becomes ``previous``: it goes
  into the history, marked ``failed`` or ``rolled_back``, with the reason.
* ``previous`` is the rollback target, and the ledger is the only source for it.

Runs on managed hosts: Python 3.8 syntax and the standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import errno
import json
import os
import re

EVENTS = ("read", "served", "failed", "rolled_back", "analysed")
WRITE_EVENTS = ("served", "failed", "rolled_back", "analysed")
# Events that only add a history entry (with a reason): current, previous and slot stay.
NOTE_EVENTS = ("failed", "analysed")
# Events of a history entry that take a release out of the candidates for previous.
BAD_EVENTS = ("failed", "rolled_back")
SLOTS = ("blue", "green")
# The keys of a release that the ledger knows; their values are stored as strings.
RELEASE_KEYS = ("version", "image", "digest", "image_id", "slot", "runtime", "strategy", "deploy_id")
# The keys a history entry adds to a release; they are never part of a release.
ENTRY_KEYS = ("event", "at", "reason")
DEFAULT_HISTORY_SIZE = 50
SERVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def make_dirs(directory, mode=0o755):
    """Create ``directory`` and its missing parents with ``mode``, whatever the umask.

    A directory that another run creates in the meantime is fine. Shared by the
    release ledger and the deploy lock.
    """
    missing = []
    path = directory
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, mode)
        except OSError as exc:
            if exc.errno != errno.EEXIST or not os.path.isdir(path):
                raise
            continue
        os.chmod(path, mode)  # not narrowed by the umask


class LedgerError(Exception):
    """A ledger or a release that cannot be used, with a message for the user."""


def check_service(service, error=None):
    """Return ``service`` when it is a plain name (it becomes a directory or file name).

    Else raise ``error`` (an exception class, LedgerError by default) with the message.
    The deploy lock checks its service names with this too.
    """
    if not isinstance(service, str) or not SERVICE_RE.match(service):
        raise (error or LedgerError)("service must be a name like catalog, got %r" % (service,))
    return service


def utc_stamp(now):
    """``2026-11-28T03:15:00Z``: the ledger's timestamps."""
    return _utc(now).strftime("%Y-%m-%dT%H:%M:%SZ")


def deploy_id_stamp(now):
    """``20261128T031500Z``: the deploy id of a release recorded without one."""
    return _utc(now).strftime("%Y%m%dT%H%M%SZ")


def _utc(now):
    if now is None:
        return datetime.datetime.now(datetime.timezone.utc)
    if now.tzinfo is None:
        return now.replace(tzinfo=datetime.timezone.utc)
    return now.astimezone(datetime.timezone.utc)


def empty_ledger(service):
    return dict(service=service, slot=None, current=None, previous=None, history=[], updated_at=None)


def parse_ledger(text, path, service):
    """The ledger in ``text`` (the content of ``path``).

    Empty text (or ``None``: no file) is the empty ledger. Text that is not a
    JSON object, or whose current, previous or history have the wrong shape,
    raises ``LedgerError`` naming ``path``.
    """
    if text is None or not text.strip():
        return empty_ledger(service)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise LedgerError(
            "the ledger %s is not valid JSON (%s); fix or remove it, it is not overwritten" % (path, exc)
        ) from None
    if not isinstance(data, dict):
        raise LedgerError(
            "the ledger %s is not a JSON object but %s; fix or remove it, it is not overwritten"
            % (path, _json_type(data))
        )
    ledger = empty_ledger(service)
    ledger.update(data)
    for key in ("current", "previous"):
        if ledger[key] is not None and not isinstance(ledger[key], dict):
            raise LedgerError(
                "the ledger %s has a %s that is %s, expected an object or null; fix or remove it"
                % (path, key, _json_type(ledger[key]))
            )
    if ledger["history"] is None:
        ledger["history"] = []
    if not isinstance(ledger["history"], list):
        raise LedgerError(
            "the ledger %s has a history that is %s, expected a list; fix or remove it"
            % (path, _json_type(ledger["history"]))
        )
    for index, entry in enumerate(ledger["history"]):
        if not isinstance(entry, dict):
            raise LedgerError(
                "the ledger %s has history entry %d that is %s, expected an object; fix or remove it"
                % (path, index, _json_type(entry))
            )
    return ledger


def render_ledger(ledger):
    """The file content: JSON, keys sorted, indent 2, trailing newline."""
    return json.dumps(ledger, indent=2, sort_keys=True, separators=(",", ": "), ensure_ascii=False) + "\n"


def _json_type(value):
    """What ``value`` is in JSON words, with its article: "a list", "an object"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a %s" % type(value).__name__


def _text(key, value):
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    hint = " (quote it: YAML reads 1.10 as the number 1.1)" if key == "version" and isinstance(value, float) else ""
    raise LedgerError("release.%s must be a string, got %r (%s)%s" % (key, value, _json_type(value), hint))


def normalize_release(release):
    """A copy of ``release`` checked and ready to store.

    ``version`` must be a non-empty string; ``slot``, when given, blue or green.
    The known keys (``RELEASE_KEYS``) are stored as strings or null; other keys
    are kept as given, except ``event``, ``at``, ``reason`` (the history's own)
    and ``deployed_at`` (set when the release starts to serve), which are dropped.
    """
    if not isinstance(release, dict):
        raise LedgerError("release must be a dictionary with at least a version, got %r" % (release,))
    out = {}
    for key, value in release.items():
        if key in ENTRY_KEYS or key == "deployed_at":
            continue
        out[key] = _text(key, value) if key in RELEASE_KEYS else copy.deepcopy(value)
    version = out.get("version")
    if version is None or not version.strip():
        raise LedgerError("release.version must be a non-empty string, got %r" % (release.get("version"),))
    slot = out.get("slot")
    if slot and slot not in SLOTS:
        raise LedgerError("release.slot must be blue or green, got %r" % (slot,))
    return out


def _filled(value):
    return value is not None and value != ""


def same_release(a, b):
    """Whether ``a`` and ``b`` are the same release: same version, and the same
    digest when both have a non-empty digest (otherwise the version alone)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    version_a, version_b = a.get("version"), b.get("version")
    if not _filled(version_a) or version_a != version_b:
        return False
    digest_a, digest_b = a.get("digest"), b.get("digest")
    if _filled(digest_a) and _filled(digest_b):
        return digest_a == digest_b
    return True


def _same_value(a, b, key):
    """Equal, or unknown on one side (an older ledger without a runtime ...)."""
    value_a, value_b = a.get(key), b.get(key)
    return not _filled(value_a) or not _filled(value_b) or value_a == value_b


def same_placement(a, b):
    """Same release in the same slot."""
    return same_release(a, b) and _same_value(a, b, "slot")


def as_release(entry):
    """A history entry without its event keys (event, at, reason)."""
    return dict((key, copy.deepcopy(value)) for key, value in entry.items() if key not in ENTRY_KEYS)


def previous_release(history, current):
    """The rollback target: the newest release in ``history`` (newest first) that
    served, is not ``current``, and was not failed or rolled back in a newer entry.

    An entry without ``event`` (the old ledger format) counts as served. Returns a
    release (without event, at, reason) or ``None``.
    """
    bad = []
    for entry in history or []:
        if not isinstance(entry, dict):
            continue
        event = entry.get("event", "served")
        if event in BAD_EVENTS:
            bad.append(entry)
            continue
        if event != "served":
            continue
        if same_release(entry, current):
            continue
        if any(same_release(entry, other) for other in bad):
            continue
        return as_release(entry)
    return None


def _entry(event, at, release, reason=None):
    entry = as_release(release)
    entry["event"] = event
    entry["at"] = at
    if reason is not None:
        entry["reason"] = reason
    return entry


def _serving(release, now):
    """``release`` as it becomes current: with deployed_at and a deploy id."""
    current = copy.deepcopy(release)
    current["deployed_at"] = utc_stamp(now)
    if not _filled(current.get("deploy_id")):
        current["deploy_id"] = deploy_id_stamp(now)
    return current


def apply_event(ledger, event, release=None, reason=None, now=None, history_size=DEFAULT_HISTORY_SIZE):
    """Return ``(new_ledger, changed)`` for ``event`` on ``ledger`` (not modified).

    * ``read``: the ledger as it is.
    * ``served``: ``release`` serves traffic and becomes current; no change when
      the current release is the same release in the same slot and runtime.
    * ``failed``: a history entry with the reason; current, previous and slot stay.
    * ``analysed``: the same for a canary step's verdict (the reason holds it, with
      its numbers); the release does not count as failed for ``previous``.
    * ``rolled_back``: the current release is taken out of service (history entry
      ``rolled_back`` with the reason) and ``release``, the rollback target,
      serves; no change when the target already is current in its slot.

    ``previous`` is then ``previous_release`` of the new history, which is cut to
    the newest ``history_size`` entries.
    """
    if event not in EVENTS:
        raise LedgerError("event must be one of %s, got %r" % (", ".join(EVENTS), event))
    ledger = copy.deepcopy(ledger)
    if event == "read":
        return ledger, False
    if isinstance(history_size, bool) or not isinstance(history_size, int) or history_size < 1:
        raise LedgerError("history_size must be a whole number of at least 1, got %r" % (history_size,))
    if release is None:
        raise LedgerError("release is required with event=%s" % event)
    release = normalize_release(release)
    if (event in BAD_EVENTS or event in NOTE_EVENTS) and (reason is None or not str(reason).strip()):
        raise LedgerError("reason is required with event=%s: say why, for example 'health gate failed'" % event)

    old = ledger.get("current")
    at = utc_stamp(now)
    new_entries = []
    if event == "served":
        if old is not None and same_placement(old, release) and _same_value(old, release, "runtime"):
            return ledger, False
        current = _serving(release, now)
        new_entries.append(_entry("served", at, current))
    elif event in NOTE_EVENTS:
        current = None
        new_entries.append(_entry(event, at, release, reason))
    else:
        if old is not None and same_placement(old, release):
            return ledger, False
        current = _serving(release, now)
        # Newest first: the target serves after the old current was taken out.
        new_entries.append(_entry("served", at, current))
        if old is not None:
            new_entries.append(_entry("rolled_back", at, old, reason))

    history = new_entries + list(ledger.get("history") or [])
    if current is not None:
        ledger["current"] = current
        if _filled(current.get("slot")):
            ledger["slot"] = current["slot"]
        # Worked out before the cut, so a short history still knows the release before.
        ledger["previous"] = previous_release(history, current)
    ledger["history"] = history[:history_size]
    ledger["updated_at"] = at
    return ledger, True
