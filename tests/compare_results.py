"""Compare the cell files of two results folders: same cell ids, same arrays, same values.

A dev script, not a test (pytest does not collect it): it checks that a refactoring left the
numbers of an experiment unchanged.  Make the reference with the old code and the candidate
with the new one, then compare, e.g.::

    sims run convergence --m 1e5 --out /tmp/before/results      # old checkout
    sims run kernel --out /tmp/before/results
    sims run convergence --m 1e5 --out /tmp/after/results       # new checkout
    sims run kernel --out /tmp/after/results
    python tests/compare_results.py /tmp/before/results /tmp/after/results

For each experiment folder present in both, every ``cells/<id>.npz`` is read with numpy
(the ``__meta__`` entry, which holds timings and provenance, is skipped) and the largest
absolute difference over all arrays of all cells is printed.  The exit status is 0 when the
two folders hold the same cell ids, the same array names and shapes, and every difference is
at most ``--atol`` (default 0: bit-identical), else 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def cell_bits(out: Path, experiment: str) -> dict[str, dict[str, tuple]]:
    """``{cell_id: {array: (dtype, shape, bytes)}}`` of every cell of ``experiment`` under ``out``
    (the tests compare folders bit for bit with it)."""
    from sims.core import cellfile, store

    got = {}
    for p in sorted(store.cells_dir(out, experiment).glob("*.npz")):
        arrays, _ = cellfile.read_cell(p)
        got[p.stem] = {k: (v.dtype.str, v.shape, np.asarray(v).tobytes()) for k, v in arrays.items()}
    return got


def _cells(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted((folder / "cells").glob("*.npz"))}


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: np.asarray(z[k]) for k in z.files if k != "__meta__"}


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b|, with NaN = NaN and equal infinities counted as no difference."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if same.all():
        return 0.0
    with np.errstate(invalid="ignore"):  # inf - inf where only one side is infinite, NaN vs a number
        diff = np.abs(np.where(same, 0.0, a - b))
    return float("inf") if np.isnan(diff).any() else float(np.max(diff))


def compare_experiment(before: Path, after: Path) -> tuple[float, list[str]]:
    """``(max difference, problems)`` between two ``<results>/<experiment>`` folders."""
    cb, ca = _cells(before), _cells(after)
    problems = [f"cell {c} only in {before}" for c in sorted(set(cb) - set(ca))]
    problems += [f"cell {c} only in {after}" for c in sorted(set(ca) - set(cb))]
    worst = 0.0
    for cid in sorted(set(cb) & set(ca)):
        xb, xa = _arrays(cb[cid]), _arrays(ca[cid])
        if set(xb) != set(xa):
            problems.append(f"cell {cid}: arrays {sorted(xb)} vs {sorted(xa)}")
            continue
        for name in sorted(xb):
            if xb[name].shape != xa[name].shape:
                problems.append(f"cell {cid}: {name} shape {xb[name].shape} vs {xa[name].shape}")
                continue
            worst = max(worst, _difference(xb[name], xa[name]))
    if not cb:
        problems.append(f"no cells in {before}")
    return worst, problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("before", type=Path, help="reference results folder (old code)")
    p.add_argument("after", type=Path, help="results folder to check (new code)")
    p.add_argument("--experiment", action="append", help="only these experiments (repeatable; default: all shared)")
    p.add_argument("--atol", type=float, default=0.0, help="largest allowed absolute difference (default 0)")
    a = p.parse_args(argv)
    names = a.experiment or sorted(d.name for d in a.before.iterdir() if (d / "cells").is_dir()
                                   and (a.after / d.name / "cells").is_dir())
    if not names:
        print("no experiment folder in both results folders", file=sys.stderr)
        return 1
    ok = True
    for name in names:
        worst, problems = compare_experiment(a.before / name, a.after / name)
        n = len(_cells(a.before / name))
        print(f"{name}: {n} cells, max |difference| = {worst:.3g}")
        for line in problems:
            print(f"  {line}")
        ok &= not problems and worst <= a.atol
    print("same numbers" if ok else "DIFFERENT")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
