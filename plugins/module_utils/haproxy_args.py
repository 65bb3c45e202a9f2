# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Argument spec shared by the HAProxy runtime API modules.

Private to the vmfleet.deploy collection. Like kubernetes.core's
``args_common``: every module that talks to the runtime API merges
``HAPROXY_RUNTIME_ARGS`` into its own ``argument_spec`` and builds its client
with ``runtime_from_params``. The matching documentation of the ``socket`` and
``timeout`` options lives once, in the doc fragment
``plugins/doc_fragments/haproxy_runtime.py``; each module's DOCUMENTATION pulls it
in with ``extends_documentation_fragment: [vmfleet.deploy.haproxy_runtime]``.
A change to an option goes in both places.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

from ansible_collections.vmfleet.deploy.plugins.module_utils.haproxy_runtime import HAProxyRuntime

DEFAULT_SOCKET = "/run/haproxy/admin.sock"
DEFAULT_TIMEOUT = 5.0

HAPROXY_RUNTIME_ARGS = dict(
    socket=dict(type="str", default=DEFAULT_SOCKET),
    timeout=dict(type="float", default=DEFAULT_TIMEOUT),
)


def haproxy_argument_spec(**extra):
    """A fresh argument spec: the shared socket options plus ``extra``."""
    spec = copy.deepcopy(HAPROXY_RUNTIME_ARGS)
    spec.update(extra)
    return spec


def runtime_from_params(params):
    """Build an ``HAProxyRuntime`` client from a module's params."""
    return HAProxyRuntime(params["socket"], timeout=params["timeout"])
