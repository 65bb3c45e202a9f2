# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The health check of a service, with the collection's defaults filled in."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: service_health
short_description: The health check of a vmfleet service, with the defaults filled in
version_added: 0.2.0
description:
  - Takes one entry of C(vmfleet_services) (or its C(health) dictionary) and returns its health check with
    the collection's defaults, C(path=/healthz) and C(status_code=[200]), filled in.
  - The one place those defaults live. The service role's gate, the load balancer's gate of the strategies and
    the HAProxy checks all read the health check through this filter.
options:
  _input:
    description: A C(vmfleet_services) entry, or its C(health) dictionary.
    type: dict
    required: true
"""

EXAMPLES = r"""
- name: The URL path HAProxy checks
  ansible.builtin.debug:
    msg: "{{ (vmfleet_services | first | vmfleet.deploy.service_health).path }}"
"""

RETURN = r"""
_value:
  description: C(path), C(status_code) (a list of integers) and, when set, C(json_query) and C(body_regex).
  type: dict
"""

from ansible.errors import AnsibleFilterError

DEFAULT_HEALTH = {"path": "/healthz", "status_code": [200]}


def service_health(entry):
    if not isinstance(entry, dict):
        raise AnsibleFilterError("service_health wants a vmfleet_services entry (a dict), got %r" % (entry,))
    # A service entry has a name (and maybe health); anything else is a health dict itself.
    health = dict((entry.get("health") or {}) if ("name" in entry or "health" in entry) else entry)
    merged = dict(DEFAULT_HEALTH)
    merged.update(dict((k, v) for k, v in health.items() if v is not None))
    codes = merged["status_code"]
    if not isinstance(codes, (list, tuple)):
        codes = [codes]
    try:
        merged["status_code"] = [int(code) for code in codes]
    except (TypeError, ValueError):
        raise AnsibleFilterError("health.status_code must be a list of integers, got %r" % (codes,)) from None
    return merged


class FilterModule(object):
    def filters(self):
        return {"service_health": service_health}
