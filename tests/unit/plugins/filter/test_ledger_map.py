from __future__ import annotations

import base64
import json

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmfleet.deploy.plugins.filter.ledger_map import ledger_map


def slurped(service, ledger=None, raw=None):
    if ledger is None and raw is None:
        return {"item": service, "failed": False, "msg": "file not found"}
    data = raw if raw is not None else json.dumps(ledger).encode()
    return {"item": service, "content": base64.b64encode(data).decode(), "encoding": "base64"}


def test_current_release_per_service_and_none_without_ledger():
    current = {"version": "1.1.0", "slot": "blue", "image_id": "sha256:abc"}
    result = ledger_map([slurped("catalog", {"current": current, "previous": None}), slurped("cart")])
    assert result == {"catalog": current, "cart": None}


def test_broken_ledger_is_a_clear_error():
    with pytest.raises(AnsibleFilterError, match="ledger of catalog is not valid JSON"):
        ledger_map([slurped("catalog", raw=b"{not json")])


def test_results_without_item_are_refused():
    with pytest.raises(AnsibleFilterError, match="looped over service names"):
        ledger_map([{"content": ""}])
