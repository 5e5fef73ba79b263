"""Every figure script builds its PDF and PNG from a small results folder, reproducibly.

The folder holds every experiment at ``sims.experiments.presets.SMALL`` sizes (run once per session,
shared with ``test_notebooks.py``; see ``tests/fixtures/shared_results.py``).  The figures are
built twice into two folders: the bytes must be identical, and the PDFs must embed TrueType
fonts only (no Type 3).
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from figures import FIGURES, common, style  # noqa: E402
from figures.build import build_available  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def builds(small_results, tmp_path_factory):
    """All figures built twice from the same results (never running a simulation)."""
    outs = [tmp_path_factory.mktemp("figures-a"), tmp_path_factory.mktemp("figures-b")]
    builds = [build_available(small_results, out, small=True) for out in outs]
    assert all(not missing for _, missing in builds), builds[0][1]
    return [built for built, _ in builds]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("name", FIGURES)
def test_figure_builds_pdf_and_png(name, builds):
    paths = builds[0][name]
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"]
    pdf = next(p for p in paths if p.suffix == ".pdf").read_bytes()
    png = next(p for p in paths if p.suffix == ".png")
    assert pdf.startswith(b"%PDF-") and len(pdf) > 5_000
    w, h = _png_size(png)
    mod = common.module(name)
    expected = round(style.figsize("acl", mod.DEFAULT_WIDTH)[0] * style.PNG_DPI)
    assert abs(w - expected) <= 1 and h > 100, (w, h, expected)


@pytest.mark.parametrize("name", FIGURES)
def test_rebuild_gives_identical_bytes(name, builds):
    a, b = builds
    assert [p.name for p in a[name]] == [p.name for p in b[name]]
    for pa, pb in zip(a[name], b[name]):
        assert _sha(pa) == _sha(pb), f"{pa.name} differs between two builds"


@pytest.mark.parametrize("name", FIGURES)
def test_pdf_fonts_are_embedded_truetype(name, builds):
    pdf = next(p for p in builds[0][name] if p.suffix == ".pdf").read_bytes()
    assert b"/Type3" not in pdf
    assert b"/FontFile2" in pdf  # embedded TrueType font programs
    assert b"/CreationDate" not in pdf
    subtypes = set(re.findall(rb"/Subtype\s*/(Type1|Type3|TrueType|CIDFontType0|CIDFontType2|Type0)", pdf))
    assert subtypes and subtypes <= {b"TrueType", b"CIDFontType2", b"Type0"}, subtypes


def test_figure_scripts_only_read_results():
    for name in FIGURES:
        src = (ROOT / "figures" / f"{name}.py").read_text(encoding="utf-8")
        assert "runner" not in src and "run_batch" not in src, f"figures/{name}.py must not simulate"
        mod = common.module(name)
        assert callable(mod.plot) and mod.DEFAULT_WIDTH in style.WIDTHS


def test_venue_and_width_per_call(small_results, tmp_path):
    paths = common.build("kernel", small_results, tmp_path, venue="icml", width="column", formats=("png",))
    assert [p.name for p in paths] == ["kernel.png"]
    assert abs(_png_size(paths[0])[0] - round(3.25 * style.PNG_DPI)) <= 1
    assert style.figsize("acl", "full")[0] == 6.30 and style.figsize("emnlp", "column")[0] == 3.03
    assert style.figsize("iclr", "column")[0] == style.figsize("neurips", "full")[0] == 5.5
    assert style.figsize("icml", "full")[0] == 6.75
    with pytest.raises(ValueError, match="venue"):
        style.figsize("nature")


def _figures(*args):
    from typer.testing import CliRunner

    from sims.cli.app import build_app

    return CliRunner(env={"COLUMNS": "200"}).invoke(build_app(), ["figures", *[str(a) for a in args]],
                                                   catch_exceptions=False)


def test_one_figure_and_missing_results(small_results, tmp_path):
    r = _figures("--results", small_results, "--out", tmp_path, "--small", "--no-run", "--only", "ntk-attention-cost",
                 "--format", "svg")
    assert r.exit_code == 0, r.output
    assert b"<svg" in (tmp_path / "ntk_attention_cost.svg").read_bytes()
    r = _figures("--results", tmp_path / "empty", "--out", tmp_path / "x", "--no-run", "--only", "kernel")
    assert r.exit_code == 2 and "not made: kernel" in r.output and "needs a stored" in r.output
    assert not (tmp_path / "x").exists()


def test_sims_figures_command(small_results, tmp_path):
    res = _figures("--results", small_results, "--out", tmp_path / "out", "--small", "--no-run", "--only",
                   "convergence", "--format", "png")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "out" / "convergence.png").is_file() and not (tmp_path / "out" / "convergence.pdf").exists()
    missing = _figures("--results", tmp_path / "none", "--out", tmp_path / "x", "--no-run")
    assert missing.exit_code == 2 and "needs a stored" in missing.output
    assert all(f"not made: {name}" in missing.output for name in FIGURES)
    assert not (tmp_path / "x").exists()
    listing = _figures("list")
    assert listing.exit_code == 0 and all(name in listing.output for name in FIGURES)


def test_a_small_run_does_not_stand_in_for_the_default_one(small_results, tmp_path, monkeypatch):
    """Only the small convergence run is stored: the default figure is not made from it, and is run."""
    import shutil

    from sims.cli import figures as figures_cli
    from sims.experiments import presets

    results = tmp_path / "results"
    shutil.copytree(small_results / "convergence", results / "convergence")
    # --no-run: the figure whose run exists is made (kernel's is not stored: listed, not fatal to the others)
    r = _figures("--results", results, "--out", tmp_path / "small", "--small", "--no-run", "--only", "convergence",
                 "--only", "kernel", "--format", "png")
    assert r.exit_code == 2, r.output
    assert (tmp_path / "small" / "convergence.png").is_file() and "not made: kernel" in r.output
    # the default config: not the small run
    r = _figures("--results", results, "--out", tmp_path / "default", "--no-run", "--only", "convergence")
    assert r.exit_code == 2 and "not made: convergence" in r.output, r.output
    assert not (tmp_path / "default").exists()
    # an explicit run: --from builds that run's figures, and refuses a figure of another experiment
    from figures.build import select_run

    rid = select_run(results, "convergence", small=True)
    r = _figures("--results", results, "--out", tmp_path / "from", "--from", rid[:16], "--format", "png")
    assert r.exit_code == 0 and (tmp_path / "from" / "convergence.png").is_file(), r.output
    r = _figures("--results", results, "--out", tmp_path / "from2", "--from", rid, "--only", "kernel")
    assert r.exit_code == 2 and "no figure in ['kernel'] reads it" in r.output, r.output
    # with --run it plans and runs the default config (the run itself is stubbed: paper-size)
    ran = []

    def execute(p, on_event=None):
        ran.append(p)
        raise KeyboardInterrupt

    monkeypatch.setattr(figures_cli.engine, "execute", execute)
    r = _figures("--results", results, "--out", tmp_path / "default", "--only", "convergence",
                 "--compile-cache", "off")
    assert r.exit_code == 130, r.output
    assert [p.config for p in ran] == [presets.config("convergence")] != [presets.config("convergence", small=True)]
    assert "sims figures will run 1 experiment(s) at the default config" in r.output
    assert f"{len(ran[0].cells)} cell(s)" in r.output and "time:" in r.output
