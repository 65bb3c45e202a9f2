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
    assert len(rects) == sum(len(h["spans"]) for h in report["hosts"].values())
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
