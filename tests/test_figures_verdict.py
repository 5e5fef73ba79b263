"""Figures draw the verdict's numbers: every rate claim's slope and interval in a figure equal the
stored verdict row's (convergence's verdict panel, kernel's legends, the report's verdict strips),
and follow the row when the stored row changes (so nothing is refitted)."""

from __future__ import annotations

import copy

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from figures import convergence, data, kernel, style  # noqa: E402
from figures import verdict as verdict_figure  # noqa: E402
from figures.build import select_run  # noqa: E402
from report_fixtures import rows_paper1, rows_paper2  # noqa: E402


def _run(results, experiment):
    return data.load_run(results, experiment, select_run(results, experiment, small=True))


def _intervals(ax):
    """The horizontal two-point segments of ``ax`` (the intervals; not the vertical reference line)."""
    return [tuple(ln.get_xdata()) for ln in ax.lines
            if len(ln.get_xdata()) == 2 and len(set(map(float, ln.get_ydata()))) == 1]


def _rows_with_numbers(run):
    return [d for d in data.rate_rows(run.verdict) if d.get("estimate") is not None]


def test_convergence_verdict_panel_draws_each_rate_rows_interval(small_results):
    run = _run(small_results, "convergence")
    rows = _rows_with_numbers(run)
    assert rows, "the small convergence run has rate rows with numbers"
    with style.context():
        drawn = _intervals(convergence.plot(run).axes[2])
    assert len(drawn) == len(rows)
    for d, (lo, hi) in zip(rows, drawn):
        assert (lo, hi) == (d["low"], d["high"]), d["id"]
    # Negative control: a changed stored row moves the drawn interval (no refit behind it).
    moved = copy.deepcopy(run)
    first = next(r for r in moved.manifest["verdict"] if r["id"] == rows[0]["id"])
    first["low"], first["high"] = first["low"] - 1.0, first["high"] + 1.0
    with style.context():
        again = _intervals(convergence.plot(moved).axes[2])
    assert again[0] == (rows[0]["low"] - 1.0, rows[0]["high"] + 1.0)


def test_kernel_legend_reads_each_models_rate_row(small_results):
    run = _run(small_results, "kernel")
    with style.context():
        fig = kernel.plot(run)
    labels = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    rows = [d for d in data.rate_rows(run.verdict) if not d.get("is_control")]
    assert rows
    for d in rows:
        assert any(style.verdict_label(d) in lab for lab in labels), (d["id"], labels)
    d = rows[0]
    assert style.verdict_label(d).startswith(f"slope {d['estimate']:.2f} [{d['low']:.2f}, {d['high']:.2f}]")


def test_verdict_strips_draw_the_rows_numbers():
    rows = [r.as_dict() for r in rows_paper1() + rows_paper2()]
    with style.context():
        fig = verdict_figure.plot_rows(rows)
    assert len(fig.axes) == len(rows)
    for ax, d in zip(fig.axes, rows):
        (lo, hi), = [tuple(ln.get_xdata()) for ln in ax.lines if list(ln.get_ydata()) == [0, 0]]
        assert (lo, hi) == (d["low"], d["high"]), d["id"]  # every fixture interval is finite and inside the axis
    assert verdict_figure.plot_rows([{"claim": "text only", "predicted": "a", "measured": "b"}]) is None


def test_verdict_label_marks_the_status_not_a_new_judgement():
    row = dict(rows_paper1()[0].as_dict(), status="fail")  # same numbers, the stored status wins
    assert style.verdict_label(row).endswith("\u2717")
    with pytest.raises(data.MissingResults):
        data.verdict_row([row], "nope")
