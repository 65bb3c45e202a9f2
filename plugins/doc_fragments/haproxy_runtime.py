# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The connection options of the HAProxy runtime-API modules (module_utils/haproxy_args.py)."""

    DOCUMENTATION = r"""
options:
  socket:
    description:
      - The HAProxy runtime API socket. A unix socket path, or V(tcp://host:port) / V(host:port).
      - Changing server states needs a socket at C(level admin); reading stats and maps works at C(level user).
    type: str
    default: /run/haproxy/admin.sock
  timeout:
    description:
      - Seconds to wait for connecting to the runtime API and for each of its answers.
    type: float
    default: 5.0
"""
