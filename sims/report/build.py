"""The report's three files, from the claim records: ``index.html``, ``report.md``, ``verdicts.json``.

``index.html`` is one self-contained file (styles inline, figures embedded as ``data:`` URIs, no
script, nothing fetched); ``report.md`` links the figures, written beside it as
``figures/<name>.png``; ``verdicts.json`` holds the summary and one record per claim.  The
pages are Jinja2 templates (``sims/report/templates/``); every file is written atomically through
:mod:`sims.core.store`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import jinja2

from sims.core import store
from sims.report import catalog, collect

__all__ = ["Figure", "FILES", "figure_links", "render", "write"]

FILES = ("index.html", "report.md", "verdicts.json")
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_REPO = Path(__file__).resolve().parent.parent.parent


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure of one run: its name (file stem), caption, PNG bytes and ``panels``, the verdict
    rows each panel draws (``{panel name: [row id, ...]}``, :func:`figures.style.panel_rows`)."""

    name: str
    title: str
    png: bytes
    panels: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)


def figure_links(experiment: str, figures: Sequence[Figure]) -> dict[str, list[dict[str, str]]]:
    """``{row id: [link, ...]}``: for each verdict row of a run, the figure panels that draw it.

    A link holds ``anchor`` (the figure's id in ``index.html``), ``file`` (its PNG beside
    ``report.md``), ``figure`` (its name) and ``panel``; the experiment's own figures come first.
    """
    links: dict[str, list[dict[str, str]]] = {}
    for k, f in enumerate(figures, start=1):
        for panel, ids in f.panels.items():
            for rid in ids:
                links.setdefault(str(rid), []).append({
                    "anchor": f"fig-{experiment}-{k}", "file": f"figures/{f.name}.png",
                    "figure": f.name.removeprefix(f"{experiment}-"), "panel": panel})
    return links


def _md(text: Any) -> str:
    """Text safe inside a Markdown table cell (pipes escaped, one line)."""
    return re.sub(r"\s+", " ", str(text if text is not None else "")).replace("|", "\\|").strip()


def _env(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=autoescape,
                             undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False,
                             keep_trailing_newline=True)
    env.filters["md"] = _md
    return env


def _finite(obj: Any) -> Any:
    """``obj`` with every non-finite float as the string "inf", "-inf" or "nan" (JSON has none)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if obj != obj else "inf" if obj > 0 else "-inf"
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _doc_url(doc: str, out: Path) -> str:
    if not doc:
        return ""
    path, _, anchor = doc.partition("#")
    rel = os.path.relpath(_REPO / path, out.resolve()).replace(os.sep, "/")
    return rel + (f"#{anchor}" if anchor else "")


def _context(runs: Sequence[collect.Run], records: list[dict[str, Any]], figures: Mapping[str, Sequence[Figure]],
             notes: Mapping[str, Sequence[str]], meta: Mapping[str, Any], out: Path) -> dict[str, Any]:
    items = []
    for run in runs:
        mine = [r for r in records if r["run_id"] == run.run_id]
        figs = list(figures.get(run.run_id, ()))
        number = {str(r["id"]): r["number"] for r in mine}
        e = catalog.entry(run.experiment)
        items.append({
            "experiment": run.experiment, "run_id": run.run_id, "entry": e,
            "doc_url": _doc_url(e.doc, out) if e else "",
            "command": mine[0]["command"] if mine else collect.run_command(run.manifest),
            "prov": collect.provenance(run.manifest),
            "claims": mine,
            "figures": [{"title": f.title, "data": base64.b64encode(f.png).decode("ascii"),
                         "path": f"figures/{f.name}.png", "anchor": f"fig-{run.experiment}-{k}",
                         "panels": [{"panel": p, "rows": [{"id": i, "number": number[str(i)]} for i in ids
                                                          if str(i) in number]} for p, ids in f.panels.items()]}
                        for k, f in enumerate(figs, start=1)],
            "notes": list(notes.get(run.run_id, ())),
        })
    return {"runs": items, "summary": collect.summary(records), "meta": dict(meta)}


def render(runs: Sequence[collect.Run], records: list[dict[str, Any]], *, figures: Mapping[str, Sequence[Figure]] = {},
           notes: Mapping[str, Sequence[str]] = {}, meta: Mapping[str, Any], out: str | Path) -> dict[str, str]:
    """The text of the three files (``{file name: text}``); ``figures`` and ``notes`` by run id."""
    out = Path(out)
    links = {run.run_id: figure_links(run.experiment, figures.get(run.run_id, ())) for run in runs}
    records = [dict(r, figures=links.get(r["run_id"], {}).get(str(r["id"]), [])) for r in records]
    ctx = _context(runs, records, figures, notes, meta, out)
    data = {"meta": dict(meta), "summary": ctx["summary"], "claims": records}
    return {
        "index.html": _env(True).get_template("index.html.j2").render(**ctx),
        "report.md": _env(False).get_template("report.md.j2").render(**ctx),
        "verdicts.json": json.dumps(_finite(data), indent=2, allow_nan=False, default=str) + "\n",
    }


def write(runs: Sequence[collect.Run], records: list[dict[str, Any]], *, figures: Mapping[str, Sequence[Figure]] = {},
          notes: Mapping[str, Sequence[str]] = {}, meta: Mapping[str, Any], out: str | Path) -> dict[str, Path]:
    """Write the three files (and ``figures/*.png`` for ``report.md``) into ``out``; return their paths."""
    out = Path(out)
    store.check_writable(out)
    paths = {name: store.atomic_write_text(out / name, text)
             for name, text in render(runs, records, figures=figures, notes=notes, meta=meta, out=out).items()}
    for figs in figures.values():
        for f in figs:
            store.atomic_write_bytes(out / "figures" / f"{f.name}.png", f.png)
    return paths
