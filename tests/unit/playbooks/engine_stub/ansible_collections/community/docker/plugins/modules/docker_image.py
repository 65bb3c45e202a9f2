# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Test-only stand-in for community.docker.docker_image (module_utils/engine_stub.py)."""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.community.docker.plugins.module_utils import engine_stub


def main():
    module = AnsibleModule(argument_spec=dict(name=dict(type="str", required=True), source=dict(type="str"),
                                              state=dict(type="str", default="present", choices=["present", "absent"])))
    name = module.params["name"]
    with engine_stub.transaction() as state:
        images = engine_stub.host_state(state)["images"]
        if module.params["state"] == "absent":
            gone = [ref for ref, img in images.items() if name in (ref, img["Id"])]
            for ref in gone:
                del images[ref]
                engine_stub.log(state, "docker_image", "removed", image=ref)
            result = dict(changed=bool(gone))
        else:
            version = engine_stub.version_of(name)
            if engine_stub.scripted(state, "pull_fails", version):
                engine_stub.log(state, "docker_image", "pull_failed", image=name, version=version)
                failure = "Error pulling image %s - 404 Client Error: manifest for %s not found: manifest unknown" % (
                    name, name)
            else:
                failure = None
                changed = name not in images
                if changed:
                    images[name] = engine_stub.image(name)
                    engine_stub.log(state, "docker_image", "pulled", image=name, version=version)
                result = dict(changed=changed, image=images[name])
    if failure:
        module.fail_json(msg=failure)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
