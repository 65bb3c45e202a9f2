"""Benchmark: how fast a blue-green flip takes effect, by the runtime API and, as the reference, by a reload.

On the demo lab `vmfleet` (inventories/lab), catalog runs in both slots, each
with its own version, every server UP (bench/cutover_setup.yml, with the
entry points of the role vmfleet.deploy.traffic). Two load probes go through
the HTTPS frontend (10.77.0.10:8001) at 100 requests per second each or more: one
with keep-alive connections, one with a new connection per request. Under
them the bench flips the active map back and forth FLIPS times, SPACING
seconds apart, in two phases, in this order:

- runtime: the command the collection sends (vmfleet.deploy.haproxy_map,
  roles/traffic/tasks/flip.yml), `set map /etc/haproxy/maps/vmfleet-active.map
  catalog catalog_<slot>`, on the admin socket in prompt mode, from a small
  Python program on the load balancer (`docker exec vmfleet-lb1 python3 -c`).
  It takes time.time() just before sending the command and right after
  HAProxy's answer, then writes the same line to the map file, as the module
  does after its live changes;
- reload (the reference, in the same run): the same flips done by writing the
  map file and running `systemctl reload haproxy`, timed around that command.

Containers share the host's clock, so these times compare with the probes'
(the request's start is LoadProbe.result()["started_at"] + Record.start, its
end adds Record.latency). For each flip, among the requests that started
after the flip and before the next one, the bench counts those the old
version answered, and takes the time from the flip to the end of the last of
them (0 when there is none): once from HAProxy's answer (the return of
systemctl reload), once from the moment the command was sent. It also takes,
among the requests started after the sending, the time from the start of the
first one the new version answered to the start of the last one the old
version answered: how long a new request could get either version. Each
figure is the median over the flips of a phase, with min and max.

At the end catalog serves from its home slot again (the one its ledgers
record), with the split at 0, the map files and the runtime in agreement,
every server of the live backend ready and UP, and the other slot stopped
(its servers in MAINT) unless --keep-warm. When a request of either probe
failed, a probe stopped before its phase ended, a flip did not take, or a
response came from neither version, the bench says so, exits 1 and records
nothing.

    .venv/bin/python bench/cutover.py [--flips 10] [--spacing 2] [--record] [--keep-warm]

--record puts the section "Blue-green cutover" into bench/RESULTS.md,
replacing an earlier one; the rest of the file stays as it is.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

from benchlib import RESULTS, ROOT, LoadProbe, ansible_env, finish, spread

SECTION = "## Blue-green cutover"
INVENTORY = ROOT / "inventories" / "lab"
SETUP = ROOT / "bench" / "cutover_setup.yml"
SERVICE = "catalog"
LB_CONTAINER = "vmfleet-lb1"
URL = "https://10.77.0.10:8001/"
CAFILE = ROOT / ".lab" / "pki" / "ca.crt"
SOCKET = "/run/haproxy/admin.sock"
ACTIVE_MAP = "/etc/haproxy/maps/vmfleet-active.map"
SPLIT_MAP = "/etc/haproxy/maps/vmfleet-split.map"
METHODS = ("runtime", "reload")
# Both probe modes (tests/integration/loadprobe.py), as LoadProbe's `keepalive`, and their threads.
PROBE_MODES = {"keep-alive": True, "new connection": False}
PROBE_THREADS = {"keep-alive": 16, "new connection": 32}
RATE = 120  # requests per second, each probe: a cap, so some way above the floor
MIN_RPS = 100  # the floor: below this a probe did not keep up, and the run is not recorded
WARMUP = 2.0  # seconds of load before the first flip of a phase

# Runs on the load balancer as `python3 -c LB_PROGRAM <command> ...` (root, stdlib only), prints one JSON object.
#   state                 the catalog lines of both maps, live and in the files, and the servers of both backends
#   runtime <slot>        set map as vmfleet.deploy.haproxy_map sends it, timed; then the same line in the file
#   reload <slot>         the line in the file, then `systemctl reload haproxy`, timed
LB_PROGRAM = r"""
import json, os, socket, subprocess, sys, tempfile, time
SOCKET, ACTIVE, SPLIT, SERVICE = %(socket)r, %(active)r, %(split)r, %(service)r
PROMPT = b"\n> "

class Cli:
    def __init__(self):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(5)
        self.s.connect(SOCKET)
        self.ask("prompt")
    def ask(self, command):
        self.s.sendall(command.encode() + b"\n")
        buf = b""
        while not buf.endswith(PROMPT):
            chunk = self.s.recv(65536)
            if not chunk:
                raise SystemExit("HAProxy closed the runtime API connection during " + command)
            buf += chunk
        return buf[:-len(PROMPT)].decode()
    def close(self):
        self.s.sendall(b"quit\n")
        self.s.close()

def live(cli, path):
    for line in cli.ask("show map " + path).splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == SERVICE:
            return parts[2]
    return None

def in_file(path):
    for line in open(path):
        parts = line.split()
        if len(parts) == 2 and parts[0] == SERVICE:
            return parts[1]
    return None

def write_file(path, value):
    lines, found = [], False
    for line in open(path):
        parts = line.split()
        if not found and len(parts) == 2 and parts[0] == SERVICE:
            line, found = "%%s %%s\n" %% (SERVICE, value), True
        lines.append(line)
    if not found:
        lines.append("%%s %%s\n" %% (SERVICE, value))
    st = os.stat(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".cutover-")
    with os.fdopen(fd, "w") as handle:
        handle.writelines(lines)
    os.chmod(tmp, st.st_mode & 0o7777)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)

def servers(cli):
    out = {}
    stat = cli.ask("show stat -1 4 -1").splitlines()
    header = stat[0][2:].split(",")
    for line in stat[1:]:
        row = dict(zip(header, line.split(",")))
        if row.get("pxname", "").startswith(SERVICE + "_"):
            out.setdefault(row["pxname"], {})[row["svname"]] = {"status": row["status"]}
    state = cli.ask("show servers state").splitlines()
    header = state[1][2:].split()
    for line in state[2:]:
        row = dict(zip(header, line.split()))
        if row.get("be_name") in out and row.get("srv_name") in out[row["be_name"]]:
            out[row["be_name"]][row["srv_name"]]["admin"] = int(row["srv_admin_state"])
    return out

command = sys.argv[1]
result = {"command": command}
if command == "state":
    cli = Cli()
    result.update(active=live(cli, ACTIVE), split=live(cli, SPLIT), servers=servers(cli))
    cli.close()
    result.update(active_file=in_file(ACTIVE), split_file=in_file(SPLIT))
elif command == "runtime":
    value = SERVICE + "_" + sys.argv[2]
    cli = Cli()
    result["before"] = live(cli, ACTIVE)
    line = "set map %%s %%s %%s" %% (ACTIVE, SERVICE, value)
    sent = time.time()
    answer = cli.ask(line)
    answered = time.time()
    result.update(sent=sent, answered=answered, answer=answer.strip(), after=live(cli, ACTIVE))
    cli.close()
    write_file(ACTIVE, value)
elif command == "reload":
    value = SERVICE + "_" + sys.argv[2]
    cli = Cli()
    result["before"] = live(cli, ACTIVE)
    cli.close()
    write_file(ACTIVE, value)
    sent = time.time()
    proc = subprocess.run(["systemctl", "reload", "haproxy"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    answered = time.time()
    cli = Cli()
    result.update(sent=sent, answered=answered, answer=proc.stdout.decode().strip(), rc=proc.returncode,
                  after=live(cli, ACTIVE))
    cli.close()
print(json.dumps(result))
""" % {"socket": SOCKET, "active": ACTIVE_MAP, "split": SPLIT_MAP, "service": SERVICE}


@dataclass(frozen=True)
class Flip:
    """One flip: when the command was sent and answered (epoch seconds), from which version to which."""

    method: str  # runtime or reload
    sent: float
    answered: float
    old: str  # the version that served before the flip
    new: str  # the version that serves after it


@dataclass(frozen=True)
class Request:
    """One probe request on the epoch clock."""

    start: float
    end: float
    ok: bool
    version: str | None


@dataclass(frozen=True)
class Outcome:
    """What one probe saw of one flip, counted from HAProxy's answer and from the sending of the command."""

    old_after_answer: int  # old-version responses to requests started after the answer
    late_after_answer: float  # seconds from the answer to the end of the last of them (0 when none)
    old_after_sent: int
    late_after_sent: float
    new_responses: int  # new-version responses to requests started after the answer (> 0: the flip took)
    # Among requests started after the sending: from the start of the first one the new version answered to the
    # start of the last one the old version answered (0 when none started after the first new one). How long a
    # new request could get either version, whatever the responses' latency.
    mixed: float


# ------------------------------------------------------------------ pure functions


def outcomes(requests: list[Request], flips: list[Flip]) -> list[Outcome]:
    """Per flip: the old version's responses to requests started after it, and how late the last one ended.

    A request counts for a flip when it started after the flip and ended before the next flip was sent (any time
    for the last flip): one that straddles the next flip may rightly get either version, from that flip.
    """
    result = []
    for index, flip in enumerate(flips):
        until = flips[index + 1].sent if index + 1 < len(flips) else float("inf")
        counted = {}
        for basis, since in (("answer", flip.answered), ("sent", flip.sent)):
            old = [r for r in requests if r.ok and since <= r.start and r.end < until and r.version == flip.old]
            counted[basis] = (len(old), max((r.end for r in old), default=since) - since)
        new = sum(1 for r in requests if r.ok and flip.answered <= r.start and r.end < until and r.version == flip.new)
        seen = [r for r in requests if r.ok and flip.sent <= r.start and r.end < until]
        first_new = min((r.start for r in seen if r.version == flip.new), default=float("inf"))
        last_old = max((r.start for r in seen if r.version == flip.old), default=float("-inf"))
        result.append(Outcome(*counted["answer"], *counted["sent"], new, max(0.0, last_old - first_new)))
    return result


def ms(seconds: tuple[float, float, float], digits: int = 1) -> str:
    """'median (min–max)' in milliseconds."""
    median, low, high = (value * 1000 for value in seconds)
    return f"{median:.{digits}f} ms ({low:.{digits}f}–{high:.{digits}f})"


@dataclass(frozen=True)
class Phase:
    """One method's flips and what each probe saw: its summary (LoadProbe.result()) and its requests."""

    method: str
    flips: list[Flip]
    probes: dict[str, dict]  # mode -> summary, plus covered (still running when the phase ended)
    requests: dict[str, list[Request]]  # mode -> requests


def problems(phases: list[Phase], versions: tuple[str, str]) -> list[str]:
    """Why the run cannot be recorded: one sentence per failed probe, flip that did not take, or stray answer."""
    found = []
    for phase in phases:
        for mode, probe in phase.probes.items():
            where = f"{phase.method} flips, {mode} probe"
            if probe["failed"]:
                errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(probe["errors"].items()))
                found.append(f"{where}: {probe['failed']} of {probe['total']} requests failed ({errors})")
            if not probe.get("covered", True):
                found.append(f"{where}: the probe hit its bound before the phase ended")
            if probe["rps"] < MIN_RPS:
                found.append(f"{where}: {probe['rps']} requests/s, below {MIN_RPS}")
            stray = {v: n for v, n in probe["versions"].items() if v not in versions}
            unknown = probe["ok"] - sum(probe["versions"].values())
            if stray or unknown:
                found.append(f"{where}: answers from neither {' nor '.join(versions)}: {stray}, {unknown} without one")
            for number, outcome in enumerate(outcomes(phase.requests[mode], phase.flips), start=1):
                if not outcome.new_responses:
                    found.append(f"{where}: flip {number} did not take (no response from the new version after it)")
        if not phase.flips:
            found.append(f"{phase.method} flips: none made")
    return found


def table(phases: list[Phase]) -> list[str]:
    """The Markdown table: one row per method and probe mode."""
    rows = [
        "| flip by | probe | flips | requests, req/s | failed | old responses after the answer, in all "
        "| lateness from the answer: median (min–max) | old responses after the sending "
        "| lateness from the sending: median (min–max) | both versions answered new requests for: median (min–max) "
        "| command took: median (min–max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase in phases:
        took = spread([flip.answered - flip.sent for flip in phase.flips])
        method = ("runtime API `set map`" if phase.method == "runtime"
                  else "map file + `systemctl reload haproxy`")
        for mode, probe in phase.probes.items():
            seen = outcomes(phase.requests[mode], phase.flips)
            rows.append(
                f"| {method} | {mode} | {len(phase.flips)} | {probe['total']}, {probe['rps']:.0f} | {probe['failed']} "
                f"| {sum(o.old_after_answer for o in seen)} | {ms(spread([o.late_after_answer for o in seen]))} "
                f"| {sum(o.old_after_sent for o in seen)} | {ms(spread([o.late_after_sent for o in seen]))} "
                f"| {ms(spread([o.mixed for o in seen]))} | {ms(took, 2)} |"
            )
    return rows


def _worst(phases: list[Phase], method: str, field: str) -> float | None:
    values = [getattr(o, field) for phase in phases if phase.method == method for mode in phase.probes
              for o in outcomes(phase.requests[mode], phase.flips)]
    return max(values) if values else None


def verdict(phases: list[Phase], target: float = 0.010) -> str:
    """One sentence: is every runtime flip's lateness (from HAProxy's answer) under the target, in both modes?"""
    seen = {method: [o for phase in phases if phase.method == method for mode in phase.probes
                     for o in outcomes(phase.requests[mode], phase.flips)] for method in METHODS}
    if not seen["runtime"]:
        return "No runtime flip was measured: the target is not assessed."
    worst = max(o.late_after_answer for o in seen["runtime"])
    old = sum(o.old_after_answer for o in seen["runtime"])
    flips = sum(len(phase.flips) for phase in phases if phase.method == "runtime")
    met = "met" if worst < target else "NOT met"
    text = f"Target (< {target * 1000:.0f} ms with the runtime API, never a reload): {met}. "
    if old:
        text += (f"After HAProxy's answer to `set map`, {old} requests started after it got the old version, the last "
                 f"ending {worst * 1000:.1f} ms after the answer (worst of {flips} flips, both probes)")
    else:
        old_sent = sum(o.old_after_sent for o in seen["runtime"])
        text += (f"Over {flips} flips and both probes, no request started after HAProxy's answer to `set map`"
                 + (f" got the old version (lateness 0 ms); {old_sent} started between the sending and the answer did"
                    if old_sent else ", nor after the command was sent, got the old version (lateness 0 ms)"))
    if seen["reload"]:
        reload = seen["reload"]
        late = sum(o.old_after_answer for o in reload)
        after = (f"{late} old-version response{'' if late == 1 else 's'} after `systemctl reload` returned, the last "
                 f"{max(o.late_after_answer for o in reload) * 1000:.0f} ms later" if late
                 else "no old-version response after `systemctl reload` returned")
        median, _low, high = spread([o.late_after_sent for o in reload])
        text += (f". The reference, flips by reload in the same run, left {after}; the old version went on "
                 f"answering new requests for a median {median * 1000:.0f} ms (max {high * 1000:.0f} ms) after the "
                 f"reload command, until the new worker took over, and both versions answered new requests for up "
                 f"to {max(o.mixed for o in reload) * 1000:.0f} ms")
    return text + "."


def section(phases: list[Phase], *, date: datetime.date, command: str, slots: dict, load: list[float],
            spacing: float) -> str:
    """The RESULTS.md section "Blue-green cutover" (Markdown, ending with a newline)."""
    home, other = slots["home"], slots["other"]
    loads = f"1-minute load average {min(load):.1f}–{max(load):.1f} during the run"
    machine = (f"2 cores, busy: {loads} (other jobs ran on the machine at the same time)"
               if max(load) > 2 else f"2 cores, {loads}")
    prose = [
        f"Measured {date} with `{command}`, on the demo lab `vmfleet` (HAProxy 2.6, 4 app hosts). Machine: "
        f"{machine}.",
        f"{SERVICE} ran {home['version']} in the {home['slot']} slot and {other['version']} in the "
        f"{other['slot']} slot, every server of both backends UP (`bench/cutover_setup.yml`). Two load probes "
        f"went through the HTTPS frontend ({URL}), paced at up to {RATE} requests/s each (a run where one achieved "
        f"less than {MIN_RPS} is not recorded), one with keep-alive connections and one with a new connection per "
        f"request. Under them the active map was flipped back and forth, {spacing:g} s apart: first by the runtime "
        f"API, with the command the collection sends (`set map {ACTIVE_MAP} {SERVICE} {SERVICE}_<slot>` on the "
        "admin socket, then the same line in the file), then, as the reference in the same run, by writing the "
        "map file and running `systemctl reload haproxy`. The times of a flip are taken on the load balancer just "
        "before the command and right after HAProxy's answer (for a reload: when `systemctl reload` returns, "
        "after the new worker answers); the containers share the host's clock with the probes.",
        "For each flip: among the requests that started after it (and ended before the next flip was sent), the "
        "responses from the old version, and the time from the flip to the end of the last of them (0 when "
        "none), counted from HAProxy's answer and from the sending of the command; and, among the requests "
        "started after the sending, the time from the start of the first one the new version answered to the "
        "start of the last one the old version answered (how long a new request could get either version; 0 "
        "when none). Medians over the flips, with min and max. A reload answers only once its new worker "
        "answers (last column), so for a reload the figures from the sending and the window of both versions "
        "are the ones that compare.",
    ]
    wrap = [textwrap.fill(paragraph, width=88, break_long_words=False, break_on_hyphens=False)
            for paragraph in prose]
    lines = [SECTION, "", wrap[0], "", wrap[1], "", wrap[2], "", *table(phases), "",
             textwrap.fill(verdict(phases), width=88, break_long_words=False, break_on_hyphens=False), ""]
    return "\n".join(lines)


def updated_results(text: str, new_section: str) -> str:
    """RESULTS.md's text with `new_section` in place of the old "Blue-green cutover" section, or appended.

    The section runs from its heading to the next heading of the same or a higher level, or to the end.
    """
    lines = text.rstrip("\n").split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    new = new_section.rstrip("\n").split("\n")
    if start is None:
        return "\n".join([*lines, "", *new]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("# ", "## "))), len(lines))
    tail = lines[end:]
    return "\n".join([*lines[:start], *new, *([""] + tail if tail else [])]) + "\n"


# ------------------------------------------------------------------ the bench


def set_up(state: str) -> dict:
    """Run bench/cutover_setup.yml (cutover_state warm or home); returns its slots line."""
    argv = ["ansible-playbook", "-i", str(INVENTORY), str(SETUP), "-e", f"service={SERVICE}",
            "-e", f"cutover_state={state}"]
    print(f"$ {shlex.join(argv)}", flush=True)
    proc = subprocess.run(argv, cwd=ROOT, env=ansible_env(json_output=True), capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{SETUP.name} ({state}) failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    for p in result["plays"]:
        for task in p["tasks"]:
            for host in task["hosts"].values():
                msg = str(host.get("msg", ""))
                if msg.startswith("cutover-slots="):
                    return json.loads(msg.split("=", 1)[1])
    raise SystemExit(f"{SETUP.name} did not say which slot runs what")


def on_lb(*args: str) -> dict:
    """Run LB_PROGRAM on the load balancer with `args`; its JSON answer."""
    proc = subprocess.run(["docker", "exec", LB_CONTAINER, "python3", "-c", LB_PROGRAM, *args],
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"on {LB_CONTAINER}: {' '.join(args)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return json.loads(proc.stdout)


def check_state(live_slot: str, slots: dict, *, both: bool) -> list[str]:
    """What is wrong with the load balancer's state: live slot, split 0, files = runtime, servers ready and UP."""
    state = on_lb("state")
    wrong = []
    if state["active"] != f"{SERVICE}_{live_slot}":
        wrong.append(f"the live backend is {state['active']}, not {SERVICE}_{live_slot}")
    if state["active_file"] != state["active"]:
        wrong.append(f"{ACTIVE_MAP} says {state['active_file']}, the runtime {state['active']}")
    if state["split"] != "0" or state["split_file"] != "0":
        wrong.append(f"the split is {state['split']} (runtime) and {state['split_file']} ({SPLIT_MAP}), not 0")
    backends = [slots["home"]["slot"], slots["other"]["slot"]] if both else [live_slot]
    for slot in backends:
        servers = state["servers"].get(f"{SERVICE}_{slot}", {})
        bad = {name: s for name, s in servers.items() if s.get("status") != "UP" or s.get("admin") != 0}
        if not servers or bad:
            wrong.append(f"{SERVICE}_{slot}: servers not ready and UP: {bad or 'none'}")
    return wrong


def flip(method: str, slot: str, slots: dict) -> Flip:
    answer = on_lb(method, slot)
    version = {slots["home"]["slot"]: slots["home"]["version"], slots["other"]["slot"]: slots["other"]["version"]}
    new, old_backend = f"{SERVICE}_{slot}", answer["before"]
    if answer["after"] != new or answer.get("rc", 0) != 0 or (method == "runtime" and answer["answer"]):
        raise SystemExit(f"the {method} flip to {new} did not take: {answer}")
    if old_backend == new:
        raise SystemExit(f"the {method} flip to {new}: that backend was already live")
    return Flip(method, answer["sent"], answer["answered"], version[old_backend.removeprefix(f"{SERVICE}_")],
                version[slot])


def _probe(mode: str, seconds: float, stop, pipe) -> None:
    """In a process of its own (one per probe, so the two do not share one interpreter lock): run one probe
    until `stop` is set, then send its summary and its records back through `pipe`."""
    probe = LoadProbe(URL, keepalive=PROBE_MODES[mode], threads=PROBE_THREADS[mode], rate=RATE, seconds=seconds,
                      max_requests=int(RATE * seconds), cafile=str(CAFILE))
    probe.start()
    stop.wait(seconds + 5)
    covered = probe.running
    summary = probe.result()
    pipe.send((dict(summary, covered=covered),
               [(r.start, r.latency, r.ok, r.version) for r in probe.records()]))
    pipe.close()


def phase(method: str, flips: int, spacing: float, slots: dict) -> Phase:
    seconds = WARMUP + flips * (spacing + 10) + 10  # a bound only: covered says whether the phase ended within it
    context = multiprocessing.get_context("fork")
    stop = context.Event()
    workers = {}
    for mode in PROBE_MODES:
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_probe, args=(mode, seconds, stop, sender), name=f"probe {mode}")
        process.start()
        sender.close()
        workers[mode] = (process, receiver)
    order = [slots["other"]["slot"], slots["home"]["slot"]]
    made: list[Flip] = []
    try:
        time.sleep(WARMUP)
        for number in range(flips):
            made.append(flip(method, order[number % 2], slots))
            print(f"  {method} flip {number + 1} -> {made[-1].new}: command took "
                  f"{(made[-1].answered - made[-1].sent) * 1000:.2f} ms", flush=True)
            time.sleep(spacing)
    finally:
        stop.set()
        summaries, requests = {}, {}
        for mode, (process, receiver) in workers.items():
            if not receiver.poll(30):
                process.terminate()
                raise SystemExit(f"the {mode} probe did not report")
            summary, records = receiver.recv()
            process.join(30)
            summaries[mode] = summary
            base = summary["started_at"]
            requests[mode] = [Request(base + start, base + start + latency, ok, version)
                              for start, latency, ok, version in records]
    return Phase(method, made, summaries, requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=10, help="flips per method, an even number (default 10)")
    parser.add_argument("--spacing", type=float, default=2.0, help="seconds between two flips (default 2)")
    parser.add_argument("--record", action="store_true", help="put the result into bench/RESULTS.md")
    parser.add_argument("--keep-warm", action="store_true", help="leave the other slot running at the end")
    args = parser.parse_args()
    if args.flips < 2 or args.flips % 2:
        parser.error("--flips must be an even number >= 2, so that the home slot is live at the end")
    if args.spacing <= 0:
        parser.error("--spacing must be positive")
    command = shlex.join([".venv/bin/python", "bench/cutover.py", *sys.argv[1:]])

    load = [os.getloadavg()[0]]
    slots = set_up("warm")
    print(f"{SERVICE}: {slots['home']['slot']} {slots['home']['version']} live (home), "
          f"{slots['other']['slot']} {slots['other']['version']} warm", flush=True)
    phases: list[Phase] = []
    try:
        wrong = check_state(slots["home"]["slot"], slots, both=True)
        if wrong:
            raise SystemExit("not ready to measure: " + "; ".join(wrong))
        for method in METHODS:
            load.append(os.getloadavg()[0])
            phases.append(phase(method, args.flips, args.spacing, slots))
    finally:
        load.append(os.getloadavg()[0])
        # Back to the home slot: split 0 and the home slot live (map file and runtime), the other slot stopped.
        set_up("warm" if args.keep_warm else "home")
        wrong = check_state(slots["home"]["slot"], slots, both=args.keep_warm)
        if wrong:
            print("the lab is NOT as it should be at the end: " + "; ".join(wrong), file=sys.stderr)
        else:
            print(f"{SERVICE} serves from {slots['home']['slot']} ({slots['home']['version']}); split 0; map files "
                  "and runtime agree; every server of the live backend is ready and UP", flush=True)

    text = section(phases, date=datetime.date.today(), command=command, slots=slots,
                   load=load, spacing=args.spacing)
    print()
    print(text)
    found = problems(phases, (slots["home"]["version"], slots["other"]["version"])) + [
        f"end state: {w}" for w in wrong]
    return finish(found, record=args.record, update=lambda old: updated_results(old, text),
                  refusal="the run does not count", results=RESULTS)


if __name__ == "__main__":
    sys.exit(main())
