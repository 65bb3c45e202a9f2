from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmfleet.deploy.plugins.filter.without_secrets import without_secrets


def test_entries_lose_secret_env_and_keep_the_rest():
    services = [{"name": "catalog", "env": {"A": "1"}, "secret_env": {"TOKEN": "s3cret"}}, {"name": "cart"}]
    assert without_secrets(services) == [{"name": "catalog", "env": {"A": "1"}}, {"name": "cart"}]
    assert services[0]["secret_env"] == {"TOKEN": "s3cret"}  # the input is not changed


def test_a_generator_such_as_selectattr_gives():
    entries = ({"name": n, "secret_env": {}} for n in ("a", "b"))
    assert without_secrets(entries) == [{"name": "a"}, {"name": "b"}]


def test_one_entry():
    assert without_secrets({"name": "catalog", "secret_env": {"T": "x"}}) == {"name": "catalog"}


@pytest.mark.parametrize("bad", ["catalog", 3, ["catalog"]])
def test_anything_else_is_refused(bad):
    with pytest.raises(AnsibleFilterError, match="without_secrets wants"):
        without_secrets(bad)
