# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Turn slurped release ledgers into {service: current release}."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: ledger_map
short_description: Map slurped release ledgers to each service's current release
version_added: 0.1.0
description:
  - Takes the registered results of C(ansible.builtin.slurp) looped over services (the loop item is the
    service name, the file C(/var/lib/vmfleet/<service>/ledger.json)) and returns a dictionary from service
    name to the ledger's C(current) release, or C(None) when the service has no ledger on the host yet.
options:
  _input:
    description: The C(results) list of a looped C(slurp).
    type: list
    elements: dict
    required: true
"""

EXAMPLES = r"""
- name: Read the ledgers
  ansible.builtin.slurp:
    src: "/var/lib/vmfleet/{{ item }}/ledger.json"
  loop: [catalog, cart]
  register: ledgers
  failed_when: false

- name: Current release of each service
  ansible.builtin.set_fact:
    current: "{{ ledgers.results | vmfleet.deploy.ledger_map }}"
"""

RETURN = r"""
_value:
  description: Service name to its current release (version, image, digest, image_id, slot, deploy_id, ...) or None.
  type: dict
"""

import base64
import json

from ansible.errors import AnsibleFilterError


def ledger_map(results):
    """{service: ledger["current"] or None} from looped slurp results."""
    mapped = {}
    for result in results:
        service = result.get("item")
        if service is None:
            raise AnsibleFilterError("ledger_map wants the results of a slurp looped over service names")
        content = result.get("content")
        if not content:
            mapped[service] = None
            continue
        try:
            ledger = json.loads(base64.b64decode(content))
        except ValueError as exc:
            raise AnsibleFilterError("the ledger of %s is not valid JSON: %s" % (service, exc)) from None
        if not isinstance(ledger, dict):
            raise AnsibleFilterError("the ledger of %s is not a JSON object" % service)
        mapped[service] = ledger.get("current")
    return mapped


class FilterModule(object):
    def filters(self):
        return {"ledger_map": ledger_map}
