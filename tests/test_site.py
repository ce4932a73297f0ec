"""The website as a reader sees it: build the book once (warnings are errors),
serve the HTML on 127.0.0.1, load every page in headless Chromium and check
that equations are typeset by MathJax, that figures load, and that Table 3's
page shows the paper's and our columns. Screenshots of a few pages are kept
under ``_build/screenshots/`` for a person to look at.

Chromium is Debian's ``chromium`` package (``make test`` installs it). A small
page served beside the site loads each page in an iframe, waits for MathJax,
and writes what it finds (``mjx-container`` count, every image's
``naturalWidth``, the page text) into its own DOM, which ``--dump-dom`` prints:
no browser-driver dependency is needed.
"""

from __future__ import annotations

import functools
import html
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

CHECK_PAGE = """<!doctype html><html><body><pre id="out">pending</pre>
<iframe id="f" src="{page}" style="width:1280px;height:1000px"></iframe>
<script>
const f = document.getElementById('f');
f.addEventListener('load', async () => {{
  const w = f.contentWindow, d = f.contentDocument;
  if (w.MathJax && w.MathJax.startup) {{ await w.MathJax.startup.promise; }}
  const images = [...d.images].map(i => ({{src: i.getAttribute('src'), width: i.naturalWidth}}));
  // at 1280 px: elements that stick out of the article's column, other than inside a scroll container
  const col = d.querySelector('article.bd-article') || d.querySelector('main') || d.body;
  const cr = col.getBoundingClientRect();
  const scrolled = e => {{ for (let a = e.parentElement; a && a !== col; a = a.parentElement) {{
      const o = w.getComputedStyle(a).overflowX; if (o === 'auto' || o === 'scroll') return true; }} return false; }};
  const sticks = e => {{ const r = e.getBoundingClientRect();
      return r.width > 0 && (r.right > cr.right + 2 || r.left < cr.left - 2) && !scrolled(e); }};
  const overflow = [...col.querySelectorAll('*')].filter(e => sticks(e) && !(e.parentElement !== col && sticks(e.parentElement)))
      .map(e => e.tagName.toLowerCase() + '.' + (e.getAttribute('class') || '') + ': ' + (e.textContent || '').trim().slice(0, 60));
  document.getElementById('out').textContent = JSON.stringify({{
    title: d.title, mathjax: !!(w.MathJax && w.MathJax.startup), mjx: d.querySelectorAll('mjx-container').length,
    mathErrors: [...d.querySelectorAll('mjx-merror')].map(e => e.textContent),
    images: images, tables: d.querySelectorAll('table').length, overflow: overflow, text: d.body.innerText}});
}});
</script></body></html>"""


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                pages.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc["parts"])
    return pages


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The built HTML: one `jupyter-book build` per test session, with warnings as
    errors; or the build named by $KPS_SITE_HTML (e.g. _build/site/_build/html
    after `make site`), to check an existing build without rebuilding."""
    if os.environ.get("KPS_SITE_HTML"):
        return Path(os.environ["KPS_SITE_HTML"])
    out = tmp_path_factory.mktemp("site")
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", "--warningiserror", "--nitpick",
           str(ROOT), "--path-output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def server(site):
    """Serve the site on 127.0.0.1, plus /__check__?page=PATH (the probe page)."""

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self):
            url = urlparse(self.path)
            if url.path != "/__check__":
                return super().do_GET()
            page = html.escape(parse_qs(url.query)["page"][0], quote=True)
            body = CHECK_PAGE.format(page=page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def chromium(args: list[str], tmp_path: Path) -> str:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install -y chromium)")
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    done = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def probe(server: str, page: str, tmp_path: Path) -> dict:
    """What a reader's browser shows on ``page`` (a path under the site)."""
    dom = chromium(["--virtual-time-budget=30000", "--dump-dom", f"{server}/__check__?page=/{page}"], tmp_path)
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.S)
    assert found and found.group(1) != "pending", f"{page}: the probe did not finish"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def pages(server, tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("chromium")
    return {page: probe(server, f"{page}.html", tmp) for page in toc_pages()}


def test_every_page_loads_with_its_figures(pages):
    for page, seen in pages.items():
        assert seen["title"] and "404" not in seen["title"], page
        assert seen["mathErrors"] == [], f"{page}: MathJax could not typeset {seen['mathErrors']}"
        for image in seen["images"]:
            assert image["width"] > 0, f"{page}: image {image['src']} did not load"
    for page, at_least in (("notebooks/fig1_4_boundaries", 5), ("book/differences", 1)):
        assert len(pages[page]["images"]) >= at_least, page


def test_no_element_overflows_its_column_at_1280_px(pages):
    """Wide equations, tables and code scroll inside their own box; nothing is cut off or hidden."""
    over = {page: found["overflow"] for page, found in pages.items() if found["overflow"]}
    assert not over, json.dumps(over, indent=1, ensure_ascii=False)[:4000]


def committed_validity(protocol: str):
    from kps.report import read_paper_numbers, validity
    from kps.results import load_records

    records = load_records(ROOT / "results")
    return records, validity.protocol_validity(records, read_paper_numbers(ROOT / "book/paper_numbers.csv"), protocol)


def test_claims_page(pages):
    """Verdicts on the paper only at its protocol; a reduced protocol's comparisons as what that
    scale does, beside its validity figures (computed here from the record files)."""
    from kps import claims
    from kps.report import grid_records
    from kps.grids import paper_grid

    text = pages["notebooks/claims"]["text"]
    paper_part, _, reduced_part = text.partition("At a reduced protocol: what that scale does")
    assert "Claims checked" in paper_part and reduced_part and "Test error over training" in reduced_part
    records, check = committed_validity("paper")
    done, missing = grid_records(records, paper_grid())
    assert f"{len(done)} of {len(done) + len(missing)} runs have a record" in paper_part
    table = claims.claims_table(records, "paper")
    for said in table[claims.VERDICT]:
        assert said in paper_part
    assert str(check.rank) in paper_part
    _, small = committed_validity("CPU-scale")
    assert str(small.rank) in reduced_part and "did not train clearly above chance: arcface" in reduced_part
    assert claims.SCALE_SHOWS in reduced_part
    for word in ("supported", "contradicted", "inconclusive"):
        assert word not in reduced_part, word
    for said in set(claims.claims_table(records, "CPU-scale")[claims.SCALE_SHOWS]) - {""}:
        assert said.replace("'", "’") in reduced_part or said in reduced_part
    assert len(pages["notebooks/claims"]["images"]) >= 2       # the training curves of each protocol


def test_protocol_page(pages):
    protocol = pages["book/protocol"]["text"]
    assert "cifar10_lt_small" in protocol and "reference-style" in protocol and "pilot" in protocol
    # the protocol's values are glued from kps.configs, the pilot's and the bench's from their files
    from kps.configs import PRESETS
    from kps.report import benchfiles
    from kps.grids import cpu_grid

    paper, small = PRESETS["cifar10_lt"], PRESETS["cifar10_lt_small"]
    assert f"{small.epochs} epochs instead of {paper.epochs}" in protocol
    assert f"lr decays at {paper.decay_epochs[0]}/{paper.decay_epochs[1]} → " \
           f"{small.decay_epochs[0]}/{small.decay_epochs[1]}" in protocol
    ce = [h["loss"] for h in json.loads((ROOT / "bench/results/cpu-pilot-2026-12-01/ce.seed0.json").read_text())["history"]]
    blocks = [sum(ce[i:i + 5]) / 5 for i in range(0, 55, 5)]
    late = ", ".join(f"{100 * (b / a - 1):+.1f}" for a, b in zip(blocks[-4:], blocks[-3:]))
    assert f"The CE loss changes by {late} % from one block" in protocol
    pilot_ga = json.loads((ROOT / "bench/results/cpu-pilot-2026-12-01/kps_ga.seed0.json").read_text())
    assert f"left the tail classes {pilot_ga['group_errors']['tail']:.0f} % wrong" in protocol
    bench = benchfiles.read_bench(ROOT / "bench/results/cpu-intel-r-xeon-r-processor-2026-12-01.json")
    t = benchfiles.trainer_row(bench, "fast_none")
    assert (f"evaluates the test set in {t['eval_s_per_epoch']:.1f} s against "
            f"{t['epoch_s'] - t['eval_s_per_epoch']:.1f} s") in protocol
    assert "Tail classes worse than the head classes:" in protocol and f"{len(cpu_grid())} runs" in protocol
    # its validity, computed from the records: no sentence says it can test the paper's claims
    _, check = committed_validity("CPU-scale")
    assert str(check.rank) in protocol
    verdict = "preserves" if check.rank.preserved and not check.untrained else "does not preserve"
    assert f"By these rules the CPU-scale protocol {verdict} the paper\u2019s comparisons" in protocol
    assert "can test the paper" not in protocol
    results = pages["book/results"]["text"]
    assert "What has been run." in results and "min on one core" in results and not re.search(r"\bnan\b", results)


def test_scale_page(pages):
    from kps.report import read_paper_numbers, scale

    records, _ = committed_validity("CPU-scale")
    rows = scale.scale_rows(records, read_paper_numbers(ROOT / "book/paper_numbers.csv"))
    seen = pages["notebooks/scale"]
    text = seen["text"].replace("\u2019", "'")
    lines = scale.scale_summary(rows).lines()
    assert lines[0] in text and lines[-1] in text
    assert len(seen["images"]) == 1 and seen["tables"] >= 1
    for name, how in zip(rows["name"], rows["breaks"]):
        assert name in text and (how or "no") in text


def test_equations_are_typeset(pages):
    assert pages["book/derivation"]["mathjax"]
    assert pages["book/derivation"]["mjx"] >= 40      # eqs. 1-25 and the inline maths around them
    assert pages["book/hyperparameters"]["mjx"] >= 5   # eqs. 26-30
    assert pages["notebooks/fig1_4_boundaries"]["mjx"] >= 3


def test_table3_shows_paper_and_ours(pages):
    seen = pages["notebooks/table3"]
    text = seen["text"]
    assert seen["tables"] >= 2
    assert "paper" in text and "ours (final epoch)" in text and "ours best" in text
    for number in ("18.77", "15.41", "54.97", "50.82", "29.64"):   # the paper's KPS and CE cells
        assert number in text
    assert re.search(r"not run|\(n=\d+\)", text)                  # our cells: a record's summary or "not run"
    assert "not in this artifact" in text                        # BBN, meta-learning


def committed_kps_ga() -> dict[str, dict]:
    """The committed full-length KPS-GA records of the JPEG copy, by GA variant."""
    from kps.results import load_records

    return {r["config"]["ga_variant"]: r for r in load_records(ROOT / "results")
            if r["config"]["method"] == "kps_ga" and r["config"]["dataset"] == "cifar10-jpeg" and r["epochs"] == 200}


def test_table3_shows_both_ga_variants_and_their_provenance(pages):
    text = pages["notebooks/table3"]["text"]
    records = committed_kps_ga()
    assert set(records) == {"paper", "official"}
    assert "KPS loss (Ours) (kps_ga), GA: authors' per-sample row scale" in text     # its own row
    for rec in records.values():
        assert f"{rec['top1_error']:.2f} (n=1) [CIFAR-10 (JPEG copy)" in text
        assert f"{rec['best_top1_error']:.2f} (n=1)" in text
    assert "NVIDIA H200" in text and records["paper"]["torch_version"] in text
    assert "[1] The file says commit 65a4c88 with a dirty tree" in text and "stale .git" in text
    assert text.count("not run") >= 20                                               # every other cell of ours
    results = pages["book/results"]["text"]
    assert "stale .git" in results and "cf36c4a" in results and "dirty tree" in results


def test_differences_page_reads_the_ga_records(pages):
    text = pages["book/differences"]["text"]
    records = committed_kps_ga()
    for rec in records.values():
        assert f"{rec['top1_error']:.2f} %" in text
    # the first per-class table is the paper-protocol pair's (one decimal); a reduced protocol's comes
    # after it, under its own label
    before, _, reduced_part = text.partition("At the CPU-scale protocol (a reduced protocol):")
    paper_part = before.partition("At the paper\u2019s protocol:")[2]  # smart quotes on the page
    assert paper_part and reduced_part
    for rec in records.values():
        assert all(f"{a:.1f}" in paper_part for a in rec["per_class_accuracy"]), rec["config"]["ga_variant"]
    # the reduced table: the CPU-scale pair's values, mean over its seeds
    from kps.report import ga_variant_per_class
    from kps.results import load_records

    small = ga_variant_per_class(load_records(ROOT / "results"), "CPU-scale")
    assert small.attrs["pair"].replace("'", "\u2019") in reduced_part
    assert all(f"{a:.1f}" in reduced_part for a in small.loc["authors' GA (row s_y)"])
    # the test-rule statement, per protocol, from the records; maths typeset, no cell cut short
    from kps.report import readout

    for protocol in ("paper", "CPU-scale"):
        assert readout.rule_summary(load_records(ROOT / "results"), protocol).sentence().replace("'", "\u2019") in text
    assert "\\cos" not in text and "$" not in text
    assert "GA: authors' per-sample row scale; lr: authors' schedule; m_max 0.2; subset_seed 666" in text
    assert pages["book/differences"]["mjx"] >= 20


def test_speed_page(pages):
    seen = pages["notebooks/speed"]
    text = seen["text"]
    job2 = json.loads((ROOT / "bench" / "results" / "nvidia-h200-2026-11-26-job2.json").read_text())["trainers"]
    ratio = job2["fast_reduce-overhead"]["train_images_per_s"] / job2["reference"]["train_images_per_s"]
    assert f"{ratio:.2f}× (fast_reduce-overhead" in text
    assert f"{job2['reference']['train_images_per_s']:.0f}" in text
    assert f"{job2['fast_reduce-overhead']['projected_run_s']:.0f} s projected" in text
    assert "2 of 12 runs finished" in text and "one full run ≤ 60 s" in text
    assert "nvidia-h200-2026-11-26-job1" in text and "dirty tree" in text and "[1]" in text and "stale .git" in text
    assert "None of the three targets is met yet" in text or "targets met" in text or "All three" in text
    assert seen["tables"] >= 4 and len(seen["images"]) >= 1      # targets, 2 bench tables, grid; the chart


def test_screenshots(server, tmp_path):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for page in ("book/derivation", "notebooks/table3", "notebooks/fig1_4_boundaries", "notebooks/fig5_toy",
                 "notebooks/speed", "book/results"):
        target = SCREENSHOTS / f"{page.replace('/', '_')}.png"
        target.unlink(missing_ok=True)
        chromium(["--virtual-time-budget=20000", "--window-size=1280,2200", f"--screenshot={target}",
                  f"{server}/{page}.html"], tmp_path)
        assert target.stat().st_size > 20_000, f"{target} looks empty"
