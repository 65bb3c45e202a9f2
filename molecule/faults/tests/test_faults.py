"""Verify of the Molecule scenario "faults": what playbooks/rolling.yml does when something breaks.

The scenario's converge left catalog 1.0.0 in blue on four app hosts behind HAProxy (the lab the
strategy scenarios share). Each test breaks one thing for real while the two load probes (one
keep-alive, one new connection per request) run through HAProxy's HTTPS frontend, and counts the
failed requests:

- two deploys of the service at once;
- the registry stopped before a rollout;
- Ctrl-C while a server is drained, then the same command again;
- HAProxy restarted (not reloaded) in the middle of a rollout;
- an app host killed outside any deploy (the lab machine itself: systemd, sshd, the engine);
- an app host killed in the middle of a rollout;
- a rollback that fails.

Each ends with the fleet on one known version, the ledgers saying so, every server UP and ready
(none left drained or in MAINT by accident) and the deploy lock free. They run in file order: each
starts from the state the previous one left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

# tests/integration is on sys.path through pyproject.toml's pytest `pythonpath`.
from fleet import (
    HOSTS,
    REGISTRY,
    adhoc,
    assert_fleet_on,
    assert_no_failures,
    boot_host,
    deploy_lock,
    flat,
    kill_host,
    lab_host,
    ledgers,
    probes,
    read_until,
    rolling,
    servers,
    start_rolling,
    start_times,
)

SOCKET = "/run/haproxy/admin.sock"


def assert_settled(version: str, previous: str | None = None) -> None:
    """The end of every case: one version everywhere, ledgers agreeing, every server UP and ready, lock free."""
    assert_fleet_on(version, previous)
    assert deploy_lock("show") == ["catalog: free"]


def interrupt(proc: subprocess.Popen) -> str:
    """Ctrl-C, and again every 2 s while the run goes on (up to 5 times), as a person would: ansible-core
    2.19 sometimes lets one SIGINT go unheeded. Returns the rest of the output."""
    for _press in range(5):
        os.killpg(proc.pid, signal.SIGINT)
        try:
            return proc.communicate(timeout=2)[0]
        except subprocess.TimeoutExpired:
            continue
    os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()[0]


def app2_replacement():
    """A read_until predicate: true at the first line where the engine replaces app2's container after its
    drain (the server is out of rotation and a worker runs the task). Its `drained` says whether the drain
    was seen."""
    def found(line: str) -> bool:
        found.drained = found.drained or "Drain the server on every load balancer: catalog_blue/app2" in line
        return found.drained and "Ensure the slot's container runs the image with Docker" in line

    found.drained = False
    return found


def failed_records(probe) -> list:
    """The probe's failed requests, with their start and end as wall-clock times."""
    t0 = probe.result()["started_at"]
    return [(t0 + r.start, t0 + r.end, r.error) for r in probe.records() if not r.ok]


def in_flight_at(probe, start: float, end: float) -> int:
    """How many of the probe's requests were in flight at some moment between the wall-clock times `start` and
    `end` (started before `end`, ended after `start`)."""
    t0 = probe.result()["started_at"]
    return sum(1 for r in probe.records() if t0 + r.start <= end and t0 + r.end >= start)


def watch_status(host: str, seconds: float) -> subprocess.Popen:
    """On lb1, print '<epoch> <status>' every time HAProxy's status of catalog_blue/<host> changes, every
    20 ms, for `seconds`: the load balancer's own clock, which the lab machines share with this one."""
    script = (
        f"end=$(( $(date +%s) + {int(seconds)} )); last=; "
        f"while [ $(date +%s) -lt $end ]; do "
        f"s=$(echo 'show stat catalog_blue 4 -1' | socat -t 1 STDIO UNIX-CONNECT:{SOCKET} "
        f"| awk -F, '$2==\"{host}\" {{print $18}}'); "
        f"if [ \"$s\" != \"$last\" ]; then echo \"$(date +%s.%N) $s\"; last=$s; fi; sleep 0.02; done"
    )
    return subprocess.Popen(["docker", "exec", "vmfleet-roll-lb1", "sh", "-c", script], stdout=subprocess.PIPE,
                            text=True)


def first_down(watch: subprocess.Popen) -> float | None:
    out = watch.communicate(timeout=120)[0]
    for line in out.splitlines():
        moment, _sep, status = line.partition(" ")
        if status.startswith("DOWN"):
            return float(moment)
    return None


def admin_states() -> dict[str, int]:
    """{server: srv_admin_state} of catalog_blue, read on lb1 in a few milliseconds."""
    command = f"echo 'show servers state catalog_blue' | socat -t 2 STDIO UNIX-CONNECT:{SOCKET}"
    out = lab_host("lb1", "sh", "-c", command).stdout
    lines = [line.split() for line in out.splitlines() if line and not line.startswith(("#", "1"))]
    return {fields[3]: int(fields[6]) for fields in lines if len(fields) > 6}


def test_a_second_deploy_of_the_service_is_refused_while_the_first_runs():
    # Two operators roll catalog at once, to different versions with different batch sizes. The
    # first takes the service's deploy lock on lb1 before it reads anything; the second finds it held
    # and stops at once, naming the holder, before any read or change. The first completes.
    before = ledgers()
    with probes() as running:
        first = start_rolling("1.1.0", 1)
        seen = read_until(first, lambda line: "Drain the server on every load balancer" in line, 300)
        second = rolling("1.3.0", "50%", check=False)
        rest = first.communicate(timeout=900)[0]
    first_out = "".join(seen) + rest
    assert first.returncode == 0, first_out[-5000:]
    print(f"second run: rc {second.returncode}")
    assert second.returncode != 0, second.stdout[-3000:]
    assert "catalog is locked by" in second.stdout and "rolling 1.1.0) since" in second.stdout, second.stdout[-3000:]
    assert "Nothing was changed" in second.stdout and "Show the plan" not in second.stdout, second.stdout[-3000:]
    assert_no_failures(*running)
    # Only the first run's events were recorded.
    for host, ledger in ledgers().items():
        last = before[host]["history"][0]["at"] if before[host]["history"] else ""
        new = [e for e in ledger["history"] if e["at"] > last]
        assert new and all(e["version"] == "1.1.0" for e in new), (host, new)
    assert_settled("1.1.0", previous="1.0.0")


def test_the_registry_stopped_before_a_rollout_stops_it_before_any_drain():
    # 1.3.0 is in no host's image cache, and the registry is down: every host tries to get the image
    # before the first drain, so the rollout stops there, naming the hosts, with nothing changed.
    gone = adhoc("app_hosts", "community.docker.docker_image",
                 {"name": f"{REGISTRY}:5000/shop/catalog:1.3.0", "state": "absent"})
    assert not any(r.get("failed") for r in gone.values()), gone
    before, starts = ledgers(), start_times()
    lab_host("registry1", "systemctl", "stop", "docker-registry")
    try:
        with probes() as running:
            proc = rolling("1.3.0", 1, check=False)
    finally:
        lab_host("registry1", "systemctl", "start", "docker-registry")
    out = flat(proc.stdout)
    print(f"rc {proc.returncode}")
    assert proc.returncode != 0
    assert "could not get the release's image" in out and "shop/catalog:1.3.0" in out, proc.stdout[-3000:]
    assert "no host was drained or changed" in out, proc.stdout[-3000:]
    assert "Drain the server" not in proc.stdout, proc.stdout[-3000:]
    assert_no_failures(*running)
    assert ledgers() == before
    assert start_times() == starts
    assert_settled("1.1.0", previous="1.0.0")


def test_ctrl_c_while_a_server_is_drained_then_the_same_command_completes_the_rollout():
    with probes() as running:
        proc = start_rolling("1.0.0", 1)
        # Interrupt while app2 is out of rotation and a worker replaces its container.
        seen = read_until(proc, app2_replacement(), 300)
        interrupt(proc)
        print(f"interrupted run: rc {proc.returncode}")
        interrupted = servers("catalog_blue")
        assert any(s["admin_state"] != "ready" for s in interrupted.values()), (
            f"the interruption came too late to test anything: {interrupted}\n{''.join(seen)[-3000:]}")
        # The interrupted run could not give its deploy lock back: running it again is refused, with
        # the way out; the operator, who knows that run is gone, removes it.
        refused = rolling("1.0.0", 1, check=False)
        print(f"refused re-run: rc {refused.returncode}")
        assert refused.returncode != 0, refused.stdout[-3000:]
        assert "catalog is locked by" in refused.stdout and "(rolling 1.0.0) since" in refused.stdout
        assert "lock_action=force_release" in refused.stdout and "Nothing was changed" in refused.stdout
        deploy_lock("force_release")
        rolling("1.0.0", 1)
    assert_no_failures(*running)
    assert_settled("1.0.0", previous="1.1.0")


def test_haproxy_restarted_in_the_middle_of_a_rollout_keeps_the_drain_and_the_rollout_completes():
    # `systemctl restart haproxy` (a new master: every connection is closed, nothing saved first) while
    # app2 is drained and its container replaced. HAProxy comes back with app2 still drained (each drain
    # saved the server states), so no request goes to the container being replaced; the rollout goes on.
    with probes() as running:
        proc = start_rolling("1.1.0", 1)
        at_replacement = app2_replacement()
        seen = read_until(proc, at_replacement, 300)
        assert at_replacement.drained, "".join(seen)[-3000:]
        restart_start = time.time()
        lab_host("lb1", "systemctl", "restart", "haproxy")
        restart_end = time.time()
        after_restart = admin_states()
        rest = proc.communicate(timeout=900)[0]
    out = "".join(seen) + rest
    assert proc.returncode == 0, out[-5000:]
    # app2 was drained before the restart and still is after it (srv_admin_state 8: a forced drain).
    assert after_restart.get("app2") == 8, after_restart
    # The only failed requests are those the restart itself cut: in flight on the load balancer at the
    # restart, or sent while it was down.
    for probe in running:
        failed = failed_records(probe)
        late = [f for f in failed if not (f[0] <= restart_end + 1.0 and f[1] >= restart_start - 0.1)]
        assert late == [], late[:10]
        print(f"{probe.result()['mode']}: {len(failed)} requests failed across the restart "
              f"({restart_end - restart_start:.2f} s)")
    assert_settled("1.1.0", previous="1.0.0")


def test_an_app_host_killed_outside_a_deploy_is_out_of_rotation_within_about_a_second():
    # The whole machine dies (SIGKILL to the lab host): no reset is sent for its connections. HAProxy's
    # passive health marks it DOWN at the first failed connection, requests sent to it on kept-alive
    # connections fail theirs after a second (tcp-ut) and are tried elsewhere, and the requests that were
    # in flight on it are the only ones that may fail.
    with probes() as running:
        time.sleep(2)
        watch = watch_status("app3", 20)
        time.sleep(0.5)
        kill_sent, killed = kill_host("app3")
        down = first_down(watch)
        time.sleep(2)
        in_flight = {p.result()["mode"]: in_flight_at(p, kill_sent, killed) for p in running}
    assert down is not None, "HAProxy never marked app3 DOWN"
    print(f"app3 killed ({killed - kill_sent:.2f} s for `docker kill`); HAProxy marked it DOWN "
          f"{down - killed:.2f} s after `docker kill` returned, {down - kill_sent:.2f} s after it was sent")
    assert down - kill_sent < 3.0, down - kill_sent
    for probe in running:
        failed = failed_records(probe)
        mode = probe.result()["mode"]
        print(f"{mode}: {len(failed)} failed; {in_flight[mode]} requests in flight anywhere during the kill")
        after = [f for f in failed if f[0] > killed]
        assert after == [], after[:10]
        assert len(failed) <= in_flight[mode], failed
    boot_host("app3")
    deadline = time.monotonic() + 60
    while servers("catalog_blue")["app3"]["status"] != "UP" and time.monotonic() < deadline:
        time.sleep(1)
    assert_settled("1.1.0", previous="1.0.0")


def test_an_app_host_killed_in_the_middle_of_a_rollout_fails_it_with_the_host_named():
    # app4 dies while app2 is being replaced. Its batch finds it unreachable: that counts as a failed host
    # (vmfleet_max_fail_percentage 0), the rollout stops, the report names app4, and the rc is not 0.
    # Once app4 is back, the same command completes the rollout.
    with probes() as running:
        proc = start_rolling("1.0.0", 1)
        seen = read_until(proc, lambda line: "Drain the server on every load balancer: catalog_blue/app2" in line,
                          300)
        kill_sent, killed = kill_host("app4")
        rest = proc.communicate(timeout=900)[0]
        out = flat("".join(seen) + rest)
        in_flight = {p.result()["mode"]: in_flight_at(p, kill_sent, killed) for p in running}
    print(f"rc {proc.returncode}")
    assert proc.returncode != 0, out[-3000:]
    assert re.search(r"app4\b.*unreachable", out), out[-3000:]
    for probe in running:
        failed = failed_records(probe)
        mode = probe.result()["mode"]
        assert [f for f in failed if f[0] > killed] == [], failed[:10]
        assert len(failed) <= in_flight[mode], failed
    assert deploy_lock("show") == ["catalog: free"]
    boot_host("app4")
    with probes() as running:
        rolling("1.0.0", 1)
    assert_no_failures(*running)
    assert_settled("1.0.0")


def test_a_rollback_that_fails_is_reported_and_leaves_the_host_out_of_rotation():
    # app1 gets a broken build (1.2.0-bad fails its health gate), and its rollback cannot work: the
    # image of the release it goes back to has lost its tag on app1, and app1 cannot reach the registry.
    # The report says the rollback failed, app1 stays out of rotation, and the rc is not 0. With the
    # registry back, the same version again completes the rollout.
    good = f"{REGISTRY}:5000/shop/catalog:1.0.0"
    block = f"iptables -I OUTPUT -p tcp -d {REGISTRY} --dport 5000 -j REJECT"
    pulled = adhoc("app1", "ansible.builtin.command", f"docker pull -q {REGISTRY}:5000/shop/catalog:1.2.0-bad")
    assert pulled["app1"].get("rc") == 0, pulled
    untag = adhoc("app1", "ansible.builtin.command", f"docker rmi -f {good}")
    assert untag["app1"].get("rc") == 0, untag
    assert adhoc("app1", "ansible.builtin.command", block)["app1"]["rc"] == 0
    try:
        with probes() as running:
            proc = rolling("1.2.0-bad", 1, check=False)
    finally:
        adhoc("app1", "ansible.builtin.command", block.replace("-I OUTPUT", "-D OUTPUT"))
    out = flat(proc.stdout)
    print(f"rc {proc.returncode}")
    assert proc.returncode != 0
    assert re.search(r"app1\b.*roll(ing)? ?back.*fail", out, re.IGNORECASE), out[-3000:]
    assert "out of rotation" in out, out[-3000:]
    assert_no_failures(*running)
    state = servers("catalog_blue")
    assert state["app1"]["admin_state"] in ("maint", "drain"), state
    assert {h: state[h]["admin_state"] for h in HOSTS if h != "app1"} == dict.fromkeys(HOSTS[1:], "ready")
    assert deploy_lock("show") == ["catalog: free"]
    with probes() as running:
        rolling("1.0.0", 1)
    assert_no_failures(*running)
    assert_settled("1.0.0")
