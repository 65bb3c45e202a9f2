# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Test-only stand-in for community.docker.docker_container_info (module_utils/engine_stub.py)."""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.community.docker.plugins.module_utils import engine_stub


def main():
    module = AnsibleModule(argument_spec=dict(name=dict(type="str", required=True)), supports_check_mode=True)
    container = engine_stub.host_state(engine_stub.load())["containers"].get(module.params["name"])
    module.exit_json(changed=False, exists=container is not None,
                     container=engine_stub.inspect(module.params["name"], container) if container else None)


if __name__ == "__main__":
    main()
