#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: haproxy_server
short_description: Drain, disable, enable and weight an HAProxy server through the runtime API
version_added: 0.1.0
description:
  - Sets the administrative state (C(ready), C(drain) or C(maint)) and the weight of one server of
    an HAProxy backend through the runtime API (the stats socket), and waits until HAProxy reports
    the result.
  - C(drain) stops sending new requests to the server and waits until its sessions reach 0, bounded
    by O(drain_timeout). A server whose health check says DOWN goes straight to C(maint) instead,
    because its sessions cannot drain and there is nothing to wait for. A server already in
    C(maint) stays there, since it takes no new requests either.
  - C(maint) drains an UP server first (when O(wait=true) and O(drain_timeout) is above 0), then sets
    it to maintenance. A DOWN server goes to maintenance at once.
  - C(ready) puts the server back into the load balancing and, with O(wait=true), waits until
    HAProxy reports it C(UP) after a passed health check. A server without health checks
    (C(no check)) counts as up at once.
  - The runtime API changes live state only. To keep server state across reloads, HAProxy needs
    C(server-state-file) and C(load-server-state-from-file), and the state must be saved with
    C(show servers state) right before each reload; the C(vmfleet.deploy.haproxy) role does this.
    With O(state_file), the module also saves it after each change, so a restart (a crash, or
    C(systemctl restart)) keeps it too.
  - "While it waits (for a drain, or for C(UP)) the module holds the state it set: when HAProxy
    restarts meanwhile and comes back with another admin state for the server, or weight, the
    module sets them again and says so in RV(msg). A runtime API that does not answer for a while
    is asked again until the wait's deadline."
  - Written for this collection instead of M(community.general.haproxy), which hangs on DOWN
    servers.
author:
  - vmfleet maintainers (@vmfleet)
extends_documentation_fragment:
  - vmfleet.deploy.haproxy_runtime
  - vmfleet.deploy.attributes
  - vmfleet.deploy.attributes.CHECK_AND_DIFF
options:
  backend:
    description:
      - Name of the HAProxy backend, for example V(catalog_blue).
    type: str
    required: true
  server:
    description:
      - Name of the server in O(backend), as in the C(server) line of the configuration.
    type: str
    required: true
  state:
    description:
      - The administrative state the server must have.
      - V(ready) takes traffic; V(drain) takes no new requests but finishes the current ones;
        V(maint) takes no traffic and is not health checked.
      - When omitted, only O(weight) is set. One of O(state) and O(weight) is required.
    type: str
    choices: [ready, drain, maint]
  weight:
    description:
      - The weight of the server, from V(0) to V(256) (HAProxy's range). V(0) stops new requests
        like a drain but keeps the server C(UP).
      - Set before O(state=ready) takes effect, so a returning server starts with this weight.
    type: int
  drain_timeout:
    description:
      - Seconds to wait, when draining, until the server has no sessions left (and none queued).
      - The module fails when sessions remain after that time; the server stays in C(DRAIN).
      - V(0) with O(state=maint) skips the drain and sets maintenance at once.
    type: float
    default: 30
  wait:
    description:
      - Wait for the result. For O(state=drain) and O(state=maint), until the sessions are drained;
        for O(state=ready), until HAProxy reports the server C(UP).
      - With V(false) the module sets the state and returns at once.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait, with O(state=ready), until the server is C(UP). The module fails when it
        is not.
    type: float
    default: 30
  wait_interval:
    description:
      - Seconds between two polls of the runtime API while waiting.
    type: float
    default: 0.5
  state_file:
    description:
      - HAProxy's C(server-state-file). After a change, the module writes C(show servers state) there
        (atomically, mode 0600), so HAProxy loads the drain, maint and weight this module set when
        it starts again (C(load-server-state-from-file global)).
      - Omitted, nothing is written, and a restart of HAProxy loses what the module set.
    type: path
notes:
  - Changes are idempotent. A server already in the requested state with the requested weight
    reports C(changed=false); the module still waits for its sessions or for C(UP).
  - In check mode nothing is changed, and RV(after) is the predicted state.
seealso:
  - module: vmfleet.deploy.haproxy_map
  - module: vmfleet.deploy.haproxy_stats
  - name: HAProxy 2.6 management guide, runtime API
    description: The C(set server) and C(show servers state) commands.
    link: https://docs.haproxy.org/2.6/management.html#9.3
"""

EXAMPLES = r"""
- name: Drain app3 from the catalog backend before its container is replaced
  vmfleet.deploy.haproxy_server:
    socket: /run/haproxy/admin.sock
    backend: catalog_blue
    server: app3
    state: drain
    drain_timeout: 30
    state_file: /var/lib/haproxy/server-state

- name: Put app3 in maintenance (drains first when it is UP, at once when it is DOWN)
  vmfleet.deploy.haproxy_server:
    backend: catalog_blue
    server: app3
    state: maint

- name: Put app3 back into the load balancing and wait until HAProxy reports it UP
  vmfleet.deploy.haproxy_server:
    backend: catalog_blue
    server: app3
    state: ready
    wait_timeout: 20

- name: Send 5 % of the traffic to the canary
  vmfleet.deploy.haproxy_server:
    socket: tcp://127.0.0.1:9999
    backend: catalog_green
    server: app1
    weight: 5
  register: canary

- name: Show the change
  ansible.builtin.debug:
    msg: "{{ canary.before.weight }} -> {{ canary.after.weight }}"
"""

RETURN = r"""
backend:
  description: The backend name.
  returned: always
  type: str
  sample: catalog_blue
server:
  description: The server name.
  returned: always
  type: str
  sample: app3
state:
  description:
    - The administrative state the module applied, or would apply in check mode.
    - V(maint) where V(drain) was asked for a server that is DOWN.
  returned: always
  type: str
  sample: drain
before:
  description: The server as HAProxy reported it before any change.
  returned: always
  type: dict
  contains:
    status:
      description: The C(status) of C(show stat), such as V(UP), V(DOWN), V(DRAIN), V(MAINT), V(UP 1/2) or V(no check).
      type: str
      sample: UP
    admin_state:
      description: The administrative state, V(ready), V(drain) or V(maint), from C(show servers state).
      type: str
      sample: ready
    weight:
      description: The weight set in the configuration or with O(weight) (C(srv_uweight)).
      type: int
      sample: 1
    scur:
      description: Current sessions on the server.
      type: int
      sample: 12
    check_status:
      description: The last health check result, such as V(L7OK) or V(L4CON); null without checks or in C(MAINT).
      type: str
      sample: L7OK
after:
  description:
    - The server as HAProxy reported it after the change and the wait.
    - In check mode, the predicted state.
  returned: always
  type: dict
  contains:
    status:
      description: The C(status) of C(show stat).
      type: str
      sample: DRAIN
    admin_state:
      description: The administrative state.
      type: str
      sample: drain
    weight:
      description: The weight (C(srv_uweight)).
      type: int
      sample: 1
    scur:
      description: Current sessions on the server.
      type: int
      sample: 0
    check_status:
      description: The last health check result.
      type: str
      sample: L7OK
elapsed:
  description: Seconds the module spent waiting for sessions to drain or for the server to be UP.
  returned: always
  type: float
  sample: 1.25
msg:
  description: What the module did, in words.
  returned: always
  type: str
  sample: server catalog_blue/app3 was DOWN, set to maint without draining
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_args import (
    haproxy_argument_spec,
    runtime_from_params,
)
from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import (
    HAProxyRuntimeError,
    check_weight,
    is_down,
    is_up,
    status_word,
)

REPORTED = ("status", "admin_state", "weight", "scur", "check_status")


class ServerStateError(Exception):
    """A failure after which the module still reports before/after."""

    def __init__(self, msg, result):
        super().__init__(msg)
        self.result = result


def summary(view):
    return dict((key, view.get(key)) for key in REPORTED)


class HAProxyServerManager(object):
    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.params = module.params
        self.backend = self.params["backend"]
        self.server = self.params["server"]
        self.name = "%s/%s" % (self.backend, self.server)
        self.elapsed = 0.0
        self.changed = False
        self.notes = []

    def fetch(self):
        return self.client.server(self.backend, self.server)

    # -- planning
    def target_state(self, before):
        state = self.params["state"]
        if state == "drain" and (is_down(before) or before["admin_state"] == "maint"):
            # A DOWN server cannot drain: MAINT at once. A server in MAINT
            # already takes no new request; DRAIN would re-enable its checks
            # and persistent sessions, so it stays in MAINT.
            return "maint"
        return state

    def predict(self, before, target):
        after = summary(before)
        weight = self.params["weight"]
        if weight is not None:
            after["weight"] = weight
        if target is None or target == before["admin_state"]:
            return after
        after["admin_state"] = target
        if target == "maint":
            after["status"] = "MAINT"
            after["check_status"] = None
        elif target == "drain":
            if status_word(before["status"]) in ("UP", "DRAIN", "MAINT", "no check"):
                after["status"] = "DRAIN"
        elif before["admin_state"] == "maint" or status_word(before["status"]) in ("DRAIN", "MAINT"):
            after["status"] = "UP" if before.get("checks_enabled") else "no check"
        if target in ("drain", "maint") and self.params["wait"]:
            after["scur"] = 0
        return after

    # -- acting
    def set_state(self, state):
        self.client.set_server_state(self.backend, self.server, state)
        self.changed = True

    def set_weight(self, view):
        weight = self.params["weight"]
        if weight is not None and view["weight"] != weight:
            self.client.set_weight(self.backend, self.server, weight)
            self.changed = True

    def held(self, admin_state, hold_weight):
        """Fetch the server; when its admin state (or, with hold_weight, its weight) is not what this run
        set (HAProxy restarted without it), set them again first."""
        view = self.fetch()
        weight = self.params["weight"] if hold_weight else None
        checks = (("state %s" % admin_state, view["admin_state"], admin_state),
                  ("weight %s" % weight, view["weight"], weight))
        lost = [what for what, now, wanted in checks if wanted is not None and now != wanted]
        if not lost:
            return view
        if view["admin_state"] != admin_state:
            self.client.set_server_state(self.backend, self.server, admin_state)
        if weight is not None and view["weight"] != weight:
            self.client.set_weight(self.backend, self.server, weight)
        self.changed = True
        self.notes.append("HAProxy lost the %s of server %s while the module waited (it restarted?): set again"
                          % (" and ".join(lost), self.name))
        return self.fetch()

    def wait(self, predicate, timeout, admin_state, hold_weight=False):
        ok, view, elapsed = self.client.wait(
            lambda: self.held(admin_state, hold_weight), predicate, timeout, self.params["wait_interval"]
        )
        self.elapsed += elapsed
        return ok, view

    def save(self):
        """Write HAProxy's server-state-file (state_file), so a restart keeps what the module set."""
        if self.params["state_file"] and self.changed and not self.module.check_mode:
            self.client.save_servers_state(self.params["state_file"])

    def drain(self, view):
        """Drain and wait until no session is left. Returns the last view."""
        if view["admin_state"] != "drain":
            self.set_state("drain")
        if not self.params["wait"]:
            return view
        self.save()
        ok, view = self.wait(lambda v: is_down(v) or (not v["scur"] and not v["qcur"]), self.params["drain_timeout"],
                             "drain")
        if not ok:
            raise ServerStateError(
                "HAProxy server %s still has %d sessions after %s s drain"
                % (self.name, view["scur"] + view["qcur"], _secs(self.params["drain_timeout"])),
                self.result(view, "drain", failed=True),
            )
        return view

    def run(self, before):
        target = self.target_state(before)
        if target == "maint" and before["admin_state"] != "maint" and is_down(before):
            self.notes.append("server %s was DOWN, set to maint without draining" % self.name)
        elif self.params["state"] == "drain" and before["admin_state"] == "maint":
            self.notes.append("server %s is in maint, which takes no new requests either: left in maint" % self.name)
        if self.module.check_mode:
            after = self.predict(before, target)
            self.changed = after["admin_state"] != before["admin_state"] or after["weight"] != before["weight"]
            return self.result(after, target)

        view = before
        if target == "ready":
            self.set_weight(view)
            if view["admin_state"] != "ready":
                self.set_state("ready")
            if self.params["wait"]:
                self.save()
                ok, view = self.wait(lambda v: v["admin_state"] == "ready" and is_up(v), self.params["wait_timeout"],
                                     "ready", hold_weight=True)
                if not ok:
                    raise ServerStateError(
                        "HAProxy server %s is not UP after %s s (status: %s, check: %s)"
                        % (
                            self.name,
                            _secs(self.params["wait_timeout"]),
                            view["status"],
                            " ".join(x for x in (view["check_status"], view.get("check_desc")) if x) or "none",
                        ),
                        self.result(view, target, failed=True),
                    )
        elif target == "drain":
            view = self.drain(view)
            if is_down(view) and view["admin_state"] != "maint":
                # It went DOWN while draining: its sessions will not finish normally.
                self.set_state("maint")
                target = "maint"
                self.notes.append("server %s went DOWN while draining, set to maint" % self.name)
            self.set_weight(view)
        elif target == "maint":
            if (
                view["admin_state"] != "maint"
                and not is_down(view)
                and self.params["wait"]
                and self.params["drain_timeout"] > 0
            ):
                view = self.drain(view)
            if view["admin_state"] != "maint":
                self.set_state("maint")
            self.set_weight(view)
        else:
            self.set_weight(view)

        after = self.fetch() if self.changed else view
        self.save()
        return self.result(after, target)

    def result(self, view, target, failed=False):
        before = self.before
        after = summary(view)
        result = dict(
            changed=self.changed,
            backend=self.backend,
            server=self.server,
            state=target or after["admin_state"],
            before=summary(before),
            after=after,
            elapsed=round(self.elapsed, 3),
        )
        if failed:
            return result
        if self.notes:
            result["msg"] = "; ".join(self.notes)
        elif not self.changed:
            result["msg"] = "server %s is already %s" % (self.name, self.describe(after))
        else:
            result["msg"] = "server %s set to %s" % (self.name, self.describe(after))
        if self.module._diff:
            result["diff"] = dict(
                before_header="%s (before)" % self.name,
                after_header="%s (after)" % self.name,
                before=summary(before),
                after=after,
            )
        return result

    def describe(self, view):
        text = "%s (%s)" % (view["admin_state"], view["status"])
        if self.params["weight"] is not None:
            text += ", weight %s" % view["weight"]
        return text

    def __call__(self):
        self.before = self.fetch()
        return self.run(self.before)


def _secs(value):
    return ("%.1f" % float(value)).rstrip("0").rstrip(".")


def main():
    argument_spec = haproxy_argument_spec(
        backend=dict(type="str", required=True),
        server=dict(type="str", required=True),
        state=dict(type="str", choices=["ready", "drain", "maint"]),
        weight=dict(type="int"),
        drain_timeout=dict(type="float", default=30),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="float", default=30),
        wait_interval=dict(type="float", default=0.5),
        state_file=dict(type="path"),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_one_of=[("state", "weight")],
        supports_check_mode=True,
    )
    try:
        if module.params["weight"] is not None:
            check_weight(module.params["weight"], "weight")
        for option in ("drain_timeout", "wait_timeout", "wait_interval"):
            if module.params[option] < 0:
                raise HAProxyRuntimeError("%s must be 0 or more seconds, got %s" % (option, module.params[option]))
        manager = HAProxyServerManager(module, runtime_from_params(module.params))
        result = manager()
    except ServerStateError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc(), **exc.result)
    except HAProxyRuntimeError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
