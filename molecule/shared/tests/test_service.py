"""Verify a Molecule scenario: the engine, catalog 1.0.0 (pulled) and cart
1.0.0 (loaded from an archive) in blue, and their ledgers.

Runs with testinfra over the scenario's Ansible inventory (SSH to the lab's
bare app hosts). Each host's container_engine_runtime (inventory host_vars)
says which engine it runs: app1 Docker, app2 Podman.
"""

import json

import pytest

ENGINES = {"docker", "podman"}
# service -> (blue slot port, where its image came from)
SERVICES = {"catalog": (8101, "pull"), "cart": (8111, "archive")}
# Capabilities the role adds back after `cap_drop: ALL` (roles/service/tasks/run-docker.yml
# and run-podman.yml): service_spec.cap_add, else service_cap_add, whose default is [].
# Neither service of the scenario sets cap_add, so none.
CAP_ADD: list[str] = []
# The capability sets of a process, as /proc/<pid>/status prints them.
CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def runtime(host) -> str:
    """The engine the inventory gives the host (the role's default is docker)."""
    engine = host.ansible.get_variables().get("container_engine_runtime", "docker")
    assert engine in ENGINES, engine
    return engine


def inspect(host, service):
    cmd = host.run(f"{runtime(host)} container inspect {service}-blue")
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)[0]


def test_engine_is_active(host):
    if runtime(host) == "docker":
        docker = host.service("docker")
        assert docker.is_running
        assert docker.is_enabled
        daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
        assert daemon["live-restore"] is True
        assert daemon["userland-proxy"] is False
        assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    else:
        info = host.run("podman info --format json")
        assert info.rc == 0, info.stderr
        store = json.loads(info.stdout)["store"]
        assert store["graphDriverName"] == "overlay"
        assert "fuse-overlayfs" not in json.dumps(store["graphOptions"])


@pytest.mark.parametrize("service", SERVICES)
def test_container_is_running_and_healthy(host, service):
    state = inspect(host, service)["State"]
    assert state["Running"] is True
    health = state.get("Health") or state.get("Healthcheck")
    assert health["Status"] == "healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_podman_container_runs_under_an_enabled_systemd_unit(host, service):
    if runtime(host) != "podman":
        pytest.skip("Docker restarts containers itself")
    unit = host.service(f"container-{service}-blue")
    assert unit.is_running
    assert unit.is_enabled


@pytest.mark.parametrize("service", SERVICES)
def test_container_is_hardened(host, service):
    config = inspect(host, service)
    hostconfig = config["HostConfig"]
    assert hostconfig["ReadonlyRootfs"] is True
    assert any("no-new-privileges" in opt for opt in hostconfig["SecurityOpt"] or [])
    assert hostconfig["Memory"] > 0
    assert config["Config"]["Labels"]["io.vmfleet.service"] == service


def cap_names(caps):
    """Capability names as the engines print them ("CAP_NET_RAW", "net_raw", null), normalised."""
    return sorted(c.upper().removeprefix("CAP_") for c in caps or [])


@pytest.mark.parametrize("service", SERVICES)
def test_container_drops_every_capability_and_adds_only_cap_add(host, service):
    config = inspect(host, service)
    # The effective result, the same for both engines: the container's main
    # process holds no capability and can gain none (its bounding set is empty).
    assert not CAP_ADD, "the masks expected below assume that no capability is added"
    status = host.file(f"/proc/{config['State']['Pid']}/status").content_string
    caps = {name: mask.strip() for name, mask in (line.split(":", 1) for line in status.splitlines() if ":" in line)}
    caps = {name: caps[name] for name in CAP_SETS}
    assert {name: int(mask, 16) for name, mask in caps.items()} == dict.fromkeys(CAP_SETS, 0), caps
    # The options as each engine reports them.
    hostconfig = config["HostConfig"]
    assert cap_names(hostconfig["CapAdd"]) == CAP_ADD
    if runtime(host) == "docker":
        # Docker shows the options as given.
        assert cap_names(hostconfig["CapDrop"]) == ["ALL"]
    else:
        # Podman lists, as CapDrop, the capabilities of its default set that the
        # container lacks, and shows the resulting sets itself.
        assert cap_names(config["EffectiveCaps"]) == CAP_ADD
        assert cap_names(config["BoundingCaps"]) == CAP_ADD


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("path", ["/healthz", "/"])
def test_slot_port_answers_with_the_version(host, service, path):
    answer = host.run(f"curl -fsS --max-time 5 http://127.0.0.1:{SERVICES[service][0]}{path}")
    assert answer.rc == 0, answer.stderr
    body = json.loads(answer.stdout)
    assert body["version"] == "1.0.0"
    if path == "/":
        assert body["service"] == service
        assert body["host"] == host.backend.get_hostname()


@pytest.mark.parametrize("service", SERVICES)
def test_ledger_records_the_release(host, service):
    ledger_file = host.file(f"/var/lib/vmfleet/{service}/ledger.json")
    assert ledger_file.exists
    ledger = json.loads(ledger_file.content_string)
    current = ledger["current"]
    assert ledger["service"] == service
    assert ledger["slot"] == "blue"
    assert current["version"] == "1.0.0"
    assert current["slot"] == "blue"
    assert current["image"].endswith(f"/shop/{service}:1.0.0")
    assert current["digest"].startswith("sha256:")
    assert current["deploy_id"]
    assert current["deployed_at"].endswith("Z")
    assert ledger["previous"] is None
    # The recorded image is the one the container runs.
    image_id = inspect(host, service)["Image"]
    assert image_id.removeprefix("sha256:") == current["image_id"].removeprefix("sha256:")
    if SERVICES[service][1] == "pull":
        # A pulled image is recorded by its registry digest, not its local id.
        assert current["digest"] != current["image_id"]


def test_archive_was_copied_to_the_host(host):
    assert host.file("/var/lib/vmfleet/images/cart-1.0.0.tar").exists
