from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmfleet.deploy.plugins.filter.service_health import service_health


def test_defaults_fill_a_service_without_health():
    assert service_health({"name": "catalog"}) == {"path": "/healthz", "status_code": [200]}


def test_a_service_health_overrides_the_defaults_and_keeps_its_extras():
    entry = {"name": "catalog", "health": {"path": "/ready", "status_code": ["200", 204], "json_query": "ok"}}
    assert service_health(entry) == {"path": "/ready", "status_code": [200, 204], "json_query": "ok"}


def test_a_bare_health_dict_and_a_single_status_code():
    assert service_health({"path": "/up", "status_code": 204}) == {"path": "/up", "status_code": [204]}


def test_null_values_keep_the_defaults():
    assert service_health({"name": "x", "health": {"path": None}})["path"] == "/healthz"


@pytest.mark.parametrize("bad", [None, "catalog", {"name": "x", "health": {"status_code": ["ok"]}}])
def test_bad_input_is_a_clear_error(bad):
    with pytest.raises(AnsibleFilterError):
        service_health(bad)
