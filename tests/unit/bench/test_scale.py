"""Tests for the pure parts of bench/scale.py: how it splits a batch into the hosts' platform time and
Ansible's overhead, its refusal to record a rollout that failed requests or missed hosts, and its memory
sampler on a real process tree. The bench itself needs labs of up to 64 hosts; these need none."""

# bench/ is on pytest's pythonpath (pyproject.toml).
from __future__ import annotations

import datetime
import subprocess
import sys
import time

import scale


def report(batches, spans):
    return {"batches": batches, "hosts": {host: {"spans": s} for host, s in spans.items()}}


def batch(number, hosts, start, end, play="Roll out in batches"):
    return {"play": play, "number": number, "hosts": hosts, "start": start, "end": end, "failed": []}


def test_a_batch_is_its_slowest_hosts_platform_time_and_the_rest_is_overhead():
    spans = {
        # app1: 1 s drain, 2 s replace, 1 s gate, 0.5 s enable, and 3 s of other tasks: platform 4.5 s.
        "app1": [["drain", 100, 101, "t"], ["replace", 101, 103, "t"], ["other", 103, 106, "t"],
                 ["gate", 106, 107, "t"], ["enable", 107, 107.5, "t"]],
        # app2: platform 5 s; the pull before the batch is not the batch's.
        "app2": [["pull", 90, 99, "t"], ["replace", 100, 105, "t"]],
        # app3, in batch 2, with a span that runs past the batch's end (counted up to it).
        "app3": [["drain", 110, 112, "t"], ["gate", 119, 125, "t"]],
    }
    figures = scale.batch_figures(report([batch(1, ["app1", "app2"], 99.5, 108.0),
                                          batch(2, ["app3"], 109.0, 120.0)], spans))
    assert figures == [
        {"hosts": 2, "seconds": 8.5, "platform": 5.0, "overhead": 3.5},
        {"hosts": 1, "seconds": 11.0, "platform": 3.0, "overhead": 8.0},
    ]


def test_batches_of_other_plays_and_empty_or_unfinished_ones_are_left_out():
    figures = scale.batch_figures(report([batch(1, ["localhost"], 0, 5, play="Plan the rolling deployment"),
                                          batch(1, [], 5, 6), batch(2, ["app1"], 6, None)], {}))
    assert figures == []


def run(hosts=8, replaced=8, failed=0, covered=True):
    probe = {"total": 1000, "failed": failed, "errors": {"timeout": failed} if failed else {}, "rps": 120.0,
             "covered": covered}
    batches = [{"hosts": 2, "seconds": 9.0, "platform": 5.0, "overhead": 4.0}] * 4
    return scale.Run(hosts, "1.1.0", 40.0, batches, 3.0, 1.5, 1.0, 300 * 2**20, 90 * 2**20, replaced,
                     {"keep-alive": probe, "new connection": dict(probe)})


def test_a_run_with_failed_requests_a_missed_host_or_an_uncovered_probe_is_not_recorded():
    assert scale.problems([run()]) == []
    assert scale.problems([]) == ["no timed run"]
    assert any("2 of 1000 requests failed" in p for p in scale.problems([run(failed=2)]))
    assert scale.problems([run(replaced=7)]) == ["8 hosts -> 1.1.0: 7 hosts replaced, not 8"]
    assert any("hit its bound" in p for p in scale.problems([run(covered=False)]))


def test_the_row_gives_batches_overhead_memory_and_the_lab_times():
    (row,) = scale.result_rows([run(64, 64)], {64: {"lab": 95.2, "setup": 300.4}}, datetime.date(2026, 12, 8))
    assert row.startswith("| 2026-12-08 | rolling at batch 25%, 64 hosts | 40.0 s (40.0–40.0) | 40.0 |")
    assert "4 batches of 2 hosts; per batch 9.0 s (9.0–9.0), of which platform 5.0 s and overhead 4.0 s" in row
    assert "before the first batch 3.0 s (pull 1.5 s), after the last 1.0 s" in row
    assert "peak RSS 300 MiB in all, largest process 90 MiB" in row
    assert "lab create 95 s, setup 300 s" in row and "keep-alive 0 of 1000 (min 120 req/s)" in row
    assert f"forks {scale.forks()}" in row


def test_the_memory_sampler_counts_a_process_and_its_children():
    # A parent that starts a child holding 64 MiB: the tree's peak holds both, the largest process the child.
    code = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "'import time; b = bytearray(64 * 2**20); time.sleep(1.5)'])")
    proc = subprocess.Popen([sys.executable, "-c", code])
    sampler = scale.MemorySampler(proc.pid, interval=0.05)
    sampler.start()
    proc.wait(timeout=30)
    time.sleep(0.1)
    sampler.done.set()
    sampler.join(timeout=5)
    assert sampler.peak_process >= 64 * 2**20
    assert sampler.peak_tree >= sampler.peak_process + 5 * 2**20  # the parent interpreter too
