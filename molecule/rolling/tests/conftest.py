"""Fixtures of the rolling scenario's verify: an AWX-style private data dir for jobs run through ansible-runner."""

from __future__ import annotations

import secrets

import pytest
import yaml

# tests/integration is on sys.path through pyproject.toml's pytest `pythonpath`.
from awxjob import make_private_data_dir
from fleet import INVENTORY

# A secret in catalog's environment (secret_env), as a vaulted variable or an AWX credential would give it.
SECRET = "vmfleet-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def awx_job_dir(tmp_path_factory):
    """The private data dir AWX would hand ansible-runner (tests/integration/awxjob.py), on the fleet's
    inventory, where catalog has a secret_env. Jobs of every test share it, each with its own job id."""
    pdd = make_private_data_dir(tmp_path_factory.mktemp("awx-job"), INVENTORY)
    services = pdd / "inventory" / "group_vars" / "all" / "services.yml"
    spec = yaml.safe_load(services.read_text())
    spec["vmfleet_services"][0]["secret_env"] = {"SHOP_API_TOKEN": "{{ vmfleet_shop_api_token }}"}
    services.write_text(yaml.safe_dump(spec, sort_keys=False))
    (services.parent / "secrets.yml").write_text(yaml.safe_dump({"vmfleet_shop_api_token": SECRET}))
    return pdd
