# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Test-only stand-in for community.docker.docker_container (module_utils/engine_stub.py)."""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.community.docker.plugins.module_utils import engine_stub

# Options of the real module that the service role passes and that change nothing here.
IGNORED = ("comparisons", "restart_policy", "published_ports", "env", "read_only", "tmpfs", "security_opts",
           "cap_drop", "capabilities", "memory", "cpus", "log_driver", "log_options", "stop_timeout")


def main():
    spec = dict(name=dict(type="str", required=True), image=dict(type="str"), labels=dict(type="dict"),
                state=dict(type="str", default="started", choices=["started", "absent"]))
    spec.update((key, dict(type="raw")) for key in IGNORED)
    module = AnsibleModule(argument_spec=spec)
    name, ref = module.params["name"], module.params["image"]
    failure = None
    with engine_stub.transaction() as state:
        here = engine_stub.host_state(state)
        containers = here["containers"]
        if module.params["state"] == "absent":
            changed = containers.pop(name, None) is not None
            if changed:
                engine_stub.log(state, "docker_container", "removed", name=name)
            result = dict(changed=changed, container={})
        elif ref not in here["images"]:
            failure = "Cannot find image %s on this host (the stub pulls nothing by itself)" % ref
        else:
            version = engine_stub.version_of(ref)
            old = containers.get(name)
            wanted = here["images"][ref]["Id"]
            if old and old["image_id"] == wanted and old["running"]:
                result = dict(changed=False, container=engine_stub.inspect(name, old))
            elif engine_stub.scripted(state, "start_fails", version):
                engine_stub.log(state, "docker_container", "start_failed", name=name, version=version)
                failure = ("Error starting container %s: driver failed programming external connectivity on "
                           "endpoint %s: Bind for 0.0.0.0 failed: port is already allocated" % (name, name))
            else:
                containers[name] = {"image": ref, "image_id": wanted, "version": version,
                                    "running": not engine_stub.scripted(state, "exits", version),
                                    "healthy": not engine_stub.scripted(state, "unhealthy", version),
                                    "labels": module.params["labels"] or {}, "started": engine_stub.time.time()}
                engine_stub.log(state, "docker_container", "replaced", name=name, version=version,
                                before=(old or {}).get("version"))
                result = dict(changed=True, container=engine_stub.inspect(name, containers[name]))
    if failure:
        module.fail_json(msg=failure)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
