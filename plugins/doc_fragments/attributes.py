# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """Shared ``attributes:`` documentation for the collection's modules."""

    # Standard attributes of every module in this collection.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
"""

    # For modules that only read state (health checks, stats).
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: The module never changes anything, so it runs the same way in check mode.
  diff_mode:
    support: none
"""

    # For modules that change state and report before/after.
    CHECK_AND_DIFF = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""
