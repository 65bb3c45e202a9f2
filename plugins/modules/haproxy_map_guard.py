#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: haproxy_map_guard
short_description: Set HAProxy map keys to safe values when a lease runs out (a dead man's switch)
version_added: 0.3.0
description:
  - Watches a lease file on the load balancer. The file holds a deadline, in seconds since the epoch, that the
    controller moves forward while it is alive. When the deadline passes, the module makes the changes in
    O(entries), live and in the map files, exactly as M(vmfleet.deploy.haproxy_map) would. It then removes the
    lease file and returns. When the lease file is removed, the guard returns without changing anything.
  - Meant to run in the background with C(async) and C(poll=0) for the length of a canary. If the controller stops
    (Ctrl-C, a lost connection, a killed job) in the middle of a canary, the lease is not renewed, and the guard
    sets the service's split back to 0. All new requests then go to the stable slot again.
  - Ansible runs no task after Ctrl-C, so only a process on the load balancer can do this.
  - Also returns, and makes the changes, after O(max_seconds), so that no guard outlives its purpose.
author:
  - vmfleet maintainers (@vmfleet)
extends_documentation_fragment:
  - vmfleet.deploy.haproxy_runtime
  - vmfleet.deploy.attributes
options:
  lease_file:
    description:
      - The lease. Its content is the deadline, a number of seconds since the epoch (C(time.time())).
      - A lease that cannot be read as a number counts as run out.
      - A missing lease ends the guard at once, without changes.
    type: path
    required: true
  entries:
    description:
      - The changes to make when the lease runs out, with the suboptions of M(vmfleet.deploy.haproxy_map)'s
        O(vmfleet.deploy.haproxy_map#module:entries), for example the service's split set to V(0).
    type: list
    elements: dict
    required: true
    suboptions:
      map:
        description: The map as HAProxy knows it (the path of its file in the configuration), or V(#<id>).
        type: str
        required: true
      key:
        description: The key to set or remove.
        type: str
        required: true
      value:
        description: The value of O(entries[].key) (required with O(entries[].state=present)).
        type: str
      state:
        description: V(present) sets the key, V(absent) removes it.
        type: str
        choices: [present, absent]
        default: present
      map_file:
        description: The map file to rewrite as well (defaults to O(entries[].map) when it is a path).
        type: path
  interval:
    description: Seconds between two reads of the lease.
    type: float
    default: 1.0
  max_seconds:
    description:
      - The longest the guard runs. When it is reached, the guard makes the changes as if the lease had run out.
      - Keep it below the task's C(async) value, or Ansible kills the guard first.
    type: int
    default: 3600
attributes:
  check_mode:
    support: partial
    details: In check mode the entries are checked and nothing is watched or changed.
  diff_mode:
    support: none
notes:
  - The lease file is written by the controller (for example with M(ansible.builtin.copy)), which replaces the file
    in one rename, so the guard never reads half a deadline.
"""

EXAMPLES = r"""
- name: Start the guard of the catalog canary
  vmfleet.deploy.haproxy_map_guard:
    lease_file: /run/vmfleet/catalog.lease
    entries:
      - map: /etc/haproxy/maps/vmfleet-split.map
        key: catalog
        value: "0"
  async: 3700
  poll: 0

- name: Renew the lease for 30 more seconds
  ansible.builtin.copy:
    content: "{{ now(utc=true).timestamp() + 30 }}"
    dest: /run/vmfleet/catalog.lease
    mode: "0600"
"""

RETURN = r"""
fired:
  description: Whether the guard made the changes (the lease ran out, or O(max_seconds) was reached).
  returned: always
  type: bool
  sample: true
reason:
  description: Why the guard ended, V(released) (the lease file was removed), V(expired) or V(max_seconds).
  returned: always
  type: str
  sample: expired
waited:
  description: Seconds the guard ran.
  returned: always
  type: float
  sample: 42.5
results:
  description: What the changes did, one entry per O(entries) element, as M(vmfleet.deploy.haproxy_map) returns.
  returned: when the guard fired
  type: list
  elements: dict
"""

import errno
import os
import time
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_args import (
    haproxy_argument_spec,
    runtime_from_params,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_maps import (
    ENTRY_SPEC,
    HAProxyMapManager,
    check_change,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import HAProxyRuntimeError

# When HAProxy cannot be reached as the guard fires, it tries again for this long.
FIRE_RETRY_SECONDS = 60


def read_lease(path):
    """The deadline in the lease file; None when there is no lease; 0 when it cannot be read as a number."""
    try:
        with open(path) as handle:
            text = handle.read().strip()
    except OSError as exc:
        if getattr(exc, "errno", None) == errno.ENOENT:  # released
            return None
        return 0.0
    try:
        return float(text)
    except ValueError:
        return 0.0


def watch(lease_file, interval, max_seconds, clock=time.time, sleep=time.sleep):
    """Wait until the lease is released or runs out, or max_seconds pass: 'released', 'expired' or 'max_seconds'."""
    started = clock()
    while True:
        deadline = read_lease(lease_file)
        now = clock()
        if deadline is None:
            return "released"
        if now >= deadline:
            return "expired"
        if now - started >= max_seconds:
            return "max_seconds"
        sleep(max(0.05, min(interval, deadline - now)))


def fire(module, params, clock=time.time, sleep=time.sleep):
    """Make the changes; retries while HAProxy cannot be reached, up to FIRE_RETRY_SECONDS."""
    until = clock() + FIRE_RETRY_SECONDS
    while True:
        try:
            return HAProxyMapManager(module, runtime_from_params(params), params["entries"])()
        except HAProxyRuntimeError:
            if clock() >= until:
                raise
            sleep(1.0)


def main():
    module = AnsibleModule(
        argument_spec=haproxy_argument_spec(
            lease_file=dict(type="path", required=True),
            entries=dict(type="list", elements="dict", required=True, options=ENTRY_SPEC),
            interval=dict(type="float", default=1.0),
            max_seconds=dict(type="int", default=3600),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        if not params["entries"]:
            raise HAProxyRuntimeError("entries must hold at least one change")
        for index, change in enumerate(params["entries"]):
            check_change(change, "entries[%d]: " % index)
        if params["interval"] <= 0:
            raise HAProxyRuntimeError("interval must be positive, got %s" % params["interval"])
        if params["max_seconds"] < 1:
            raise HAProxyRuntimeError("max_seconds must be at least 1, got %d" % params["max_seconds"])
    except HAProxyRuntimeError as exc:
        module.fail_json(msg=str(exc))
    if module.check_mode:
        module.exit_json(changed=False, fired=False, reason="check_mode", waited=0.0)

    started = time.time()
    reason = watch(params["lease_file"], params["interval"], params["max_seconds"])
    if reason == "released":
        module.exit_json(changed=False, fired=False, reason=reason, waited=round(time.time() - started, 3))
    try:
        result = fire(module, params)
    except HAProxyRuntimeError as exc:
        module.fail_json(msg="the lease ran out (%s) but the changes failed: %s" % (reason, exc),
                         fired=False, reason=reason, exception=traceback.format_exc())
    except OSError as exc:
        module.fail_json(msg="the lease ran out (%s) but a map file could not be written: %s" % (reason, exc),
                         fired=False, reason=reason, exception=traceback.format_exc())
    try:
        os.unlink(params["lease_file"])
    except OSError:
        pass  # removed meanwhile, or never there (max_seconds)
    module.exit_json(changed=result["changed"], fired=True, reason=reason, waited=round(time.time() - started, 3),
                     results=result["results"])


if __name__ == "__main__":
    main()
