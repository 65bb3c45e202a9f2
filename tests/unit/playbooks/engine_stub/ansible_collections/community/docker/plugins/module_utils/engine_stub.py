# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""A test-only stand-in for the Docker engine: tests/unit/playbooks/stubfleet.py.

Not part of the collection. The directory engine_stub/ is put first on
ANSIBLE_COLLECTIONS_PATH by the playbook tests, so that the community.docker
modules the service role calls are these stubs. Every host of the test
inventory is the local machine: its Python interpreter (a wrapper script)
exports VMFLEET_STUB_HOST (the inventory host) and VMFLEET_STUB_STATE (the
fleet's JSON state file), and the stubs keep each host's images and containers
there. The test scripts each host in the same file:

    {"script": {"app2": {"unhealthy": ["1.1.0"], "pull_fails": [], "start_fails": [], "exits": []}}}

  pull_fails   versions whose pull fails on that host
  start_fails  versions whose container fails to start (an engine error)
  exits        versions whose container starts and exits at once
  unhealthy    versions whose container runs, but whose HTTP health answers 503

Each change is appended to "calls", in order, for the tests to read.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import time

SCRIPT_KEYS = ("pull_fails", "start_fails", "exits", "unhealthy")


def host():
    return os.environ["VMFLEET_STUB_HOST"]


def state_path():
    return os.environ["VMFLEET_STUB_STATE"]


def load(path=None):
    with open(path or state_path()) as handle:
        return json.load(handle)


@contextlib.contextmanager
def transaction(path=None):
    """The state, locked against the other hosts' modules; written back (atomically) on success."""
    path = path or state_path()
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = load(path)
        yield state
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as handle:
            json.dump(state, handle, indent=1, sort_keys=True)
        os.replace(tmp, path)


def host_state(state, name=None):
    return state["hosts"].setdefault(name or host(), {"images": {}, "containers": {}})


def scripted(state, key, version, name=None):
    return version in state.get("script", {}).get(name or host(), {}).get(key, [])


def log(state, module, action, **details):
    entry = dict(host=host(), module=module, action=action, time=time.time())
    entry.update(details)
    state.setdefault("calls", []).append(entry)


def version_of(ref):
    """The tag or @digest of an image reference."""
    if "@" in ref:
        return "@" + ref.split("@", 1)[1]
    return ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"


def repository_of(ref):
    if "@" in ref:
        return ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return ref.rsplit(":", 1)[0] if ":" in last else ref


def image_id(ref):
    return "sha256:" + hashlib.sha256(("id " + ref).encode()).hexdigest()


def image(ref, created=None):
    digest = "sha256:" + hashlib.sha256(("digest " + ref).encode()).hexdigest()
    return {"Id": image_id(ref), "RepoTags": [ref], "RepoDigests": [repository_of(ref) + "@" + digest],
            "Created": created or time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())}


def inspect(name, container):
    """The part of `docker inspect` the service role reads."""
    return {
        "Id": hashlib.sha256(("%s %s %s" % (name, container["image_id"], container["started"])).encode()).hexdigest(),
        "Name": "/" + name,
        "Image": container["image_id"],
        "Config": {"Image": container["image"], "Healthcheck": None, "Labels": container.get("labels", {})},
        "State": {"Running": container["running"], "Status": "running" if container["running"] else "exited",
                  "ExitCode": 0 if container["running"] else 1},
    }
