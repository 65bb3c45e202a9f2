# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The maths of a canary: its hosts, its steps, and the verdict of one step from HAProxy's counters."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: canary_analysis
short_description: The verdict of one canary step, from HAProxy's counters of the canary and the stable backend
version_added: 0.3.0
description:
  - Compares the canary with stable over one step of a canary deployment, from two reads of the counters that
    M(vmfleet.deploy.haproxy_stats) returns for the canary's backend and the stable backend, one at the start of
    the step (the input) and one now (O(after)).
  - Per side, C(requests) and C(errors) are the growth of C(req_tot) and C(hrsp_5xx) between the two reads, summed
    over the load balancers when each side is a list (one counters dictionary per load balancer).
    C(error_rate) is C(errors / requests), 0 without requests.
  - C(response_ms) is HAProxy's C(rtime) at the second read, its average response time over its last 1024
    requests, because HAProxy keeps no total of response times to take a difference of. Over several load
    balancers it is averaged, weighted by each one's requests in the step.
  - A counter that went down (HAProxy was restarted and its counters reset) counts from 0, and C(notes) says so.
  - The verdict is V(fail) when any rule of the policy fails, and V(pass) when none does. It is V(inconclusive)
    while the canary has fewer than C(min_requests) requests, unless its errors already exceed
    C(max_error_rate * min_requests), which no later request can make good (then V(fail)).
  - Two more filters live in this file. C(canary_plan(hosts, canary)) returns the canary hosts, the first of
    C(hosts), where C(canary) is a number or a whole percentage such as C(25%) (at least one host); at least one
    host must stay stable. C(canary_steps(steps)) checks and returns the steps, a list of
    C({weight, pause}), with C(weight) a whole percent from 1 to 100, strictly increasing, and C(pause) in seconds
    (0 or more, default 0).
options:
  _input:
    description: The counters at the start of the step, C({canary, stable}), each a counters dictionary or a list.
    type: dict
    required: true
  after:
    description: The counters now, in the same form.
    type: dict
    required: true
  policy:
    description:
      - The rules, all optional.
      - C(min_requests) (100), the canary requests needed for a verdict.
      - C(max_error_rate) (0.01), the highest 5xx rate of the canary, a fraction.
      - C(max_error_rate_increase) (0.01), the highest canary 5xx rate minus the stable one.
      - C(max_response_ms) (none), the highest response time of the canary.
      - C(max_response_ratio) (1.5), the highest canary response time over the stable one, checked when stable has
        one; it fails only when the canary is also more than C(response_slack_ms) (5) slower.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Analyse the step
  ansible.builtin.set_fact:
    verdict: "{{ counters_at_start | vmfleet.deploy.canary_analysis(counters_now, {'min_requests': 200}) }}"

- name: The canary hosts
  ansible.builtin.debug:
    msg: "{{ groups['app_hosts'] | vmfleet.deploy.canary_plan('25%') }}"

- name: The steps, checked
  ansible.builtin.debug:
    msg: "{{ [{'weight': 10, 'pause': 60}, {'weight': 50, 'pause': 60}] | vmfleet.deploy.canary_steps }}"
"""

RETURN = r"""
_value:
  description:
    - C(verdict) (V(pass), V(fail) or V(inconclusive)); C(reasons), one sentence with the numbers per failed rule
      (or why there is no verdict); C(canary) and C(stable), each C({requests, errors, error_rate, response_ms});
      C(policy), the rules with their defaults; C(notes).
  type: dict
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types

DEFAULT_POLICY = {
    "min_requests": 100,
    "max_error_rate": 0.01,
    "max_error_rate_increase": 0.01,
    "max_response_ms": None,
    "max_response_ratio": 1.5,
    "response_slack_ms": 5,
}
_INT_RULES = ("min_requests",)
_FRACTION_RULES = ("max_error_rate", "max_error_rate_increase")


def _number(value, what):
    """A number from an int, a float or a numeric string; booleans and the rest are refused."""
    if isinstance(value, bool):
        raise AnsibleFilterError("%s must be a number, got %r" % (what, value))
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, string_types):
        try:
            return int(value) if value.strip().lstrip("-").isdigit() else float(value)
        except ValueError:
            pass
    raise AnsibleFilterError("%s must be a number, got %r" % (what, value))


def _whole(value, what):
    number = _number(value, what)
    if isinstance(number, float):
        if not number.is_integer():
            raise AnsibleFilterError("%s must be a whole number, got %r" % (what, value))
        number = int(number)
    return number


# ------------------------------------------------------------------ the canary hosts and steps


def canary_plan(hosts, canary):
    """The first hosts of ``hosts`` that run the canary: ``canary`` is a count or a whole percentage ("25%")."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("canary_plan wants a list of hosts, got %r" % (hosts,))
    hosts = list(hosts)
    if len(hosts) < 2:
        raise AnsibleFilterError(
            "a canary needs at least two hosts, one canary and one stable; the group has %d" % len(hosts))
    text = str(canary).strip() if isinstance(canary, string_types) else None
    if text is not None and text.endswith("%"):
        percent = _whole(text[:-1], "the canary percentage")
        if percent < 1 or percent > 100:
            raise AnsibleFilterError("the canary percentage must be 1%% to 100%%, got %r" % (canary,))
        count = max(1, len(hosts) * percent // 100)
    else:
        count = _whole(canary, "vmfleet_canary_hosts (a number or a percentage such as '25%')")
        if count < 1:
            raise AnsibleFilterError("vmfleet_canary_hosts must be at least 1, got %r" % (canary,))
    if count >= len(hosts):
        raise AnsibleFilterError(
            "vmfleet_canary_hosts=%s would put all %d hosts on the canary: at least one host must stay stable"
            % (canary, len(hosts)))
    return hosts[:count]


def canary_steps(steps):
    """The steps checked: [{weight: 1..100 increasing, pause: seconds >= 0}]."""
    if not isinstance(steps, (list, tuple)) or not steps:
        raise AnsibleFilterError("vmfleet_canary_steps must be a non-empty list of {weight, pause}, got %r" % (steps,))
    checked = []
    for index, step in enumerate(steps, start=1):
        where = "vmfleet_canary_steps step %d" % index
        if not isinstance(step, dict):
            raise AnsibleFilterError("%s must be a dict {weight, pause}, got %r" % (where, step))
        unknown = sorted(set(step) - set(("weight", "pause")))
        if unknown:
            raise AnsibleFilterError("%s has unknown keys %s (it takes weight and pause)" % (where, ", ".join(unknown)))
        if "weight" not in step:
            raise AnsibleFilterError("%s has no weight" % where)
        weight = _whole(step["weight"], "%s: weight" % where)
        if weight < 1 or weight > 100:
            raise AnsibleFilterError("%s: weight must be 1 to 100 (percent), got %r" % (where, step["weight"]))
        pause = _number(step.get("pause", 0), "%s: pause" % where)
        if pause < 0:
            raise AnsibleFilterError("%s: pause must be 0 or more seconds, got %r" % (where, step["pause"]))
        if checked and weight <= checked[-1]["weight"]:
            raise AnsibleFilterError("%s: weights must be increasing, got %d after %d"
                                     % (where, weight, checked[-1]["weight"]))
        checked.append({"weight": weight, "pause": pause})
    return checked


# ------------------------------------------------------------------ the analysis


def _policy(policy):
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        raise AnsibleFilterError("the canary analysis policy must be a dict, got %r" % (policy,))
    unknown = sorted(set(policy) - set(DEFAULT_POLICY))
    if unknown:
        raise AnsibleFilterError("the canary analysis policy has unknown keys %s (it takes %s)"
                                 % (", ".join(unknown), ", ".join(sorted(DEFAULT_POLICY))))
    merged = dict(DEFAULT_POLICY)
    for key, value in policy.items():
        if value is None and key == "max_response_ms":
            merged[key] = None
            continue
        number = _whole(value, "policy " + key) if key in _INT_RULES else _number(value, "policy " + key)
        if number < 0 or (key in _FRACTION_RULES and number > 1):
            wanted = "a fraction from 0 to 1" if key in _FRACTION_RULES else "0 or more"
            raise AnsibleFilterError("policy %s must be %s, got %r" % (key, wanted, value))
        merged[key] = number
    return merged


def _reads(side, value):
    """A side's counters as a list of dicts, one per load balancer."""
    reads = value if isinstance(value, (list, tuple)) else [value]
    for read in reads:
        if not isinstance(read, dict):
            raise AnsibleFilterError("the %s counters must be a dict or a list of dicts, got %r" % (side, read))
    return list(reads)


def _counter(read, name, side):
    value = read.get(name, 0)
    if value is None:
        return 0
    return _whole(value, "the %s counter %s" % (side, name))


def _side(side, before, after, notes):
    befores, afters = _reads(side, before), _reads(side, after)
    if len(befores) != len(afters):
        raise AnsibleFilterError("the %s counters come from %d load balancers at the start and %d now"
                                 % (side, len(befores), len(afters)))
    requests = errors = 0
    weighted = 0.0
    for index, (start, now) in enumerate(zip(befores, afters, strict=True)):
        names = ("req_tot", "hrsp_5xx")
        old = dict((name, _counter(start, name, side)) for name in names)
        new = dict((name, _counter(now, name, side)) for name in names)
        if any(new[name] < old[name] for name in names):
            # HAProxy restarted and its counters started again from 0: all of them.
            notes.append("%s counters on load balancer %d went down (HAProxy restarted?): counted from 0"
                         % (side, index + 1))
            old = dict.fromkeys(names, 0)
        requests += new["req_tot"] - old["req_tot"]
        errors += new["hrsp_5xx"] - old["hrsp_5xx"]
        weighted += (new["req_tot"] - old["req_tot"]) * _counter(now, "rtime", side)
    if requests:
        response_ms = int(round(weighted / requests))
    else:
        rtimes = [_counter(now, "rtime", side) for now in afters]
        response_ms = int(round(sum(rtimes) / float(len(rtimes)))) if rtimes else 0
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": (errors / float(requests)) if requests else 0.0,
        "response_ms": response_ms,
    }


def _pct(rate):
    return "%.1f %%" % (rate * 100)


def canary_analysis(before, after, policy=None):
    """The verdict of one step: see DOCUMENTATION."""
    for name, value in (("before", before), ("after", after)):
        if not isinstance(value, dict) or set(value) != set(("canary", "stable")):
            raise AnsibleFilterError("canary_analysis wants {canary, stable} counters for %s, got %r" % (name, value))
    rules = _policy(policy)
    notes = []
    canary = _side("canary", before["canary"], after["canary"], notes)
    stable = _side("stable", before["stable"], after["stable"], notes)
    reasons = []
    if canary["error_rate"] > rules["max_error_rate"]:
        reasons.append("canary 5xx rate %s (%d of %d) > %s"
                       % (_pct(canary["error_rate"]), canary["errors"], canary["requests"],
                          _pct(rules["max_error_rate"])))
    increase = canary["error_rate"] - stable["error_rate"]
    if increase > rules["max_error_rate_increase"] + 1e-12:
        reasons.append("canary 5xx rate %s is %.1f points above stable's %s (at most %.1f)"
                       % (_pct(canary["error_rate"]), increase * 100, _pct(stable["error_rate"]),
                          rules["max_error_rate_increase"] * 100))
    if rules["max_response_ms"] is not None and canary["response_ms"] > rules["max_response_ms"]:
        reasons.append("canary response time %d ms > %s ms" % (canary["response_ms"], rules["max_response_ms"]))
    if (stable["response_ms"] > 0
            and canary["response_ms"] > rules["max_response_ratio"] * stable["response_ms"]
            and canary["response_ms"] - stable["response_ms"] > rules["response_slack_ms"]):
        reasons.append("canary response time %d ms is %.1f x stable's %d ms (at most %s x, or %s ms more)"
                       % (canary["response_ms"], canary["response_ms"] / float(stable["response_ms"]),
                          stable["response_ms"], rules["max_response_ratio"], rules["response_slack_ms"]))
    if canary["requests"] < rules["min_requests"]:
        allowance = rules["max_error_rate"] * rules["min_requests"]
        if canary["errors"] > allowance:
            verdict = "fail"
            reasons = ["canary %d 5xx answers already exceed what %d requests at %s allow (%d)"
                       % (canary["errors"], rules["min_requests"], _pct(rules["max_error_rate"]), int(allowance))]
        else:
            verdict = "inconclusive"
            reasons = ["only %d canary requests, fewer than min_requests %d"
                       % (canary["requests"], rules["min_requests"])]
    else:
        verdict = "fail" if reasons else "pass"
    return {
        "verdict": verdict,
        "reasons": reasons,
        "canary": canary,
        "stable": stable,
        "policy": rules,
        "notes": notes,
    }


class FilterModule(object):
    def filters(self):
        return {
            "canary_analysis": canary_analysis,
            "canary_plan": canary_plan,
            "canary_steps": canary_steps,
        }
