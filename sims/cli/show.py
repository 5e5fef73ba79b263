"""``sims list`` (one line per experiment; ``sims list NAME``: its options) and ``sims show RUN`` (a stored run).

``sims list NAME`` imports that experiment's module only; ``sims show`` imports none.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sims.cli.options import epilog, examples, show_value, specs_of
from sims.cli.process import EXIT_USAGE
from sims.cli.render import fail, verdict_table
import sims.experiments as registry
from sims.core import store

__all__ = ["list_command", "show_command", "list_experiments", "show_run"]

_SHOW_EXAMPLES = [
    "sims show toy-0123abcd4567",
    "sims show results/toy/runs/toy-0123abcd4567.json",
    "sims show toy-0123 --json",
    "sims show toy-0123 --full",
]


def list_command(
    name: Annotated[str | None, typer.Argument(help="Only this experiment.")] = None,
) -> None:
    """List the experiments and their options."""
    list_experiments(name)


def show_command(
    run: Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or a manifest path.")],
    out: Annotated[Path, typer.Option("--out", help="Results folder to search.")] = Path("results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw manifest.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Full claim statements in the verdict.")] = False,
) -> None:
    """Show a stored run: config, provenance and verdict table."""
    show_run(run, out, as_json, full)


show_command.__sims_epilog__ = epilog(_SHOW_EXAMPLES)  # type: ignore[attr-defined]


def list_experiments(name: str | None) -> None:
    """One line per experiment (name and summary, cut to the terminal's width); with ``name``,
    that experiment's options.  Exit 2 for an unknown name."""
    console = Console(highlight=False)
    names = registry.names()
    if name is not None and name not in names:
        raise fail(f"unknown experiment {name!r}; known: {', '.join(names) or '(none)'}", EXIT_USAGE)
    if not names:
        console.print("no experiments registered (add modules to sims/experiments/__init__.py)")
        return
    if name is None:
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 0), expand=True)
        table.add_column("experiment", no_wrap=True, style="bold")
        table.add_column("summary", no_wrap=True, overflow="ellipsis", ratio=1)
        for n in names:
            table.add_row(n, escape(registry.get(n).summary))
        console.print(table)
        console.print("options: sims run NAME --help (or sims list NAME); every claim at once: sims reproduce")
        return
    exp = registry.get(name)
    specs = specs_of(exp)
    table = Table(title=f"[bold]{name}[/bold]: {escape(exp.summary)}", title_justify="left")
    for col in ("option", "type", "default", "help"):
        table.add_column(col, overflow="fold")
    for s in specs:
        kind = s.kind if s.kind != "choice" else "|".join(s.choices or ())
        if s.sweep:
            kind += " (repeatable)"
        table.add_row(s.opt, escape(kind), escape(show_value(s.default)), escape(s.help))
    console.print(table)
    for e in examples(exp, specs):
        console.print(f"  $ {escape(e)}")


def show_run(run: str, out: Path, as_json: bool, full: bool = False) -> None:
    """Print a stored run (config, provenance, verdict); ``full``: the claims' full statements."""
    console = Console(highlight=False)
    try:
        path = store.find_manifest(out, run)
        m = store.read_manifest(path)
    except store.StoreError as e:
        raise fail(str(e), EXIT_USAGE) from None
    if as_json:
        sys.stdout.write(json.dumps(m, indent=2) + "\n")
        return
    rid, name = escape(str(m.get("run_id"))), escape(str(m.get("experiment")))
    console.print(f"[bold]run {rid}[/bold]  experiment {name}  ({path})")
    console.print(f"precision {m.get('precision')}; started {m.get('started')}; finished {m.get('finished')}")
    counts = m.get("counts", {})
    console.print(f"cells: {counts.get('cells')} ({counts.get('computed')} computed, {counts.get('reused')} reused)")
    cfg = Table(title="config", title_justify="left")
    cfg.add_column("field")
    cfg.add_column("value", overflow="fold")
    for k, v in (m.get("config") or {}).items():
        cfg.add_row(k, escape(show_value(v)))
    console.print(cfg)
    prov = m.get("provenance") or {}
    pt = Table(title="provenance", title_justify="left")
    pt.add_column("key")
    pt.add_column("value", overflow="fold")
    git = prov.get("git") or {}
    pt.add_row("git revision", f"{git.get('revision')}" + (" (dirty)" if git.get("dirty") else ""))
    for k, v in (prov.get("versions") or {}).items():
        pt.add_row(k, str(v))
    dev = prov.get("device") or {}
    pt.add_row("device", f"{dev.get('platform')} {dev.get('kind')} (x{dev.get('count')})")
    pt.add_row("dtype", f"{prov.get('dtype')} (jax_enable_x64={prov.get('jax_enable_x64')})")
    if "compile_cache" in prov:
        pt.add_row("compile cache", escape(str(prov.get("compile_cache"))))
    pt.add_row("command", escape(" ".join(prov.get("argv") or [])))
    console.print(pt)
    console.print(verdict_table(m.get("verdict") or [], full=full, run_id=str(m.get("run_id"))))
    ok = m.get("passed")
    und = m.get("undecided") or 0
    console.print(("[bold red]some claims failed[/bold red]" if not ok else
                   f"[green]no claim failed[/green], [yellow]{und} undecided[/yellow]" if und else
                   "[green]all claims passed[/green]"))
