"""The traffic role's inputs: one description (the argument spec), kept in step with its defaults and the README."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "traffic"


def test_every_default_is_specified_with_the_same_value():
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert set(defaults) <= set(spec), set(defaults) - set(spec)
    for name, value in defaults.items():
        if isinstance(value, str) and "{{" in value:
            assert "default" not in spec[name], f"{name}: a templated default is documented in words, not as a value"
            continue
        assert spec[name].get("default") == value, (name, spec[name].get("default"), value)


def test_user_inputs_are_vmfleet_and_internal_values_are_dunder():
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    for name in spec["main"]["options"]:
        assert name in ("service", "version") or name.startswith("vmfleet_"), name
    internal = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert all(name.startswith("__vmfleet_") for name in internal), list(internal)
    for entry, body in spec.items():
        if entry != "main":
            assert all(name.startswith("traffic_") for name in body.get("options", {})), (entry, list(body["options"]))


def test_readme_table_matches_the_argument_spec():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "strategy_inputs.py"), "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
