from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmfleet.deploy.plugins.filter.batch_plan import batch_plan

HOSTS = ["app1", "app2", "app3", "app4"]


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (1, [["app1"], ["app2"], ["app3"], ["app4"]]),
        ("2", [["app1", "app2"], ["app3", "app4"]]),
        ("50%", [["app1", "app2"], ["app3", "app4"]]),
        ("10%", [["app1"], ["app2"], ["app3"], ["app4"]]),  # at least one host
        ("100%", [HOSTS]),
        (10, [HOSTS]),
        ([1, "25%", "100%"], [["app1"], ["app2"], ["app3", "app4"]]),
        ([1, 2], [["app1"], ["app2", "app3"], ["app4"]]),  # the last size repeats
    ],
)
def test_batches_match_serial(batch, expected):
    assert batch_plan(HOSTS, batch) == expected


def test_no_hosts_no_batches():
    assert batch_plan([], 2) == []


@pytest.mark.parametrize("batch", [0, -1, "0%", "150%", "abc", [], [1, [2]], True, {"a": 1}])
def test_bad_batch_is_refused_with_its_value(batch):
    with pytest.raises(AnsibleFilterError, match="batch"):
        batch_plan(HOSTS, batch)
