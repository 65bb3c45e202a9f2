"""The haproxy role (`vmfleet.deploy.haproxy`, playbooks/loadbalancers.yml) on a lab of its own.

The smoke tests' lab (conftest.smoke_lab, 2 app hosts; test_lab.py checks it next
and removes it) runs real HTTP backends without a container engine: the shop app
under ``systemd-run``, for two services in both slots (blue 1.0.0, green 1.1.0),
8 servers in all. The tests run in file order.

What is checked: HTTPS verified with the lab CA; a second run changes nothing,
also with the certificate and key given as content instead of as files;
the split map holds 0 for every service, and a split of 100 set with
vmfleet.deploy.haproxy_map sends every request (new connections and keep-alive)
to the idle slot's servers; the runtime socket is root only; a configuration
change reloads (the master stays) with no failed request under two load probes;
a flip and server states set through the runtime socket survive a re-run of the
role and reloads; the active map and the split set with haproxy_map survive
`systemctl reload`, `systemctl restart` and a re-run of the role (changed=0);
bad input fails before any change with a message that names the variable.
"""

from __future__ import annotations

import base64
import http.client
import json
import shlex
import ssl
import time

import pytest
import yaml

from .conftest import (
    ROOT,
    SMOKE_LAB,
    changed_tasks,
    failure_messages,
    lab_shell,
    run_json,
)
from .loadprobe import LoadProbe, format_summary

pytestmark = pytest.mark.lab

SUBNET_PREFIX = SMOKE_LAB["subnet_prefix"]
LB = f"{SUBNET_PREFIX}.10"
APP_HOSTS = SMOKE_LAB["app_hosts"]
SOCKET = "/run/haproxy/admin.sock"
MASTER_SOCKET = "/run/haproxy-master.sock"
MAP = "/etc/haproxy/maps/vmfleet-active.map"
SPLIT_MAP = "/etc/haproxy/maps/vmfleet-split.map"
STICKY_MAP = "/etc/haproxy/maps/vmfleet-sticky.map"
VERSIONS = {"blue": "1.0.0", "green": "1.1.0"}
SERVICES = [
    {
        "name": "catalog",
        "image": "registry.invalid/shop/catalog",  # read by other roles, ignored by this one
        "version": "1.0.0",
        "port": 8080,
        "ports": {"blue": 8101, "green": 8102},
        "frontend_port": 8001,
        "preview_port": 9001,
        "health": {"path": "/healthz", "status_code": [200], "json_query": "status == 'ok'"},
    },
    {
        "name": "cart",
        "image": "registry.invalid/shop/cart",
        "version": "1.0.0",
        "port": 8080,
        "ports": {"blue": 8111, "green": 8112},
        "frontend_port": 8002,
        "health": {"path": "/healthz", "status_code": [200]},
    },
]
# HAProxy's srv_admin_state bits (show servers state).
ADMIN_FMAINT, ADMIN_FDRAIN = 0x01, 0x08
# Load probes: bounded in threads, time, requests and rate.
PROBE = {"threads": 4, "seconds": 180, "max_requests": 40000, "rate": 200}


@pytest.fixture(scope="module")
def lab(smoke_lab, tmp_path_factory):
    info = dict(smoke_lab)
    info["ca"] = info["state"] / "pki" / "ca.crt"
    info["services_file"] = tmp_path_factory.mktemp("hap") / "services.yml"
    info["services_file"].write_text(yaml.safe_dump({"vmfleet_services": SERVICES}))
    start_backends(info)
    return info


def start_backends(lab: dict) -> None:
    """Run the shop app on every app host, one transient unit per service and slot."""
    inventory = lab["inventory"]
    run_json(["ansible", "-i", str(inventory), "app_hosts", "-m", "ansible.builtin.file",
              "-a", "path=/opt/shop state=directory mode=0755"])
    run_json(["ansible", "-i", str(inventory), "app_hosts", "-m", "ansible.builtin.copy",
              "-a", f"src={ROOT / 'examples/shop/app/shop.py'} dest=/opt/shop/shop.py mode=0755"])
    units = []
    for svc in SERVICES:
        for slot, version in VERSIONS.items():
            units.append(
                f"systemd-run --unit shop-{svc['name']}-{slot} -E PORT={svc['ports'][slot]}"
                f" -E SERVICE_NAME={svc['name']} -E VERSION={version} -E HOST_NAME={{{{ inventory_hostname }}}}"
                " -E ACCESS_LOG=0 /usr/bin/python3 /opt/shop/shop.py"
            )
    lab_shell(inventory, "app_hosts", " && ".join(units))
    ports = " ".join(str(svc["ports"][slot]) for svc in SERVICES for slot in VERSIONS)
    # Every backend answers its health check before the load balancer is set up.
    lab_shell(
        inventory, "app_hosts",
        f"for p in {ports}; do for i in $(seq 50); do curl -sf localhost:$p/healthz >/dev/null && break; sleep 0.1;"
        " done; curl -sf localhost:$p/healthz >/dev/null || exit 1; done",
    )


def changed(result: dict) -> set[str]:
    """Names of the tasks and handlers that changed the load balancer, without the role prefix."""
    return {name.split(" : ", 1)[-1] for name in changed_tasks(result, "lb1")}


def converge(lab: dict, *extra: str, check: bool = True) -> dict:
    """Run playbooks/loadbalancers.yml on the lab with the test's services (and extra -e arguments)."""
    argv = ["ansible-playbook", "-i", str(lab["inventory"]), "playbooks/loadbalancers.yml",
            "-e", f"@{lab['services_file']}"]
    for item in extra:
        argv += ["-e", item]
    return run_json(argv, check=check)


def lb(lab: dict, command: str) -> str:
    """stdout of a shell command on the load balancer."""
    return lab_shell(lab["inventory"], "lb1", command)["lb1"]["stdout"]


def runtime(lab: dict, *commands: str, socket: str = SOCKET) -> str:
    """Send commands to HAProxy's runtime API (the way the strategies do: through the admin socket)."""
    return lb(lab, "; ".join(f"echo {shlex.quote(c)} | socat -t 5 STDIO UNIX-CONNECT:{socket}" for c in commands))


def processes(lab: dict) -> dict:
    """Master PID, its reload count, and the current worker PID, from the master CLI."""
    lines = runtime(lab, "show proc", socket=MASTER_SOCKET).splitlines()
    master = next(line.split() for line in lines if " master " in f" {line} ")
    worker = next(line.split() for line in lines if " worker " in f" {line} ")
    return {"master": int(master[0]), "reloads": int(master[2]), "worker": int(worker[0])}


def server_states(lab: dict) -> dict[str, dict]:
    """``show servers state`` as {"backend/server": {op, admin, weight}}."""
    states = {}
    for line in runtime(lab, "show servers state").splitlines():
        fields = line.split()
        if len(fields) > 8 and not line.startswith("#"):
            op, admin, weight = (int(value) for value in fields[5:8])
            states[f"{fields[1]}/{fields[3]}"] = {"op": op, "admin": admin, "weight": weight}
    return states


def wait_until_up(lab: dict, timeout: float = 30) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        states = server_states(lab)
        if len(states) == 2 * len(SERVICES) * APP_HOSTS and all(s["op"] == 2 for s in states.values()):
            return states
        if time.monotonic() > deadline:
            pytest.fail(f"not every server is UP after {timeout} s: {states}")
        time.sleep(1)


def https_get(lab: dict, port: int, context: ssl.SSLContext | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPSConnection(LB, port, timeout=10, context=context or ssl.create_default_context(
        cafile=str(lab["ca"])))
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def versions_served(lab: dict, port: int, requests: int = 8) -> set[str]:
    return {https_get(lab, port)[1]["version"] for _request in range(requests)}


def keepalive_answers(lab: dict, port: int, requests: int = 8) -> list[dict]:
    """The JSON bodies of ``requests`` requests sent over one keep-alive HTTPS connection."""
    conn = http.client.HTTPSConnection(LB, port, timeout=10, context=ssl.create_default_context(
        cafile=str(lab["ca"])))
    answers = []
    try:
        for _request in range(requests):
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200 and not response.will_close
            answers.append(json.loads(response.read()))
    finally:
        conn.close()
    return answers


def lb_module(lab: dict, module: str, args: dict, check: bool = True) -> dict:
    """Run a module on the load balancer (ad hoc, as root) and return its result."""
    result = run_json(["ansible", "-i", str(lab["inventory"]), "lb1", "-m", module, "-a", json.dumps(args)],
                      check=check)
    return result["plays"][0]["tasks"][0]["hosts"]["lb1"]


def live_and_files(lab: dict) -> tuple[dict, dict]:
    """Both maps, live and from their files, as vmfleet.deploy.haproxy_map_info reads them."""
    info = lb_module(lab, "vmfleet.deploy.haproxy_map_info", {"maps": [MAP, SPLIT_MAP]})
    return (info["maps"][MAP], info["maps"][SPLIT_MAP]), (info["files"][MAP], info["files"][SPLIT_MAP])


@pytest.fixture(scope="module")
def converged(lab):
    start = time.monotonic()
    result = converge(lab)
    result["seconds"] = time.monotonic() - start
    return result


# ---------------------------------------------------------------------------- tests


def test_first_run_configures_the_load_balancer(lab, converged):
    stats = converged["stats"]["lb1"]
    assert stats["failures"] == 0 and stats["unreachable"] == 0
    assert stats["changed"] > 0
    print(f"\nlab created in {lab['create_seconds']:.1f} s; first converge {converged['seconds']:.1f} s, "
          f"changed={stats['changed']}")
    states = wait_until_up(lab)
    assert sorted(states) == sorted(
        f"{svc['name']}_{slot}/app{i}" for svc in SERVICES for slot in VERSIONS for i in range(1, APP_HOSTS + 1)
    )
    assert {state["weight"] for state in states.values()} == {100}
    entries = dict(line.split() for line in lb(lab, f"grep -v '^#' {MAP}").splitlines())
    assert entries == {"catalog": "catalog_blue", "cart": "cart_blue"}
    # The split map: nothing goes to the idle slot.
    assert lb(lab, f"stat -c '%a %U' {SPLIT_MAP}") == "644 root"
    splits = dict(line.split() for line in lb(lab, f"grep -v '^#' {SPLIT_MAP}").splitlines())
    assert splits == {"catalog": "0", "cart": "0"}
    assert "catalog 0" in runtime(lab, f"show map {SPLIT_MAP}")
    # The sticky map: no canary keeps clients anywhere.
    sticky = dict(line.split() for line in lb(lab, f"grep -v '^#' {STICKY_MAP}").splitlines())
    assert sticky == {"catalog": "0", "cart": "0"}


def test_frontends_answer_https_verified_with_the_lab_ca(lab, converged):
    for svc in SERVICES:
        status, body = https_get(lab, svc["frontend_port"])
        assert status == 200
        assert body["service"] == svc["name"]
        assert body["version"] == VERSIONS["blue"]  # a new service starts on blue
    # Round robin over both app hosts.
    hosts = {https_get(lab, 8001)[1]["host"] for _request in range(6)}
    assert hosts == {"app1", "app2"}
    # The system's trust store does not know the lab CA.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(lab, 8001, ssl.create_default_context())
    # The preview frontend (loopback of the LB, plain HTTP) serves the idle slot.
    preview = json.loads(lb(lab, "curl -sf http://127.0.0.1:9001/"))
    assert preview["version"] == VERSIONS["green"]


def test_second_run_reports_no_change(lab, converged):
    second = converge(lab)
    assert second["stats"]["lb1"]["failures"] == 0
    assert second["stats"]["lb1"]["changed"] == 0, f"second run changed: {changed_tasks(second, 'lb1')}"


def test_certificate_and_key_as_content_write_the_same_pem(lab, converged, tmp_path):
    """The lab's certificate and key given as content (haproxy_tls_cert/_key, the files cleared) instead of as files:
    the same PEM on the load balancer, so nothing changes; the key is in no result."""
    pki = lab["state"] / "pki"
    key = (pki / "lb.key").read_text()
    content = tmp_path / "tls-content.yml"
    content.write_text(yaml.safe_dump({
        "haproxy_tls_cert_file": "", "haproxy_tls_key_file": "",
        "haproxy_tls_cert": (pki / "lb.crt").read_text(), "haproxy_tls_key": key,
    }))
    result = converge(lab, f"@{content}")
    stats = result["stats"]["lb1"]
    assert stats["failures"] == 0
    assert stats["changed"] == 0, f"content gave another PEM or config: {changed_tasks(result, 'lb1')}"
    secret = next(line for line in key.splitlines() if not line.startswith("-----"))
    assert secret not in json.dumps(result), "the private key is in the play's output"
    assert https_get(lab, 8001)[0] == 200


def test_split_sends_requests_to_the_idle_slot(lab, converged):
    result = lb_module(lab, "vmfleet.deploy.haproxy_map", {"map": SPLIT_MAP, "key": "catalog", "value": "100"})
    assert result["changed"] is True
    assert result["before"] == {"runtime": "0", "file": "0"} and result["after"] == {"runtime": "100", "file": "100"}
    try:
        # catalog's active slot is blue: every request goes to the idle green slot, on both hosts.
        answers = [https_get(lab, 8001)[1] for _request in range(8)]
        assert {a["version"] for a in answers} == {VERSIONS["green"]}
        assert {a["host"] for a in answers} == {"app1", "app2"}
        # Keep-alive clients too: the choice is made per request.
        assert {a["version"] for a in keepalive_answers(lab, 8001)} == {VERSIONS["green"]}
        # The other service keeps its split of 0.
        assert versions_served(lab, 8002) == {VERSIONS["blue"]}
        live, files = live_and_files(lab)
        assert live == files == ({"catalog": "catalog_blue", "cart": "cart_blue"}, {"catalog": "100", "cart": "0"})
    finally:
        back = lb_module(lab, "vmfleet.deploy.haproxy_map", {"map": SPLIT_MAP, "key": "catalog", "value": "0"})
    assert back["changed"] is True
    assert versions_served(lab, 8001) == {VERSIONS["blue"]}
    assert {a["version"] for a in keepalive_answers(lab, 8001)} == {VERSIONS["blue"]}
    # The file is as the role wrote it: a re-run has nothing to do.
    assert dict(line.split() for line in lb(lab, f"grep -v '^#' {SPLIT_MAP}").splitlines()) == {
        "catalog": "0", "cart": "0"}


def test_runtime_socket_and_certificate_are_root_only(lab, converged):
    assert lb(lab, f"stat -c '%a %U %G %F' {SOCKET}") == "600 root root socket"
    assert lb(lab, "stat -c '%a %U %G' /etc/haproxy/certs/vmfleet.pem") == "600 root root"
    # level admin: the socket accepts commands that change state.
    assert "Unknown command" not in runtime(lab, "show map")
    # master-worker: one master and one current worker.
    assert processes(lab)["master"] > 0


def test_config_change_reloads_with_no_failed_request(lab, converged):
    before = processes(lab)
    url = f"https://{LB}:8001/"
    probes = [
        LoadProbe(url, keepalive=False, cafile=str(lab["ca"]), **PROBE),
        LoadProbe(url, keepalive=True, cafile=str(lab["ca"]), **PROBE),
    ]
    for probe in probes:
        probe.start()
    time.sleep(3)
    runs = []
    try:
        # Two configuration changes (a timeout, then back), each one reload.
        for value in ("31s", "30s"):
            result = converge(lab, f"haproxy_timeout_client={value}")
            runs.append(changed(result))
            time.sleep(3)
    finally:
        summaries = [probe.result() for probe in probes]
    after = processes(lab)
    for summary in summaries:
        print("\n" + format_summary(summary))
    print(f"reloads: {after['reloads'] - before['reloads']}, master {before['master']} -> {after['master']}, "
          f"worker {before['worker']} -> {after['worker']}")
    for tasks in runs:
        assert "Write the HAProxy configuration (checked with haproxy -c first)" in tasks
        assert "Reload HAProxy" in tasks
    assert after["master"] == before["master"], "HAProxy was restarted, not reloaded"
    assert after["worker"] != before["worker"]
    assert after["reloads"] - before["reloads"] == 2
    for summary in summaries:
        assert summary["failed"] == 0, summary["errors"]
        assert summary["rps"] >= 50, summary
        assert summary["versions"] == {VERSIONS["blue"]: summary["ok"]}
    # Keep-alive clients were moved to the new worker (idle-close-on-response), not dropped.
    assert summaries[1]["connections"] > PROBE["threads"]


def test_flip_and_server_states_survive_a_rerun_and_reloads(lab, converged):
    # A blue-green flip the way the strategies do it: runtime `set map`, then the same line in the file.
    runtime(lab, f"set map {MAP} catalog catalog_green")
    lb(lab, f"sed -i 's/^catalog .*/catalog catalog_green/' {MAP}")
    runtime(
        lab,
        "set server catalog_blue/app1 state maint",
        "set server cart_blue/app1 state drain",
        "set weight catalog_green/app2 25",
    )
    assert versions_served(lab, 8001) == {VERSIONS["green"]}
    expected = server_states(lab)
    assert expected["catalog_blue/app1"]["admin"] & ADMIN_FMAINT
    assert expected["cart_blue/app1"]["admin"] & ADMIN_FDRAIN
    assert expected["catalog_green/app2"]["weight"] == 25
    before = processes(lab)

    # A re-run of the role with a configuration change: it reloads.
    rerun = converge(lab, "haproxy_timeout_client=33s")
    tasks = changed(rerun)
    assert "Reload HAProxy" in tasks
    assert "Add the services missing from the active-backend map" not in tasks
    after_rerun = processes(lab)
    assert after_rerun["worker"] != before["worker"] and after_rerun["master"] == before["master"]

    # A reload by hand goes through the same hooks.
    lb(lab, "systemctl reload haproxy")
    after_manual = processes(lab)
    assert after_manual["worker"] != after_rerun["worker"] and after_manual["master"] == before["master"]

    # And the role's defaults again (one more reload).
    back = converge(lab)
    assert "Reload HAProxy" in changed(back)

    # After two re-runs of the role and three reloads: the same admin states and weights.
    states = server_states(lab)
    assert {name: (s["admin"], s["weight"]) for name, s in states.items()} == {
        name: (s["admin"], s["weight"]) for name, s in expected.items()
    }
    assert "catalog catalog_green" in runtime(lab, f"show map {MAP}")
    assert "catalog catalog_green" in lb(lab, f"cat {MAP}").splitlines()
    assert versions_served(lab, 8001) == {VERSIONS["green"]}
    assert versions_served(lab, 8002) == {VERSIONS["blue"]}
    # The preview follows the flip: it now serves the idle blue slot.
    assert json.loads(lb(lab, "curl -sf http://127.0.0.1:9001/"))["version"] == VERSIONS["blue"]


def test_active_map_and_split_survive_reload_restart_and_rerun(lab, converged):
    # catalog: green is live (as the flip above left it) and the whole split goes to the idle blue
    # slot, so it answers 1.0.0 only while both maps hold; cart: 30% to its idle slot.
    cutover = lb_module(lab, "vmfleet.deploy.haproxy_map", {"entries": [
        {"map": MAP, "key": "catalog", "value": "catalog_green"},
        {"map": SPLIT_MAP, "key": "catalog", "value": "100"},
        {"map": SPLIT_MAP, "key": "cart", "value": "30"},
    ]})
    assert cutover["changed"] is True
    assert [r["runtime_changed"] for r in cutover["results"]] == [False, True, True]
    expected = ({"catalog": "catalog_green", "cart": "cart_blue"}, {"catalog": "100", "cart": "30"})

    def check(when: str) -> None:
        live, files = live_and_files(lab)
        assert live == expected, f"{when}: live maps {live}"
        assert files == expected, f"{when}: map files {files}"
        assert versions_served(lab, 8001) == {VERSIONS["blue"]}, when
        assert {a["version"] for a in keepalive_answers(lab, 8001)} == {VERSIONS["blue"]}, when

    try:
        check("after haproxy_map")
        before = processes(lab)
        lb(lab, "systemctl reload haproxy")
        reloaded = processes(lab)
        assert reloaded["master"] == before["master"] and reloaded["worker"] != before["worker"]
        check("after systemctl reload haproxy")

        lb(lab, "systemctl restart haproxy")
        deadline = time.monotonic() + 30
        while True:
            try:
                https_get(lab, 8001)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        assert processes(lab)["master"] != before["master"], "HAProxy was not restarted"
        check("after systemctl restart haproxy")

        rerun = converge(lab)
        assert rerun["stats"]["lb1"]["changed"] == 0, f"the re-run changed: {changed_tasks(rerun, 'lb1')}"
        check("after a re-run of the role")
    finally:
        lb_module(lab, "vmfleet.deploy.haproxy_map", {"entries": [
            {"map": SPLIT_MAP, "key": "catalog", "value": "0"},
            {"map": SPLIT_MAP, "key": "cart", "value": "0"},
        ]})


@pytest.mark.parametrize(("path", "line", "words"), [
    (SPLIT_MAP, "catalog 150", ["not a percentage", "150"]),
    (STICKY_MAP, "catalog yes", ["not 0 or 1", "yes"]),
])
def test_a_bad_map_entry_fails_before_any_change(lab, converged, path, line, words):
    """The role never rewrites the strategies' entries: a bad one is named, and nothing changes."""
    good = lb(lab, f"cat {path}")
    lb(lab, f"sed -i 's/^catalog .*/{line}/' {path}")
    try:
        fingerprint = f"sha256sum /etc/haproxy/haproxy.cfg {MAP} {SPLIT_MAP} {STICKY_MAP}"
        before = (lb(lab, fingerprint), processes(lab)["worker"])
        result = converge(lab, check=False)
        assert result["rc"] != 0
        messages = "\n".join(failure_messages(result, "lb1"))
        for word in [path, *words]:
            assert word in messages, f"{word!r} not in {messages}"
        assert (lb(lab, fingerprint), processes(lab)["worker"]) == before, "something changed"
    finally:
        lb(lab, f"echo {base64.b64encode((good + chr(10)).encode()).decode()} | base64 -d > {path}")
    assert lb(lab, f"cat {path}") == good


@pytest.mark.parametrize(
    ("case", "bad", "words"),
    [
        ("service without ports",
         {"vmfleet_services": [{"name": "catalog", "frontend_port": 8001}]},
         ["ports", "haproxy_services"]),
        ("non-integer frontend_port",
         {"vmfleet_services": [{"name": "catalog", "frontend_port": "eighty", "ports": {"blue": 8101, "green": 8102}}]},
         ["frontend_port", "haproxy_services"]),
        ("port out of range",
         {"vmfleet_services": [{"name": "catalog", "frontend_port": 8001, "ports": {"blue": 8101, "green": 70000}}]},
         ["ports.green", "haproxy_services"]),
        ("group not in the inventory",
         {"vmfleet_services": [{**SERVICES[1], "group": "no_such_group"}]},
         ["group", "no_such_group"]),
        ("certificate without key", {"haproxy_tls_key_file": ""}, ["haproxy_tls_key_file"]),
        ("bad time value", {"haproxy_timeout_client": "30 seconds"}, ["haproxy_timeout_client"]),
    ],
)
def test_bad_input_fails_before_any_change(lab, converged, tmp_path, case, bad, words):
    fingerprint = f"sha256sum /etc/haproxy/haproxy.cfg {MAP} {SPLIT_MAP}"
    before = (lb(lab, fingerprint), processes(lab)["worker"])
    bad_file = tmp_path / "bad.yml"
    bad_file.write_text(yaml.safe_dump(bad))
    result = converge(lab, f"@{bad_file}", check=False)
    assert result["rc"] != 0, case
    stats = result["stats"]["lb1"]
    assert stats["failures"] == 1 and stats["changed"] == 0, case
    messages = "\n".join(failure_messages(result, "lb1"))
    for word in words:
        assert word in messages, f"{case}: {word!r} not in {messages}"
    assert (lb(lab, fingerprint), processes(lab)["worker"]) == before, f"{case}: something changed"
    print(f"\n{case}: {messages}")
