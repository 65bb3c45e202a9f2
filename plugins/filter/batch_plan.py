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
  - Each size is worked out by ansible-core's own code for C(serial). A percentage must be a whole
    number of percent (C(serial) cannot take C("33.3%")), and a number a whole number of hosts; any
    other value fails with a message that names it.
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

import re

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types
from ansible.utils.helpers import pct_to_int

_BAD_SIZE = "batch size must be a positive whole number or a whole percentage in (0, 100] such as 25%%, got %r"


def _batch_size(spec, total):
    """One batch size from a number or a percentage.

    The size itself is ansible-core's own computation for ``serial`` (pct_to_int), so the plan
    is the play's batches. This only refuses, before any change, what serial would crash on
    (``33.3%``: "invalid literal for int()") or quietly read as something else (``2.5`` as 2,
    ``0`` or ``-1`` as every host at once)."""
    if isinstance(spec, bool) or not isinstance(spec, (int, string_types)):
        raise AnsibleFilterError(_BAD_SIZE % (spec,))
    text = str(spec).strip()
    number = text[:-1].strip() if text.endswith("%") else text
    if not re.fullmatch(r"[0-9]+", number) or int(number) < 1 or (text.endswith("%") and int(number) > 100):
        raise AnsibleFilterError(_BAD_SIZE % (spec,))
    return pct_to_int(text, total)


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
