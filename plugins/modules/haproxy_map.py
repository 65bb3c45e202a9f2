#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: haproxy_map
short_description: Set or remove one key of an HAProxy map, live and on disk
version_added: 0.1.0
description:
  - Sets one key of an HAProxy map through the runtime API, in a single atomic command (C(set map)
    when the key exists, C(add map) when it does not), or removes it (C(del map)). HAProxy applies
    the change to the next request; no reload is needed.
  - Also rewrites the map file on disk, so that a reload or restart keeps the change. The file is
    written to a temporary file next to it and renamed over it; comments, blank lines and the
    other keys stay as they were.
  - Used for blue-green flips, where a map chooses the active backend of a service.
  - Reports C(changed) only when the live value or the file differs from the requested state.
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
    type: str
    required: true
  key:
    description:
      - The key to set or remove. It cannot contain blanks.
    type: str
    required: true
  value:
    description:
      - The value of O(key). Required with O(state=present). It cannot contain a newline.
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
notes:
  - The live change comes first. If the file cannot be written afterwards, the module fails and
    running it again repairs the file.
  - With O(state=present), HAProxy changes every entry of a key that appears more than once, and
    so does the file rewrite.
seealso:
  - module: vmfleet.deploy.haproxy_server
  - name: HAProxy 2.6 management guide, map commands
    description: The C(add map), C(set map), C(del map) and C(show map) commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Flip the catalog service to its green slot
  vmfleet.deploy.haproxy_map:
    socket: /run/haproxy/admin.sock
    map: /etc/haproxy/maps/catalog.map
    key: active
    value: catalog_green

- name: Flip through a map id, with the file named explicitly
  vmfleet.deploy.haproxy_map:
    map: "#2"
    map_file: /etc/haproxy/maps/catalog.map
    key: active
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
  returned: always
  type: str
  sample: /etc/haproxy/maps/catalog.map
map_file:
  description: The map file that was compared and rewritten, or null when none could be found.
  returned: always
  type: str
  sample: /etc/haproxy/maps/catalog.map
key:
  description: The key.
  returned: always
  type: str
  sample: active
before:
  description: The value of O(key) before the change, live and in the file (null when absent).
  returned: always
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
  returned: always
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
  returned: always
  type: bool
  sample: true
file_changed:
  description: Whether the map file was (or would be) rewritten.
  returned: always
  type: bool
  sample: true
"""

import os
import re
import tempfile
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_args import (
    haproxy_argument_spec,
    runtime_from_params,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import (
    HAProxyNotFoundError,
    HAProxyRuntimeError,
)

# A map file line: key, blanks, value (the rest of the line; HAProxy trims it).
_LINE_RE = re.compile(r"^(\s*)(\S+)(?:(\s+)(.*?))?(\s*)$")


class MapFile(object):
    """A map file: keeps every line, edits the lines of one key."""

    def __init__(self, path):
        self.path = path
        self.exists = os.path.exists(path)
        if self.exists:
            with open(path, "rb") as handle:
                self.text = to_text(handle.read(), errors="surrogate_or_strict")
        else:
            self.text = ""

    @staticmethod
    def _parse(line):
        body = line.rstrip("\r\n")
        if not body.strip() or body.lstrip().startswith("#"):
            return None
        return _LINE_RE.match(body)

    def value(self, key):
        for line in self.text.splitlines():
            match = self._parse(line)
            if match and match.group(2) == key:
                return match.group(4) or ""
        return None

    def render(self, key, value):
        """The file text with ``key`` set to ``value`` (``None``: removed)."""
        lines = self.text.splitlines(True)
        out = []
        found = False
        for line in lines:
            match = self._parse(line)
            if not match or match.group(2) != key:
                out.append(line)
                continue
            found = True
            if value is None:
                continue
            ending = line[len(line.rstrip("\r\n")) :]
            out.append("%s%s%s%s%s" % (match.group(1), key, match.group(3) or " ", value, ending))
        if value is not None and not found:
            if out and not out[-1].endswith("\n"):
                out[-1] += "\n"
            out.append("%s %s\n" % (key, value))
        return "".join(out)


class HAProxyMapManager(object):
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.map = self.params["map"]
        self.key = self.params["key"]
        self.value = self.params["value"] if self.params["state"] == "present" else None

    def map_file(self):
        if self.params["map_file"]:
            return self.params["map_file"]
        if not self.map.startswith("#"):
            return self.map
        return self.client.resolve_map_file(self.map)

    def runtime_values(self):
        try:
            return [e["value"] for e in self.client.show_map(self.map) if e["key"] == self.key]
        except HAProxyNotFoundError as exc:
            known = ", ".join("#%d %s" % (m["id"], m["file"]) for m in self.client.show_maps()) or "none"
            raise HAProxyNotFoundError("HAProxy has no map '%s' (its maps: %s)" % (self.map, known)) from exc

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

    def __call__(self):
        values = self.runtime_values()
        runtime_before = values[0] if values else None
        if self.value is None:
            runtime_changed = bool(values)
        else:
            runtime_changed = not values or any(v != self.value for v in values)

        path = self.map_file()
        if not path:
            self.module.warn(
                "HAProxy reports no file for map %s: the change is live only and a reload will undo it" % self.map
            )
        mapfile = MapFile(path) if path else None
        file_before = mapfile.value(self.key) if mapfile else None
        new_text = mapfile.render(self.key, self.value) if mapfile else None
        file_changed = bool(mapfile) and (new_text != mapfile.text or (not mapfile.exists and self.value is not None))

        if path and file_changed and not self.module.check_mode:
            # Fail before the live change when the file cannot follow it.
            self.check_writable(path)

        if not self.module.check_mode:
            if runtime_changed:
                if self.value is None:
                    self.client.del_map(self.map, self.key)
                else:
                    self.client.set_map(self.map, self.key, self.value)
            if file_changed:
                self.write_file(path, new_text)

        result = dict(
            changed=runtime_changed or file_changed,
            map=self.map,
            map_file=path,
            key=self.key,
            before=dict(runtime=runtime_before, file=file_before),
            after=dict(runtime=self.value, file=self.value if mapfile else None),
            runtime_changed=runtime_changed,
            file_changed=file_changed,
        )
        if not self.module.check_mode:
            result["after"]["runtime"] = self.client.get_map_value(self.map, self.key)
        if self.module._diff:
            result["diff"] = [
                dict(
                    before_header="HAProxy map %s (live)" % self.map,
                    after_header="HAProxy map %s (live)" % self.map,
                    before=_entry(self.key, runtime_before),
                    after=_entry(self.key, self.value),
                )
            ]
            if mapfile:
                result["diff"].append(dict(before_header=path, after_header=path, before=mapfile.text, after=new_text))
        return result


def _entry(key, value):
    return "" if value is None else "%s %s\n" % (key, value)


def main():
    argument_spec = haproxy_argument_spec(
        map=dict(type="str", required=True),
        key=dict(type="str", required=True, no_log=False),
        value=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        map_file=dict(type="path"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[("state", "present", ("value",))],
        supports_check_mode=True,
    )
    try:
        key, value = module.params["key"], module.params["value"]
        if not key or re.search(r"\s", key):
            raise HAProxyRuntimeError("key must be non-empty and without blanks, got %r" % (key,))
        if value is not None and ("\n" in value or "\r" in value):
            raise HAProxyRuntimeError("value cannot contain a newline")
        if value is not None and module.params["state"] == "present" and not value:
            raise HAProxyRuntimeError("value cannot be empty with state=present")
        if value is not None and module.params["state"] == "present" and value.strip() != value:
            raise HAProxyRuntimeError("value cannot start or end with blanks (HAProxy trims them in map files)")
        manager = HAProxyMapManager(module, runtime_from_params(module.params))
        result = manager()
    except HAProxyRuntimeError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    except OSError as exc:
        module.fail_json(msg="cannot update the map file: %s" % exc, exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
