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

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_args import (
    haproxy_argument_spec,
    runtime_from_params,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_maps import (
    CHANGE_OPTIONS,
    ENTRY_SPEC,
    HAProxyMapManager,
    check_change,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import HAProxyRuntimeError


def main():
    argument_spec = haproxy_argument_spec(
        map=dict(type="str"),
        key=dict(type="str", no_log=False),
        value=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        map_file=dict(type="path"),
        entries=dict(type="list", elements="dict", options=ENTRY_SPEC),
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
