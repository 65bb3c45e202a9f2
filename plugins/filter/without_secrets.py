# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""vmfleet_services entries without their secret_env."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: without_secrets
short_description: vmfleet_services entries without their secret_env
version_added: 0.3.0
description:
  - Takes C(vmfleet_services) (a list of entries) or one entry, and returns a copy without C(secret_env).
  - The strategies and C(bootstrap.yml) pass services to loops, facts and role arguments through this filter, since
    C(-v) and C(-vvv) print those whole. The service role reads C(secret_env) from C(vmfleet_services) itself, only in
    tasks that run with C(no_log).
options:
  _input:
    description: A list of C(vmfleet_services) entries, or one entry.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Loop over the services, printing nothing secret
  ansible.builtin.debug:
    msg: "{{ item.name }} {{ item.version }}"
  loop: "{{ vmfleet_services | vmfleet.deploy.without_secrets }}"
"""

RETURN = r"""
_value:
  description: The same entries (or entry), each without the key C(secret_env).
  type: raw
"""

from collections.abc import Iterable

from ansible.errors import AnsibleFilterError


def _strip(entry):
    if not isinstance(entry, dict):
        raise AnsibleFilterError("without_secrets wants vmfleet_services entries (dicts), got %r"
                                 % (type(entry).__name__,))
    return dict((key, value) for key, value in entry.items() if key != "secret_env")


def without_secrets(services):
    if isinstance(services, dict):
        return _strip(services)
    # A list, or what a Jinja filter such as selectattr hands on (a generator).
    if isinstance(services, (str, bytes)) or not isinstance(services, Iterable):
        raise AnsibleFilterError("without_secrets wants a list of vmfleet_services entries, got %r"
                                 % (type(services).__name__,))
    return [_strip(entry) for entry in services]


class FilterModule(object):
    def filters(self):
        return {"without_secrets": without_secrets}
