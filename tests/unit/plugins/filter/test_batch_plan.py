from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleFilterError
from ansible.executor.playbook_executor import PlaybookExecutor

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


@pytest.mark.parametrize("batch", ["33.3%", "12.5%", 2.5, "2.5", "1e2", "%", "-10%", " ", "50%%", ["1", "33.3%"]])
def test_what_serial_cannot_take_is_refused_before_any_change(batch):
    # "33.3%" is what a survey's text field gives; serial itself fails on it with
    # "invalid literal for int()" only after the plan was printed.
    with pytest.raises(AnsibleFilterError, match=r"batch.* got ") as refused:
        batch_plan(HOSTS, batch)
    assert repr(batch[-1] if isinstance(batch, list) else batch) in str(refused.value)


def serial_batches(hosts, serial):
    """The batches ansible-core's PlaybookExecutor runs for a play with this `serial` (its own code)."""
    executor = object.__new__(PlaybookExecutor)
    executor._inventory = SimpleNamespace(get_hosts=lambda pattern, order=None: list(hosts))
    play = SimpleNamespace(hosts="all", order=None, serial=serial if isinstance(serial, list) else [serial])
    return executor._get_serialized_batches(play)


SIZES = [1, 2, 3, 5, 7, 64, "1", "3", *(f"{p}%" for p in range(1, 101))]


@pytest.mark.parametrize("total", [1, 2, 3, 4, 7, 10, 16, 33, 50, 64, 100])
def test_every_size_gives_the_batches_of_serial(total):
    # 29% of 100 hosts is 28 for serial ((29 / 100.0) * 100 == 28.999...), not 29.
    hosts = [f"app{i}" for i in range(1, total + 1)]
    for size in SIZES:
        assert batch_plan(hosts, size) == serial_batches(hosts, size), (total, size)


def test_every_list_of_sizes_gives_the_batches_of_serial():
    rng = random.Random(20261129)
    for _case in range(3000):
        hosts = [f"h{i}" for i in range(rng.randint(0, 80))]
        batch = [rng.choice([rng.randint(1, 90), f"{rng.randint(1, 100)}%"]) for _size in range(rng.randint(1, 4))]
        assert batch_plan(hosts, batch) == serial_batches(hosts, batch), (len(hosts), batch)
