# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Batch plans for rolling deployments: the same split as a play's ``serial``."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: batch_plan
short_description: Split hosts into rolling batches the way a play's C(serial) does
version_added: 0.1.0
description:
  - Returns the list of batches (lists of hosts) that C(serial) with the same value would run, so a
    plan printed in check mode matches what the play does.
  - A batch size is a number, a percentage of all hosts (C("25%"), at least one host), or a list of
    those applied in turn, the last one repeating until every host is in a batch.
options:
  _input:
    description: The hosts, in play order.
    type: list
    elements: str
    required: true
  batch:
    description: A number, a percentage string, or a list of them.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ groups['app_hosts'] | vmfleet.deploy.batch_plan([1, '50%']) }}"
  # 4 hosts -> [['app1'], ['app2', 'app3'], ['app4']]
"""

RETURN = r"""
_value:
  description: The batches, each a list of hosts.
  type: list
  elements: list
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types


def _batch_size(spec, total):
    """One batch size from a number or a percentage, as ansible-core's serial does."""
    if isinstance(spec, bool):
        raise AnsibleFilterError("batch size must be a number or a percentage, got %r" % (spec,))
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            percent = float(text[:-1])
            if percent <= 0 or percent > 100:
                raise ValueError(text)
            return max(1, int(total * percent / 100.0))
        size = int(text)
    except ValueError:
        raise AnsibleFilterError(
            "batch size must be a positive number or a percentage in (0, 100], got %r" % (spec,)
        ) from None
    if size < 1:
        raise AnsibleFilterError("batch size must be a positive number or a percentage in (0, 100], got %r" % (spec,))
    return size


def batch_plan(hosts, batch):
    """Split ``hosts`` into batches of ``batch`` (number, percentage or a list of them)."""
    hosts = list(hosts)
    specs = list(batch) if isinstance(batch, (list, tuple)) else [batch]
    if not specs:
        raise AnsibleFilterError("batch must not be an empty list")
    if any(isinstance(s, (list, tuple, dict)) for s in specs) or (
        not isinstance(batch, (list, tuple)) and not isinstance(batch, (int, string_types))
    ):
        raise AnsibleFilterError("batch must be a number, a percentage or a list of them, got %r" % (batch,))
    sizes = [_batch_size(s, len(hosts)) for s in specs]
    plan, start, index = [], 0, 0
    while start < len(hosts):
        size = sizes[min(index, len(sizes) - 1)]
        plan.append(hosts[start:start + size])
        start += size
        index += 1
    return plan


class FilterModule(object):
    def filters(self):
        return {"batch_plan": batch_plan}
