"""The haproxy role's TLS inputs: a certificate and key as files on the controller, or as PEM content.

Without a lab: the real role runs through ansible-playbook on localhost, once
for many cases (one inventory host per case, each an alias of localhost with
the case's variables as its inventory variables).

* Bad TLS input (one kind half given, both kinds, text that is not PEM, a
  path given as content) fails in the role's input checks, before any task
  that changes something, with a message that names the variables.
* Good input passes the TLS checks: each good case fails on purpose at a
  later check (a bad time value), which proves that the TLS checks passed.
* The key's text appears nowhere in the output. The json callback prints
  every result in full, so a task without no_log that saw the key shows it.
* Files and content give the same PEM, byte for byte, through the role's one
  writing task (``tasks_from: tls``, into the test's directory; the play ends
  before the reload handler). A second run changes nothing. The real HAProxy
  loads the PEM (``haproxy -c``), and the key is not printed even with
  ``-vvv --diff``.
* The configuration template serves HTTPS when the certificate comes as
  content.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from haproxy_fixture import HAPROXY, render_role_config

ROOT = Path(__file__).resolve().parents[3]
SERVICES = [{"name": "catalog", "frontend_port": 8001, "ports": {"blue": 8101, "green": 8102}}]
# Tasks that only read; anything else running means the role went past its input checks.
READ_ONLY = ("Validating arguments against arg spec", "Gather the facts the role needs", "Check ",
             "Load the per-OS values")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    """A self-signed certificate and its key (made by openssl), as files and as text."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make a test certificate")
    tmp = tmp_path_factory.mktemp("pki")
    cert, key = tmp / "lb.crt", tmp / "lb.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=lb.example"],
        check=True, capture_output=True, timeout=60,
    )
    key_text = key.read_text()
    # A line from the middle of the key: what a leak would show.
    secret = next(line for line in key_text.splitlines() if not line.startswith("-----"))
    return {"cert_file": str(cert), "key_file": str(key), "cert": cert.read_text(), "key": key_text, "secret": secret}


def run(tmp_path: Path, cases: dict[str, dict], *, tasks_from: str = "main", callback: str = "ansible.posix.json",
        args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run the haproxy role (entry point ``tasks_from``) once for every case; the play ends before any handler.

    A case is a host (a name for localhost) whose inventory variables are the case's: role inputs and
    the inventory's vmfleet_lb_tls_* alike. Host variables outrank the role's defaults, as inventory
    does, so one ansible-playbook run checks every case.
    """
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {
            "vars": {"vmfleet_services": SERVICES},
            "children": {
                "cases": {"hosts": {name: {**local, **case_vars} for name, case_vars in cases.items()}},
                "app_hosts": {"hosts": {"app1": {"ansible_host": "127.0.0.1"}}},
            },
        }
    }
    include = {"name": "vmfleet.deploy.haproxy"}
    if tasks_from != "main":
        include["tasks_from"] = tasks_from
    play = [{
        "name": "Apply the haproxy role",
        "hosts": "cases",
        "gather_facts": False,
        "tasks": [
            {"name": "Run the role", "ansible.builtin.include_role": include},
            # Never reload anything on this machine: end the play before the handlers.
            {"name": "End the play before the handlers", "ansible.builtin.meta": "end_play"},
        ],
    }]
    tmp_path.mkdir(parents=True, exist_ok=True)
    # PEM text is multi-line: it goes in the inventory file, never in -e key=value.
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK=callback,
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    return subprocess.run(
        ["ansible-playbook", "-i", str(tmp_path / "inventory.json"), *args, str(tmp_path / "play.yml")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def failure(result: dict, host: str) -> tuple[str, str, list[str]]:
    """The task that failed on ``host``, its message, and the names of the role's tasks that ran there."""
    tasks = [t for play in result["plays"] for t in play["tasks"] if host in t["hosts"]]
    ran = [t["task"]["name"].split(" : ", 1)[-1] for t in tasks if t["task"]["name"] != "Run the role"]
    failed = [t for t in tasks if t["hosts"][host].get("failed")]
    assert failed, f"{host}: no task failed"
    return failed[0]["task"]["name"].split(" : ", 1)[-1], failed[0]["hosts"][host].get("msg", ""), ran


def assert_no_key(proc: subprocess.CompletedProcess, pki: dict) -> None:
    assert pki["secret"] not in proc.stdout + proc.stderr, "the private key was printed"


def host_name(case: str) -> str:
    return "case_" + "".join(c if c.isalnum() else "_" for c in case)


# ------------------------------------------------------------------ the cases
ONE_WAY = "Check that the TLS certificate and key are given one way"
PEM = "Check that the TLS certificate and key are PEM"
BAD = [
    # (case, its variables (a function of the pki), the check that fails, words of its message)
    ("certificate content without key", lambda p: {"haproxy_tls_cert": p["cert"]},
     ONE_WAY, ["haproxy_tls_cert was given without haproxy_tls_key"]),
    ("key content without certificate", lambda p: {"haproxy_tls_key": p["key"]},
     ONE_WAY, ["haproxy_tls_key was given without haproxy_tls_cert"]),
    ("certificate file without key file", lambda p: {"haproxy_tls_cert_file": p["cert_file"]},
     ONE_WAY, ["haproxy_tls_cert_file was given without haproxy_tls_key_file"]),
    ("both kinds", lambda p: {"haproxy_tls_cert_file": p["cert_file"], "haproxy_tls_key_file": p["key_file"],
                              "haproxy_tls_cert": p["cert"], "haproxy_tls_key": p["key"]},
     ONE_WAY, ["both ways", "-e haproxy_tls_cert_file= -e haproxy_tls_key_file="]),
    ("file certificate, content key", lambda p: {"haproxy_tls_cert_file": p["cert_file"], "haproxy_tls_key": p["key"]},
     ONE_WAY, ["both ways (haproxy_tls_cert_file, haproxy_tls_key)"]),
    # An inventory that gives files (as the lab's does) and content on top: a conflict until the files are cleared.
    ("content over an inventory that gives files",
     lambda p: {"vmfleet_lb_tls_cert_file": p["cert_file"], "vmfleet_lb_tls_key_file": p["key_file"],
                "haproxy_tls_cert": p["cert"], "haproxy_tls_key": p["key"]},
     ONE_WAY, ["both ways", "vmfleet_lb_tls_cert_file"]),
    ("paths given as content", lambda p: {"haproxy_tls_cert": p["cert_file"], "haproxy_tls_key": p["key_file"]},
     PEM, ["haproxy_tls_cert holds no PEM certificate", "haproxy_tls_key holds no", "use haproxy_tls_cert_file"]),
    ("certificate given as the key", lambda p: {"haproxy_tls_cert": p["cert"], "haproxy_tls_key": p["cert"]},
     PEM, ["haproxy_tls_key holds no unencrypted PEM private key"]),
    ("key and certificate files swapped",
     lambda p: {"haproxy_tls_cert_file": p["key_file"], "haproxy_tls_key_file": p["cert_file"]},
     PEM, ["haproxy_tls_cert_file holds no PEM certificate", "haproxy_tls_key_file holds no"]),
    ("key file missing",
     lambda p: {"haproxy_tls_cert_file": p["cert_file"], "haproxy_tls_key_file": "/nonexistent.key"},
     "Check that the TLS certificate and key files are readable", ["haproxy_tls_key_file", "/nonexistent.key"]),
]
GOOD = [
    ("content", lambda p: {"haproxy_tls_cert": p["cert"], "haproxy_tls_key": p["key"]}),
    ("content from the inventory", lambda p: {"vmfleet_lb_tls_cert": p["cert"], "vmfleet_lb_tls_key": p["key"]}),
    ("content, the inventory's files cleared",
     lambda p: {"vmfleet_lb_tls_cert_file": p["cert_file"], "vmfleet_lb_tls_key_file": p["key_file"],
                "haproxy_tls_cert_file": "", "haproxy_tls_key_file": "",
                "haproxy_tls_cert": p["cert"], "haproxy_tls_key": p["key"]}),
    ("files from the inventory",
     lambda p: {"vmfleet_lb_tls_cert_file": p["cert_file"], "vmfleet_lb_tls_key_file": p["key_file"]}),
    ("no TLS", lambda p: {}),
]


@pytest.fixture(scope="module")
def checked(tmp_path_factory, pki) -> tuple[dict, subprocess.CompletedProcess]:
    """The role run once for every bad and good case; its json result and the process."""
    cases = {host_name(case): case_vars(pki) for case, case_vars, _check, _words in BAD}
    # A bad time value is checked after TLS: failing there proves that the TLS checks passed.
    cases.update({host_name(case): {**case_vars(pki), "haproxy_timeout_client": "30 seconds"}
                  for case, case_vars in GOOD})
    proc = run(tmp_path_factory.mktemp("checks"), cases)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return json.loads(proc.stdout[proc.stdout.index("{"):]), proc


@pytest.mark.parametrize(("case", "case_vars", "check", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_tls_input_fails_in_the_input_checks(checked, case, case_vars, check, words):
    task, message, ran = failure(checked[0], host_name(case))
    assert task.startswith(check), f"{case}: failed in {task!r}: {message}"
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"
    assert all(name.startswith(READ_ONLY) for name in ran), f"{case}: tasks ran past the checks: {ran}"


@pytest.mark.parametrize(("case", "case_vars"), GOOD, ids=[g[0] for g in GOOD])
def test_good_tls_input_passes_the_tls_checks(checked, case, case_vars):
    task, message, ran = failure(checked[0], host_name(case))
    assert task == "Check the time values", f"{case}: failed in {task!r}: {message}"
    assert all(name.startswith(READ_ONLY) for name in ran), f"{case}: tasks ran past the checks: {ran}"


def test_the_checks_never_print_the_key(checked, pki):
    assert_no_key(checked[1], pki)


# ------------------------------------------------------------ the written PEM
def changed_count(proc: subprocess.CompletedProcess, host: str) -> int:
    recap = proc.stdout[proc.stdout.rindex("PLAY RECAP"):]
    line = next(line for line in recap.splitlines() if line.startswith(host + " "))
    return int(line.split("changed=", 1)[1].split()[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="the role writes the PEM as root:root")
def test_files_and_content_give_the_same_pem_which_haproxy_loads(tmp_path, pki):
    pem = {"files": tmp_path / "files" / "vmfleet.pem", "content": tmp_path / "content" / "vmfleet.pem"}
    cases = {
        "files": {"haproxy_tls_cert_file": pki["cert_file"], "haproxy_tls_key_file": pki["key_file"],
                  "haproxy_tls_pem_file": str(pem["files"])},
        "content": {"haproxy_tls_cert": pki["cert"], "haproxy_tls_key": pki["key"],
                    "haproxy_tls_pem_file": str(pem["content"])},
    }
    first = run(tmp_path / "run1", cases, tasks_from="tls", callback="ansible.builtin.default", args=("-vvv", "--diff"))
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-2000:]
    assert_no_key(first, pki)
    expected = pki["cert"].strip() + "\n" + pki["key"].strip() + "\n"
    assert pem["files"].read_text() == pem["content"].read_text() == expected
    for path in pem.values():
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        assert (path.stat().st_uid, path.stat().st_gid) == (0, 0)
    assert changed_count(first, "files") == changed_count(first, "content") == 2  # the directory and the PEM

    again = run(tmp_path / "run2", cases, tasks_from="tls", callback="ansible.builtin.default", args=("-vvv", "--diff"))
    assert again.returncode == 0, again.stdout[-3000:]
    assert_no_key(again, pki)
    assert changed_count(again, "files") == changed_count(again, "content") == 0

    if not HAPROXY:
        pytest.skip("no haproxy binary to load the PEM")
    config = tmp_path / "check.cfg"
    config.write_text(
        "defaults\n  mode http\n  timeout client 1s\n  timeout server 1s\n  timeout connect 1s\n"
        f"frontend f\n  bind 127.0.0.1:1 ssl crt {pem['content']}\n  default_backend b\n"
        "backend b\n  server s 127.0.0.1:2\n"
    )
    check = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_frontends_serve_https_when_the_certificate_comes_as_content(tmp_path, pki):
    config = render_role_config(
        tmp_path,
        {"haproxy_services": SERVICES, "__haproxy_version": "2.6",
         "haproxy_tls_cert": pki["cert"], "haproxy_tls_key": pki["key"]},
        {"app1": "127.0.0.1"},
    )
    assert "bind :8001 ssl crt /etc/haproxy/certs/vmfleet.pem alpn h2,http/1.1" in config
    assert pki["secret"] not in config
