"""Tests for the canary filters: canary_plan, canary_steps and canary_analysis (pure functions)."""

from __future__ import annotations

import random

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmfleet.deploy.plugins.filter.canary import canary_analysis, canary_plan, canary_steps

HOSTS = ["app1", "app2", "app3", "app4"]


def counters(req=0, err=0, rtime=0):
    return {"req_tot": req, "hrsp_5xx": err, "rtime": rtime}


def analyse(canary_before, canary_after, stable_before=None, stable_after=None, **policy):
    before = {"canary": canary_before, "stable": stable_before or counters()}
    after = {"canary": canary_after, "stable": stable_after or counters(10000, 0, 10)}
    return canary_analysis(before, after, policy)


# ------------------------------------------------------------------ canary_plan


@pytest.mark.parametrize(("canary", "expected"), [
    (1, ["app1"]), ("2", ["app1", "app2"]), (3, ["app1", "app2", "app3"]),
    ("25%", ["app1"]), ("50%", ["app1", "app2"]), ("10%", ["app1"]), ("74%", ["app1", "app2"]),
])
def test_canary_plan_takes_the_first_hosts(canary, expected):
    assert canary_plan(HOSTS, canary) == expected


@pytest.mark.parametrize(("hosts", "canary", "words"), [
    (HOSTS, 4, "at least one host must stay stable"),
    (HOSTS, "100%", "at least one host must stay stable"),
    (HOSTS, 0, "at least 1"),
    (HOSTS, "0%", "1% to 100%"),
    (HOSTS, "150%", "1% to 100%"),
    (HOSTS, "two", "must be a number"),
    (HOSTS, True, "must be a number"),
    (HOSTS, 1.5, "whole number"),
    (["app1"], 1, "at least two hosts"),
    ("app1", 1, "list of hosts"),
])
def test_canary_plan_refuses_bad_input(hosts, canary, words):
    with pytest.raises(AnsibleFilterError, match=words.replace("%", "%")):
        canary_plan(hosts, canary)


def test_canary_plan_never_takes_all_or_no_host():
    rng = random.Random(7)
    for _case in range(500):
        hosts = [f"h{i}" for i in range(rng.randint(2, 40))]
        spec = rng.choice([rng.randint(1, len(hosts) - 1), f"{rng.randint(1, 99)}%"])
        chosen = canary_plan(hosts, spec)
        assert 1 <= len(chosen) < len(hosts) and chosen == hosts[: len(chosen)], (len(hosts), spec)


# ------------------------------------------------------------------ canary_steps


def test_canary_steps_normalises():
    assert canary_steps([{"weight": "10", "pause": 30}, {"weight": 50.0}, {"weight": 100, "pause": "1.5"}]) == [
        {"weight": 10, "pause": 30}, {"weight": 50, "pause": 0}, {"weight": 100, "pause": 1.5}]


@pytest.mark.parametrize(("steps", "words"), [
    ([], "non-empty list"),
    ("10,50", "non-empty list"),
    ([{"weight": 0}], "step 1: weight must be 1 to 100"),
    ([{"weight": 101}], "step 1: weight must be 1 to 100"),
    ([{"weight": 10}, {"weight": 10}], "step 2: weights must be increasing, got 10 after 10"),
    ([{"weight": 50}, {"weight": 10}], "step 2: weights must be increasing"),
    ([{"weight": 10, "pause": -1}], "step 1: pause must be 0 or more"),
    ([{"weight": 10, "wait": 5}], "step 1 has unknown keys wait"),
    ([{"pause": 5}], "step 1 has no weight"),
    ([{"weight": 12.5}], "whole number"),
    ([{"weight": True}], "must be a number"),
    ([10, 50], "must be a dict"),
])
def test_canary_steps_refuses_bad_steps(steps, words):
    with pytest.raises(AnsibleFilterError, match=words):
        canary_steps(steps)


def test_canary_steps_output_always_increases():
    rng = random.Random(11)
    for _case in range(300):
        weights = sorted(rng.sample(range(1, 101), rng.randint(1, 6)))
        steps = canary_steps([{"weight": w, "pause": rng.randint(0, 90)} for w in weights])
        assert [s["weight"] for s in steps] == weights
        assert all(a["weight"] < b["weight"] for a, b in zip(steps, steps[1:], strict=False))


# ------------------------------------------------------------------ canary_analysis


def test_a_healthy_canary_passes_with_its_numbers():
    result = analyse(counters(1000, 2, 10), counters(1500, 2, 12), counters(9000, 0, 10), counters(13500, 0, 11))
    assert result["verdict"] == "pass" and result["reasons"] == []
    assert result["canary"] == {"requests": 500, "errors": 0, "error_rate": 0.0, "response_ms": 12}
    assert result["stable"] == {"requests": 4500, "errors": 0, "error_rate": 0.0, "response_ms": 11}
    assert result["policy"]["min_requests"] == 100 and result["notes"] == []


def test_error_rate_at_the_threshold_passes_and_just_above_fails():
    at = analyse(counters(), counters(1000, 10, 10))  # 1.0 % exactly
    assert at["verdict"] == "pass", at
    above = analyse(counters(), counters(1000, 11, 10))
    assert above["verdict"] == "fail"
    assert above["reasons"][0] == "canary 5xx rate 1.1 % (11 of 1000) > 1.0 %"


def test_error_rate_relative_to_stable():
    # Stable itself fails 5 %: the canary's 5.5 % is within 1 point of it, but above the absolute 1 %.
    result = analyse(counters(), counters(1000, 55, 10), counters(), counters(1000, 50, 10),
                     max_error_rate=0.10, max_error_rate_increase=0.01)
    assert result["verdict"] == "pass", result
    result = analyse(counters(), counters(1000, 65, 10), counters(), counters(1000, 50, 10),
                     max_error_rate=0.10, max_error_rate_increase=0.01)
    assert result["verdict"] == "fail"
    assert "1.5 points above stable's 5.0 %" in result["reasons"][0]


def test_response_time_ratio_with_slack_and_absolute_bound():
    slow = analyse(counters(), counters(500, 0, 260), counters(), counters(5000, 0, 10))
    assert slow["verdict"] == "fail" and "response time 260 ms is 26.0 x stable's 10 ms" in slow["reasons"][0]
    # 2 ms against 1 ms is twice as slow but within the 5 ms slack.
    assert analyse(counters(), counters(500, 0, 2), counters(), counters(5000, 0, 1))["verdict"] == "pass"
    # The absolute bound applies on its own.
    bounded = analyse(counters(), counters(500, 0, 40), counters(), counters(5000, 0, 35), max_response_ms=30)
    assert bounded["verdict"] == "fail" and bounded["reasons"] == ["canary response time 40 ms > 30 ms"]
    # No stable response time: the ratio is not applied.
    assert analyse(counters(), counters(500, 0, 40), counters(), counters(5000, 0, 0))["verdict"] == "pass"


def test_too_few_requests_is_inconclusive_unless_the_errors_already_fail():
    few = analyse(counters(), counters(99, 1, 10))
    assert few["verdict"] == "inconclusive"
    assert few["reasons"] == ["only 99 canary requests, fewer than min_requests 100"]
    doomed = analyse(counters(), counters(50, 2, 10))  # 2 errors > 1 % of 100 allowed
    assert doomed["verdict"] == "fail" and "already exceed" in doomed["reasons"][0]
    assert analyse(counters(), counters(100, 0, 10))["verdict"] == "pass"  # exactly min_requests


def test_several_load_balancers_are_summed_and_response_time_weighted():
    before = {"canary": [counters(100, 0, 0), counters(200, 0, 0)], "stable": [counters(), counters()]}
    after = {"canary": [counters(400, 3, 10), counters(300, 1, 40)],
             "stable": [counters(3000, 0, 10), counters(1000, 0, 10)]}
    result = canary_analysis(before, after, {"max_error_rate": 0.05, "max_error_rate_increase": 0.05})
    assert result["canary"]["requests"] == 400 and result["canary"]["errors"] == 4
    assert result["canary"]["response_ms"] == round((300 * 10 + 100 * 40) / 400)  # 18, not the plain mean 25
    assert result["stable"]["requests"] == 4000


def test_a_counter_reset_counts_from_zero_and_says_so():
    result = analyse(counters(5000, 10, 10), counters(300, 0, 10))
    assert result["canary"]["requests"] == 300 and result["canary"]["errors"] == 0
    assert result["notes"] == ["canary counters on load balancer 1 went down (HAProxy restarted?): counted from 0"]


@pytest.mark.parametrize(("policy", "words"), [
    ({"max_error_rat": 0.1}, "unknown keys max_error_rat"),
    ({"max_error_rate": 2}, "fraction from 0 to 1"),
    ({"min_requests": -1}, "0 or more"),
    ({"min_requests": 1.5}, "whole number"),
    ({"max_response_ratio": "fast"}, "must be a number"),
    ("strict", "must be a dict"),
])
def test_bad_policy_is_refused_with_the_key(policy, words):
    with pytest.raises(AnsibleFilterError, match=words):
        analyse(counters(), counters(1000, 0, 10), **({} if isinstance(policy, str) else policy)) \
            if not isinstance(policy, str) else canary_analysis({"canary": {}, "stable": {}},
                                                                {"canary": {}, "stable": {}}, policy)


def test_bad_counters_are_refused():
    with pytest.raises(AnsibleFilterError, match="canary, stable"):
        canary_analysis({"canary": {}}, {"canary": {}, "stable": {}})
    with pytest.raises(AnsibleFilterError, match="1 load balancers at the start and 2 now"):
        canary_analysis({"canary": [{}], "stable": {}}, {"canary": [{}, {}], "stable": {}})


def test_never_pass_above_the_error_threshold_never_fail_a_clean_canary():
    rng = random.Random(3)
    for _case in range(2000):
        requests = rng.randint(0, 5000)
        errors = rng.randint(0, requests)
        rtime = rng.randint(1, 50)
        policy = {"max_error_rate": rng.choice([0.0, 0.01, 0.05]), "min_requests": rng.choice([1, 100, 1000])}
        result = analyse(counters(), counters(requests, errors, rtime), counters(), counters(9000, 0, rtime),
                         **policy)
        if requests and errors / requests > policy["max_error_rate"]:
            assert result["verdict"] != "pass", (requests, errors, policy, result)
        if errors == 0 and requests >= policy["min_requests"]:
            assert result["verdict"] == "pass", (requests, rtime, policy, result)
