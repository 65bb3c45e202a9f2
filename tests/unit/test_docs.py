"""The commands and pipeline examples in docs/*.md are ones that work with this collection.

* Every YAML code block of docs/ci.md parses, and its pipelines turn the
  report callback on, write the reports where they publish them, and publish
  them after a failure too.
* The summary steps of docs/ci.md (GitHub Actions and GitLab CI), run as
  written, summarise a report that vmfleet.deploy.deploy_report wrote for a
  real ansible-playbook run (a serial play whose second batch fails).
* Every ``ansible-playbook`` command in docs/*.md (code blocks, the strings of
  YAML blocks, and inline code) names playbooks that exist: ``vmfleet.deploy.<name>``
  for playbooks/<name>.yml, or a path in the repository. Every variable it
  passes with ``-e`` is documented: an option of a role's
  meta/argument_specs.yml, a variable named in the header comment of a
  playbook of playbooks/ or of the command's own playbook, or one of
  Ansible's own (``ansible_*``).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
CI = ROOT / "docs" / "ci.md"
FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
COLLECTION_PLAYBOOK = re.compile(r"^vmfleet\.deploy\.([\w-]+)$")
# ansible-playbook's options that take a value as the next argument.
OPTIONS_WITH_VALUE = {
    "-i", "--inventory", "-e", "--extra-vars", "-l", "--limit", "-u", "--user", "-f", "--forks", "-t", "--tags",
    "--skip-tags", "-c", "--connection", "-T", "--timeout", "--private-key", "--key-file", "--vault-id",
    "--vault-password-file", "--become-user", "--become-method", "--start-at-task", "-M", "--module-path",
    "--ssh-common-args", "--ssh-extra-args", "--scp-extra-args", "--sftp-extra-args",
}
REPORT_CALLBACK = "vmfleet.deploy.deploy_report"


def blocks(path: Path) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return FENCE.findall(path.read_text())


def yaml_blocks(path: Path) -> list[str]:
    return [body for lang, body in blocks(path) if lang in ("yaml", "yml")]


def strings(node) -> list[str]:
    """Every string in a parsed YAML document."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def commands_in(text: str) -> list[str]:
    """The ansible-playbook commands of a shell text, from the command to the end of its (joined) line."""
    text = re.sub(r"\\\n\s*", " ", text)
    return [line[line.index("ansible-playbook"):] for line in text.splitlines()
            if re.search(r"ansible-playbook\s+\S", line)]


def commands(path: Path) -> list[str]:
    found = []
    for lang, body in blocks(path):
        if lang in ("yaml", "yml"):
            for document in yaml.safe_load_all(body):
                for value in strings(document):
                    found += commands_in(value)
        else:
            found += commands_in(body)
    prose = FENCE.sub("", path.read_text())
    for span in INLINE.findall(prose):
        found += commands_in(span)
    return found


def extra_var_names(tokens: list[str]) -> list[str]:
    names = []
    for i, token in enumerate(tokens):
        if token in ("-e", "--extra-vars") and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif token.startswith("--extra-vars="):
            value = token.split("=", 1)[1]
        elif token.startswith("-e") and not token.startswith("--") and len(token) > 2:
            value = token[2:]
        else:
            continue
        if value.startswith("@"):
            continue
        if value.lstrip().startswith("{"):
            names += list(yaml.safe_load(value))
        else:
            names += [pair.split("=", 1)[0] for pair in value.split()]
    return names


def header_variables(playbook: Path) -> set[str]:
    """The variable-like names (with an underscore) in a playbook's header comment."""
    header = []
    for line in playbook.read_text().splitlines():
        if line == "---":
            continue
        if not line.startswith("#"):
            break
        header.append(line)
    return set(re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", "\n".join(header)))


def documented_variables() -> set[str]:
    names = set()
    for spec in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for entry in yaml.safe_load(spec.read_text())["argument_specs"].values():
            names |= set(entry.get("options") or {})
    for playbook in ROOT.glob("playbooks/*.yml"):
        names |= header_variables(playbook)
    return names


def playbooks_of(tokens: list[str]) -> list[Path]:
    """The playbooks a command names (its positional arguments; ``...`` stands for the reader's own)."""
    found, skip = [], False
    for token in tokens[1:]:
        if skip:
            skip = False
        elif token in OPTIONS_WITH_VALUE:
            skip = True
        elif not token.startswith("-") and token != "...":
            match = COLLECTION_PLAYBOOK.match(token)
            found.append(ROOT / "playbooks" / f"{match.group(1)}.yml" if match else ROOT / token)
    return found


# ------------------------------------------------------------ every command
def all_commands() -> list[tuple[str, str]]:
    return [(path.name, command) for path in DOCS for command in commands(path)]


def test_the_docs_have_commands_to_check():
    pages = {page for page, _command in all_commands()}
    assert {"shell.md", "ci.md", "haproxy.md"} <= pages, pages


@pytest.mark.parametrize(("page", "command"), all_commands(), ids=lambda value: value[:60])
def test_every_ansible_playbook_command_names_a_playbook_and_documented_variables(page, command):
    tokens = shlex.split(command, comments=True)
    assert tokens and tokens[0] == "ansible-playbook", command
    playbooks = playbooks_of(tokens)
    assert playbooks, f"{page}: no playbook in {command!r}"
    for playbook in playbooks:
        assert playbook.is_file(), f"{page}: {playbook.relative_to(ROOT)} does not exist ({command!r})"
    documented = documented_variables().union(*(header_variables(playbook) for playbook in playbooks))
    for name in extra_var_names(tokens):
        known = name.startswith("ansible_") or name in documented
        assert known, f"{page}: -e {name} is documented nowhere ({command!r})"


def test_an_undocumented_variable_or_a_missing_playbook_is_caught():
    tokens = shlex.split("ansible-playbook -i inventories/example/hosts.yml vmfleet.deploy.rolling_update -e service=a"
                         " -e vmfleet_batchsize=2 -e '{\"vmfleet_canary_steps\": []}' --limit app1 playbooks/x.yml")
    assert extra_var_names(tokens) == ["service", "vmfleet_batchsize", "vmfleet_canary_steps"]
    assert playbooks_of(tokens) == [ROOT / "playbooks" / "rolling_update.yml", ROOT / "playbooks" / "x.yml"]
    assert not any(playbook.exists() for playbook in playbooks_of(tokens))
    documented = documented_variables()
    assert {"service", "version", "vmfleet_batch", "vmfleet_canary_steps", "haproxy_tls_cert"} <= documented
    assert "vmfleet_batchsize" not in documented


# ------------------------------------------------------------ docs/ci.md's pipelines
def pipelines() -> tuple[dict, dict]:
    """docs/ci.md's rollout pipelines: (GitLab CI's deploy job, GitHub Actions' workflow)."""
    documents = [yaml.safe_load(body) for body in yaml_blocks(CI)]
    gitlab = next(d["deploy"] for d in documents if isinstance(d, dict) and "script" in d.get("deploy", {}))
    github = next(d for d in documents if isinstance(d, dict) and "jobs" in d)
    return gitlab, github


def test_every_yaml_block_of_ci_md_parses():
    bodies = yaml_blocks(CI)
    assert len(bodies) >= 3
    for body in bodies:
        assert yaml.safe_load(body) is not None


def test_the_pipelines_enable_the_report_and_publish_it_after_a_failure_too():
    gitlab, github = pipelines()
    assert gitlab["variables"]["ANSIBLE_CALLBACKS_ENABLED"] == REPORT_CALLBACK
    assert gitlab["variables"]["VMFLEET_REPORT_DIR"] == "$CI_PROJECT_DIR/reports"
    assert gitlab["artifacts"]["when"] == "always" and gitlab["artifacts"]["paths"] == ["reports/"]
    assert gitlab.get("resource_group")

    (job,) = github["jobs"].values()
    assert job["env"]["ANSIBLE_CALLBACKS_ENABLED"] == REPORT_CALLBACK
    assert job["env"]["VMFLEET_REPORT_DIR"] == "${{ github.workspace }}/reports"
    upload = next(step for step in job["steps"] if str(step.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "reports/"
    summary = next(step for step in job["steps"] if "GITHUB_STEP_SUMMARY" in step.get("run", ""))
    assert summary["if"] == "always()"
    # The inputs reach the shell as environment variables, not pasted into scripts.
    for step in job["steps"]:
        assert "${{ inputs." not in step.get("run", ""), step
    assert github.get("concurrency")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    """A report the callback wrote: a serial play over app1..app3 whose second batch (app2) fails its gate."""
    tmp = tmp_path_factory.mktemp("report")
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    (tmp / "inventory.yml").write_text(yaml.safe_dump(
        {"all": {"children": {"app_hosts": {"hosts": {f"app{i}": local for i in (1, 2, 3)}}}}}))
    (tmp / "rolling.yml").write_text(yaml.safe_dump([{
        "name": "Roll out in batches",
        "hosts": "app_hosts",
        "gather_facts": False,
        "serial": 1,
        "tasks": [
            {"name": "Drain the server", "ansible.builtin.debug": {"msg": "drained"}},
            {"name": "Gate on health", "ansible.builtin.fail": {"msg": "unhealthy"},
             "when": "inventory_hostname == 'app2'"},
        ],
    }]))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_CALLBACKS_ENABLED=REPORT_CALLBACK,
        VMFLEET_REPORT_DIR=str(tmp / "reports"),
        ANSIBLE_LOCALHOST_WARNING="false",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp / "inventory.yml"), str(tmp / "rolling.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode != 0, proc.stdout
    assert len(list((tmp / "reports").glob("rolling-*.json"))) == 1, proc.stdout + proc.stderr
    return tmp / "reports"


def run_step(script: str, report_dir: Path, tmp_path: Path) -> tuple[str, str]:
    """Run a pipeline's shell step as the CI would (bash -e); its stdout and $GITHUB_STEP_SUMMARY."""
    summary = tmp_path / "step-summary.md"
    summary.write_text("")
    env = dict(
        os.environ,
        VMFLEET_REPORT_DIR=str(report_dir),
        GITHUB_STEP_SUMMARY=str(summary),
        SERVICE="catalog",
        VERSION="1.1.0",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    proc = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, summary.read_text()


def test_the_github_summary_step_summarises_the_report(report_dir, tmp_path):
    _gitlab, github = pipelines()
    (job,) = github["jobs"].values()
    step = next(step for step in job["steps"] if "GITHUB_STEP_SUMMARY" in step.get("run", ""))
    _stdout, summary = run_step(step["run"], report_dir, tmp_path)
    lines = summary.splitlines()
    assert lines[0].startswith("### rolling catalog 1.1.0: failed in "), summary
    assert "1 failed, 1 ok (hosts)" in lines, summary  # app3's batch never started
    assert "**Failed:** app2" in lines, summary
    rows = [line for line in lines if re.match(r"\| \d+ \|", line)]
    assert [row.split(" | ")[1] for row in rows] == ["app1", "app2"], summary
    assert rows[0].endswith("| ok |") and rows[1].endswith("| failed: app2 |"), summary
    assert "- app2: failed (Gate on health)" in lines, summary
    assert re.search(r"rolling-\d{8}T\d{6}Z\.html in the rollout-report artifact", summary), summary


def test_the_gitlab_summary_prints_the_report(report_dir, tmp_path):
    gitlab, _github = pipelines()
    stdout = "".join(run_step(script, report_dir, tmp_path)[0] for script in gitlab["after_script"])
    assert re.search(r"^rolling catalog 1\.1\.0: failed in \d+ s, 2 hosts, failed: app2$", stdout, re.M), stdout
    assert "  app2: failed (Gate on health)" in stdout.splitlines(), stdout


@pytest.mark.parametrize("pipeline", ["github", "gitlab"])
def test_the_summaries_say_so_when_there_is_no_report(tmp_path, pipeline):
    gitlab, github = pipelines()
    (job,) = github["jobs"].values()
    scripts = ([next(s["run"] for s in job["steps"] if "GITHUB_STEP_SUMMARY" in s.get("run", ""))]
               if pipeline == "github" else gitlab["after_script"])
    empty = tmp_path / "reports"
    empty.mkdir()
    outputs = [run_step(script, empty, tmp_path) for script in scripts]
    assert "no rollout report" in " ".join(out + summary for out, summary in outputs).lower()
