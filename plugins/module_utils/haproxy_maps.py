# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Changes to HAProxy maps, live (runtime API) and in their files, as one plan.

Shared by the modules vmfleet.deploy.haproxy_map (which makes the changes a task asks for) and
vmfleet.deploy.haproxy_map_guard (which makes them when a lease runs out).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import tempfile

from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import (
    HAProxyRuntimeError,
    MapFile,
)

# The options of one change: the top-level ones (single form of haproxy_map) or one entry.
CHANGE_OPTIONS = ("map", "key", "value", "state", "map_file")

# The argument spec of one entry of a list of changes.
ENTRY_SPEC = dict(
    map=dict(type="str", required=True),
    key=dict(type="str", required=True, no_log=False),
    value=dict(type="str"),
    state=dict(type="str", choices=["present", "absent"], default="present"),
    map_file=dict(type="path"),
)


def check_change(change, where=""):
    """Check one change's key and value; ``where`` names the entry in messages."""
    key, value, state = change["key"], change["value"], change["state"]
    if not key or re.search(r"\s", key):
        raise HAProxyRuntimeError("%skey must be non-empty and without blanks, got %r" % (where, key))
    if value is not None and ("\n" in value or "\r" in value):
        raise HAProxyRuntimeError("%svalue cannot contain a newline" % where)
    if state == "present":
        if value is None:
            # The single form's wording is AnsibleModule's own (required_if).
            raise HAProxyRuntimeError("%sstate is present but all of the following are missing: value" % where)
        if not value:
            raise HAProxyRuntimeError("%svalue cannot be empty with state=present" % where)
        if value.strip() != value:
            raise HAProxyRuntimeError(
                "%svalue cannot start or end with blanks (HAProxy trims them in map files)" % where
            )


class _Change(object):
    """One requested change and what the module found and did for it."""

    def __init__(self, params):
        self.map = params["map"]
        self.key = params["key"]
        self.value = params["value"] if params["state"] == "present" else None
        self.map_file_param = params["map_file"]
        self.live_id = self.map  # the identifier the live maps are read and changed with
        self.path = None
        self.before = {}
        self.after = {}
        self.runtime_changed = False
        self.file_changed = False

    def result(self):
        return dict(
            map=self.map,
            map_file=self.path,
            key=self.key,
            before=dict(self.before),
            after=dict(self.after),
            runtime_changed=self.runtime_changed,
            file_changed=self.file_changed,
        )


class _FileState(object):
    """A map file being edited: its text as read, and as the entries leave it."""

    def __init__(self, path):
        self.path = path
        self.mapfile = MapFile(path)
        self.text = self.mapfile.text
        self.created = False  # an entry creates the missing file

    @property
    def changed(self):
        return self.text != self.mapfile.text or self.created


class HAProxyMapManager(object):
    """Plans, applies and reports a list of map changes (the single form is a list of one)."""

    def __init__(self, module, client, changes):
        self.module = module
        self.client = client
        self.changes = [_Change(params) for params in changes]
        self.files = {}  # absolute path -> _FileState
        self.live_before = {}  # live_id -> {key: [values]}

    # -- reading
    def read(self):
        """Read every live map and map file concerned, and resolve the files of #<id> maps."""
        files_of_ids = {}
        if any(c.map.startswith("#") for c in self.changes):
            files_of_ids = dict(("#%d" % m["id"], m["file"]) for m in self.client.show_maps() if m["file"])
        for change in self.changes:
            if change.map.startswith("#") and change.map in files_of_ids:
                # One map, one identifier: "#3" and its file are the same map.
                change.live_id = files_of_ids[change.map]
        live = self.client.read_maps([c.live_id for c in self.changes])
        for live_id, entries in live.items():
            values = self.live_before[live_id] = {}
            for entry in entries:
                values.setdefault(entry["key"], []).append(entry["value"])
        for change in self.changes:
            if change.map_file_param:
                change.path = change.map_file_param
            elif not change.map.startswith("#"):
                change.path = change.map
            else:
                change.path = files_of_ids.get(change.map)
            if not change.path:
                self.module.warn(
                    "HAProxy reports no file for map %s: the change is live only and a reload will undo it" % change.map
                )
                continue
            real = os.path.abspath(change.path)
            if real not in self.files:
                self.files[real] = _FileState(change.path)

    def plan(self):
        """Work out, entry after entry, the values before and after each one."""
        live = dict((live_id, dict(values)) for live_id, values in self.live_before.items())
        for change in self.changes:
            values = live[change.live_id].get(change.key, [])
            if change.value is None:
                change.runtime_changed = bool(values)
                after_values = []
            else:
                change.runtime_changed = not values or any(v != change.value for v in values)
                after_values = [change.value] * (len(values) or 1)
            live[change.live_id][change.key] = after_values
            change.before["runtime"] = values[0] if values else None
            change.after["runtime"] = change.value

            state = self.files.get(os.path.abspath(change.path)) if change.path else None
            if state is None:
                change.before["file"] = change.after["file"] = None
                continue
            change.before["file"] = state.mapfile.value(change.key, state.text)
            new_text = state.mapfile.render(change.key, change.value, state.text)
            exists = state.mapfile.exists or state.created
            change.file_changed = new_text != state.text or (not exists and change.value is not None)
            if not exists and change.value is not None:
                state.created = True
            state.text = new_text
            change.after["file"] = change.value

    # -- changing
    @staticmethod
    def check_writable(path):
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise HAProxyRuntimeError("cannot write map file %s: directory %s does not exist" % (path, directory))
        if not os.access(directory, os.W_OK):
            raise HAProxyRuntimeError("cannot write map file %s: directory %s is not writable" % (path, directory))

    def write_file(self, path, text):
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(to_bytes(text, errors="surrogate_or_strict"))
                handle.flush()
                os.fsync(handle.fileno())
            self.module.atomic_move(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def apply(self):
        changed_files = [state for state in self.files.values() if state.changed]
        # Every file that must follow the live change can be written, or nothing changes.
        for state in changed_files:
            self.check_writable(state.path)
        if any(c.runtime_changed for c in self.changes):
            applied = self.client.apply_map_changes([(c.live_id, c.key, c.value) for c in self.changes])
            for change, done in zip(self.changes, applied):
                change.runtime_changed = done
        for state in changed_files:
            self.write_file(state.path, state.text)
        # The live value after the last entry of each key, as HAProxy now has it.
        live = self.client.read_maps([c.live_id for c in self.changes])
        last = dict(((c.live_id, c.key), c) for c in self.changes)
        for (live_id, key), change in last.items():
            values = [e["value"] for e in live[live_id] if e["key"] == key]
            change.after["runtime"] = values[0] if values else None

    # -- reporting
    def diff(self):
        diffs = []
        touched = {}  # live_id -> {key: (first before, last after)} in first-touch order
        for change in self.changes:
            keys = touched.setdefault(change.live_id, {})
            first = keys[change.key][0] if change.key in keys else change.before["runtime"]
            keys[change.key] = (first, change.value)
        names = dict((c.live_id, c.map) for c in reversed(self.changes))
        for live_id, keys in touched.items():
            header = "HAProxy map %s (live)" % names[live_id]
            diffs.append(
                dict(
                    before_header=header,
                    after_header=header,
                    before="".join(_entry(key, values[0]) for key, values in keys.items()),
                    after="".join(_entry(key, values[1]) for key, values in keys.items()),
                )
            )
        for state in self.files.values():
            diffs.append(
                dict(before_header=state.path, after_header=state.path, before=state.mapfile.text, after=state.text)
            )
        return diffs

    def __call__(self):
        self.read()
        self.plan()
        if not self.module.check_mode:
            self.apply()
        results = [change.result() for change in self.changes]
        result = dict(
            changed=any(r["runtime_changed"] or r["file_changed"] for r in results),
            results=results,
        )
        if self.module._diff:
            result["diff"] = self.diff()
        return result


def _entry(key, value):
    return "" if value is None else "%s %s\n" % (key, value)
