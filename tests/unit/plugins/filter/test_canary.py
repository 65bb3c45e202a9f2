"""Tests for the canary filters: canary_plan, canary_steps and canary_analysis (pure functions)."""

from __future__ import annotations

import copy
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
    ("10,50", "non-empty list of {weight, pause}, got '10,50'"),
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
    result = analyse(counters(1500, 2, 12), counters(13500, 0, 11), counters(1000, 2, 10), counters(9000, 0, 10))
    assert result == {
        "verdict": "pass",
        "reasons": [],
        "canary": {"requests": 500, "errors": 0, "error_rate": 0.0, "response_ms": 12},
        "stable": {"requests": 4500, "errors": 0, "error_rate": 0.0, "response_ms": 11},
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


@pytest.mark.parametrize(("canary_ms", "stable_ms", "verdict"), [
    (2, 1, "pass"),  # twice as slow, but 1 ms slower: within the 5 ms slack
    (6, 1, "pass"),  # 6 x, but exactly 5 ms slower: the slack is not exceeded
    (7, 1, "fail"),  # 6 ms slower and 7 x
    (14, 9, "pass"),  # 1.56 x but 5 ms slower
    (15, 9, "fail"),  # 1.67 x and 6 ms slower
    (30, 20, "pass"),  # exactly 1.5 x: the ratio is not exceeded, however many ms slower
    (31, 20, "fail"),  # 1.55 x and 11 ms slower
    (300, 200, "pass"),
    (301, 200, "fail"),
    (5, 10, "pass"),  # faster
])
def test_ratio_and_slack(canary_ms, stable_ms, verdict):
    result = analyse(counters(500, 0, canary_ms), counters(5000, 0, stable_ms))
    assert result["verdict"] == verdict, result
    assert (result["reasons"] == []) == (verdict == "pass")


def test_the_slack_and_ratio_can_be_set():
    assert analyse(counters(500, 0, 2), counters(5000, 0, 1), response_slack_ms=0)["verdict"] == "fail"
    assert analyse(counters(500, 0, 11), counters(5000, 0, 10), response_slack_ms=0,
                   max_response_ratio=1)["verdict"] == "fail"
    assert analyse(counters(500, 0, 10), counters(5000, 0, 10), response_slack_ms=0,
                   max_response_ratio=1)["verdict"] == "pass"
    assert analyse(counters(500, 0, 50), counters(5000, 0, 10), max_response_ratio=5)["verdict"] == "pass"
    assert analyse(counters(500, 0, 50), counters(5000, 0, 10), response_slack_ms=40)["verdict"] == "pass"
    assert analyse(counters(500, 0, 50), counters(5000, 0, 10), response_slack_ms=39.5)["verdict"] == "fail"


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
    before = {"canary": [counters(100, 0, 0), counters(200, 0, 0)], "stable": [counters(), counters()]}
    after = {"canary": [counters(400, 3, 10), counters(300, 1, 40)],
             "stable": [counters(3000, 0, 10), counters(1000, 0, 30)]}
    result = canary_analysis(before, after, {"max_error_rate": 0.05, "max_error_rate_increase": 0.05})
    # Canary: 300 requests at 10 ms on the first, 100 at 40 ms on the second: (3000 + 4000) / 400 = 17.5, not 25.
    assert result["canary"] == {"requests": 400, "errors": 4, "error_rate": 0.01, "response_ms": 17.5}
    assert result["stable"] == {"requests": 4000, "errors": 0, "error_rate": 0.0, "response_ms": 15}
    assert result["notes"] == [] and result["verdict"] == "pass"


def test_a_weighted_response_time_that_is_not_whole_is_rounded_to_a_tenth():
    before = {"canary": [counters(), counters()], "stable": [counters(), counters()]}
    after = {"canary": [counters(200, 0, 10), counters(100, 0, 41)], "stable": [counters(500, 0, 20)] * 2}
    result = canary_analysis(before, after)
    assert result["canary"]["response_ms"] == 20.3  # (200 * 10 + 100 * 41) / 300 = 20.333...
    assert result["canary"]["requests"] == 300 and result["verdict"] == "pass"


def test_a_load_balancer_without_requests_in_the_step_does_not_weigh_on_the_response_time():
    before = {"canary": [counters(100), counters(100)], "stable": counters()}
    after = {"canary": [counters(600, 0, 12), counters(100, 0, 900)], "stable": counters(5000, 0, 10)}
    result = canary_analysis(before, after)
    assert result["canary"]["response_ms"] == 12 and result["verdict"] == "pass"


def test_without_any_request_the_response_time_is_the_plain_mean_with_a_note():
    before = {"canary": [counters(100), counters(100)], "stable": counters()}
    after = {"canary": [counters(100, 0, 10), counters(100, 0, 20)], "stable": counters(5000, 0, 10)}
    result = canary_analysis(before, after)
    assert result["canary"] == {"requests": 0, "errors": 0, "error_rate": 0.0, "response_ms": 15}
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


def test_splitting_the_traffic_over_load_balancers_changes_nothing():
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
            {"canary": [counters(parts[i], err_parts[i], rtime) for i in range(lbs)],
             "stable": counters(10000, 0, rtime)})
        whole = analyse(counters(requests, errors, rtime), counters(10000, 0, rtime))
        assert split["verdict"] == whole["verdict"], (parts, err_parts, split, whole)
        assert split["canary"] == whole["canary"]


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
    assert result["canary"] == {"requests": 0, "errors": 0, "error_rate": 0.0, "response_ms": 0}
    assert result["verdict"] == "inconclusive"
    assert "the canary counters: req_tot, hrsp_5xx, rtime null (a TCP-mode backend?), counted as 0" in result["notes"]


def test_empty_counters_count_as_zero_as_the_playbook_uses_them_for_the_policy():
    empty = {"canary": {}, "stable": {}}
    result = canary_analysis(empty, empty, {"min_requests": 10})
    assert result["verdict"] == "inconclusive"
    assert result["policy"] == dict(DEFAULT_POLICY, min_requests=10)


def test_counters_as_strings_are_read_and_other_haproxy_counters_ignored():
    result = analyse(counters("500", "0", "12", status="UP", servers={"app1": {}}, mode="http"))
    assert result["canary"] == {"requests": 500, "errors": 0, "error_rate": 0.0, "response_ms": 12}


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
        if "max_response_ms" in policy and canary["response_ms"] > policy["max_response_ms"] + 0.05:
            assert verdict != "pass", (policy, result)
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
