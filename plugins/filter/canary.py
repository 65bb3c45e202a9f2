# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The maths of a canary deployment: its hosts, its steps, and the verdict of one step from HAProxy's counters."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: canary_analysis
short_description: Canary hosts (canary_plan), steps (canary_steps) and a step's verdict from HAProxy's counters
version_added: 0.3.0
description:
  - This file holds three filters. This page documents C(canary_analysis) and, briefly, the other two.
  - B(canary_analysis) compares the canary with stable over one step of a canary deployment, from two reads of the
    counters that M(vmfleet.deploy.haproxy_stats) returns for the canary's backend and for the stable backend (its
    C(backends[<name>]) entries), one read at the start of the step (the input) and one now (O(after)).
  - Per side, C(requests) and C(errors) are the growth of C(req_tot) and of C(hrsp_5xx) between the two reads, summed
    over the load balancers when the side is a list (one counters dictionary per load balancer, in the same order in
    both reads). C(error_rate) is C(errors / requests), and 0 without requests.
  - C(response_ms) is the mean response time of the side's requests between the two reads, worked out from
    C(req_tot) and C(rtime) at both reads. HAProxy keeps no cumulative response-time counter whose growth could be
    taken. C(rtime) is its sliding average over the last 1024 requests (TIME_STATS_SAMPLES), rounded up to a whole
    ms. It is a running sum of response times that adds each request's time, and once the backend has seen 1024 requests
    also loses 1/1024 of itself per request. So C(rtime) alone mixes in requests from before the step, such as an
    earlier canary's in the same slot. The filter takes the two reads of that sum and solves it for the mean of
    the requests in between (recent requests weigh a little more once the backend has seen 1024). Over several
    load balancers the means are weighted by each one's requests in the step.
  - Because C(rtime) is rounded up to a whole ms over as many as 1024 requests, each read fixes the sum only to
    within about 1024 ms, and the mean of a step of N requests only to within about 1024 / N ms (about 4 ms for
    300 requests after a long history; exact from a fresh backend with requests of whole ms). So the mean has an
    uncertainty, and C(response_ms_range) gives the lowest and highest mean the counters allow. The response-time
    rules fail only when they fail for every value in those ranges (the canary's lowest against stable's highest),
    so rounding never fails a canary; the sentences show the means.
  - A counter that went down between the reads (HAProxy restarted or reloaded, and its counters started again from 0)
    makes that load balancer's first read count as 0, and C(notes) says so. A restart after which the counters
    already grew past their first read cannot be seen. A null counter (a TCP-mode backend) counts as 0, with a note.
    An empty dictionary counts as all counters 0.
  - The verdict is V(fail) when any rule of O(policy) fails and V(pass) when none does, once the canary has at least
    C(min_requests) requests in the step. With fewer, it is V(inconclusive), except that it is V(fail) at once when
    the canary's 5xx answers alone already exceed C(max_error_rate * min_requests), the number the policy allows
    over C(min_requests) requests.
  - A rate exactly at its limit passes; the comparisons are exact (no floating point rounding).
  - B(canary_plan) returns the hosts that run the canary. Its input is the list of hosts in play order, and its one
    argument C(canary) is a number of hosts (1 or more) or a percentage of the hosts such as C("25%"), rounded down but
    at least one host; the canary hosts are the first ones. It fails with fewer than two hosts, with more canary hosts
    than there are hosts, and when every host would be a canary host (at least one host must stay stable).
  - B(canary_steps) checks and normalises the steps given as its input (it takes no argument), a non-empty list of
    C({weight, pause}) dictionaries with no other keys. C(weight) is the canary's share of new requests in whole
    percent, 1 to 100, strictly increasing from step to step; C(pause) is the hold time in seconds, a number of 0 or
    more, default 0. Numbers given as strings such as C("10") are converted. It returns the steps with C(weight) an
    integer and C(pause) an integer or a float, and fails naming the step (counted from 1) and the bad value.
  - B(canary_steps) also takes the steps as one string, as an AWX survey's text answer or C(-e
    vmfleet_canary_steps=10:60,50:60) gives them, C(weight[:pause]) items separated by commas. C("10:60,50:60") is
    the weights 10 and 50, each held 60 seconds, and C("10,50") the same weights with pause 0. An empty string, an
    empty item or an item with more than one colon is refused, naming the item.
  - All three are pure functions of their arguments, and fail with an error that names the bad value.
positional: _input, after, policy
options:
  _input:
    description:
      - The counters at the start of the step, a dictionary with exactly the keys C(canary) and C(stable).
      - Each is a counters dictionary (a C(backends[<name>]) entry of M(vmfleet.deploy.haproxy_stats), with at least
        C(req_tot), C(hrsp_5xx) and C(rtime)), or a list of them, one per load balancer.
    type: dict
    required: true
  after:
    description: The counters now, in the same form and with the same load balancers in the same order.
    type: dict
    required: true
  policy:
    description:
      - The rules. Every key is optional; keys left out take the defaults below. Unknown keys, null values (except
        for O(policy.max_response_ms)), values of the wrong type and values out of range are refused.
    type: dict
    default: {}
    suboptions:
      min_requests:
        description: The canary requests in the step needed for a verdict, 1 or more.
        type: int
        default: 100
      max_error_rate:
        description: The highest 5xx rate of the canary, a fraction from 0 to 1 (V(0.01) is 1 %).
        type: float
        default: 0.01
      max_error_rate_increase:
        description: The highest canary 5xx rate minus the stable 5xx rate, a fraction from 0 to 1.
        type: float
        default: 0.01
      max_response_ms:
        description: The highest canary response time in ms, 0 or more; null for no absolute bound.
        type: float
      max_response_ratio:
        description:
          - The highest canary response time over the stable one, 1 or more (V(1.5) allows the canary to be 50 %
            slower).
          - Only checked when the stable response time is above 0, and only fails when the canary is also more
            than O(policy.response_slack_ms) slower than stable.
        type: float
        default: 1.5
      response_slack_ms:
        description:
          - How many ms slower than stable the canary may always be, whatever the ratio, 0 or more; so 2 ms against
            1 ms is no failure.
        type: float
        default: 5
seealso:
  - module: vmfleet.deploy.haproxy_stats
"""

EXAMPLES = r"""
- name: Read the counters at the start of the step (one haproxy_stats result per load balancer)
  ansible.builtin.set_fact:
    counters_at_start:
      canary: "{{ stats_at_start.results | map(attribute='backends') | map(attribute='catalog_green') | list }}"
      stable: "{{ stats_at_start.results | map(attribute='backends') | map(attribute='catalog_blue') | list }}"

- name: Analyse the step
  ansible.builtin.set_fact:
    step_analysis: "{{ counters_at_start | vmfleet.deploy.canary_analysis(counters_now, {'min_requests': 200}) }}"
  # {"verdict": "fail",
  #  "reasons": ["canary 5xx rate 12.0 % (60 of 500) > 1.0 %", ...],
  #  "canary": {"requests": 500, "errors": 60, "error_rate": 0.12, "response_ms": 14},
  #  "stable": {"requests": 4500, "errors": 2, "error_rate": 0.000444, "response_ms": 11},
  #  "policy": {"min_requests": 200, "max_error_rate": 0.01, ...}, "notes": []}

- name: Fail the step with the numbers
  ansible.builtin.fail:
    msg: "{{ step_analysis.reasons | join('; ') }}"
  when: step_analysis.verdict == 'fail'

- name: Pick the canary hosts, a quarter of the group (at least one, never all)
  ansible.builtin.debug:
    msg: "{{ groups['app_hosts'] | vmfleet.deploy.canary_plan('25%') }}"
  # 4 hosts -> ['app1']; canary_plan(2) -> ['app1', 'app2']

- name: Check the steps
  ansible.builtin.debug:
    msg: "{{ [{'weight': '10', 'pause': 60}, {'weight': 50}] | vmfleet.deploy.canary_steps }}"
  # [{'weight': 10, 'pause': 60}, {'weight': 50, 'pause': 0}]

- name: Check steps given as text (an AWX survey answer)
  ansible.builtin.debug:
    msg: "{{ '10:60, 50:60' | vmfleet.deploy.canary_steps }}"
  # [{'weight': 10, 'pause': 60}, {'weight': 50, 'pause': 60}]
"""

RETURN = r"""
_value:
  description:
    - For C(canary_analysis), the dictionary below. C(canary_plan) returns a list of host names, and
      C(canary_steps) a list of C({weight, pause}) dictionaries.
  type: dict
  contains:
    verdict:
      description: V(pass), V(fail) or V(inconclusive) (too few canary requests for a verdict).
      type: str
    reasons:
      description:
        - One sentence with the numbers for each rule that failed, for example
          "canary 5xx rate 12.0 % (60 of 500) > 1.0 %"; for V(inconclusive), why there is no verdict yet.
        - Empty for V(pass).
      type: list
      elements: str
    canary:
      description:
        - The canary over the step, C({requests, errors, error_rate, response_ms}).
        - C(requests) and C(errors) are integers, C(error_rate) a fraction (a float), C(response_ms) the mean response
          time in ms (a float rounded to 0.1 ms, or an integer when whole), and C(response_ms_range) the lowest and
          highest mean the counters allow, C([low, high]), in the same form.
      type: dict
    stable:
      description: The stable backend over the step, in the same form.
      type: dict
    policy:
      description: The policy applied, with the defaults filled in.
      type: dict
    notes:
      description: What the reader should know about the counters (a reset, a null counter, a side without requests).
      type: list
      elements: str
"""

import math
from decimal import Decimal, InvalidOperation
from fractions import Fraction

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

# ------------------------------------------------------------------ numbers


def _number(value, what):
    """An int or a float from a number or a numeric string; booleans, NaN, infinities and the rest are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float) + tuple(string_types)):
        raise AnsibleFilterError("%s must be a number, got %r" % (what, value))
    number = value
    if isinstance(value, string_types):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise AnsibleFilterError("%s must be a number, got %r" % (what, value)) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise AnsibleFilterError("%s must be a finite number, got %r" % (what, value))
    return number


def _whole(value, what):
    """An int from an int, a whole float (``50.0``) or an integer-like string."""
    number = _number(value, what)
    if isinstance(number, float):
        if not number.is_integer():
            raise AnsibleFilterError("%s must be a whole number, got %r" % (what, value))
        number = int(number)
    return number


def _exact(number):
    """The exact value a number stands for: 0.01 is 1/100, not the nearest binary float."""
    return Fraction(repr(number)) if isinstance(number, float) else Fraction(number)


def _show(value, decimals=3):
    """A number for a sentence: ``12``, ``12.5``, ``0.125``; at most ``decimals`` decimals."""
    text = "%.*f" % (decimals, float(value))
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _pct(rate, unit="%"):
    """A fraction as a percentage, at least one decimal: ``12.0 %``, ``0.25 %`` (or ``1.5 points``)."""
    text = _show(rate * 100)
    return "%s %s" % (text if "." in text else text + ".0", unit)


def _ms(value):
    """A response time for the result: an int when whole, else a float rounded to 0.1 ms."""
    if value.denominator == 1:
        return int(value)
    return round(float(value), 1)


# ------------------------------------------------------------------ the canary hosts


def _canary_count(canary, total):
    """How many hosts ``canary`` (a count or a percentage string) asks for, out of ``total``."""
    if isinstance(canary, string_types) and canary.strip().endswith("%"):
        text = canary.strip()[:-1].strip()
        try:
            percent = Decimal(text)
        except InvalidOperation:
            percent = None
        if percent is None or not percent.is_finite() or percent <= 0 or percent > 100:
            raise AnsibleFilterError(
                "canary percentage must be above 0%% and at most 100%% of the hosts, got %r" % (canary,))
        return max(1, int(total * percent // 100))
    count = _whole(canary, "canary (a number of hosts or a percentage such as '25%')")
    if count < 1:
        raise AnsibleFilterError("canary must be at least 1 host, got %r" % (canary,))
    return count


def canary_plan(hosts, canary):
    """The first hosts of ``hosts`` that run the canary; ``canary`` is a count or a percentage ("25%")."""
    if not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError("canary_plan wants a list of hosts, got %r" % (hosts,))
    hosts = list(hosts)
    if len(hosts) < 2:
        raise AnsibleFilterError(
            "a canary needs at least two hosts: one canary and one stable; got %d (%r)" % (len(hosts), hosts))
    count = _canary_count(canary, len(hosts))
    if count > len(hosts):
        raise AnsibleFilterError(
            "canary %r asks for %d canary hosts, but there are only %d hosts" % (canary, count, len(hosts)))
    if count == len(hosts):
        raise AnsibleFilterError(
            "canary %r would put all %d hosts on the canary: at least one host must stay stable"
            % (canary, len(hosts)))
    return hosts[:count]


# ------------------------------------------------------------------ the steps


def _steps_from_text(text):
    """Steps given as one string, "10:60,50:60" (weight[:pause] items), as the dicts canary_steps checks."""
    how = "give weight[:pause] items separated by commas, such as '10:60,50:60'"
    if not text.strip():
        raise AnsibleFilterError("canary steps must not be an empty string: %s" % how)
    steps = []
    for index, item in enumerate(text.split(","), start=1):
        parts = [part.strip() for part in item.split(":")]
        if not parts[0] or len(parts) > 2 or (len(parts) == 2 and not parts[1]):
            raise AnsibleFilterError("canary step %d of %r must be weight or weight:pause, got %r: %s"
                                     % (index, text, item.strip(), how))
        steps.append({"weight": parts[0], "pause": parts[1]} if len(parts) == 2 else {"weight": parts[0]})
    return steps


def canary_steps(steps):
    """The steps checked and normalised: [{weight: 1..100, strictly increasing, pause: seconds >= 0}]."""
    if isinstance(steps, string_types):
        steps = _steps_from_text(steps)
    if not isinstance(steps, (list, tuple)) or not steps:
        raise AnsibleFilterError("canary steps must be a non-empty list of {weight, pause}, got %r" % (steps,))
    checked = []
    for index, step in enumerate(steps, start=1):
        where = "canary step %d" % index
        if not isinstance(step, dict):
            raise AnsibleFilterError("%s must be a dict {weight, pause}, got %r" % (where, step))
        unknown = sorted((key for key in step if key not in ("weight", "pause")), key=str)
        if unknown:
            raise AnsibleFilterError("%s has unknown keys %s (it takes weight and pause), in %r"
                                     % (where, ", ".join(str(key) for key in unknown), step))
        if "weight" not in step:
            raise AnsibleFilterError("%s has no weight, in %r" % (where, step))
        weight = _whole(step["weight"], "%s: weight (a whole percent)" % where)
        if weight < 1 or weight > 100:
            raise AnsibleFilterError("%s: weight must be 1 to 100 (percent), got %r" % (where, step["weight"]))
        pause = _number(step.get("pause", 0), "%s: pause (seconds)" % where)
        if pause < 0:
            raise AnsibleFilterError("%s: pause must be 0 or more seconds, got %r" % (where, step["pause"]))
        if checked and weight <= checked[-1]["weight"]:
            raise AnsibleFilterError("%s: weights must be strictly increasing, got %d after %d"
                                     % (where, weight, checked[-1]["weight"]))
        checked.append({"weight": weight, "pause": pause})
    return checked


# ------------------------------------------------------------------ the analysis


def _policy(policy):
    """The policy with its defaults, every value checked."""
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        raise AnsibleFilterError("the canary_analysis policy must be a dict, got %r" % (policy,))
    unknown = sorted((key for key in policy if key not in DEFAULT_POLICY), key=str)
    if unknown:
        raise AnsibleFilterError("the canary_analysis policy has unknown keys %s (it takes %s)"
                                 % (", ".join(repr(key) for key in unknown), ", ".join(sorted(DEFAULT_POLICY))))
    merged = dict(DEFAULT_POLICY)
    for key in sorted(policy):
        value = policy[key]
        what = "policy %s" % key
        if key == "max_response_ms" and value is None:
            merged[key] = None
            continue
        if key == "min_requests":
            number = _whole(value, what)
            if number < 1:
                raise AnsibleFilterError("%s must be 1 or more, got %r" % (what, value))
        elif key in ("max_error_rate", "max_error_rate_increase"):
            try:
                number = _number(value, what)
            except AnsibleFilterError:
                raise AnsibleFilterError("%s must be a fraction from 0 to 1 (0.01 is 1 %%), got %r"
                                         % (what, value)) from None
            if number < 0 or number > 1:
                raise AnsibleFilterError("%s must be a fraction from 0 to 1 (0.01 is 1 %%), got %r" % (what, value))
        elif key == "max_response_ratio":
            number = _number(value, what)
            if number < 1:
                raise AnsibleFilterError("%s must be 1 or more (1.5 lets the canary be 50 %% slower), got %r"
                                         % (what, value))
        else:  # max_response_ms, response_slack_ms
            number = _number(value, what)
            if number < 0:
                raise AnsibleFilterError("%s must be 0 or more ms, got %r" % (what, value))
        merged[key] = number
    return merged


def _reads(side, when, value):
    """A side's counters at one read as a list of dicts, one per load balancer."""
    reads = list(value) if isinstance(value, (list, tuple)) else [value]
    if not reads:
        raise AnsibleFilterError("the %s counters %s are an empty list: give one counters dict per load balancer"
                                 % (side, when))
    for index, read in enumerate(reads, start=1):
        if not isinstance(read, dict):
            raise AnsibleFilterError("the %s counters %s (load balancer %d) must be a dict of HAProxy counters "
                                     "(a haproxy_stats backends entry), got %r" % (side, when, index, read))
    return reads


def _counters(read, names, where, nulls):
    """The counters ``names`` of one read, as ints; null ones count as 0 and are added to ``nulls``."""
    if not read:
        return dict.fromkeys(names, 0)
    missing = [name for name in names if name not in read]
    if missing:
        raise AnsibleFilterError("%s have no %s: give a haproxy_stats backends entry, got keys %s"
                                 % (where, ", ".join(missing), ", ".join(sorted(str(k) for k in read))))
    values = {}
    for name in names:
        if read[name] is None:
            if name not in nulls:
                nulls.append(name)
            values[name] = 0
            continue
        number = _whole(read[name], "%s: %s" % (where, name))
        if number < 0:
            raise AnsibleFilterError("%s: %s must be 0 or more, got %r" % (where, name, read[name]))
        values[name] = number
    return values


# HAProxy's sliding average of response times (stream_update_time_stats, swrate_add_dynamic): per request, the sum
# adds the request's time; once the proxy has counted more than SAMPLES requests it first loses ceil(sum / SAMPLES).
# `show stat` gives rtime = ceil(sum / min(req_tot, SAMPLES)).
SAMPLES = 1024
_KEEP = Fraction(SAMPLES - 1, SAMPLES)


def _sums(rtime, count):
    """The (lowest, highest) running sum that HAProxy shows as ``rtime`` after ``count`` requests."""
    window = min(count, SAMPLES)
    if not rtime or not window:
        return 0, 0
    return (rtime - 1) * window + 1, rtime * window


def _window(count0, rtime0, count1, rtime1):
    """(low, mean, high): the mean response time in ms of the requests between two reads of (req_tot, rtime).

    With s0 and s1 the sums behind the two reads, j requests that only added (the proxy's first SAMPLES) and k that
    also decayed: s1 = (s0 + j m) K^k + SAMPLES m (1 - K^k), K = 1 - 1/SAMPLES. Solved for m, once with the sums
    HAProxy shows (the mean), once with the extremes its rounding allows (low, high). Each decay rounds the loss up,
    which takes less than 1 ms per request off the mean: high allows for it.
    """
    added = max(0, min(count1, SAMPLES) - count0)
    decayed = max(0, count1 - max(count0, SAMPLES))
    # Floats for the power: K**k as a Fraction would grow with k; the result is rounded to 0.1 ms anyway.
    keep = float(_KEEP) ** decayed
    weight = added * keep + SAMPLES * (1 - keep)
    low0, high0 = _sums(rtime0, count0)
    low1, high1 = _sums(rtime1, count1)

    def mean(sum0, sum1):
        return max((sum1 - sum0 * keep) / weight, 0.0)

    return mean(high0, low1), mean(high0, high1), mean(low0, high1) + (1 if decayed else 0)


def _side(side, before, after, notes):
    """One side's requests, errors, exact error rate and mean response time (with its range) over the step."""
    befores = _reads(side, "at the start", before)
    afters = _reads(side, "now", after)
    if len(befores) != len(afters):
        raise AnsibleFilterError("the %s counters come from %d load balancers at the start and %d now"
                                 % (side, len(befores), len(afters)))
    several = isinstance(before, (list, tuple)) or isinstance(after, (list, tuple))
    requests = errors = 0
    weighted = [0.0, 0.0, 0.0]
    rtimes = []
    for index in range(len(afters)):
        label = "the %s counters%s" % (side, " on load balancer %d" % (index + 1) if several else "")
        nulls = []
        start = _counters(befores[index], ("req_tot", "hrsp_5xx", "rtime"), label + " at the start", nulls)
        now = _counters(afters[index], ("req_tot", "hrsp_5xx", "rtime"), label + " now", nulls)
        if nulls:
            notes.append("%s: %s null (a TCP-mode backend?), counted as 0" % (label, ", ".join(nulls)))
        went_down = [name for name in ("req_tot", "hrsp_5xx") if now[name] < start[name]]
        if went_down:
            notes.append("%s went down (%s: HAProxy restarted or reloaded?): the step counts them from 0"
                         % (label, ", ".join("%s %d -> %d" % (name, start[name], now[name]) for name in went_down)))
            start = {"req_tot": 0, "hrsp_5xx": 0, "rtime": 0}
        delta = now["req_tot"] - start["req_tot"]
        requests += delta
        errors += now["hrsp_5xx"] - start["hrsp_5xx"]
        rtimes.append(now["rtime"])
        if delta:
            for position, value in enumerate(_window(start["req_tot"], start["rtime"], now["req_tot"], now["rtime"])):
                weighted[position] += delta * value
    if requests:
        low, response, high = (Fraction(round(value / requests, 3)).limit_denominator(1000) for value in
                               (weighted[0], weighted[1], weighted[2]))
    else:
        low = response = high = Fraction(sum(rtimes), len(rtimes))
        notes.append("%s had no requests in the step: its response time is HAProxy's average from before" % side)
    return {
        "requests": requests,
        "errors": errors,
        "rate": Fraction(errors, requests) if requests else Fraction(0),
        "response": response,
        "low": min(low, response),
        "high": max(high, response),
    }


def _rules(canary, stable, rules):
    """The sentences of the rules that fail, once the canary has enough requests."""
    reasons = []
    limit = _exact(rules["max_error_rate"])
    if canary["rate"] > limit:
        reasons.append("canary 5xx rate %s (%d of %d) > %s"
                       % (_pct(canary["rate"]), canary["errors"], canary["requests"], _pct(limit)))
    increase = canary["rate"] - stable["rate"]
    limit = _exact(rules["max_error_rate_increase"])
    if increase > limit:
        reasons.append("canary 5xx rate %s (%d of %d) is %s above stable's %s (%d of %d) > %s"
                       % (_pct(canary["rate"]), canary["errors"], canary["requests"], _pct(increase, "points"),
                          _pct(stable["rate"]), stable["errors"], stable["requests"], _pct(limit, "points")))
    # The response-time rules fail only when they fail for every mean the counters allow (see the ranges).
    if rules["max_response_ms"] is not None:
        limit = _exact(rules["max_response_ms"])
        if canary["low"] > limit:
            reasons.append("canary response time %s ms > %s ms" % (_show(canary["response"], 1), _show(limit)))
    if stable["response"] > 0:
        ratio = _exact(rules["max_response_ratio"])
        slack = _exact(rules["response_slack_ms"])
        if canary["low"] > ratio * stable["high"] and canary["low"] - stable["high"] > slack:
            reasons.append("canary response time %s ms is %s x stable's %s ms > %s x (and %s ms slower > %s ms slack)"
                           % (_show(canary["response"], 1), _show(canary["response"] / stable["response"], 2),
                              _show(stable["response"], 1), _show(ratio),
                              _show(canary["response"] - stable["response"], 1), _show(slack)))
    return reasons


def _result(side):
    return {
        "requests": side["requests"],
        "errors": side["errors"],
        "error_rate": float(side["rate"]),
        "response_ms": _ms(side["response"]),
        "response_ms_range": [_ms(side["low"]), _ms(side["high"])],
    }


def canary_analysis(before, after, policy=None):
    """The verdict of one canary step from two reads of HAProxy's counters: see DOCUMENTATION."""
    for name, value in (("before", before), ("after", after)):
        if not isinstance(value, dict) or sorted(value, key=str) != ["canary", "stable"]:
            raise AnsibleFilterError("canary_analysis wants {canary, stable} counters as %s, got %r" % (name, value))
    rules = _policy(policy)
    notes = []
    canary = _side("canary", before["canary"], after["canary"], notes)
    stable = _side("stable", before["stable"], after["stable"], notes)
    if canary["requests"] >= rules["min_requests"]:
        reasons = _rules(canary, stable, rules)
        verdict = "fail" if reasons else "pass"
    else:
        allowance = _exact(rules["max_error_rate"]) * rules["min_requests"]
        if canary["errors"] > allowance:
            verdict = "fail"
            reasons = ["canary already has %d 5xx answers in %d requests, more than the %s allowed in min_requests %d "
                       "at %s" % (canary["errors"], canary["requests"], _show(allowance), rules["min_requests"],
                                  _pct(_exact(rules["max_error_rate"])))]
        else:
            verdict = "inconclusive"
            reasons = ["only %d canary requests, fewer than min_requests %d: no verdict yet"
                       % (canary["requests"], rules["min_requests"])]
    return {
        "verdict": verdict,
        "reasons": reasons,
        "canary": _result(canary),
        "stable": _result(stable),
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
