# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Test-only stand-in for community.docker.docker_host_info (module_utils/engine_stub.py)."""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.community.docker.plugins.module_utils import engine_stub


def main():
    module = AnsibleModule(argument_spec=dict(
        images_filters=dict(type="dict"), containers_filters=dict(type="dict"), images=dict(type="bool"),
        verbose_output=dict(type="bool"), containers=dict(type="bool"), containers_all=dict(type="bool")),
        supports_check_mode=True)
    here = engine_stub.host_state(engine_stub.load())
    repository = (module.params["images_filters"] or {}).get("reference")
    label = (module.params["containers_filters"] or {}).get("label", "")
    service = label.split("=", 1)[1] if label.startswith("io.vmfleet.service=") else None
    images = [img for ref, img in sorted(here["images"].items())
              if repository is None or engine_stub.repository_of(ref) == repository]
    containers = [{"Names": ["/" + name], "ImageID": c["image_id"]} for name, c in sorted(here["containers"].items())
                  if service is None or c.get("labels", {}).get("io.vmfleet.service") == service]
    module.exit_json(changed=False, images=images, containers=containers)


if __name__ == "__main__":
    main()
