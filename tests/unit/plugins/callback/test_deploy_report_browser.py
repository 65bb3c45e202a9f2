"""vmfleet.deploy.deploy_report's HTML page in a real browser (Debian's chromium, headless), checked as a person
would look at it: the report comes from a real ansible-playbook run, a serial play over six local hosts whose
tasks are named as the collection's are, with a rollback in one batch and a host that fails in another.

Three looks at the page: the DOM as chromium rendered it (--dump-dom), the geometry of what it drew (a copy of
the page with a script that measures it; the page itself has none), and a screenshot, decoded here (zlib) and
looked at for its size and colours. The screenshot's path is printed (pytest -s shows it)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from test_deploy_report import environment, task

from ansible_collections.vmfleet.deploy.plugins.callback.deploy_report import COLORS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: scripts/host-deps.sh installs Debian's chromium package")

HOSTS = ["app1", "app2", "app3", "app4", "app5", "app6"]
WINDOW = (1280, 1100)  # the whole page
PLAYBOOK = [
    {
        "name": "Work out the batches",
        "hosts": "fleet",
        "gather_facts": False,
        "tasks": [{"name": "Work out the batches",
                   "ansible.builtin.set_fact": {"__vmfleet_plan": [HOSTS[:1], HOSTS[1:3], HOSTS[3:]]},
                   "delegate_to": "localhost", "delegate_facts": True, "run_once": True}],
    },
    {
        "name": "Roll out in batches",
        "hosts": "fleet",
        "gather_facts": False,
        "serial": [1, 2, 3],
        "tasks": [
            task("vmfleet.deploy.service : Pull the image with Docker: catalog 1.1.0"),
            task("vmfleet.deploy.traffic : Drain the server on every load balancer: catalog_blue/x", 0.2),
            task("vmfleet.deploy.service : Ensure the slot's container runs the image with Docker: x", 0.1),
            {"name": "Replace the service on the host", "block": [
                task("vmfleet.deploy.service : Gate on HTTP health of the slot: x", 0.1,
                     failed_when="inventory_hostname == 'app3'"),
            ], "rescue": [task("Roll each service back to the release it ran before", 0.1)]},
            task("vmfleet.deploy.traffic : Set the server ready and wait until it is UP: x", 0.05,
                 failed_when="inventory_hostname == 'app5'"),
            task("Record the release", 0.01),
        ],
    },
]
# Measures what chromium drew and leaves it, as JSON, in an attribute of <html> (no change to the layout).
MEASURE = """<script>
(function () {
  function box(el) { var r = el.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; }
  function own(el) { return el.firstChild ? el.firstChild.nodeValue : ""; }
  var out = {svg: box(document.querySelector("svg")), rects: [], hosts: [], marks: []};
  document.querySelectorAll("svg rect").forEach(function (el) {
    out.rects.push({phase: el.getAttribute("class"), fill: getComputedStyle(el).fill, box: box(el)});
  });
  document.querySelectorAll("svg text.host").forEach(function (el) {
    out.hosts.push({name: own(el), fill: getComputedStyle(el).fill, box: box(el)});
  });
  document.querySelectorAll("svg text[class^=event-]").forEach(function (el) {
    out.marks.push({event: el.getAttribute("class").slice(6), mark: own(el), box: box(el)});
  });
  document.documentElement.setAttribute("data-measured", JSON.stringify(out));
})();
</script>"""


def chromium(*args: str, profile: Path) -> str:
    """Run headless chromium (as root: no sandbox) with a profile of its own; its stdout."""
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--force-device-scale-factor=1", f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    (tmp / "play.yml").write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    (tmp / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"fleet": {"hosts": dict.fromkeys(HOSTS, {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable})}}}}))
    proc = subprocess.run(["ansible-playbook", "-i", str(tmp / "hosts.yml"), str(tmp / "play.yml")], cwd=tmp,
                          env=dict(os.environ, **environment(tmp / "reports")), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]  # app5 failed
    [report] = (tmp / "reports").glob("play-*.json")
    html_page = report.with_suffix(".html")
    measured = tmp / "measured.html"
    measured.write_text(html_page.read_text().replace("</body>", MEASURE + "</body>"))
    screenshot = tmp / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=%d,%d" % WINDOW, html_page.as_uri(), profile=tmp / "p1")
    print(f"\nscreenshot of {html_page}: {screenshot}")
    dom = chromium("--dump-dom", html_page.as_uri(), profile=tmp / "p2")
    [root] = [e.attrs for e in Dom.parse(chromium("--dump-dom", measured.as_uri(), profile=tmp / "p3")).elements
              if e.tag == "html"]
    return SimpleNamespace(report=json.loads(report.read_text()), dom=dom, measured=json.loads(root["data-measured"]),
                           screenshot=screenshot)


class Dom(HTMLParser):
    """The elements of a page in document order, each with its tag, attributes, text and (a row) its cells."""

    TEXT = ("title", "h1", "p", "span", "tr", "td", "th")

    def __init__(self):
        super().__init__()
        self.elements, self.open = [], []

    @classmethod
    def parse(cls, text: str) -> Dom:
        dom = cls()
        dom.feed(text)
        return dom

    def of(self, tag: str) -> list[SimpleNamespace]:
        return [e for e in self.elements if e.tag == tag]

    def text(self, tag: str) -> list[str]:
        return [e.text.strip() for e in self.of(tag)]

    def handle_starttag(self, tag, attrs):
        element = SimpleNamespace(tag=tag, attrs=dict(attrs), text="", cells=[])
        self.elements.append(element)
        if tag in self.TEXT:
            self.open.append(element)

    def handle_endtag(self, tag):
        if self.open and self.open[-1].tag == tag:
            element = self.open.pop()
            rows = [e for e in self.open if e.tag == "tr"]
            if tag in ("td", "th") and rows:
                rows[-1].cells.append(element.text.strip())

    def handle_data(self, data):
        for element in self.open:
            element.text += data


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) pixels of an 8-bit, non-interlaced PNG (what chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    at, idat = 8, b""
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
            assert (depth, color, interlace) in ((8, 6, 0), (8, 2, 0)), (depth, color, interlace)
            size = 4 if color == 6 else 3
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw, stride, rows, previous = zlib.decompress(idat), width * size, [], bytes(width * size)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if kind == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, previous, strict=True))
        elif kind in (1, 3, 4):
            for i in range(stride):
                left = line[i - size] if i >= size else 0
                up, corner = previous[i], previous[i - size] if i >= size else 0
                if kind == 1:
                    line[i] = (line[i] + left) & 0xFF
                elif kind == 3:
                    line[i] = (line[i] + (left + up) // 2) & 0xFF
                else:
                    p = left + up - corner
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                    line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(b for i, b in enumerate(row) if i % size < 3) for row in rows]


def test_the_page_has_a_title_naming_the_playbook_and_the_result(page):
    dom = Dom.parse(page.dom)
    # The page's title comes first; the others are the tooltips in the timeline.
    assert dom.text("title")[0] == "vmfleet report: play" and dom.text("h1") == ["vmfleet report: play"]
    [summary] = [p for p in dom.text("p") if p.startswith("Result:")]
    assert summary.startswith("Result: failed in ") and summary.endswith("; 6 hosts; failed: app5.")


def test_one_row_per_host_with_its_phase_bars_drawn(page):
    measured, report = page.measured, page.report
    svg_left, svg_top, svg_width, svg_height = measured["svg"]
    assert svg_width >= 900 and svg_top + svg_height <= WINDOW[1], "the timeline is not all in the window"
    labels = {h["name"]: h for h in measured["hosts"]}
    assert sorted(labels) == HOSTS and len(measured["hosts"]) == len(HOSTS)  # one row, one name per host
    tops = [labels[h]["box"][1] for h in HOSTS]
    assert tops == sorted(tops) and len(set(tops)) == len(HOSTS)  # in the order they ran, on rows of their own
    for host in HOSTS:
        left, top, width, height = labels[host]["box"]
        assert width > 0 and height > 0
        row = [r for r in measured["rects"] if top <= r["box"][1] + r["box"][3] / 2 <= top + height]
        record = report["hosts"][host]
        assert len(row) == len(record["spans"]) + len(record["gaps"]), host
        for rect in row:
            x, _y, w, h = rect["box"]
            assert w > 0 and h > 0, (host, rect)
            assert left + width <= x and x + w <= svg_left + svg_width + 1, (host, rect)  # right of the name
            assert rect["fill"] == "rgb(%d, %d, %d)" % rgb(COLORS[rect["phase"]]), rect
        phases = [r["phase"] for r in row if r["phase"] not in ("other", "wait", "ansible")]
        assert phases[:4] == ["pull", "drain", "replace", "gate"], (host, phases)
        assert ("rollback" in phases) == (host == "app3"), (host, phases)
        bars = sorted(r["box"][0] for r in row if r["box"][3] > 10)
        assert len(bars) == len(set(bars)), host  # the bars follow one another


def test_the_legend_names_every_phase_in_its_colour(page):
    legend = [e for e in Dom.parse(page.dom).of("span") if e.attrs.get("class") == "legend"]
    assert [e.text for e in legend] == page.report["phases"]
    for element in legend:
        assert f"background:{COLORS[element.text]}" in element.attrs["style"]


def table(dom: Dom, heading: str) -> list[list[str]]:
    """The rows of the table whose first header cell is `heading`, without the header."""
    rows = [e.cells for e in dom.of("tr")]
    start = next(i for i, row in enumerate(rows) if row and row[0] == heading)
    end = next((i for i in range(start + 1, len(rows)) if rows[i] and rows[i][0] in ("#", "when", "host")), len(rows))
    return rows[start + 1:end]


def test_each_batch_with_its_result(page):
    batches = table(Dom.parse(page.dom), "#")
    assert [(r[0], r[1], r[2], r[4]) for r in batches] == [
        ("1", "Roll out in batches", "app1", "ok"), ("2", "Roll out in batches", "app2, app3", "failed: app3"),
        ("3", "Roll out in batches", "app4, app5, app6", "failed: app5")]


def test_the_failed_host_and_the_rollback_are_marked(page):
    measured = page.measured
    labels = {h["name"]: h for h in measured["hosts"]}
    assert labels["app5"]["fill"] == "rgb(204, 0, 0)"  # failed: red
    assert labels["app3"]["fill"] == "rgb(179, 89, 0)"  # rolled back: orange
    assert {labels[h]["fill"] for h in ("app1", "app2", "app4", "app6")} == {"rgb(0, 0, 0)"}

    def row_of(mark):
        middle = mark["box"][1] + mark["box"][3] / 2
        return [h for h, label in labels.items() if label["box"][1] - 4 <= middle <= sum(label["box"][1::2]) + 4]

    assert sorted((row_of(m), m["event"], m["mark"]) for m in measured["marks"]) == [
        (["app3"], "failed", "\u2716"), (["app3"], "rollback", "\u21ba"), (["app5"], "failed", "\u2716")]
    for mark in measured["marks"]:
        assert mark["box"][2] > 0 and mark["box"][3] > 0
    events = table(Dom.parse(page.dom), "when")
    assert [(r[1], r[2]) for r in events] == [("app3", "failed"), ("app3", "rollback"), ("app5", "failed")]
    hosts = {r[0]: r[1] for r in table(Dom.parse(page.dom), "host")}
    assert hosts == {"app1": "ok", "app2": "ok", "app3": "rolled back", "app4": "ok", "app5": "failed", "app6": "ok"}


def test_the_time_per_host_adds_up(page):
    rows = table(Dom.parse(page.dom), "host")
    assert sorted(r[0] for r in rows) == HOSTS
    for row in rows:
        step, phases = float(row[2]), float(row[-1])
        assert step > 0 and abs(phases - step) <= 0.05 * step + 0.05, row  # the page rounds to 0.1 s
        assert abs(sum(float(c) for c in row[3:-1]) - step) <= 0.05 * step + 0.05 * len(row[3:-1]), row


def test_nothing_comes_from_elsewhere(page):
    dom = Dom.parse(page.dom)
    names = {e.tag for e in dom.elements}
    for tag in ("script", "link", "img", "iframe", "object", "embed", "video", "audio", "source", "base"):
        assert tag not in names, tag
    for element in dom.elements:
        for name in ("src", "href", "xlink:href", "srcset", "action", "data", "poster"):
            assert not (element.attrs.get(name) or "").startswith(("http://", "https://", "//")), element
    assert "url(" not in page.dom and "@import" not in page.dom


def test_the_screenshot_shows_the_timeline(page):
    width, height, rows = read_png(page.screenshot)
    assert (width, height) == WINDOW
    colours = {row[i:i + 3] for row in rows for i in range(0, len(row), 3)}
    assert len(colours) >= 50, f"{len(colours)} colours: a blank page?"
    # Each phase's bars, in their colour, in the timeline right of the host names (not only in the legend).
    left, top, svg_width, svg_height = (round(v) for v in page.measured["svg"])
    names = max(round(sum(h["box"][0::2])) for h in page.measured["hosts"])
    pixels = {}
    for row in rows[top:top + svg_height]:
        for i in range(3 * names, 3 * (left + svg_width), 3):
            pixels[row[i:i + 3]] = pixels.get(row[i:i + 3], 0) + 1
    for phase in ("pull", "drain", "replace", "gate", "enable", "rollback", "other"):
        assert pixels.get(bytes(rgb(COLORS[phase])), 0) >= 50, phase
    assert pixels.get(bytes((204, 0, 0)), 0) >= 5  # the failure marks
    print(f"screenshot {page.screenshot}: {width}x{height}, {len(colours)} colours")
