"""Stored runs -> the report's records: one per claim, with its numbers, control and provenance.

Reads run manifests only (:mod:`sims.core.store`); never runs or judges anything: the status,
the interval and the text of every row are the verdict's own (the text written from the numbers
by :func:`sims.core.verdicts.predicted_text` / :func:`~sims.core.verdicts.measured_text`).
"""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

from sims.core import store
from sims.core.experiment import STATUSES, VerdictRow
from sims.core.experiment import get as get_experiment
from sims.core.verdicts import measured_text, predicted_text
from sims.report import catalog

__all__ = ["Run", "load", "latest", "claims", "summary", "run_command", "provenance"]


@dataclasses.dataclass(frozen=True)
class Run:
    """One stored run: its manifest path and contents."""

    path: Path
    manifest: dict[str, Any]

    @property
    def experiment(self) -> str:
        return str(self.manifest.get("experiment"))

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id"))


def load(out: str | Path, run: str) -> Run:
    """The stored run ``run`` (an id, a unique prefix of one, or a manifest path) under ``out``.

    Raises:
        StoreError: no such run, or an unreadable manifest.
    """
    path = store.find_manifest(out, run)
    return Run(path, store.read_manifest(path))


def latest(out: str | Path) -> list[Run]:
    """The newest stored run of every experiment under ``out``: the catalog's first, in its
    order, then any other experiment's, by name."""
    newest: dict[str, Run] = {}
    for path in store.list_manifests(out):
        m = store.read_manifest(path)
        exp = str(m.get("experiment"))
        key = (str(m.get("finished") or ""), m.get("run_id") or "")
        if exp not in newest or key > (str(newest[exp].manifest.get("finished") or ""), newest[exp].run_id):
            newest[exp] = Run(path, m)
    order = [e.experiment for e in catalog.CATALOG]
    return sorted(newest.values(), key=lambda r: (order.index(r.experiment) if r.experiment in order else len(order),
                                                  r.experiment))


def run_command(manifest: dict[str, Any], out: str | Path | None = None) -> str:
    """The one ``sims run`` line that recomputes this run (and so each of its claims): the fields
    that differ from the experiment's defaults, as options."""
    name = str(manifest.get("experiment"))
    config = manifest.get("config") or {}
    parts = ["sims", "run", name]
    try:
        defaults = dataclasses.asdict(get_experiment(name).config())
    except KeyError:
        defaults = {}
    for field, value in config.items():
        if field in defaults and _same(defaults[field], value):
            continue
        opt = "--" + field.replace("_", "-")
        if isinstance(value, bool):
            parts.append(opt if value else "--no-" + field.replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            for v in value:
                parts += [opt, _show(v)]
        else:
            parts += [opt, _show(value)]
    if manifest.get("precision") == "float32":
        parts += ["--precision", "float32"]
    if out is not None and Path(out) != Path("results"):
        parts += ["--out", str(out)]
    return " ".join(shlex.quote(p) for p in parts)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _show(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return f"{v:.0e}" if abs(v) >= 1e5 else str(int(v))
    return str(v)


def _is_control(d: dict[str, Any]) -> bool:
    # Rows built before the numeric schema mark a control only in their statement.
    return bool(d.get("is_control")) or str(d.get("claim", "")).lower().startswith("control")


def linked_status(d: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str | None:
    """The outcome of the rows ``d`` (a row as :meth:`VerdictRow.as_dict` writes it) links to by its
    ``controls``: on a claim, its controls taken together ("fail" if any control was missed, else
    "undecided" if any is undecided, else "pass": all caught); on a control, the claim's status.
    None when no linked row is stored."""
    statuses = [by_id[c]["status"] for c in d.get("controls") or () if c in by_id]
    if not statuses:
        return None
    return "fail" if "fail" in statuses else "undecided" if "undecided" in statuses else "pass"


def provenance(m: dict[str, Any]) -> dict[str, Any]:
    """What the report shows of a run's provenance (revision, versions, device, dtype, date, wall time)."""
    prov = m.get("provenance") or {}
    git = prov.get("git") or {}
    dev = prov.get("device") or {}
    return {
        "revision": git.get("revision"),
        "dirty": git.get("dirty"),
        "versions": prov.get("versions") or {},
        "device": f"{dev.get('platform')} {dev.get('kind')} (x{dev.get('count')})",
        "dtype": prov.get("dtype") or m.get("precision"),
        "finished": m.get("finished"),
        "elapsed_s": m.get("elapsed_s"),
        "cells": (m.get("counts") or {}).get("cells"),
    }


def claims(runs: list[Run], out: str | Path | None = None) -> list[dict[str, Any]]:
    """One JSON-able record per verdict row of ``runs``, in order; claims are numbered 1..N per
    run without gaps (``number``), beside the experiment's own claim id (``id``)."""
    records = []
    for run in runs:
        m = run.manifest
        e = catalog.entry(run.experiment)
        rows = [VerdictRow.from_dict(d).as_dict() for d in m.get("verdict") or []]
        by_id = {d["id"]: d for d in rows if d.get("id")}
        command = run_command(m, out)
        prov = provenance(m)
        for i, d in enumerate(rows):
            control = _is_control(d)
            records.append({
                "experiment": run.experiment,
                "run_id": run.run_id,
                "paper": e.paper if e else "other",
                "section": e.section if e else "",
                "doc": e.doc if e else "",
                "number": i + 1,
                **{k: d.get(k) for k in ("id", "short", "claim", "status", "estimate", "low", "high", "level",
                                         "target", "tol", "relation", "quantity", "tol_why", "detail",
                                         "n_needed", "controls")},
                "is_control": control,
                "control_status": linked_status(d, by_id),
                "predicted_text": predicted_text(d),
                "measured_text": measured_text(d),
                "n_cells": len(d.get("cells") or ()),
                "command": command,
                "provenance": prov,
            })
    return records


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of pass / fail / undecided per paper (claims and negative controls apart), and the
    claims that failed."""
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        g = groups.setdefault(r["paper"], {"title": catalog.PAPERS.get(r["paper"], r["paper"]),
                                           "claims": dict.fromkeys(STATUSES, 0),
                                           "controls": dict.fromkeys(STATUSES, 0)})
        g["controls" if r["is_control"] else "claims"][r["status"]] += 1
    order = list(catalog.PAPERS)
    groups = dict(sorted(groups.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    total = {kind: {s: sum(g[kind][s] for g in groups.values()) for s in STATUSES} for kind in ("claims", "controls")}
    failed = [{"experiment": r["experiment"], "id": r["id"], "claim": r["claim"], "is_control": r["is_control"],
               "measured_text": r["measured_text"], "predicted_text": r["predicted_text"]}
              for r in records if r["status"] == "fail"]
    return {"groups": groups, "total": total, "failed": failed, "passed": not failed}
