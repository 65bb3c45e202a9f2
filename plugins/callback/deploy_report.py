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
    with the phases of each host (pull, drain, replace, gate, enable, rollback, flip, split), the batches
    with their result, and the rollback events.
  - A task's phase comes from its name, as the collection's playbooks and roles name their tasks (see
    C(PHASES) in the plugin). Tasks of no phase count as the host's other work.
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
    ("enable", ("Set the server ready", "Check that every load balancer reports the server UP")),
    ("flip", ("Flip the live slot",)),
    ("split", ("Send a share of new requests", "Send every new request to the stable slot")),
)
COLORS = {"pull": "#6c8ebf", "drain": "#d6b656", "replace": "#b85450", "gate": "#82b366", "enable": "#9673a6",
          "rollback": "#000000", "flip": "#d79b00", "split": "#0e8088", "other": "#cccccc"}


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
        self.running = {}  # (task uuid, host) -> (phase, start, task name)
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
        serial = play.serial if isinstance(play.serial, list) else [play.serial]
        if not [s for s in serial if s not in (None, "", 0, "0")]:
            return
        # Each batch of a serial play starts the play again. The batches of one play follow one another
        # under the same name (the play object's uuid is not kept across batches under ansible-runner).
        key = (play.get_name(), repr(serial))
        number = self.last_serial[1] + 1 if self.last_serial and self.last_serial[0] == key else 1
        self.last_serial = (key, number)
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
        self.running[(task._uuid, name)] = (phase_of(task.get_name()), self.clock(), task.get_name())
        # The strategy starts a task on the batch's hosts in play order.
        if self.batch is not None and name not in self.batch["hosts"] and name != "localhost":
            self.batch["hosts"].append(name)

    def _finish(self, result, status, ignore_errors=False):
        host = result._host.get_name()
        task = result._task
        phase, start, name = self.running.pop((task._uuid, host), (phase_of(task.get_name()), None, task.get_name()))
        now = self.clock()
        record = self.hosts.setdefault(host, {"spans": [], "status": "ok"})
        if status != "skipped" and start is not None:
            record["spans"].append([phase, round(start, 3), round(now, 3), name.split(" : ")[-1]])
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
            "phases": [p for p, _prefixes in PHASES] + ["other"],
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


def render_html(report):
    """A self-contained page: a summary, the timeline (inline SVG, one row per host), the batches and the events."""
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
        svg.append('<text x="4" y="%d" font-size="12">%s</text>' % (y + 13, esc(host)))
        for phase, s, e, task in report["hosts"][host]["spans"]:
            svg.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s: %s (%.1f s)</title></rect>'
                       % (label + (s - start) * scale, y, max((e - s) * scale, 1.0), row - 6,
                          COLORS.get(phase, COLORS["other"]), esc(phase), esc(task), e - s))
        for event in report["events"]:
            if event["host"] == host:
                x = label + (event["time"] - start) * scale
                svg.append('<text x="%.1f" y="%d" font-size="14" fill="#c00" text-anchor="middle">&#x2716;<title>%s: %s'
                           '</title></text>' % (x, y + 13, esc(event["event"]), esc(event["task"])))
    svg.append("</svg>")
    legend = " ".join('<span style="background:%s;color:#fff;padding:1px 6px;margin-right:4px">%s</span>'
                      % (COLORS[p], esc(p)) for p in report["phases"])
    batches = "".join(
        "<tr><td>%d</td><td>%s</td><td>%s</td><td>%.1f s</td><td>%s</td></tr>" % (
            b["number"], esc(b["play"]), esc(", ".join(b["hosts"])), (b["end"] or end) - b["start"],
            "failed: " + esc(", ".join(b["failed"])) if b["failed"] else "ok")
        for b in report["batches"] if b["hosts"])
    events = "".join("<tr><td>+%.1f s</td><td>%s</td><td>%s</td><td>%s</td></tr>" % (
        e["time"] - start, esc(e["host"]), esc(e["event"]), esc(e["task"])) for e in report["events"])
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%(title)s</title>
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:2px 8px;text-align:left}.ok{color:#2a2}.failed{color:#c00}</style></head><body>
<h1>%(title)s</h1>
<p class="%(result)s">Result: <b>%(result)s</b> in %(seconds)s; %(hosts)d hosts%(failed)s.</p>
<h2>Timeline</h2><p>%(legend)s</p>%(svg)s
<h2>Batches</h2><table><tr><th>#</th><th>play</th><th>hosts</th><th>time</th><th>result</th></tr>%(batches)s</table>
<h2>Failures and rollbacks</h2><table><tr><th>when</th><th>host</th><th>event</th><th>task</th></tr>%(events)s</table>
</body></html>
""" % {"title": esc("vmfleet report: %s" % report["playbook"]), "result": report["result"],
       "seconds": _duration(report["seconds"]), "hosts": len(report["hosts"]),
       "failed": "; failed: %s" % esc(", ".join(report["failed_hosts"])) if report["failed_hosts"] else "",
       "legend": legend, "svg": "".join(svg), "batches": batches or '<tr><td colspan="5">none</td></tr>',
       "events": events or '<tr><td colspan="4">none</td></tr>'}
