"""Figures draw the verdict's numbers: every rate claim's slope and interval in a figure equal the
stored verdict row's (convergence's verdict panel, kernel's legends, the report's verdict strips,
reparam's, lazy-prefix's and identifiability's legends and slope lines), and follow the row when
the stored row is doctored in the manifest, cells untouched (so nothing is refitted).  Each figure
records the rows its panels draw (``style.panel_rows``: the report's per-claim figure links)."""

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


# ----------------------------------------------------------------------------- reparam, lazy-prefix, identifiability


def _legend(fig):
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


def _loglog_slopes(ax):
    """The log-log slopes of the straight lines drawn on ``ax`` (verdict lines: 32 points, one exponent)."""
    out = []
    for ln in ax.lines:
        x, y = np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
        if len(x) == 32 and np.all(x > 0) and np.all(y > 0):
            out.append(float(np.polyfit(np.log(x), np.log(y), 1)[0]))
    return out


def _doctored(run, rid, estimate, half=0.05):
    """``run`` with row ``rid``'s estimate and interval changed in its manifest (cells untouched)."""
    moved = copy.deepcopy(run)
    row = next(r for r in moved.manifest["verdict"] if r["id"] == rid)
    row.update(estimate=estimate, low=estimate - half, high=estimate + half)
    return moved, row


def _plot(mod, run):
    with style.context():
        return mod.plot(run)


@pytest.mark.parametrize("name", ["reparam", "lazy_prefix", "reparam_identifiability", "ntk_attention_cost"])
def test_figure_records_the_rows_it_draws(small_results, name):
    from figures import common

    mod = common.module(name)
    run = _run(small_results, mod.EXPERIMENT)
    fig = _plot(mod, run)
    panels = style.panel_rows(fig)
    ids = {str(d["id"]) for d in run.verdict}
    shown = [i for rows in panels.values() for i in rows]
    assert shown and set(shown) <= ids, (panels, sorted(ids))
    assert all(p.startswith("(") for p in panels), panels  # named by their bold panel titles


def test_reparam_figure_reads_its_rows(small_results):
    from figures import reparam

    run = _run(small_results, "reparam")
    fig = _plot(reparam, run)
    labels = _legend(fig)
    rows = [run.row(i) for rows in style.panel_rows(fig).values() for i in rows]
    for d in rows:
        assert any(style.verdict_label(d) in lab for lab in labels), (d["id"], labels)
    rid = "shared_linear-L3-merged_m2"  # panel (a)
    old = run.row(rid)["estimate"]
    moved, row = _doctored(run, rid, old - 0.4)
    fig2 = _plot(reparam, moved)
    assert any(style.verdict_label(row) in lab for lab in _legend(fig2))
    assert not any(style.verdict_label(run.row(rid)) in lab for lab in _legend(fig2))
    assert any(abs(s - (old - 0.4)) < 1e-9 for s in _loglog_slopes(fig2.axes[0]))  # the line is the row's slope
    assert not any(abs(s - (old - 0.4)) < 1e-9 for s in _loglog_slopes(fig.axes[0]))


def test_lazy_prefix_figure_reads_its_rows(small_results):
    from figures import lazy_prefix

    run = _run(small_results, "lazy-prefix")
    rid = "ntk-gd-kernel_change"
    d = run.row(rid)
    fig = _plot(lazy_prefix, run)
    assert rid in style.panel_rows(fig)["(c) local slopes at matched progress"]
    assert any(f"verdict {style.verdict_label(d, short=True)}" in lab for lab in _legend(fig))
    moved, row = _doctored(run, rid, 0.3)
    fig2 = _plot(lazy_prefix, moved)
    assert any(f"verdict {style.verdict_label(row, short=True)}" in lab for lab in _legend(fig2))
    flat = lambda f: {float(ln.get_ydata()[0]) for ln in f.axes[2].lines  # noqa: E731
                      if len(ln.get_ydata()) == 2 and len(set(map(float, ln.get_ydata()))) == 1}
    if d["estimate"] is not None and np.isfinite([d["estimate"], d["low"], d["high"]]).all():
        assert d["estimate"] in flat(fig) and 0.3 in flat(fig2) and 0.3 not in flat(fig)


def test_identifiability_figure_reads_its_rows(small_results):
    from figures import reparam_identifiability as ri

    run = _run(small_results, "reparam-identifiability")
    fig = _plot(ri, run)
    assert "M4b" in style.panel_rows(fig)["(b) equal keys"]
    assert any(style.verdict_label(run.row("M4b")) in lab for lab in _legend(fig))
    moved, row = _doctored(run, "M4b", 0.7)
    fig2 = _plot(ri, moved)
    assert any(style.verdict_label(row) in lab for lab in _legend(fig2))
    assert any(abs(s - 0.7) < 1e-9 for s in _loglog_slopes(fig2.axes[1]))
    assert not any(abs(s - 0.7) < 1e-9 for s in _loglog_slopes(fig.axes[1]))
    level = run.row("M1a")["estimate"]  # panel (a): the level row's minimum in the legend, as stored
    assert any(f"min. {level:.2g}" in lab for lab in _legend(fig))
    moved, _ = _doctored(run, "M1a", 0.5)
    assert any("min. 0.5 " in lab for lab in _legend(_plot(ri, moved)))


def _dotted_verticals(ax):
    """The x of the dotted vertical lines of ``ax`` (axvline: one x, the axes' height)."""
    return [float(ln.get_xdata()[0]) for ln in ax.lines
            if ln.get_linestyle() == ":" and len(set(map(float, ln.get_xdata()))) == 1]


def test_ntk_attention_cost_figure_marks_the_verdicts_crossover(small_results):
    from figures import ntk_attention_cost as cost
    from sims.experiments.ntk_attention_cost import crossover_id

    run = _run(small_results, "ntk-attention-cost")
    ids = [crossover_id(f) for f in sorted({c["feature"] for c, _ in run.results})]
    rows = [run.row(i) for i in ids]
    fig = _plot(cost, run)
    assert sorted(style.panel_rows(fig)["(a) time"]) == sorted(ids)
    assert sorted(_dotted_verticals(fig.axes[0])) == sorted(2.0 ** r["estimate"] for r in rows)  # m = 2^log2 m
    # Negative control: the doctored row's crossover (twice the m, cells untouched) is what is drawn.
    moved, row = _doctored(run, ids[0], rows[0]["estimate"] + 1.0)
    fig2 = _plot(cost, moved)
    lines = _dotted_verticals(fig2.axes[0])
    assert 2.0 ** row["estimate"] in lines and 2.0 ** rows[0]["estimate"] not in lines
    assert any(f"crossover {2.0 ** row['estimate']:.3g} [" in lab for lab in _legend(fig2))
