"""AWX configuration as code (awx/): the surveys against the playbooks' documented inputs, configure.yml's job
templates and workflow, and the canary ramp as a survey gives it (one string)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
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


# ------------------------------------------------------------------ what the surveys are checked against

AWX = ROOT / "awx"
SURVEYS = AWX / "surveys"
SPEC = yaml.safe_load((ROOT / "roles" / "traffic" / "meta" / "argument_specs.yml").read_text())
OPTIONS = SPEC["argument_specs"]["main"]["options"]
STRATEGIES = ("bootstrap", "rolling", "blue_green", "canary", "rollback")
# The survey of each job template is named after its playbook; the deploy workflow's survey feeds rolling.yml.
PLAYBOOK_OF = {**{name: name for name in STRATEGIES}, "deploy": "rolling"}

# AWX's own question types and the Python type of each one's default (awx/api/views: JobTemplateSurveySpec).
AWX_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
             "integer": int, "float": (int, float)}
# The types a vmfleet survey uses: every answer a plain value, never a structure typed into a text field.
SIMPLE_TYPES = {"text", "integer", "float", "multiplechoice"}

# service and version as each playbook's header documents them: required where the playbook requires them,
# refused where it refuses them. rollback.yml reads the ledgers; a version, when given, is the release
# to roll back from (the deploy workflow's failure node passes the workflow's version).
REQUIRED = {"rolling": {"service", "version"}, "blue_green": {"service", "version"},
            "canary": {"service", "version"}, "rollback": {"service"}, "bootstrap": set()}
REFUSED = {"bootstrap": {"service", "version"}}
# The scopes of the traffic role's options (their description starts "Rolling.", "Blue-green." or "Canary.")
# that each playbook reads: canary.yml promotes by blue-green or rolling, rollback.yml redeploys by either.
SCOPES = {"rolling": {"all", "Rolling."}, "blue_green": {"all", "Blue-green."},
          "canary": {"all", "Canary.", "Blue-green.", "Rolling."}, "rollback": {"all", "Blue-green.", "Rolling."}}
# bootstrap.yml does not list the traffic role; its one input a survey offers is the hosts of its play
# (`hosts: "{{ vmfleet_target | default('app_hosts') }}"`), which its header does not document yet.
BOOTSTRAP_INPUTS = {"vmfleet_target": {"type": "str", "default": "app_hosts"}}
# Options a text answer gives as one string that the playbook parses (the canary ramp, "10:60,50:60").
PARSED_TEXT = {"vmfleet_canary_steps": canary_steps}


def scope(option: dict) -> str:
    description = option.get("description", "")
    text = " ".join(description) if isinstance(description, list) else description
    return next((prefix for prefix in ("Rolling.", "Blue-green.", "Canary.") if text.startswith(prefix)), "all")


def survey_problems(survey) -> list[str]:
    """What AWX would refuse in a survey_spec (its survey_spec validation), plus the vmfleet rules: simple types,
    no structure typed into a text default."""
    if not isinstance(survey, dict):
        return ["the survey is not a JSON object"]
    fields = (("name", str), ("description", str), ("spec", list))
    problems = [f"{field} must be a {kind.__name__}" for field, kind in fields
                if not isinstance(survey.get(field), kind)]
    if problems:
        return problems
    if not survey["spec"]:
        return ["spec has no question"]
    seen = set()
    for index, question in enumerate(survey["spec"]):
        where = f"question {index}"
        if not isinstance(question, dict):
            problems.append(f"{where} is not a JSON object")
            continue
        where = f"question {index} ({question.get('variable')})"
        for field, kind in (("question_name", str), ("variable", str), ("type", str), ("required", bool),
                            ("question_description", str)):
            if not isinstance(question.get(field), kind):
                problems.append(f"{where}: {field} must be a {kind.__name__}")
        qtype, variable = question.get("type"), question.get("variable")
        if variable in seen:
            problems.append(f"{where}: variable {variable} asked twice")
        seen.add(variable)
        if qtype not in AWX_TYPES:
            problems.append(f"{where}: type {qtype!r} is not an AWX question type ({', '.join(AWX_TYPES)})")
            continue
        if qtype not in SIMPLE_TYPES:
            problems.append(f"{where}: type {qtype} is not one of {sorted(SIMPLE_TYPES)}")
        if "default" not in question:
            problems.append(f"{where}: no default")
        default = question.get("default")
        if default not in ("", None) and (isinstance(default, bool) or not isinstance(default, AWX_TYPES[qtype])):
            problems.append(f"{where}: default {default!r} is not a {qtype}")
        if qtype in ("text", "textarea") and isinstance(default, str) and default.strip()[:1] in ("[", "{"):
            problems.append(f"{where}: default {default!r} is a structure typed into a text field")
        for bound in ("min", "max"):
            if question.get(bound) is not None and (isinstance(question[bound], bool)
                                                    or not isinstance(question[bound], int)):
                problems.append(f"{where}: {bound} must be an integer")
        if qtype in ("multiplechoice", "multiselect"):
            choices = question.get("choices")
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
                problems.append(f"{where}: choices must be a non-empty list of strings")
            elif default not in ("", None) and default not in choices:
                problems.append(f"{where}: default {default!r} is not one of the choices {choices}")
        elif "choices" in question and question["choices"] not in ("", None, []):
            problems.append(f"{where}: choices on a {qtype} question")
        if question.get("required") and qtype in ("text", "textarea") and not question.get("min"):
            problems.append(f"{where}: a required text needs min 1, or an empty answer passes")
    return problems


def input_problems(survey: dict, playbook: str) -> list[str]:
    """The survey against the inputs the playbook documents: names, types, choices, defaults, required."""
    problems = []
    asked = {q["variable"]: q for q in survey["spec"]}
    for name in sorted(REQUIRED[playbook]):
        if name not in asked:
            problems.append(f"{playbook}.yml requires {name}, the survey does not ask it")
        elif not asked[name]["required"]:
            problems.append(f"{playbook}.yml requires {name}, the survey's question is not required")
    for name, question in asked.items():
        qtype, default = question["type"], question.get("default")
        if name in REFUSED.get(playbook, ()):
            problems.append(f"{playbook}.yml takes no {name}")
            continue
        if playbook == "bootstrap":
            option = BOOTSTRAP_INPUTS.get(name)
        else:
            option = OPTIONS.get(name)
            if option is not None and scope(option) not in SCOPES[playbook]:
                problems.append(f"{name} is a {scope(option)} input, not read by {playbook}.yml")
                continue
        if option is None:
            problems.append(f"{name} is not a documented input of {playbook}.yml")
            continue
        otype = option.get("type", "str")
        if name in ("service", "version"):
            if qtype != "text" or default != "":
                problems.append(f"{name}: a text question without a default, got {qtype} {default!r}")
        elif qtype == "integer":
            if otype != "int":
                problems.append(f"{name}: an integer question for a {otype} input")
            elif default != option.get("default"):
                problems.append(f"{name}: default {default!r}, the role's is {option.get('default')!r}")
        elif qtype == "float":
            if otype != "float":
                problems.append(f"{name}: a float question for a {otype} input")
            elif default != option.get("default"):
                problems.append(f"{name}: default {default!r}, the role's is {option.get('default')!r}")
        elif qtype == "multiplechoice":
            choices = question.get("choices") or []
            allowed = ["false", "true"] if otype == "bool" else [str(c) for c in option.get("choices", [])]
            if otype not in ("str", "bool") or not allowed:
                problems.append(f"{name}: a multiplechoice question for a {otype} input without choices")
            elif not set(choices) <= set(allowed):
                problems.append(f"{name}: choices {sorted(set(choices) - set(allowed))} are not among {allowed}")
            elif default != str(option.get("default")).lower() if otype == "bool" else default != option.get("default"):
                problems.append(f"{name}: default {default!r}, the role's is {option.get('default')!r}")
        elif qtype == "text":
            if name in PARSED_TEXT:
                parse = PARSED_TEXT[name]
                if parse(default) != parse(option.get("default")):
                    problems.append(f"{name}: default {default!r} is not the role's {option.get('default')!r}")
            elif otype not in ("str", "raw", "path"):
                problems.append(f"{name}: a text question for a {otype} input (a {otype} cannot be typed as text)")
            elif default != str(option.get("default")):
                problems.append(f"{name}: default {default!r}, the role's is {option.get('default')!r}")
        else:
            problems.append(f"{name}: a {qtype} question")
    return problems


def load(name: str) -> dict:
    return json.loads((SURVEYS / f"{name}.json").read_text())


# ------------------------------------------------------------------ the surveys


def test_there_is_a_survey_for_each_playbook_and_the_workflow():
    assert sorted(p.stem for p in SURVEYS.glob("*.json")) == sorted([*STRATEGIES, "deploy"])


@pytest.mark.parametrize("name", [*STRATEGIES, "deploy"])
def test_each_survey_is_a_valid_awx_survey_spec(name):
    assert survey_problems(load(name)) == []


@pytest.mark.parametrize("name", [*STRATEGIES, "deploy"])
def test_each_survey_asks_only_documented_inputs_with_the_role_defaults(name):
    assert input_problems(load(name), PLAYBOOK_OF[name]) == []


def test_the_header_of_each_playbook_documents_what_the_checks_expect():
    for playbook in STRATEGIES:
        header = "".join(line for line in (ROOT / "playbooks" / f"{playbook}.yml").read_text().splitlines(True)
                         if line.startswith("#"))
        for name in REQUIRED[playbook]:
            assert name in header, (playbook, name)
    rollback = (ROOT / "playbooks" / "rollback.yml").read_text()
    assert "With -e version" in rollback and "version is not defined or" in rollback
    assert "vmfleet_target | default('app_hosts')" in (ROOT / "playbooks" / "bootstrap.yml").read_text()


def test_the_canary_ramp_default_parses_to_the_role_default():
    question = next(q for q in load("canary")["spec"] if q["variable"] == "vmfleet_canary_steps")
    defaults = yaml.safe_load((ROOT / "roles" / "traffic" / "defaults" / "main.yml").read_text())
    assert canary_steps(question["default"]) == defaults["vmfleet_canary_steps"]


BAD_SURVEY = {
    "name": "bad",
    "description": "every mistake the checks must catch",
    "spec": [
        {"question_name": "Service", "question_description": "", "variable": "service", "type": "text",
         "required": False, "default": "", "min": 0, "max": 200},
        {"question_name": "Batch", "question_description": "", "variable": "vmfleet_batch", "type": "text",
         "required": False, "default": "[1, \"25%\"]", "min": 1, "max": 20},
        {"question_name": "Rollback", "question_description": "", "variable": "vmfleet_rollback",
         "type": "multiplechoice", "required": False, "default": "batch", "choices": ["batch", "everything"]},
        {"question_name": "Cutover", "question_description": "", "variable": "vmfleet_cutover",
         "type": "multiplechoice", "required": False, "default": "atomic", "choices": ["atomic"]},
        {"question_name": "Max fail", "question_description": "", "variable": "vmfleet_max_fail_percentage",
         "type": "integer", "required": False, "default": 10, "min": 0, "max": 100},
        {"question_name": "Drain", "question_description": "", "variable": "vmfleet_drain_timeout",
         "type": "integer", "required": False, "default": 30},
        {"question_name": "Steps", "question_description": "", "variable": "vmfleet_overlap_steps", "type": "text",
         "required": False, "default": "10,25,50,75"},
        {"question_name": "Analysis", "question_description": "", "variable": "vmfleet_canary_analysis",
         "type": "textarea", "required": False, "default": "{\"min_requests\": 50}"},
        {"question_name": "Sticky", "question_description": "", "variable": "vmfleet_canary_sticky",
         "type": "boolean", "required": False, "default": False},
        {"question_name": "Mine", "question_description": "", "variable": "my_var", "type": "integer",
         "required": False, "default": "3", "min": 1.5},
        {"question_name": "Again", "question_description": "", "variable": "my_var", "type": "text",
         "required": True, "default": ""},
        {"question_name": "Choose", "question_description": "", "variable": "vmfleet_canary_promotion",
         "type": "multiplechoice", "required": False, "default": "never", "choices": ["flip", "rolling"]},
    ],
}


def test_the_checks_catch_a_bad_survey(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps(BAD_SURVEY))
    survey = json.loads((tmp_path / "bad.json").read_text())
    structure = "\n".join(survey_problems(survey))
    for words in ("question 1 (vmfleet_batch): default '[1, \"25%\"]' is a structure typed into a text field",
                  "question 7 (vmfleet_canary_analysis): type textarea is not one of",
                  "question 7 (vmfleet_canary_analysis): default '{\"min_requests\": 50}' is a structure typed",
                  "question 8 (vmfleet_canary_sticky): type 'boolean' is not an AWX question type",
                  "question 9 (my_var): default '3' is not a integer",
                  "question 9 (my_var): min must be an integer",
                  "question 10 (my_var): variable my_var asked twice",
                  "question 10 (my_var): a required text needs min 1",
                  "question 11 (vmfleet_canary_promotion): default 'never' is not one of the choices"):
        assert words in structure, words
    inputs = "\n".join(input_problems(survey, "rolling"))
    for words in ("rolling.yml requires version, the survey does not ask it",
                  "rolling.yml requires service, the survey's question is not required",
                  "vmfleet_batch: default '[1, \"25%\"]', the role's is 1",
                  "vmfleet_rollback: choices ['everything'] are not among ['batch', 'all', 'none']",
                  "vmfleet_cutover is a Blue-green. input, not read by rolling.yml",
                  "vmfleet_max_fail_percentage: default 10, the role's is 0",
                  "vmfleet_drain_timeout: an integer question for a float input",
                  "vmfleet_overlap_steps is a Blue-green. input",
                  "my_var is not a documented input of rolling.yml"):
        assert words in inputs, words
    canary = "\n".join(input_problems(survey, "canary"))
    for words in ("vmfleet_overlap_steps: a text question for a list input",
                  "vmfleet_canary_analysis: a textarea question",
                  "vmfleet_canary_promotion: default 'never', the role's is 'flip'"):
        assert words in canary, words
    assert "bootstrap.yml takes no version" in "\n".join(
        input_problems({"spec": [{"variable": "version", "type": "text", "default": "", "required": True}]},
                       "bootstrap"))
    assert "vmfleet_canary_steps: default '10:60' is not the role's" in "\n".join(input_problems(
        {"spec": [{"variable": "vmfleet_canary_steps", "type": "text", "default": "10:60", "required": False}]},
        "canary"))
    assert survey_problems({"name": "x", "description": "", "spec": []}) == ["spec has no question"]
    assert survey_problems({"name": "x", "spec": [{}]}) == ["description must be a str"]


# ------------------------------------------------------------------ configure.yml

CONFIGURE = AWX / "configure.yml"


def play() -> dict:
    [only] = yaml.safe_load(CONFIGURE.read_text())
    return only


def tasks_of(module: str) -> list[dict]:
    return [task for task in play()["tasks"] if module in task]


def awx_collection() -> Path:
    from ansible_collections.awx import awx

    return Path(next(iter(awx.__path__)))


def documented_options(module: str) -> dict:
    """The options of an awx.awx module as its DOCUMENTATION gives them, with the auth fragment's."""
    def doc(path: Path, name: str = "DOCUMENTATION") -> dict:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
                return yaml.safe_load(node.value.value)
        raise AssertionError(f"no {name} in {path}")

    plugins = awx_collection() / "plugins"
    options = dict(doc(plugins / "modules" / f"{module}.py")["options"])
    options.update(doc(plugins / "doc_fragments" / "auth.py")["options"])
    return options


def unknown_arguments(args: dict, options: dict, where: str) -> list[str]:
    """Arguments that are neither an option nor an alias, down into literal suboptions."""
    names = {alias: name for name, option in options.items() for alias in [name, *option.get("aliases", [])]}
    problems = []
    for key, value in args.items():
        if key not in names:
            problems.append(f"{where}: {key} is not an option")
            continue
        suboptions = options[names[key]].get("suboptions")
        if not suboptions:
            continue
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, dict):
                problems += unknown_arguments(item, suboptions, f"{where}.{key}[{index}]")
    return problems


def test_every_awx_task_uses_only_documented_module_options():
    awx_tasks = [(key, task) for task in play()["tasks"] for key in task if key.startswith("awx.awx.")]
    assert {key for key, _task in awx_tasks} >= {
        "awx.awx.organization", "awx.awx.credential", "awx.awx.project", "awx.awx.inventory",
        "awx.awx.inventory_source", "awx.awx.job_template", "awx.awx.workflow_job_template"}
    problems = []
    for key, task in awx_tasks:
        problems += unknown_arguments(task[key], documented_options(key.split(".")[-1]), task["name"])
    defaults = play()["module_defaults"]["group/awx.awx.controller"]
    problems += unknown_arguments(defaults, documented_options("job_template"), "module_defaults")
    assert problems == []


def test_the_checker_of_module_options_catches_a_wrong_name():
    options = documented_options("workflow_job_template")
    args = {"allow_simultaneous": False, "concurrent": True, "survey": {}, "controller_oauthtoken": "x",
            "workflow_nodes": [{"identifier": "a", "related": {"on_failure": [], "failure_nodes": [{"id": 1}]}}]}
    assert unknown_arguments(args, options, "t") == [
        "t: concurrent is not an option",
        "t.workflow_nodes[0].related[0]: on_failure is not an option",
        "t.workflow_nodes[0].related[0].failure_nodes[0]: id is not an option"]


def test_every_job_template_runs_one_job_at_a_time_unsliced_with_its_survey():
    [task] = tasks_of("awx.awx.job_template")
    args = task["awx.awx.job_template"]
    assert args["job_slice_count"] == 1
    assert args["allow_simultaneous"] is False
    assert args["ask_variables_on_launch"] is False
    assert args["survey_enabled"] is True
    assert args["become_enabled"] is False
    assert "item.survey" in args["survey_spec"] and "from_json" in args["survey_spec"]
    templates = play()["vars"]["__vmfleet_awx_job_templates"]
    assert task["loop"] == "{{ __vmfleet_awx_job_templates }}"
    assert sorted(t["survey"] for t in templates) == sorted(f"{name}.json" for name in STRATEGIES)
    for template in templates:
        assert (SURVEYS / template["survey"]).is_file(), template
        assert (ROOT / template["playbook"]).is_file(), template
        assert Path(template["playbook"]).stem == Path(template["survey"]).stem, template


def test_the_deploy_workflow_runs_rolling_then_rollback_on_failure():
    [task] = tasks_of("awx.awx.workflow_job_template")
    args = task["awx.awx.workflow_job_template"]
    assert args["allow_simultaneous"] is False
    assert args["ask_variables_on_launch"] is False
    assert args["survey_enabled"] is True
    assert "surveys/deploy.json" in args["survey_spec"] and (SURVEYS / "deploy.json").is_file()
    first, *others = args["workflow_nodes"]
    assert first["unified_job_template"]["name"].endswith(" rolling")
    assert first["related"] == {"failure_nodes": [{"identifier": "rollback"}]}
    [rollback] = [node for node in others if node["identifier"] == "rollback"]
    assert rollback["unified_job_template"]["name"].endswith(" rollback")
    assert all(node["unified_job_template"]["type"] == "job_template" for node in args["workflow_nodes"])


SECRET_WORDS = ("password", "token", "ssh_key", "secret", "vault_pass")


def secret_values(node, path=""):
    """Values under a key that names a secret, other than a template (a secret passed at run time) or empty."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if any(word in str(key) for word in SECRET_WORDS) and isinstance(value, str):
                if value.strip() and "{{" not in value:
                    yield here
            else:
                yield from secret_values(value, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from secret_values(item, f"{path}[{index}]")


def test_secrets_are_never_logged_and_never_in_the_files():
    for task in tasks_of("awx.awx.credential"):
        assert task.get("no_log") is True, task["name"]
    for path in (CONFIGURE, AWX / "vars.yml"):
        assert list(secret_values(yaml.safe_load(path.read_text()))) == [], path
    assert list(secret_values({"a": {"vault_password": "hunter2", "password": "{{ pw }}"}})) == [".a.vault_password"]
    text = "\n".join(p.read_text() for p in AWX.rglob("*") if p.is_file())
    for words in ("PRIVATE KEY", "$ANSIBLE_VAULT"):
        assert words not in text, words


def test_configure_yml_passes_ansible_playbook_syntax_check():
    proc = subprocess.run([str(BIN / "ansible-playbook"), "--syntax-check", str(CONFIGURE)],
                          capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ------------------------------------------------------------------ configure.yml run against the real modules

FAKE_CONTROLLER_API = '''
"""Test stand-in for awx.awx's controller_api: the module's real argument_spec validates the task's arguments
(types, choices, aliases, mutually exclusive ...), then the arguments are logged instead of sent to AWX."""
import json

from ansible.module_utils.basic import AnsibleModule

AUTH_ARGSPEC = {auth}
LOG = {log!r}


class ControllerAPIModule(AnsibleModule):
    def __init__(self, argument_spec, direct_params=None, error_callback=None, warn_callback=None, **kwargs):
        spec = dict(AUTH_ARGSPEC)
        spec.update(argument_spec)
        kwargs["supports_check_mode"] = True
        super().__init__(argument_spec=spec, **kwargs)
        with open(LOG, "a") as log:
            log.write(json.dumps({{"module": self._name, "params": self.params}}) + "\\n")
        self.exit_json(changed=True)
'''


@pytest.fixture(scope="module")
def stub_awx(tmp_path_factory):
    """A copy of awx.awx whose modules run their own argument checks and log the arguments, no AWX needed."""
    from ansible_collections.awx.awx.plugins.module_utils.controller_api import ControllerModule

    top = tmp_path_factory.mktemp("stub_awx")
    real, stub = awx_collection(), top / "ansible_collections" / "awx" / "awx"
    shutil.copytree(real / "meta", stub / "meta")
    shutil.copytree(real / "plugins" / "modules", stub / "plugins" / "modules",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (stub / "plugins" / "module_utils").mkdir(parents=True)
    auth = {name: {k: v for k, v in spec.items() if k != "fallback"}
            for name, spec in ControllerModule.AUTH_ARGSPEC.items()}
    log = top / "calls.jsonl"
    (stub / "plugins" / "module_utils" / "controller_api.py").write_text(
        FAKE_CONTROLLER_API.format(auth=repr(auth), log=str(log)))
    return top, log


def run_configure(stub_awx, tmp_path, *extra: str):
    top, log = stub_awx
    log.write_text("")
    argv = [str(BIN / "ansible-playbook"), str(CONFIGURE), "-e", "controller_host=https://awx.example.invalid",
            "-e", "controller_oauthtoken=token-not-a-secret", *extra]
    env = ansible_env(ANSIBLE_COLLECTIONS_PATH=f"{top}:{ROOT / '.cache' / 'collections'}")
    for name in [n for n in env if n.startswith(("CONTROLLER_", "TOWER_"))]:
        del env[name]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return proc, calls


def test_configure_yml_runs_against_the_modules_real_arguments(stub_awx, tmp_path):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
    (tmp_path / "id_deploy").write_text(key)
    (tmp_path / "vault_pass").write_text("vault-word-1234\n")
    proc, calls = run_configure(stub_awx, tmp_path, "-e", "vmfleet_awx_project_url=https://git.example.invalid/x.git",
                                "-e", f"vmfleet_awx_ssh_private_key_file={tmp_path / 'id_deploy'}",
                                "-e", f"vmfleet_awx_vault_password_file={tmp_path / 'vault_pass'}",
                                "-e", "vmfleet_awx_scm_password=scm-word-5678")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    for secret in ("not-a-real-key", "vault-word-1234", "scm-word-5678"):
        assert secret not in output, secret

    modules = [call["module"] for call in calls]
    assert modules == ["awx.awx.organization", "awx.awx.credential", "awx.awx.project", "awx.awx.inventory",
                       "awx.awx.inventory_source", "awx.awx.credential", "awx.awx.credential",
                       *["awx.awx.job_template"] * 5, "awx.awx.workflow_job_template"]
    params = [call["params"] for call in calls]
    assert all(p["controller_host"] == "https://awx.example.invalid" for p in params)
    scm, machine, vault = (p for p in params if "credential_type" in p)
    assert scm["credential_type"] == "Source Control" and scm["inputs"] == {"password": "scm-word-5678"}
    assert machine["credential_type"] == "Machine"
    assert machine["inputs"] == {"username": "deploy", "become_method": "sudo", "ssh_key_data": key}
    assert vault["credential_type"] == "Vault" and vault["inputs"] == {"vault_password": "vault-word-1234"}
    project = params[2]
    assert project["scm_url"] == "https://git.example.invalid/x.git" and project["credential"] == "vmfleet scm"
    source = params[4]
    assert source["source"] == "scm" and source["source_project"] == "vmfleet"
    assert source["source_path"] == "inventories/example/hosts.yml"

    templates = {p["name"]: p for p in params if "playbook" in p}
    assert sorted(templates) == sorted(f"vmfleet {name}" for name in STRATEGIES)
    for name in STRATEGIES:
        template = templates[f"vmfleet {name}"]
        assert template["playbook"] == f"playbooks/{name}.yml"
        assert template["survey_spec"] == load(name)
        assert (template["job_slice_count"], template["allow_simultaneous"]) == (1, False)
        assert (template["survey_enabled"], template["ask_variables_on_launch"]) == (True, False)
        assert template["credentials"] == ["vmfleet machine", "vmfleet vault"]
        assert template["inventory"] == "vmfleet" and template["project"] == "vmfleet"
    workflow = params[-1]
    assert workflow["name"] == "vmfleet deploy" and workflow["survey_spec"] == load("deploy")
    # The traffic role takes a job launched by a workflow named as its own template for a slice, and stops.
    assert workflow["name"] not in templates
    assert [node["identifier"] for node in workflow["workflow_nodes"]] == ["rolling", "rollback"]
    assert workflow["workflow_nodes"][0]["unified_job_template"]["name"] == "vmfleet rolling"


def test_configure_yml_with_existing_credentials_and_an_execution_environment(stub_awx, tmp_path):
    proc, calls = run_configure(stub_awx, tmp_path, "-e", "vmfleet_awx_project_url=git@git.example.invalid:o/x.git",
                                "-e", "vmfleet_awx_manage_credentials=false", "-e", "vmfleet_awx_organization=ops",
                                "-e", "vmfleet_awx_organization_create=false", "-e", "vmfleet_awx_prefix=shop",
                                "-e", "vmfleet_awx_execution_environment_image=registry.example.invalid/ee:1",
                                "-e", "vmfleet_awx_registry_host=registry.example.invalid")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modules = [call["module"] for call in calls]
    assert "awx.awx.organization" not in modules and "awx.awx.credential" not in modules
    params = {call["module"]: call["params"] for call in calls}
    assert params["awx.awx.execution_environment"]["image"] == "registry.example.invalid/ee:1"
    assert params["awx.awx.execution_environment"]["credential"] == "shop registry"
    assert params["awx.awx.project"]["organization"] == "ops" and params["awx.awx.project"]["credential"] is None
    assert params["awx.awx.job_template"]["execution_environment"] == "shop"
    assert params["awx.awx.job_template"]["credentials"] == ["shop machine", "shop vault"]


@pytest.mark.parametrize(("extra", "words"), [
    ([], "vmfleet_awx_project_url is required"),
    (["-e", "vmfleet_awx_project_url=https://git.example.invalid/x.git"],
     "the credentials need secrets (or pass -e vmfleet_awx_manage_credentials=false"),
])
def test_configure_yml_stops_before_any_change_without_its_inputs(stub_awx, tmp_path, extra, words):
    proc, calls = run_configure(stub_awx, tmp_path, *extra)
    assert proc.returncode != 0
    assert words in proc.stdout + proc.stderr
    assert calls == []


# ------------------------------------------------------------------ the deploy workflow's rollback node


def test_the_deploy_workflows_rollback_node_takes_the_workflows_extra_vars(tmp_path):
    """AWX passes a workflow's survey answers (service, version ...) to every node, the failure node too:
    rollback.yml takes the version as the release to roll back from, and goes past its input check."""
    survey = load("deploy")
    extra_vars = {q["variable"]: q["default"] for q in survey["spec"]} | {"service": "catalog", "version": "1.1.0"}
    (tmp_path / "hosts.yml").write_text(  # hosts that cannot be reached: nothing may change anywhere
        "all:\n  vars:\n    vmfleet_services: [{name: catalog}]\n"
        "    ansible_host: 127.0.0.1\n    ansible_port: 1\n    ansible_connection: ssh\n"
        "  children:\n    app_hosts: {hosts: {app1: {}}}\n    loadbalancers: {hosts: {lb1: {}}}\n")
    argv = [str(BIN / "ansible-playbook"), "-i", str(tmp_path / "hosts.yml"), str(ROOT / "playbooks" / "rollback.yml"),
            "-e", json.dumps(extra_vars)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(), cwd=ROOT, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    assert "Check the rollback inputs" in output, output
    assert "Take the deploy lock" in output, output  # the input check passed (the lock comes next)
