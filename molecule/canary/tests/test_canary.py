"""Verify of the Molecule scenario "canary": playbooks/canary.yml under load.

Converge left catalog 1.0.0 in the blue slot of four app hosts behind HAProxy.
Two load probes (one keep-alive, one new connection per request, each >= 100
requests/s through HAProxy's HTTPS frontend) run through every canary. The
tests run in file order: each starts from the state the previous one left.
The failing canaries come first, so that each one starts from 1.0.0 live.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import ssl
import subprocess
import threading
import time

import pytest

# tests/integration is on sys.path through pyproject.toml's pytest `pythonpath`.
from fleet import (
    CA,
    HOSTS,
    INVENTORY,
    LB,
    PORT,
    ROOT,
    ansible_env,
    assert_no_failures,
    containers,
    deploy_lock,
    flat,
    ledgers,
    live_maps,
    playbook,
    probes,
    served_versions,
    servers,
)


def canary(version: str, steps: list[dict], *extra: str, check: bool = True, **inputs) -> tuple:
    """Run canary.yml; returns (process, report: one dict per step run)."""
    inputs = {"vmfleet_canary_steps": steps, "vmfleet_canary_interval": 2, "vmfleet_scale_down_delay": 2,
              **inputs}
    proc = playbook("canary.yml", "-e", "service=catalog", "-e", f"version={version}", "-e", json.dumps(inputs),
                    *extra, check=check)
    for line in proc.stdout.splitlines():
        if "vmfleet-canary-report=" in line:
            encoded = line.split("vmfleet-canary-report=")[1].split()[0].strip("\"',")
            return proc, json.loads(base64.b64decode(encoded))
    return proc, None


def assert_stable_on(version: str, slot: str = "blue") -> None:
    """catalog <version> serves from <slot> everywhere, no share is split off, the other slot is gone."""
    assert live_maps() == (f"catalog_{slot}", 0)
    assert served_versions(PORT[slot]) == dict.fromkeys(HOSTS, version)
    other = "green" if slot == "blue" else "blue"
    assert containers(other) == dict.fromkeys(HOSTS, None)
    assert {h: s["admin_state"] for h, s in servers(f"catalog_{other}").items()} == dict.fromkeys(HOSTS, "maint")
    for host, ledger in ledgers().items():
        assert ledger["current"]["version"] == version, (host, ledger["current"])


@pytest.fixture(autouse=True, scope="module")
def _lab_is_there():
    if not CA.exists():
        pytest.fail(f"{CA} is missing: run `molecule create -s canary` first")


def test_a_canary_that_serves_errors_is_aborted_at_the_first_step():
    steps = [{"weight": 20, "pause": 20}, {"weight": 50, "pause": 20}]
    with probes() as running:
        proc, report = canary("1.1.0-errors", steps, check=False,
                              vmfleet_canary_analysis={"min_requests": 100})
    assert proc.returncode != 0
    assert report and len(report) == 1, report  # the second step never ran
    verdict = report[0]
    assert verdict["verdict"] == "fail" and verdict["step"] == 1, verdict
    assert verdict["canary"]["errors"] > 0 and verdict["canary"]["error_rate"] > 0.1, verdict
    # The play fails with the numbers.
    text = flat(proc.stdout)
    assert "Canary of catalog 1.1.0-errors failed" in text, proc.stdout[-4000:]
    assert f"canary {verdict['canary']['requests']} requests, 5xx" in text
    # The only failed requests are the canary's own 500s, and none started more than 1 s after the verdict.
    for probe in running:
        t0 = probe.result()["started_at"]
        failed = [r for r in probe.records() if not r.ok]
        assert failed, "the canary answered no request with 500: nothing was tested"
        assert {(r.status, r.version) for r in failed} == {(500, "1.1.0-errors")}, {
            (r.status, r.version, r.error) for r in failed}
        canary_answers = [r for r in probe.records() if r.version == "1.1.0-errors"]
        late = [r for r in canary_answers if t0 + r.start > verdict["decided_at"] + 1.0]
        assert not late, f"{len(late)} canary responses started more than 1 s after the verdict"
        assert probe.result()["rps"] >= 100, probe.result()
    # The fleet is on stable, the canary stopped; the ledgers of the canary host say why.
    assert_stable_on("1.0.0")
    history = ledgers()["app1"]["history"]
    events = [(e["event"], e["version"]) for e in history[:2]]
    assert events == [("failed", "1.1.0-errors"), ("analysed", "1.1.0-errors")], history[:2]
    assert "5xx" in history[1]["reason"] and history[1]["reason"].startswith("step 1 (20 %")
    assert ledgers()["app2"]["history"][0]["event"] != "analysed"  # a stable host's ledger is untouched


def test_a_canary_that_is_only_slow_is_caught_on_latency():
    steps = [{"weight": 30, "pause": 15}]
    with probes() as running:
        proc, report = canary("1.1.0-slow", steps, check=False, vmfleet_canary_analysis={"min_requests": 100})
    assert proc.returncode != 0
    assert_no_failures(*running)  # slow is not failed
    assert report[0]["verdict"] == "fail", report
    assert any("response time" in reason for reason in report[0]["reasons"]), report[0]["reasons"]
    assert report[0]["canary"]["response_ms"] >= 200, report[0]
    assert_stable_on("1.0.0")


def test_too_few_requests_give_no_verdict():
    steps = [{"weight": 50, "pause": 4}]
    started = time.monotonic()
    proc, report = canary("1.1.0", steps, check=False, vmfleet_canary_max_wait=4,
                          vmfleet_canary_analysis={"min_requests": 100000})
    took = time.monotonic() - started
    assert proc.returncode != 0
    assert report[0]["verdict"] == "fail" and report[0]["analysis"] == "inconclusive", report
    assert report[0]["seconds"] >= 8, report  # the pause, then the wait for more requests
    assert "no verdict" in flat(proc.stdout)
    assert took < 240
    assert_stable_on("1.0.0")
    # With vmfleet_canary_inconclusive=pass the same step passes (and the canary is promoted).
    # Not run here: a promotion takes the next test's place.


class Client:
    """One client in a thread, a request every `every` seconds: with a header, or keeping its cookies."""

    def __init__(self, headers: dict | None = None, cookies: bool = False, every: float = 0.1):
        self.headers, self.cookies, self.every = headers or {}, cookies, every
        self.jar: dict[str, str] = {}
        self.answers: list[tuple[float, int, str | None]] = []  # (wall time, status, version)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        context = ssl.create_default_context(cafile=str(CA))
        deadline = time.monotonic() + 600
        while not self.stop.is_set() and time.monotonic() < deadline:
            headers = dict(self.headers)
            if self.jar:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
            conn = http.client.HTTPSConnection(LB, 8001, context=context, timeout=5)
            started = time.time()
            try:
                conn.request("GET", "/", headers=headers)
                response = conn.getresponse()
                body = response.read()
                if self.cookies:
                    for name, value in response.getheaders():
                        if name.lower() == "set-cookie":
                            key, _eq, rest = value.partition("=")
                            self.jar[key] = rest.split(";")[0]
                version = json.loads(body).get("version") if body.startswith(b"{") else None
                self.answers.append((started, response.status, version))
            except OSError as exc:
                self.answers.append((started, 0, repr(exc)))
            finally:
                conn.close()
            self.stop.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


def test_a_healthy_canary_passes_every_step_and_is_promoted():
    steps = [{"weight": 10, "pause": 20}, {"weight": 50, "pause": 20}]
    with probes() as running, Client(headers={"X-Canary": "1"}, every=0.2) as targeted, \
            Client(cookies=True, every=0.2) as sticky1, Client(cookies=True, every=0.2) as sticky2:
        proc, report = canary("1.1.0", steps, vmfleet_canary_sticky=True,
                              vmfleet_canary_analysis={"min_requests": 200})
    results = assert_no_failures(*running)
    assert [v["verdict"] for v in report] == ["pass", "pass"], report
    for verdict, step in zip(report, steps, strict=True):
        canary_n, stable_n = verdict["canary"]["requests"], verdict["stable"]["requests"]
        assert canary_n + stable_n >= 1000, verdict
        share = 100.0 * canary_n / (canary_n + stable_n)
        assert abs(share - step["weight"]) <= 3, (share, verdict)
    assert {v for r in results for v in r["versions"]} == {"1.0.0", "1.1.0"}
    # The steps' window: from the first step's start to the last verdict.
    window = (report[0]["decided_at"] - report[0]["seconds"] + 0.5, report[-1]["decided_at"] - 0.5)
    inside = [a for a in targeted.answers if window[0] <= a[0] <= window[1]]
    assert len(inside) >= 50, len(inside)
    assert {(status, version) for _t, status, version in inside} == {(200, "1.1.0")}, inside[:10]
    for client in (sticky1, sticky2):
        versions = [version for t, _s, version in client.answers if window[0] <= t <= window[1]]
        assert len(versions) >= 50 and len(set(versions)) == 1, versions
    # Promoted by the flip: 1.1.0 serves from green everywhere, blue is stopped.
    assert_stable_on("1.1.0", slot="green")
    ledger = ledgers()["app1"]
    assert ledger["current"]["strategy"] == "canary" and ledger["previous"]["version"] == "1.0.0"
    assert [e["event"] for e in ledger["history"][:3]] == ["served", "analysed", "analysed"], ledger["history"][:3]


def test_a_healthy_canary_can_be_promoted_by_a_rolling_update():
    """vmfleet_canary_promotion: rolling. The canary is stopped, and rolling.yml updates the live
    slot of every host in place: no flip, the other slot stays empty. (1.0.0 again, so that the
    tests after this one still have a release to plan.)"""
    with probes() as running:
        proc, report = canary("1.0.0", [{"weight": 20, "pause": 10}], vmfleet_canary_promotion="rolling",
                              vmfleet_canary_analysis={"min_requests": 100})
    results = assert_no_failures(*running)
    assert [v["verdict"] for v in report] == ["pass"], report
    assert {v for r in results for v in r["versions"]} == {"1.0.0", "1.1.0"}
    assert "PLAY [Roll out in batches]" in proc.stdout
    assert_stable_on("1.0.0", slot="green")
    for host, ledger in ledgers().items():
        assert ledger["previous"]["version"] == "1.1.0", (host, ledger["previous"])


def test_check_mode_prints_the_plan_and_changes_nothing():
    before = containers("green")
    proc, _report = canary("1.3.0", [{"weight": 25, "pause": 10}], "--check", vmfleet_canary_hosts="50%")
    text = flat(proc.stdout)
    start = max(proc.stdout.find("TASK [Show the plan"), 0)
    plan = proc.stdout[start:start + 4000]
    assert "live slot green -> canary slot blue on app1, app2; stable: app3, app4" in text, plan
    assert "steps: 25% for 10 s" in text
    assert containers("green") == before and containers("blue") == dict.fromkeys(HOSTS, None)


def test_bad_input_fails_before_any_change():
    before = containers("green")
    for inputs, message in (
        ({"vmfleet_canary_steps": [{"weight": 50, "pause": 5}, {"weight": 10, "pause": 5}]}, "increasing"),
        ({"vmfleet_canary_hosts": 4}, "stable"),
        ({"vmfleet_canary_analysis": {"max_error_rat": 0.1}}, "max_error_rat"),
    ):
        proc = playbook("canary.yml", "-e", "service=catalog", "-e", "version=1.3.0", "-e", json.dumps(inputs),
                        check=False)
        assert proc.returncode != 0 and message in proc.stdout, (inputs, proc.stdout[-3000:])
    assert containers("green") == before and live_maps() == ("catalog_green", 0)


LEASE = 12


def test_ctrl_c_during_a_step_puts_the_split_back_to_zero():
    """The controller goes away mid-step: the guards on the load balancers take the split back to 0.

    The lease is short, so the test is quick, but longer than the gap between two renewals
    (the split, a read of the counters and the next read's wait, under the probes' load):
    a guard that fires before the Ctrl-C would end the step the test is about."""
    argv = ["ansible-playbook", "-i", str(INVENTORY), "playbooks/canary.yml", "-e", "service=catalog",
            "-e", "version=1.3.0", "-e", json.dumps({"vmfleet_canary_steps": [{"weight": 30, "pause": 120}],
                                                    "vmfleet_canary_lease": LEASE, "vmfleet_canary_interval": 2})]
    proc = subprocess.Popen(argv, cwd=ROOT, env=ansible_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "Read the counters at the start of the step" in line or time.monotonic() > deadline:
                break
        # The step is on: 30 % of new requests go to the canary.
        wait_until = time.monotonic() + 30
        while live_maps()[1] != 30 and time.monotonic() < wait_until:
            time.sleep(0.5)
        assert live_maps() == ("catalog_green", 30), "".join(seen)[-4000:]
    finally:
        # Also when the step never came: a play left running would hold the lab for minutes.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    stopped = time.monotonic()
    while live_maps()[1] != 0 and time.monotonic() < stopped + 30:
        time.sleep(0.5)
    took = time.monotonic() - stopped
    assert live_maps() == ("catalog_green", 0), "the guard did not put the split back"
    assert took <= LEASE + 5, took  # the lease, plus the guard's poll and this loop's
    # The interrupted run could not give its deploy lock back: it names the canary, and
    # the operator, who knows that run is gone, removes it.
    [held] = deploy_lock("show")
    assert held.startswith("catalog: locked by") and "canary 1.3.0" in held, held
    [removed] = deploy_lock("force_release")  # what it removed, shown a moment later
    assert removed.split(" (in ")[0] == held.split(" (in ")[0], (removed, held)
    assert deploy_lock("show") == ["catalog: free"]
