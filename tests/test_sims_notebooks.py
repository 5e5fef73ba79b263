"""``sims notebooks``: executed copies with outputs and figures, or a clear error naming the extra.

The command is wired here exactly as ``sims/cli/app.py`` wires it
(``app.command("notebooks")(notebooks.command)``).  The tests that start Jupyter kernels skip,
with the reason, when the ``notebooks`` extra is not installed (CI installs ``.[test]`` only),
and are marked slow (a kernel start takes seconds): ``python -m pytest -m slow -k notebooks``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from sims.cli import notebooks

ROOT = Path(__file__).resolve().parents[1]
MISSING = notebooks.missing_tools()
needs_tools = pytest.mark.skipif(bool(MISSING), reason=f"notebooks extra not installed (missing {MISSING}): "
                                 f"{notebooks.EXTRA_HINT}")


def _invoke(*args):
    app = typer.Typer(add_completion=False)

    @app.callback()
    def _root() -> None:
        """sims"""

    app.command("notebooks")(notebooks.command)  # the line that wires it into sims/cli/app.py
    return CliRunner().invoke(app, ["notebooks", *map(str, args)], catch_exceptions=False)


def _write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("# %% [markdown]\n# # A test notebook\n\n# %%\n" + body, encoding="utf-8")
    return path


def test_names_resolve_by_number_stem_or_file_name():
    nbs = ROOT / "notebooks"
    one = notebooks.find_notebooks(["03"], nbs)
    assert [p.name for p in one] == ["03_linearised_dynamics.py"]
    assert notebooks.find_notebooks(["3", "linearised_dynamics", "03_linearised_dynamics.py"], nbs) == one
    assert len(notebooks.find_notebooks(None, nbs)) == len(list(nbs.glob("[0-9][0-9]_*.py"))) >= 6
    with pytest.raises(ValueError, match="known: 01_kernel_limit"):
        notebooks.find_notebooks(["no-such-notebook"], nbs)


def test_unknown_name_exits_2_with_the_list(tmp_path):
    if MISSING:
        pytest.skip(f"tools missing ({MISSING}): the command stops earlier, see the next test")
    r = _invoke("nope", "--dir", ROOT / "notebooks", "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "03_linearised_dynamics" in r.output


def test_missing_tools_exit_2_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(notebooks, "missing_tools", lambda html=True: ["nbclient", "ipykernel"])
    r = _invoke("03", "--out", tmp_path / "out")
    assert r.exit_code == 2
    assert ".[notebooks]" in r.output and "nbclient" in r.output
    assert not (tmp_path / "out").exists(), "refused before any work"


@pytest.mark.slow  # two Jupyter kernels: 12-17 s wall on the shared 2-core machine
@needs_tools
def test_executed_copy_has_outputs_and_figure_and_a_failure_exits_1(tmp_path):
    src = tmp_path / "nbs"
    src.mkdir()
    _write(src, "01_ok.py", "import os\nimport matplotlib.pyplot as plt\n"
           "print('full:', os.environ.get('PREFIX_NTK_FULL'), 'results:', os.environ['PREFIX_NTK_RESULTS'])\n"
           "plt.plot([1, 2, 3])\nplt.show()\nopen('written-by-notebook.txt', 'w').write('x')\n")
    _write(src, "02_fails.py", "assert 1 + 1 == 3, 'claim did not hold'\n")
    out, results = tmp_path / "out", tmp_path / "res"
    r = _invoke("--dir", src, "--out", out, "--results", results)
    assert r.exit_code == 1, r.output  # 02 raised
    assert "01_ok: ok" in r.output and "02_fails: FAILED (AssertionError: claim did not hold)" in r.output

    ok = json.loads((out / "01_ok.ipynb").read_text())
    outputs = [o for c in ok["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    text = "".join("".join(o.get("text", "")) for o in outputs)
    assert f"full: None results: {results.resolve()}" in text
    assert any("image/png" in o.get("data", {}) for o in outputs), "the figure is in the executed copy"
    assert "jupytext" not in ok["metadata"], "the copy is a plain notebook, not paired to a .py"
    assert (out / "written-by-notebook.txt").is_file(), "the kernel runs in the output folder"
    assert "<html" in (out / "01_ok.html").read_text().lower()

    failed = json.loads((out / "02_fails.ipynb").read_text())
    assert any(o["output_type"] == "error" for c in failed["cells"] if c["cell_type"] == "code" for o in c["outputs"])


@pytest.mark.slow
@needs_tools
def test_runs_a_project_notebook(tmp_path):
    """Notebook 03 needs no stored results: it trains at its small size and asserts its claim."""
    out = tmp_path / "out"
    r = _invoke("03", "--dir", ROOT / "notebooks", "--out", out, "--results", tmp_path / "res", "--no-html")
    assert r.exit_code == 0, r.output
    nb = json.loads((out / "03_linearised_dynamics.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert "claim held" in "".join("".join(o.get("text", "")) for o in outputs)
    assert not (out / "03_linearised_dynamics.html").exists()
