"""The report (`sims report`, `sims reproduce`): its files from small synthetic stored runs, and the
page in a real headless Chromium (images load, no console error, the summary counts equal
verdicts.json's, the screenshot is not blank), with negative controls for each check.

Without Chromium the browser test skips and says why; with PREFIX_NTK_REQUIRE_BROWSER=1 (set by
.ci/run) the skip is a failure, so the test cannot silently stop running in CI.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

import sims_toy  # noqa: F401  (registers the "toy" experiment)
from browser import Browser, find_chromium
from cli_runner import invoke
from report_fixtures import rows_paper1, write_runs
from sims.report import catalog, collect

STATUSES = ("pass", "fail", "undecided")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report-results")
    write_runs(out)
    res = invoke("report", "--out", out)
    assert res.exit_code == 1, res.output  # one synthetic claim fails
    return out / "report"


def _counts(records):
    c = {(k, s): 0 for k in ("claims", "controls") for s in STATUSES}
    for r in records:
        c[("controls" if r["is_control"] else "claims", r["status"])] += 1
    return c


def test_report_files_hold_every_claim_with_its_numbers(report_dir):
    data = json.loads((report_dir / "verdicts.json").read_text())
    recs = data["claims"]
    assert len(recs) == 7 and [r["number"] for r in recs if r["experiment"] == "kernel"] == [1, 2, 3, 4]
    by = {(r["experiment"], r["id"]): r for r in recs}
    rate = by[("kernel", "1")]
    assert rate["status"] == "pass" and rate["controls"] == ["c1"] and rate["control_status"] == "pass"
    assert rate["low"] < rate["estimate"] < rate["high"] and rate["target"] == -0.5 and rate["tol"] == 0.1
    assert rate["section"].startswith("2.1") and rate["paper"] == "1"
    assert rate["provenance"]["revision"] == "0" * 40 and rate["provenance"]["dtype"] == "float64"
    assert rate["command"] == "sims run kernel --synthetic --out " + str(report_dir.parent)
    und = by[("kernel", "2")]
    assert und["status"] == "undecided" and und["n_needed"] and "seeds" in und["detail"]
    assert by[("reparam", "1")]["status"] == "fail"
    assert data["summary"]["failed"][0]["claim"] == "two-point test separates the structures"
    total = data["summary"]["total"]
    assert {(k, s): total[k][s] for k in total for s in STATUSES} == _counts(recs)
    html = (report_dir / "index.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "http://" not in html and "https://" not in html
    md = (report_dir / "report.md").read_text()
    assert "| 1 | 1 | \\|\\|H(0) - H*\\|\\| ~ m^-1/2 |" in md and (report_dir / "figures" / "kernel-verdict.png").is_file()


def broken_links(html: str) -> list[str]:
    """The in-page links (``href="#..."``) of ``html`` whose target id is not on the page."""
    ids = set(re.findall(r'\sid="([^"]+)"', html))
    return [h for h in re.findall(r'href="#([^"]*)"', html) if h not in ids]


def _row_html(html: str, experiment: str, number: int) -> str:
    start = html.index(f'<tr id="claim-{experiment}-{number}"')
    return html[start:html.index("</tr>", start)]


def test_each_row_links_to_the_figure_panels_that_draw_it(report_dir):
    data = json.loads((report_dir / "verdicts.json").read_text())
    html = (report_dir / "index.html").read_text()
    md = (report_dir / "report.md").read_text()
    assert broken_links(html) == []
    recs = data["claims"]
    # Every synthetic row has numbers, so each is a strip of its run's verdict figure.
    assert all(r["figures"] for r in recs), [r["id"] for r in recs if not r["figures"]]
    for r in recs:
        row = _row_html(html, r["experiment"], r["number"])
        for link in r["figures"]:
            assert f'href="#{link["anchor"]}"' in row and link["panel"] in row, (r["id"], link)
            assert f'id="{link["anchor"]}"' in html
            assert (report_dir / link["file"]).is_file() and f"]({link['file']})" in md
        assert r["figures"][0]["panel"] == f"strip {r['id']}"
    # Each figure names the rows it shows, each a link back to the row's line of the table.
    for exp in ("kernel", "reparam"):
        fig = re.search(rf'<figure id="fig-{exp}-1">.*?</figure>', html, re.S).group(0)
        shown = sorted(int(n) for n in re.findall(rf'href="#claim-{exp}-(\d+)"', fig))
        assert shown == sorted(r["number"] for r in recs if r["experiment"] == exp)
    # Negative control: a figure whose anchor is gone leaves its rows' links dangling, and the check says so.
    assert broken_links(html.replace('id="fig-kernel-1"', 'id="fig-gone"'))


def test_figure_links_follow_the_panels_each_figure_records():
    from sims.report import build

    figs = [build.Figure("kernel-kernel", "K", b"", {"(a) concentration": ["1", "c1"]}),
            build.Figure("kernel-verdict", "V", b"", {"strip 1": ["1"], "strip 3": ["3"]})]
    links = build.figure_links("kernel", figs)
    assert [(l["anchor"], l["figure"], l["panel"]) for l in links["1"]] == [
        ("fig-kernel-1", "kernel", "(a) concentration"), ("fig-kernel-2", "verdict", "strip 1")]
    assert links["3"][0]["file"] == "figures/kernel-verdict.png" and "2" not in links


def test_report_exit_code_and_run_selection(tmp_path):
    ids = write_runs(tmp_path)
    assert invoke("report", ids[0], "--out", tmp_path, "--no-figures").exit_code == 0  # the paper-1 run alone
    assert invoke("report", ids[1][:12], "--out", tmp_path, "--no-figures").exit_code == 1
    assert invoke("report", "nosuchrun", "--out", tmp_path).exit_code == 2
    assert invoke("report", "--out", tmp_path / "empty").exit_code == 2


def test_run_command_names_the_options_that_differ():
    m = {"experiment": "toy", "config": {"x": [0.0, 3.0], "n": [8], "seeds": 2, "noisy": False, "scale": 1.0},
         "precision": "float32"}
    assert collect.run_command(m) == "sims run toy --x 0 --x 3 --no-noisy --precision float32"


def test_reproduce_runs_the_catalog_resumably_then_reports(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "CATALOG", (catalog.Entry("toy", "other", "", "", "toy claims"),))
    res = invoke("reproduce", "--out", tmp_path, "--no-figures")
    assert res.exit_code == 0, res.output
    assert "0 cell(s) stored,    4 to run" in res.output and (tmp_path / "report" / "verdicts.json").is_file()
    again = invoke("reproduce", "--out", tmp_path, "--no-figures")
    assert again.exit_code == 0 and "4 cell(s) stored,    0 to run" in again.output
    assert invoke("reproduce", "--only", "nosuch", "--out", tmp_path).exit_code == 2


def test_reproduce_exits_1_when_a_claim_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(catalog, "CATALOG", (catalog.Entry("toy", "other", "", "", "toy claims"),))
    monkeypatch.setitem(catalog.QUICK, "toy", {"tol": 1e-9})  # the toy's "mean near x" claim then fails
    assert invoke("reproduce", "--out", tmp_path, "--no-figures").exit_code == 1


# ----------------------------------------------------------------------------- in a real browser


def _chromium() -> str:
    exe = find_chromium()
    if exe is None:
        why = "no Chromium on the PATH (Debian: apt-get install chromium)"
        if os.environ.get("PREFIX_NTK_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PREFIX_NTK_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    return exe


def check_in_browser(browser: Browser, report: Path) -> tuple[list[str], bytes]:
    """Problems seen by a real browser opening ``report/index.html``, and a screenshot of its top."""
    browser.events.clear()
    browser.open(report / "index.html")
    problems = list(browser.errors())
    images = browser.evaluate("Array.from(document.images).map(i => [i.alt, i.complete && i.naturalWidth > 0])")
    problems += [f"image not loaded: {alt}" for alt, ok in images if not ok]
    dangling = browser.evaluate("Array.from(document.querySelectorAll('a[href^=\"#\"]')).map(a => "
                                "a.getAttribute('href')).filter(h => !document.getElementById(h.slice(1)))")
    problems += [f"link to a missing target: {h}" for h in dangling]
    if not images:
        problems.append("no image on the page")
    shown = browser.evaluate("Object.fromEntries(Array.from(document.querySelectorAll('[data-group=\"all\"]'))"
                             ".map(e => [e.dataset.kind + ':' + e.dataset.status, Number(e.textContent)]))")
    want = _counts(json.loads((report / "verdicts.json").read_text())["claims"])
    for (kind, status), n in want.items():
        if shown.get(f"{kind}:{status}") != n:
            problems.append(f"summary shows {kind} {status} = {shown.get(f'{kind}:{status}')}, verdicts.json has {n}")
    return problems, browser.screenshot()


def _not_blank(png: bytes) -> bool:
    from PIL import Image

    px = np.asarray(Image.open(io.BytesIO(png)).convert("L"), float)
    return px.std() > 10 and (px < 200).mean() > 0.01


def test_report_in_a_real_browser(report_dir, tmp_path):
    with Browser(_chromium()) as browser:
        problems, shot = check_in_browser(browser, report_dir)
        assert problems == []
        assert _not_blank(shot)
        (tmp_path / "top.png").write_bytes(shot)

        # Negative controls: a broken image, and a count that disagrees with verdicts.json.
        broken = tmp_path / "broken"
        broken.mkdir()
        html = (report_dir / "index.html").read_text()
        (broken / "index.html").write_text(re.sub(r"data:image/png;base64,[^\"]+", "figures/missing.png", html, count=1))
        (broken / "verdicts.json").write_text((report_dir / "verdicts.json").read_text())
        problems, _ = check_in_browser(browser, broken)
        assert any(p.startswith("image not loaded") for p in problems), problems

        miscounted = tmp_path / "miscounted"
        miscounted.mkdir()
        (miscounted / "index.html").write_text(html)
        data = json.loads((report_dir / "verdicts.json").read_text())
        data["claims"] = data["claims"][1:]
        (miscounted / "verdicts.json").write_text(json.dumps(data))
        problems, _ = check_in_browser(browser, miscounted)
        assert any(p.startswith("summary shows") for p in problems), problems

        erroring = tmp_path / "erroring"
        erroring.mkdir()
        (erroring / "index.html").write_text(html.replace("</body>", "<script>console.error('boom')</script></body>"))
        (erroring / "verdicts.json").write_text((report_dir / "verdicts.json").read_text())
        problems, _ = check_in_browser(browser, erroring)
        assert any("boom" in p for p in problems), problems


def test_blank_screenshot_is_caught():
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (200, 100), "white").save(buf, format="PNG")
    assert not _not_blank(buf.getvalue())


def test_rows_fixture_covers_every_status():
    assert {r.status for r in rows_paper1()} == {"pass", "undecided"}
    assert dataclasses.asdict(rows_paper1()[1])["is_control"] is True


def test_without_chromium_the_test_skips_unless_ci_requires_it(monkeypatch):
    import sys

    monkeypatch.setattr(sys.modules[__name__], "find_chromium", lambda: None)
    monkeypatch.delenv("PREFIX_NTK_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        _chromium()
    monkeypatch.setenv("PREFIX_NTK_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="PREFIX_NTK_REQUIRE_BROWSER=1"):
        _chromium()
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "export PREFIX_NTK_REQUIRE_BROWSER=1" in ci and "apt-get install" in ci and "chromium" in ci


def test_a_claim_with_several_controls_reports_them_together():
    from sims.report.collect import linked_status

    by_id = {"a-c0": {"status": "pass"}, "a-c1": {"status": "undecided"}, "b-c0": {"status": "fail"},
             "a": {"status": "pass"}}
    assert linked_status({"controls": ["a-c0"]}, by_id) == "pass"
    assert linked_status({"controls": ["a-c0", "a-c1"]}, by_id) == "undecided"
    assert linked_status({"controls": ["a-c0", "a-c1", "b-c0"]}, by_id) == "fail"  # one missed control shows
    assert linked_status({"controls": ["a"], "is_control": True}, by_id) == "pass"  # a control names its claim
    assert linked_status({"controls": ["gone"]}, by_id) is None and linked_status({}, by_id) is None
