"""Test-only stand-in for the `docker` command: only `docker inspect --format ... <container>`.

The strategies read a slot's container with `docker inspect` through ansible.builtin.command (rolling.yml's
check that a host already runs the target release, rollback.yml's read of the idle slot). A command is not a
module, so it cannot be shadowed by a collection: the fleet's interpreter wrapper puts a `docker` script that
runs this file first on the PATH of every module the test's hosts run. Anything else exits 2, so that a call
the stand-in does not know fails loudly and is never passed to a real engine.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "engine_stub", Path(__file__).parent / "ansible_collections/community/docker/plugins/module_utils/engine_stub.py")
engine_stub = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(engine_stub)


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "inspect" or argv[1] != "--format":
        print("docker stand-in: unsupported call %r" % (argv,), file=sys.stderr)
        return 2
    container = engine_stub.host_state(engine_stub.load())["containers"].get(argv[3])
    if container is None:
        print("Error: No such object: %s" % argv[3], file=sys.stderr)
        return 1
    data = engine_stub.inspect(argv[3], container)
    fields = {"{{.Image}}": data["Image"], "{{.State.Running}}": "true" if container["running"] else "false"}
    print(re.sub(r"\{\{[^}]*\}\}", lambda m: fields[m.group(0)], argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
