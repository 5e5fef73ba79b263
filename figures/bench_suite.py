"""Figure: the NTK benchmark suite, time and memory against the prefix length m.

Reads ``<results>/bench/suite-float64.json`` written by ``sims bench suite``; its timings are
measurements of the machine that ran it, named in the file.  It is built only when named
(``--only``), because the benchmark is not a simulation to rerun on demand::

    sims bench suite && sims figures --only bench_suite --no-run

One column per model at the largest n of the file. Top: best time per NTK against m, for each
implementation, with the floor (logits and exponentials plus a symmetric Gram at the GEMM peak,
see :mod:`sims.bench.suite`) dashed. Bottom: XLA's working memory of each compiled program.
A cell skipped as over the memory budget has no time (absent, not zero); its memory point is
XLA's figure, the reason it was skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from figures import common, data, style

EXPERIMENT = "bench"
NAME = "bench_suite"
DEFAULT_WIDTH = "full"

_LABEL = {"structured": "structured (ours)", "autodiff": "autodiff", "nt-jc": "nt: Jacobian contraction",
          "nt-nvp": "nt: NTK-vector products", "nt-sd": "nt: structured derivatives"}
_MARK = {"structured": "o", "autodiff": "x", "nt-jc": "s", "nt-nvp": "v", "nt-sd": "^"}


def load(results: str | Path = "results", run: str | None = None) -> dict:
    """The saved suite: ``run`` is a path to its JSON file; by default the float64 suite under ``results``."""
    path = Path(run) if run else Path(results) / "bench" / "suite-float64.json"
    if not path.is_file():
        raise data.MissingResults(f"no benchmark suite at {path} (run `sims bench suite` first)")
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise data.MissingResults(f"cannot read {path}: {e}") from None
    if not res.get("ntk"):
        raise data.MissingResults(f"{path} holds no NTK rows")
    return res


def _series(rows, impl, key):
    pts = sorted((r["m"], r[key]) for r in rows if r["impl"] == impl and r.get(key))
    return np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)


def plot(res: dict, *, venue: str = "acl", width: str = DEFAULT_WIDTH):
    models = list(dict.fromkeys(r["model"] for r in res["ntk"]))
    n = max(r["n"] for r in res["ntk"])
    impls = list(dict.fromkeys(r["impl"] for r in res["ntk"]))
    w, _ = style.figsize(venue, width)
    fig = style.new_figure((w, min(w * 0.62, 5.2) + 0.6))
    axes = fig.subplots(2, len(models), squeeze=False, sharex="col")
    for j, model in enumerate(models):
        rows = [r for r in res["ntk"] if r["model"] == model and r["n"] == n]
        top, bottom = axes[0, j], axes[1, j]
        for i, impl in enumerate(impls):
            color = style.PALETTE[i % len(style.PALETTE)]
            x, t = _series(rows, impl, "time_s")
            if x.size:
                top.plot(x, t, color=color, marker=_MARK.get(impl, "o"), label=_LABEL.get(impl, impl))
            x, b = _series(rows, impl, "work_bytes")
            if x.size:
                bottom.plot(x, b / 2**20, color=color, marker=_MARK.get(impl, "o"), label=_LABEL.get(impl, impl))
        x, f = _series(rows, "structured", "floor_s")
        if x.size:
            top.plot(x, f, color="0.5", linestyle="--", label="floor (see text)")
        for ax in (top, bottom):
            ax.set_xscale("log")
            ax.set_yscale("log")
            if len(set(r["m"] for r in rows)) <= 6:
                style.xticks_from(ax, sorted(set(r["m"] for r in rows)))
        top.set_title(f"{model}, n = {n}", fontsize="medium")
        bottom.set_xlabel("prefix length m")
        if j == 0:
            top.set_ylabel("time per NTK (s)")
            bottom.set_ylabel("XLA working memory (MiB)")
    handles = {}
    for ax in axes[0]:  # one legend for the figure, every implementation once
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncol=3, frameon=False)
    return fig

