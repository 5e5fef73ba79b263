"""``sims verify [--out DIR]``: check every stored cell of a results folder against its checksum.

Each cell file under ``OUT/<experiment>/cells/`` is read and its checksum verified
(:func:`sims.core.cellfile.verify_cell`); each run manifest's cells are looked up.  One line per
problem (the file and the reason), then a summary.  Exit 0: every cell verified (or written
before checksums existed, listed as unverified); 1: some cell is damaged (unreadable, checksum
mismatch) or a manifest lists a missing cell (a rerun of that run recomputes them); 2: ``--out``
is not a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from sims.cli.process import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sims.cli.render import fail
from sims.core import cellfile, store

__all__ = ["check_folder", "verify_folder", "verify_command"]


def check_folder(out: Path) -> dict[str, list[tuple[Path, str]]]:
    """``{"ok": [...], "unverified": [...], "damaged": [...], "missing": [...]}`` of ``(path, reason)``."""
    found: dict[str, list[tuple[Path, str]]] = {"ok": [], "unverified": [], "damaged": [], "missing": []}
    for path in sorted(out.glob("*/cells/*.npz")):
        if path.name.startswith("."):
            continue
        try:
            arrays, meta = cellfile.read_cell(path, verify=False)
            if meta.get("cell_id", path.stem) != path.stem:
                raise cellfile.CorruptCell(f"cell file {path} holds cell {meta.get('cell_id')!r}")
            verified = cellfile.verify_cell(path, arrays, meta)
        except store.StoreError as e:
            found["damaged"].append((path, str(e)))
            continue
        found["ok" if verified else "unverified"].append((path, ""))
    for mpath in store.list_manifests(out):
        try:
            ids = store.read_manifest(mpath).get("cell_ids", [])
        except store.StoreError as e:
            found["damaged"].append((mpath, str(e)))
            continue
        experiment = mpath.parent.parent.name
        for cid in ids:
            cpath = store.cell_path(out, experiment, cid)
            if not cpath.exists():
                found["missing"].append((cpath, f"listed by run {mpath.stem}, not on disk"))
    return found


def verify_folder(out: Path) -> None:
    """The command: print the problems and a summary, then exit (0 clean, 1 problems, 2 bad --out)."""
    if not out.is_dir():
        raise fail(f"--out {out}: not a folder", EXIT_USAGE)
    console = Console(highlight=False)
    found = check_folder(out)
    for kind in ("damaged", "missing"):
        for path, reason in found[kind]:
            console.print(f"[bold red]{kind}[/bold red] {escape(str(path))}: {escape(reason)}")
    for path, _ in found["unverified"]:
        console.print(f"[yellow]unverified[/yellow] {escape(str(path))}: written before cells had checksums")
    counts = ", ".join(f"{len(v)} {k}" for k, v in found.items())
    console.print(f"{out}: {counts}")
    bad = found["damaged"] or found["missing"]
    if bad:
        console.print("rerun the runs concerned (`sims run ...` with the same options) to recompute them")
    raise typer.Exit(EXIT_FAILED if bad else EXIT_OK)


def verify_command(
    out: Annotated[Path, typer.Option("--out", help="Results folder to check.")] = Path("results"),
) -> None:
    """Check every stored cell against its checksum; exit 1 if any is damaged or missing."""
    verify_folder(out)
