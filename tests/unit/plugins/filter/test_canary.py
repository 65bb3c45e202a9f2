"""Tests for the canary filters: canary_plan, canary_steps and canary_analysis (pure functions)."""

from __future__ import annotations

import copy
import functools
import random
import re
from fractions import Fraction

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmfleet.deploy.plugins.filter.canary import (
    DEFAULT_POLICY,
    FilterModule,
    canary_analysis,
    canary_plan,
    canary_steps,
)

HOSTS = ["app1", "app2", "app3", "app4"]


def counters(req=0, err=0, rtime=0, **extra):
    """A haproxy_stats backends entry, with the counters the analysis reads (and any others)."""
    whole = isinstance(req, int) and isinstance(err, int)
    entry = {"req_tot": req, "hrsp_5xx": err, "rtime": rtime, "hrsp_2xx": req - err if whole else None, "econ": 0}
    entry.update(extra)
    return entry


def analyse(canary_after, stable_after=None, canary_before=None, stable_before=None, **policy):
    """One step from zero counters (unless told otherwise); stable is 10000 clean requests at 10 ms by default."""
    before = {"canary": counters() if canary_before is None else canary_before,
              "stable": counters() if stable_before is None else stable_before}
    after = {"canary": canary_after, "stable": counters(10000, 0, 10) if stable_after is None else stable_after}
    return canary_analysis(before, after, policy)


def raises(words):
    return pytest.raises(AnsibleFilterError, match=re.escape(words))


# HAProxy 2.6's response-time average, simulated exactly (src/stream.c stream_update_time_stats, swrate_add_dynamic,
# and src/stats.c): per request i (the backend's req_tot is then i), the running sum adds the request's time (whole
# ms) while i <= 1024, and from request 1025 on first loses ceil(sum / 1024); `show stat` shows
# rtime = ceil(sum / min(req_tot, 1024)), and 0 before any request.
SAMPLES = 1024


def haproxy_reads(*periods):
    """(req_tot, rtime) as `show stat` gives them after each period, the periods (lists of ms) served in turn."""
    count = total = 0
    reads = []
    for times in periods:
        for time in times:
            count += 1
            if count > SAMPLES:
                total -= -(-total // SAMPLES)  # ceil(total / SAMPLES), in integers
            total += time
        reads.append((count, -(-total // min(count, SAMPLES)) if count else 0))
    return reads


def haproxy_read(times):
    """(req_tot, rtime) after serving ``times`` (a list of per-request ms) from a fresh start."""
    return haproxy_reads(times)[0]


def served(history, window, errors=0):
    """Counters before and after a step: ``history`` then the step's ``window`` served by one backend.

    The ``errors`` are 5xx answers in the window (none in the history).
    """
    (req0, rtime0), (req1, rtime1) = haproxy_reads(history, window)
    return counters(req0, 0, rtime0), counters(req1, errors, rtime1)


@functools.cache
def _constant_read(requests, ms):
    return haproxy_read([ms] * requests)


def constant(requests, ms, errors=0):
    """Counters after ``requests`` requests that all took ``ms`` ms, from a fresh start."""
    req, rtime = _constant_read(requests, ms)
    return counters(req, errors, rtime)


def test_the_simulator_follows_haproxy():
    assert haproxy_read([]) == (0, 0)
    assert haproxy_read([1, 2]) == (2, 2)  # ceil(3 / 2)
    assert haproxy_read([1] * 1023 + [2]) == (1024, 2)  # ceil(1025 / 1024)
    assert haproxy_read([10] * 5000) == (5000, 10)  # a constant time keeps the sum at 10240 once it decays
    # Request 1025 first loses ceil(1024 / 1024) = 1, then adds its time: 1024 - 1 + 1025 = 2048, 2 ms.
    assert haproxy_read([1] * 1024 + [1025]) == (1025, 2)
    # The decay rounds its loss up: a sum of 1024 loses 1 per request and is gone after 1024 requests of 0 ms
    # (without the rounding it would still be 1024 * (1023 / 1024) ** 1024, about 377).
    assert haproxy_reads([0] * 1024 + [1024], [0] * 1023, [0]) == [(1025, 1), (2048, 1), (2049, 0)]
    assert haproxy_reads([5] * 10, [], [7] * 10) == [(10, 5), (10, 5), (20, 6)]


def test_the_filter_module_registers_the_three_filters():
    assert FilterModule().filters() == {
        "canary_analysis": canary_analysis,
        "canary_plan": canary_plan,
        "canary_steps": canary_steps,
    }


# ------------------------------------------------------------------ canary_plan


@pytest.mark.parametrize(("canary", "expected"), [
    (1, ["app1"]),
    ("2", ["app1", "app2"]),
    (3, ["app1", "app2", "app3"]),
    (2.0, ["app1", "app2"]),
    ("25%", ["app1"]),
    ("50%", ["app1", "app2"]),
    (" 50 % ", ["app1", "app2"]),
    ("10%", ["app1"]),  # 0.4 host: at least one
    ("74%", ["app1", "app2"]),  # 2.96 hosts: rounded down
    ("75%", ["app1", "app2", "app3"]),
    ("99.9%", ["app1", "app2", "app3"]),
    ("0.1%", ["app1"]),
])
def test_canary_plan_takes_the_first_hosts(canary, expected):
    assert canary_plan(HOSTS, canary) == expected


def test_canary_plan_works_on_two_hosts_and_a_tuple():
    assert canary_plan(("a", "b"), "50%") == ["a"]
    assert canary_plan(("a", "b"), 1) == ["a"]


def test_canary_plan_does_not_change_its_input():
    hosts = list(HOSTS)
    canary_plan(hosts, 2)
    assert hosts == HOSTS


@pytest.mark.parametrize(("hosts", "canary", "words"), [
    (["app1"], 1, "a canary needs at least two hosts: one canary and one stable; got 1"),
    ([], "50%", "a canary needs at least two hosts: one canary and one stable; got 0"),
    ("app1,app2", 1, "canary_plan wants a list of hosts, got 'app1,app2'"),
    (None, 1, "canary_plan wants a list of hosts, got None"),
    (HOSTS, 4, "canary 4 would put all 4 hosts on the canary: at least one host must stay stable"),
    (HOSTS, "4", "canary '4' would put all 4 hosts on the canary"),
    (HOSTS, "100%", "canary '100%' would put all 4 hosts on the canary"),
    (HOSTS, 5, "canary 5 asks for 5 canary hosts, but there are only 4 hosts"),
    (HOSTS, 0, "canary must be at least 1 host, got 0"),
    (HOSTS, -2, "canary must be at least 1 host, got -2"),
    (HOSTS, "0%", "above 0% and at most 100% of the hosts, got '0%'"),
    (HOSTS, "-5%", "got '-5%'"),
    (HOSTS, "150%", "got '150%'"),
    (HOSTS, "abc%", "got 'abc%'"),
    (HOSTS, "%", "got '%'"),
    (HOSTS, "nan%", "got 'nan%'"),
    (HOSTS, "two", "must be a number, got 'two'"),
    (HOSTS, True, "must be a number, got True"),
    (HOSTS, None, "must be a number, got None"),
    (HOSTS, [1], "must be a number, got [1]"),
    (HOSTS, 1.5, "must be a whole number, got 1.5"),
])
def test_canary_plan_refuses_bad_input_naming_it(hosts, canary, words):
    with raises(words):
        canary_plan(hosts, canary)


def test_canary_plan_never_takes_all_or_no_host_and_rounds_down():
    rng = random.Random(7)
    for _case in range(1000):
        hosts = ["h%d" % i for i in range(rng.randint(2, 60))]
        if rng.random() < 0.5:
            percent = rng.randint(1, 99)
            spec = "%d%%" % percent
            expected = max(1, len(hosts) * percent // 100)
        else:
            expected = rng.randint(1, len(hosts) - 1)
            spec = rng.choice([expected, str(expected)])
        chosen = canary_plan(hosts, spec)
        assert 1 <= len(chosen) < len(hosts), (len(hosts), spec)
        assert chosen == hosts[:expected], (len(hosts), spec)


def test_canary_plan_refuses_every_count_that_leaves_no_stable_host():
    rng = random.Random(8)
    for _case in range(300):
        hosts = ["h%d" % i for i in range(rng.randint(0, 30))]
        spec = rng.choice([len(hosts), len(hosts) + rng.randint(1, 5), "100%"])
        with pytest.raises(AnsibleFilterError):
            canary_plan(hosts, spec)


# ------------------------------------------------------------------ canary_steps


def test_canary_steps_normalises():
    steps = canary_steps([{"weight": "10", "pause": 30}, {"weight": 50.0}, {"weight": 100, "pause": "1.5"}])
    assert steps == [{"weight": 10, "pause": 30}, {"weight": 50, "pause": 0}, {"weight": 100, "pause": 1.5}]
    assert [type(s["weight"]) for s in steps] == [int, int, int]
    assert [type(s["pause"]) for s in steps] == [int, int, float]


def test_canary_steps_keeps_pause_as_given_and_takes_a_tuple():
    assert canary_steps(({"weight": 5, "pause": 2.5}, {"weight": 6, "pause": " 7 "})) == [
        {"weight": 5, "pause": 2.5}, {"weight": 6, "pause": 7}]


def test_canary_steps_accepts_the_edges():
    assert canary_steps([{"weight": 1, "pause": 0}, {"weight": 100, "pause": 0.0}]) == [
        {"weight": 1, "pause": 0}, {"weight": 100, "pause": 0.0}]


def test_canary_steps_does_not_change_its_input():
    steps = [{"weight": "10"}, {"weight": 20, "pause": "5"}]
    kept = copy.deepcopy(steps)
    canary_steps(steps)
    assert steps == kept


@pytest.mark.parametrize(("steps", "words"), [
    ([], "canary steps must be a non-empty list of {weight, pause}, got []"),
    (None, "non-empty list of {weight, pause}, got None"),
    ("10,,50", "canary step 2 of '10,,50' must be weight or weight:pause, got ''"),
    ({"weight": 10}, "non-empty list of {weight, pause}, got {'weight': 10}"),
    ([10, 50], "canary step 1 must be a dict {weight, pause}, got 10"),
    ([{"weight": 10}, None], "canary step 2 must be a dict {weight, pause}, got None"),
    ([{"weight": 0}], "canary step 1: weight must be 1 to 100 (percent), got 0"),
    ([{"weight": 101}], "canary step 1: weight must be 1 to 100 (percent), got 101"),
    ([{"weight": "-5"}], "canary step 1: weight must be 1 to 100 (percent), got '-5'"),
    ([{"weight": 10}, {"weight": 10}], "canary step 2: weights must be strictly increasing, got 10 after 10"),
    ([{"weight": 10}, {"weight": 50}, {"weight": 20}], "canary step 3: weights must be strictly increasing, got 20"),
    ([{"weight": 10, "pause": -1}], "canary step 1: pause must be 0 or more seconds, got -1"),
    ([{"weight": 10}, {"weight": 20, "pause": "-0.5"}], "canary step 2: pause must be 0 or more seconds, got '-0.5'"),
    ([{"weight": 10, "pause": True}], "canary step 1: pause (seconds) must be a number, got True"),
    ([{"weight": 10, "pause": None}], "canary step 1: pause (seconds) must be a number, got None"),
    ([{"weight": 10, "pause": "soon"}], "canary step 1: pause (seconds) must be a number, got 'soon'"),
    ([{"weight": 10, "pause": "nan"}], "canary step 1: pause (seconds) must be a finite number, got 'nan'"),
    ([{"weight": 10, "pause": float("inf")}], "canary step 1: pause (seconds) must be a finite number, got inf"),
    ([{"weight": 10, "wait": 5}], "canary step 1 has unknown keys wait (it takes weight and pause)"),
    ([{"weight": 10, "pause": 1, "zz": 1, "aa": 2}], "canary step 1 has unknown keys aa, zz"),
    ([{"pause": 5}], "canary step 1 has no weight, in {'pause': 5}"),
    ([{"weight": 12.5}], "canary step 1: weight (a whole percent) must be a whole number, got 12.5"),
    ([{"weight": "12.5"}], "must be a whole number, got '12.5'"),
    ([{"weight": True}], "canary step 1: weight (a whole percent) must be a number, got True"),
    ([{"weight": None}], "must be a number, got None"),
    ([{"weight": "ten"}], "must be a number, got 'ten'"),
])
def test_canary_steps_refuses_bad_steps_naming_the_step_and_value(steps, words):
    with raises(words):
        canary_steps(steps)


def test_canary_steps_output_always_increases():
    rng = random.Random(11)
    for _case in range(500):
        weights = sorted(rng.sample(range(1, 101), rng.randint(1, 8)))
        given = [{"weight": rng.choice([w, str(w), float(w)]), "pause": rng.randint(0, 90)} for w in weights]
        steps = canary_steps(given)
        assert [s["weight"] for s in steps] == weights
        assert all(steps[i]["weight"] < steps[i + 1]["weight"] for i in range(len(steps) - 1))
        assert all(s["pause"] >= 0 for s in steps)


def test_canary_steps_refuses_every_list_that_does_not_increase():
    rng = random.Random(12)
    refused = 0
    for _case in range(500):
        weights = [rng.randint(1, 100) for _i in range(rng.randint(2, 6))]
        increasing = all(weights[i] < weights[i + 1] for i in range(len(weights) - 1))
        steps = [{"weight": w} for w in weights]
        if increasing:
            assert [s["weight"] for s in canary_steps(steps)] == weights
        else:
            refused += 1
            with pytest.raises(AnsibleFilterError, match="strictly increasing"):
                canary_steps(steps)
    assert refused > 100  # the loop did test refusals


# ------------------------------------------------------------------ canary_analysis: the verdict and its numbers


def test_a_healthy_canary_passes_with_its_numbers():
    # The canary backend served 1000 requests at 10 ms (2 of them 5xx) before the step, then 500 at 12 ms; stable
    # 9000 at 10 ms, then 4500 at 11 ms. HAProxy then shows rtime 11 for both: the filter solves for the step's
    # means, and gives the range that the rounding of rtime leaves (wider for the canary's shorter window).
    canary_before, canary_after = served([10] * 1000, [12] * 500)
    stable_before, stable_after = served([10] * 9000, [11] * 4500)
    assert (canary_before["rtime"], canary_after["rtime"], stable_after["rtime"]) == (10, 11, 11)
    canary_before["hrsp_5xx"] = canary_after["hrsp_5xx"] = 2
    result = analyse(canary_after, stable_after, canary_before, stable_before)
    assert result == {
        "verdict": "pass",
        "reasons": [],
        "canary": {"requests": 500, "errors": 0, "error_rate": 0.0, "response_ms": 12.6,
                   "response_ms_range": [10, 15.2]},
        "stable": {"requests": 4500, "errors": 0, "error_rate": 0.0, "response_ms": 11, "response_ms_range": [10, 12]},
        "policy": DEFAULT_POLICY,
        "notes": [],
    }


def test_the_defaults():
    assert DEFAULT_POLICY == {"min_requests": 100, "max_error_rate": 0.01, "max_error_rate_increase": 0.01,
                              "max_response_ms": None, "max_response_ratio": 1.5, "response_slack_ms": 5}


def test_the_error_rate_is_a_float_fraction():
    result = analyse(counters(400, 3, 10), max_error_rate=0.5, max_error_rate_increase=0.5)
    assert result["canary"]["error_rate"] == 0.0075 and isinstance(result["canary"]["error_rate"], float)


def test_error_rate_at_the_threshold_passes_and_just_above_fails():
    at = analyse(counters(1000, 10, 10))  # 1.0 % exactly
    assert at["verdict"] == "pass", at
    above = analyse(counters(1000, 11, 10))
    assert above["verdict"] == "fail"
    assert above["reasons"][0] == "canary 5xx rate 1.1 % (11 of 1000) > 1.0 %"


def test_the_brief_example_sentence():
    result = analyse(counters(500, 60, 10), max_error_rate_increase=1)
    assert result["reasons"] == ["canary 5xx rate 12.0 % (60 of 500) > 1.0 %"]


def test_thresholds_are_exact_not_floating_point():
    # 7 of 100 is exactly 0.07; 0.07 - 0.06 is 0.010000000000000009 in floating point, but exactly 0.01.
    assert analyse(counters(100, 7, 10), max_error_rate=0.07, max_error_rate_increase=1)["verdict"] == "pass"
    close = analyse(counters(1000, 70, 10), counters(1000, 60, 10), max_error_rate=0.1)
    assert close["verdict"] == "pass", close
    # 0.29 * 100 is 28.999999999999996 in floating point: 29 errors are exactly the allowance, not above it.
    assert analyse(counters(50, 29, 10), max_error_rate=0.29, max_error_rate_increase=1)["verdict"] == "inconclusive"
    assert analyse(counters(50, 30, 10), max_error_rate=0.29, max_error_rate_increase=1)["verdict"] == "fail"


def test_error_rate_increase_over_stable_at_the_threshold_and_above():
    # Stable itself fails 5 %: the canary's 6 % is 1 point above it (passes), 6.1 % is not.
    at = analyse(counters(1000, 60, 10), counters(1000, 50, 10), max_error_rate=0.10)
    assert at["verdict"] == "pass", at
    above = analyse(counters(1000, 61, 10), counters(1000, 50, 10), max_error_rate=0.10)
    assert above["verdict"] == "fail"
    assert above["reasons"] == [
        "canary 5xx rate 6.1 % (61 of 1000) is 1.1 points above stable's 5.0 % (50 of 1000) > 1.0 points"]


def test_a_canary_better_than_stable_passes_the_increase_rule():
    result = analyse(counters(1000, 0, 10), counters(1000, 500, 10), max_error_rate=0.01)
    assert result["verdict"] == "pass" and result["stable"]["error_rate"] == 0.5


def test_every_failing_rule_gives_its_reason():
    result = analyse(counters(1000, 200, 300), counters(1000, 0, 10), max_response_ms=100)
    assert result["verdict"] == "fail"
    assert [r.split(" ")[1:3] for r in result["reasons"]] == [
        ["5xx", "rate"], ["5xx", "rate"], ["response", "time"], ["response", "time"]]


# ------------------------------------------------------------------ response time: ratio, slack, bound


def test_a_slow_canary_fails_the_ratio_with_the_numbers():
    slow = analyse(counters(500, 0, 260), counters(5000, 0, 10))
    assert slow["verdict"] == "fail"
    assert slow["reasons"] == [
        "canary response time 260 ms is 26 x stable's 10 ms > 1.5 x (and 250 ms slower > 5 ms slack)"]


# Exact counters from a fresh start, every request at the same whole ms: the canary's 500 at canary_ms, stable's
# stable_requests at stable_ms; the defaults (ratio 1.5, slack 5 ms). The means are then exactly canary_ms and
# stable_ms, but rtime is rounded up, so a reading of c ms over N requests only proves a mean above c - 1 (the sum
# is at least (c - 1) * N + 1): the canary's lowest mean is canary_ms - 0.998. Stable's highest is stable_ms with
# 1000 requests, and stable_ms + 1 with 5000, past the 1024 where the sum decays (each decay rounds its loss up, by
# less than 1 ms in all). A rule fails only when canary_ms - 0.998 > 1.5 * stable's highest (the ratio) and
# canary_ms - 0.998 - stable's highest > 5 (the slack): so each boundary sits at the first whole canary_ms whose
# 0.002 above canary_ms - 1 crosses it.
@pytest.mark.parametrize(("canary_ms", "stable_ms", "stable_requests", "verdict"), [
    (2, 1, 1000, "pass"),  # 1.002 to 2 ms against 1: within the 5 ms slack
    (6, 1, 1000, "pass"),  # at least 5.002 ms: 4.002 ms slower, within the slack
    (7, 1, 1000, "fail"),  # at least 6.002 ms: 5.002 ms slower and 6 x
    (14, 9, 1000, "pass"),  # at least 13.002 ms: not above 1.5 x 9 = 13.5
    (15, 9, 1000, "fail"),  # at least 14.002 ms: 1.56 x and 5.002 ms slower
    (30, 20, 1000, "pass"),  # at least 29.002 ms: not above 1.5 x 20 = 30, however many ms slower
    (31, 20, 1000, "fail"),  # at least 30.002 ms: above 30, and 10.002 ms slower
    (300, 200, 1000, "pass"),
    (301, 200, 1000, "fail"),
    (5, 10, 1000, "pass"),  # faster
    (7, 1, 5000, "pass"),  # stable may be 2 ms: 6.002 is only 4.002 ms slower
    (8, 1, 5000, "fail"),  # 7.002 against 2: 5.002 ms slower
    (32, 20, 5000, "pass"),  # 31.002 against 1.5 x 21 = 31.5
    (33, 20, 5000, "fail"),  # 32.002 > 31.5 and 11.002 ms slower
    (302, 200, 5000, "pass"),  # 301.002 against 1.5 x 201 = 301.5
    (303, 200, 5000, "fail"),
])
def test_ratio_and_slack(canary_ms, stable_ms, stable_requests, verdict):
    canary, stable = constant(500, canary_ms), constant(stable_requests, stable_ms)
    assert (canary["rtime"], stable["rtime"]) == (canary_ms, stable_ms)  # the rtime every request took
    result = analyse(canary, stable)
    assert result["verdict"] == verdict, result
    assert result["canary"]["response_ms"] == canary_ms and result["stable"]["response_ms"] == stable_ms
    assert result["canary"]["response_ms_range"] == [canary_ms - 1, canary_ms]  # canary_ms - 0.998, to 0.1 ms
    assert result["stable"]["response_ms_range"] == [stable_ms - 1, stable_ms + (stable_requests > SAMPLES)]
    if verdict == "pass":
        assert result["reasons"] == []
    else:  # the sentence shows the means
        assert len(result["reasons"]) == 1
        match = re.fullmatch(r"canary response time %d ms is ([0-9.]+) x stable's %d ms > 1\.5 x "
                             r"\(and %d ms slower > 5 ms slack\)" % (canary_ms, stable_ms, canary_ms - stable_ms),
                             result["reasons"][0])
        assert match, result["reasons"]
        assert float(match.group(1)) == pytest.approx(canary_ms / stable_ms, abs=0.005)


def test_the_rules_give_the_benefit_of_the_doubt_that_rounding_leaves():
    # Stable truly averages 19.5 ms (half its requests at 19, half at 20), the canary 30 ms: truly 1.54 x and
    # 10.5 ms slower. But HAProxy shows stable's 19.5 as rtime 20, and 20 ms is a mean the counters allow; against
    # it the canary's lowest, 29.002 ms, is not above 1.5 x: no failure.
    req, rtime = haproxy_read([19, 20] * 500)
    stable = counters(req, 0, rtime)
    assert (req, rtime) == (1000, 20)
    result = analyse(constant(500, 30), stable)
    assert result["verdict"] == "pass", result
    low, high = result["stable"]["response_ms_range"]
    assert low <= 19.5 <= high and high == 20
    # One ms more on the canary and it fails for every mean allowed.
    assert analyse(constant(500, 31), stable)["verdict"] == "fail"


def test_the_slack_and_ratio_can_be_set():
    # As in test_ratio_and_slack: 500 canary requests at c ms prove at least c - 0.998; 1000 stable ones at s ms
    # prove at most s.
    def verdict(canary_ms, stable_ms, **policy):
        return analyse(constant(500, canary_ms), constant(1000, stable_ms), **policy)["verdict"]

    assert verdict(3, 1, response_slack_ms=0) == "fail"  # at least 2.002 against 1: above 1.5 x, and slower
    assert verdict(2, 1, response_slack_ms=0) == "pass"  # 1.002 to 2 against 1: may be within 1.5 x
    assert verdict(11, 10, response_slack_ms=0, max_response_ratio=1) == "fail"  # at least 10.002 > 10
    assert verdict(10, 10, response_slack_ms=0, max_response_ratio=1) == "pass"
    assert verdict(50, 10, max_response_ratio=5) == "pass"  # 49.002 is not above 50
    assert verdict(50, 10, max_response_ratio=4.9) == "fail"  # 49.002 > 49
    assert verdict(50, 10, response_slack_ms=40) == "pass"  # 39.002 ms slower is within 40
    assert verdict(50, 10, response_slack_ms=39) == "fail"  # 39.002 > 39


def test_without_a_stable_response_time_the_ratio_is_not_applied():
    result = analyse(counters(500, 0, 400), counters(5000, 0, 0))
    assert result["verdict"] == "pass" and result["stable"]["response_ms"] == 0


def test_the_absolute_bound_applies_on_its_own_and_at_the_bound_passes():
    at = analyse(counters(500, 0, 30), counters(5000, 0, 29), max_response_ms=30)
    assert at["verdict"] == "pass"
    above = analyse(counters(500, 0, 31), counters(5000, 0, 30), max_response_ms=30)
    assert above["verdict"] == "fail" and above["reasons"] == ["canary response time 31 ms > 30 ms"]
    no_stable = analyse(counters(500, 0, 31), counters(5000, 0, 0), max_response_ms=30)
    assert no_stable["verdict"] == "fail"


def test_no_absolute_bound_by_default():
    result = analyse(counters(500, 0, 5000), counters(5000, 0, 4000))
    assert result["verdict"] == "pass" and result["policy"]["max_response_ms"] is None


# ------------------------------------------------------------------ response time: the step's mean from rtime


def _rounding_error(count0, count1):
    """(below, above): how far the mean solved from two reads may lie below and above the step's true mean, in ms.

    Worked out from the model alone. A request of the step weighs K ** (the decays after it) in the second read's
    sum, K = 1023 / 1024, and the first read's sum weighs K ** (all the step's decays). `show stat` rounds rtime up,
    so each read proves its sum only to less than its window (min(req_tot, 1024)) ms; the sums shown are the
    highest, which overstates the second sum (the mean comes out high) and the first (it comes out low). Each decay
    rounds its loss up, which takes less than 1 ms per request off the mean (the true mean is higher).
    """
    keep = (SAMPLES - 1) / SAMPLES
    decays = max(0, count1 - max(count0, SAMPLES))
    weight = sum(keep ** max(0, count1 - max(position, SAMPLES)) for position in range(count0 + 1, count1 + 1))
    below = min(count0, SAMPLES) * keep ** decays / weight + (1 if decays else 0)
    above = min(count1, SAMPLES) / weight
    return below, above


def test_a_window_at_one_time_lies_in_the_range_after_any_history():
    # Any history (0 to 5000 requests at random times), then a step of N requests all at m ms: m is within
    # response_ms_range, and response_ms is within what the rounding of rtime allows (_rounding_error). That is not
    # always 1 ms: rtime is rounded to 1 ms over up to 1024 requests, so the sums are only known to up to 1024 ms
    # each, and a step's requests weigh little in them when they are few, or when the sum decays (300 requests after
    # a long history weigh about 260: up to 4 ms). From a fresh start the mean is exact.
    rng = random.Random(20)
    seen = {"fresh": 0, "decayed": 0, "few": 0}
    for _case in range(300):
        shape = rng.choice(["fresh", "short", "long"])
        history_length = {"fresh": 0, "short": rng.randint(1, 1023), "long": rng.randint(1024, 5000)}[shape]
        fastest, slowest = sorted((rng.randint(0, 400), rng.randint(0, 400)))
        history = [rng.randint(fastest, slowest) for _i in range(history_length)]
        requests = rng.choice([rng.randint(1, 20), rng.randint(1, 1100), rng.randint(300, 3000)])
        ms = rng.randint(0, 300)
        before, after = served(history, [ms] * requests)
        result = canary_analysis({"canary": before, "stable": counters()}, {"canary": after, "stable": counters()},
                                 {"min_requests": 1})
        canary = result["canary"]
        low, high = canary["response_ms_range"]
        where = (history_length, requests, ms, before, after, canary)
        assert canary["requests"] == requests, where
        assert low - 0.05 <= ms <= high + 0.05, where
        below, above = _rounding_error(len(history), len(history) + requests)
        assert -below - 0.05 <= canary["response_ms"] - ms <= above + 0.05, where
        assert high - low <= below + above + 0.1, where  # the range is no wider than the rounding makes it
        if not history:
            assert canary["response_ms"] == ms, where
            seen["fresh"] += 1
        seen["decayed"] += len(history) + requests > SAMPLES
        seen["few"] += requests < 20 and bool(history)
    assert min(seen.values()) > 30, seen  # each kind of case was tried


def test_an_earlier_slow_canary_in_the_slot_does_not_fail_the_next_one():
    # The regression behind the step's mean: the canary slot's backend served 300 requests at 5 ms, then an earlier
    # canary's 400 at 260 ms; this step serves 285 at 10 ms. HAProxy's rtime still shows 110 ms (985 requests, fewer
    # than 1024: their plain mean), which the old filter took for the canary's response time, and failed.
    canary_before, canary_after = served([5] * 300 + [260] * 400, [10] * 285)
    assert (canary_before["rtime"], canary_after["rtime"]) == (151, 110)
    stable_before, stable_after = served([10] * 3000, [10] * 2500)
    result = analyse(canary_after, stable_after, canary_before, stable_before)
    assert result["verdict"] == "pass" and result["reasons"] == [], result
    assert abs(result["canary"]["response_ms"] - 10) <= 1, result
    low, high = result["canary"]["response_ms_range"]
    assert low <= 10 <= high < 15, result
    assert analyse(canary_after, stable_after, canary_before, stable_before, max_response_ms=15)["verdict"] == "pass"
    # The old reading, 285 requests at a steady 110 ms, fails against the same stable side.
    assert analyse(constant(285, 110), stable_after, stable_before=stable_before)["verdict"] == "fail"


def test_a_slow_canary_after_a_fast_history_fails_the_ratio_with_the_means():
    # 2000 requests at 10 ms, then a step of 300 at 260 ms: HAProxy's sliding average only climbed to 74 ms, but the
    # step's mean is solved to about 260 ms, and the sentence shows the means.
    canary_before, canary_after = served([10] * 2000, [260] * 300)
    assert (canary_before["rtime"], canary_after["rtime"]) == (10, 74)
    stable_before, stable_after = served([10] * 3000, [10] * 2500)
    result = analyse(canary_after, stable_after, canary_before, stable_before)
    assert result["verdict"] == "fail"
    assert result["canary"]["response_ms"] == 261.9 and result["stable"]["response_ms"] == 10
    low, high = result["canary"]["response_ms_range"]
    assert 250 < low <= 260 <= high < 270
    assert result["reasons"] == [
        "canary response time 261.9 ms is 26.19 x stable's 10 ms > 1.5 x (and 251.9 ms slower > 5 ms slack)"]


def test_a_few_requests_after_a_history_only_bound_the_mean():
    # 4 requests at 300 ms after 900 at 100: rtime goes from 100 to 101, which over 904 requests proves the step's
    # mean only between (100 * 904 + 1 - 90000) / 4 = 100.25 and (101 * 904 - (99 * 900 + 1)) / 4 = 550.75 ms.
    # Against stable's 100 ms the canary may be as fast, so it does not fail; 100 requests prove it slow.
    stable = constant(1000, 100)
    canary_before, canary_after = served([100] * 900, [300] * 4)
    few = analyse(canary_after, stable, canary_before, min_requests=1)
    assert few["canary"]["response_ms_range"] == [100.2, 550.8] and few["canary"]["response_ms"] == 326
    assert few["verdict"] == "pass"
    canary_before, canary_after = served([100] * 900, [300] * 100)
    enough = analyse(canary_after, stable, canary_before, min_requests=1)
    # rtime 120 over 1000 requests: at least (119 * 1000 + 1 - 90000) / 100 = 290.01 ms, 2.9 x stable's 100.
    assert enough["canary"]["response_ms_range"][0] == 290 and enough["verdict"] == "fail"


def test_rounding_alone_never_fails_a_canary():
    # Canary and stable truly at the same time, whatever came before on each load balancer: even the strictest
    # policy (ratio 1, no slack, the time itself as the bound) passes.
    rng = random.Random(21)
    for _case in range(250):
        ms = rng.randint(0, 300)
        before, after = {}, {}
        for side in ("canary", "stable"):
            reads = [served([rng.randint(0, 500) for _i in range(rng.randint(0, 2500))], [ms] * rng.randint(50, 1200))
                     for _lb in range(rng.randint(1, 3))]
            before[side] = [read[0] for read in reads]
            after[side] = [read[1] for read in reads]
        policy = rng.choice([{}, {"max_response_ratio": 1, "response_slack_ms": 0, "max_response_ms": ms}])
        policy["min_requests"] = 50
        result = canary_analysis(before, after, policy)
        assert result["verdict"] == "pass", (ms, before, after, result)
        for side in ("canary", "stable"):
            low, high = result[side]["response_ms_range"]
            assert low <= ms <= high, (side, ms, result)


def test_several_load_balancers_weigh_their_means_by_their_requests_in_the_step():
    rng = random.Random(22)
    for _case in range(200):
        lbs = rng.randint(2, 4)
        sizes = [rng.choice([0, rng.randint(1, 1500)]) for _lb in range(lbs)]
        if not any(sizes):
            sizes[0] = 1
        times = [rng.randint(0, 300) for _lb in range(lbs)]
        reads = [served([rng.randint(0, 400) for _i in range(rng.randint(0, 2500))], [times[lb]] * sizes[lb])
                 for lb in range(lbs)]
        together = canary_analysis({"canary": [read[0] for read in reads], "stable": counters()},
                                   {"canary": [read[1] for read in reads], "stable": counters()},
                                   {"min_requests": 1})["canary"]
        total = sum(sizes)
        assert together["requests"] == total
        # Each load balancer alone, then weighted by its requests in the step (one without any does not count).
        alone = [canary_analysis({"canary": read[0], "stable": counters()},
                                 {"canary": read[1], "stable": counters()}, {"min_requests": 1})["canary"]
                 for read, size in zip(reads, sizes, strict=True) if size]
        weights = [size for size in sizes if size]
        for name, pick in (("mean", lambda side: side["response_ms"]),
                           ("low", lambda side: side["response_ms_range"][0]),
                           ("high", lambda side: side["response_ms_range"][1])):
            weighted = sum(weight * pick(side) for weight, side in zip(weights, alone, strict=True)) / total
            # Each value alone is rounded to 0.1 ms, and so is the result: 0.05 + 0.05 at most.
            assert abs(pick(together) - weighted) <= 0.1 + 1e-9, (name, sizes, times, together, alone)
        true_mean = sum(size * ms for size, ms in zip(sizes, times, strict=True)) / total
        assert together["response_ms_range"][0] - 0.05 <= true_mean <= together["response_ms_range"][1] + 0.05


# ------------------------------------------------------------------ too few requests


def test_too_few_requests_is_inconclusive():
    few = analyse(counters(99, 1, 10))
    assert few["verdict"] == "inconclusive"
    assert few["reasons"] == ["only 99 canary requests, fewer than min_requests 100: no verdict yet"]
    assert analyse(counters(100, 0, 10))["verdict"] == "pass"  # exactly min_requests
    assert analyse(counters(100, 1, 10))["verdict"] == "pass"
    assert analyse(counters(0, 0, 0))["verdict"] == "inconclusive"


def test_too_few_requests_stays_inconclusive_whatever_the_response_time():
    result = analyse(counters(99, 0, 900), counters(5000, 0, 10), max_response_ms=20)
    assert result["verdict"] == "inconclusive"


def test_fail_wins_over_inconclusive_once_the_errors_exceed_the_whole_allowance():
    at_allowance = analyse(counters(50, 1, 10))  # 1 error: exactly the 1 that 100 requests at 1 % allow
    assert at_allowance["verdict"] == "inconclusive"
    doomed = analyse(counters(50, 2, 10))
    assert doomed["verdict"] == "fail"
    assert doomed["reasons"] == [
        "canary already has 2 5xx answers in 50 requests, more than the 1 allowed in min_requests 100 at 1.0 %"]
    zero_requests = analyse(counters(0, 5, 0))
    assert zero_requests["verdict"] == "fail" and zero_requests["canary"]["error_rate"] == 0.0


def test_fail_wins_with_a_zero_error_allowance_and_a_fractional_one():
    assert analyse(counters(10, 1, 10), max_error_rate=0)["verdict"] == "fail"
    assert analyse(counters(10, 0, 10), max_error_rate=0)["verdict"] == "inconclusive"
    # 0.5 % of 100 requests is half an error: one error is already more.
    half = analyse(counters(10, 1, 10), max_error_rate=0.005)
    assert half["verdict"] == "fail" and "more than the 0.5 allowed in min_requests 100 at 0.5 %" in half["reasons"][0]
    assert analyse(counters(10, 1, 10), min_requests=1000)["verdict"] == "inconclusive"  # 10 allowed


# ------------------------------------------------------------------ several load balancers


def test_several_load_balancers_are_summed_and_response_time_weighted():
    # Canary on the first load balancer: 200 requests at 20 ms before the step, 200 at 10 ms in it (rtime 20 -> 15);
    # on the second: 100 at 10 ms before, 100 at 40 ms in it (rtime 10 -> 25). The step's means are 10 and 40 ms,
    # weighted by the 200 and 100 requests: (200 * 10 + 100 * 40) / 300 = 20 ms (the rtimes weighted would be 18.3).
    first_before, first_after = served([20] * 200, [10] * 200, errors=3)
    second_before, second_after = served([10] * 100, [40] * 100, errors=1)
    assert [first_after["rtime"], second_after["rtime"]] == [15, 25]
    before = {"canary": [first_before, second_before], "stable": [counters(), counters()]}
    after = {"canary": [first_after, second_after], "stable": [constant(3000, 10), constant(1000, 30)]}
    result = canary_analysis(before, after, {"max_error_rate": 0.05, "max_error_rate_increase": 0.05})
    # The range: on the first, the sums HAProxy shows are known to 200 (before) and 400 (after) ms, which over the
    # 200 requests allows 8.005 to 10.995 ms; on the second, 38.01 to 40.99 ms; weighted, 18.007 to 20.993.
    assert result["canary"] == {"requests": 300, "errors": 4, "error_rate": 4 / 300, "response_ms": 20,
                                "response_ms_range": [18, 21]}
    # Stable: 3000 requests at 10 ms and 1000 at 30 ms: 15 ms; the first decayed, so its highest is 11 ms.
    assert result["stable"] == {"requests": 4000, "errors": 0, "error_rate": 0.0, "response_ms": 15,
                                "response_ms_range": [14, 15.8]}
    assert result["notes"] == [] and result["verdict"] == "pass"


def test_a_weighted_response_time_that_is_not_whole_is_rounded_to_a_tenth():
    before = {"canary": [counters(), counters()], "stable": [counters(), counters()]}
    after = {"canary": [counters(200, 0, 10), counters(100, 0, 41)], "stable": [counters(500, 0, 20)] * 2}
    result = canary_analysis(before, after)
    assert result["canary"]["response_ms"] == 20.3  # (200 * 10 + 100 * 41) / 300 = 20.333...
    assert result["canary"]["requests"] == 300 and result["verdict"] == "pass"


def test_a_load_balancer_without_requests_in_the_step_does_not_weigh_on_the_response_time():
    busy_before, busy_after = served([12] * 100, [12] * 500)
    idle_before, idle_after = served([900] * 100, [])  # its rtime stays 900 from before the step
    before = {"canary": [busy_before, idle_before], "stable": counters()}
    after = {"canary": [busy_after, idle_after], "stable": constant(5000, 10)}
    result = canary_analysis(before, after)
    assert idle_after["rtime"] == 900
    assert result["canary"]["requests"] == 500 and result["canary"]["response_ms"] == 12
    # The busy one's range alone. Its sums are 1200 and 7200 ms, but rtime 12 only proves 1101 to 1200 over 100
    # requests and 6601 to 7200 over 600: (6601 - 1200) / 500 = 10.802 to (7200 - 1101) / 500 = 12.198 ms.
    assert result["canary"]["response_ms_range"] == [10.8, 12.2]
    assert result["verdict"] == "pass"


def test_without_any_request_the_response_time_is_the_plain_mean_with_a_note():
    before = {"canary": [constant(100, 10), constant(100, 20)], "stable": counters()}
    after = {"canary": [constant(100, 10), constant(100, 20)], "stable": constant(5000, 10)}
    result = canary_analysis(before, after)
    assert result["canary"] == {"requests": 0, "errors": 0, "error_rate": 0.0, "response_ms": 15,
                                "response_ms_range": [15, 15]}
    assert result["notes"] == [
        "canary had no requests in the step: its response time is HAProxy's average from before"]


def test_a_single_dict_and_a_list_of_one_give_the_same_numbers():
    single = analyse(counters(700, 3, 12), counters(9000, 10, 11), counters(100, 1, 0), counters(1000, 0, 0))
    listed = canary_analysis({"canary": [counters(100, 1, 0)], "stable": [counters(1000, 0, 0)]},
                             {"canary": [counters(700, 3, 12)], "stable": [counters(9000, 10, 11)]})
    assert single == listed


def test_load_balancers_must_match_and_not_be_empty():
    with raises("the canary counters come from 1 load balancers at the start and 2 now"):
        canary_analysis({"canary": [counters()], "stable": counters()},
                        {"canary": [counters(), counters()], "stable": counters()})
    with raises("the stable counters now are an empty list"):
        canary_analysis({"canary": counters(), "stable": counters()}, {"canary": counters(), "stable": []})


def test_splitting_the_traffic_over_load_balancers_changes_nothing_but_the_range():
    # Requests all at the same time from a fresh start: the mean is exactly that time however the traffic is split.
    # The range differs (each load balancer rounds its own rtime, and only those past 1024 requests decay), but it
    # holds the time both ways, and against a stable side at the same time neither fails.
    rng = random.Random(5)
    for _case in range(300):
        requests, rtime = rng.randint(0, 3000), rng.randint(1, 40)
        errors = rng.randint(0, requests // 20 + 1)
        lbs = rng.randint(1, 4)
        cuts = sorted(rng.randint(0, requests) for _i in range(lbs - 1))
        bounds = [0] + cuts + [requests]
        parts = [bounds[i + 1] - bounds[i] for i in range(lbs)]
        err_bounds = [0] + sorted(rng.randint(0, errors) for _i in range(lbs - 1)) + [errors]
        err_parts = [err_bounds[i + 1] - err_bounds[i] for i in range(lbs)]
        split = canary_analysis(
            {"canary": [counters() for _i in range(lbs)], "stable": counters()},
            {"canary": [constant(parts[i], rtime, err_parts[i]) for i in range(lbs)],
             "stable": constant(10000, rtime)})
        whole = analyse(constant(requests, rtime, errors), constant(10000, rtime))
        assert split["verdict"] == whole["verdict"], (parts, err_parts, split, whole)
        for result in (split, whole):
            canary = dict(result["canary"])
            low, high = canary.pop("response_ms_range")
            rate = errors / requests if requests else 0
            assert canary == {"requests": requests, "errors": errors, "error_rate": rate, "response_ms": rtime}, result
            assert low <= rtime <= high, (parts, result)
        assert split["canary"]["response_ms"] == whole["canary"]["response_ms"]


def test_a_weighted_response_time_lies_between_the_load_balancers():
    rng = random.Random(6)
    for _case in range(300):
        lbs = rng.randint(1, 5)
        reads = [counters(rng.randint(0, 500), 0, rng.randint(0, 200)) for _i in range(lbs)]
        result = canary_analysis({"canary": [counters() for _i in range(lbs)], "stable": counters()},
                                 {"canary": reads, "stable": counters(100, 0, 10)})
        rtimes = [r["rtime"] for r in reads if r["req_tot"]] or [r["rtime"] for r in reads]
        assert min(rtimes) - 0.05 <= result["canary"]["response_ms"] <= max(rtimes) + 0.05, (reads, result)


# ------------------------------------------------------------------ counter resets and null counters


def test_a_counter_reset_counts_from_zero_and_says_so():
    result = analyse(counters(300, 0, 10), canary_before=counters(5000, 10, 10))
    assert result["canary"]["requests"] == 300 and result["canary"]["errors"] == 0
    assert result["verdict"] == "pass"
    assert result["notes"] == ["the canary counters went down (req_tot 5000 -> 300, hrsp_5xx 10 -> 0: HAProxy "
                               "restarted or reloaded?): the step counts them from 0"]


def test_a_reset_of_the_5xx_counter_alone_still_counts_both_from_zero():
    result = analyse(counters(6000, 2, 10), canary_before=counters(5000, 10, 10))
    assert result["canary"]["requests"] == 6000 and result["canary"]["errors"] == 2
    assert "hrsp_5xx 10 -> 2" in result["notes"][0] and "req_tot" not in result["notes"][0]


def test_a_reset_on_one_load_balancer_leaves_the_others_alone():
    before = {"canary": [counters(1000, 5), counters(2000, 5)], "stable": [counters(), counters()]}
    after = {"canary": [counters(1300, 6, 10), counters(150, 1, 10)],
             "stable": [counters(5000, 0, 10), counters(5000, 0, 10)]}
    result = canary_analysis(before, after)
    assert result["canary"]["requests"] == 300 + 150 and result["canary"]["errors"] == 1 + 1
    assert result["notes"] == ["the canary counters on load balancer 2 went down (req_tot 2000 -> 150, "
                               "hrsp_5xx 5 -> 1: HAProxy restarted or reloaded?): the step counts them from 0"]


def test_a_reset_on_the_stable_side_is_noted_too():
    result = analyse(counters(500, 0, 10), counters(800, 8, 10), stable_before=counters(900, 0, 10))
    assert result["stable"]["requests"] == 800 and result["stable"]["errors"] == 8
    assert result["notes"][0].startswith("the stable counters went down")


def test_null_counters_count_as_zero_with_a_note():
    null = {"req_tot": None, "hrsp_5xx": None, "rtime": None, "mode": "tcp"}
    result = analyse(null, canary_before=dict(null))
    assert result["canary"] == {"requests": 0, "errors": 0, "error_rate": 0.0, "response_ms": 0,
                                "response_ms_range": [0, 0]}
    assert result["verdict"] == "inconclusive"
    assert "the canary counters: req_tot, hrsp_5xx, rtime null (a TCP-mode backend?), counted as 0" in result["notes"]


def test_empty_counters_count_as_zero_as_the_playbook_uses_them_for_the_policy():
    empty = {"canary": {}, "stable": {}}
    result = canary_analysis(empty, empty, {"min_requests": 10})
    assert result["verdict"] == "inconclusive"
    assert result["policy"] == dict(DEFAULT_POLICY, min_requests=10)


def test_counters_as_strings_are_read_and_other_haproxy_counters_ignored():
    result = analyse(counters("500", "0", "12", status="UP", servers={"app1": {}}, mode="http"))
    # 500 requests from a fresh start with rtime 12: a mean from 11.002 to 12 ms.
    assert result["canary"] == {"requests": 500, "errors": 0, "error_rate": 0.0, "response_ms": 12,
                                "response_ms_range": [11, 12]}


@pytest.mark.parametrize(("before", "after", "words"), [
    ({"canary": {}}, {"canary": {}, "stable": {}}, "canary_analysis wants {canary, stable} counters as before"),
    ({"canary": {}, "stable": {}}, {"canary": {}, "stable": {}, "x": {}}, "counters as after, got"),
    ([], {"canary": {}, "stable": {}}, "counters as before, got []"),
    ({"canary": {}, "stable": {}}, {"canary": "500", "stable": {}},
     "the canary counters now (load balancer 1) must be a dict of HAProxy counters"),
    ({"canary": [{}, 7], "stable": {}}, {"canary": [{}, {}], "stable": {}},
     "the canary counters at the start (load balancer 2) must be a dict of HAProxy counters (a haproxy_stats "
     "backends entry), got 7"),
    ({"canary": {}, "stable": {}}, {"canary": {"changed": False, "backends": {}}, "stable": {}},
     "the canary counters now have no req_tot, hrsp_5xx, rtime: give a haproxy_stats backends entry, got keys "
     "backends, changed"),
    ({"canary": {"req_tot": 1, "hrsp_5xx": 0}, "stable": {}}, {"canary": {"req_tot": 5, "hrsp_5xx": 0}, "stable": {}},
     "the canary counters at the start have no rtime"),  # the first read's rtime is needed too now
    ({"canary": counters(1, 0, 3), "stable": {}}, {"canary": {"req_tot": 5, "hrsp_5xx": 0}, "stable": {}},
     "the canary counters now have no rtime"),
    ({"canary": {}, "stable": {}}, {"canary": counters(-1), "stable": {}},
     "the canary counters now: req_tot must be 0 or more, got -1"),
    ({"canary": {}, "stable": {}}, {"canary": counters(True), "stable": {}},
     "the canary counters now: req_tot must be a number, got True"),
    ({"canary": {}, "stable": [counters(), counters()]},
     {"canary": {}, "stable": [counters(), counters(5, "many")]},
     "the stable counters on load balancer 2 now: hrsp_5xx must be a number, got 'many'"),
    ({"canary": {}, "stable": {}}, {"canary": counters(10.5), "stable": {}},
     "req_tot must be a whole number, got 10.5"),
])
def test_bad_counters_are_refused_naming_them(before, after, words):
    with raises(words):
        canary_analysis(before, after)


# ------------------------------------------------------------------ the policy


def test_the_policy_takes_numeric_strings_and_keeps_the_defaults():
    result = analyse(counters(1000, 0, 10), min_requests="200", max_error_rate="0.05", max_response_ms="250.5")
    assert result["policy"] == dict(DEFAULT_POLICY, min_requests=200, max_error_rate=0.05, max_response_ms=250.5)
    assert canary_analysis({"canary": {}, "stable": {}}, {"canary": {}, "stable": {}}, None)["policy"] == DEFAULT_POLICY
    assert analyse(counters(1000, 0, 10), max_response_ms=None)["policy"]["max_response_ms"] is None


@pytest.mark.parametrize(("policy", "words"), [
    ({"max_error_rat": 0.1}, "the canary_analysis policy has unknown keys 'max_error_rat' (it takes max_error_rate"),
    ({"zz": 1, "aa": 2}, "unknown keys 'aa', 'zz'"),
    ({1: 2}, "unknown keys 1"),
    ({"min_requests": 0}, "policy min_requests must be 1 or more, got 0"),
    ({"min_requests": -1}, "policy min_requests must be 1 or more, got -1"),
    ({"min_requests": 1.5}, "policy min_requests must be a whole number, got 1.5"),
    ({"min_requests": "many"}, "policy min_requests must be a number, got 'many'"),
    ({"min_requests": None}, "policy min_requests must be a number, got None"),
    ({"min_requests": True}, "policy min_requests must be a number, got True"),
    ({"max_error_rate": 2}, "policy max_error_rate must be a fraction from 0 to 1 (0.01 is 1 %), got 2"),
    ({"max_error_rate": -0.01}, "policy max_error_rate must be a fraction from 0 to 1 (0.01 is 1 %), got -0.01"),
    ({"max_error_rate": "5%"}, "policy max_error_rate must be a fraction from 0 to 1 (0.01 is 1 %), got '5%'"),
    ({"max_error_rate": float("nan")}, "policy max_error_rate must be a fraction from 0 to 1"),
    ({"max_error_rate_increase": 1.5}, "policy max_error_rate_increase must be a fraction from 0 to 1"),
    ({"max_error_rate_increase": None}, "policy max_error_rate_increase must be a fraction from 0 to 1 (0.01 is 1 %), "
                                        "got None"),
    ({"max_error_rate_increase": [0.01]}, "policy max_error_rate_increase must be a fraction"),
    ({"max_response_ms": -1}, "policy max_response_ms must be 0 or more ms, got -1"),
    ({"max_response_ms": "fast"}, "policy max_response_ms must be a number, got 'fast'"),
    ({"max_response_ms": "inf"}, "policy max_response_ms must be a finite number, got 'inf'"),
    ({"max_response_ratio": "fast"}, "policy max_response_ratio must be a number, got 'fast'"),
    ({"max_response_ratio": 0.5}, "policy max_response_ratio must be 1 or more (1.5 lets the canary be 50 % slower)"),
    ({"max_response_ratio": None}, "policy max_response_ratio must be a number, got None"),
    ({"max_response_ratio": float("nan")}, "policy max_response_ratio must be a finite number, got nan"),
    ({"response_slack_ms": -5}, "policy response_slack_ms must be 0 or more ms, got -5"),
    ({"response_slack_ms": False}, "policy response_slack_ms must be a number, got False"),
    ("strict", "the canary_analysis policy must be a dict, got 'strict'"),
    ([("min_requests", 5)], "the canary_analysis policy must be a dict"),
])
def test_bad_policy_is_refused_naming_the_key(policy, words):
    with raises(words):
        canary_analysis({"canary": counters(), "stable": counters()},
                        {"canary": counters(1000), "stable": counters(1000)}, policy)


# ------------------------------------------------------------------ purity and properties


def test_the_analysis_is_pure():
    before = {"canary": [counters(100, 1, 5), counters(5000, 3, 5)], "stable": counters(10, 0, 3)}
    after = {"canary": [counters(900, 4, 9), counters(10, 0, 7)], "stable": counters(7000, 9, 8)}
    policy = {"min_requests": "50", "max_response_ms": 100}
    kept = copy.deepcopy((before, after, policy))
    first = canary_analysis(before, after, policy)
    assert (before, after, policy) == kept
    assert canary_analysis(before, after, policy) == first
    first["policy"]["min_requests"] = 1
    assert canary_analysis(before, after, policy)["policy"]["min_requests"] == 50
    assert DEFAULT_POLICY["min_requests"] == 100


def _random_case(rng):
    lbs = rng.randint(1, 3)
    canary_before = [counters(rng.randint(0, 5000), rng.randint(0, 50)) for _i in range(lbs)]
    canary_after = [counters(b["req_tot"] + rng.randint(0, 2000), b["hrsp_5xx"] + rng.randint(0, 60),
                             rng.randint(0, 60)) for b in canary_before]
    stable_after = counters(rng.randint(0, 9000), 0, rng.randint(0, 60))
    stable_after["hrsp_5xx"] = rng.randint(0, max(stable_after["req_tot"] // 10, 1))
    policy = {
        "min_requests": rng.choice([1, 10, 100, 1000]),
        "max_error_rate": rng.choice([0, 0.001, 0.01, 0.05, 0.29]),
        "max_error_rate_increase": rng.choice([0, 0.01, 0.07, 1]),
        "max_response_ratio": rng.choice([1, 1.5, 3]),
        "response_slack_ms": rng.choice([0, 5, 20]),
    }
    if rng.random() < 0.3:
        policy["max_response_ms"] = rng.choice([0, 20, 50])
    before = {"canary": canary_before, "stable": counters()}
    after = {"canary": canary_after, "stable": stable_after}
    return before, after, policy


def test_never_pass_above_an_error_limit_and_the_verdict_follows_the_rules():
    rng = random.Random(3)
    seen = set()
    for _case in range(3000):
        before, after, policy = _random_case(rng)
        result = canary_analysis(before, after, policy)
        canary, stable, verdict = result["canary"], result["stable"], result["verdict"]
        seen.add(verdict)
        requests, errors = canary["requests"], canary["errors"]
        lbs = range(len(after["canary"]))
        assert requests == sum(after["canary"][i]["req_tot"] - before["canary"][i]["req_tot"] for i in lbs)
        assert errors == sum(after["canary"][i]["hrsp_5xx"] - before["canary"][i]["hrsp_5xx"] for i in lbs)
        # The oracle in exact fractions, from the raw counts.
        rate = Fraction(errors, requests) if requests else Fraction(0)
        stable_rate = Fraction(stable["errors"], stable["requests"]) if stable["requests"] else Fraction(0)
        if rate > Fraction(str(policy["max_error_rate"])):
            assert verdict != "pass", (policy, result)
        if rate - stable_rate > Fraction(str(policy["max_error_rate_increase"])):
            assert verdict != "pass", (policy, result)
        # The response time rules fail on the lowest mean the counters allow, never on the mean alone.
        low, high = canary["response_ms_range"]
        assert low <= canary["response_ms"] <= high, result
        assert stable["response_ms_range"][0] <= stable["response_ms"] <= stable["response_ms_range"][1], result
        bound_failed = any(re.match(r"canary response time [0-9.]+ ms > ", reason) for reason in result["reasons"])
        if "max_response_ms" in policy and requests >= policy["min_requests"]:
            if low > policy["max_response_ms"] + 0.05:
                assert bound_failed, (policy, result)
            elif low < policy["max_response_ms"] - 0.05:
                assert not bound_failed, (policy, result)
        else:
            assert not bound_failed, (policy, result)
        if requests < policy["min_requests"]:
            allowance = Fraction(str(policy["max_error_rate"])) * policy["min_requests"]
            assert verdict == ("fail" if errors > allowance else "inconclusive"), (policy, result)
            assert len(result["reasons"]) == 1
        else:
            assert verdict in ("pass", "fail")
        assert (verdict == "pass") == (result["reasons"] == []), result
    assert seen == {"pass", "fail", "inconclusive"}  # every branch was reached


def test_a_clean_canary_as_fast_as_stable_always_passes():
    rng = random.Random(4)
    for _case in range(1000):
        min_requests = rng.choice([1, 100, 1000])
        requests = rng.randint(min_requests, 20000)
        rtime = rng.randint(0, 300)
        stable_errors = rng.randint(0, 50)
        result = analyse(counters(requests, 0, rtime), counters(10000, stable_errors, rtime),
                         min_requests=min_requests, max_error_rate=rng.choice([0, 0.01]),
                         max_error_rate_increase=rng.choice([0, 0.01]))
        assert result["verdict"] == "pass", result
