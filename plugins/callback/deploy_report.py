# -*- coding: utf-8 -*-
# Copyright (c) vmfleet.deploy contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Progress lines and a timeline report (JSON and HTML) of a vmfleet deployment."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: deploy_report
type: aggregate
short_description: Progress lines and a timeline report of a deployment
version_added: 0.1.0
description:
  - Runs beside the stdout callback (the default one, C(ansible.posix.json), or ansible-runner's) once it is
    enabled, for example with C(ANSIBLE_CALLBACKS_ENABLED=vmfleet.deploy.deploy_report).
  - "While a play with C(serial) runs, it prints one line per host and one per batch when the batch ends:
    the host's result, hosts done of the total, the time since the first batch started, and an estimate of
    the time left (the mean time of a batch so far, times the batches left)."
  - The total is the play's hosts. When the strategy worked out its batches (the fact C(__vmfleet_plan)
    that C(rolling.yml) sets), their number is used for the estimate.
  - At the end of the playbook it writes a JSON report and a self-contained HTML page (no script, no
    external file) into O(report_dir), and prints both paths. The page has a timeline, one row per host,
    with the phases of each host (pull, drain, replace, gate, enable, rollback, flip, split), failures and
    rollbacks marked on the host's row, the batches with their result, the failures and rollbacks, and each
    host's step time with its phases.
  - A task's phase comes from its name, as the collection's playbooks and roles name their tasks (see
    C(PHASES) in the plugin). Tasks of no phase count as the host's other work.
  - "A host's step time is its time in each play it ran tasks in, each batch of a C(serial) play on its own:
    from the start of its first task there (skipped or not) to the end of its last. The report splits it in
    full: the phases of the tasks that ran, and the time between them as two more phases, C(wait) (another
    host of the play or batch was still running a task) and C(ansible) (no task of any host ran: the
    controller's own work between tasks, and tasks it skipped). The JSON has them per host as C(steps),
    C(step_seconds), C(gaps) and C(phase_seconds). The phase times add up to the step time, since a host runs
    one task at a time; tasks of a host that overlapped would add up to more, and the report would show it."
  - It keeps a few numbers per task and host, so its cost grows with the tasks run, not with their output.
options:
  report_dir:
    description:
      - The directory for the reports, created when missing. Each playbook run writes
        C(<playbook>-<UTC time>.json) and C(.html) there.
    type: path
    default: ~/.ansible/vmfleet-reports
    env:
      - name: VMFLEET_REPORT_DIR
    ini:
      - section: vmfleet_deploy_report
        key: report_dir
  progress:
    description: Print the progress lines.
    type: bool
    default: true
    env:
      - name: VMFLEET_REPORT_PROGRESS
    ini:
      - section: vmfleet_deploy_report
        key: progress
"""

import bisect
import datetime
import html
import json
import os
import re
import time

from ansible.plugins.callback import CallbackBase

# Phase of a task, from the start of its name (without the role's prefix). The first match wins.
PHASES = (
    ("rollback", ("Roll each service back", "Roll back", "Mark the host as rolled back")),
    ("pull", ("Pull the image", "Load the image archive", "Copy the image archive")),
    ("drain", ("Drain the server", "Keep the stable hosts' idle servers in MAINT")),
    ("replace", ("Ensure the slot's container", "Check whether the slot's container must be replaced",
                 "Stop the unit of the container being replaced", "Ensure the container's systemd unit")),
    ("gate", ("Run the image's own health check", "Gate on", "Read the container's state")),
    ("enable", ("Set the server ready",)),
    ("flip", ("Flip the live slot",)),
    ("split", ("Send a share of new requests", "Send every new request to the stable slot")),
)
# The time between a host's tasks in its step: "wait" while a task of another host ran, "ansible" while none did.
GAPS = ("wait", "ansible")
COLORS = {"pull": "#6c8ebf", "drain": "#d6b656", "replace": "#b85450", "gate": "#82b366", "enable": "#9673a6",
          "rollback": "#000000", "flip": "#d79b00", "split": "#0e8088", "other": "#cccccc", "wait": "#a0a0a0",
          "ansible": "#f5a623"}
# Event marks on a host's row: a failure, a rollback.
MARKS = {"rollback": ("&#x21BA;", "#1a5fb4"), "failed": ("&#x2716;", "#c00"), "unreachable": ("&#x2716;", "#c00")}
# A host's name and result in the page: red when it failed, orange when it was rolled back.
STATUS_COLORS = {"failed": "#c00", "unreachable": "#c00", "rolled back": "#b35900"}


def phase_of(task_name):
    name = (task_name or "").split(" : ")[-1]
    for phase, prefixes in PHASES:
        if name.startswith(prefixes):
            return phase
    return "other"


def _safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "playbook"


def _duration(seconds):
    seconds = int(round(seconds))
    return "%d min %02d s" % divmod(seconds, 60) if seconds >= 60 else "%d s" % seconds


def _merge(intervals):
    """Sorted, disjoint [start, end] covering the same time as the intervals."""
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def _split(start, end, merged, ends):
    """[start, end] in consecutive pieces (covered, start, end): covered by one of the merged intervals or not.
    ends: each merged interval's end, for the search."""
    pieces = []
    index = bisect.bisect_right(ends, start)
    at = start
    while at < end:
        if index < len(merged) and merged[index][0] <= at:
            stop = min(end, merged[index][1])
            pieces.append((True, at, stop))
            index += 1
        else:
            stop = min(end, merged[index][0]) if index < len(merged) else end
            pieces.append((False, at, stop))
        at = stop
    return pieces


def account(hosts, steps):
    """Add to each host's record its steps (a play run's first to last task of the host, from `steps`, keyed by
    host and play run), their sum (step_seconds), the time between its tasks there (gaps: "wait" while another
    host's task ran, "ansible" while none did) and the seconds per phase, gaps included."""
    everyone = _merge([s[1], s[2]] for record in hosts.values() for s in record["spans"])
    everyone_ends = [m[1] for m in everyone]
    for (host, _run), step in sorted(steps.items(), key=lambda item: item[1]["start"]):
        hosts.setdefault(host, {"spans": [], "status": "ok"}).setdefault("steps", []).append(step)
    for record in hosts.values():
        own = _merge([s[1], s[2]] for s in record["spans"])
        own_ends = [m[1] for m in own]
        gaps = []
        for step in record.setdefault("steps", []):
            for busy, start, end in _split(step["start"], step["end"], own, own_ends):
                if not busy:
                    gaps.extend(["wait" if other else "ansible", round(s, 3), round(e, 3)]
                                for other, s, e in _split(start, end, everyone, everyone_ends) if round(e - s, 3) > 0)
        record["gaps"] = gaps
        record["step_seconds"] = round(sum(step["end"] - step["start"] for step in record["steps"]), 3)
        seconds = {}
        for phase, start, end in [s[:3] for s in record["spans"]] + gaps:
            seconds[phase] = seconds.get(phase, 0) + end - start
        record["phase_seconds"] = {phase: round(value, 3) for phase, value in seconds.items()}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "vmfleet.deploy.deploy_report"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = time.time
        self.playbook = "playbook"
        self.started = None
        self.hosts = {}  # host -> {"spans": [[phase, start, end, task]], "status": str}
        self.batches = []  # {"play", "number", "hosts", "start", "end", "failed"}
        self.events = []  # {"host", "time", "event", "task"}
        self.running = {}  # (task uuid, host) -> (phase, start, task name, play run)
        self.run = 0  # plays started: each batch of a serial play is a play run of its own
        self.run_label = ("", None)  # the play run's play name and batch number (None out of a serial play)
        self.steps = {}  # (host, play run) -> {"play", "batch", "start", "end"}: the host's first and last task
        self.last_serial = ()  # (the serial play's name and serial, batches started) of the last serial play
        self.planned_batches = None
        self.play_hosts_total = None
        self.batch = None
        self.done = 0
        self.report_paths = None

    # ---------------------------------------------------------------- playbook and plays
    def v2_playbook_on_start(self, playbook):
        self.playbook = os.path.splitext(os.path.basename(playbook._file_name))[0]
        self.started = self.clock()

    def v2_playbook_on_play_start(self, play):
        self._end_batch()
        self.run += 1
        self.run_label = (play.get_name(), None)
        serial = play.serial if isinstance(play.serial, list) else [play.serial]
        if not [s for s in serial if s not in (None, "", 0, "0")]:
            return
        # Each batch of a serial play starts the play again. The batches of one play follow one another
        # under the same name (the play object's uuid is not kept across batches under ansible-runner).
        key = (play.get_name(), repr(serial))
        number = self.last_serial[1] + 1 if self.last_serial and self.last_serial[0] == key else 1
        self.last_serial = (key, number)
        self.run_label = (play.get_name(), number)
        if number == 1:
            try:
                manager = play.get_variable_manager()
                self.play_hosts_total = len(manager._inventory.get_hosts(play.hosts, ignore_restrictions=True))
            except Exception:  # the total is for the estimate only
                self.play_hosts_total = None
        self.batch = {"play": play.get_name(), "number": number, "hosts": [], "start": self.clock(), "end": None,
                      "failed": []}
        self.batches.append(self.batch)

    def _end_batch(self):
        batch, self.batch = self.batch, None
        if batch is None or batch["end"] is not None:
            return
        batch["end"] = self.clock()
        if not batch["hosts"]:
            return
        for host in batch["hosts"]:
            self.done += 1
            status = self.hosts.get(host, {}).get("status")
            self._progress("%s %s" % (host, status if status in ("rolled back", "unreachable") else
                                      "failed" if host in batch["failed"] else "done"))
        self._progress("batch %d%s %s" % (batch["number"], self._of(self.planned_batches),
                                          "failed: %s" % ", ".join(batch["failed"]) if batch["failed"] else "done"))

    @staticmethod
    def _of(total):
        return "/%d" % total if total else ""

    def _progress(self, what):
        if not self.get_option("progress"):
            return
        first = next((b["start"] for b in self.batches if b["hosts"]), self.started or self.clock())
        elapsed = self.clock() - first
        finished = [b for b in self.batches if b["end"] is not None and b["hosts"]]
        total = self.play_hosts_total
        left = ""
        remaining = None
        if self.planned_batches and finished:
            remaining = max(self.planned_batches - len(finished), 0) * (elapsed / len(finished))
        elif total and self.done:
            remaining = max(total - self.done, 0) * (elapsed / self.done)
        if remaining is not None:
            left = ", about %s left" % _duration(remaining)
        self._display.display("[vmfleet] %s: %d%s hosts, %s%s" % (
            what, self.done, self._of(total), _duration(elapsed), left))

    # ---------------------------------------------------------------- tasks
    def v2_runner_on_start(self, host, task):
        name = host.get_name()
        self.running[(task._uuid, name)] = (phase_of(task.get_name()), self.clock(), task.get_name(), self.run)
        # The strategy starts a task on the batch's hosts in play order.
        if self.batch is not None and name not in self.batch["hosts"] and name != "localhost":
            self.batch["hosts"].append(name)

    def _finish(self, result, status, ignore_errors=False):
        host = result._host.get_name()
        task = result._task
        phase, start, name, run = self.running.pop((task._uuid, host),
                                                   (phase_of(task.get_name()), None, task.get_name(), self.run))
        now = self.clock()
        record = self.hosts.setdefault(host, {"spans": [], "status": "ok"})
        if start is not None:
            start, end = round(start, 3), round(now, 3)
            if status != "skipped":
                record["spans"].append([phase, start, end, name.split(" : ")[-1]])
            step = self.steps.get((host, run))
            if step is None:
                play, batch = self.run_label
                self.steps[(host, run)] = {"play": play, "batch": batch, "start": start, "end": end}
            else:
                step["start"], step["end"] = min(step["start"], start), max(step["end"], end)
        if status in ("failed", "unreachable"):
            if not ignore_errors:
                record["status"] = status
                self.events.append({"host": host, "time": round(now, 3), "event": status, "task": name})
                if self.batch is not None and host not in self.batch["failed"]:
                    self.batch["failed"].append(host)
        elif status == "ok" and phase == "rollback":
            self.events.append({"host": host, "time": round(now, 3), "event": "rollback", "task": name})
            record["status"] = "rolled back"
        facts = (result._result or {}).get("ansible_facts") or {}
        plan = facts.get("__vmfleet_plan")
        if isinstance(plan, list) and plan:
            self.planned_batches = len(plan)
            self.play_hosts_total = sum(len(b) for b in plan)

    def v2_runner_on_ok(self, result):
        self._finish(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._finish(result, "failed", ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._finish(result, "unreachable")

    def v2_runner_on_skipped(self, result):
        self._finish(result, "skipped")

    # ---------------------------------------------------------------- the report
    def v2_playbook_on_stats(self, stats):
        self._end_batch()
        ended = self.clock()
        failed = sorted(h for h in stats.processed if stats.failures.get(h) or stats.dark.get(h))
        account(self.hosts, self.steps)
        report = {
            "playbook": self.playbook,
            "started": self.started,
            "ended": ended,
            "seconds": round(ended - (self.started or ended), 3),
            "result": "failed" if failed else "ok",
            "failed_hosts": failed,
            "hosts": self.hosts,
            "batches": self.batches,
            "events": self.events,
            "phases": [p for p, _prefixes in PHASES if p != "rollback"] + ["rollback", "other"] + list(GAPS),
        }
        directory = os.path.expanduser(self.get_option("report_dir"))
        stamp = datetime.datetime.fromtimestamp(self.started or ended, datetime.UTC)
        base = os.path.join(directory, "%s-%s" % (_safe_name(self.playbook), stamp.strftime("%Y%m%dT%H%M%SZ")))
        try:
            os.makedirs(directory, exist_ok=True)
            with open(base + ".json", "w") as out:
                json.dump(report, out, indent=1, sort_keys=True)
            with open(base + ".html", "w") as out:
                out.write(render_html(report))
        except OSError as e:
            self._display.warning("vmfleet.deploy.deploy_report could not write its report in %s: %s" % (directory, e))
            return
        self.report_paths = (base + ".json", base + ".html")
        self._display.display("[vmfleet] report: %s (JSON: %s)" % (base + ".html", base + ".json"))


def _text_color(background):
    """Black or white, whichever reads better on the background (#rrggbb)."""
    red, green, blue = (int(background[i:i + 2], 16) for i in (1, 3, 5))
    return "#000" if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else "#fff"


def render_html(report):
    """A self-contained page: a summary, the timeline (inline SVG, one row per host), the batches, the events
    and the time per host and phase."""
    esc = html.escape
    start = report["started"] or 0
    spans = [s for h in report["hosts"].values() for s in h["spans"]]
    end = max([report["ended"]] + [s[2] for s in spans])
    width, label, row = 960, 120, 22
    scale = (width - label - 10) / max(end - start, 0.001)
    hosts = sorted(report["hosts"], key=lambda h: (min([s[1] for s in report["hosts"][h]["spans"]] or [end]), h))
    height = row * (len(hosts) + 2)
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" aria-label="timeline">'
           % (width, height)]
    step = max(1, int((end - start) / 10) or 1)
    for second in range(0, int(end - start) + 1, step):
        x = label + second * scale
        svg.append('<line x1="%.1f" y1="0" x2="%.1f" y2="%d" stroke="#eee"/>' % (x, x, height - row))
        svg.append('<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%d s</text>' % (x, height - 6, second))
    for batch in report["batches"]:
        if batch["hosts"] and batch["end"]:
            x = label + (batch["start"] - start) * scale
            svg.append('<line x1="%.1f" y1="0" x2="%.1f" y2="%d" stroke="#999" stroke-dasharray="4 3"/>'
                       % (x, x, height - row))
    for index, host in enumerate(hosts):
        y = index * row + 4
        record = report["hosts"][host]
        status = record.get("status", "ok")
        svg.append('<text class="host" x="4" y="%d" font-size="12" fill="%s">%s<title>%s: %s</title></text>' % (
            y + 13, STATUS_COLORS.get(status, "#000"), esc(host), esc(host), esc(status)))
        for phase, s, e, task in record["spans"]:
            svg.append('<rect class="%s" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %s (%.1f s)'
                       '</title></rect>' % (esc(phase), label + (s - start) * scale, y, max((e - s) * scale, 1.0),
                                            row - 6, COLORS.get(phase, COLORS["other"]), esc(phase), esc(task), e - s))
        for phase, s, e in record.get("gaps", []):
            svg.append('<rect class="%s" x="%.1f" y="%d" width="%.1f" height="4" fill="%s"><title>%s (%.2f s)</title>'
                       '</rect>' % (phase, label + (s - start) * scale, y + (row - 6) // 2 - 2, (e - s) * scale,
                                    COLORS[phase], phase, e - s))
        for event in report["events"]:
            if event["host"] == host:
                mark, color = MARKS.get(event["event"], MARKS["failed"])
                svg.append('<text class="event-%s" x="%.1f" y="%d" font-size="16" fill="%s" text-anchor="middle" '
                           'stroke="#fff" stroke-width="3" paint-order="stroke">%s'
                           '<title>%s: %s</title></text>' % (
                               esc(event["event"]), label + (event["time"] - start) * scale, y + 13, color, mark,
                               esc(event["event"]), esc(event["task"])))
    svg.append("</svg>")
    legend = " ".join('<span class="legend" style="background:%s;color:%s;padding:1px 6px;margin-right:4px">%s</span>'
                      % (COLORS[p], _text_color(COLORS[p]), esc(p)) for p in report["phases"])
    batches = "".join(
        "<tr><td>%d</td><td>%s</td><td>%s</td><td>%.1f s</td><td>%s</td></tr>" % (
            b["number"], esc(b["play"]), esc(", ".join(b["hosts"])), (b["end"] or end) - b["start"],
            '<span class="failed">failed: %s</span>' % esc(", ".join(b["failed"])) if b["failed"] else "ok")
        for b in report["batches"] if b["hosts"])
    events = "".join('<tr class="%s"><td>+%.1f s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
        esc(e["event"]), e["time"] - start, esc(e["host"]), esc(e["event"]), esc(e["task"])) for e in report["events"])
    used = [p for p in report["phases"] if any(report["hosts"][h].get("phase_seconds", {}).get(p) for h in hosts)]
    times = "".join(
        '<tr><td>%s</td><td style="color:%s">%s</td><td>%.1f</td>%s<td>%.1f</td></tr>' % (
            esc(h), STATUS_COLORS.get(report["hosts"][h].get("status"), "#2a2"),
            esc(report["hosts"][h].get("status", "ok")), report["hosts"][h].get("step_seconds", 0),
            "".join("<td>%.1f</td>" % report["hosts"][h].get("phase_seconds", {}).get(p, 0) for p in used),
            sum(report["hosts"][h].get("phase_seconds", {}).values()))
        for h in hosts)
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%(title)s</title>
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:2px 8px;text-align:left;white-space:nowrap}.ok{color:#2a2}.failed{color:#c00}</style></head><body>
<h1>%(title)s</h1>
<p class="%(result)s">Result: <b>%(result)s</b> in %(seconds)s; %(hosts)d hosts%(failed)s.</p>
<h2>Timeline</h2><p>%(legend)s</p>
<p>Thin bars: the time between a host's tasks; <i>wait</i> while another host's task ran, <i>ansible</i> while
none did. &#x2716; a failure, &#x21BA; a rollback; dashed lines: a batch starts.</p>%(svg)s
<h2>Batches</h2><table><tr><th>#</th><th>play</th><th>hosts</th><th>time</th><th>result</th></tr>%(batches)s</table>
<h2>Failures and rollbacks</h2><table><tr><th>when</th><th>host</th><th>event</th><th>task</th></tr>%(events)s</table>
<h2>Time per host</h2><p>Seconds: each host's step (its first to its last task in each play or batch) and
its phases, which add up to it.</p>
<table><tr><th>host</th><th>result</th><th>step</th>%(used)s<th>phases in all</th></tr>
%(times)s</table>
</body></html>
""" % {"title": esc("vmfleet report: %s" % report["playbook"]), "result": report["result"],
       "seconds": _duration(report["seconds"]), "hosts": len(report["hosts"]),
       "failed": "; failed: %s" % esc(", ".join(report["failed_hosts"])) if report["failed_hosts"] else "",
       "legend": legend, "svg": "".join(svg), "batches": batches or '<tr><td colspan="5">none</td></tr>',
       "events": events or '<tr><td colspan="4">none</td></tr>',
       "used": "".join("<th>%s</th>" % esc(p) for p in used), "times": times}
