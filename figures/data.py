"""Read saved runs for the figures (never simulate here).

A run is found through its manifest ``<results>/<experiment>/runs/<run_id>.json`` (see
:mod:`sims.core.store`); its cells are read from ``<results>/<experiment>/cells/`` by the ids the
manifest lists, so a results folder can be moved or copied as a whole.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sims.core import cellfile, store

__all__ = ["MissingResults", "Run", "find_run", "load_run", "select", "grid", "verdict_row", "rate_rows"]


class MissingResults(FileNotFoundError):
    """No stored run (or an incomplete one) for the experiment a figure needs."""


@dataclasses.dataclass
class Run:
    """One stored run read back: its experiment, id, manifest (path and content) and ``(cell, arrays)`` results."""

    experiment: str
    run_id: str
    manifest_path: Path
    manifest: dict[str, Any]
    results: list[tuple[dict, dict[str, np.ndarray]]]

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config") or {}

    @property
    def verdict(self) -> list[dict[str, Any]]:
        return self.manifest.get("verdict") or []

    @property
    def passed(self) -> bool:
        return bool(self.manifest.get("passed"))

    def row(self, id: str) -> dict[str, Any]:
        """The stored verdict row with claim id ``id`` (its numbers: estimate, low, high, target, ...).

        Raises:
            MissingResults: the run has no row of that id.
        """
        return verdict_row(self.verdict, id, where=f"run {self.run_id}")


def verdict_row(rows, id: str, *, where: str = "the verdict") -> dict[str, Any]:
    """The row of ``rows`` (dicts or VerdictRows) with claim id ``id``; MissingResults if none."""
    for r in rows:
        d = r if isinstance(r, dict) else r.as_dict()
        if str(d.get("id")) == str(id):
            return d
    raise MissingResults(f"{where} has no verdict row {id!r}")


def rate_rows(rows) -> list[dict[str, Any]]:
    """The rate rows of a verdict (a slope judged against a band: relation "within" or "outside"),
    claims and controls, in order, as dicts."""
    ds = [r if isinstance(r, dict) else r.as_dict() for r in rows]
    return [d for d in ds if d.get("relation") in ("within", "outside") and d.get("quantity", "").startswith("log-log")]


def find_run(results: str | Path, experiment: str, run: str | None = None) -> Path:
    """The manifest of ``run`` (id, id prefix or path) or, without it, the newest run of ``experiment``."""
    results = Path(results)
    if run is not None:
        try:
            return store.find_manifest(results, run)
        except store.StoreError as e:
            raise MissingResults(str(e)) from None
    runs = store.runs_dir(results, experiment)
    paths = [p for p in runs.glob("*.json") if not p.name.startswith(".")] if runs.is_dir() else []
    if not paths:
        raise MissingResults(f"no stored run of {experiment!r} under {results}/ (run `sims run {experiment}` first)")
    # Newest first; the run id breaks ties so the choice never depends on directory order.
    return max(paths, key=lambda p: (p.stat().st_mtime_ns, p.name))


def load_run(results: str | Path, experiment: str, run: str | None = None) -> Run:
    """Every cell of a stored run, in the manifest's order."""
    results = Path(results)
    path = find_run(results, experiment, run)
    manifest = store.read_manifest(path)
    exp = manifest.get("experiment", experiment)
    if exp != experiment:
        raise MissingResults(f"{path} is a run of {exp!r}, not {experiment!r}")
    out = []
    for entry in manifest.get("cells", []):
        cid = entry["cell_id"]
        cpath = store.cell_path(results, experiment, cid)
        try:
            arrays, meta = cellfile.read_cell(cpath)
        except store.StoreError as e:
            raise MissingResults(f"run {manifest.get('run_id')} lists cell {cid}, which cannot be read: {e}") from None
        out.append((meta.get("cell", entry.get("cell", {})), arrays))
    if not out:
        raise MissingResults(f"run {manifest.get('run_id')} ({path}) has no cells")
    return Run(experiment, str(manifest.get("run_id")), path, manifest, out)


def select(results, **match: Any) -> list[tuple[dict, dict]]:
    """The ``(cell, arrays)`` pairs whose cell has every ``key == value`` of ``match``."""
    return [(c, a) for c, a in results if all(c.get(k) == v for k, v in match.items())]


def grid(results, axis: str, value: Callable[[dict, dict], float], seed_key: str | tuple[str, ...] = "seed"):
    """``(xs, Y)``: the sorted values of cell field ``axis`` and a (len(xs), seeds) array of
    ``value(cell, arrays)`` (NaN where a seed is missing).

    ``seed_key`` names the cell field(s) that tell replications apart (a tuple: all of them).
    """
    keys = (seed_key,) if isinstance(seed_key, str) else tuple(seed_key)
    rep = lambda c: tuple(str(c.get(k, 0)) for k in keys)  # noqa: E731
    xs = sorted({c[axis] for c, _ in results})
    seeds = sorted({rep(c) for c, _ in results})
    Y = np.full((len(xs), len(seeds)), np.nan)
    for c, a in results:
        Y[xs.index(c[axis]), seeds.index(rep(c))] = float(value(c, a))
    return np.asarray(xs, float), Y
