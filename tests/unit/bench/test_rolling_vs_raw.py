"""Tests for the pure parts of bench/rolling_vs_raw.py: the plan, the by-hand reference's
commands (the same container as the service role's), where rolling.yml's time goes, and
the refusal to record an unfair or lossy comparison.

The bench itself needs a lab of 4 hosts and minutes; these need neither.
"""

# bench/ is on pytest's pythonpath (pyproject.toml): the scripts import as modules, as they import each other.
from __future__ import annotations

import datetime
from pathlib import Path

import pytest
import rolling_vs_raw as raw
import yaml

ROOT = Path(__file__).resolve().parents[3]

DEFAULTS = yaml.safe_load((ROOT / "roles/service/defaults/main.yml").read_text())
SHOP = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/shop.yml").read_text())
CATALOG = dict(next(s for s in SHOP["vmfleet_services"] if s["name"] == "catalog"),
               image="10.77.113.11:5000/shop/catalog")


def probe(total=5000, failed=0, rps=118.0, covered=True, errors=None):
    return {"total": total, "failed": failed, "rps": rps, "covered": covered, "errors": errors or {}}


def run(how, version, wall, phases=None, probes=None, served=None):
    return raw.Run(how, version, wall, phases or dict.fromkeys(raw.PHASES, 0.0),
                   probes or {"keep-alive": probe(), "new connection": probe()},
                   dict.fromkeys(raw.HOSTS, version) if served is None else served)


def test_the_plan_alternates_by_hand_and_rolling_each_there_and_back():
    assert raw.run_plan(2) == [("raw", "1.1.0"), ("raw", "1.0.0"), ("rolling", "1.1.0"), ("rolling", "1.0.0")] * 2
    with pytest.raises(ValueError):
        raw.run_plan(0)


def test_docker_run_gives_the_container_the_service_roles_options():
    argv = raw.docker_run_argv(CATALOG, DEFAULTS, "app2", "1.1.0")
    joined = " ".join(argv)
    assert argv[:2] == ["docker", "run"] and argv[-1] == "10.77.113.11:5000/shop/catalog:1.1.0"
    for option in ("--name catalog-blue", "--restart unless-stopped", "--publish 8101:8080", "--env HOST_NAME=app2",
                   "--label io.vmfleet.version=1.1.0", "--label io.vmfleet.slot=blue", "--read-only",
                   "--security-opt no-new-privileges", "--cap-drop ALL", "--memory 128m", "--cpus 0.5",
                   "--log-driver json-file", "--log-opt max-size=10m", "--log-opt max-file=3", "--stop-timeout 10"):
        assert option in joined, option
    assert "--cap-add" not in joined  # catalog adds none


def test_every_option_of_the_roles_docker_container_task_has_its_docker_run_flag():
    # When run-docker.yml gains an option, the reference must gain it too, or it would
    # be a lighter container than the role's and the comparison unfair.
    task = yaml.safe_load((ROOT / "roles/service/tasks/run-docker.yml").read_text())[0]
    options = set(task["community.docker.docker_container"])
    mirrored = {"name", "image", "state", "comparisons", "restart_policy", "published_ports", "env", "labels",
                "read_only", "tmpfs", "security_opts", "cap_drop", "capabilities", "memory", "cpus", "log_driver",
                "log_options", "stop_timeout"}
    assert options == mirrored, f"not mirrored by bench/rolling_vs_raw.py: {options - mirrored}"


def test_by_hand_is_four_commands_per_host_in_the_order_of_the_role():
    steps = raw.raw_steps(CATALOG, DEFAULTS, "app3", "1.1.0", "/run/haproxy/admin.sock")
    assert [step[:2] for step in steps] == [("drain", "lb"), ("replace", "app"), ("health", "app"), ("up", "lb")]
    drain, replace, health, up = (step[2] for step in steps)
    assert "set server catalog_blue/app3 state drain" in drain and "{print $5}" in drain  # scur
    assert "docker stop catalog-blue" in replace and "docker pull" in replace
    assert "http://127.0.0.1:8101/healthz" in health and "sleep 0.1" in health
    assert "set server catalog_blue/app3 state ready" in up and "{print $18}" in up and "= UP ]" in up  # status
    assert all("exit 1" in command for command in (drain, health, up))  # every wait is bounded


def test_addresses_are_the_labs():
    addresses = (raw.address("lb1"), raw.address("app1"), raw.address("app4"))
    assert addresses == ("10.77.113.10", "10.77.113.21", "10.77.113.24")


def task(name, start, end):
    return {"task": {"name": name, "duration": {"start": start, "end": end}}, "hosts": {}}


def test_rolling_phases_come_from_the_task_timings_and_the_rest_is_other():
    result = {"plays": [{"tasks": [
        task("vmfleet.deploy.traffic : Drain the server on every load balancer: catalog_blue/app1",
             "2026-11-28T10:00:00.000000Z", "2026-11-28T10:00:01.500000Z"),
        task("vmfleet.deploy.service : Pull the image with Docker: x",
             "2026-11-28T10:00:01.5Z", "2026-11-28T10:00:02Z"),
        task("vmfleet.deploy.service : Gate on HTTP health of the slot",
             "2026-11-28T10:00:03Z", "2026-11-28T10:00:05Z"),
        task("vmfleet.deploy.service : Gate on HTTP health from the load balancer",
             "2026-11-28T10:00:05Z", "2026-11-28T10:00:06Z"),
        task("Read the release ledger", "2026-11-28T10:00:06Z", "2026-11-28T10:00:09Z"),
    ]}]}
    phases = raw.rolling_phases(result, wall=10.0)
    assert phases == {"drain": 1.5, "pull": 0.5, "replace": 0.0, "health": 3.0, "up": 0.0, "other": 5.0}


def test_a_clean_fair_comparison_is_recorded_with_medians_and_the_ratio():
    runs = [run("raw", "1.1.0", 10.0, dict(dict.fromkeys(raw.PHASES, 0.0), drain=2.0, health=4.0)),
            run("raw", "1.0.0", 12.0, dict(dict.fromkeys(raw.PHASES, 0.0), drain=3.0, health=5.0)),
            run("rolling", "1.1.0", 40.0), run("rolling", "1.0.0", 44.0)]
    assert raw.problems(runs) == []
    [row] = raw.result_rows(runs, datetime.date(2026, 11, 28))
    assert "rolling.yml 42.0 s (40.0–44.0); by hand 11.0 s (10.0–12.0)" in row
    assert "ratio rolling/by hand 3.82" in row and "| 2 + 2 |" in row
    assert "by hand: drain 2.5, health 4.5;" in row
    assert "keep-alive 0 of 20000, min 118 req/s" in row


@pytest.mark.parametrize(("bad", "words"), [
    (run("raw", "1.1.0", 10.0,
         probes={"keep-alive": probe(failed=3, errors={"timeout": 3}), "new connection": probe()}),
     "3 of 5000 requests failed (timeout: 3)"),
    (run("rolling", "1.1.0", 10.0, probes={"keep-alive": probe(), "new connection": probe(rps=91.5)}),
     "91.5 requests/s, under 100"),
    (run("raw", "1.1.0", 10.0, probes={"keep-alive": probe(covered=False), "new connection": probe()}),
     "hit its bound"),
    (run("raw", "1.1.0", 10.0, served=dict(dict.fromkeys(raw.HOSTS, "1.1.0"), app4="1.0.0")),
     "hosts not on 1.1.0 afterwards: {'app4': '1.0.0'}"),
])
def test_a_lossy_slow_or_wrong_run_is_not_recorded(bad, words):
    found = raw.problems([bad])
    assert any(words in sentence for sentence in found), found


def test_no_run_is_nothing_to_record():
    assert raw.problems([]) == ["no timed run"]
