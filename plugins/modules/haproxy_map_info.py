#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: haproxy_map_info
short_description: Read HAProxy maps, live and on disk
version_added: 0.1.0
description:
  - Reads the entries of HAProxy maps from the running HAProxy (C(show map) on the runtime API, the
    entries of all the maps in one connection), and the same maps from their files on disk.
  - The live values are what HAProxy uses now; the files are what a reload or restart will load.
    Both are returned, so a caller can see when they disagree (a change made only at runtime, or a
    file edited by hand).
  - The deploy strategies read with it which slot of a service is live (the active-backend map)
    and which share of new requests goes to the idle slot (the split map).
  - Never changes anything.
author:
  - vmfleet maintainers (@vmfleet)
extends_documentation_fragment:
  - vmfleet.deploy.haproxy_runtime
  - vmfleet.deploy.attributes
  - vmfleet.deploy.attributes.READ_ONLY
options:
  maps:
    description:
      - The maps to read, each as HAProxy knows it, that is the path of the map file in the
        configuration (for example V(/etc/haproxy/maps/vmfleet-active.map)), or V(#<id>) as
        C(show map) lists it.
      - Every map HAProxy has loaded when omitted.
      - An unknown map fails the module, with the list of the maps HAProxy has.
    type: list
    elements: str
notes:
  - Reading maps works on a socket at C(level user) as well as C(level admin).
  - When a key appears more than once, the first entry is returned, live and in the file.
seealso:
  - module: vmfleet.deploy.haproxy_map
  - name: HAProxy 2.6 management guide, show map
    description: The C(show map) command.
    link: https://docs.haproxy.org/2.6/management.html#9.3-show%20map
"""

EXAMPLES = r"""
- name: Read the active-backend map and the split map
  vmfleet.deploy.haproxy_map_info:
    socket: /run/haproxy/admin.sock
    maps:
      - /etc/haproxy/maps/vmfleet-active.map
      - /etc/haproxy/maps/vmfleet-split.map
  register: lb_maps

- name: Show which slot serves catalog, and its split
  ansible.builtin.debug:
    msg: >-
      catalog is served by {{ lb_maps.maps['/etc/haproxy/maps/vmfleet-active.map'].catalog }},
      {{ lb_maps.maps['/etc/haproxy/maps/vmfleet-split.map'].catalog | default(0) }}% to the idle slot

- name: Read every map HAProxy has loaded
  vmfleet.deploy.haproxy_map_info:
    socket: /run/haproxy/admin.sock
  register: all_maps
"""

RETURN = r"""
maps:
  description:
    - The live entries of each map, as a dict of key to value, as HAProxy uses them now.
    - Keyed by the map as given in O(maps), or by its file when O(maps) is omitted (V(#<id>) for a
      map without a file).
  returned: always
  type: dict
  sample:
    /etc/haproxy/maps/vmfleet-active.map: {catalog: catalog_green, cart: cart_blue}
    /etc/haproxy/maps/vmfleet-split.map: {catalog: "0", cart: "25"}
files:
  description:
    - The entries of each map's file on disk, as a dict of key to value, as a reload or restart would load
      them. Keyed as RV(maps).
    - Only maps whose file exists and can be read are listed.
  returned: always
  type: dict
  sample:
    /etc/haproxy/maps/vmfleet-active.map: {catalog: catalog_green, cart: cart_blue}
    /etc/haproxy/maps/vmfleet-split.map: {catalog: "0", cart: "25"}
map_files:
  description: The file of each map, keyed as RV(maps); null for a map HAProxy reports no file for.
  returned: always
  type: dict
  sample:
    "#2": /etc/haproxy/maps/vmfleet-active.map
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_args import (
    haproxy_argument_spec,
    runtime_from_params,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import (
    HAProxyRuntimeError,
    MapFile,
)


def _first_values(pairs):
    values = {}
    for key, value in pairs:
        values.setdefault(key, value)
    return values


class HAProxyMapInfo(object):
    """Reads maps live (one runtime API connection) and from their files."""

    def __init__(self, module, client):
        self.module = module
        self.client = client

    def __call__(self, names=None):
        loaded = self.client.show_maps()
        files_by_id = dict(("#%d" % m["id"], m["file"] or None) for m in loaded)
        live = self.client.read_maps(names)
        maps, files, map_files = {}, {}, {}
        for name, entries in live.items():
            maps[name] = _first_values((e["key"], e["value"]) for e in entries)
            path = files_by_id.get(name) if name.startswith("#") else name
            map_files[name] = path
            if not path:
                continue
            try:
                mapfile = MapFile(path)
            except OSError as exc:
                self.module.warn("cannot read the file of map %s: %s" % (name, exc))
                continue
            if mapfile.exists:
                files[name] = _first_values(mapfile.entries())
        return dict(changed=False, maps=maps, files=files, map_files=map_files)


def main():
    module = AnsibleModule(
        argument_spec=haproxy_argument_spec(maps=dict(type="list", elements="str")),
        supports_check_mode=True,
    )
    try:
        result = HAProxyMapInfo(module, runtime_from_params(module.params))(module.params["maps"])
    except HAProxyRuntimeError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
