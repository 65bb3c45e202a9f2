"""vmfleet.deploy.deploy_report under a real ansible-playbook: a serial play over four local hosts
whose tasks are named as the collection's are, with a failure and a rollback in one batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import ansible_runner
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
HOSTS = ["app1", "app2", "app3", "app4"]


def task(name: str, seconds: float = 0.05, **extra) -> dict:
    return {"name": name, "ansible.builtin.command": f"sleep {seconds}", "changed_when": False, **extra}


PLAYBOOK = [
    {
        "name": "Work out the batches",
        "hosts": "fleet",
        "gather_facts": False,
        "tasks": [{"name": "Work out the batches",
                   "ansible.builtin.set_fact": {"__vmfleet_plan": [["app1"], ["app2", "app3"], ["app4"]]},
                   "delegate_to": "localhost", "delegate_facts": True, "run_once": True}],
    },
    {
        "name": "Roll out in batches",
        "hosts": "fleet",
        "gather_facts": False,
        "serial": [1, 2],
        "tasks": [
            task("vmfleet.deploy.service : Pull the image with Docker: catalog 1.1.0"),
            task("vmfleet.deploy.traffic : Drain the server on every load balancer: catalog_blue/x", 0.3),
            task("vmfleet.deploy.service : Ensure the slot's container runs the image with Docker: x", 0.2),
            {"name": "Replace the service on the host", "block": [
                task("vmfleet.deploy.service : Gate on HTTP health of the slot: x", 0.2,
                     failed_when="inventory_hostname == 'app3'"),
            ], "rescue": [task("Roll each service back to the release it ran before", 0.1)]},
            task("vmfleet.deploy.traffic : Set the server ready and wait until it is UP: x", 0.1),
            task("Record the release", 0.01),
        ],
    },
]


def write_project(project: Path, inventory: Path) -> None:
    project.mkdir(parents=True, exist_ok=True)
    inventory.parent.mkdir(parents=True, exist_ok=True)
    (project / "play.yml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    inventory.write_text(yaml.safe_dump({"all": {"children": {"fleet": {"hosts": dict.fromkeys(HOSTS, {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable})}}}}))


def environment(reports: Path) -> dict[str, str]:
    return {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "VMFLEET_REPORT_DIR": str(reports),
            "ANSIBLE_CALLBACKS_ENABLED": "vmfleet.deploy.deploy_report", "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def progress(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("[vmfleet] ") and "report:" not in line]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    write_project(tmp, tmp / "hosts.yml")
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml")], cwd=tmp,
                          env=dict(os.environ, **environment(tmp / "reports")), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    [report] = (tmp / "reports").glob("play-*.json")
    return proc, json.loads(report.read_text()), report.with_suffix(".html")


def test_one_progress_line_per_host_and_per_batch(run):
    proc, _report, _page = run
    lines = progress(proc.stdout)
    assert [re.sub(r": .*", "", line[len("[vmfleet] "):]) for line in lines] == [
        "app1 done", "batch 1/3 done", "app2 done", "app3 rolled back", "batch 2/3 failed", "app4 done",
        "batch 3/3 done"]
    counts = [re.search(r": (\d+)/(\d+) hosts", line).groups() for line in lines]
    assert counts == [("1", "4"), ("1", "4"), ("2", "4"), ("3", "4"), ("3", "4"), ("4", "4"), ("4", "4")]
    # An estimate once a batch is done; none is left at the end.
    assert "left" in lines[1] and lines[-1].endswith("about 0 s left")


def test_the_json_report_has_each_hosts_phases_the_batches_and_the_rollback(run):
    _proc, report, _page = run
    assert report["playbook"] == "play" and report["result"] == "ok"
    assert [(b["number"], b["hosts"], b["failed"]) for b in report["batches"]] == [
        (1, ["app1"], []), (2, ["app2", "app3"], ["app3"]), (3, ["app4"], [])]
    for host in HOSTS:
        spans = report["hosts"][host]["spans"]
        phases = [s[0] for s in spans if s[0] != "other"]
        assert phases[:4] == ["pull", "drain", "replace", "gate"], (host, phases)
        assert all(start <= end for _p, start, end, _t in spans)
        drain = next(s for s in spans if s[0] == "drain")
        assert drain[2] - drain[1] >= 0.3
    assert "rollback" in [s[0] for s in report["hosts"]["app3"]["spans"]]
    assert report["hosts"]["app3"]["status"] == "rolled back"
    assert [(e["host"], e["event"]) for e in report["events"]] == [("app3", "failed"), ("app3", "rollback")]
    # The batches follow one another.
    assert report["batches"][0]["end"] <= report["batches"][1]["start"] <= report["batches"][1]["end"]


def test_each_hosts_phases_add_up_to_its_step_time(run):
    """A host's step time: from its first to its last task in each batch (or in a play with no serial). Its
    phases, the time between its tasks included, add up to it within 5 %."""
    _proc, report, _page = run
    for host in HOSTS:
        record = report["hosts"][host]
        spans = record["spans"]
        batches = [b for b in report["batches"] if host in b["hosts"]]
        in_batch = [[s for s in spans if b["start"] <= s[1] <= b["end"]] for b in batches]
        groups = in_batch + [[s for s in spans if not any(s in group for group in in_batch)]]
        step = sum(group[-1][2] - group[0][1] for group in groups if group)
        assert record["step_seconds"] == pytest.approx(step, abs=0.002), host
        phases = sum(e - s for _p, s, e, _t in spans) + sum(e - s for _k, s, e in record["gaps"])
        assert abs(phases - step) <= 0.05 * step, (host, phases, step, record["phase_seconds"])
        assert sum(record["phase_seconds"].values()) == pytest.approx(phases, abs=0.002)
        assert {k for k, _s, _e in record["gaps"]} <= {"wait", "ansible"}
    # While app3 rolls back, app2 (the same batch) has no task: it waits.
    [rollback] = [s for s in report["hosts"]["app3"]["spans"] if s[0] == "rollback"]
    waited = sum(max(0, min(e, rollback[2]) - max(s, rollback[1]))
                 for kind, s, e in report["hosts"]["app2"]["gaps"] if kind == "wait")
    assert waited >= 0.9 * (rollback[2] - rollback[1])


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_the_html_page_is_self_contained_with_a_row_per_host(run):
    _proc, report, page = run
    parsed = Page()
    parsed.feed(page.read_text())
    names = [t for t, _a in parsed.tags]
    assert "script" not in names and "link" not in names and "img" not in names  # nothing to fetch
    assert names.count("svg") == 1
    text = " ".join(parsed.text)
    for host in HOSTS:
        assert host in text
    rects = [a for t, a in parsed.tags if t == "rect"]
    assert len(rects) == sum(len(h["spans"]) + len(h["gaps"]) for h in report["hosts"].values())
    assert "Roll each service back to the release it ran before" in text
    assert "failed: app3" in text


def test_the_report_paths_are_printed(run):
    proc, _report, page = run
    assert f"[vmfleet] report: {page} (JSON: {page.with_suffix('.json')})" in proc.stdout


def test_it_works_the_same_under_ansible_runner(tmp_path, run):
    """AWX runs every job through ansible-runner, with runner's own stdout callback."""
    write_project(tmp_path / "project", tmp_path / "inventory" / "hosts.yml")
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "envvars").write_text(yaml.safe_dump(environment(tmp_path / "reports")))
    job = ansible_runner.run(private_data_dir=str(tmp_path), playbook="play.yml", quiet=True, timeout=300)
    stdout = job.stdout.read()
    assert (job.status, job.rc) == ("successful", 0), stdout[-3000:]
    assert [re.sub(r": .*", "", line) for line in progress(stdout)] == [
        re.sub(r": .*", "", line) for line in progress(run[0].stdout)]
    [report] = (tmp_path / "reports").glob("play-*.json")
    batches = json.loads(report.read_text())["batches"]
    assert [(b["hosts"], b["failed"]) for b in batches] == [(b["hosts"], b["failed"]) for b in run[1]["batches"]]
    assert report.with_suffix(".html").exists()


class FakePlay:
    def __init__(self, name, serial=None):
        self.name, self.serial = name, serial

    def get_name(self):
        return self.name

    def get_variable_manager(self):
        raise RuntimeError("no inventory here")  # the callback only uses it for the estimate


def fake_run(tmp_path, timeline):
    """Drive the callback on a clock of our own: timeline is (time, call, arguments) in order."""
    from ansible_collections.vmfleet.deploy.plugins.callback import deploy_report

    now = [0.0]
    callback = deploy_report.CallbackModule()
    callback.get_option = {"report_dir": str(tmp_path), "progress": False}.get
    callback.clock = lambda: now[0]
    hosts = {name: SimpleNamespace(get_name=lambda name=name: name) for name in ("a", "b")}
    tasks = {}
    for at, call, *args in timeline:
        now[0] = 100.0 + at
        if call == "playbook":
            callback.v2_playbook_on_start(SimpleNamespace(_file_name="/x/roll.yml"))
        elif call == "play":
            callback.v2_playbook_on_play_start(FakePlay(*args))
        elif call == "start":
            host, name = args
            task = tasks.setdefault(name, SimpleNamespace(_uuid=name, get_name=lambda name=name: name))
            callback.v2_runner_on_start(hosts[host], task)
        else:
            host, name = args
            result = SimpleNamespace(_host=hosts[host], _task=tasks[name], _result={})
            getattr(callback, "v2_runner_on_" + call)(result)
    callback.v2_playbook_on_stats(SimpleNamespace(processed={"a": 1, "b": 1}, failures={"b": 1}, dark={}))
    [report] = tmp_path.glob("roll-*.json")
    return json.loads(report.read_text()), report.with_suffix(".html").read_text()


def test_the_time_between_a_hosts_tasks_is_waiting_or_ansibles_own(tmp_path):
    report, page = fake_run(tmp_path, [
        (0, "playbook"), (0, "play", "Roll", [2]),
        (0, "start", "a", "Pull the image x"), (0, "start", "b", "Pull the image x"),
        (1, "ok", "a", "Pull the image x"),  # a waits for b ...
        (1.5, "ok", "b", "Pull the image x"),  # ... then for Ansible
        (2, "start", "a", "Drain the server x"), (2, "start", "b", "Drain the server x"),
        (3, "ok", "a", "Drain the server x"), (3.5, "failed", "b", "Drain the server x"),
        (4, "start", "a", "Set the server ready x"), (4.2, "skipped", "a", "Set the server ready x"),
        (10, "play", "Record"), (10, "start", "a", "Record the release"), (11, "ok", "a", "Record the release"),
    ])
    a, b = report["hosts"]["a"], report["hosts"]["b"]
    assert [(s["play"], s["batch"], s["start"], s["end"]) for s in a["steps"]] == [
        ("Roll", 1, 100.0, 104.2), ("Record", None, 110.0, 111.0)]
    assert a["step_seconds"] == pytest.approx(5.2)
    assert a["gaps"] == [["wait", 101.0, 101.5], ["ansible", 101.5, 102.0], ["wait", 103.0, 103.5],
                         ["ansible", 103.5, 104.2]]
    assert a["phase_seconds"] == pytest.approx({"pull": 1, "drain": 1, "other": 1, "wait": 1, "ansible": 1.2})
    assert b["step_seconds"] == pytest.approx(3.5)
    assert b["gaps"] == [["ansible", 101.5, 102.0]]
    assert b["phase_seconds"] == pytest.approx({"pull": 1.5, "drain": 1.5, "ansible": 0.5})
    for record in (a, b):
        assert sum(record["phase_seconds"].values()) == pytest.approx(record["step_seconds"])
    assert page.count('class="wait"') == 2 and page.count('class="ansible"') == 3
    assert "<td>a</td><td style=\"color:#2a2\">ok</td><td>5.2</td>" in page


def test_a_hosts_overlapping_tasks_do_not_add_up_and_show_it(tmp_path):
    """Under the linear and free strategies a host runs one task at a time. Were two of its tasks to overlap,
    the report would not hide it: the phases then add up to more than the step time."""
    report, _page = fake_run(tmp_path, [
        (0, "playbook"), (0, "play", "Roll", [2]),
        (0, "start", "a", "Pull the image x"), (0, "start", "b", "Pull the image x"),
        (0.5, "start", "a", "Drain the server x"), (1, "ok", "a", "Pull the image x"),
        (2, "ok", "a", "Drain the server x"), (2, "ok", "b", "Pull the image x"),
    ])
    a = report["hosts"]["a"]
    assert a["step_seconds"] == pytest.approx(2.0) and a["gaps"] == []
    assert sum(a["phase_seconds"].values()) == pytest.approx(2.5)
