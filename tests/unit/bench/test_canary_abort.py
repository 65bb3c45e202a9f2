"""Tests for the pure parts of bench/canary_abort.py: how late the canary's last answer came
after the verdict, the refusal to record a run that was not a clean abort, the row it puts
into bench/RESULTS.md, and how it reads canary.yml's report.

The bench itself needs a lab of 5 hosts and minutes; these need neither.
"""

# bench/ is on pytest's pythonpath (pyproject.toml): the scripts import as modules, as they import each other.
from __future__ import annotations

import base64
import contextlib
import datetime
import json
import math
import subprocess
import sys
from pathlib import Path

import canary_abort as canary
import pytest
import yaml
from rollout import benchmark_of

ROOT = Path(__file__).resolve().parents[3]

DATE = datetime.date(2026, 11, 28)
STABLE, CANARY = "1.0.0", "1.1.0-errors"
SHOP = yaml.safe_load((ROOT / "inventories/lab/group_vars/all/shop.yml").read_text())
PORT = next(s for s in SHOP["vmfleet_services"] if s["name"] == "catalog")["frontend_port"]


def probe(total=6000, rps=118.0, covered=True, failed=0, errors=None):
    return {"total": total, "failed": failed, "rps": rps, "covered": covered, "errors": errors or {}}


def verdict(step=1, outcome="fail", decided_at=1000.0):
    return {"step": step, "weight": 20, "verdict": outcome, "decided_at": decided_at}


def run(*, start=0.25, end=0.75, decided_at=1000.0, report=None, keepalive=None, fresh=None, probes=None,
        after=None):
    """An aborted canary: the canary's last answer started `start` s and ended `end` s after the verdict.

    Before it, the keep-alive probe saw a stable answer, a canary 500 and a canary 200, the new-connection
    probe a canary answer; after it, stable answers only. `keepalive` / `fresh` replace those answers.
    """
    at = decided_at
    answers = {
        "keep-alive": keepalive if keepalive is not None else [
            (at - 2.0, at - 1.9, 200, STABLE), (at - 1.0, at - 0.9, 500, CANARY),
            (at + start, at + end, 200, CANARY), (at + 3.0, at + 3.1, 200, STABLE)],
        "new connection": fresh if fresh is not None else [
            (at - 1.5, at - 1.4, 200, CANARY), (at + 2.0, at + 2.1, 200, STABLE)],
    }
    return canary.Run(at, [verdict(decided_at=at)] if report is None else report, answers,
                      probes or {"keep-alive": probe(), "new connection": probe(total=5000)},
                      after or {"keep-alive": {STABLE}, "new connection": {STABLE}})


# ------------------------------------------------------------------ late


def test_late_takes_the_last_canary_answer_of_both_probes_from_the_verdict():
    figures = canary.late(run(decided_at=1000.0,
                              keepalive=[(990.0, 990.1, 200, STABLE), (995.0, 995.2, 200, CANARY),
                                         (1000.25, 1000.5, 500, CANARY), (1000.75, 1004.0, 200, STABLE)],
                              fresh=[(999.5, 1001.0, 200, CANARY), (1002.0, 1002.1, 200, STABLE)]))
    # The last start is the keep-alive probe's 500, the last end the new-connection probe's answer.
    assert figures == {"last_start": pytest.approx(0.25), "last_end": pytest.approx(1.0), "started_after": 1}


def test_late_counts_every_canary_answer_started_after_the_verdict():
    figures = canary.late(run(decided_at=50.0,
                              keepalive=[(50.5, 50.6, 200, CANARY), (50.75, 50.8, 500, CANARY)],
                              fresh=[(51.0, 51.5, 200, CANARY), (49.0, 49.1, 200, CANARY)]))
    assert figures == {"last_start": pytest.approx(1.0), "last_end": pytest.approx(1.5), "started_after": 3}


def test_late_is_negative_when_no_canary_answer_started_after_the_verdict():
    figures = canary.late(run(start=-0.5, end=-0.25))
    assert figures == {"last_start": pytest.approx(-0.5), "last_end": pytest.approx(-0.25), "started_after": 0}


def test_late_ignores_the_answers_of_other_versions():
    figures = canary.late(run(decided_at=1000.0,
                              keepalive=[(999.0, 999.5, 200, CANARY), (1005.0, 1006.0, 200, STABLE),
                                         (1007.0, 1008.0, 503, None), (1009.0, 1010.0, 200, "1.1.0")],
                              fresh=[]))
    assert figures == {"last_start": pytest.approx(-1.0), "last_end": pytest.approx(-0.5), "started_after": 0}


def test_late_is_nan_without_any_canary_answer():
    figures = canary.late(run(keepalive=[(1001.0, 1001.1, 200, STABLE)], fresh=[(1002.0, 1002.1, 200, STABLE)]))
    assert math.isnan(figures["last_start"]) and math.isnan(figures["last_end"])
    assert figures["started_after"] == 0


# ------------------------------------------------------------------ problems


def test_a_clean_abort_has_no_problem():
    assert canary.problems([run(), run(start=-0.5, end=0.5, decided_at=2000.0)]) == []


def test_the_canarys_own_500s_are_not_a_problem():
    fresh = [(999.0, 999.1, 500, CANARY), (1000.5, 1000.6, 500, CANARY), (1002.0, 1002.1, 200, STABLE)]
    assert canary.problems([run(fresh=fresh)]) == []


def test_the_probes_failed_count_alone_is_not_a_problem():
    # The probe counts the canary's 500s as failed requests; the answers say which ones they were.
    probes = {"keep-alive": probe(failed=40, errors={"http-5xx": 40}), "new connection": probe(failed=3)}
    assert canary.problems([run(probes=probes)]) == []


@pytest.mark.parametrize(("bad", "words"), [
    (run(report=[verdict(outcome="pass")]), "did not fail at step 1 alone: [(1, 'pass')]"),
    (run(report=[verdict(step=1, outcome="pass"), verdict(step=2, outcome="fail")]),
     "did not fail at step 1 alone: [(1, 'pass'), (2, 'fail')]"),
    (run(report=[verdict(step=2)]), "did not fail at step 1 alone: [(2, 'fail')]"),
    (run(report=[verdict(), verdict()]), "did not fail at step 1 alone: [(1, 'fail'), (1, 'fail')]"),
    (run(report=[]), "did not fail at step 1 alone: []"),
    (run(fresh=[(999.0, 999.1, 200, CANARY), (1001.0, 1001.1, 503, STABLE)]),
     "new connection probe: 1 requests failed other than the canary's 500s, such as (1001.0, 1001.1, 503, '1.0.0')"),
    (run(keepalive=[(999.0, 999.1, 200, CANARY), (1001.0, 1001.1, 0, None), (1001.2, 1001.3, None, None)]),
     "keep-alive probe: 2 requests failed other than the canary's 500s, such as (1001.0, 1001.1, 0, None)"),
    (run(keepalive=[(999.0, 999.1, 502, CANARY), (1001.0, 1001.1, 200, STABLE)]),
     "keep-alive probe: 1 requests failed other than the canary's 500s"),
    (run(probes={"keep-alive": probe(), "new connection": probe(rps=99.5)}),
     "run 1, new connection probe: 99.5 requests/s, under 100"),
    (run(probes={"keep-alive": probe(covered=False), "new connection": probe()}),
     "run 1, keep-alive probe: the probe hit its bound before the run ended"),
    (run(after={"keep-alive": {STABLE}, "new connection": {STABLE, CANARY}}),
     "run 1, new connection probe: after the play, answers came from ['1.0.0', '1.1.0-errors'], not 1.0.0 alone"),
    (run(after={"keep-alive": {None, STABLE}, "new connection": {STABLE}}),
     "run 1, keep-alive probe: after the play, answers came from ['1.0.0', 'None'], not 1.0.0 alone"),
    (run(keepalive=[(1001.0, 1001.1, 200, STABLE)], fresh=[(1002.0, 1002.1, 200, STABLE)]),
     "run 1: no request reached the canary: nothing was measured"),
])
def test_what_is_not_a_clean_abort_is_not_recorded(bad, words):
    found = canary.problems([bad])
    assert len(found) == 1 and words in found[0], found


def test_problems_say_which_run_they_are_in():
    found = canary.problems([run(), run(report=[verdict(outcome="pass")])])
    assert found == ["run 2: the canary did not fail at step 1 alone: [(1, 'pass')]"]


# ------------------------------------------------------------------ the row


RUNS = [run(start=0.75, end=1.25, decided_at=1000.0), run(start=-0.5, end=0.5, decided_at=2000.0),
        run(start=0.25, end=0.75, decided_at=3000.0)]
ROW = ("| 2026-11-28 | canary abort, verdict to last canary response | 0.75 s (0.50–1.25) | 1.25, 0.50, 0.75 "
       "| end of the last canary answer after the verdict; its start 0.25 s (-0.50–0.75); "
       "canary answers started after the verdict 1 (0–1); canary answers in all 9; "
       "requests: keep-alive 18000; new connection 15000, no failed request but the canary's own 500s "
       "| issue 9: no canary response started more than 1 s after the verdict |")


def test_the_row_has_the_median_min_and_max_and_every_run():
    assert canary.result_row(RUNS, DATE) == ROW


def test_the_rows_benchmark_is_the_canary_abort():
    assert benchmark_of(canary.result_row(RUNS, DATE)) == "canary abort, verdict to last canary response"


RESULTS = """\
# Benchmark results

Intro.

| date | benchmark | median | runs | notes | target |
|---|---|---|---|---|---|
| 2026-11-27 | lab create 4+1+1 (cached images) | 22.2 s | 21.7, 22.2, 23.5 | no-op | < 60 s: meets |
| 2026-11-27 | canary abort, verdict to last canary response | 3.10 s (2.90–3.40) | 3.10, 2.90, 3.40 | old | - |
| 2026-11-27 | rolling, batch 1, 4 hosts | 51.7 s | 51.3, 52.2 | old | - |

Notes | with a pipe.
"""
OLD = "| 2026-11-27 | canary abort, verdict to last canary response | 3.10 s (2.90–3.40) | 3.10, 2.90, 3.40 | old | - |"


def test_recording_replaces_the_earlier_canary_abort_row_in_place():
    assert canary.updated_results(RESULTS, [canary.result_row(RUNS, DATE)]) == RESULTS.replace(OLD, ROW)


def test_recording_the_first_canary_abort_appends_it_to_the_table():
    text = RESULTS.replace(OLD + "\n", "")
    updated = canary.updated_results(text, [canary.result_row(RUNS, DATE)])
    lines = updated.splitlines()
    assert lines[lines.index(ROW) - 1].startswith("| 2026-11-27 | rolling, batch 1, 4 hosts ")
    assert lines[lines.index(ROW) + 1] == ""
    assert updated.replace(ROW + "\n", "") == text


def test_the_recorded_results_file_has_a_table_the_bench_can_update():
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    updated = canary.updated_results(text, [ROW])
    assert updated.count(ROW) == 1
    assert updated.count("| canary abort, verdict to last canary response |") == 1


# ------------------------------------------------------------------ report_of


REPORT = [{"step": 1, "weight": 20, "verdict": "fail", "decided_at": 1764320000.25, "reasons": ["5xx 31 %"]}]
ENCODED = base64.b64encode(json.dumps(REPORT).encode()).decode()


@pytest.mark.parametrize("line", [
    f'        "vmfleet-canary-report={ENCODED}"',
    f'        "vmfleet-canary-report={ENCODED}",',
    f'    "msg": "vmfleet-canary-report={ENCODED}\\"",',
    f"    - vmfleet-canary-report={ENCODED}",
    f"\"msg\": \"['step 1 (20 %, 4 s): fail', 'vmfleet-canary-report={ENCODED}']\"",
])
def test_the_report_is_read_from_the_debug_output(line):
    stdout = "\n".join(["TASK [Print the verdicts (and the report, base64 JSON, for scripts)] ***",
                        "ok: [app1] => {", '    "msg": [', '        "step 1 (20 %, 4 s): fail (5xx 31 %)",',
                        line, "    ]", "}", "PLAY RECAP ***"])
    assert ENCODED.endswith("=")  # the padding is part of the base64, not a separator
    assert canary.report_of(stdout) == REPORT


def test_no_report_is_an_empty_list():
    assert canary.report_of("PLAY [Canary] ***\nfatal: [app1]: FAILED! => {}\nPLAY RECAP ***\n") == []
    assert canary.report_of("") == []


# ------------------------------------------------------------------ main


def lab_and_runs(monkeypatch, tmp_path, runs):
    """Patch the lab and the runs in; return the results file and the calls made."""
    results = tmp_path / "RESULTS.md"
    results.write_text(RESULTS)
    monkeypatch.setattr(canary, "RESULTS", results)
    calls = {"lab": [], "runs": []}

    def lab(*args, **kwargs):
        calls["lab"].append((args, kwargs))
        return contextlib.nullcontext(["-i", "inv"])

    pending = iter(runs)

    def aborted(inv, url, cafile):
        calls["runs"].append((inv, url, cafile))
        return next(pending)

    monkeypatch.setattr(canary, "bench_lab", lab)
    monkeypatch.setattr(canary, "aborted_canary", aborted)
    return results, calls


@pytest.mark.parametrize("record", [True, False])
def test_a_run_with_a_problem_exits_non_zero_and_writes_nothing(monkeypatch, tmp_path, capsys, record):
    bad = run(fresh=[(999.0, 999.1, 200, CANARY), (1001.0, 1001.1, 503, STABLE)])
    results, calls = lab_and_runs(monkeypatch, tmp_path, [run(), bad])
    monkeypatch.setattr(sys, "argv", ["canary_abort.py", "--runs", "2"] + (["--record"] if record else []))
    with pytest.raises(SystemExit) as info:
        canary.main()
    assert info.value.code == "not a clean abort" + (": nothing recorded" if record else "")
    assert "run 2, new connection probe: 1 requests failed other than the canary's 500s" in capsys.readouterr().err
    assert results.read_text() == RESULTS
    assert [args[:5] for args, _kwargs in calls["lab"]] == [("vmfleet-canary", "10.77.114", 4, canary.STATE,
                                                             (STABLE, CANARY))]
    assert len(calls["runs"]) == 2


def test_a_clean_bench_records_its_row(monkeypatch, tmp_path, capsys):
    results, calls = lab_and_runs(monkeypatch, tmp_path, RUNS)
    monkeypatch.setattr(sys, "argv", ["canary_abort.py", "--runs", "3", "--record"])
    assert canary.main() == 0
    assert results.read_text().splitlines().count(OLD) == 0
    assert results.read_text() == RESULTS.replace(OLD, canary.result_row(RUNS, datetime.date.today()))
    out = capsys.readouterr().out
    assert "run 1: last canary answer started +0.75 s and ended +1.25 s from the verdict; 1 started after it" in out
    assert "run 2: last canary answer started -0.50 s and ended +0.50 s from the verdict; 0 started after it" in out
    assert calls["runs"] == [(["-i", "inv"], f"https://10.77.114.10:{PORT}/",
                              str(canary.STATE / "pki" / "ca.crt"))] * 3


def test_a_clean_bench_without_record_writes_nothing(monkeypatch, tmp_path):
    results, _calls = lab_and_runs(monkeypatch, tmp_path, [run()])
    monkeypatch.setattr(sys, "argv", ["canary_abort.py", "--runs", "1"])
    assert canary.main() == 0
    assert results.read_text() == RESULTS


def test_an_existing_lab_is_used_through_its_inventory(monkeypatch, tmp_path):
    results, calls = lab_and_runs(monkeypatch, tmp_path, [run()])
    hosts = {"all": {"children": {"loadbalancers": {"hosts": {"lb1": {"ansible_host": "10.77.113.10"}}}}}}

    def inventory(argv, **kwargs):
        assert argv[:3] == ["ansible-inventory", "-i", "some/inventory"] and kwargs["cwd"] == canary.ROOT
        return subprocess.CompletedProcess(argv, 0, stdout=yaml.safe_dump(hosts), stderr="")

    monkeypatch.setattr(canary.subprocess, "run", inventory)
    monkeypatch.setattr(sys, "argv", ["canary_abort.py", "--runs", "1", "--inventory", "some/inventory",
                                      "--cafile", "some/ca.crt"])
    assert canary.main() == 0
    assert not calls["lab"]
    assert calls["runs"] == [(["-i", "some/inventory"], f"https://10.77.113.10:{PORT}/", "some/ca.crt")]
    assert results.read_text() == RESULTS


def test_no_run_is_refused(monkeypatch, tmp_path, capsys):
    _results, calls = lab_and_runs(monkeypatch, tmp_path, [])
    monkeypatch.setattr(sys, "argv", ["canary_abort.py", "--runs", "0"])
    with pytest.raises(SystemExit) as info:
        canary.main()
    assert info.value.code == 2
    assert "--runs must be 1 or more" in capsys.readouterr().err
    assert calls == {"lab": [], "runs": []}


def test_the_script_still_starts():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "canary_abort.py"), "--help"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "--inventory" in proc.stdout and "--record" in proc.stdout and "--runs" in proc.stdout
