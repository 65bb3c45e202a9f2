"""Tests for the pure parts of bench/rollout.py: its statistics, its refusal to
record a rollout that failed requests, and how it writes bench/RESULTS.md.

The bench itself needs a lab of 8 hosts and minutes; these need neither.
"""

# bench/ is on pytest's pythonpath (pyproject.toml): the scripts import as modules, as they import each other.
from __future__ import annotations

import contextlib
import datetime
import subprocess
import sys
from pathlib import Path

import pytest
import rollout

ROOT = Path(__file__).resolve().parents[3]

DATE = datetime.date(2026, 11, 28)


def probe(total=500, failed=0, errors=None, covered=True):
    return {"total": total, "failed": failed, "errors": errors or {}, "covered": covered}


def run(hosts, version, wall, waits, keepalive=None, fresh=None):
    return rollout.Run(hosts, version, wall, waits,
                       {"keep-alive": keepalive or probe(), "new connection": fresh or probe()})


def test_probe_modes_are_keepalive_and_new_connection():
    assert rollout.PROBE_MODES == {"keep-alive": True, "new connection": False}


def test_spread_is_the_median_not_the_mean():
    assert rollout.spread([10.0, 11.0, 30.0]) == (11.0, 10.0, 30.0)  # the mean would be 17.0
    assert rollout.spread([4.0, 1.0, 2.0, 100.0]) == (3.0, 1.0, 100.0)  # even count: middle two
    assert rollout.spread([5.5]) == (5.5, 5.5, 5.5)
    with pytest.raises(ValueError):
        rollout.spread([])


def test_run_plan_moves_every_scope_to_the_other_version():
    assert rollout.run_plan(3) == [
        (8, "1.1.0"), (8, "1.0.0"), (8, "1.1.0"),
        (4, "1.0.0"), (4, "1.1.0"), (4, "1.0.0"),
    ]
    assert rollout.run_plan(1) == [(8, "1.1.0"), (4, "1.0.0")]
    with pytest.raises(ValueError):
        rollout.run_plan(0)


def test_rows_report_medians_with_min_and_max_per_scope():
    runs = [
        run(8, "1.1.0", 100.0, 60.0, probe(total=400)),
        run(8, "1.0.0", 104.0, 70.0, probe(total=410)),
        run(8, "1.1.0", 130.0, 65.0, probe(total=420)),
        run(4, "1.0.0", 50.0, 30.0, fresh=probe(total=250)),
        run(4, "1.1.0", 52.0, 36.0, fresh=probe(total=260)),
    ]
    four, eight = rollout.result_rows(runs, DATE)
    assert eight == (
        "| 2026-11-28 | rolling, batch 1, 8 hosts | 104.0 s (100.0–130.0) | 100.0, 104.0, 130.0 "
        "| waiting tasks 65.0 s (60.0–70.0), median wall/waits 1.60, "
        "failed requests: keep-alive 0 of 1230; new connection 0 of 1500 | - |"
    )
    assert four == (
        "| 2026-11-28 | rolling, batch 1, 4 hosts | 51.0 s (50.0–52.0) | 50.0, 52.0 "
        "| waiting tasks 33.0 s (30.0–36.0), median wall/waits 1.55, "
        "failed requests: keep-alive 0 of 1000; new connection 0 of 510 | - |"
    )


def test_no_failure_means_nothing_to_refuse():
    assert rollout.failures([run(8, "1.1.0", 100.0, 60.0), run(4, "1.0.0", 50.0, 30.0)]) == []


@pytest.mark.parametrize(
    "keepalive, fresh, expected",
    [
        (probe(failed=1, errors={"reset": 1}), probe(),
         "4 hosts -> 1.1.0, keep-alive probe: 1 of 500 requests failed (reset: 1)"),
        (probe(), probe(failed=3, errors={"http-5xx": 2, "refused": 1}),
         "4 hosts -> 1.1.0, new connection probe: 3 of 500 requests failed (http-5xx: 2, refused: 1)"),
        (probe(), probe(covered=False),
         "4 hosts -> 1.1.0, new connection probe: the probe hit its bound before the run ended"),
    ],
)
def test_any_failed_request_is_a_reason_to_refuse(keepalive, fresh, expected):
    runs = [run(8, "1.0.0", 100.0, 60.0), run(4, "1.1.0", 50.0, 30.0, keepalive, fresh)]
    assert rollout.failures(runs) == [expected]


def test_no_run_is_nothing_to_record():
    assert rollout.failures([]) == ["no timed run"]


RESULTS = """\
# Benchmark results

Intro.

| date | benchmark | median | runs | notes | target |
|---|---|---|---|---|---|
| 2026-11-27 | lab create 4+1+1 (cached images) | 22.2 s | 21.7, 22.2, 23.5 | no-op | < 60 s: meets |
| 2026-11-27 | rolling, batch 1, 4 hosts | 51.7 s (mean, not a median) | 51.3, 52.2 | old | - |
| 2026-11-27 | rolling, batch 1, 8 hosts | 100.8 s (mean, not a median) | 100.6, 101.1 | old | - |

Notes on the rolling rows | with a pipe.
"""


def test_recording_replaces_the_rows_of_the_same_benchmark_in_place():
    rows = ["| 2026-11-28 | rolling, batch 1, 4 hosts | new4 |", "| 2026-11-28 | rolling, batch 1, 8 hosts | new8 |"]
    assert rollout.updated_results(RESULTS, rows) == RESULTS.replace(
        "| 2026-11-27 | rolling, batch 1, 4 hosts | 51.7 s (mean, not a median) | 51.3, 52.2 | old | - |", rows[0]
    ).replace("| 2026-11-27 | rolling, batch 1, 8 hosts | 100.8 s (mean, not a median) | 100.6, 101.1 | old | - |",
              rows[1])


def test_recording_a_new_benchmark_appends_it_to_the_table_not_the_file():
    row = "| 2026-11-28 | rolling, batch 2, 8 hosts | x |"
    text = rollout.updated_results(RESULTS, [row])
    lines = text.splitlines()
    assert lines[lines.index(row) - 1].startswith("| 2026-11-27 | rolling, batch 1, 8 hosts ")
    assert lines[lines.index(row) + 1] == ""
    assert text.replace(row + "\n", "") == RESULTS


def test_the_recorded_results_file_has_a_table_the_bench_can_update():
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    rows = rollout.result_rows([run(4, "1.1.0", 50.0, 30.0), run(8, "1.1.0", 100.0, 60.0)], DATE)
    updated = rollout.updated_results(text, rows)
    assert all(updated.count(row) == 1 for row in rows)
    assert "rolling, batch 1, 4 hosts | 51.7 s" not in updated
    assert updated.count("| lab create ") == text.count("| lab create ")


@pytest.mark.parametrize("record", [True, False])
def test_a_failed_request_exits_non_zero_and_writes_nothing(monkeypatch, tmp_path, capsys, record):
    results = tmp_path / "RESULTS.md"
    results.write_text(RESULTS)
    monkeypatch.setattr(rollout, "RESULTS", results)
    calls = []

    @contextlib.contextmanager
    def lab(*args, **kwargs):
        calls.append("set up")
        try:
            yield ["-i", "inventory"]
        finally:
            calls.append("torn down")

    monkeypatch.setattr(rollout, "bench_lab", lab)
    runs = iter([run(8, "1.1.0", 100.0, 60.0), run(4, "1.0.0", 50.0, 30.0, fresh=probe(failed=2, errors={"reset": 2}))])
    monkeypatch.setattr(rollout, "timed_rollout", lambda *args: next(runs))
    monkeypatch.setattr(sys, "argv", ["rollout.py", "--runs", "1"] + (["--record"] if record else []))
    with pytest.raises(SystemExit) as info:
        rollout.main()
    assert info.value.code == "not a zero-downtime rollout" + (": nothing recorded" if record else "")
    assert "4 hosts -> 1.0.0, new connection probe: 2 of 500 requests failed (reset: 2)" in capsys.readouterr().err
    assert results.read_text() == RESULTS
    assert calls == ["set up", "torn down"]


def test_a_clean_bench_records_its_rows(monkeypatch, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(RESULTS)
    monkeypatch.setattr(rollout, "RESULTS", results)
    monkeypatch.setattr(rollout, "bench_lab", lambda *args, **kwargs: contextlib.nullcontext(["-i", "inventory"]))
    monkeypatch.setattr(rollout, "timed_rollout", lambda inv, hosts, version, *rest: run(hosts, version, 10.0, 5.0))
    monkeypatch.setattr(sys, "argv", ["rollout.py", "--runs", "1", "--record"])
    assert rollout.main() == 0
    text = results.read_text()
    assert "| rolling, batch 1, 4 hosts | 10.0 s (10.0–10.0) |" in text
    assert "| rolling, batch 1, 8 hosts | 10.0 s (10.0–10.0) |" in text
    assert "51.7 s" not in text and "100.8 s" not in text


def test_the_script_still_starts():
    help_text = subprocess.run([sys.executable, str(ROOT / "bench" / "rollout.py"), "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--record" in help_text and "--runs" in help_text
