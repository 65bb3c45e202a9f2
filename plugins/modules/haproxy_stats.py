#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: haproxy_stats
short_description: Read HAProxy's per-backend and per-server statistics from the runtime API
version_added: 0.1.0
description:
  - Reads C(show stat) and C(show servers state) in one connection to the HAProxy runtime API and
    returns, for each backend and each of its servers, the counters a deployment gates on,
    that is requests, responses by class, response time, sessions, status and weight, as integers.
  - Used to compare a canary with the stable servers, and to check that a server is C(UP),
    C(DRAIN) or C(MAINT).
  - Never changes anything.
author:
  - vmfleet maintainers (@vmfleet)
extends_documentation_fragment:
  - vmfleet.deploy.haproxy_runtime
  - vmfleet.deploy.attributes
  - vmfleet.deploy.attributes.READ_ONLY
options:
  backends:
    description:
      - Only return these backends. The module fails when one of them does not exist.
      - All backends when omitted.
    type: list
    elements: str
notes:
  - Counters are HAProxy's, cumulative since the process started; a reload starts them again
    from 0. Compare two readings, not one.
  - On HAProxy 2.6 every counter returned here exists for servers as well as for backends, in
    HTTP mode. In TCP mode HAProxy does not count requests or HTTP responses, and C(req_tot) and
    C(hrsp_*) are null.
  - C(rtime) and C(ttime) are averages over the last 1024 requests, in milliseconds.
  - A backend's C(weight) is the sum of the weights of its usable servers (a drained server does
    not count); a server's C(weight) is the weight HAProxy shows for it, which is its weight even
    in C(DRAIN). Its C(admin_state) tells whether it takes new requests.
seealso:
  - module: vmfleet.deploy.haproxy_server
  - name: HAProxy 2.6 management guide, CSV format
    description: The meaning of every C(show stat) field.
    link: https://docs.haproxy.org/2.6/management.html#9.1
"""

EXAMPLES = r"""
- name: Read the catalog backends
  vmfleet.deploy.haproxy_stats:
    socket: /run/haproxy/admin.sock
    backends:
      - catalog_blue
      - catalog_green
  register: lb

- name: Show the 5xx count of the canary server
  ansible.builtin.debug:
    msg: "{{ lb.backends.catalog_green.servers.app1.hrsp_5xx }}"

- name: Check that no server of catalog_blue is in maintenance
  ansible.builtin.assert:
    that: >-
      lb.backends.catalog_blue.servers | dict2items
      | selectattr('value.admin_state', 'equalto', 'maint') | list | length == 0
"""

RETURN = r"""
backends:
  description:
    - One entry for each backend, by name.
    - Counters are integers, or null where HAProxy leaves them empty.
  returned: always
  type: dict
  sample:
    catalog_blue:
      status: UP
      weight: 2
      scur: 0
      qcur: 0
      stot: 120
      req_tot: 120
      hrsp_2xx: 118
      hrsp_3xx: 0
      hrsp_4xx: 2
      hrsp_5xx: 0
      econ: 0
      eresp: 0
      wretr: 0
      wredis: 0
      rtime: 3
      ttime: 4
      mode: http
      servers:
        app1:
          status: UP
          admin_state: ready
          weight: 1
          check_status: L7OK
          scur: 0
          req_tot: 60
          hrsp_2xx: 59
          hrsp_5xx: 0
          rtime: 3
  contains:
    status:
      description: V(UP) while one server can take requests, V(DOWN) otherwise.
      type: str
    weight:
      description: Sum of the weights of the usable servers.
      type: int
    scur:
      description: Current sessions.
      type: int
    qcur:
      description: Requests waiting in the queue.
      type: int
    stot:
      description: Sessions since start.
      type: int
    req_tot:
      description: HTTP requests since start (null in TCP mode).
      type: int
    hrsp_2xx:
      description: Responses with a 2xx status (null in TCP mode). C(hrsp_3xx) and C(hrsp_4xx) likewise.
      type: int
    hrsp_5xx:
      description: Responses with a 5xx status, including those HAProxy produced itself (null in TCP mode).
      type: int
    econ:
      description: Failed connections to a server.
      type: int
    eresp:
      description: Response errors (a server closed or failed while answering).
      type: int
    wretr:
      description: Connection retries.
      type: int
    wredis:
      description: Redispatches to another server.
      type: int
    rtime:
      description: Average response time of the last 1024 requests, in ms.
      type: int
    ttime:
      description: Average total session time of the last 1024 requests, in ms.
      type: int
    mode:
      description: V(http) or V(tcp).
      type: str
    servers:
      description:
        - One entry for each server, by name, with the counters above (except C(mode)) and
          C(status) (V(UP), V(DOWN), V(DRAIN), V(MAINT), V(no check), V(UP 1/2), ...),
          C(admin_state) (V(ready), V(drain) or V(maint)), C(weight), C(check_status)
          (V(L7OK), V(L4CON), ...) and C(check_desc).
      type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_args import (
    haproxy_argument_spec,
    runtime_from_params,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import (
    HAProxyNotFoundError,
    HAProxyRuntimeError,
    admin_state_name,
    parse_servers_state,
    parse_show_stat,
)

COUNTERS = (
    "status",
    "weight",
    "scur",
    "qcur",
    "stot",
    "req_tot",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "rtime",
    "ttime",
)
SERVER_EXTRA = ("check_status", "check_desc")


class HAProxyStatsReader(object):
    def __init__(self, module, client):
        self.module = module
        self.client = client

    def read(self):
        stat_text, state_text = self.client.execute(["show stat", "show servers state"])
        return parse_show_stat(stat_text), parse_servers_state(state_text)

    def __call__(self):
        stat, state = self.read()
        admin = dict(((row["be_name"], row["srv_name"]), row.get("srv_admin_state")) for row in state)
        backends = {}
        for row in stat:
            if row.get("svname") == "BACKEND":
                entry = backends.setdefault(row["pxname"], {"servers": {}})
                entry.update((key, row.get(key)) for key in COUNTERS)
                entry["mode"] = row.get("mode")
        for row in stat:
            name, server = row.get("pxname"), row.get("svname")
            if server in ("BACKEND", "FRONTEND") or name not in backends:
                continue
            entry = dict((key, row.get(key)) for key in COUNTERS + SERVER_EXTRA)
            entry["admin_state"] = admin_state_name(admin.get((name, server)))
            backends[name]["servers"][server] = entry

        wanted = self.module.params["backends"]
        if wanted:
            missing = [name for name in wanted if name not in backends]
            if missing:
                raise HAProxyNotFoundError(
                    "HAProxy has no backend %s (its backends: %s)"
                    % (", ".join("'%s'" % m for m in missing), ", ".join(sorted(backends)) or "none")
                )
            backends = dict((name, backends[name]) for name in wanted)
        return dict(changed=False, backends=backends)


def main():
    module = AnsibleModule(
        argument_spec=haproxy_argument_spec(backends=dict(type="list", elements="str")),
        supports_check_mode=True,
    )
    try:
        result = HAProxyStatsReader(module, runtime_from_params(module.params))()
    except HAProxyRuntimeError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
