"""Test set-up shared by the unit tests.

The checkout is the collection root, so tests import it as
``ansible_collections.vmfleet.deploy`` through the link that the Makefile (and
this file) keeps at ``.cache/collections/ansible_collections/vmfleet/deploy``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_COLLECTIONS = ROOT / ".cache" / "collections"
_LINK = _COLLECTIONS / "ansible_collections" / "vmfleet" / "deploy"
if not _LINK.exists():
    _LINK.parent.mkdir(parents=True, exist_ok=True)
    _LINK.symlink_to("../../../..")
if str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))
# ansible_collections is a namespace package: let it span the link and the
# collections bundled with the `ansible` package (community.docker, ...).
import ansible_collections  # noqa: E402

if str(_COLLECTIONS / "ansible_collections") not in list(ansible_collections.__path__):
    ansible_collections.__path__.append(str(_COLLECTIONS / "ansible_collections"))


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch):
    """Test servers listen on 127.0.0.1: no proxy from the environment may stand in between."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
