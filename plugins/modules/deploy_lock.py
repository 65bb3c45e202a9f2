#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: deploy_lock
short_description: Acquire, release or query the deploy lock of a service
version_added: 0.1.0
description:
  - Keeps two deploys of one service (any strategy, or a rollback) from overlapping. Each service has
    one lock, a JSON file C(<lock_dir>/<service>.lock) on the host the module runs on. The strategies
    run it on the first load balancer.
  - A lock has a holder's O(token), the O(owner), O(job_id), O(strategy) and O(version) of the run
    that holds it, and an expiry, O(ttl) seconds after it was acquired or last refreshed. An expired
    lock is free; the next acquire takes it over and returns the old lock as RV(took_over).
  - Acquiring with the holder's token refreshes the lock (a new expiry, and the fields given); this is
    how a long run extends it. Acquiring a lock held with another token fails, naming the holder, and
    returns the lock found as RV(lock).
  - Releasing needs the holder's token, unless O(force=true).
  - The read, check and write are atomic against other runs on the same host. The module holds an
    exclusive C(flock) on the guard file C(<lock_dir>/.<service>.lock.guard) (created when missing and
    never removed) from the read to the write. The lock is written to a temporary file in the same
    directory, synced and renamed over the lock file, as JSON with sorted keys, mode C(0644). A missing
    O(lock_dir) is created with mode C(0755).
  - Times are UTC wall-clock times. They are stored in ISO 8601 (C(acquired_at), C(refreshed_at),
    C(expires_at)) and in seconds since the epoch (C(acquired_at_epoch), C(expires_at_epoch)); the
    expiry is decided on C(expires_at_epoch).
  - A lock file that is not a valid lock (not a JSON object with a C(token) and a number
    C(expires_at_epoch)) fails the module and is never overwritten. Only O(state=released) with
    O(force=true) removes it.
author:
  - vmfleet maintainers (@vmfleet)
extends_documentation_fragment:
  - vmfleet.deploy.attributes
  - vmfleet.deploy.attributes.CHECK_AND_DIFF
options:
  service:
    description:
      - The service name, for example V(catalog). It is part of the lock's file name, so it must start
        with a letter or digit and hold only letters, digits, C(_), C(.) and C(-).
    type: str
    required: true
  lock_dir:
    description:
      - The directory that holds the lock files.
    type: path
    default: /var/lib/vmfleet/locks
  state:
    description:
      - V(acquired) takes the lock, or refreshes it when O(token) is the holder's. It always reports
        C(changed), since the expiry moves.
      - V(released) removes the lock. Nothing changes when there is no lock, or when the lock has expired
        and O(token) is not the holder's (an expired lock blocks nobody).
      - V(query) returns the lock and never writes, not even the directory or the guard file.
    type: str
    choices: [acquired, released, query]
    default: acquired
  token:
    description:
      - Identifies the holder. Register it when acquiring and pass it back to refresh or release the lock.
      - With O(state=acquired) and no O(token), the module makes a random one and returns it as RV(token).
      - With O(state=released), it must be the holder's, unless O(force=true).
      - When given, it must not be empty. O(state=query) ignores it.
    type: str
  force:
    description:
      - With O(state=released), remove the lock whoever holds it, and a lock file that is not a valid lock.
        Meant for a human who knows that the run that holds the lock is gone.
      - Not allowed with O(state=acquired); an acquire never takes a live lock.
    type: bool
    default: false
  owner:
    description:
      - Who runs the deploy, for example V(alice@ctl). Recorded in the lock and named in conflicts.
      - When a refresh leaves O(owner), O(job_id), O(strategy) or O(version) out, the lock keeps its value.
    type: str
  job_id:
    description:
      - The AWX job id of the run, or an empty string outside AWX. Recorded in the lock.
    type: str
  strategy:
    description:
      - The strategy of the run, for example V(rolling) or V(rollback). Recorded in the lock.
    type: str
  version:
    description:
      - The version being deployed. Recorded in the lock.
    type: str
  ttl:
    description:
      - Seconds from acquiring or refreshing the lock until it expires. At least 1.
      - Used with O(state=acquired) only (but checked with every O(state)).
    type: int
    default: 1800
notes:
  - The lock protects runs that use the same host and O(lock_dir). It relies on C(flock), so O(lock_dir)
    must be on a local file system.
  - Times come from the host's clock; a host whose clock jumps moves every expiry with it.
seealso:
  - module: vmfleet.deploy.release_ledger
"""

EXAMPLES = r"""
- name: Lock the catalog service for this rolling deploy
  vmfleet.deploy.deploy_lock:
    service: catalog
    owner: "{{ lookup('ansible.builtin.env', 'USER') }}@{{ inventory_hostname }}"
    job_id: "{{ tower_job_id | default('') | string }}"
    strategy: rolling
    version: 1.1.0
    ttl: 1800
  delegate_to: "{{ groups['loadbalancers'] | first }}"
  run_once: true
  register: catalog_lock

- name: Extend the lock before a long step
  vmfleet.deploy.deploy_lock:
    service: catalog
    token: "{{ catalog_lock.token }}"
    ttl: 1800
  delegate_to: "{{ groups['loadbalancers'] | first }}"
  run_once: true

- name: Release the lock
  vmfleet.deploy.deploy_lock:
    service: catalog
    state: released
    token: "{{ catalog_lock.token }}"
  delegate_to: "{{ groups['loadbalancers'] | first }}"
  run_once: true

- name: Show who holds the lock
  vmfleet.deploy.deploy_lock:
    service: catalog
    state: query
  delegate_to: "{{ groups['loadbalancers'] | first }}"
  run_once: true
  register: catalog_lock_now

- name: Remove a lock whose run is gone
  vmfleet.deploy.deploy_lock:
    service: catalog
    state: released
    force: true
  delegate_to: "{{ groups['loadbalancers'] | first }}"
  run_once: true
"""

RETURN = r"""
path:
  description: The lock file.
  returned: always
  type: str
  sample: /var/lib/vmfleet/locks/catalog.lock
lock:
  description:
    - The content of the lock file after the call (what would be written, in check mode), or null when
      there is none. With O(state=query), an expired lock is returned too, with RV(held=false).
    - On a conflict (another holder, a wrong token), the lock found.
  returned: always
  type: dict
  contains:
    service:
      description: The service name.
      type: str
    token:
      description: The holder's token.
      type: str
    owner:
      description: Who holds the lock, or null.
      type: str
    job_id:
      description: The AWX job id of the holder, or null.
      type: str
    strategy:
      description: The holder's strategy, or null.
      type: str
    version:
      description: The version the holder deploys, or null.
      type: str
    ttl:
      description: The TTL of the last acquire or refresh, in seconds.
      type: int
    acquired_at:
      description: When the lock was acquired (UTC, ISO 8601).
      type: str
    acquired_at_epoch:
      description: When the lock was acquired, in seconds since the epoch.
      type: float
    refreshed_at:
      description: When the lock was last acquired or refreshed (UTC, ISO 8601).
      type: str
    expires_at:
      description: When the lock expires (UTC, ISO 8601).
      type: str
    expires_at_epoch:
      description: When the lock expires, in seconds since the epoch.
      type: float
  sample:
    service: catalog
    token: 3f6c1e0a9b8d4c2e7f1a0b9c8d7e6f5a
    owner: alice@ctl
    job_id: "42"
    strategy: rolling
    version: 1.1.0
    ttl: 1800
    acquired_at: "2026-11-28T13:00:00Z"
    acquired_at_epoch: 1795870800.0
    refreshed_at: "2026-11-28T13:00:00Z"
    expires_at: "2026-11-28T13:30:00Z"
    expires_at_epoch: 1795872600.0
held:
  description: Whether the lock is held (present and not expired) after the call.
  returned: always
  type: bool
  sample: true
expired:
  description: Whether RV(lock) is there but has expired.
  returned: always
  type: bool
  sample: false
expires_in:
  description: Whole seconds, rounded up, until RV(lock) expires; 0 when it has expired; null when there is none.
  returned: always
  type: int
  sample: 1800
token:
  description: The holder's token, made up when O(token) was not given. Pass it back to refresh or release the lock.
  returned: when O(state=acquired)
  type: str
  sample: 3f6c1e0a9b8d4c2e7f1a0b9c8d7e6f5a
took_over:
  description: The expired lock of another holder that this acquire took over, or null.
  returned: when O(state=acquired)
  type: dict
  sample: {owner: bob@ctl, job_id: "41", strategy: canary, version: 1.0.9, expires_at: "2026-11-28T12:55:00Z"}
released:
  description: The lock that was removed (that would be removed, in check mode), or null.
  returned: when O(state=released)
  type: dict
  sample: {owner: alice@ctl, job_id: "42", strategy: rolling, version: 1.1.0}
corrupt:
  description: Whether O(force=true) removed a lock file that was not a valid lock.
  returned: when O(state=released)
  type: bool
  sample: false
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vmfleet.deploy.plugins.module_utils.deploy_lock import (
    DEFAULT_LOCK_DIR,
    DEFAULT_TTL,
    STATES,
    LockError,
    acquire,
    check_service,
    check_ttl,
    query,
    release,
    render_lock,
)


class DeployLockManager(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def __call__(self):
        params = self.params
        state = params["state"]
        service = check_service(params["service"])
        check_ttl(params["ttl"])
        if state == "acquired":
            if params["force"]:
                raise LockError(
                    "force is only for state=released: an acquire never takes a live lock; release it first "
                    "with state=released and force=true if the run that holds it is gone"
                )
            result = acquire(
                params["lock_dir"],
                service,
                token=params["token"],
                ttl=params["ttl"],
                owner=params["owner"],
                job_id=params["job_id"],
                strategy=params["strategy"],
                version=params["version"],
                check_mode=self.module.check_mode,
            )
        elif state == "released":
            result = release(
                params["lock_dir"],
                service,
                token=params["token"],
                force=params["force"],
                check_mode=self.module.check_mode,
            )
        else:
            result = query(params["lock_dir"], service)

        before = result.pop("before")
        if self.module._diff and state != "query":
            result["diff"] = dict(
                before_header=result["path"],
                after_header=result["path"],
                before=render_lock(before) if before is not None else "",
                after=render_lock(result["lock"]) if result["lock"] is not None else "",
            )
        return result


def main():
    argument_spec = dict(
        service=dict(type="str", required=True),
        lock_dir=dict(type="path", default=DEFAULT_LOCK_DIR),
        state=dict(type="str", choices=list(STATES), default="acquired"),
        # The token only identifies the holder (force releases any lock): it stays visible, so it can be registered.
        token=dict(type="str", no_log=False),
        force=dict(type="bool", default=False),
        owner=dict(type="str"),
        job_id=dict(type="str"),
        strategy=dict(type="str"),
        version=dict(type="str"),
        ttl=dict(type="int", default=DEFAULT_TTL),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        result = DeployLockManager(module)()
    except LockError as exc:
        extra = dict(exc.result)
        extra.pop("before", None)
        module.fail_json(msg=str(exc), exception=traceback.format_exc(), **extra)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
