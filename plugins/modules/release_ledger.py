#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: release_ledger
short_description: Read or record events in a service's release ledger on a host
version_added: 0.1.0
description:
  - Each app host keeps, for each service, a release ledger at C(<ledger_dir>/<service>/ledger.json).
    It holds the C(current) release, the C(previous) release (the rollback target), the active
    C(slot), a C(history) of events, newest first, and C(updated_at).
  - A release is a dictionary with C(version), C(image), C(digest), C(image_id), C(slot), C(runtime),
    C(strategy), C(deploy_id) and, once it serves, C(deployed_at).
  - A release becomes C(current) only once it serves traffic (O(event=served)).
  - A release that failed or was rolled back never becomes C(previous). It goes into the history,
    marked C(failed) or C(rolled_back), with the reason.
  - C(previous) is worked out from the history, newest entry first. A C(served) entry is the
    rollback target unless it is the current release, or a newer entry marks the same release
    C(failed) or C(rolled_back). History entries without C(event) (the older ledger format) count as
    C(served). So a release that was rolled back and later served again successfully is a valid
    rollback target again.
  - Two releases are the same when they have the same C(version) and, when both have a non-empty
    C(digest), the same digest.
  - The file is written to a temporary file in the same directory, synced and renamed over the
    ledger, as JSON with sorted keys, mode C(0644). A missing directory is created with mode C(0755).
  - A missing or empty file is the empty ledger. A file that is not a JSON object fails the module
    and is never overwritten.
author:
  - vmfleet maintainers (@vmfleet)
extends_documentation_fragment:
  - vmfleet.deploy.attributes
  - vmfleet.deploy.attributes.CHECK_AND_DIFF
options:
  service:
    description:
      - The service name, for example V(catalog). It is the name of the ledger's directory, so it
        must start with a letter or digit and hold only letters, digits, C(_), C(.) and C(-).
    type: str
    required: true
  ledger_dir:
    description:
      - The directory that holds one directory of ledgers for each service.
    type: path
    default: /var/lib/vmfleet
  event:
    description:
      - V(read) returns the ledger and never writes, not even when the file or directory is missing.
      - V(served) records that O(release) now serves traffic. It becomes C(current), and the top-level
        C(slot) becomes its slot. Nothing changes when C(current) already is the same release in the
        same slot with the same runtime.
      - V(failed) records that O(release) failed, with O(reason). C(current), C(previous) and C(slot)
        stay as they are. Every failure is recorded, so this always reports C(changed).
      - V(analysed) records the verdict of a canary analysis of O(release), with O(reason) (the verdict and
        its numbers), in the same way as V(failed). It does not make the release count as failed.
      - V(rolled_back) records that the current release was taken out of service, with O(reason), and
        that O(release), the rollback target, now serves. Nothing changes when the target already is
        C(current), in the same slot.
    type: str
    choices: [read, served, failed, rolled_back, analysed]
    default: read
  release:
    description:
      - The release of the event. Required with every O(event) but V(read), which ignores it.
      - It must have a non-empty C(version). The known keys are C(version), C(image), C(digest),
        C(image_id), C(slot) (V(blue) or V(green) when given), C(runtime), C(strategy) and
        C(deploy_id); their values are stored as strings or null. Other keys are kept as given.
      - C(event), C(at), C(reason) (the history's own keys) and C(deployed_at) (set when the release
        starts to serve) are dropped, so a release taken from the ledger can be passed back as is.
      - When it becomes C(current) without a C(deploy_id), it gets a timestamp id such as
        V(20261128T031500Z).
    type: dict
  reason:
    description:
      - Why the release failed or was rolled back, or the verdict of an analysis. Required with
        O(event=failed), O(event=rolled_back) and O(event=analysed); ignored otherwise.
    type: str
  history_size:
    description:
      - Keep only the newest O(history_size) history entries when writing. It must be at least 1.
      - C(previous) is worked out before the history is cut.
    type: int
    default: 50
notes:
  - The deploy lock keeps two deploys of one service from writing one ledger at the same time; this
    module does not lock the file.
seealso:
  - module: vmfleet.deploy.haproxy_map
"""

EXAMPLES = r"""
- name: Read the ledger of the catalog service
  vmfleet.deploy.release_ledger:
    service: catalog
  register: catalog_ledger
  check_mode: false

- name: Record that catalog 1.4.0 serves from the green slot
  vmfleet.deploy.release_ledger:
    service: catalog
    event: served
    release:
      version: 1.4.0
      image: registry.example.com/catalog:1.4.0
      digest: sha256:5d2a0f8c...
      image_id: sha256:91bc3e...
      slot: green
      runtime: docker
      strategy: blue_green
      deploy_id: "{{ tower_job_id | default(omit) }}"

- name: Record that catalog 1.5.0 failed its health gate
  vmfleet.deploy.release_ledger:
    service: catalog
    event: failed
    release:
      version: 1.5.0
      slot: blue
    reason: HTTP health gate failed on app2 after 60 s

- name: Roll back to the previous release and record it
  vmfleet.deploy.release_ledger:
    service: catalog
    event: rolled_back
    release: "{{ catalog_ledger.previous }}"
    reason: error rate above 5 % after the flip
  when: catalog_ledger.previous is not none
"""

RETURN = r"""
path:
  description: The ledger file.
  returned: always
  type: str
  sample: /var/lib/vmfleet/catalog/ledger.json
exists:
  description: Whether the ledger file existed before the module ran.
  returned: always
  type: bool
  sample: true
ledger:
  description: The whole ledger after the event (what would be written, in check mode).
  returned: always
  type: dict
  contains:
    service:
      description: The service name.
      type: str
    slot:
      description: The slot the current release serves from, or null.
      type: str
    current:
      description: The release that serves traffic, or null.
      type: dict
    previous:
      description: The rollback target, or null.
      type: dict
    history:
      description:
        - Events, newest first. Each one is a release with C(event) (V(served), V(failed), V(rolled_back) or
          V(analysed)), C(at) (UTC, ISO 8601) and, for all but V(served), C(reason).
      type: list
      elements: dict
    updated_at:
      description: When the ledger last changed (UTC, ISO 8601), or null.
      type: str
  sample:
    service: catalog
    slot: green
    current:
      version: 1.4.0
      digest: sha256:5d2a...
      slot: green
      runtime: docker
      deploy_id: "20261128T031500Z"
      deployed_at: "2026-11-28T03:15:00Z"
    previous:
      version: 1.3.2
      digest: sha256:77e0...
      slot: blue
      runtime: docker
      deploy_id: "20261120T101000Z"
      deployed_at: "2026-11-20T10:10:00Z"
    history: []
    updated_at: "2026-11-28T03:15:00Z"
current:
  description: A copy of the ledger's C(current) release, or null.
  returned: always
  type: dict
  sample: {version: 1.4.0, slot: green, deployed_at: "2026-11-28T03:15:00Z"}
previous:
  description: A copy of the ledger's C(previous) release (the rollback target), or null.
  returned: always
  type: dict
  sample: {version: 1.3.2, slot: blue, deployed_at: "2026-11-20T10:10:00Z"}
"""

import errno
import os
import tempfile
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_text

from ansible_collections.vmfleet.deploy.plugins.module_utils.release_ledger import (
    DEFAULT_HISTORY_SIZE,
    EVENTS,
    LedgerError,
    apply_event,
    check_service,
    make_dirs,
    parse_ledger,
    render_ledger,
)

DIR_MODE = 0o755
FILE_MODE = 0o644


class LedgerFile(object):
    """One ledger file: reads it once, writes it atomically."""

    def __init__(self, module, ledger_dir, service):
        self.module = module
        self.service = service
        self.directory = os.path.join(ledger_dir, service)
        self.path = os.path.join(self.directory, "ledger.json")
        self.text = self._read()
        self.exists = self.text is not None

    def _read(self):
        try:
            with open(self.path, "rb") as handle:
                return to_text(handle.read(), errors="surrogate_or_strict")
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                return None
            raise LedgerError("cannot read the ledger %s: %s" % (self.path, exc)) from exc
        except UnicodeError as exc:
            raise LedgerError("the ledger %s is not UTF-8 text: %s" % (self.path, exc)) from exc

    def ledger(self):
        return parse_ledger(self.text, self.path, self.service)

    def write(self, text):
        try:
            make_dirs(self.directory, DIR_MODE)
        except OSError as exc:
            raise LedgerError("cannot create the ledger directory %s: %s" % (self.directory, exc)) from exc
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".ledger.json.", suffix=".tmp")
        except OSError as exc:
            raise LedgerError("cannot write the ledger %s: %s" % (self.path, exc)) from exc
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(to_bytes(text, errors="surrogate_or_strict"))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, FILE_MODE)
            self.module.atomic_move(tmp, self.path)
            os.chmod(self.path, FILE_MODE)
        except OSError as exc:
            raise LedgerError("cannot write the ledger %s: %s" % (self.path, exc)) from exc
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


class ReleaseLedgerManager(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params

    def __call__(self):
        params = self.params
        service = check_service(params["service"])
        ledger_file = LedgerFile(self.module, params["ledger_dir"], service)
        before = ledger_file.ledger()
        after, changed = apply_event(
            before,
            params["event"],
            release=params["release"],
            reason=params["reason"],
            history_size=params["history_size"],
        )
        before_text = ledger_file.text or ""
        after_text = before_text
        if changed:
            after["service"] = service
            after_text = render_ledger(after)
            if not self.module.check_mode:
                ledger_file.write(after_text)

        result = dict(
            changed=changed,
            path=ledger_file.path,
            exists=ledger_file.exists,
            ledger=after,
            current=after.get("current"),
            previous=after.get("previous"),
        )
        if self.module._diff:
            result["diff"] = dict(
                before_header=ledger_file.path,
                after_header=ledger_file.path,
                before=before_text,
                after=after_text,
            )
        return result


def main():
    argument_spec = dict(
        service=dict(type="str", required=True),
        ledger_dir=dict(type="path", default="/var/lib/vmfleet"),
        event=dict(type="str", choices=list(EVENTS), default="read"),
        release=dict(type="dict"),
        reason=dict(type="str"),
        history_size=dict(type="int", default=DEFAULT_HISTORY_SIZE),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        # reason is checked with the release (apply_event), which also refuses an empty one.
        required_if=[
            ("event", "served", ("release",)),
            ("event", "failed", ("release",)),
            ("event", "rolled_back", ("release",)),
            ("event", "analysed", ("release",)),
        ],
        supports_check_mode=True,
    )
    try:
        if module.params["history_size"] < 1:
            raise LedgerError("history_size must be at least 1, got %d" % module.params["history_size"])
        result = ReleaseLedgerManager(module)()
    except LedgerError as exc:
        module.fail_json(msg=str(exc), exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
