"""Drive a module through its ``main()`` with arguments, as Ansible would, and
return the JSON it prints (``exit_json``) or fails with (``fail_json``)."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class ModuleResult(dict):
    @property
    def failed(self) -> bool:
        return bool(self.get("failed"))


@pytest.fixture
def run_module(monkeypatch, capsys):
    def run(module, args: dict, check_mode: bool = False, diff: bool = False) -> ModuleResult:
        payload = dict(args)
        payload["_ansible_check_mode"] = check_mode
        payload["_ansible_diff"] = diff
        payload.setdefault("_ansible_remote_tmp", "/tmp")
        payload.setdefault("_ansible_keep_remote_files", False)
        monkeypatch.setattr(basic, "_ANSIBLE_ARGS", to_bytes(json.dumps({"ANSIBLE_MODULE_ARGS": payload})))
        monkeypatch.setattr(basic, "_ANSIBLE_PROFILE", "legacy", raising=False)
        with pytest.raises(SystemExit):
            module.main()
        out = capsys.readouterr().out
        return ModuleResult(json.loads(out[out.index("{") :]))

    return run
