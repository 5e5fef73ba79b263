"""What ``sims`` prints: the verdict table at 80 columns, plain progress lines in logs, figure options."""

from __future__ import annotations

import io
import json

from rich.console import Console
from typer.testing import CliRunner

import sims_toy
from cli_runner import invoke
from sims.cli import render
import sims.core as engine
from sims.cli.app import build_app
from sims.core.execution import verdict_rows
from sims.core.experiment import VerdictRow
from sims.experiments import get

LONG = "control (mean-field): sup_t ||r(t) - r_lin(t)|| not ~ m^-1/2 over the whole ladder of prefix lengths"
ROWS = [
    VerdictRow("1. ||H(0) - H*|| ~ m^-1/2", "slope -0.5 +- 0.05", "-0.465 [-0.606, -0.324]", True),
    VerdictRow("4b. max_r ||p_r(t) - p_r(0)|| ~ m^-1/2 e^{sigma|u|sqrt(2 log m)}", "slope -0.268 +- 0.05",
               "-0.280 [-0.383, -0.177]", True),
    VerdictRow(LONG, "slope outside -0.5 +- 0.05", "-0.1 [-0.2, 0.0]", False),
    VerdictRow("given id", "a", "b", True, id="x1", short="short name"),
]


def _text(table, width=80) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(table)
    return buf.getvalue()


def test_verdict_table_one_line_per_claim_at_any_width():
    rows = verdict_rows(ROWS)
    assert [r.id for r in rows] == ["1", "4b", "3", "x1"]
    assert rows[1].short.startswith("max_r") and rows[1].claim == ROWS[1].claim  # the full statement is kept
    for width in (60, 80, 120, 200):
        lines = _text(render.verdict_table(rows, run_id="toy-0123", width=width), width=width).splitlines()
        assert max(len(line) for line in lines) <= width
        body = [ln for ln in lines if "PASS" in ln or "FAIL" in ln]
        assert len(body) == 4  # one line per claim, numbered 1..4 without gaps
        assert [ln.split()[0] for ln in body] == ["1", "2", "3", "4"]
        assert "sims show toy-0123 --full" in " ".join(lines)  # where the details are
    wide = _text(render.verdict_table(rows, width=200), width=200)
    assert "short name" in wide and LONG.split(" over")[0] in wide  # the claim uses the width there is
    narrow = _text(render.verdict_table(rows, width=80), width=80)
    assert LONG not in narrow and "…" in narrow and "detail" not in narrow
    full = _text(render.verdict_table(rows, full=True), width=200)
    assert LONG in full


def test_verdict_table_shows_the_numbers_and_undecided_rows():
    from sims.core.verdicts import rate_row

    ms = [100, 400, 1600]
    row = rate_row("7", "x ~ m^-1/2", ms, [[m ** -0.5 * (1 + 0.5 * s) for s in range(2)] for m in ms],
                   predicted=-0.5, quantity="slope")
    und = VerdictRow.undecided("y", "", "", "too few seeds", estimate=1.0, low=0.5, high=1.5, target=1.2,
                               relation=">=", n_needed=40)
    text = _text(render.verdict_table([row, und], width=100), width=100)
    assert "-0.5 ± 0.1" in text and "UNDECIDED" in text and "1 [0.5, 1.5]" in text and ">= 1.2" in text
    full = _text(render.verdict_table([row, und], full=True), width=160)
    assert "too few seeds" in full and "would decide: about 40" in full


def test_full_table_names_the_controls_of_new_and_old_manifests():
    claim = VerdictRow("x ~ m^-1/2", "a", "b", True, id="1", controls=("c0", "c1"))
    control = VerdictRow("control: x not ~ m^0", "a", "b", True, id="c0", controls=("1",), is_control=True)
    old = {"claim": "y ~ m^-1/2", "predicted": "a", "measured": "b", "passed": True, "id": "2", "control": "c2, c3"}
    full = _text(render.verdict_table([claim.as_dict(), control, old], full=True), width=200)
    assert "negative control: c0, c1" in full and "controls 1" in full and "negative control: c2, c3" in full


def test_manifest_keeps_ids_and_full_statements(tmp_path):
    res = engine.run(get("toy"), sims_toy.ToyConfig(seeds=1), out=tmp_path)
    m = json.loads(res.manifest_path.read_text())
    assert [r["id"] for r in m["verdict"]] == ["1", "2"] and m["verdict"][0]["claim"] == "mean near x"
    r = invoke("show", res.run_id, "--out", tmp_path, "--full")
    assert r.exit_code == 0 and "mean near x" in r.stdout


def test_plain_progress_lines_when_not_a_terminal(tmp_path):
    stream = io.StringIO()
    progress = render.Progress(plain=None, stream=stream)  # StringIO is not a terminal
    assert progress.plain
    p = engine.plan(get("toy"), sims_toy.ToyConfig(x=(0.0, 1.0, 2.0), seeds=2), out=tmp_path)
    engine.execute(p, on_event=progress)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # one per call
    assert lines[0].startswith("call 1/3: 2/6 cells, elapsed ") and "remaining ~" in lines[0]
    assert lines[-1].startswith("call 3/3: 6/6 cells") and lines[-1].endswith("remaining ~0:00:00")


def test_events_in_order(tmp_path):
    seen = []
    engine.run(get("toy"), sims_toy.ToyConfig(x=(0.0, 1.0), seeds=2), out=tmp_path, on_event=seen.append)
    kinds = [type(e).__name__ for e in seen]
    assert kinds == ["Started", "BatchStarted", "CellFinished", "CellFinished", "BatchFinished", "BatchStarted",
                     "CellFinished", "CellFinished", "BatchFinished", "Finished"]
    assert seen[0].total == 4 and seen[0].calls == 2 and seen[-1].result.passed


def test_cli_log_has_progress_lines(tmp_path):
    r = CliRunner(env={"COLUMNS": "80", "PREFIX_NTK_COMPILE_CACHE": "off"}).invoke(
        build_app(),
        ["run", "toy", "--out", str(tmp_path), "--x", "0", "--x", "1", "--seeds", "1"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "call 2/2: 2/2 cells" in r.output


def test_figures_bad_option_is_named_with_its_valid_values(tmp_path):
    for args, text in [(["--venue", "foo"], "--venue 'foo' is not known; valid: "),
                       (["--width", "huge"], "--width 'huge'"),
                       (["--format", "gif"], "--format 'gif' is not known; valid: pdf, png, svg"),
                       (["--dpi", "5"], "--dpi 5 is out of range"),
                       (["--only", "nope"], "unknown figure(s) ['nope'] for --only")]:
        r = invoke("figures", "--results", tmp_path, "--out", tmp_path / "o", "--no-run", *args)
        assert r.exit_code == 2, r.output
        assert text in r.output, r.output
    from figures import style
    from sims.cli import figures as figures_cli

    r = CliRunner().invoke(figures_cli.app(), ["--venue", "foo", "--results", str(tmp_path)])  # python -m figures
    assert r.exit_code == 2 and all(v in r.output for v in style.VENUES)
    assert not (tmp_path / "o").exists()
