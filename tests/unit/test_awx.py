"""AWX configuration as code (awx/): the surveys against the playbooks' documented inputs, configure.yml's job
templates and workflow, and the canary ramp as a survey gives it (one string)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vmfleet.deploy.plugins.filter.canary import canary_steps

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def ansible_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1", **extra}

# ------------------------------------------------------------------ the canary ramp as text (a survey's answer)


@pytest.mark.parametrize(("text", "steps"), [
    ("10:60,50:60", [{"weight": 10, "pause": 60}, {"weight": 50, "pause": 60}]),
    (" 5 : 30 , 25:30.5, 100 ",
     [{"weight": 5, "pause": 30}, {"weight": 25, "pause": 30.5}, {"weight": 100, "pause": 0}]),
    ("10,50", [{"weight": 10, "pause": 0}, {"weight": 50, "pause": 0}]),
    ("100", [{"weight": 100, "pause": 0}]),
])
def test_canary_steps_take_weight_pause_items_separated_by_commas(text, steps):
    assert canary_steps(text) == steps


@pytest.mark.parametrize(("text", "words"), [
    ("", "canary steps must not be an empty string: give weight[:pause] items separated by commas"),
    ("  ", "must not be an empty string"),
    ("10,", "canary step 2 of '10,' must be weight or weight:pause, got ''"),
    (",10", "canary step 1 of ',10' must be weight or weight:pause, got ''"),
    ("10:60:5", "canary step 1 of '10:60:5' must be weight or weight:pause, got '10:60:5'"),
    ("10:", "canary step 1 of '10:' must be weight or weight:pause, got '10:'"),
    (":60", "canary step 1 of ':60' must be weight or weight:pause"),
    ("10;50", "canary step 1: weight (a whole percent) must be a number, got '10;50'"),
    ("10,ten", "canary step 2: weight (a whole percent) must be a number, got 'ten'"),
    ("10:soon", "canary step 1: pause (seconds) must be a number, got 'soon'"),
    ("50,10", "canary step 2: weights must be strictly increasing, got 10 after 50"),
    ("0,50", "canary step 1: weight must be 1 to 100 (percent), got '0'"),
    ("10:-1", "canary step 1: pause must be 0 or more seconds, got '-1'"),
    ("12.5", "must be a whole number, got '12.5'"),
])
def test_canary_steps_text_is_refused_naming_the_item(text, words):
    with pytest.raises(AnsibleFilterError) as error:
        canary_steps(text)
    assert words in str(error.value)


def test_the_role_takes_the_ramp_as_text_and_the_canary_gets_the_steps(tmp_path):
    # The traffic role's argument spec validates vmfleet_canary_steps before canary.yml reads it: the string a
    # survey passes must get through it to the filter, and a bad one must fail there with the filter's words.
    (tmp_path / "hosts.yml").write_text(
        "all:\n  vars:\n    vmfleet_services: [{name: catalog}]\n  children:\n"
        "    app_hosts: {hosts: {app1: {ansible_connection: local}}}\n"
        "    loadbalancers: {hosts: {lb1: {ansible_connection: local}}}\n")
    (tmp_path / "play.yml").write_text(
        "- name: The steps as canary.yml reads them\n  hosts: app_hosts\n  gather_facts: false\n"
        "  roles: [vmfleet.deploy.traffic]\n  tasks:\n    - name: Show the steps\n      ansible.builtin.debug:\n"
        "        msg: \"steps={{ vmfleet_canary_steps | vmfleet.deploy.canary_steps | to_json }}\"\n")

    def run(steps):
        argv = [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"),
                "-e", "service=catalog", "-e", "vmfleet_canary_steps=" + steps]
        return subprocess.run(argv,
                              capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=120, check=False)

    good = run("10:30,50:60")
    assert good.returncode == 0, good.stdout + good.stderr
    assert 'steps=[{"weight": 10, "pause": 30}, {"weight": 50, "pause": 60}]' in good.stdout
    bad = run("10:30:1")
    assert bad.returncode != 0
    assert "canary step 1 of '10:30:1' must be weight or weight:pause" in bad.stdout + bad.stderr
