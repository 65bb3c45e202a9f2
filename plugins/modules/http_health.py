# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: http_health
short_description: Wait until an HTTP endpoint is healthy
version_added: 0.1.0
description:
  - Polls an HTTP or HTTPS URL until its answer is healthy, or fails when it is still not healthy after O(timeout).
  - An answer is healthy when its status is in O(status_code) and, when they are given, the body matches
    O(body_regex) and the JMESPath expression O(json_query) is true on the JSON body.
  - Every failed attempt, including a refused, reset or timed-out connection and a TLS error, resets the count of
    O(consecutive_successes).
  - The module only reads. It runs the same checks in check mode, and it always reports RV(ignore:changed=false).
  - It runs wherever the task runs. With C(delegate_to), the request is sent from the delegated host, for example
    from the load balancer, and O(ca_path), O(client_cert) and O(client_key) are paths on that host.
author:
  - vmfleet maintainers (@vmfleet)
requirements:
  - jmespath (only when O(json_query) is used)
extends_documentation_fragment:
  - vmfleet.deploy.attributes
  - vmfleet.deploy.attributes.READ_ONLY
options:
  url:
    description:
      - The C(http://) or C(https://) URL to probe.
      - User name and password in the URL (C(https://user:pass@host/)) are sent as basic authentication.
        The password never appears in the result, the messages or the logged arguments (it is shown as
        C(********)), nor do the values of O(headers) C(Authorization), C(Proxy-Authorization) and C(Cookie).
    type: str
    required: true
  method:
    description:
      - The HTTP method of every attempt.
    type: str
    default: GET
  headers:
    description:
      - Extra request headers, as a dictionary of name and value.
      - They override the module's default C(User-Agent).
      - When a header carries a credential, set C(no_log) on the task.
    type: dict
    default: {}
  body:
    description:
      - A request body, sent UTF-8 encoded with every attempt. Set a C(Content-Type) in O(headers) to go with it.
    type: str
  validate_certs:
    description:
      - Whether to verify the server's TLS certificate and host name.
      - Only set this to V(false) on a trusted network, for example for self-signed certificates in a lab.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM file of CA certificates to verify the server against, instead of the system's CAs.
    type: path
  client_cert:
    description:
      - A PEM file with the client certificate (chain) for TLS client authentication.
      - It may also hold the private key, in which case O(client_key) is not needed.
    type: path
  client_key:
    description:
      - A PEM file with the private key of O(client_cert).
    type: path
  request_timeout:
    description:
      - The socket timeout of one attempt, in seconds. It must be greater than 0.
      - It is shortened near the end of O(timeout), so that the last attempt ends no later than one O(interval)
        after O(timeout).
    type: float
    default: 5
  follow_redirects:
    description:
      - Whether to follow redirects, for every method.
      - By default a redirect is an answer like any other, healthy only when its status is in O(status_code).
        A health check usually should not follow redirects.
    type: bool
    default: false
  use_proxy:
    description:
      - Whether to use the proxy set in the environment (C(http_proxy), C(https_proxy), C(no_proxy)).
      - Set it to V(false) to reach a service directly even where a proxy is configured.
    type: bool
    default: true
  status_code:
    description:
      - The HTTP status codes that count as healthy.
    type: list
    elements: int
    default: [200]
  body_regex:
    description:
      - A Python regular expression that must match the decoded body somewhere (C(re.search)).
    type: str
  json_query:
    description:
      - A JMESPath expression over the JSON body that must be true, for example
        V(status == 'ok' && version == '1.1.0').
      - Truth follows JMESPath's rules, the same as for C(&&) and C(||) inside an expression.
        V(false), V(null), the empty string, list and object are false; every number, V(0) included, is true.
      - An answer whose body is not JSON is unhealthy.
      - Needs the C(jmespath) Python library on the host that runs the module.
    type: str
  consecutive_successes:
    description:
      - How many healthy answers in a row are needed. A failed attempt starts the count again.
      - It must be 1 or more.
    type: int
    default: 1
  interval:
    description:
      - Seconds to wait after an attempt before the next one. It must be greater than 0.
    type: float
    default: 1
  timeout:
    description:
      - Seconds to keep trying. It must be 0 or more; V(0) makes exactly one attempt.
      - The module then fails, with what it expected and what it last saw.
      - The whole run takes at most about O(timeout) plus one O(interval).
    type: float
    default: 60
notes:
  - Each attempt opens a new connection and sends no cookies from earlier attempts.
  - Bodies larger than 1 MiB are cut at 1 MiB, and are then never valid JSON.
seealso:
  - module: ansible.builtin.uri
  - module: ansible.builtin.wait_for
"""

EXAMPLES = r"""
- name: Wait until the new catalog container answers on its slot port
  vmfleet.deploy.http_health:
    url: "http://{{ ansible_host }}:8081/healthz"
    timeout: 30

# The request is sent from the load balancer, over the same network path HAProxy
# uses. Module arguments are templated with the app host's variables, so the
# URL names the app host even though the task runs on the load balancer.
- name: Gate on the version from the load balancer's side, three good answers in a row
  vmfleet.deploy.http_health:
    url: "http://{{ hostvars[inventory_hostname].ansible_host }}:8082/healthz"
    json_query: "status == 'ok' && version == '{{ catalog_version }}'"
    consecutive_successes: 3
    interval: 0.5
    timeout: 60
  delegate_to: "{{ groups['loadbalancers'][0] }}"

- name: Check the HTTPS frontend with the fleet CA and a client certificate
  vmfleet.deploy.http_health:
    url: https://shop.example.internal/catalog/healthz
    ca_path: /etc/vmfleet/pki/ca.crt
    client_cert: /etc/vmfleet/pki/monitor.crt
    client_key: /etc/vmfleet/pki/monitor.key
    body_regex: '"status":\s*"ok"'
  register: frontend_health

- name: Probe once with an authenticated POST and accept 200 or 204
  vmfleet.deploy.http_health:
    url: "http://{{ ansible_host }}:9000/internal/ready"
    method: POST
    headers:
      Authorization: "Bearer {{ vmfleet_probe_token }}"
      Content-Type: application/json
    body: '{"deep": true}'
    status_code: [200, 204]
    timeout: 0
  no_log: true
"""

RETURN = r"""
healthy:
  description: Whether the URL was healthy. Always V(true) when the module succeeds.
  returned: always
  type: bool
  sample: true
attempts:
  description: How many requests were sent.
  returned: always
  type: int
  sample: 4
elapsed:
  description: Seconds from the first attempt to the end.
  returned: always
  type: float
  sample: 3.021
url:
  description: The URL that was probed.
  returned: always
  type: str
  sample: http://10.0.0.5:8080/healthz
status:
  description: The HTTP status of the last attempt, or V(null) when it got no HTTP answer.
  returned: always
  type: int
  sample: 200
body_excerpt:
  description: The first 512 characters of the last answer's decoded body, or V(null) when it got no HTTP answer.
  returned: always
  type: str
  sample: '{"status": "ok", "version": "1.1.0"}'
json:
  description: The last answer's body parsed as JSON, or V(null) when it was not JSON or there was no answer.
  returned: always
  type: raw
  sample: {"status": "ok", "version": "1.1.0"}
reason:
  description:
    - V(healthy), or why the last attempt was not healthy.
    - Several reasons are joined with C(; ).
  returned: always
  type: str
  sample: "status 503 not in [200]; json_query `status == 'ok'` evaluated to false"
"""

import math
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.vmfleet.deploy.plugins.module_utils.http_probe import (
    HAS_JMESPATH,
    JMESPATH_IMPORT_ERROR,
    REQUEST_ARGUMENT_SPEC,
    HealthCriteria,
    HttpProber,
    ProbeConfigError,
    request_secrets,
)

BODY_EXCERPT_CHARS = 512
# How much of the last body goes into a failure message.
MESSAGE_BODY_CHARS = 200


class HttpHealthError(Exception):
    """Raised by HttpHealthCheck; main() reports it. ``result`` holds the
    return values that go with the failure (attempts, status, ...)."""

    def __init__(self, msg, result=None):
        super().__init__(msg)
        self.msg = msg
        self.result = result or {}


def _check_number(name, value, minimum, inclusive):
    if value is None or not math.isfinite(value) or (value < minimum if inclusive else value <= minimum):
        raise HttpHealthError(
            "%s must be %s %g, got %s"
            % (name, ">=" if inclusive else ">", minimum, "%g" % value if value is not None else "null")
        )


class HttpHealthCheck(object):
    """Polls one URL until ``criteria`` hold ``consecutive_successes`` times in a row."""

    def __init__(self, params):
        self.timeout = params["timeout"]
        self.interval = params["interval"]
        self.request_timeout = params["request_timeout"]
        self.consecutive_successes = params["consecutive_successes"]
        _check_number("timeout", self.timeout, 0, inclusive=True)
        _check_number("interval", self.interval, 0, inclusive=False)
        _check_number("request_timeout", self.request_timeout, 0, inclusive=False)
        _check_number("consecutive_successes", self.consecutive_successes, 1, inclusive=True)
        self.url = params["url"]
        self.criteria = HealthCriteria(params["status_code"], params["body_regex"], params["json_query"])
        self.prober = HttpProber(
            params["url"],
            method=params["method"],
            headers=params["headers"],
            body=params["body"],
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            client_cert=params["client_cert"],
            client_key=params["client_key"],
            follow_redirects=params["follow_redirects"],
            use_proxy=params["use_proxy"],
        )

    def run(self):
        """Returns the result dict when healthy; raises HttpHealthError otherwise."""
        start = time.monotonic()
        deadline = start + self.timeout
        attempts = 0
        streak = 0
        while True:
            attempts += 1
            # The attempt must end by deadline + interval at the latest: an attempt
            # started at the deadline still gets a fair (interval-long) chance.
            budget = min(self.request_timeout, max(deadline - time.monotonic(), 0.0) + self.interval)
            last = self.prober.probe(budget)
            problems = self.criteria.problems(last)
            streak = 0 if problems else streak + 1
            if streak >= self.consecutive_successes:
                return self._result(last, "healthy", attempts, start, healthy=True)
            now = time.monotonic()
            if now >= deadline:
                break
            time.sleep(min(self.interval, deadline - now))

        if problems:
            reason = "; ".join(problems)
        else:
            reason = "healthy, but only %d of %d consecutive successes" % (streak, self.consecutive_successes)
        result = self._result(last, reason, attempts, start, healthy=False)
        raise HttpHealthError(self._failure_message(last, reason, result), result)

    def _result(self, last, reason, attempts, start, healthy):
        return dict(
            changed=False,
            healthy=healthy,
            attempts=attempts,
            elapsed=round(time.monotonic() - start, 3),
            url=self.url,
            status=last.status,
            body_excerpt=last.body[:BODY_EXCERPT_CHARS] if last.body is not None else None,
            json=last.json if last.is_json else None,
            reason=reason,
        )

    def _failure_message(self, last, reason, result):
        expected = self.criteria.describe()
        if self.consecutive_successes > 1:
            expected += ", %d times in a row" % self.consecutive_successes
        if last.status is None:
            seen = reason
        else:
            body = last.body or ""
            shown = repr(body[:MESSAGE_BODY_CHARS]) + ("..." if len(body) > MESSAGE_BODY_CHARS else "")
            seen = "status %d, body %s (%s)" % (last.status, shown if body else "empty", reason)
        return "%s not healthy after %.1f s (%d attempt%s): expected %s; last seen %s" % (
            self.url,
            result["elapsed"],
            result["attempts"],
            "" if result["attempts"] == 1 else "s",
            expected,
            seen,
        )


def main():
    argument_spec = dict(REQUEST_ARGUMENT_SPEC)
    argument_spec.update(
        status_code=dict(type="list", elements="int", default=[200]),
        body_regex=dict(type="str"),
        json_query=dict(type="str"),
        consecutive_successes=dict(type="int", default=1),
        interval=dict(type="float", default=1.0),
        timeout=dict(type="float", default=60.0),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    # Masked in everything the module returns, including its invocation (which -v shows).
    module.no_log_values.update(request_secrets(module.params["url"], module.params["headers"]))

    if module.params["json_query"] is not None and not HAS_JMESPATH:
        module.fail_json(msg=missing_required_lib("jmespath"), exception=JMESPATH_IMPORT_ERROR)

    # Every error is reported here, once. Unhealthy and misconfigured are
    # expected outcomes with a full message and no traceback; anything else
    # is a bug and carries one.
    try:
        result = HttpHealthCheck(module.params).run()
    except HttpHealthError as e:
        module.fail_json(msg=e.msg, **e.result)
    except ProbeConfigError as e:
        module.fail_json(msg=to_native(e))
    except Exception as e:
        module.fail_json(
            msg="http_health failed unexpectedly on %s: %s" % (module.params["url"], to_native(e)),
            exception=traceback.format_exc(),
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
