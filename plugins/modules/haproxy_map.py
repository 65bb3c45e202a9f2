#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: haproxy_map
short_description: Set or remove keys of HAProxy maps, live and on disk
version_added: 0.1.0
description:
  - Sets one key of an HAProxy map through the runtime API, in a single atomic command (C(set map)
    when the key exists, C(add map) when it does not), or removes it (C(del map)). HAProxy applies
    the change to the next request; no reload is needed.
  - Also rewrites the map file on disk, so that a reload or restart keeps the change. The file is
    written to a temporary file next to it and renamed over it; comments, blank lines and the
    other keys stay as they were.
  - With O(entries), applies several such changes, to one map or several, back to back in one
    runtime API connection (see O(entries)). A blue-green cutover uses this to set a service's
    split to 0 and flip its active map within a fraction of a millisecond.
  - Used for blue-green flips, where a map chooses the active backend of a service, and for the
    traffic split, where a map gives the share of new requests sent to the idle backend.
  - Reports C(changed) only when a live value or a file differs from the requested state.
author:
  - vmfleet maintainers (@vmfleet)
extends_documentation_fragment:
  - vmfleet.deploy.haproxy_runtime
  - vmfleet.deploy.attributes
  - vmfleet.deploy.attributes.CHECK_AND_DIFF
options:
  map:
    description:
      - The map as HAProxy knows it, that is the path of the map file in the configuration
        (for example V(/etc/haproxy/maps/catalog.map)), or V(#<id>) as C(show map) lists it.
      - Required unless O(entries) is given.
    type: str
  key:
    description:
      - The key to set or remove. It cannot contain blanks.
      - Required unless O(entries) is given.
    type: str
  value:
    description:
      - The value of O(key). Required with O(state=present). It cannot contain a newline.
      - It must suit the converters that read the map, for example an integer for a map read with
        C(map_str_int). HAProxy keeps the old value when it cannot parse the new one; the module
        then fails.
    type: str
  state:
    description:
      - V(present) sets O(key) to O(value); V(absent) removes every entry of O(key).
    type: str
    choices: [present, absent]
    default: present
  map_file:
    description:
      - The map file on disk to rewrite as well, so that the change survives a reload.
      - Defaults to O(map) when it is a path, or to the file HAProxy reports for a V(#<id>) map.
      - A missing file is created.
    type: path
  entries:
    description:
      - Several changes, applied in the order given. Each entry takes the options of the
        single form. Mutually exclusive with O(map), O(key), O(value), O(state) and O(map_file).
      - Every entry is checked, and every live value and map file is read, before anything
        changes. When a map file that must change cannot be written, the module fails before
        any live change.
      - The live changes are then sent back to back in one runtime API connection, each right
        after the answer to the one before, and checked. When HAProxy refuses one, the changes
        already made are undone and the module fails without writing any file.
      - The map files are rewritten last, each once, with all of its entries' changes.
      - Name one map by one identifier (its path or its V(#<id>)) in all the entries.
    type: list
    elements: dict
    suboptions:
      map:
        description: The map, as O(map).
        type: str
        required: true
      key:
        description: The key, as O(key).
        type: str
        required: true
      value:
        description: The value, as O(value). Required with O(entries[].state=present).
        type: str
      state:
        description: V(present) sets O(entries[].key); V(absent) removes it.
        type: str
        choices: [present, absent]
        default: present
      map_file:
        description: The map file, as O(map_file).
        type: path
notes:
  - The live changes come first. If a file cannot be written afterwards (a full disk), the module
    fails and running it again repairs the file.
  - With O(state=present), HAProxy changes every entry of a key that appears more than once, and
    so does the file rewrite.
seealso:
  - module: vmfleet.deploy.haproxy_map_info
  - module: vmfleet.deploy.haproxy_server
  - name: HAProxy 2.6 management guide, map commands
    description: The C(add map), C(set map), C(del map) and C(show map) commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Flip the catalog service to its green slot
  vmfleet.deploy.haproxy_map:
    socket: /run/haproxy/admin.sock
    map: /etc/haproxy/maps/vmfleet-active.map
    key: catalog
    value: catalog_green

- name: Send 25% of catalog's new requests to its idle slot
  vmfleet.deploy.haproxy_map:
    map: /etc/haproxy/maps/vmfleet-split.map
    key: catalog
    value: "25"

- name: Cut over to green with no more split (one runtime session, back to back)
  vmfleet.deploy.haproxy_map:
    entries:
      - map: /etc/haproxy/maps/vmfleet-split.map
        key: catalog
        value: "0"
      - map: /etc/haproxy/maps/vmfleet-active.map
        key: catalog
        value: catalog_green

- name: Flip through a map id, with the file named explicitly
  vmfleet.deploy.haproxy_map:
    map: "#2"
    map_file: /etc/haproxy/maps/vmfleet-active.map
    key: catalog
    value: catalog_blue

- name: Remove the canary routing entry
  vmfleet.deploy.haproxy_map:
    map: /etc/haproxy/maps/canary.map
    key: catalog
    state: absent
"""

RETURN = r"""
map:
  description: The map identifier as given.
  returned: when O(entries) is not given
  type: str
  sample: /etc/haproxy/maps/vmfleet-active.map
map_file:
  description: The map file that was compared and rewritten, or null when none could be found.
  returned: when O(entries) is not given
  type: str
  sample: /etc/haproxy/maps/vmfleet-active.map
key:
  description: The key.
  returned: when O(entries) is not given
  type: str
  sample: catalog
before:
  description: The value of O(key) before the change, live and in the file (null when absent).
  returned: when O(entries) is not given
  type: dict
  contains:
    runtime:
      description: The live value in HAProxy.
      type: str
      sample: catalog_blue
    file:
      description: The value in O(map_file).
      type: str
      sample: catalog_blue
  sample: {runtime: catalog_blue, file: catalog_blue}
after:
  description: The value of O(key) after the change (predicted in check mode).
  returned: when O(entries) is not given
  type: dict
  contains:
    runtime:
      description: The live value in HAProxy.
      type: str
      sample: catalog_green
    file:
      description: The value in O(map_file).
      type: str
      sample: catalog_green
  sample: {runtime: catalog_green, file: catalog_green}
runtime_changed:
  description: Whether the live map was (or would be) changed.
  returned: when O(entries) is not given
  type: bool
  sample: true
file_changed:
  description: Whether the map file was (or would be) rewritten.
  returned: when O(entries) is not given
  type: bool
  sample: true
results:
  description:
    - One result per entry of O(entries), in their order, with the keys of the single form.
    - C(before) and C(after) are the values just before and just after that entry, so a later
      entry for the same key starts from the value an earlier one set.
  returned: when O(entries) is given
  type: list
  elements: dict
  contains:
    map:
      description: The map identifier as given.
      type: str
    map_file:
      description: The map file that was compared and rewritten, or null when none could be found.
      type: str
    key:
      description: The key.
      type: str
    before:
      description: The value before this entry, C(runtime) and C(file) (null when absent).
      type: dict
    after:
      description: The value after this entry, C(runtime) and C(file) (predicted in check mode).
      type: dict
    runtime_changed:
      description: Whether this entry changed (or would change) the live map.
      type: bool
    file_changed:
      description: Whether this entry changed (or would change) the map file.
      type: bool
  sample:
    - map: /etc/haproxy/maps/vmfleet-split.map
      map_file: /etc/haproxy/maps/vmfleet-split.map
      key: catalog
      before: {runtime: "30", file: "30"}
      after: {runtime: "0", file: "0"}
      runtime_changed: true
      file_changed: true
    - map: /etc/haproxy/maps/vmfleet-active.map
      map_file: /etc/haproxy/maps/vmfleet-active.map
      key: catalog
      before: {runtime: catalog_blue, file: catalog_blue}
      after: {runtime: catalog_green, file: catalog_green}
      runtime_changed: true
      file_changed: true
"""

import os
import re
import tempfile
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_args import (
    haproxy_argument_spec,
    runtime_from_params,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import (
    HAProxyRuntimeError,
    MapFile,
)

# The options of one change: the top-level ones (single form) or one entry.
CHANGE_OPTIONS = ("map", "key", "value", "state", "map_file")


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


def main():
    entry_spec = dict(
        map=dict(type="str", required=True),
        key=dict(type="str", required=True, no_log=False),
        value=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        map_file=dict(type="path"),
    )
    argument_spec = haproxy_argument_spec(
        map=dict(type="str"),
        key=dict(type="str", no_log=False),
        value=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        map_file=dict(type="path"),
        entries=dict(type="list", elements="dict", options=entry_spec),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        # AnsibleModule checks these before it fills in defaults: state=present by
        # default does not clash with entries.
        mutually_exclusive=[("entries", option) for option in CHANGE_OPTIONS],
        required_one_of=[("map", "entries"), ("key", "entries")],
        supports_check_mode=True,
    )
    params = module.params
    single = params["entries"] is None
    try:
        if single:
            changes = [dict((option, params[option]) for option in CHANGE_OPTIONS)]
            check_change(changes[0])
        else:
            changes = params["entries"]
            if not changes:
                raise HAProxyRuntimeError("entries must hold at least one change")
            for index, change in enumerate(changes):
                check_change(change, "entries[%d]: " % index)
        manager = HAProxyMapManager(module, runtime_from_params(params), changes)
        result = manager()
    except HAProxyRuntimeError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    except OSError as exc:
        module.fail_json(msg="cannot update the map file: %s" % exc, exception=traceback.format_exc())
    if single:
        # The single form returns its one result at the top level, as it always has.
        only = result.pop("results")[0]
        result.update(only)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
